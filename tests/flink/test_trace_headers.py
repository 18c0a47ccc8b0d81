"""Trace context through agent-events: the traceparent each output record gets, computed in Flink SQL.

The derivation is checked against a reference written here with hashlib (the same vectors as
tests/unit/test_tracing.py checks `headwater.tracing.hop_traceparent` against, so the Flink SQL, the Python
reference and the tracing CLI agree), and the whole pipeline is run on the MiniCluster with a `headers`
column: every signal and every dead letter carries its raw record's trace, with the hop's derived span id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from pathlib import Path

import pytest
from flink_harness import Raw, environment, records_source
from pyflink.table import DataTypes, EnvironmentSettings, TableEnvironment
from pyflink.table.expressions import call, call_sql, col, lit
from test_agent_events_pipeline import INPUT, config

from flink_apps.agent_events import pipeline
from flink_apps.common import runtime
from flink_apps.common.tracing import TRACEPARENT, hop_traceparent_sql
from headwater import jvm

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
# (parent header, topic, partition, offset) -> the traceparent of the record made from it.
VECTORS = {
    (PARENT, "raw", 0, 5): "00-0af7651916cd43dd8448eb211c80319c-dba9426a534a4a9b-01",
    (None, "raw", 1, 7): "00-f898bf06db451d73c38440e1e80bc918-a408699215008471-01",
    ("garbage", "raw", 2, 9): "00-0dd2e293d489ff63a0a6f7a9d4b95725-2ae423010d00f9de-01",
    ("00-" + "0" * 32 + "-b7ad6b7169203331-01", "raw", 2, 9): (
        "00-0dd2e293d489ff63a0a6f7a9d4b95725-2ae423010d00f9de-01"
    ),
    (PARENT[:-2] + "00", "raw", 0, 5): "00-0af7651916cd43dd8448eb211c80319c-dba9426a534a4a9b-00",
}


def reference(parent: str | None, topic: str, partition: int, offset: int) -> str:
    where = f"{topic}/{partition}/{offset}".encode()
    span_id = hashlib.sha256(where).hexdigest()[:16]
    parts = (parent or "").split("-")
    valid = (
        len(parts) == 4
        and parts[0] == "00"
        and len(parts[1]) == 32
        and len(parts[2]) == 16
        and len(parts[3]) == 2
        and all(c in "0123456789abcdef" for c in "".join(parts[1:]))
        and set(parts[1]) != {"0"}
        and set(parts[2]) != {"0"}
    )
    if valid:
        return f"00-{parts[1]}-{span_id}-{parts[3]}"
    return f"00-{hashlib.md5(where).hexdigest()}-{span_id}-01"


def test_the_reference_gives_the_vectors() -> None:
    assert {k: reference(*k) for k in VECTORS} == VECTORS


@pytest.mark.timeout(180)
def test_the_sql_derivation_equals_the_reference() -> None:
    t_env = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
    t_env.get_config().set("parallelism.default", "1")
    rows = []
    for i, (parent, topic, partition, offset) in enumerate(VECTORS):
        header = "NULL" if parent is None else f"ENCODE('{parent}', 'UTF-8')"
        rows.append(f"({i}, MAP['traceparent', {header}], '{topic}', {partition}, CAST({offset} AS BIGINT))")
    query = (
        f"SELECT i, {hop_traceparent_sql()} FROM ("
        "  SELECT i, CAST(h AS MAP<STRING, BYTES>) AS headers, topic, `partition`, `offset`"
        f"  FROM (VALUES {', '.join(rows)}) AS v(i, h, topic, `partition`, `offset`))"
    )
    with t_env.sql_query(query).execute().collect() as results:
        got = {i: tp for i, tp in results}
    assert {k: got[i] for i, k in enumerate(VECTORS)} == VECTORS


def _header_corpus() -> list[bytes | None]:
    """Header values at and around the edges of the SQL's test: every way one can fail, the line terminators
    Java's `$` lets through, bytes that are not UTF-8, and seeded random corruptions of a valid one."""
    zero_trace = "00-" + "0" * 32 + PARENT[35:]
    zero_span = PARENT[:36] + "0" * 16 + "-01"
    texts = [
        PARENT,
        PARENT[:-2] + "00",
        PARENT[:-2] + "ff",
        zero_trace,
        zero_span,
        PARENT.upper(),
        "01" + PARENT[2:],
        "ff" + PARENT[2:],
        " " + PARENT,
        PARENT + " ",
        PARENT[1:],
        PARENT[:-1],
        PARENT + "0",
        "",
        "-",
        "00-",
        "garbage",
        zero_trace + "\n",
        zero_span + "\n",
        PARENT.replace("-", "_"),
        PARENT[:35] + "x" + PARENT[36:],
    ]
    for end in ("\n", "\r\n", "\r", "\n\n", "\u0085", "\u2028", "\u2029", "\x00", "\t"):
        texts += [PARENT + end, end + PARENT]
    values: list[bytes | None] = [t.encode() for t in texts]
    values += [None, b"\xff" * 55, PARENT.encode()[:54] + b"\xe9", PARENT.encode()[:53] + "\u00e9".encode()]
    rng = random.Random(11)
    alphabet = "0123456789abcdefABCDEF-_ x\n\u00e9\u2028"
    for _ in range(400):
        chars = list(PARENT)
        for _ in range(rng.choice((1, 1, 2, 3))):
            at = rng.randrange(len(chars))
            roll = rng.random()
            if roll < 0.6:
                chars[at] = rng.choice(alphabet)
            elif roll < 0.8:
                del chars[at]
            else:
                chars.insert(at, rng.choice(alphabet))
        values.append("".join(chars).encode())
    for _ in range(100):
        values.append(
            f"00-{rng.getrandbits(128):032x}-{rng.getrandbits(64):016x}-{rng.getrandbits(8):02x}".encode()
        )
    return values


@pytest.mark.timeout(300)
def test_the_java_function_equals_the_sql_derivation() -> None:
    """agent-events computes the traceparent with a Java function (HopTraceparent); the SQL expression stays
    the definition: both over the same rows, in one query, must agree on every one."""
    t_env = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
    t_env.get_config().set("parallelism.default", "1")
    t_env.get_config().set("pipeline.jars", jvm.build("flink-functions", quiet=True).as_uri())
    t_env.create_java_temporary_system_function(pipeline.HOP_TRACEPARENT, pipeline.HOP_TRACEPARENT_CLASS)
    values = _header_corpus()
    # (i, header value, how the map holds it: 0 no map, 1 no such header, 2 with it); PyFlink takes BYTES as a
    # bytearray, and no map: the map is built in SQL.
    rows: list[tuple[int, bytearray | None, int, str, int, int]] = [
        (i, None if v is None else bytearray(v), 2, "agents.events.raw.v1", i % 7, i)
        for i, v in enumerate(values)
    ]
    rows += [(len(rows), None, 0, "raw", 0, 1), (len(rows) + 1, None, 1, "raw", 3, 2**40)]
    schema = DataTypes.ROW(
        [
            DataTypes.FIELD("i", DataTypes.INT()),
            DataTypes.FIELD("h", DataTypes.BYTES()),
            DataTypes.FIELD("held", DataTypes.INT()),
            DataTypes.FIELD("topic", DataTypes.STRING()),
            DataTypes.FIELD("partition", DataTypes.INT()),
            DataTypes.FIELD("offset", DataTypes.BIGINT()),
        ]
    )
    headers = (
        "CASE WHEN held = 0 THEN CAST(NULL AS MAP<STRING, BYTES>)"
        " WHEN held = 1 THEN CAST(MAP['other', X'78'] AS MAP<STRING, BYTES>)"
        " ELSE CAST(MAP['other', X'78', 'traceparent', h] AS MAP<STRING, BYTES>) END"
    )
    table = t_env.from_elements(rows, schema).select(
        col("i"), call_sql(headers).alias("headers"), col("topic"), col("partition"), col("offset")
    )
    table = table.select(
        col("i"),
        call_sql(hop_traceparent_sql()).alias("by_sql"),
        call(pipeline.HOP_TRACEPARENT, col("headers"), col("topic"), col("partition"), col("offset")).alias(
            "by_java"
        ),
    )
    with table.execute().collect() as results:
        got = {i: (by_sql, by_java) for i, by_sql, by_java in results}
    assert len(got) == len(rows)
    differ = {i: pair for i, pair in got.items() if pair[0] != pair[1]}
    assert not differ, {i: (values[i] if i < len(values) else None, pair) for i, pair in differ.items()}
    # The corpus reaches both outcomes, and Java's `$` before a final line terminator.
    continued = {i for i, (sql, _) in got.items() if sql[3:35] == PARENT[3:35]}
    assert 0 in continued and len(continued) < len(got) / 2
    assert values.index((PARENT + "\n").encode()) in continued


@pytest.mark.timeout(300)
def test_signals_and_dead_letters_carry_the_raw_record_s_trace(tmp_path: Path) -> None:
    env = environment(tmp_path)
    t_env = runtime.table_environment(env)
    pipeline.configure(t_env, config())
    records = [Raw(value, p, o, 1_767_225_660_000 + i) for i, (p, o, value) in enumerate(INPUT)]
    # Partition 0's records carry a traceparent (a trace per offset); partition 1's carry no headers.
    parent_sql = "CONCAT('00-', MD5(CAST(`offset` AS STRING)), '-b7ad6b7169203331-01')"
    source = t_env.from_data_stream(records_source(env, records)).select(
        col("value"),
        col("topic"),
        col("partition"),
        col("offset"),
        call("TO_TIMESTAMP_LTZ", col("timestamp"), 3).alias("timestamp"),
        call_sql(
            "CASE WHEN `partition` = 0 THEN "
            f"CAST(MAP['traceparent', ENCODE({parent_sql}, 'UTF-8')] AS MAP<STRING, BYTES>) "
            "ELSE CAST(NULL AS MAP<STRING, BYTES>) END"
        ).alias("headers"),
    )
    outputs = pipeline.build_tables(t_env, source, config())
    both = (
        outputs[pipeline.SIGNALS]
        .select(lit("signal").alias("kind"), col("v"), col(TRACEPARENT))
        .union_all(
            outputs[pipeline.DEAD_LETTERS].select(lit("dead").alias("kind"), col("v"), col(TRACEPARENT))
        )
    )
    with both.execute().collect() as results:
        rows = [(kind, bytes(v), tp) for kind, v, tp in results]

    signals, letters = config().signals, config().dead_letters
    seen = set()
    for kind, value, traceparent in rows:
        if kind == "signal":
            source_of = signals.decode(value)["source"]
            partition, offset = source_of["partition"], source_of["offset"]
        else:
            letter = letters.decode(value)
            partition, offset = letter["source_partition"], letter["source_offset"]
        parent = (
            f"00-{hashlib.md5(str(offset).encode()).hexdigest()}-b7ad6b7169203331-01"
            if partition == 0
            else None
        )
        assert traceparent == reference(parent, "agents.events.raw.v1", partition, offset), (
            kind,
            partition,
            offset,
        )
        seen.add((partition, offset))
    # Every record but the two duplicates came out, each with its header.
    assert len(rows) == len(INPUT) - 2 and len(seen) == len(rows)


@pytest.mark.timeout(300)
def test_features_continue_their_newest_signal_s_trace_and_link_the_others(tmp_path: Path) -> None:
    """feature-aggregator's traced path: the source's header text validated in SQL, the window's newest signal
    chosen in Python, the hop's span id and both headers derived in SQL at the sink."""
    from flink_events import BASE_MS
    from test_feature_aggregator_pipeline import INPUT as SIGNALS
    from test_feature_aggregator_pipeline import LATE, UNDECODABLE
    from test_feature_aggregator_pipeline import config as feature_config

    from flink_apps.common import flink_io
    from flink_apps.common.tracing import TRACELINKS
    from flink_apps.feature_aggregator import pipeline as features

    env = environment(tmp_path)
    t_env = runtime.table_environment(env)
    # Partition 0's signals carry a trace each (by offset); partition 1's none, but offset 1's a bad one.
    parent_sql = "CONCAT('00-', MD5(CONCAT('t', CAST(`offset` AS STRING))), '-b7ad6b7169203331-01')"
    table = t_env.from_data_stream(records_source(env, SIGNALS)).select(
        col("value"),
        col("topic"),
        col("partition"),
        col("offset"),
        call("TO_TIMESTAMP_LTZ", col("timestamp"), 3).alias("ts"),
        call_sql(
            "CASE WHEN `partition` = 0 THEN "
            f"CAST(MAP['traceparent', ENCODE({parent_sql}, 'UTF-8')] AS MAP<STRING, BYTES>) "
            "WHEN `offset` = 1 THEN CAST(MAP['traceparent', ENCODE('00-zz', 'UTF-8')] AS MAP<STRING, BYTES>) "
            "ELSE CAST(NULL AS MAP<STRING, BYTES>) END"
        ).alias("headers"),
    )
    source = flink_io.source_records(t_env, table, traced=True, name="signals", uid="signals")
    config = dataclasses.replace(feature_config(), traced=True)
    out = flink_io.traced_table(t_env, features.build(env, source, config)[features.FEATURES])
    with out.select(col("v"), col(TRACEPARENT), col(TRACELINKS)).execute().collect() as results:
        rows = [(config.features.decode(bytes(v)), tp, links) for v, tp, links in results]

    def parent_of(partition: int, offset: int) -> str | None:
        if partition != 0:
            return None
        return f"00-{hashlib.md5(f't{offset}'.encode()).hexdigest()}-b7ad6b7169203331-01"

    # What each window holds, from the input (the late and the undecodable signals are in none).
    decoded = [
        (r.partition, r.offset, config.signals.decode(bytes(r.value or b"")))
        for i, r in enumerate(SIGNALS)
        if i not in (LATE, UNDECODABLE)
    ]
    assert len(rows) == 5
    for feature, traceparent, links in rows:
        start = int(feature["window_start"].timestamp() * 1000)
        members = sorted(
            (int(d["occurred_at"].timestamp() * 1000), p, o)
            for p, o, d in decoded
            if d["entity_id"] == feature["entity_id"]
            and start <= int(d["occurred_at"].timestamp() * 1000) < start + config.window_size_ms
        )
        assert len(members) == feature["event_count"]
        _, partition, offset = members[-1]
        assert traceparent == reference(parent_of(partition, offset), "agents.signals.v1", partition, offset)
        want_links = [tp for _, p, o in reversed(members) if (tp := parent_of(p, o)) is not None]
        assert (links or "") == ",".join(want_links), (feature["entity_id"], start - BASE_MS)
    # Both kinds occur: a window continuing a signal's trace, and one starting its own (partition 1's).
    continued = {f"00-{hashlib.md5(f't{o}'.encode()).hexdigest()}" for o in range(10)}
    assert any(tp[:35] in continued for _, tp, _ in rows)
    assert any(tp[:35] not in continued and not links for _, tp, links in rows)
