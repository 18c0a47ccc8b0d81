"""The Flink functions as plain objects: what they emit and which metrics they count, with a fake runtime."""

from __future__ import annotations

from collections import Counter
from typing import Any

from flink_events import BASE_MS, contract, dead_letters_codec, event, raw, signal_bytes, signals_codec
from pyflink.common import Row

from flink_apps.agent_events import pipeline as events_pipeline
from flink_apps.agent_events.logic import AgentEvent
from flink_apps.feature_aggregator import pipeline as features_pipeline


class FakeRuntime:
    """Counters by name and one value state, like a single key's view of a Flink runtime context."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.state: Any = None
        self.ttl_ms: int | None = None
        runtime = self

        class _Counter:
            def __init__(self, name: str) -> None:
                self.name = name

            def inc(self, n: int = 1) -> None:
                runtime.counts[self.name] += n

        class _Group:
            def counter(self, name: str) -> _Counter:
                return _Counter(name)

        class _State:
            def value(self) -> Any:
                return runtime.state

            def update(self, value: Any) -> None:
                runtime.state = value

        self._group = _Group()
        self._state = _State()

    def get_metrics_group(self) -> Any:
        return self._group

    def get_state(self, descriptor: Any) -> Any:
        ttl = descriptor._ttl_config  # PyFlink offers no getter
        assert ttl is not None, "dedup state must expire"
        self.ttl_ms = ttl.get_ttl().to_milliseconds()
        return self._state


# The functions under test ignore their context argument.
NO_CONTEXT: Any = None


def source_row(value: bytes | None, offset: int) -> Row:
    return Row("agents.events.raw.v1", 0, offset, BASE_MS, value)


def test_validation_counts_valid_and_invalid_and_routes_rejects_to_the_side_output() -> None:
    runtime: Any = FakeRuntime()
    fn = events_pipeline.ValidateEvents(contract(), dead_letters_codec())
    fn.open(runtime)
    outputs = [
        out
        for i, v in enumerate([raw(event("a")), b"{", None])
        for out in fn.process_element(source_row(v, i), NO_CONTEXT)
    ]
    assert runtime.counts == Counter({events_pipeline.VALID: 1, events_pipeline.INVALID: 2})
    assert isinstance(outputs[0], AgentEvent)
    tagged = [o for o in outputs if isinstance(o, tuple) and not isinstance(o, Row)]
    assert len(tagged) == 2
    assert {dead_letters_codec().decode(row[1])["reason_code"] for _, row in tagged} == {
        "malformed_json",
        "empty_record",
    }


def test_dedup_passes_the_first_and_counts_the_rest() -> None:
    runtime: Any = FakeRuntime()
    fn = events_pipeline.Deduplicate(ttl_ms=60_000)
    fn.open(runtime)
    first = contract().check(events_pipeline.to_source_record(source_row(raw(event("a")), 0)))
    assert isinstance(first, AgentEvent)
    emitted = [e for _ in range(3) for e in fn.process_element(first, NO_CONTEXT)]
    assert emitted == [first]
    assert runtime.counts[events_pipeline.DUPLICATES] == 2
    assert runtime.ttl_ms == 60_000


def test_signal_encoding_keys_by_agent_and_stamps_event_time() -> None:
    ev = contract().check(events_pipeline.to_source_record(source_row(raw(event("a", agent_id="ag-9")), 0)))
    assert isinstance(ev, AgentEvent)
    key, value, timestamp = events_pipeline.EncodeSignal(signals_codec()).map(ev)
    assert (key, timestamp) == (b"ag-9", BASE_MS)
    assert signals_codec().decode(value)["event_id"] == "a"


def test_signal_decoding_counts_what_it_cannot_read() -> None:
    runtime: Any = FakeRuntime()
    fn = features_pipeline.DecodeSignals(signals_codec())
    fn.open(runtime)
    rows = [
        Row("agents.signals.v1", 1, 5, BASE_MS, signal_bytes(event("a"))),
        Row("agents.signals.v1", 1, 6, BASE_MS, b"junk"),
    ]
    decoded = [s for row in rows for s in fn.process_element(row, NO_CONTEXT)]
    assert [(s.source_partition, s.source_offset) for s in decoded] == [(1, 5)]
    assert runtime.counts == Counter({features_pipeline.DECODED: 1, features_pipeline.UNDECODABLE: 1})


def test_late_signals_are_counted() -> None:
    runtime: Any = FakeRuntime()
    fn = features_pipeline.CountLate()
    fn.open(runtime)
    late: Any = object()
    assert list(fn.process_element(late, NO_CONTEXT)) == []
    assert runtime.counts[features_pipeline.LATE] == 1
