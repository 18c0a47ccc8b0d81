"""Windowed activity features, without Flink."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from flink_events import BASE_MS, event, features_codec, signal_bytes, signals_codec

from flink_apps.feature_aggregator import logic
from flink_apps.feature_aggregator.logic import Accumulator, Signal

MIN = 60_000


def sig(
    offset: int, at_ms: int, *, entity: str = "e-1", event_type: str = "tool.called", **kw: object
) -> Signal:
    base = Signal(
        entity_id=entity,
        agent_id="agent-1",
        event_type=event_type,
        event_category=event_type.split(".")[0],
        is_error=event_type.endswith("failed"),
        occurred_at_ms=at_ms,
        source_topic="agents.signals.v1",
        source_partition=0,
        source_offset=offset,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_windows_align_to_the_epoch() -> None:
    assert logic.window_bounds(BASE_MS + 61_000, MIN) == (BASE_MS + MIN, BASE_MS + 2 * MIN)
    assert logic.window_bounds(BASE_MS, MIN) == (BASE_MS, BASE_MS + MIN)
    assert logic.window_bounds(BASE_MS - 1, MIN) == (BASE_MS - MIN, BASE_MS)


def test_late_means_the_window_has_fired_and_its_lateness_passed() -> None:
    end = BASE_MS + MIN
    assert not logic.is_late(BASE_MS + 5, watermark_ms=end - 2, size_ms=MIN)
    assert logic.is_late(BASE_MS + 5, watermark_ms=end - 1, size_ms=MIN)
    assert not logic.is_late(BASE_MS + 5, watermark_ms=end + 4_998, size_ms=MIN, allowed_lateness_ms=5_000)
    assert logic.is_late(BASE_MS + 5, watermark_ms=end + 4_999, size_ms=MIN, allowed_lateness_ms=5_000)


def test_features_of_one_window() -> None:
    acc = Accumulator()
    acc.add(sig(10, BASE_MS + 1_000, session_id="s1", duration_ms=100))
    acc.add(sig(11, BASE_MS + 30_000, event_type="tool.failed", session_id="s1", duration_ms=300))
    acc.add(
        sig(
            3,
            BASE_MS + 20_000,
            event_type="llm.responded",
            agent_id="agent-2",
            session_id="s2",
            source_partition=4,
        )
    )
    acc.add(sig(12, BASE_MS + 30_000, event_type="llm.requested"))
    out = acc.features("e-1", BASE_MS, BASE_MS + 2 * MIN)

    assert out["event_count"] == 4
    assert out["event_counts"] == {"llm.requested": 1, "llm.responded": 1, "tool.called": 1, "tool.failed": 1}
    assert out["category_counts"] == {"llm": 2, "tool": 2}
    assert out["error_count"] == 1
    assert out["error_rate"] == 0.25
    assert out["events_per_minute"] == 2.0  # a two-minute window
    assert out["errors_per_minute"] == 0.5
    assert (out["distinct_agents"], out["distinct_sessions"]) == (2, 2)
    assert (out["avg_duration_ms"], out["max_duration_ms"]) == (200.0, 300)
    assert (out["first_seen_at"], out["last_seen_at"]) == (BASE_MS + 1_000, BASE_MS + 30_000)
    assert (
        out["last_event_type"] == "tool.failed"
    )  # same millisecond as llm.requested: the name breaks the tie
    assert out["provenance"] == {
        "feature_set": "agent_activity",
        "feature_set_version": logic.FEATURE_SET_VERSION,
        "pipeline": "feature_aggregator",
        "source_topic": "agents.signals.v1",
        "source_partitions": [
            {"partition": 0, "min_offset": 10, "max_offset": 12, "record_count": 3},
            {"partition": 4, "min_offset": 3, "max_offset": 3, "record_count": 1},
        ],
    }
    decoded = features_codec().decode(features_codec().encode(out))
    assert decoded["provenance"] == out["provenance"]
    assert decoded["entity_id"] == "e-1"


def test_no_duration_gives_null_duration_features() -> None:
    out = Accumulator().add(sig(1, BASE_MS)).features("e-1", BASE_MS, BASE_MS + MIN)
    assert out["avg_duration_ms"] is None and out["max_duration_ms"] is None


def test_out_of_order_input_and_split_accumulators_give_the_same_features() -> None:
    signals = [
        sig(
            i,
            BASE_MS + (i * 7_919) % (3 * MIN),
            entity=f"e-{i % 3}",
            event_type=("tool.failed" if i % 4 == 0 else "tool.called"),
            duration_ms=i,
        )
        for i in range(40)
    ]
    in_order = logic.compute_features(sorted(signals, key=lambda s: s.occurred_at_ms), MIN)
    shuffled = signals[:]
    random.Random(7).shuffle(shuffled)
    assert logic.compute_features(shuffled, MIN) == in_order

    left, right = Accumulator(), Accumulator()
    for i, s in enumerate(x for x in shuffled if x.entity_id == "e-1" and x.occurred_at_ms < BASE_MS + MIN):
        (left if i % 2 else right).add(s)
    merged = left.merge(right).features("e-1", BASE_MS, BASE_MS + MIN)
    assert merged == next(f for f in in_order if f["entity_id"] == "e-1" and f["window_start"] == BASE_MS)


def test_compute_features_splits_entities_and_windows() -> None:
    out = logic.compute_features([sig(1, BASE_MS), sig(2, BASE_MS + MIN), sig(3, BASE_MS, entity="e-2")], MIN)
    assert [(f["window_start"], f["entity_id"], f["event_count"]) for f in out] == [
        (BASE_MS, "e-1", 1),
        (BASE_MS, "e-2", 1),
        (BASE_MS + MIN, "e-1", 1),
    ]


def test_signal_from_a_decoded_signal_record() -> None:
    doc = event("evt-5", entity_id="ticket-1", session_id="s-9", duration_ms=12, event_type="tool.failed")
    record = signals_codec().decode(signal_bytes(doc))
    signal = Signal.from_record(record, "agents.signals.v1", 2, 17)
    assert signal == Signal(
        entity_id="ticket-1",
        agent_id="agent-1",
        event_type="tool.failed",
        event_category="tool",
        is_error=True,
        occurred_at_ms=BASE_MS,
        source_topic="agents.signals.v1",
        source_partition=2,
        source_offset=17,
        session_id="s-9",
        duration_ms=12,
    )


def test_signal_records_missing_fields_are_refused() -> None:
    record = signals_codec().decode(signal_bytes(event()))
    del record["entity_id"]
    with pytest.raises(ValueError, match="entity_id"):
        Signal.from_record(record, "t", 0, 0)


def test_an_empty_window_has_no_features() -> None:
    with pytest.raises(ValueError, match="no signals"):
        Accumulator().features("e-1", BASE_MS, BASE_MS + MIN)


def _tp(trace: int, span: int = 1) -> str:
    return f"00-{trace:032x}-{span:016x}-01"


def test_a_window_continues_its_newest_signal_s_trace_whatever_the_order() -> None:
    signals = [
        sig(0, BASE_MS + 1000, traceparent=_tp(1)),
        sig(1, BASE_MS + 5000, traceparent=_tp(2)),
        # Same event time as the one before: the higher partition is the newer one.
        sig(2, BASE_MS + 5000, source_partition=1, traceparent=_tp(3)),
        sig(3, BASE_MS + 2000, traceparent=None),  # no valid header: nothing to link
        sig(4, BASE_MS + 3000, traceparent=_tp(1, 9)),  # the trace of the first, newer
    ]
    orders = [signals, signals[::-1], random.Random(5).sample(signals, len(signals))]
    traces = []
    for order in orders:
        acc = Accumulator()
        for s in order:
            acc.add(s)
        traces.append(acc.trace())
    assert traces[0] == traces[1] == traces[2]
    trace = traces[0]
    assert (trace.parent, trace.topic, trace.partition, trace.offset) == (_tp(3), "agents.signals.v1", 1, 2)
    assert trace.links == (_tp(3), _tp(2), _tp(1, 9))
    assert trace.links_header == f"{_tp(3)},{_tp(2)},{_tp(1, 9)}"


def test_a_window_whose_newest_signal_had_no_trace_says_so() -> None:
    acc = Accumulator().add(sig(0, BASE_MS, traceparent=_tp(1))).add(sig(1, BASE_MS + 1, traceparent=None))
    assert (acc.trace().parent, acc.trace().offset, acc.trace().links) == (None, 1, (_tp(1),))
    with pytest.raises(ValueError, match="no signals"):
        Accumulator().trace()


def test_links_keep_the_newest_traces_bounded_across_adds_and_merges() -> None:
    rng = random.Random(11)
    # 60 traces, each with signals at several times; trace t's newest signal is at BASE_MS + 1000 * t.
    signals = [
        sig(100 * t + k, BASE_MS + 1000 * t - 10 * k, traceparent=_tp(t + 1, k + 1))
        for t in range(60)
        for k in range(3)
    ]
    rng.shuffle(signals)
    whole = Accumulator()
    for s in signals:
        whole.add(s)
    # The same signals over four accumulators merged in another order give the same links.
    parts = [Accumulator() for _ in range(4)]
    for i, s in enumerate(signals):
        parts[i % 4].add(s)
    merged = parts[3].merge(parts[1]).merge(parts[0].merge(parts[2]))
    want = tuple(_tp(t + 1, 1) for t in range(59, 59 - logic.MAX_LINKS, -1))
    assert whole.trace().links == merged.trace().links == want
    assert len(whole.links) == logic.MAX_LINKS
    assert whole.trace().parent == merged.trace().parent == _tp(60, 1)


def test_an_accumulator_from_an_older_checkpoint_gets_the_trace_fields() -> None:
    import pickle

    acc = Accumulator().add(sig(0, BASE_MS))
    state = dict(acc.__dict__)
    del state["newest"], state["links"]  # pickled before the trace fields existed
    old = Accumulator.__new__(Accumulator)
    old.__setstate__(state)
    restored = pickle.loads(pickle.dumps(old)).add(sig(1, BASE_MS + 5, traceparent=_tp(4)))
    assert restored.event_count == 2 and restored.trace().parent == _tp(4)
