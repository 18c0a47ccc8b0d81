"""The page's Kafka side: its description, the audit trail read into a `Board`, decisions written.

The page reads the whole audit topic from its beginning at every start (assigned, never subscribed: no
offsets are committed and every replica sees everything), `read_committed` so that only what the gate's
transactions committed shows. It writes decisions with an idempotent producer and waits for each to be
acknowledged; a decision that breaks its contract is refused before it is sent.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from approval_gate.approvers.board import Board

LOG = logging.getLogger("approval_gate.approvers")
DESCRIPTION_VERSION = 1


@dataclass(frozen=True)
class PageDescription:
    """What the platform tells the page (headwater.action_gate.approvers_description)."""

    principal: str
    group: str
    decisions_topic: str
    audit_topic: str
    decision_contract: Mapping[str, Any]
    policies: Mapping[str, Mapping[str, Any]]

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> PageDescription:
        if raw.get("version") != DESCRIPTION_VERSION:
            raise ValueError(f"approvers' page description version {raw.get('version')!r}; allowed: 1")
        return cls(
            principal=raw["principal"],
            group=raw["group"],
            decisions_topic=raw["topics"]["decisions"],
            audit_topic=raw["topics"]["audit"],
            decision_contract=raw["contracts"][raw["topics"]["decisions"]],
            policies=raw.get("policies", {}),
        )

    @classmethod
    def load(cls, path: Path) -> PageDescription:
        return cls.from_dict(json.loads(path.read_text()))


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def decision_record(action_id: str, decision: str, approver: str, reason: str) -> dict[str, Any]:
    return {
        "action_id": action_id,
        "decision": decision,
        "approver": approver,
        "reason": reason,
        "decided_at": iso_now(),
    }


class DecisionRefused(ValueError):
    """A decision the page will not send (breaks the contract); the message says what is wrong."""


def contract_check(schema: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], str | None]:
    cls = jsonschema.validators.validator_for(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)

    def check(record: Mapping[str, Any]) -> str | None:
        error = jsonschema.exceptions.best_match(validator.iter_errors(record))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "(record)"
        return f"{where}: {error.message}"

    return check


class AuditReader(threading.Thread):
    """Reads the audit topic from the beginning into `board` (under `lock`) until stopped."""

    def __init__(self, description: PageDescription, kafka: Mapping[str, Any]) -> None:
        super().__init__(name="audit-reader", daemon=True)
        self.description = description
        self.conf = {
            **kafka,
            "group.id": description.group,  # assigned, never subscribed: nothing is committed under it
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 100,
        }
        self.board = Board()
        self.lock = threading.Lock()
        self.caught_up = threading.Event()  # read to the end of every partition once
        self.stopping = threading.Event()
        self.changed = threading.Condition(self.lock)
        self.last_poll = time.monotonic()
        self.error: str | None = None

    def run(self) -> None:
        topic = self.description.audit_topic
        try:
            consumer = Consumer(self.conf)
        except KafkaException as exc:
            self.error = str(exc)
            LOG.error("cannot create the audit reader: %s", exc)
            return
        try:
            partitions: list[int] = []
            while not partitions and not self.stopping.is_set():
                try:
                    metadata = consumer.list_topics(topic, timeout=10)
                    partitions = sorted(metadata.topics[topic].partitions)
                except KafkaException as exc:
                    LOG.warning("waiting for %s: %s", topic, exc)
                    self.last_poll = time.monotonic()
            consumer.assign([TopicPartition(topic, p, 0) for p in partitions])  # 0: the beginning
            remaining = set(partitions)
            while not self.stopping.is_set():
                msgs = consumer.consume(500, 0.2)
                self.last_poll = time.monotonic()
                records = []
                for msg in msgs:
                    error = msg.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            remaining.discard(msg.partition() or 0)
                        else:
                            LOG.warning("reading %s: %s", topic, error)
                        continue
                    try:
                        records.append(json.loads(msg.value() or b"null"))
                    except (UnicodeDecodeError, json.JSONDecodeError):
                        continue  # the gate writes JSON only; anything else is not the page's to show
                if records:
                    with self.changed:
                        for record in records:
                            if isinstance(record, dict):
                                self.board.apply(record)
                        self.changed.notify_all()
                if not remaining and not self.caught_up.is_set():
                    LOG.info(
                        "read the audit trail: %d records, %d pending",
                        self.board.records,
                        len(self.board.pending),
                    )
                    self.caught_up.set()
        finally:
            consumer.close()

    def live(self) -> bool:
        return self.is_alive() and time.monotonic() - self.last_poll < 60

    def wait_for(self, predicate: Callable[[Board], bool], timeout_s: float) -> bool:
        """Wait until `predicate(board)` holds (checked on every new batch), at most `timeout_s`."""
        with self.changed:
            return self.changed.wait_for(lambda: predicate(self.board), timeout_s)

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


class DecisionWriter:
    """Sends decisions to the decisions topic, one acknowledged record each."""

    def __init__(self, description: PageDescription, kafka: Mapping[str, Any]) -> None:
        self.topic = description.decisions_topic
        self.check = contract_check(description.decision_contract)
        self.producer = Producer({**kafka, "enable.idempotence": True, "linger.ms": 0, "acks": "all"})
        self.lock = threading.Lock()

    def send(
        self,
        record: Mapping[str, Any],
        headers: list[tuple[str, bytes]] | None = None,
        timeout_s: float = 15.0,
    ) -> None:
        why = self.check(record)
        if why is not None:
            raise DecisionRefused(f"the decision breaks the contract of {self.topic}: {why}")
        outcome: dict[str, Any] = {}

        def delivered(err: KafkaError | None, _msg: Any) -> None:
            outcome["error"] = err
            outcome["done"] = True

        with self.lock:
            self.producer.produce(
                self.topic,
                key=str(record["action_id"]).encode(),
                value=json.dumps(dict(record), sort_keys=True).encode(),
                headers=list(headers or []),
                on_delivery=delivered,
            )
            self.producer.flush(timeout_s)
        if not outcome.get("done"):
            raise TimeoutError(f"the decision was not acknowledged by the broker within {timeout_s:g} s")
        if outcome["error"] is not None:
            raise KafkaException(outcome["error"])

    def close(self) -> None:
        self.producer.flush(5)
