"""Bad input: every kind of broken record lands in the dead-letter topic with its reason, and the job goes on.

The agent-gateway sends, on one partition (one key) and in this order, records that break the raw event
contract in every way the contract knows, then valid events. Each bad record must come out of
agents.events.deadletter.v1 exactly once, as Avro under the registry's id for that subject, naming the
reason code, the violated field and rule, where it was read and its original bytes; the valid events
behind them must come out as signals, so no bad record stopped or restarted the job (it runs without a
restart strategy: any failure would end its process).
"""

from __future__ import annotations

import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from agent_events_io import DEAD_LETTERS, RAW, RawEvents, Sent, Tail, dumps, ensure_running, event, run_id

from headwater.contracts.serde import frame

if TYPE_CHECKING:
    from conftest import Provisioned

    from headwater.local.flink import LocalFlinkJob
    from headwater.local.registry import LocalRegistry

KEY = "agent-bad-input"  # one key: bad and valid records share a partition, in order
VALID_AFTER = 5
TIMEOUT = 90.0


@dataclass(frozen=True)
class Case:
    name: str
    value: bytes | None
    reason_code: str
    violations: frozenset[tuple[str, str]]  # (JSON Pointer of the field, rule)
    framed: bool = False


def cases(run: str, raw_schema_id: int, max_payload: int, max_record: int) -> list[Case]:
    def bad_id(n: int) -> str:
        return f"{run}-bad-{n:02d}"

    without = {k: v for k, v in event(bad_id(4)).items() if k not in ("agent_type", "payload")}
    return [
        Case(
            "malformed JSON",
            b'{"event_id": "' + bad_id(0).encode() + b'", "event_type": "tool.called",, }',
            "malformed_json",
            frozenset({("", "json")}),
        ),
        Case(
            "invalid UTF-8",
            b'{"event_id": "' + bad_id(1).encode() + b'", "agent_id": "caf\xc3\x28"}',
            "invalid_utf8",
            frozenset({("", "utf-8")}),
        ),
        Case(
            "invalid UTF-8 in a wire-format frame",
            frame(raw_schema_id, b'{"event_id": "' + bad_id(2).encode() + b'\xff\xfe"}'),
            "invalid_utf8",
            frozenset({("", "utf-8")}),
            framed=True,
        ),
        Case(
            "wrong types",
            dumps(event(bad_id(3), agent_id=42, duration_ms="slow", tags="urgent")),
            "schema_violation",
            frozenset({("/agent_id", "type"), ("/duration_ms", "type"), ("/tags", "type")}),
        ),
        Case(
            "missing fields",
            dumps(without),
            "schema_violation",
            frozenset({("/agent_type", "required"), ("/payload", "required")}),
        ),
        Case(
            "field not in the contract",
            dumps(event(bad_id(5), api_key="sk-not-for-kafka")),
            "schema_violation",
            frozenset({("/api_key", "additionalProperties")}),
        ),
        Case(
            "unknown event type",
            frame(raw_schema_id, dumps(event(bad_id(6), event_type="agent.teleported"))),
            "unknown_event_type",
            frozenset({("/event_type", "enum")}),
            framed=True,
        ),
        Case(
            "impossible date",
            dumps(event(bad_id(7), occurred_at="2026-02-30T10:00:00Z")),
            "invalid_timestamp",
            frozenset({("/occurred_at", "date-time")}),
        ),
        Case(
            "payload over the contract's limit",
            dumps(event(bad_id(8), payload={"blob": "x" * (max_payload + 100)})),
            "oversized_payload",
            frozenset({("/payload", "max_payload_bytes")}),
        ),
        Case(
            "record over the contract's limit",
            dumps(event(bad_id(9), payload={"blob": "y" * (3 * max_record)})),
            "oversized_record",
            frozenset({("", "max_record_bytes")}),
        ),
        Case("tombstone", None, "empty_record", frozenset({("", "required")})),
        Case(
            "truncated wire-format frame",
            b"\x00\x00\x01",
            "invalid_framing",
            frozenset({("", "wire_format")}),
        ),
    ]


@pytest.mark.timeout(300, func_only=True)  # the shared job's start is its fixture's to guard, not this test's
def test_bad_records_become_dead_letters_and_the_job_keeps_going(
    provisioned: Provisioned,
    contracts_registry: LocalRegistry,
    agent_events_job: LocalFlinkJob,
    cleanup: ExitStack,
    capsys: pytest.CaptureFixture[str],
) -> None:
    job = ensure_running(agent_events_job)
    registry = contracts_registry.client()
    producer = RawEvents(provisioned, registry)
    schema = producer.serialize.schema
    limits = schema["x-headwater-limits"]
    message_max = provisioned.platform.kafka.message_max_bytes
    run = run_id("bad")
    bad = cases(run, producer.schema_id, limits["max_payload_bytes"], limits["max_record_bytes"])
    oversized = [c for c in bad if c.reason_code.startswith("oversized")]
    assert all(c.value is not None and len(c.value) < message_max for c in oversized), (
        "oversized test records must still fit the broker's message.max.bytes"
    )

    sent: dict[str, Sent] = {c.name: producer.send_bytes(c.value, key=KEY, label=c.name) for c in bad}
    valid_ids = [f"{run}-ok-{n}" for n in range(VALID_AFTER)]
    for event_id in valid_ids:
        producer.send_event(event(event_id, agent=KEY))
    sent_at = time.monotonic()
    producer.flush()
    partitions = {s.partition for s in producer.sent}
    assert len(partitions) == 1, f"bad and valid records should share one partition, got {partitions}"

    positions = {(s.partition, s.offset): name for name, s in sent.items()}
    dead = Tail.dead_letters(
        provisioned, registry, keep=lambda r: (r["source_partition"], r["source_offset"]) in positions
    )
    signals = Tail.signals(provisioned, registry, keep=lambda r: r["event_id"].startswith(run + "-"))
    cleanup.callback(dead.close)
    cleanup.callback(signals.close)
    signals.poll_until(
        lambda rs: {r["event_id"] for r in rs} >= set(valid_ids),
        TIMEOUT,
        "the valid events sent after the bad ones",
    )
    latency = time.monotonic() - sent_at
    dead.poll_until(lambda rs: len(rs) >= len(bad), TIMEOUT, f"{len(bad)} dead letters")
    # A second copy of anything would be in the same or an earlier transaction: one more short read.
    dead.poll(1)
    signals.poll(1)

    assert job.running(), f"agent-events stopped on bad input:\n{job.log_tail()}"
    assert job.job_state() == "RUNNING", f"agent-events is {job.job_state()}, not RUNNING"
    ids = Counter(r["event_id"] for r in signals.records)
    assert ids == Counter(valid_ids), f"signals of this run should be the valid events once each, got {ids}"

    by_case = {positions[(r["source_partition"], r["source_offset"])]: r for r in dead.records}
    assert len(dead.records) == len(bad) == len(by_case), (
        f"one dead letter per bad record: got {len(dead.records)} for {len(bad)} records, "
        f"missing {sorted(set(positions.values()) - set(by_case))}"
    )
    dead_letter_id = registry.latest(f"{DEAD_LETTERS}-value")
    assert dead_letter_id is not None
    assert set(dead.schema_ids) == {dead_letter_id.id}, (
        f"dead letters should be written under the registry's id {dead_letter_id.id} of {DEAD_LETTERS}-value, "
        f"got ids {dict(dead.schema_ids)}"
    )
    for case in bad:
        letter = by_case[case.name]
        found = {(v["field"], v["rule"]) for v in letter["violations"]}
        assert letter["reason_code"] == case.reason_code, (
            f"{case.name}: reason {letter['reason_code']!r}, expected {case.reason_code!r} ({letter['reason']})"
        )
        assert found == case.violations, (
            f"{case.name}: violations {sorted(found)}, expected {sorted(case.violations)}"
        )
        assert letter["reason"], f"{case.name}: the dead letter gives no readable reason"
        assert letter["original"] == case.value, f"{case.name}: the original bytes were not kept as sent"
        assert letter["original_size"] == (0 if case.value is None else len(case.value))
        assert (letter["source_topic"], letter["contract"], letter["pipeline"]) == (RAW, RAW, "agent_events")
        expected_id = producer.schema_id if case.framed else None
        assert letter["source_schema_id"] == expected_id, (
            f"{case.name}: source schema id {letter['source_schema_id']}, expected {expected_id}"
        )
    with capsys.disabled():
        print(
            f"\n[bad-input] {len(bad)} bad records -> {len(dead.records)} dead letters "
            f"({', '.join(sorted({c.reason_code for c in bad}))}); {VALID_AFTER} valid events behind them came out "
            f"as signals {latency:.1f}s after sending (read_committed: includes the checkpoint that commits them)"
        )
