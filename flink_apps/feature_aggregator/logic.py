"""Activity features per entity and event-time window. Pure Python: no Flink here.

The pipeline feeds `Signal`s of one (entity, window) into an `Accumulator` and turns it into the
features.agent_activity.v1 record with `features()`. `compute_features()` is the same computation over a
finite batch, for checks and backfills.

Trace context: each signal carries the `traceparent` its record's header had (validated natively, or None). A
window's record continues the trace of its newest signal (by event time, then partition and offset: the same
whatever order the signals came in) and links the newest signal of each of up to `MAX_LINKS` distinct traces
(`Accumulator.trace()`); the span id itself is derived in Flink SQL (`flink_apps.common.tracing`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

FEATURE_SET = "agent_activity"
# Bump when the meaning of a feature changes, so consumers can tell old values from new ones.
FEATURE_SET_VERSION = 1
PIPELINE = "feature_aggregator"

MAX_LINKS = 16  # traces a window's record names in its `tracelinks` header (flink_apps.common.tracing)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE_MS = 60_000


@dataclass(frozen=True)
class Signal:
    """The fields of an agents.signals.v1 record the features need, plus where the signal was read."""

    entity_id: str
    agent_id: str
    event_type: str
    event_category: str
    is_error: bool
    occurred_at_ms: int
    source_topic: str
    source_partition: int
    source_offset: int
    session_id: str | None = None
    duration_ms: int | None = None
    traceparent: str | None = None  # its record's header, when it had a valid one

    @property
    def order(self) -> tuple[int, int, int]:
        """Newest last: event time, then partition and offset (a total order over one topic's signals)."""
        return (self.occurred_at_ms, self.source_partition, self.source_offset)

    @classmethod
    def from_record(
        cls,
        record: Mapping[str, Any],
        topic: str,
        partition: int,
        offset: int,
        traceparent: str | None = None,
    ) -> Signal:
        """Build from a decoded signal record; raises ValueError when a needed field is missing or wrong."""
        try:
            occurred = record["occurred_at"]
            return cls(
                entity_id=_text(record["entity_id"]),
                agent_id=_text(record["agent_id"]),
                event_type=_text(record["event_type"]),
                event_category=_text(record["event_category"]),
                is_error=bool(record["is_error"]),
                occurred_at_ms=to_millis(occurred),
                source_topic=topic,
                source_partition=partition,
                source_offset=offset,
                session_id=record.get("session_id"),
                duration_ms=record.get("duration_ms"),
                traceparent=traceparent,
            )
        except KeyError as exc:
            raise ValueError(f"signal record lacks field {exc.args[0]!r}") from None


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def to_millis(value: Any) -> int:
    """Epoch millis from an int or from the aware datetime Avro's timestamp-millis decodes to."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("timestamp without a time zone")
        return (value - _EPOCH) // timedelta(milliseconds=1)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"expected a timestamp, got {value!r}")


def window_bounds(timestamp_ms: int, size_ms: int) -> tuple[int, int]:
    """The tumbling window [start, end) holding `timestamp_ms`; windows align to the epoch, as Flink's do."""
    start = timestamp_ms - (timestamp_ms % size_ms)
    return start, start + size_ms


def is_late(timestamp_ms: int, watermark_ms: int, size_ms: int, allowed_lateness_ms: int = 0) -> bool:
    """Whether an event arriving at `watermark_ms` misses its window (it has fired and been purged)."""
    _, end = window_bounds(timestamp_ms, size_ms)
    return end - 1 + allowed_lateness_ms <= watermark_ms


@dataclass
class PartitionRange:
    min_offset: int
    max_offset: int
    count: int


@dataclass(frozen=True)
class WindowTrace:
    """The trace context of a window's record: its newest signal's traceparent (None: it had none) and
    position, from which the hop's span id is derived, and the traceparents it links (newest first)."""

    parent: str | None
    topic: str
    partition: int
    offset: int
    links: tuple[str, ...]

    @property
    def links_header(self) -> str:
        return ",".join(self.links)


@dataclass
class Accumulator:
    """Running aggregates of one entity's signals in one window; mergeable, so order does not matter."""

    event_count: int = 0
    error_count: int = 0
    event_counts: dict[str, int] = field(default_factory=dict)
    category_counts: dict[str, int] = field(default_factory=dict)
    agents: set[str] = field(default_factory=set)
    sessions: set[str] = field(default_factory=set)
    duration_sum: int = 0
    duration_count: int = 0
    duration_max: int | None = None
    first_seen_ms: int | None = None
    last_seen_ms: int | None = None
    # Ties on last_seen_ms are broken by the event type's name, so the result is order-independent.
    last_event_type: str = ""
    source_topic: str = ""
    partitions: dict[int, PartitionRange] = field(default_factory=dict)
    # The newest signal: (order, topic, traceparent); and per trace id its newest signal's (order, traceparent),
    # the newest MAX_LINKS traces only (the newest MAX_LINKS of the whole window, whatever the order of adds).
    newest: tuple[tuple[int, int, int], str, str | None] | None = None
    links: dict[str, tuple[tuple[int, int, int], str]] = field(default_factory=dict)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # An accumulator pickled into a checkpoint before a field existed gets that field's default.
        self.__dict__.update(Accumulator().__dict__)
        self.__dict__.update(state)

    def _trace(self, order: tuple[int, int, int], topic: str, traceparent: str | None) -> None:
        if self.newest is None or order > self.newest[0]:
            self.newest = (order, topic, traceparent)
        if traceparent is not None:
            self._link(order, traceparent)

    def _link(self, order: tuple[int, int, int], traceparent: str) -> None:
        trace_id = traceparent[3:35]
        seen = self.links.get(trace_id)
        if seen is None or order > seen[0]:
            self.links[trace_id] = (order, traceparent)
        if len(self.links) > MAX_LINKS:
            kept = sorted(self.links.items(), key=lambda item: item[1][0], reverse=True)[:MAX_LINKS]
            self.links = dict(kept)

    def trace(self) -> WindowTrace:
        """The trace context of this window's record (see the module's doc)."""
        if self.newest is None:
            raise ValueError("no signals, so no trace")
        (_, partition, offset), topic, parent = self.newest
        links = sorted(self.links.values(), key=lambda item: item[0], reverse=True)
        return WindowTrace(parent, topic, partition, offset, tuple(tp for _, tp in links))

    def add(self, signal: Signal) -> Accumulator:
        self.event_count += 1
        self.error_count += int(signal.is_error)
        self.event_counts[signal.event_type] = self.event_counts.get(signal.event_type, 0) + 1
        self.category_counts[signal.event_category] = self.category_counts.get(signal.event_category, 0) + 1
        self.agents.add(signal.agent_id)
        if signal.session_id:
            self.sessions.add(signal.session_id)
        if signal.duration_ms is not None:
            self.duration_sum += signal.duration_ms
            self.duration_count += 1
            self.duration_max = max(self.duration_max or 0, signal.duration_ms)
        ts = signal.occurred_at_ms
        self.first_seen_ms = ts if self.first_seen_ms is None else min(self.first_seen_ms, ts)
        if self.last_seen_ms is None or (ts, signal.event_type) > (self.last_seen_ms, self.last_event_type):
            self.last_seen_ms, self.last_event_type = ts, signal.event_type
        self.source_topic = self.source_topic or signal.source_topic
        seen = self.partitions.get(signal.source_partition)
        if seen is None:
            self.partitions[signal.source_partition] = PartitionRange(
                signal.source_offset, signal.source_offset, 1
            )
        else:
            seen.min_offset = min(seen.min_offset, signal.source_offset)
            seen.max_offset = max(seen.max_offset, signal.source_offset)
            seen.count += 1
        self._trace(signal.order, signal.source_topic, signal.traceparent)
        return self

    def merge(self, other: Accumulator) -> Accumulator:
        self.event_count += other.event_count
        self.error_count += other.error_count
        for name, n in other.event_counts.items():
            self.event_counts[name] = self.event_counts.get(name, 0) + n
        for name, n in other.category_counts.items():
            self.category_counts[name] = self.category_counts.get(name, 0) + n
        self.agents |= other.agents
        self.sessions |= other.sessions
        self.duration_sum += other.duration_sum
        self.duration_count += other.duration_count
        if other.duration_max is not None:
            self.duration_max = max(self.duration_max or 0, other.duration_max)
        if other.first_seen_ms is not None:
            self.first_seen_ms = (
                other.first_seen_ms
                if self.first_seen_ms is None
                else min(self.first_seen_ms, other.first_seen_ms)
            )
        if other.last_seen_ms is not None and (
            self.last_seen_ms is None
            or (other.last_seen_ms, other.last_event_type) > (self.last_seen_ms, self.last_event_type)
        ):
            self.last_seen_ms, self.last_event_type = other.last_seen_ms, other.last_event_type
        self.source_topic = self.source_topic or other.source_topic
        for partition, theirs in other.partitions.items():
            mine = self.partitions.get(partition)
            if mine is None:
                self.partitions[partition] = PartitionRange(
                    theirs.min_offset, theirs.max_offset, theirs.count
                )
            else:
                mine.min_offset = min(mine.min_offset, theirs.min_offset)
                mine.max_offset = max(mine.max_offset, theirs.max_offset)
                mine.count += theirs.count
        if other.newest is not None and (self.newest is None or other.newest[0] > self.newest[0]):
            self.newest = other.newest
        for order, traceparent in other.links.values():
            self._link(order, traceparent)
        return self

    def features(self, entity_id: str, window_start_ms: int, window_end_ms: int) -> dict[str, Any]:
        """The features.agent_activity.v1 record for this window."""
        if self.event_count == 0 or self.first_seen_ms is None or self.last_seen_ms is None:
            raise ValueError(
                f"no signals for entity {entity_id!r} in window [{window_start_ms}, {window_end_ms})"
            )
        minutes = (window_end_ms - window_start_ms) / _MINUTE_MS
        return {
            "entity_id": entity_id,
            "window_start": window_start_ms,
            "window_end": window_end_ms,
            "event_count": self.event_count,
            "event_counts": dict(sorted(self.event_counts.items())),
            "category_counts": dict(sorted(self.category_counts.items())),
            "error_count": self.error_count,
            "error_rate": self.error_count / self.event_count,
            "events_per_minute": self.event_count / minutes,
            "errors_per_minute": self.error_count / minutes,
            "distinct_agents": len(self.agents),
            "distinct_sessions": len(self.sessions),
            "avg_duration_ms": self.duration_sum / self.duration_count if self.duration_count else None,
            "max_duration_ms": self.duration_max,
            "first_seen_at": self.first_seen_ms,
            "last_seen_at": self.last_seen_ms,
            "last_event_type": self.last_event_type,
            "provenance": {
                "feature_set": FEATURE_SET,
                "feature_set_version": FEATURE_SET_VERSION,
                "pipeline": PIPELINE,
                "source_topic": self.source_topic,
                "source_partitions": [
                    {
                        "partition": p,
                        "min_offset": r.min_offset,
                        "max_offset": r.max_offset,
                        "record_count": r.count,
                    }
                    for p, r in sorted(self.partitions.items())
                ],
            },
        }


def compute_features(signals: Iterable[Signal], size_ms: int) -> list[dict[str, Any]]:
    """Features of every (entity, window) in a finite batch of signals, ordered by window then entity."""
    accumulators: dict[tuple[int, str], Accumulator] = {}
    for signal in signals:
        start, _ = window_bounds(signal.occurred_at_ms, size_ms)
        accumulators.setdefault((start, signal.entity_id), Accumulator()).add(signal)
    return [
        acc.features(entity, start, start + size_ms) for (start, entity), acc in sorted(accumulators.items())
    ]
