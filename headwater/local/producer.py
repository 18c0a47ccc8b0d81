"""A sample producer of agent events for the local platform, as the `agent-gateway` principal.

Valid events follow the raw events contract (`catalog/schemas/agents.events.raw.v1.json`): several agent
types and ids, every event type of the contract's enum, sessions, traces, durations and tags, framed in
the Confluent wire format by `JsonSerializer` (which refuses anything the contract does not allow). To
exercise the dead-letter path, a configurable share is malformed on purpose (bad JSON, wrong types, an
unknown event type, a missing field, a record over the contract's size limit); those bytes are framed by
hand and bypass the serializer, so they really reach the topic. Another share re-sends an event already
sent (same bytes, same `event_id`), the way a producer retry does, for the apps' deduplication.

Every record sent carries a `traceparent` header: the context of its own "produce" span (kind PRODUCER), which
ends when the broker acknowledges the record and records where it landed (topic, partition, offset). With a
state dir the spans are exported to `<state>/traces/sample-producer.jsonl` (`headwater.tracing`). A re-sent
duplicate carries its original's header, as a client's retry would.

The rate is kept by a schedule, not by sleeping a fixed time per record. When librdkafka's queue is full
(`BufferError`), the producer serves delivery reports and retries with a growing backoff instead of dropping.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from opentelemetry.trace import Span, SpanKind, set_span_in_context

from headwater import tracing
from headwater.contracts.serde import JsonSerializer, frame

MALFORMED_KINDS = ("bad_json", "wrong_types", "unknown_event_type", "missing_field", "oversized")
AGENT_TYPES = ("planner", "retriever", "coder", "reviewer", "support")
DEFAULT_MAX_RECORD_BYTES = 65_536
MAX_BACKOFF_S = 0.5
SERVICE = "sample-producer"


@dataclass(frozen=True)
class ProducerSettings:
    """How much and what the sample producer sends."""

    rate: float = 20.0  # records per second, all kinds together
    malformed_share: float = 0.05  # of records: broken on purpose (dead letters)
    duplicate_share: float = 0.03  # of records: an earlier event sent again (deduplicated)
    agents_per_type: int = 3
    entities: int = 8
    seed: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError(
                f"producer rate = {self.rate!r} is not valid; allowed: a finite number of events per second > 0"
            )
        for name in ("malformed_share", "duplicate_share"):
            share = getattr(self, name)
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"producer {name} = {share!r} is not valid; allowed: 0.0 to 1.0")
        if self.malformed_share + self.duplicate_share > 1.0:
            raise ValueError(
                f"malformed_share + duplicate_share = {self.malformed_share + self.duplicate_share} "
                "is not valid; allowed: at most 1.0"
            )
        if self.agents_per_type < 1 or self.entities < 1:
            raise ValueError("agents_per_type and entities must be at least 1")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SampleEvents:
    """Makes up agent events (dicts that satisfy the contract) and malformed record bodies (bytes)."""

    def __init__(self, contract: Mapping[str, Any], settings: ProducerSettings, rng: random.Random) -> None:
        self.rng = rng
        self.event_types: tuple[str, ...] = tuple(contract["properties"]["event_type"]["enum"])
        limits = contract.get("x-headwater-limits", {})
        self.max_record_bytes = int(limits.get("max_record_bytes", DEFAULT_MAX_RECORD_BYTES))
        self.agents = [
            (f"{kind}-{i:02d}", kind) for kind in AGENT_TYPES for i in range(1, settings.agents_per_type + 1)
        ]
        self.entities = [f"customer-{i:04d}" for i in range(1, settings.entities + 1)]
        self.sessions: dict[str, str] = {}
        self.counter = 0

    def _event_id(self) -> str:
        self.counter += 1
        return f"evt-{uuid.uuid4().hex[:16]}-{self.counter}"

    def valid(self, now_ms: int | None = None) -> dict[str, Any]:
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        agent_id, agent_type = self.rng.choice(self.agents)
        event_type = self.rng.choice(self.event_types)
        session = self.sessions.get(agent_id)
        if session is None or event_type == "session.started" or self.rng.random() < 0.02:
            session = f"sess-{uuid.uuid4().hex[:12]}"
            self.sessions[agent_id] = session
        failed = event_type.endswith(".failed") or event_type == "agent.error"
        event: dict[str, Any] = {
            "event_id": self._event_id(),
            "event_type": event_type,
            "agent_id": agent_id,
            # Mixed case on purpose: the contract compares agent types case-insensitively.
            "agent_type": agent_type.capitalize() if self.rng.random() < 0.2 else agent_type,
            # Event time a little behind the send time, the way an agent's clock and network are.
            "occurred_at": _iso(now_ms - self.rng.randint(0, 400)),
            "payload": self._payload(event_type),
            "tenant_id": f"tenant-{self.rng.randint(1, 3)}",
            "session_id": session,
            "trace_id": uuid.uuid4().hex,
        }
        if self.rng.random() < 0.8:
            event["entity_id"] = self.rng.choice(self.entities)
        if event_type.endswith((".completed", ".succeeded", ".responded", ".failed", ".ended")):
            event["status"] = "error" if failed else "ok"
            event["duration_ms"] = int(self.rng.lognormvariate(5.0, 1.0))
        if self.rng.random() < 0.5:
            event["tags"] = sorted(self.rng.sample(["prod", "beta", "eu", "us", "Batch", "interactive"], 2))
        return event

    def _payload(self, event_type: str) -> dict[str, Any]:
        family = event_type.split(".", 1)[0]
        if family == "llm":
            return {"model": self.rng.choice(["small", "large"]), "tokens": self.rng.randint(10, 4000)}
        if family == "tool":
            return {"tool": self.rng.choice(["search", "sql", "http", "python"])}
        if family == "task":
            return {"task": f"task-{self.rng.randint(1, 500)}", "priority": self.rng.randint(1, 5)}
        if family == "message":
            return {"channel": self.rng.choice(["chat", "email"]), "chars": self.rng.randint(1, 2000)}
        return {"note": family}

    def malformed(self, kind: str, now_ms: int | None = None) -> dict[str, Any] | bytes:
        """A record that breaks the contract in the named way: bytes (not JSON) or a dict to encode as is."""
        event = self.valid(now_ms)
        if kind == "bad_json":
            text = json.dumps(event, separators=(",", ":"))
            return text[: self.rng.randint(5, len(text) - 2)].encode()  # cut off mid-record
        if kind == "wrong_types":
            event["duration_ms"] = "slow"
            event["payload"] = ["not", "an", "object"]
            return event
        if kind == "unknown_event_type":
            event["event_type"] = "agent.teleported"
            return event
        if kind == "missing_field":
            del event["agent_id"]
            return event
        if kind == "oversized":
            event["payload"] = {"blob": "x" * (self.max_record_bytes + 1024)}
            return event
        raise ValueError(f"unknown malformed kind {kind!r}; known: {', '.join(MALFORMED_KINDS)}")


@dataclass
class ProducerStats:
    """What the producer has done so far; read from other threads under `lock`."""

    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    valid: int = 0
    duplicates: int = 0
    malformed: Counter[str] = field(default_factory=Counter)
    delivered: int = 0
    failed: int = 0
    queue_full_retries: int = 0
    last_error: str | None = None
    started_at: float | None = None  # time.time() of the first send
    stopped_at: float | None = None

    @property
    def sent(self) -> int:
        return self.valid + self.duplicates + sum(self.malformed.values())

    def as_dict(self) -> dict[str, Any]:
        with self.lock:
            return {
                "sent": self.sent,
                "valid": self.valid,
                "duplicates": self.duplicates,
                "malformed": dict(sorted(self.malformed.items())),
                "delivered": self.delivered,
                "failed": self.failed,
                "queue_full_retries": self.queue_full_retries,
                "last_error": self.last_error,
            }


class SampleProducer:
    """Sends sample events at a steady rate from a background thread until `stop()`."""

    def __init__(
        self,
        client_config: Mapping[str, Any],
        topic: str,
        serializer: JsonSerializer,
        settings: ProducerSettings,
        *,
        on_error: Callable[[str], None] | None = None,
        state_dir: Path | None = None,
    ) -> None:
        """`state_dir`: where the produce spans are exported (`<state_dir>/traces/`); none: not exported."""
        self.topic = topic
        self.tracing = tracing.tracer_provider(SERVICE, state_dir)
        self.tracer = self.tracing.get_tracer("headwater.local.producer")
        self.serializer = serializer
        self.settings = settings
        self.rng = random.Random(settings.seed)
        self.events = SampleEvents(serializer.schema, settings, self.rng)
        self.stats = ProducerStats()
        self.on_error = on_error
        self._recent: deque[tuple[bytes, bytes, tracing.ProducedHeaders]] = deque(maxlen=200)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._producer: Producer | None = Producer(
            {
                "client.id": "headwater-sample-producer",
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 10,
                "compression.type": "lz4",
                # Small enough that a stalled broker shows up as backpressure within seconds.
                "queue.buffering.max.messages": 20_000,
                "error_cb": self._on_client_error,
                **client_config,  # the principal's connection, and any tuning the caller wants instead
            }
        )

    # ---- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> SampleProducer:
        # Fail now, not in the thread, if the contract is not registered.
        _ = self.serializer.schema_id
        self._thread = threading.Thread(target=self._run, name="sample-producer", daemon=True)
        self._thread.start()
        return self

    def stop(self, flush_timeout: float = 10.0) -> int:
        """Stop sending, wait for outstanding deliveries (up to `flush_timeout`); return what is still queued."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._producer is None:
            return 0
        remaining = int(self._producer.flush(flush_timeout))
        self.tracing.shutdown()  # exports the last spans
        # Let go of the client now, so it does not keep reconnecting while the broker stops after it.
        self._producer = None
        with self.stats.lock:
            self.stats.stopped_at = self.stats.stopped_at or time.time()
        return remaining

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---- sending -----------------------------------------------------------------------------------------

    def _run(self) -> None:
        interval = 1.0 / self.settings.rate
        next_at = time.monotonic()
        with self.stats.lock:
            self.stats.started_at = time.time()
        while not self._stop.is_set():
            now = time.monotonic()
            while next_at <= now and not self._stop.is_set():
                self.send_one()
                next_at += interval
            if now - next_at > 5.0:  # far behind (a long backpressure stall): don't burst to catch up
                next_at = now
            self._client().poll(0)
            self._stop.wait(min(max(next_at - time.monotonic(), 0.0), 0.1))
        with self.stats.lock:
            self.stats.stopped_at = time.time()

    def send_one(self) -> None:
        """Send one record: malformed, a duplicate or a fresh valid event, by the configured shares."""
        roll = self.rng.random()
        if roll < self.settings.malformed_share:
            kind = self.rng.choice(MALFORMED_KINDS)
            record = self.events.malformed(kind)
            body = record if isinstance(record, bytes) else json.dumps(record, separators=(",", ":")).encode()
            agent = None if isinstance(record, bytes) else record.get("agent_id")
            key = str(agent or "unknown").encode()
            # Framed with the contract's id like any client would, but never validated: it must reach Kafka.
            if self._produce(key, frame(self.serializer.schema_id, body), self._span()):
                with self.stats.lock:
                    self.stats.malformed[kind] += 1
            return
        if roll < self.settings.malformed_share + self.settings.duplicate_share and self._recent:
            key, value, headers = self.rng.choice(self._recent)
            if self._produce(key, value, None, headers):
                with self.stats.lock:
                    self.stats.duplicates += 1
            return
        event = self.events.valid()
        key = event["agent_id"].encode()
        value = self.serializer(event)
        span = self._span()
        self._recent.append((key, value, tracing.inject(set_span_in_context(span))))
        if self._produce(key, value, span):
            with self.stats.lock:
                self.stats.valid += 1

    def _span(self) -> Span:
        return self.tracer.start_span(
            f"produce {self.topic}",
            kind=SpanKind.PRODUCER,
            attributes={"messaging.system": "kafka", "messaging.destination.name": self.topic},
        )

    def _produce(
        self, key: bytes, value: bytes, span: Span | None, headers: tracing.ProducedHeaders | None = None
    ) -> bool:
        """Hand one record to librdkafka (with `span`'s context as its header, or `headers`; the span ends
        when the record is acknowledged); False only when stopping while its queue stays full."""
        backoff = 0.005
        if span is not None:
            headers = tracing.inject(set_span_in_context(span))

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if span is not None:
                if err is None:
                    span.set_attribute("messaging.kafka.destination.partition", msg.partition() or 0)
                    span.set_attribute("messaging.kafka.message.offset", msg.offset() or 0)
                    span.set_attribute("messaging.kafka.message.key", key.decode("utf-8", "replace"))
                span.end()
            self._on_delivery(err, msg)

        while True:
            try:
                self._client().produce(
                    self.topic, value=value, key=key, headers=headers, on_delivery=delivered
                )
                return True
            except BufferError:
                # librdkafka's queue is full: let deliveries drain, then try again, more patiently each time.
                with self.stats.lock:
                    self.stats.queue_full_retries += 1
                self._client().poll(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                if self._stop.is_set() and backoff >= MAX_BACKOFF_S:
                    if span is not None:
                        span.end()
                    return False

    def _client(self) -> Producer:
        if self._producer is None:
            raise RuntimeError("the sample producer is stopped")
        return self._producer

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        with self.stats.lock:
            if err is None:
                self.stats.delivered += 1
            else:
                self.stats.failed += 1
                self.stats.last_error = str(err)
        if err is not None and self.on_error is not None:
            self.on_error(f"delivery to {msg.topic()} failed: {err}")

    def _on_client_error(self, err: KafkaError) -> None:
        with self.stats.lock:
            self.stats.last_error = str(err)


def shares_text(settings: ProducerSettings) -> str:
    return (
        f"{settings.rate:g} events/s, {settings.malformed_share:.0%} malformed "
        f"({', '.join(MALFORMED_KINDS)}), {settings.duplicate_share:.0%} duplicates"
    )
