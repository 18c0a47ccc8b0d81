"""Kill agent_events mid-stream and restore it from its retained checkpoint: nothing lost, nothing twice.

The dedup state (RocksDB, incremental checkpoints) must survive: duplicates of events seen before the kill
arrive only after the restore. The file sinks commit on checkpoints, like the transactional Kafka sinks.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from flink_events import BASE_MS, contract, dead_letters_codec, event, raw, signals_codec
from flink_harness import Raw, committed, completed_checkpoints, environment, file_sink, records_source

from flink_apps.agent_events import pipeline

UNIQUE = 24


def records(slow_from: int | None = None) -> list[Raw]:
    """From offset `slow_from` on the topic trickles (2 s per record, checkpoints still complete between
    records), so a kill after the first committed output lands mid-stream however slowly the job starts."""
    out = []
    for i in range(UNIQUE):
        value = b"{not json" if i % 6 == 5 else raw(event(f"evt-{i}", at_ms=BASE_MS + i * 1_000))
        out.append(value)
    # Retries of events from the start of the stream, after everything else.
    out += [raw(event(f"evt-{i}", at_ms=BASE_MS + i * 1_000)) for i in range(8) if i % 6 != 5]
    slow = len(out) if slow_from is None else slow_from
    return [Raw(v, 0, offset, BASE_MS, delay_s=0.2 if offset < slow else 2.0) for offset, v in enumerate(out)]


def run(work: Path, extra: dict[str, str] | None = None, slow_from: int | None = None):  # type: ignore[no-untyped-def]
    env = environment(work, extra, checkpoint_interval_ms=300)
    config = pipeline.AgentEventsConfig(contract(), signals_codec(), dead_letters_codec())
    outputs = pipeline.build(env, records_source(env, records(slow_from)), config)
    file_sink(outputs[pipeline.SIGNALS], work / "signals", "signals")
    file_sink(outputs[pipeline.DEAD_LETTERS], work / "dead-letters", "dead-letters")
    return env


@pytest.mark.timeout(240)
def test_restore_from_retained_checkpoint_loses_and_repeats_nothing(tmp_path: Path) -> None:
    client = run(tmp_path, slow_from=6).execute_async("agent_events, first attempt")
    job_id = str(client.get_job_id())
    deadline = time.monotonic() + 90
    # Kill once checkpoints have committed some output, long before the end of the input.
    while len(committed(tmp_path / "signals")) < 3 or not completed_checkpoints(tmp_path, job_id):
        assert time.monotonic() < deadline, "the first attempt committed no output in time"
        time.sleep(0.1)
    client.cancel().result()
    before = committed(tmp_path / "signals")
    assert 0 < len(before) < UNIQUE - UNIQUE // 6, "the first attempt should have been killed mid-stream"

    retained = completed_checkpoints(tmp_path, job_id)[-1]
    run(tmp_path, {"execution.state-recovery.path": retained.as_uri()}).execute("agent_events, restored")

    ids = Counter(signals_codec().decode(w.value)["event_id"] for w in committed(tmp_path / "signals"))
    valid = {f"evt-{i}" for i in range(UNIQUE) if i % 6 != 5}
    assert ids == Counter(valid), "every valid event exactly once, retries after the restore dropped"
    offsets = Counter(
        dead_letters_codec().decode(w.value)["source_offset"] for w in committed(tmp_path / "dead-letters")
    )
    assert offsets == Counter(i for i in range(UNIQUE) if i % 6 == 5)
