"""The native common case of agent-events (flink/functions, AcceptAgentEvent) against the Python path.

The Java function runs in a real MiniCluster over a corpus of raw records: hand-made edge cases, events shaped
like the sample producer's, and seeded random variations and byte-level corruptions of them. For every record
it decides, the Python contract must agree that the record is valid and give the same event id, event time,
key and signal bytes; every record Python rejects must be left to Python. And the common case (plain events
like the producer's) must be decided natively, or the native path would buy nothing.
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path
from typing import Any

import pytest
from flink_events import (
    BASE_MS,
    RAW_TOPIC,
    contract,
    dead_letters_codec,
    event,
    framed,
    iso,
    raw,
    signals_codec,
)
from flink_harness import environment
from pyflink.table import DataTypes
from pyflink.table.expressions import call, col

from flink_apps.agent_events import pipeline
from flink_apps.agent_events.logic import AgentEvent, SourceRecord
from flink_apps.common import runtime

SEED = 20261129
TIMESTAMP_MS = BASE_MS + 3_600_000


def _config() -> pipeline.AgentEventsConfig:
    return pipeline.AgentEventsConfig(
        contract=contract(), signals=signals_codec(), dead_letters=dead_letters_codec()
    )


def _sample_like(rng: random.Random, n: int) -> dict[str, Any]:
    """An event shaped like the sample producer's (headwater.local.producer): ASCII text, integer numbers."""
    doc = event(
        f"evt-{rng.getrandbits(64):016x}-{n}",
        at_ms=BASE_MS + rng.randint(-(10**9), 10**9),
        event_type=rng.choice(["tool.called", "llm.responded", "task.failed", "message.sent", "agent.error"]),
        agent_id=f"{rng.choice(['planner', 'retriever', 'critic'])}-{rng.randint(1, 9):02d}",
        agent_type=rng.choice(["planner", "Retriever", "CRITIC"]),
        payload={
            "model": rng.choice(["small", "large"]),
            "tokens": rng.randint(-5, 4000),
            "ok": rng.random() < 0.5,
        },
        tenant_id=f"tenant-{rng.randint(1, 3)}",
        session_id=f"sess-{rng.getrandbits(48):012x}",
        trace_id=f"{rng.getrandbits(128):032x}",
    )
    if rng.random() < 0.7:
        doc["entity_id"] = f"customer-{rng.randint(1, 99):04d}"
    if rng.random() < 0.5:
        doc["status"] = rng.choice(["ok", "error"])
        doc["duration_ms"] = rng.randint(0, 86_400_000)
    if rng.random() < 0.5:
        doc["tags"] = rng.sample(["prod", "beta", "EU", "eu", "Batch", "interactive"], rng.randint(0, 4))
    return doc


def _random_text(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits + ' _-./\\"\n\t\r' + "é☃\u2028\x1f\x7f😀"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return rng.randint(-(2**70), 2**70) if rng.random() < 0.1 else rng.randint(-1000, 1000)
    if kind == 1:
        return rng.choice([0.5, -1.25, 1e100, 3.0, -0.0, 1e-7])
    if kind == 2:
        return _random_text(rng)
    if kind == 3:
        return rng.choice([True, False])
    if kind == 4:
        return None
    if kind == 5:
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {_random_text(rng): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def _occurred_at(rng: random.Random) -> str:
    year = rng.choice([1970, 2026, 2026, 2026, 999, 1000, 8999, 9000, 9999, 1])
    month, day = rng.choice([(1, 1), (2, 28), (2, 29), (2, 30), (12, 31), (4, 31), (13, 1)])
    hour, minute, second = rng.choice([(0, 0, 0), (23, 59, 59), (23, 59, 60), (24, 0, 0), (12, 30, 15)])
    fraction = rng.choice(["", ".1", ".123", ".999999", ".1234567", ".123456789", ".9999999999"])
    t = rng.choice("Tt")
    zone = rng.choice(
        ["Z", "z", "+00:00", "-00:00", "+01:00", "-05:30", "+18:00", "+19:00", "+23:59", "-23:59"]
    )
    return f"{year:04d}-{month:02d}-{day:02d}{t}{hour:02d}:{minute:02d}:{second:02d}{fraction}{zone}"


def _variation(rng: random.Random, n: int) -> bytes:
    """A sample-like event with one or more fields changed at random, encoded in one of several ways."""
    doc: Any = _sample_like(rng, n)
    for _ in range(rng.randint(1, 3)):
        choice = rng.randrange(9)
        if choice == 0:
            doc["payload"] = _random_json(rng) if rng.random() < 0.2 else {"p": _random_json(rng)}
        elif choice == 1:
            doc["occurred_at"] = _occurred_at(rng)
        elif choice == 2:
            doc[rng.choice(["agent_id", "tenant_id", "entity_id", "event_id", "agent_type"])] = _random_text(
                rng
            )
        elif choice == 3:
            doc.pop(rng.choice(list(doc)))
        elif choice == 4:
            doc[rng.choice(["duration_ms", "extra", "status"])] = _random_json(rng)
        elif choice == 5:
            doc["tags"] = [_random_text(rng) for _ in range(rng.randint(0, 3))]
        elif choice == 6:
            doc["event_type"] = rng.choice(["tool.teleported", "LLM.failed", "llm.failed", ""])
        elif choice == 7:
            doc["payload"] = {f"k{i}": i for i in range(rng.choice([63, 64, 65]))}
        else:
            doc["payload"] = {"blob": "x" * rng.choice([100, 32_700, 32_760, 32_800])}
    encoding = rng.randrange(4)
    if encoding == 0:
        body = json.dumps(doc).encode()
    elif encoding == 1:
        body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    elif encoding == 2:
        body = json.dumps(doc, indent=rng.choice([None, 1])).encode()
    else:
        body = framed(doc, schema_id=rng.choice([0, 7, 2**31 - 1, 2**31]))
    return body


def _corrupted(rng: random.Random, value: bytes) -> bytes:
    data = bytearray(value)
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(data) + 1)
        action = rng.randrange(3)
        if action == 0 and at < len(data):
            data[at] = rng.randrange(256)
        elif action == 1:
            data[at:at] = rng.choice(
                [b"{", b"}", b",", b'"', b"\\", b"\\u00e9", b"\\ud800", b"\xef\xbb\xbf", b" "]
            )
        elif at < len(data):
            del data[at]
    return bytes(data)


EDGE_CASES: list[bytes | None] = [
    None,
    b"",
    b"\x00",
    b"\x00\x00\x00\x00\x07",
    raw(event("edge-1")),
    json.dumps(event("edge-2"), separators=(",", ":")).encode(),
    b" " + raw(event("edge-3")),
    b"\xef\xbb\xbf" + raw(event("edge-4")),
    raw(event("edge-5")) + b"\n",
    raw(event("edge-6")) + b"{}",
    raw(event("edge-7")).replace(b'"edge-7"', b'"edge-7", "event_id": "edge-8"'),
    raw(event("edge-9", agent_id="agent\n")),
    raw(event("edge-9r", agent_id="agent\r")),
    raw(event("edge-9rn", agent_id="agent\r\n")),
    raw(event("edge-9t", tenant_id="t\t")),
    raw(event("edge-10", agent_id="agent\n\n")),
    raw(event("edge-11", occurred_at="2026-01-01T00:00:00Z\n")),
    raw(event("edge-12", payload={"b": [1, {"z": None, "a": 'q"\\/\t'}], "A": False, "e": {}})),
    raw(event("edge-13", payload={"n": 12345678901234567890})),
    raw(event("edge-14", payload={"n": 1.0})),
    raw(event("edge-15", duration_ms=1.0, status="ok")),
    raw(event("edge-16", tags=["B", "b", "a"])),
    raw(event("edge-17", tags=["B", "B"])),
    raw(event("edge-18", payload={"caf\u00e9": "\u2603"})),
    raw(event("edge-19", occurred_at="0001-01-01T00:00:00+01:00")),
    raw(event("edge-20", occurred_at="9999-12-31T23:59:59-01:00")),
    raw(event("edge-21", occurred_at="2026-01-01t00:00:00.9999999z")),
    raw(event("edge-22", entity_id=None)),
    raw(event("edge-23", payload={"x": "a" * 32_760})),
    raw(event("edge-24", payload={"x": "\\u0000"})),
    raw(event("edge-25")).replace(b'"edge-25"', b'"edge-\\u0032\\u0035"'),
    b'{"event_id": "edge-26", "payload": NaN}',
    framed(event("edge-27"), schema_id=2**31 - 1),
    framed(event("edge-28"), schema_id=2**31),
    raw(event("edge-29", occurred_at=iso(BASE_MS).replace("Z", "+00:00"))),
]


def _corpus() -> list[bytes | None]:
    rng = random.Random(SEED)
    common = [raw(_sample_like(rng, n)) for n in range(300)]
    varied = [_variation(rng, n) for n in range(900)]
    corrupted = [_corrupted(rng, rng.choice(common)) for _ in range(300)]
    return EDGE_CASES + common + varied + corrupted


def _decided_natively(tmp_path: Path, values: list[bytes | None]) -> dict[int, tuple[Any, ...]]:
    """Run the Java function over `values` in a MiniCluster: index -> its result row (undecided ones too)."""
    env = environment(tmp_path)
    t_env = runtime.table_environment(env)
    pipeline.register_native(t_env, _config())
    # PyFlink takes VARBINARY values as bytearray only.
    rows = [
        (i, None if v is None else bytearray(v), RAW_TOPIC, i % 3, 1000 + i, TIMESTAMP_MS)
        for i, v in enumerate(values)
    ]
    table = t_env.from_elements(
        rows,
        DataTypes.ROW(
            [
                DataTypes.FIELD("i", DataTypes.INT()),
                DataTypes.FIELD("value", DataTypes.BYTES()),
                DataTypes.FIELD("topic", DataTypes.STRING()),
                DataTypes.FIELD("partition", DataTypes.INT()),
                DataTypes.FIELD("offset", DataTypes.BIGINT()),
                DataTypes.FIELD("ts", DataTypes.BIGINT()),
            ]
        ),
    )
    result = table.select(
        col("i"),
        call(
            pipeline.NATIVE_FUNCTION,
            col("value"),
            col("topic"),
            col("partition"),
            col("offset"),
            call("TO_TIMESTAMP_LTZ", col("ts"), 3),
        ).alias("n"),
    ).select(col("i"), col("n").flatten)  # PyFlink's collect cannot read nulls inside a nested row
    out: dict[int, tuple[Any, ...]] = {}
    with result.execute().collect() as results:
        for row in results:
            out[row[0]] = tuple(row[1:])
    return out


@pytest.mark.timeout(300)
def test_the_native_path_decides_only_what_python_accepts_and_writes_the_same_bytes(tmp_path: Path) -> None:
    values = _corpus()
    native = _decided_natively(tmp_path, values)
    assert sorted(native) == list(range(len(values)))
    the_contract, signals = contract(), signals_codec()
    decided = valid = 0
    for i, value in enumerate(values):
        record = SourceRecord(RAW_TOPIC, i % 3, 1000 + i, TIMESTAMP_MS, value)
        checked = the_contract.check(record)
        is_decided, is_valid, event_id, event_time, key, encoded, ts = native[i]
        valid += isinstance(checked, AgentEvent)
        if not is_decided:
            assert (is_valid, event_time) == (False, 0), (
                f"record {i}: an undecided row must hold no watermark"
            )
            continue
        decided += 1
        assert isinstance(checked, AgentEvent), f"record {i} decided natively, but Python says {checked!r}"
        expected = (
            True,
            checked.event_id,
            checked.occurred_at_ms,
            checked.agent_id.encode(),
            checked.occurred_at_ms,
        )
        assert (is_valid, event_id, event_time, bytes(key), ts) == expected, f"record {i}: {value!r}"
        assert bytes(encoded) == signals.encode(checked.signal()), (
            f"record {i}: signal bytes differ: {value!r}"
        )
    # The common case never leaves the JVM: every event shaped like the producer's is decided natively.
    common = range(len(EDGE_CASES), len(EDGE_CASES) + 300)
    assert all(native[i][0] for i in common)
    print(f"\n{len(values)} records: {valid} valid by Python, {decided} decided natively (all of them valid)")
    assert valid > decided > 300  # the corpus reaches both sides of the domain's edge
