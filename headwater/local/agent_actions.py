"""The sample outbox service of the local platform: agent-actions records decisions on agents' actions.

Each decision is a business row (`approvals`) and its outbox row, written in ONE database transaction: the
event exists if and only if the decision was committed. CDC (Debezium on Kafka Connect) turns each committed
outbox row into one event on the topic its aggregate type routes to; the outbox row is deleted in the same
transaction, so the table stays empty by design (deletes are not events).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from headwater.spec import Source

APPROVALS_DDL = """\
CREATE TABLE IF NOT EXISTS public.approvals (
  approval_id text PRIMARY KEY,
  agent_id text NOT NULL,
  action text NOT NULL,
  decision text NOT NULL,
  decided_at timestamptz NOT NULL,
  sequence bigint NOT NULL
)"""
DECISIONS = ("requested", "granted", "refused", "revoked")


@dataclass(frozen=True)
class Decision:
    approval_id: str
    agent_id: str
    action: str
    decision: str
    sequence: int

    def payload(self, decided_at: datetime) -> dict[str, Any]:
        """The outbox payload: what actions.approvals.v1's contract describes."""
        return {
            "approval_id": self.approval_id,
            "agent_id": self.agent_id,
            "action": self.action,
            "decision": self.decision,
            "decided_at": decided_at.isoformat().replace("+00:00", "Z"),
            "sequence": self.sequence,
        }


def prepare(conn: psycopg.Connection) -> None:
    conn.execute(APPROVALS_DDL)


def record(
    conn: psycopg.Connection,
    source: Source,
    decision: Decision,
    *,
    keep_outbox_row: bool = False,
    aggregate_type: str = "approval",
) -> str:
    """Write the business row and its outbox row in the caller's transaction; return the event id.

    `aggregate_type` other than `approval` writes a row the catalog may not route (to test dead letters).
    """
    now = datetime.now(UTC)
    event_id = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO public.approvals VALUES (%s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (approval_id) DO UPDATE SET decision = EXCLUDED.decision, "
        "decided_at = EXCLUDED.decided_at, sequence = EXCLUDED.sequence",
        (decision.approval_id, decision.agent_id, decision.action, decision.decision, now, decision.sequence),
    )
    schema, table = source.outbox_table.split(".")
    outbox = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (id, aggregatetype, aggregateid, type, payload) VALUES (%s, %s, %s, %s, %s)"
        ).format(outbox),
        (
            event_id,
            aggregate_type,
            decision.approval_id,
            f"{aggregate_type}.{decision.decision}",
            json.dumps(decision.payload(now)),
        ),
    )
    if not keep_outbox_row:
        conn.execute(sql.SQL("DELETE FROM {} WHERE id = %s").format(outbox), (event_id,))
    return event_id
