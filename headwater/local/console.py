"""A live view of the local platform: what flows in and out, how far behind each consumer is, how long an
event takes from the raw topic to a signal an agent can read, and why records were rejected.

`Monitor` gathers the figures in background threads:
- signals and features are read the way the agents read them: as `agent-runtime`, in its consumer groups
  from the catalog, with the isolation level its flows' `delivery:` gives (signals at-least-once, as soon as
  written, each event id counted once; features read committed);
- end-to-end latency is the time a signal becomes visible to that consumer minus the timestamp of the raw
  record it came from (signals carry it as `source.timestamp`); only events produced during this run count;
- dead letters are read as the principal the catalog declares as their reader (operators' triage), by
  assignment, never committing, for their reason codes (as the admin only when no principal reads them);
- consumer lag per group is the committed offsets against the read-committed end offsets, as the admin.

`Console` renders a `Snapshot` a few times a second on a terminal (redrawn in place), or as one plain line
every few seconds otherwise (logs, CI). `format_summary` is what a bounded run prints at the end.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from confluent_kafka import (
    OFFSET_END,
    Consumer,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec
from rich.console import Console as Terminal
from rich.live import Live
from rich.text import Text

from headwater.contracts.registry import RegistryClient
from headwater.contracts.serde import AvroDeserializer, WireFormatError
from headwater.local.observe import PromFigures
from headwater.spec import Platform, TopicKind

if TYPE_CHECKING:
    from prometheus_client import Histogram

RATE_WINDOW_S = 5.0
LATENCY_WINDOW_S = 30.0
MAX_SAMPLES = 500_000
MAX_SIGNAL_IDS = 200_000  # event ids remembered to act once per signal (at-least-once readers see repeats)


# ---- which topics and groups, from the spec ----------------------------------------------------------------


@dataclass(frozen=True)
class Topology:
    """The topics, principals and consumer groups the console watches, derived from the platform's flows:
    the app that writes dead letters turns raw events into signals; the service producing its input is the
    producer the sample traffic goes out as; the service reading both signals and features is the agents'
    view the console shows."""

    raw: str
    signals: str
    dead_letters: str
    features: str
    producer: str  # the service principal producing raw events
    reader: str  # the service principal reading signals and features (the agents)
    signals_app: str  # the app turning raw events into signals and dead letters
    reader_groups: tuple[tuple[str, str], ...]  # (topic, group) the reader principal consumes with
    lag_groups: tuple[tuple[str, str], ...]  # (group, topic) of every literal consumer group
    transactional: frozenset[str]  # topics written in transactions (each commit leaves a marker offset)
    app_groups: frozenset[str]  # groups of the Flink apps, whose sources commit offsets at checkpoints
    triage: tuple[str, str] | None = None  # (principal, group) declared to read the dead letters
    # (topic, isolation.level) of the reader's flows: its catalog `delivery:` decides (spec.isolation_level)
    reader_isolation: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, platform: Platform) -> Topology:
        def only(names: Iterable[str], what: str) -> str:
            found = sorted(set(names))
            if len(found) != 1:
                raise ValueError(
                    f"stack {platform.stack}: expected exactly one {what}, found {found or 'none'}"
                )
            return found[0]

        kinds = {t.name: t.kind for t in platform.topics}
        produced = {p.name: {f.topic for f in p.produces} for p in platform.principals}
        consumed = {p.name: {c.topic for c in p.consumes} for p in platform.principals}
        services = [p.name for p in platform.principals if p.kind == "service"]
        app = only(
            (
                a.name
                for a in platform.apps
                if any(kinds[t] == TopicKind.DEADLETTER for t in produced[a.name])
            ),
            "app producing a dead-letter topic",
        )
        raw = only(consumed[app], f"topic consumed by {app}")
        signals = only((t for t in produced[app] if kinds[t] == TopicKind.EVENTS), f"events topic of {app}")
        dead_letters = only(
            (t for t in produced[app] if kinds[t] == TopicKind.DEADLETTER), f"dead-letter topic of {app}"
        )
        features = only((t.name for t in platform.topics if t.kind == TopicKind.FEATURE), "feature topic")
        producer = only((s for s in services if raw in produced[s]), f"service producing {raw}")
        reader = only(
            (s for s in services if {signals, features} <= consumed[s]),
            f"service consuming {signals} and {features}",
        )
        readers = sorted(
            (p.name, c.group)
            for p in platform.principals
            if p.kind == "service"
            for c in p.consumes
            if c.topic == dead_letters and c.group_pattern == "literal"
        )
        return cls(
            triage=readers[0] if readers else None,
            raw=raw,
            signals=signals,
            dead_letters=dead_letters,
            features=features,
            reader_groups=tuple((c.topic, c.group) for c in platform.principal(reader).consumes),
            reader_isolation=tuple((c.topic, c.isolation_level) for c in platform.principal(reader).consumes),
            lag_groups=tuple(
                sorted(
                    (c.group, c.topic)
                    for p in platform.principals
                    if p.kind != "platform"
                    for c in p.consumes
                    if c.group_pattern == "literal"
                )
            ),
            transactional=frozenset(
                f.topic for p in platform.principals for f in p.produces if f.transactional
            ),
            app_groups=frozenset(c.group for a in platform.apps for c in platform.principal(a.name).consumes),
            producer=producer,
            reader=reader,
            signals_app=app,
        )

    def reader_group(self, topic: str) -> str:
        for t, group in self.reader_groups:
            if t == topic:
                return group
        raise KeyError(f"{self.reader} does not consume {topic} in this stack")

    def reader_isolation_level(self, topic: str) -> str:
        return dict(self.reader_isolation).get(topic, "read_committed")


# ---- small statistics ---------------------------------------------------------------------------------------


class RateMeter:
    """Events per second over the last few seconds."""

    def __init__(self, window: float = RATE_WINDOW_S) -> None:
        self.window = window
        self.total = 0
        self._marks: deque[tuple[float, int]] = deque()

    def add(self, n: int = 1, now: float | None = None) -> None:
        self.total += n
        self._marks.append((time.monotonic() if now is None else now, n))

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        while self._marks and self._marks[0][0] < now - self.window:
            self._marks.popleft()
        return sum(n for _, n in self._marks) / self.window


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by the nearest-rank method; None for no values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


@dataclass(frozen=True)
class Latency:
    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, values: Iterable[float]) -> Latency:
        ordered = sorted(values)
        return cls(
            len(ordered),
            percentile(ordered, 50),
            percentile(ordered, 95),
            percentile(ordered, 99),
            ordered[-1] if ordered else None,
        )

    def text(self) -> str:
        if not self.count:
            return "no samples yet"
        return (
            f"p50 {_ms(self.p50)}  p95 {_ms(self.p95)}  p99 {_ms(self.p99)}  max {_ms(self.max)}  "
            f"(n={self.count})"
        )


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.2f}s" if value >= 1000 else f"{value:.0f}ms"


# ---- the monitor ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupLag:
    group: str
    topic: str
    lag: int | None  # None: the group has committed nothing yet


@dataclass(frozen=True)
class Snapshot:
    """Everything the console shows at one moment."""

    uptime_s: float
    rates: Mapping[str, float]  # raw, signals, dead_letters, features: per second, recent
    totals: Mapping[str, int]  # seen during this run
    latency_recent: Latency
    latency_run: Latency
    lags: tuple[GroupLag, ...]
    dead_letter_reasons: Mapping[str, int]
    latest_signals: tuple[str, ...]
    latest_features: tuple[str, ...]
    errors: tuple[str, ...]


STREAMS = ("raw", "signals", "dead_letters", "features")
STREAM_LABELS = {
    "raw": "raw events in",
    "signals": "signals out",
    "dead_letters": "dead letters",
    "features": "features",
}


class Monitor:
    """Reads signals, features and dead letters and polls offsets, in background threads, until `stop()`.

    `reader_config` / `admin_config` / `triage_config` are librdkafka settings of the reader principal, the
    admin (offsets, lag) and the dead letters' declared reader;
    `since_ms` is the epoch time from which raw events count for latency (the start of this run).
    """

    def __init__(
        self,
        platform: Platform,
        reader_config: Mapping[str, Any],
        admin_config: Mapping[str, Any],
        registry_url: str,
        *,
        since_ms: int | None = None,
        offsets_interval: float = 1.0,
        triage_config: Mapping[str, Any] | None = None,
        latency_histogram: Histogram | None = None,
        registry_auth: Callable[[str], tuple[str, str] | None] | None = None,
    ) -> None:
        self.topology = Topology.of(platform)
        # The reader's exported histogram (scraped by the local Prometheus), fed with every latency seen.
        self.latency_histogram = latency_histogram
        # principal -> (user, password) at the schema registry: records are decoded as the reading principal.
        self.registry_auth = registry_auth or (lambda principal: None)
        self.triage_config = dict(triage_config) if triage_config is not None else None
        self.reader_config = dict(reader_config)
        self.admin_config = dict(admin_config)
        self.registry_url = registry_url
        self.since_ms = int(time.time() * 1000) if since_ms is None else since_ms
        self.offsets_interval = offsets_interval
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._meters = {name: RateMeter() for name in STREAMS}
        self._raw_end: int | None = None
        self._latencies: list[float] = []
        self._recent_latencies: deque[tuple[float, float]] = deque()
        self._reasons: Counter[str] = Counter()
        self._signals: deque[str] = deque(maxlen=6)
        self._signal_ids: OrderedDict[Any, None] = OrderedDict()  # the newest event ids seen, oldest first
        self._features: deque[str] = deque(maxlen=6)
        self._latest_entity: str | None = (
            None  # of the newest feature record read: the sample lookup's entity
        )
        self._lags: tuple[GroupLag, ...] = ()
        self._partitions: dict[str, list[int]] = {}
        self.polls = 0  # completed rounds of offset polling
        self._errors: deque[str] = deque(maxlen=3)
        self._assigned: dict[str, threading.Event] = {}

    # ---- lifecycle ---------------------------------------------------------------------------------------

    def start(self, assignment_timeout: float = 30.0) -> Monitor:
        """Start reading; return once the consumers have their partitions (so nothing produced after is missed)."""
        t = self.topology
        readers = [
            ("signals", t.signals, self._on_signal),
            ("features", t.features, self._on_feature),
        ]
        for name, topic, handler in readers:
            self._assigned[name] = threading.Event()
            self._spawn(name, self._consume_group, name, topic, handler)
        self._assigned["dead_letters"] = threading.Event()
        self._spawn("dead_letters", self._consume_dead_letters)
        self._assigned["offsets"] = threading.Event()  # the raw topic's end offsets: the baseline of "raw in"
        self._spawn("offsets", self._poll_offsets)
        deadline = time.monotonic() + assignment_timeout
        for name, event in self._assigned.items():
            if not event.wait(max(0.0, deadline - time.monotonic())):
                self._error(f"{name}: not ready after {assignment_timeout:.0f}s")
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the readers, waiting up to `timeout` seconds in all (they are daemon threads: a reader stuck
        on a broker that is gone does not hold the program)."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._threads.clear()

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=f"monitor-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _error(self, message: str) -> None:
        with self._lock:
            self._errors.append(f"{time.strftime('%H:%M:%S')} {message}")

    # ---- readers -----------------------------------------------------------------------------------------

    def _consumer(self, config: Mapping[str, Any], group: str, isolation: str) -> Consumer:
        return Consumer(
            {
                **config,
                "group.id": group,
                "isolation.level": isolation,
                "auto.offset.reset": "latest",
                "enable.auto.commit": True,
                "auto.commit.interval.ms": 1000,  # so the lag shown is the reader's, not the commit interval's
                "error_cb": lambda err: self._error(f"{group}: {err}"),
            }
        )

    def _consume_group(self, name: str, topic: str, handler: Callable[[dict[str, Any], int], None]) -> None:
        group = self.topology.reader_group(topic)
        consumer = self._consumer(self.reader_config, group, self.topology.reader_isolation_level(topic))
        decode = AvroDeserializer(
            RegistryClient(self.registry_url, auth=self.registry_auth(self.topology.reader))
        )
        assigned = self._assigned[name]
        consumer.subscribe([topic], on_assign=lambda c, parts: assigned.set())
        try:
            while not self._stop.is_set():
                msg = consumer.poll(0.2)
                if msg is None:
                    continue
                if msg.error():
                    self._error(f"{topic}: {msg.error()}")
                    continue
                now_ms = int(time.time() * 1000)
                try:
                    record = decode(msg.value() or b"")
                except (WireFormatError, RuntimeError) as exc:
                    self._error(f"{topic} offset {msg.offset()}: {exc}")
                    continue
                handler(record, now_ms)
        finally:
            with contextlib.suppress(KafkaException, RuntimeError):
                consumer.close()

    def _on_signal(self, record: dict[str, Any], now_ms: int) -> None:
        # An at-least-once reader may see a signal twice (an aborted transaction's copy, then its replay): the
        # agents act once per event id, and so does the console.
        event_id = record.get("event_id")
        if event_id in self._signal_ids:
            return
        self._signal_ids[event_id] = None
        if len(self._signal_ids) > MAX_SIGNAL_IDS:
            self._signal_ids.popitem(last=False)
        source = record.get("source") or {}
        produced = source.get("timestamp")
        latency = now_ms - produced if isinstance(produced, int) and produced >= self.since_ms else None
        line = (
            f"{_clock(record.get('occurred_at'))}  {record.get('agent_id', '?'):<14} "
            f"{record.get('event_type', '?'):<18} {record.get('entity_id', '')[:16]:<16} "
            f"{'error' if record.get('is_error') else 'ok':<5} "
            f"latency {_ms(latency) if latency is not None else '(earlier run)'}"
        )
        with self._lock:
            self._meters["signals"].add()
            self._signals.appendleft(line)
            if latency is not None:
                if self.latency_histogram is not None:
                    self.latency_histogram.labels(topic=self.topology.signals).observe(latency / 1000)
                if len(self._latencies) < MAX_SAMPLES:
                    self._latencies.append(float(latency))
                self._recent_latencies.append((time.monotonic(), float(latency)))

    def _on_feature(self, record: dict[str, Any], now_ms: int) -> None:
        count = int(record.get("event_count") or 0)
        line = (
            f"{str(record.get('entity_id', '?'))[:16]:<16} "
            f"[{_clock(record.get('window_start'))}, {_clock(record.get('window_end'))})  "
            f"events {count:<4} errors {record.get('error_count', 0):<3} "
            f"({float(record.get('error_rate') or 0.0):.0%})  agents {record.get('distinct_agents', 0)}  "
            f"last {record.get('last_event_type', '?')}"
        )
        with self._lock:
            self._meters["features"].add()
            self._features.appendleft(line)
            if isinstance(record.get("entity_id"), str):
                self._latest_entity = record["entity_id"]

    def latest_feature_entity(self) -> str | None:
        """The entity of the newest feature record read (what the console looks up as an agent would)."""
        with self._lock:
            return self._latest_entity

    def _consume_dead_letters(self) -> None:
        topic = self.topology.dead_letters
        triage = self.topology.triage
        reader = self.triage_config if self.triage_config is not None and triage else self.admin_config
        consumer = Consumer(
            {
                **reader,
                # Required by the client, never joined or committed: partitions are assigned, not subscribed.
                "group.id": triage[1] if triage and self.triage_config is not None else "headwater-console",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "error_cb": lambda err: self._error(f"dead letters: {err}"),
            }
        )
        as_principal = triage[0] if triage and self.triage_config is not None else self.topology.reader
        decode = AvroDeserializer(RegistryClient(self.registry_url, auth=self.registry_auth(as_principal)))
        try:
            metadata = consumer.list_topics(topic, timeout=10)
            partitions = sorted(metadata.topics[topic].partitions)
            consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in partitions])
            self._assigned["dead_letters"].set()
            while not self._stop.is_set():
                msg = consumer.poll(0.2)
                if msg is None:
                    continue
                if msg.error():
                    self._error(f"{topic}: {msg.error()}")
                    continue
                try:
                    record = decode(msg.value() or b"")
                    reason = str(record.get("reason_code") or "unknown")
                except (WireFormatError, RuntimeError) as exc:
                    reason = "undecodable"
                    self._error(f"{topic} offset {msg.offset()}: {exc}")
                with self._lock:
                    self._meters["dead_letters"].add()
                    self._reasons[reason] += 1
        except KafkaException as exc:
            self._error(f"dead letters: {exc}")
        finally:
            with contextlib.suppress(KafkaException, RuntimeError):
                consumer.close()

    # ---- offsets and lag ---------------------------------------------------------------------------------

    def _poll_offsets(self) -> None:
        config: dict[str, Any] = {**self.admin_config, "error_cb": lambda err: None}
        admin = AdminClient(config)
        partitions: dict[str, list[int]] = {}
        while not self._stop.is_set():
            try:
                topics = {self.topology.raw, *(topic for _, topic in self.topology.lag_groups)}
                if set(partitions) != topics:
                    md = admin.list_topics(timeout=10)
                    partitions = {t: sorted(md.topics[t].partitions) for t in topics if t in md.topics}
                ends = self._end_offsets(admin, partitions)
                raw_end = sum(
                    ends.get((self.topology.raw, p), 0) for p in partitions.get(self.topology.raw, [])
                )
                lags = tuple(
                    self._lag(admin, group, topic, partitions, ends)
                    for group, topic in self.topology.lag_groups
                )
                with self._lock:
                    if self._raw_end is not None and raw_end > self._raw_end:
                        self._meters["raw"].add(raw_end - self._raw_end)
                    self._raw_end = raw_end
                    self._lags = lags
                    self._partitions = dict(partitions)
                    self.polls += 1
                self._assigned["offsets"].set()
            except (KafkaException, RuntimeError) as exc:
                self._error(f"offsets: {exc}")
            self._stop.wait(self.offsets_interval)

    @staticmethod
    def _end_offsets(admin: AdminClient, partitions: Mapping[str, list[int]]) -> dict[tuple[str, int], int]:
        request = {TopicPartition(t, p): OffsetSpec.latest() for t, ps in partitions.items() for p in ps}
        if not request:
            return {}
        futures = admin.list_offsets(
            request, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=10
        )
        return {(tp.topic, tp.partition): int(f.result().offset) for tp, f in futures.items()}

    @staticmethod
    def _lag(
        admin: AdminClient,
        group: str,
        topic: str,
        partitions: Mapping[str, list[int]],
        ends: Mapping[tuple[str, int], int],
    ) -> GroupLag:
        request = [
            ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in partitions.get(topic, [])])
        ]
        result = admin.list_consumer_group_offsets(request, request_timeout=10)[group].result()
        committed = {tp.partition: tp.offset for tp in result.topic_partitions if tp.offset >= 0}
        if not committed:
            return GroupLag(group, topic, None)
        lag = sum(max(0, ends.get((topic, p), 0) - committed.get(p, 0)) for p in partitions.get(topic, []))
        return GroupLag(group, topic, lag)

    # ---- reading the figures -----------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        now = time.monotonic()
        with self._lock:
            while self._recent_latencies and self._recent_latencies[0][0] < now - LATENCY_WINDOW_S:
                self._recent_latencies.popleft()
            return Snapshot(
                uptime_s=now - self.started,
                rates={name: meter.rate(now) for name, meter in self._meters.items()},
                totals={name: meter.total for name, meter in self._meters.items()},
                latency_recent=Latency.of(v for _, v in self._recent_latencies),
                latency_run=Latency.of(self._latencies),
                lags=self._lags,
                dead_letter_reasons=dict(self._reasons.most_common()),
                latest_signals=tuple(self._signals),
                latest_features=tuple(self._features),
                errors=tuple(self._errors),
            )

    def behind(self) -> dict[str, int | None]:
        """The groups consumed in this run that have not caught up yet, with their lag (None: nothing committed).

        On a topic written in transactions, the last commit marker of each partition sits after the last
        record; a Flink source commits the offset after the record it read, never past that marker, so up
        to one offset per partition counts as caught up.
        """
        with self._lock:
            lags, partitions = self._lags, self._partitions
        # Only groups something in this run consumes with: a declared group nobody runs locally (the
        # dead letters' triage, read here by assignment) never commits and is not waited for.
        active = self.topology.app_groups | {group for _, group in self.topology.reader_groups}
        out: dict[str, int | None] = {}
        for entry in lags:
            if entry.group not in active:
                continue
            allowed = (
                len(partitions.get(entry.topic, ())) if entry.topic in self.topology.transactional else 0
            )
            if entry.lag is None or entry.lag > allowed:
                out[entry.group] = entry.lag
        return out


def _clock(epoch_ms: Any) -> str:
    if not isinstance(epoch_ms, int):
        return "--:--:--"
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%H:%M:%S")


# ---- rendering ----------------------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def render(
    snap: Snapshot,
    *,
    title: str,
    producer: Mapping[str, Any] | None,
    components: Sequence[str],
    footer: str,
    prometheus: PromFigures | None = None,
    features: Sequence[str] | None = None,
) -> list[str]:
    """The full-screen view as lines (no colours, no escape codes).

    With `prometheus`, consumer lag and the latency quantiles shown are those the local Prometheus holds
    (what the alerts read); the monitor's own figures remain for the exact per-run latency.
    """
    lines = [f"{title}  up {_duration(snap.uptime_s)}", ""]
    lines.append(f"  {'stream':<16}{'per second':>12}{'this run':>12}")
    for name in STREAMS:
        lines.append(f"  {STREAM_LABELS[name]:<16}{snap.rates[name]:>12.1f}{snap.totals[name]:>12}")
    if producer is not None:
        malformed = producer.get("malformed", {})
        lines.append(
            f"  producer: {producer['sent']} sent ({producer['valid']} valid, {producer['duplicates']} duplicates, "
            f"{sum(malformed.values())} malformed), {producer['delivered']} delivered, {producer['failed']} failed, "
            f"{producer['queue_full_retries']} queue-full retries"
        )
    lines += ["", "  end-to-end latency (raw produced -> signal visible to a read_committed consumer)"]
    if prometheus is not None:
        lines.append(f"    Prometheus (histogram, {prometheus_window()})  {prometheus.latency_text()}")
    lines.append(f"    last {LATENCY_WINDOW_S:.0f}s  {snap.latency_recent.text()}")
    lines.append(f"    this run  {snap.latency_run.text()}")
    if prometheus is not None:
        lines += _prometheus_lines(prometheus)
    else:
        lines += ["", f"  {'consumer group':<26}{'topic':<30}{'lag':>8}"]
        for entry in snap.lags:
            lag = "-" if entry.lag is None else str(entry.lag)
            lines.append(f"  {entry.group:<26}{entry.topic:<30}{lag:>8}")
        if not snap.lags:
            lines.append("  (waiting for offsets)")
    reasons = "  ".join(f"{r} {n}" for r, n in snap.dead_letter_reasons.items()) or "none yet"
    lines += [
        "",
        f"  dead-letter reasons: {reasons}",
        "",
        "  latest signals (event time UTC, agent, type, entity, status, latency)",
    ]
    lines += [f"    {s}" for s in snap.latest_signals] or ["    (none yet)"]
    lines += ["", "  latest features (closed event-time windows, UTC)"]
    lines += [f"    {f}" for f in snap.latest_features] or ["    (none yet: the first window closes later)"]
    if features is not None:
        lines += [
            "",
            "  online features through the feature server (freshness: age of the newest window served)",
        ]
        lines += [f"    {f}" for f in features]
    if components:
        lines += ["", "  processes"] + [f"    {c}" for c in components]
    if snap.errors:
        lines += ["", "  recent errors"] + [f"    {e}" for e in snap.errors]
    lines += ["", footer]
    return lines


def prometheus_window() -> str:
    from headwater.local.observe import LATENCY_WINDOW

    return f"rate over {LATENCY_WINDOW}"


def _prometheus_lines(prom: PromFigures) -> list[str]:
    age = "never yet" if prom.age_s is None else f"{prom.age_s:.0f}s ago"
    lines = ["", f"  consumer lag from Prometheus ({prom.url}, kafka_consumergroup_lag, read {age})"]
    lines.append(f"  {'consumer group':<26}{'topic':<30}{'lag':>8}")
    for entry in prom.lags:
        lines.append(f"  {entry.group:<26}{entry.topic:<30}{entry.lag:>8.0f}")
    if not prom.lags:
        lines.append("  (no lag series yet)")
    up = "  ".join(
        f"{job} {ok}/{total}" for job, ok_total in prom.targets_up.items() for ok, total in [ok_total]
    )
    lines.append(f"  targets up: {up or '-'}   alerts firing: {', '.join(prom.firing) or 'none'}")
    if prom.error:
        lines.append(f"  Prometheus query failed: {prom.error}")
    return lines


def status_line(snap: Snapshot, prometheus: PromFigures | None = None) -> str:
    """One plain line for logs: rates, lags, recent latency (lag and latency from Prometheus when given)."""
    rates = " ".join(f"{name}={snap.rates[name]:.1f}/s" for name in STREAMS)
    if prometheus is not None:
        lags = " ".join(f"{x.group}={x.lag:.0f}" for x in prometheus.lags)
        lat = " ".join(
            f"p{round(q * 100)}={'-' if v is None else f'{v:.2f}s'}"
            for q, v in sorted(prometheus.latency_s.items())
        )
        return f"[+{snap.uptime_s:.0f}s] {rates} | prometheus lag {lags or '-'} | prometheus latency {lat or 'none'}"
    lags = " ".join(f"{e.group}={'-' if e.lag is None else e.lag}" for e in snap.lags)
    lat_ = snap.latency_recent
    latency = f"p50={_ms(lat_.p50)} p95={_ms(lat_.p95)} p99={_ms(lat_.p99)}" if lat_.count else "none"
    return f"[+{snap.uptime_s:.0f}s] {rates} | lag {lags or '-'} | latency {latency}"


class FeatureProbe:
    """Agents' view of the online store, through the feature server, in a background thread: per feature view
    the age of the newest window it serves (the entity of the newest feature record the console read, looked
    up every `interval` seconds), and that lookup itself as a sample answer with its provenance."""

    def __init__(self, url: str, topic: str, entity: Callable[[], str | None], interval: float = 2.0) -> None:
        self.url = url.rstrip("/")
        self.topic = topic  # the feature topic the console reads: its entities belong to this topic's views
        self.entity = entity
        self.interval = interval
        self._lines: list[str] = ["(waiting for the feature server)"]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> FeatureProbe:
        self._thread = threading.Thread(target=self._run, name="feature-probe", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    def _get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=5) as answer:
                return int(answer.status), json.loads(answer.read())
        except urllib.error.HTTPError as err:
            return int(err.code), json.loads(err.read() or b"{}")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                found = self.probe()
            except (OSError, ValueError) as exc:
                found = [f"feature server {self.url} not answering: {type(exc).__name__}: {exc}"]
            with self._lock:
                self._lines = found
            self._stop.wait(self.interval)

    def probe(self) -> list[str]:
        """One round: a line per view, then the sample lookup."""
        _, listing = self._get("/features")
        entity = self.entity()
        lines: list[str] = []
        sample: list[str] = []
        for view in listing.get("views", []):
            name, budget = view["view"], view["freshness_s"]
            if view["topic"] != self.topic or entity is None:
                lines.append(f"{name:<22} no entity of this view read by the console yet")
                continue
            t0 = time.perf_counter()
            status, body = self._get(f"/features/{view['feature_set']}/{view['version']}/{entity}")
            took_ms = (time.perf_counter() - t0) * 1000
            if status != 200:
                lines.append(f"{name:<22} {body.get('error', status)}: {body.get('detail', '')}"[:160])
                continue
            state = "fresh" if body["fresh"] else "STALE"
            lines.append(
                f"{name:<22} newest window served {body['freshness_s']:.1f}s old (budget {budget}s, {state})"
            )
            prov = body["provenance"]
            scalars = [
                (k, v)
                for k, v in body["values"].items()
                if not k.startswith("window_") and not (isinstance(v, str) and v[:1] in "{[")
            ]
            values = "  ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in scalars[:4])
            sample.append(
                f"GET /features/{view['feature_set']}/{view['version']}/{entity} -> {took_ms:.1f} ms: {values}; "
                f"from {prov['source_topic']}[{prov['source_partition']}]@{prov['source_offset']}"
            )
        return lines + (["sample agent lookup:", *sample] if sample else [])


class Console:
    """Draws the monitor's figures: as a live full-screen view on a terminal, or as periodic plain lines.

    The terminal view is rich's `Live` on the alternate screen: it is cropped to the terminal's height and
    follows its resizes, and closing it gives back the terminal as it was (cursor shown, the start-up lines
    still there), so the run's summary prints below them. `render()` decides what is shown, as plain lines.
    """

    def __init__(
        self,
        monitor: Monitor,
        *,
        title: str,
        producer: Callable[[], Mapping[str, Any]] | None = None,
        components: Callable[[], Sequence[str]] = lambda: (),
        footer: str = "Ctrl-C stops everything",
        out: TextIO | None = None,
        tty: bool | None = None,
        refresh: float = 0.25,
        line_every: float = 5.0,
        prometheus: Callable[[], PromFigures] | None = None,
        features: Callable[[], Sequence[str]] | None = None,
    ) -> None:
        self.monitor = monitor
        self.prometheus = prometheus
        self.features = features
        self.title = title
        self.producer = producer
        self.components = components
        self.footer = footer
        self.out = out or sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self.interval = refresh if self.tty else line_every
        self._next = 0.0
        self._live: Live | None = None

    def tick(self) -> None:
        """Draw if it is time to (call it often)."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval
        snap = self.monitor.snapshot()
        prom = self.prometheus() if self.prometheus else None
        if not self.tty:
            print(status_line(snap, prom), file=self.out, flush=True)
            return
        lines = render(
            snap,
            title=self.title,
            producer=self.producer() if self.producer else None,
            components=self.components(),
            footer=self.footer,
            prometheus=prom,
            features=self.features() if self.features else None,
        )
        # No markup: topic names and errors are shown as they are; long lines are cut, not wrapped.
        view = Text("\n".join(lines), no_wrap=True, overflow="ellipsis")
        if self._live is None:
            terminal = Terminal(file=self.out, force_terminal=True, highlight=False)
            self._live = Live(
                view,
                console=terminal,
                screen=True,
                auto_refresh=False,
                vertical_overflow="crop",
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start(refresh=True)
        else:
            self._live.update(view, refresh=True)

    def close(self) -> None:
        """Give the terminal back (once; later calls do nothing)."""
        if self._live is not None:
            live, self._live = self._live, None
            live.stop()


# ---- the summary of a run -----------------------------------------------------------------------------------


@dataclass
class RunSummary:
    """What one `local up` run did, as printed at the end and written to `<state>/last-run.json`."""

    stack: str
    seconds: float  # how long the producer ran (or the platform, without it)
    producer: Mapping[str, Any] | None
    totals: Mapping[str, int]
    latency: Latency
    dead_letter_reasons: Mapping[str, int]
    start_seconds: Mapping[str, float]
    resumed: Mapping[str, str | None] = field(default_factory=dict)
    final_lags: Mapping[str, int | None] = field(default_factory=dict)
    prometheus: Mapping[str, Any] | None = None  # what the local Prometheus held at the end

    def throughput(self) -> dict[str, float]:
        secs = max(self.seconds, 1e-9)
        return {name: self.totals.get(name, 0) / secs for name in STREAMS}

    def as_dict(self) -> dict[str, Any]:
        lat = self.latency
        return {
            "stack": self.stack,
            "seconds": round(self.seconds, 3),
            "producer": dict(self.producer) if self.producer is not None else None,
            "totals": dict(self.totals),
            "throughput_per_s": {k: round(v, 3) for k, v in self.throughput().items()},
            "latency_ms": {
                "count": lat.count,
                "p50": lat.p50,
                "p95": lat.p95,
                "p99": lat.p99,
                "max": lat.max,
            },
            "dead_letter_reasons": dict(self.dead_letter_reasons),
            "start_seconds": {k: round(v, 2) for k, v in self.start_seconds.items()},
            "resumed_from": dict(self.resumed),
            "final_lags": dict(self.final_lags),
            "prometheus": dict(self.prometheus) if self.prometheus is not None else None,
        }


def format_summary(s: RunSummary) -> str:
    tp = s.throughput()
    lines = [f"summary of the local run (stack {s.stack}, {s.seconds:.1f}s of traffic)"]
    if s.producer is not None:
        p = s.producer
        malformed = ", ".join(f"{k} {v}" for k, v in p.get("malformed", {}).items()) or "none"
        lines.append(
            f"  events produced:   {p['sent']} ({p['valid']} valid, {p['duplicates']} duplicates, malformed: "
            f"{malformed}); {p['delivered']} delivered, {p['failed']} failed"
        )
    lines.append(f"  raw events in:     {s.totals.get('raw', 0)}  ({tp['raw']:.1f}/s)")
    lines.append(f"  signals:           {s.totals.get('signals', 0)}  ({tp['signals']:.1f}/s)")
    reasons = ", ".join(f"{r} {n}" for r, n in s.dead_letter_reasons.items()) or "none"
    lines.append(f"  dead letters:      {s.totals.get('dead_letters', 0)}  ({reasons})")
    lines.append(f"  features:          {s.totals.get('features', 0)}  ({tp['features']:.2f}/s)")
    lines.append(f"  throughput:        {tp['raw']:.1f} raw events/s in, {tp['signals']:.1f} signals/s out")
    lines.append(f"  end-to-end latency: {s.latency.text()}")
    if s.start_seconds:
        lines.append("  start times:       " + ", ".join(f"{k} {v:.1f}s" for k, v in s.start_seconds.items()))
    if s.resumed:
        lines.append(
            "  Flink jobs:        "
            + ", ".join(
                f"{app} {'restored from ' + cp if cp else 'started fresh'}" for app, cp in s.resumed.items()
            )
        )
    if s.final_lags:
        lines.append(
            "  lag at the end:    "
            + ", ".join(f"{g} {'-' if v is None else v}" for g, v in s.final_lags.items())
        )
    if s.prometheus:
        p = s.prometheus
        lat = "  ".join(f"{k} {'-' if v is None else f'{v:.2f}s'}" for k, v in p.get("latency_s", {}).items())
        lines.append(
            f"  Prometheus:        {p.get('url')}: latency {lat or '-'}; scrapes {p.get('scrapes', {})}"
        )
        lines.append(
            "  lag (Prometheus):  " + (", ".join(f"{k} {v:.0f}" for k, v in p.get("lag", {}).items()) or "-")
        )
    return "\n".join(lines)
