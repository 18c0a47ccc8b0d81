"""feature_aggregator on a local MiniCluster (RocksDB, checkpoints): windows under out-of-order and late data."""

from __future__ import annotations

from pathlib import Path

import pytest
from flink_events import BASE_MS, event, features_codec, signal_bytes, signals_codec
from flink_harness import Raw, committed, environment, file_sink, records_source

from flink_apps.feature_aggregator import logic, pipeline
from flink_apps.feature_aggregator.logic import Signal

WINDOW = 10_000
TOPIC = "agents.signals.v1"


def config() -> pipeline.FeatureConfig:
    return pipeline.FeatureConfig(
        signals=signals_codec(),
        features=features_codec(),
        window_size_ms=WINDOW,
        max_out_of_orderness_ms=2_000,
        idle_timeout_ms=60_000,
    )


def signal_record(
    offset: int, at_s: float, entity: str, *, partition: int = 0, delay_s: float = 0.0, **fields: object
) -> Raw:
    doc = event(f"evt-{partition}-{offset}", at_ms=BASE_MS + int(at_s * 1000), entity_id=entity, **fields)
    return Raw(signal_bytes(doc, offset, partition), partition, offset, BASE_MS, topic=TOPIC, delay_s=delay_s)


# Event times in seconds after BASE_MS; the source order is the list order.
INPUT = [
    signal_record(0, 1.0, "acct-a", session_id="s1", duration_ms=100),
    signal_record(1, 6.0, "acct-a", event_type="tool.failed", session_id="s1", duration_ms=300),
    signal_record(0, 2.5, "acct-b", partition=1, agent_id="agent-7"),
    signal_record(2, 4.0, "acct-a", event_type="llm.requested", session_id="s2"),  # out of order, within 2 s
    signal_record(1, 12.0, "acct-b", partition=1),  # moves the watermark to 10 s: window [0, 10) fires
    Raw(b"\x00\x00\x00\x00\x65garbage", 1, 2, BASE_MS, topic=TOPIC),  # undecodable: counted, skipped
    signal_record(3, 11.0, "acct-a", event_type="task.completed"),
    signal_record(4, 23.5, "acct-a", event_type="agent.error"),  # watermark 21.5 s: [10, 20) fires
    # 1.5 s later (processing time), an event of the fired window [0, 10): late, so not counted.
    signal_record(5, 9.0, "acct-a", delay_s=1.5),
    signal_record(6, 25.0, "acct-a", agent_id="agent-2"),
]
UNDECODABLE, LATE = 5, 8  # positions in INPUT


@pytest.mark.timeout(180)
def test_windowed_features_with_out_of_order_and_late_signals(tmp_path: Path) -> None:
    env = environment(tmp_path)
    outputs = pipeline.build(env, records_source(env, INPUT), config())
    file_sink(outputs[pipeline.FEATURES], tmp_path / "features", "features")
    env.execute("feature_aggregator test")

    written = committed(tmp_path / "features")
    features = [features_codec().decode(w.value) for w in written]
    for w, f in zip(written, features, strict=True):
        assert w.key == f["entity_id"].encode()
        assert w.timestamp == int(f["window_end"].timestamp() * 1000) - 1

    got = {(f["entity_id"], int(f["window_start"].timestamp() * 1000) - BASE_MS): f for f in features}
    assert set(got) == {
        ("acct-a", 0),
        ("acct-b", 0),
        ("acct-a", 10_000),
        ("acct-b", 10_000),
        ("acct-a", 20_000),
    }

    first = got[("acct-a", 0)]
    assert first["event_count"] == 3  # the late 9.0 s signal is not in it
    assert first["event_counts"] == {"llm.requested": 1, "tool.called": 1, "tool.failed": 1}
    assert first["error_rate"] == pytest.approx(1 / 3)
    assert first["events_per_minute"] == pytest.approx(18.0)
    assert (first["distinct_sessions"], first["avg_duration_ms"], first["max_duration_ms"]) == (2, 200.0, 300)
    assert int(first["last_seen_at"].timestamp() * 1000) == BASE_MS + 6_000
    assert first["provenance"]["source_partitions"] == [
        {"partition": 0, "min_offset": 0, "max_offset": 2, "record_count": 3}
    ]
    assert first["provenance"]["source_topic"] == TOPIC
    assert got[("acct-a", 20_000)]["distinct_agents"] == 2
    assert got[("acct-a", 20_000)]["error_count"] == 1

    # The same as the batch computation over every decodable signal that was not late.
    on_time = [
        Signal.from_record(signals_codec().decode(r.value or b""), r.topic, r.partition, r.offset)
        for i, r in enumerate(INPUT)
        if i not in (UNDECODABLE, LATE)
    ]
    expected = logic.compute_features(on_time, WINDOW)
    assert sorted(features, key=_order) == sorted(
        (features_codec().decode(features_codec().encode(f)) for f in expected), key=_order
    )


def _order(f: dict[str, object]) -> tuple[str, str]:
    return (str(f["window_start"]), str(f["entity_id"]))
