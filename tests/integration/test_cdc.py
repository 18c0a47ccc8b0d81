"""CDC for real: PostgreSQL (Debian's server), a Kafka Connect worker with Debezium, the session's broker.

A service writes a business row and its outbox row in one transaction; Debezium captures committed outbox rows
and Connect writes them exactly-once to the topic their aggregate type routes to. A read_committed reader
reconciles by event id (the `id` header): every committed row exactly once, in commit order per aggregate,
nothing from rolled-back transactions, through Connect being SIGKILLed and the database restarting. A row
whose payload breaks its topic's contract goes to the dead-letter topic, once, saying which field broke which
rule, and the rows behind it still flow.
Figures (rows/s captured, commit-to-visible latency) are printed, never asserted.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from psycopg import sql

from headwater import cdc as cdc_config
from headwater.cdc import DEAD_LETTER_REASON_HEADER, UNROUTED_REASON, route_contracts
from headwater.local import agent_actions
from headwater.local.agent_actions import Decision
from headwater.local.connect import LocalConnect
from headwater.local.postgres import LocalPostgres
from headwater.spec import Platform, Source

if TYPE_CHECKING:
    from conftest import Provisioned

pytestmark = pytest.mark.timeout(600)


@dataclass
class Cdc:
    platform: Platform
    provisioned: Provisioned
    pg: LocalPostgres
    connect: LocalConnect
    source: Source
    credentials: Path

    @property
    def topic(self) -> str:
        topic = self.source.route("approval")
        assert topic is not None
        return topic

    def restart_connect(self) -> None:
        self.connect.start()
        self.connect.wait_running(self.source.connector_name, timeout=180)


@pytest.fixture(scope="module")
def cdc(provisioned: Provisioned) -> Iterator[Cdc]:
    platform = provisioned.platform
    (source,) = platform.sources
    # The server's unprivileged user must reach its folder: a state dir others may enter (not list).
    state = Path(tempfile.mkdtemp(prefix="headwater-cdc-"))
    state.chmod(0o711)
    pg = LocalPostgres(state)
    connect = LocalConnect(provisioned.kafka, platform.connect_cluster(source.connect), state_dir=state)
    try:
        pg.start()
        pg.prepare_source(source)
        with pg.connect(source.database) as conn:
            agent_actions.prepare(conn)
        served = pg.served(source)
        credentials = pg.credentials_dir(served)
        connect.start()
        connect.put_outbox_connector(served, credentials, route_contracts(platform, source))
        connect.wait_running(served.connector_name, timeout=180)
        _wait(lambda: pg.slot_active(served), 60, "the replication slot to be active")
        yield Cdc(platform, provisioned, pg, connect, served, credentials)
    finally:
        connect.stop()
        pg.stop()
        shutil.rmtree(state, ignore_errors=True)


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


# ---- the reader -------------------------------------------------------------------------------------------------


@dataclass
class Seen:
    event_id: str
    key: str
    sequence: int
    at: float
    headers: dict[str, bytes]
    value: bytes = b""


@dataclass
class Reader:
    """A read_committed reader of one topic from its current end, in a thread, recording when each event shows."""

    cdc: Cdc
    topic: str
    events: list[Seen] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _ready: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._consumer = Consumer(
            self.cdc.provisioned.admin_config(
                **{
                    "group.id": f"cdc-test-{time.monotonic_ns()}",
                    "isolation.level": "read_committed",
                    "enable.auto.commit": False,
                }
            )
        )
        meta = self._consumer.list_topics(self.topic, timeout=30)
        parts = sorted(meta.topics[self.topic].partitions)
        assigned = []
        for p in parts:
            _, high = self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=30)
            assigned.append(TopicPartition(self.topic, p, high if high >= 0 else OFFSET_BEGINNING))
        self._consumer.assign(assigned)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self._consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            at = time.time()
            headers: dict[str, bytes] = {}
            raw: Any = msg.headers() or []  # a list of (name, value) pairs for a fetched record
            for name, value in raw:
                if value is not None:
                    headers[name] = value.encode() if isinstance(value, str) else value
            key = msg.key()
            value = msg.value() or b""
            self.events.append(
                Seen(
                    headers.get("id", b"").decode(),  # heartbeats carry no event id
                    key.decode() if isinstance(key, bytes) else str(key or ""),
                    _sequence(value),
                    at,
                    headers,
                    value,
                )
            )

    def wait_for(self, count: int, timeout: float) -> None:
        _wait(
            lambda: len(self.events) >= count,
            timeout,
            f"{count} events on {self.topic} (have {len(self.events)})",
        )

    def close(self, drain: float = 3.0) -> list[Seen]:
        """Keep reading `drain` seconds more (a duplicate would show up here), then stop."""
        time.sleep(drain)
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()
        return list(self.events)


def _sequence(value: bytes) -> int:
    """The payload's sequence, or -1 (a dead letter's payload may be anything its writer committed)."""
    try:
        payload = json.loads(value or b"{}")
        return int(payload.get("sequence", -1)) if isinstance(payload, dict) else -1
    except (ValueError, TypeError):
        return -1


def _reconcile(seen: list[Seen], committed: dict[str, tuple[str, int]]) -> None:
    """Every committed event exactly once (by event id), nothing else, in commit order per aggregate."""
    ids = [s.event_id for s in seen]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    assert not dupes, f"{len(dupes)} event(s) delivered more than once, e.g. {dupes[:3]}"
    assert set(ids) == set(committed), (
        f"missing {len(set(committed) - set(ids))}, unexpected {len(set(ids) - set(committed))}"
    )
    by_key: dict[str, list[int]] = {}
    for s in seen:
        assert (s.key, s.sequence) == committed[s.event_id]
        by_key.setdefault(s.key, []).append(s.sequence)
    for key, sequences in by_key.items():
        assert sequences == sorted(sequences), f"aggregate {key} out of commit order: {sequences}"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _figures(what: str, seen: list[Seen], committed_at: dict[str, float]) -> None:
    latencies = [(s.at - committed_at[s.event_id]) * 1000 for s in seen if s.event_id in committed_at]
    span = max(s.at for s in seen) - min(committed_at.values())
    print(
        f"\n[cdc figures] {what}: {len(seen)} events, {len(seen) / span:.0f} rows/s captured; "
        f"commit-to-visible p50 {_percentile(latencies, 0.5):.0f} ms, p99 {_percentile(latencies, 0.99):.0f} ms, "
        f"mean {statistics.fmean(latencies):.0f} ms"
    )


class Writer:
    """The sample service: commits decisions (business row + outbox row in one transaction), or rolls back."""

    def __init__(self, cdc: Cdc, prefix: str, aggregates: int = 20) -> None:
        self.cdc = cdc
        self.prefix = prefix
        self.aggregates = aggregates
        self.committed: dict[str, tuple[str, int]] = {}
        self.committed_at: dict[str, float] = {}
        self.rolled_back: set[str] = set()
        self._sequence = 0

    def write(
        self, transactions: int, *, per_tx: int = 1, rollback_every: int = 0, pause: float = 0.0
    ) -> None:
        with self.cdc.pg.connect(self.cdc.source.database) as conn:
            for n in range(transactions):
                rollback = bool(rollback_every) and n % rollback_every == rollback_every - 1
                pending: dict[str, tuple[str, int]] = {}
                with conn.transaction(force_rollback=rollback):
                    for _ in range(per_tx):
                        self._sequence += 1
                        key = f"{self.prefix}-{self._sequence % self.aggregates}"
                        decision = Decision(key, "agent-7", "refund.issue", "granted", self._sequence)
                        pending[agent_actions.record(conn, self.cdc.source, decision)] = (key, self._sequence)
                if rollback:
                    self.rolled_back |= set(pending)
                else:
                    now = time.time()
                    self.committed |= pending
                    self.committed_at |= {event_id: now for event_id in pending}
                if pause:
                    time.sleep(pause)


# ---- the tests ------------------------------------------------------------------------------------------------


def test_connect_logs_in_as_its_principal_and_names_the_database_credentials_without_holding_them(
    cdc: Cdc,
) -> None:
    text = cdc.connect.properties.read_text()
    assert f'username="{cdc.source.connect}"' in text  # its own principal's SCRAM login, from provisioning
    assert cdc.connect.properties.stat().st_mode & 0o077 == 0  # the worker's login is owner-only
    # The connector names its credentials; the password is in no config Connect stores.
    password = (cdc.credentials / "password").read_text()
    config = cdc.connect._session.get(
        f"{cdc.connect.url}/connectors/{cdc.source.connector_name}/config"
    ).json()
    assert password not in str(config) and config["database.password"].startswith("${dir:")
    assert config["exactly.once.support"] == "required"


def test_committed_transactions_become_events_exactly_once_and_rollbacks_nothing(cdc: Cdc) -> None:
    reader = Reader(cdc, cdc.topic)
    writer = Writer(cdc, "commit")
    writer.write(300, per_tx=2, rollback_every=4)
    assert writer.rolled_back and len(writer.committed) == 450
    reader.wait_for(len(writer.committed), timeout=120)
    seen = reader.close()
    _reconcile(seen, writer.committed)
    assert not {s.event_id for s in seen} & writer.rolled_back
    assert all(s.headers["eventType"] == b"approval.granted" for s in seen)
    _figures("steady writes (2 rows per transaction, 1 in 4 rolled back)", seen, writer.committed_at)
    # The outbox stays empty by design (each row is deleted in the transaction that wrote it).
    with cdc.pg.connect(cdc.source.database) as conn:
        assert conn.execute("SELECT count(*) FROM public.outbox").fetchone() == (0,)


def test_connect_sigkilled_twice_mid_stream_loses_and_duplicates_nothing(cdc: Cdc) -> None:
    reader = Reader(cdc, cdc.topic)
    writer = Writer(cdc, "crash")
    thread = threading.Thread(target=writer.write, args=(600,), kwargs={"pause": 0.02}, daemon=True)
    thread.start()
    for _ in range(2):
        _wait(lambda: len(reader.events) >= 50, 120, "events flowing before the crash")
        cdc.connect.kill()
        time.sleep(1.0)  # rows keep committing while Connect is down
        count = len(reader.events)
        cdc.restart_connect()
        _wait(lambda c=count: len(reader.events) > c + 20, 120, "events flowing after the restart")
    thread.join(180)
    assert not thread.is_alive()
    reader.wait_for(len(writer.committed), timeout=180)
    seen = reader.close()
    _reconcile(seen, writer.committed)
    _figures("through two SIGKILLs of Connect", seen, writer.committed_at)


def test_the_database_restarted_mid_stream_loses_and_duplicates_nothing(cdc: Cdc) -> None:
    reader = Reader(cdc, cdc.topic)
    writer = Writer(cdc, "dbrestart")
    writer.write(100)
    cdc.pg.stop()
    cdc.pg.start()
    writer.write(100)
    reader.wait_for(len(writer.committed), timeout=240)
    seen = reader.close()
    _reconcile(seen, writer.committed)
    status = cdc.connect.status(cdc.source.connector_name)
    assert [t["state"] for t in status["tasks"]] == ["RUNNING"], status


def test_an_unroutable_row_goes_to_the_dead_letter_topic_with_its_reason_and_rows_behind_it_flow(
    cdc: Cdc,
) -> None:
    dead = Reader(cdc, cdc.source.dead_letter_topic)
    reader = Reader(cdc, cdc.topic)
    writer = Writer(cdc, "dlq")
    writer.write(5)
    with cdc.pg.connect(cdc.source.database) as conn, conn.transaction():
        bad = agent_actions.record(
            conn, cdc.source, Decision("dlq-x", "agent-7", "x", "granted", 0), aggregate_type="invoice"
        )
    writer.write(5)
    reader.wait_for(10, timeout=120)
    dead.wait_for(1, timeout=60)
    letters = dead.close()
    seen = reader.close()
    _reconcile(seen, writer.committed)
    (letter,) = letters
    assert letter.event_id == bad
    assert letter.headers[DEAD_LETTER_REASON_HEADER].decode() == UNROUTED_REASON
    assert letter.headers[cdc_config.DEAD_LETTER_REASON_CODE_HEADER].decode() == cdc_config.UNROUTED_CODE
    assert letter.headers["aggregateType"] == b"invoice"


def _outbox_row(cdc: Cdc, aggregate_type: str, aggregate_id: str, payload: str) -> str:
    """One outbox row with this payload text, committed (and deleted) in its own transaction; its event id."""
    schema, table = cdc.source.outbox_table.split(".")
    outbox = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    event_id = str(uuid.uuid4())
    with cdc.pg.connect(cdc.source.database) as conn, conn.transaction():
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (id, aggregatetype, aggregateid, type, payload) VALUES (%s, %s, %s, %s, %s)"
            ).format(outbox),
            (event_id, aggregate_type, aggregate_id, f"{aggregate_type}.changed", payload),
        )
        conn.execute(sql.SQL("DELETE FROM {} WHERE id = %s").format(outbox), (event_id,))
    return event_id


def test_payloads_that_break_their_contract_are_dead_lettered_once_with_field_and_rule_and_rows_behind_flow(
    cdc: Cdc,
) -> None:
    tickets = cdc.source.route("ticket")
    assert tickets is not None
    dead = Reader(cdc, cdc.source.dead_letter_topic)
    reader = Reader(cdc, cdc.topic)
    ticket_reader = Reader(cdc, tickets)
    writer = Writer(cdc, "contract")
    writer.write(5)
    good = Decision("contract-bad", "agent-7", "refund.issue", "granted", 1).payload(datetime.now(UTC))
    # (aggregate type, payload text) -> (topic meant for, reason code, field, rule). The payload column is
    # jsonb, so the database itself refuses text that is not JSON; what it lets through is JSON of any shape.
    cases = {
        "not an object": ("approval", json.dumps("approval granted"), (cdc.topic, "", "type")),
        "missing field": (
            "approval",
            json.dumps({k: v for k, v in good.items() if k != "agent_id"}),
            (cdc.topic, "/agent_id", "required"),
        ),
        "wrong type": (
            "approval",
            json.dumps(good | {"sequence": "seven"}),
            (cdc.topic, "/sequence", "type"),
        ),
        "not in enum": (
            "approval",
            json.dumps(good | {"decision": "maybe"}),
            (cdc.topic, "/decision", "enum"),
        ),
        "bad date-time": (
            "approval",
            json.dumps(good | {"decided_at": "yesterday"}),
            (cdc.topic, "/decided_at", "format"),
        ),
        # Held to the tickets' contract, not the approvals': an approval's payload routed as a ticket.
        "other topic's shape": ("ticket", json.dumps(good), (tickets, "/action", "additionalProperties")),
    }
    bad: dict[str, tuple[str, str, str, str]] = {}
    for kind, (aggregate_type, payload, expected) in cases.items():
        bad[_outbox_row(cdc, aggregate_type, f"bad-{len(bad)}", payload)] = (kind, *expected)
    ticket = json.dumps(
        {"ticket_id": "t-1", "agent_id": "agent-7", "status": "opened", "changed_at": "2026-11-29T07:00:00Z"}
    )
    valid_ticket = _outbox_row(cdc, "ticket", "t-1", ticket)
    writer.write(5)
    reader.wait_for(len(writer.committed), timeout=120)
    dead.wait_for(len(bad), timeout=120)
    ticket_reader.wait_for(1, timeout=60)
    letters = dead.close()
    seen = reader.close()
    tickets_seen = ticket_reader.close()
    # Every valid row exactly once on its topic (including the five behind the bad ones), no bad one there.
    _reconcile(seen, writer.committed)
    assert [t.event_id for t in tickets_seen] == [valid_ticket]
    # Every bad row exactly once on the dead-letter topic, as written, saying what was wrong and where from.
    assert sorted(letter.event_id for letter in letters) == sorted(bad)
    contracts = route_contracts(cdc.platform, cdc.source)
    for letter in letters:
        kind, topic, field_, rule = bad[letter.event_id]
        h = {k: v.decode() for k, v in letter.headers.items()}
        assert (
            h[cdc_config.DEAD_LETTER_REASON_CODE_HEADER],
            h[cdc_config.DEAD_LETTER_FIELD_HEADER],
            h[cdc_config.DEAD_LETTER_RULE_HEADER],
        ) == (cdc_config.SCHEMA_VIOLATION_CODE, field_, rule), (kind, h)
        assert h[cdc_config.DEAD_LETTER_SOURCE_TOPIC_HEADER] == topic, kind
        assert h[cdc_config.DEAD_LETTER_CONTRACT_HEADER] == json.loads(contracts[topic])["$id"]
        assert h[cdc_config.DEAD_LETTER_AGGREGATE_ID_HEADER] == letter.key and letter.key.startswith("bad-")
        assert h[cdc_config.DEAD_LETTER_SOURCE_LSN_HEADER].isdigit(), h
        assert h[cdc_config.DEAD_LETTER_PIPELINE_HEADER] == cdc.source.connector_name
        assert (field_ or "(record)") in h[DEAD_LETTER_REASON_HEADER], (kind, h[DEAD_LETTER_REASON_HEADER])
        violations = json.loads(h[cdc_config.DEAD_LETTER_VIOLATIONS_HEADER])
        assert {"field": field_, "rule": rule} in [
            {"field": v["field"], "rule": v["rule"]} for v in violations
        ]
        assert json.loads(letter.value) == json.loads(cases[kind][1])  # the payload as written
    status = cdc.connect.status(cdc.source.connector_name)
    assert [t["state"] for t in status["tasks"]] == ["RUNNING"], status
    print(
        f"\n[cdc contract check] {len(bad)} malformed rows dead-lettered ({len(letters)} letters), "
        f"{len(seen)} valid approvals and {len(tickets_seen)} valid ticket delivered; "
        + "; ".join(
            f"{bad[x.event_id][0]}: {x.headers[cdc_config.DEAD_LETTER_FIELD_HEADER].decode() or '(record)'} "
            f"{x.headers[cdc_config.DEAD_LETTER_RULE_HEADER].decode()}"
            for x in letters
        )
    )


def _slot_confirmed_past(cdc: Cdc, lsn: str) -> bool:
    with cdc.pg.connect(cdc.source.database) as conn:
        row = conn.execute(
            "SELECT pg_wal_lsn_diff(confirmed_flush_lsn, %s::pg_lsn) >= 0 FROM pg_replication_slots "
            "WHERE slot_name = %s",
            (lsn, cdc.source.slot_name),
        ).fetchone()
    return bool(row and row[0])


def test_a_quiet_outbox_in_a_busy_database_does_not_hold_its_wal(cdc: Cdc) -> None:
    """Only the outbox is published, so WAL written elsewhere reaches the connector as nothing at all; the
    heartbeats let the slot confirm past it anyway (without them it stays at the last outbox event: checked
    by hand, the wait below then times out)."""
    heartbeats = Reader(cdc, cdc.source.heartbeat_topic)
    dead = Reader(cdc, cdc.source.dead_letter_topic)
    Writer(cdc, "quiet").write(1)
    with cdc.pg.connect(cdc.source.database) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS public.busy (id bigserial PRIMARY KEY, filler text)")
        conn.commit()
        start = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        for _ in range(10):
            conn.execute(
                "INSERT INTO public.busy (filler) SELECT repeat('x', 200) FROM generate_series(1, 10000)"
            )
            conn.commit()
        end = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert start is not None and end is not None
        written = conn.execute(
            "SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", (end[0], start[0])
        ).fetchone()
    held = cdc.pg.slot_lag_bytes(cdc.source) or 0
    began = time.monotonic()
    _wait(lambda: _slot_confirmed_past(cdc, end[0]), 120, f"the slot to confirm past {end[0]}")
    released = time.monotonic() - began
    heartbeats.wait_for(1, timeout=60)
    beats = heartbeats.close(drain=0.5)
    assert not dead.close(drain=0.5)  # heartbeats are not dead letters
    assert written is not None and float(written[0]) > 10e6
    print(
        f"\n[cdc heartbeat] {float(written[0]) / 1e6:.1f} MB of WAL written outside the outbox; the slot held "
        f"{held / 1e6:.1f} MB right after and confirmed past it {released:.1f} s later "
        f"(heartbeat every {cdc_config.HEARTBEAT_INTERVAL_MS / 1000:.0f} s; {len(beats)} on "
        f"{cdc.source.heartbeat_topic} while reading)"
    )
