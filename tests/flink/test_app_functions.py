"""The Flink functions as plain objects: what they emit and which metrics they count, with a fake runtime."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from flink_events import BASE_MS, contract, dead_letters_codec, event, raw, signal_bytes, signals_codec
from pyflink.common import Row

from flink_apps.agent_events import pipeline as events_pipeline
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
        return self._state


# The functions under test ignore their context argument.
NO_CONTEXT: Any = None


def source_row(value: bytes | None, offset: int) -> Row:
    return Row("agents.events.raw.v1", 0, offset, BASE_MS, value)


class FakeFunctionContext:
    """What a Python scalar function's `open` gets: a metric group."""

    def __init__(self, runtime: FakeRuntime) -> None:
        self.runtime = runtime

    def get_metric_group(self) -> Any:
        return self.runtime.get_metrics_group()


def test_checking_counts_valid_and_invalid_and_encodes_signals_or_dead_letters() -> None:
    runtime: Any = FakeRuntime()
    fn = events_pipeline.CheckEvents(contract(), signals_codec(), dead_letters_codec())
    context: Any = FakeFunctionContext(runtime)
    fn.open(context)
    when = datetime.fromtimestamp(BASE_MS / 1000, UTC)
    rows = [
        fn.eval(v, "agents.events.raw.v1", 3, i, when)
        for i, v in enumerate([raw(event("a", agent_id="ag-9", at_ms=BASE_MS - 5)), b"{", None])
    ]
    assert runtime.counts == Counter({events_pipeline.VALID: 1, events_pipeline.INVALID: 2})
    valid, event_id, event_time, key, value, ts = rows[0]
    assert (valid, event_id, event_time, key, ts) == (True, "a", BASE_MS - 5, b"ag-9", BASE_MS - 5)
    signal = signals_codec().decode(value)
    assert (signal["event_id"], signal["source"]["offset"], signal["source"]["timestamp"]) == ("a", 0, when)
    rejects = [dead_letters_codec().decode(r[4]) for r in rows[1:]]
    assert [r["reason_code"] for r in rejects] == ["malformed_json", "empty_record"]
    assert [(r["source_partition"], r["source_offset"]) for r in rejects] == [(3, 1), (3, 2)]
    # rejects are keyed by source partition, stamped with the source record's time, and never move the
    # watermark (event time 0)
    assert {(r[0], r[1], r[2], r[3], r[5]) for r in rows[1:]} == {(False, None, 0, b"3", BASE_MS)}


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
