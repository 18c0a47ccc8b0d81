"""Producing raw agent events and reading what agent-events made of them, each as the spec's principal.

- `RawEvents`: the `agent-gateway` producer: valid events through the contract's JSON serializer (wire
  format, registry id), bad ones as the raw bytes a broken producer would send; every record's
  (partition, offset) comes back from its delivery report.
- `Tail`: a `read_committed` consumer of one topic from its beginning, decoding the Avro values with the
  writer schemas from the registry. Signals are read as `agent-runtime` in its own group; the dead-letter
  topic, which no principal of the spec consumes, is read as the platform's super user.

Every test run marks its event ids with a prefix of its own, so runs on the shared session broker do not
see each other's events.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition

from headwater.contracts import load_contracts
from headwater.contracts.registry import RegistryClient
from headwater.contracts.serde import AvroDeserializer, JsonSerializer, unframe
from headwater.local.flink import LocalFlinkJob

if TYPE_CHECKING:
    from conftest import Provisioned

RAW = "agents.events.raw.v1"
SIGNALS = "agents.signals.v1"
DEAD_LETTERS = "agents.events.deadletter.v1"
PRODUCER = "agent-gateway"
READER = "agent-runtime"


_TRANSIENT = (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT)


def run_id(prefix: str) -> str:
    """A prefix for this run's event ids (the contract allows letters, digits and `._:-`)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def iso_now(offset_ms: int = 0) -> str:
    moment = datetime.fromtimestamp(time.time() + offset_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event(event_id: str, *, agent: str = "agent-1", **fields: Any) -> dict[str, Any]:
    """A raw event that satisfies agents.events.raw.v1."""
    doc: dict[str, Any] = {
        "event_id": event_id,
        "event_type": "tool.called",
        "agent_id": agent,
        "agent_type": "Planner",
        "occurred_at": iso_now(),
        "payload": {"tool": "search", "args": {"q": event_id}},
    }
    doc.update(fields)
    return doc


def raw_contract(platform: Any) -> dict[str, Any]:
    (contract,) = [c for c in load_contracts(platform) if c.topic == RAW]
    return dict(contract.schema)


@dataclass
class Sent:
    """One produced record: what was sent and where it landed."""

    label: str
    value: bytes | None
    partition: int | None = None
    offset: int | None = None
    error: str | None = None


class RawEvents:
    """The agent-gateway's idempotent producer of raw events."""

    def __init__(self, provisioned: Provisioned, registry: RegistryClient) -> None:
        self.platform = provisioned.platform
        self.serialize = JsonSerializer(registry, RAW, raw_contract(self.platform))
        self._producer = Producer(
            provisioned.config(PRODUCER, **{"enable.idempotence": True, "acks": "all", "linger.ms": 5})
        )
        self.sent: list[Sent] = []
        self._lock = threading.Lock()

    @property
    def schema_id(self) -> int:
        return self.serialize.schema_id

    def send_event(self, doc: dict[str, Any], label: str | None = None) -> Sent:
        """Send a valid event, serialized (and checked) by the contract's JSON serializer."""
        return self.send_bytes(self.serialize(doc), key=doc["agent_id"], label=label or doc["event_id"])

    def send_bytes(self, value: bytes | None, *, key: str = "agent-1", label: str) -> Sent:
        """Send bytes as they are: what a producer that ignores the contract would send."""
        sent = Sent(label, value)

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                sent.error = str(err)
            else:
                sent.partition, sent.offset = msg.partition(), msg.offset()

        with self._lock:
            self.sent.append(sent)
        while True:
            try:
                self._producer.produce(RAW, value=value, key=key.encode(), on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                self._producer.poll(0.1)
        self._producer.poll(0)
        return sent

    def flush(self, timeout: float = 60.0) -> None:
        left = self._producer.flush(timeout)
        assert left == 0, f"{left} raw records were not delivered within {timeout:.0f}s"
        failed = [s for s in self.sent if s.error]
        assert not failed, (
            f"the broker refused {len(failed)} raw records, e.g. {failed[0].label}: {failed[0].error}"
        )


@dataclass
class Tail:
    """A read_committed consumer of one topic from its beginning; `poll` collects decoded records."""

    config: dict[str, Any]
    topic: str
    registry: RegistryClient
    keep: Callable[[dict[str, Any]], bool] = lambda record: True
    records: list[dict[str, Any]] = field(default_factory=list)
    undecodable: list[str] = field(default_factory=list)
    schema_ids: Counter[int] = field(default_factory=Counter)  # writer schema ids of the kept records
    # Connection errors while the broker is away (a test may kill and restart it): noted, not fatal.
    transient_errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        settings = {
            **self.config,
            "error_cb": lambda err: self.transient_errors.append(str(err)),
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
        self._consumer = Consumer(settings)
        partitions = self._consumer.list_topics(self.topic, timeout=20).topics[self.topic].partitions
        self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in sorted(partitions)])
        self._decode = AvroDeserializer(self.registry)

    @classmethod
    def signals(cls, provisioned: Provisioned, registry: RegistryClient, **kwargs: Any) -> Tail:
        """Signals as the agents read them: principal agent-runtime, in its own group of the spec."""
        (group,) = [c.group for c in provisioned.platform.principal(READER).consumes if c.topic == SIGNALS]
        return cls(provisioned.config(READER, **{"group.id": group}), SIGNALS, registry, **kwargs)

    @classmethod
    def dead_letters(cls, provisioned: Provisioned, registry: RegistryClient, **kwargs: Any) -> Tail:
        """Dead letters as an operator reads them (the spec gives no principal a flow from this topic)."""
        config = provisioned.admin_config(**{"group.id": f"dead-letter-triage-{uuid.uuid4().hex[:6]}"})
        return cls(config, DEAD_LETTERS, registry, **kwargs)

    def poll(self, seconds: float) -> int:
        """Read for about `seconds`; return how many kept records arrived."""
        before = len(self.records)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            for msg in self._consumer.consume(500, timeout=min(left, 0.5)):
                error = msg.error()
                if error is not None:
                    if error.code() in _TRANSIENT or error.retriable():
                        self.transient_errors.append(str(error))
                        continue
                    assert error.code() == KafkaError._PARTITION_EOF, (
                        f"consumer error on {self.topic}: {error}"
                    )
                    continue
                value = msg.value()
                if value is None:
                    self.undecodable.append(f"{msg.partition()}/{msg.offset()}: a record without a value")
                    continue
                try:
                    record = self._decode(value)
                except Exception as exc:
                    self.undecodable.append(f"{msg.partition()}/{msg.offset()}: {exc}")
                    continue
                if self.keep(record):
                    self.records.append(record)
                    self.schema_ids[unframe(value)[0]] += 1
        return len(self.records) - before

    def poll_until(self, done: Callable[[list[dict[str, Any]]], bool], timeout: float, what: str) -> None:
        """Read until `done(records)` holds; fail naming `what` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not done(self.records):
            assert time.monotonic() < deadline, (
                f"{what}: not seen within {timeout:.0f}s ({len(self.records)} records kept from {self.topic})"
            )
            self.poll(0.5)

    def close(self) -> None:
        self._consumer.close()


def ensure_running(job: LocalFlinkJob, timeout: float = 180.0) -> LocalFlinkJob:
    """The shared job, started again (from its latest checkpoint) if an earlier test left it stopped."""
    if not job.running():
        job.start(restore=True)
        job.wait_running(timeout)
    return job


def event_ids(records: Iterable[dict[str, Any]]) -> list[str]:
    return [r["event_id"] for r in records]


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()
