"""agent_events on a local MiniCluster (RocksDB, checkpoints), test source in place of Kafka, file sinks."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from flink_events import (
    BASE_MS,
    DEAD_LETTERS_ID,
    contract,
    dead_letters_codec,
    event,
    framed,
    raw,
    signals_codec,
)
from flink_harness import Raw, committed, environment, file_sink, records_source

from flink_apps.agent_events import logic, pipeline


def config(*, native: bool = True) -> pipeline.AgentEventsConfig:
    return pipeline.AgentEventsConfig(
        contract=contract(),
        signals=signals_codec(),
        dead_letters=dead_letters_codec(),
        max_out_of_orderness_ms=5_000,
        idle_timeout_ms=2_000,
        native=native,
    )


# (partition, offset) -> value; two raw partitions, interleaved, with retries and every kind of bad record.
INPUT: list[tuple[int, int, bytes | None]] = [
    (0, 0, raw(event("evt-1", at_ms=BASE_MS + 1_000))),
    (1, 0, raw(event("evt-2", at_ms=BASE_MS + 3_000, agent_id="agent-2", event_type="task.failed"))),
    (0, 1, b'{"event_id": "evt-x", "event_type": "tool.called"'),  # truncated JSON
    (0, 2, raw(event("evt-1", at_ms=BASE_MS + 1_000))),  # producer retry: duplicate
    (1, 1, b"\xc3\x28 not utf-8"),
    (0, 3, raw(event("evt-3", at_ms=BASE_MS + 500, event_type="tool.teleported"))),  # unknown type
    (1, 2, framed(event("evt-4", at_ms=BASE_MS + 2_000, entity_id="ticket-9"), schema_id=12)),
    (0, 4, raw({k: v for k, v in event("evt-5").items() if k != "agent_id"})),  # missing field
    (1, 3, raw(event("evt-6", payload={"blob": "x" * 70_000}))),  # oversized record
    (0, 5, raw(event("evt-7", at_ms=BASE_MS - 4_000, agent_type="Critic"))),  # out of order, still valid
    (
        1,
        4,
        framed(
            event("evt-2", at_ms=BASE_MS + 3_000, agent_id="agent-2", event_type="task.failed"), schema_id=12
        ),
    ),
    (0, 6, None),  # tombstone
    (1, 5, raw(event("evt-8", at_ms=BASE_MS + 9_000, duration_ms="slow"))),  # wrong type
]
VALID_FIRST = {"evt-1": (0, 0), "evt-2": (1, 0), "evt-4": (1, 2), "evt-7": (0, 5)}
DUPLICATES = 2
EXPECTED_DEAD = {
    (0, 1): logic.MALFORMED_JSON,
    (1, 1): logic.INVALID_UTF8,
    (0, 3): logic.UNKNOWN_EVENT_TYPE,
    (0, 4): logic.SCHEMA_VIOLATION,
    (1, 3): logic.OVERSIZED_RECORD,
    (0, 6): logic.EMPTY_RECORD,
    (1, 5): logic.SCHEMA_VIOLATION,
}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("native", [True, False], ids=["native-common-case", "python-only"])
def test_valid_events_become_signals_once_and_every_bad_record_a_dead_letter(
    tmp_path: Path, native: bool
) -> None:
    env = environment(tmp_path)
    records = [
        Raw(value, partition, offset, BASE_MS + 60_000 + i)
        for i, (partition, offset, value) in enumerate(INPUT)
    ]
    outputs = pipeline.build(env, records_source(env, records), config(native=native))
    file_sink(outputs[pipeline.SIGNALS], tmp_path / "signals", "signals")
    file_sink(outputs[pipeline.DEAD_LETTERS], tmp_path / "dead-letters", "dead-letters")
    env.execute("agent_events test")

    signals = committed(tmp_path / "signals")
    decoded = [signals_codec().decode(s.value) for s in signals]
    # Each valid event exactly once, from its first occurrence; the duplicates are gone.
    assert Counter(d["event_id"] for d in decoded) == Counter(VALID_FIRST.keys())
    for written, signal in zip(signals, decoded, strict=True):
        assert (signal["source"]["partition"], signal["source"]["offset"]) == VALID_FIRST[signal["event_id"]]
        assert written.key == signal["agent_id"].encode()
        assert written.timestamp == int(signal["occurred_at"].timestamp() * 1000)
    by_id = {d["event_id"]: d for d in decoded}
    assert by_id["evt-2"]["is_error"] and by_id["evt-2"]["source"]["schema_id"] is None
    assert by_id["evt-4"]["entity_id"] == "ticket-9" and by_id["evt-4"]["source"]["schema_id"] == 12
    assert by_id["evt-7"]["agent_type"] == "critic"

    letters = committed(tmp_path / "dead-letters")
    dead = {}
    originals = {(p, o): v for p, o, v in INPUT}
    for written in letters:
        assert written.value[1:5] == DEAD_LETTERS_ID.to_bytes(4, "big")
        letter = dead_letters_codec().decode(written.value)
        position = (letter["source_partition"], letter["source_offset"])
        assert letter["original"] == originals[position]
        assert letter["reason"] and letter["violations"]
        assert written.key == str(letter["source_partition"]).encode()
        dead[position] = letter["reason_code"]
    assert dead == EXPECTED_DEAD
    # Nothing lost: every input record is a signal, a removed duplicate or a dead letter.
    assert len(signals) + DUPLICATES + len(letters) == len(INPUT)
