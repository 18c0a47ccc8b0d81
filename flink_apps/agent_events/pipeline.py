"""Flink wiring of the agent event pipeline; every decision about a record is made in `logic`.

What runs where, and why (decided by profiles: first Python was ~70% of the CPU per event when every stage
was a Python DataStream operator; then, with one batched Python function per record, the Python worker and
the exchange with it still cost ~120 us per record while the JVM alone carried the rest at 4x the rate):

    Kafka source (native, offsets in checkpoints)
      -> native: accept_agent_event, a Java function (flink/functions, AcceptAgentEvent) that validates,
         normalizes and Avro-encodes every record it can prove valid: the common case never leaves the JVM
      -> the rest (rejects, and the rare valid record outside the Java function's domain: non-ASCII text,
         floats, ...) -> check_events: ONE Python scalar function per record, batched in bundles, which has
         the last word: validate against the contract (compiled validator; the full validator only explains
         rejects), normalize, and encode the signal or the dead letter (Avro, registry id)
      -> both as (valid, event_id, event_time, key, value, ts)
      -> native: rejects -> dead-letter sink (Kafka, exactly once)
      -> native: event-time watermarks on the valid events' occurred_at (bounded out-of-orderness, idleness)
      -> native: dedup by event id (first row per key on processing time; RocksDB state with TTL, expired
         entries dropped by compaction as Flink does by default)
      -> signals sink (Kafka, exactly once)

The two paths give byte-identical signals for every record both decide (tests/flink holds them equal on a
corpus); `AgentEventsConfig.native=False` runs every record through Python (the benchmark's comparison).

Trace context: the `traceparent` of each output record is computed natively next to the functions (a Java
function, `HopTraceparent`, over the source's `headers` metadata and its position, equal to the SQL
expression that defines it in `flink_apps.common.tracing`, which cost a sixth of the source thread): the raw
record's trace continues with a span id derived from the raw record's topic, partition and offset, on signals
and dead letters alike. No SDK call, no exporter, no Python.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pyflink.common import Row
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.table import DataTypes, Schema, StreamTableEnvironment, Table
from pyflink.table.expressions import call, call_sql, col, if_then_else, null_of
from pyflink.table.udf import FunctionContext, ScalarFunction, UserDefinedFunctionWrapper, udf

from flink_apps.agent_events.logic import CONTRACT, AgentEvent, Contract, SourceRecord
from flink_apps.common import runtime
from flink_apps.common.flink_io import epoch_millis
from flink_apps.common.tracing import TRACEPARENT, hop_traceparent_sql
from flink_apps.common.wire import AvroCodec

# Flink metric names (under the operator's metric group).
VALID = "events_valid"
INVALID = "events_invalid"

SIGNALS = "signals"
DEAD_LETTERS = "dead_letters"

# The native common case (flink/functions): its class, the name it is registered under, its result's fields.
NATIVE_CLASS = "dev.headwater.flink.AcceptAgentEvent"
NATIVE_FUNCTION = "accept_agent_event"
HOP_TRACEPARENT_CLASS = "dev.headwater.flink.HopTraceparent"
HOP_TRACEPARENT = "hop_traceparent"
DECIDED = "decided"

_CHECKED_COLUMNS: list[tuple[str, Any]] = [
    ("valid", DataTypes.BOOLEAN()),
    ("event_id", DataTypes.STRING()),
    # occurred_at of a valid event; 0 for a reject, so rejects never move the watermark
    ("event_time", DataTypes.BIGINT()),
    ("k", DataTypes.BYTES()),
    ("v", DataTypes.BYTES()),
    ("ts", DataTypes.BIGINT()),  # the output record's timestamp (epoch ms)
]
CHECKED_TYPE = DataTypes.ROW([DataTypes.FIELD(name, data_type) for name, data_type in _CHECKED_COLUMNS])


@dataclass(frozen=True)
class AgentEventsConfig:
    contract: Contract
    signals: AvroCodec
    dead_letters: AvroCodec
    dedup_ttl_ms: int = 24 * 3600 * 1000
    max_out_of_orderness_ms: int = 30_000
    idle_timeout_ms: int = 60_000
    # Valid records in the plain domain decided in the JVM; False: every record through Python.
    native: bool = True

    def __post_init__(self) -> None:
        for name in ("dedup_ttl_ms", "max_out_of_orderness_ms", "idle_timeout_ms"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


class CheckEvents(ScalarFunction):
    """One raw record -> a valid event's encoded signal (keyed by agent id, stamped with its event time) or
    an encoded dead letter (keyed by source partition, so one partition's rejects stay in order)."""

    def __init__(self, contract: Contract, signals: AvroCodec, dead_letters: AvroCodec) -> None:
        self._contract = contract
        self._signals = signals
        self._dead_letters = dead_letters
        self._valid: Any = None
        self._invalid: Any = None

    def open(self, function_context: FunctionContext) -> None:
        metrics = function_context.get_metric_group()
        self._valid = metrics.counter(VALID)
        self._invalid = metrics.counter(INVALID)

    def eval(self, value: bytes | None, topic: str, partition: int, offset: int, timestamp: Any) -> Row:
        record = SourceRecord(topic, partition, offset, epoch_millis(timestamp), value)
        result = self._contract.check(record)
        if isinstance(result, AgentEvent):
            self._valid.inc()
            return Row(
                True,
                result.event_id,
                result.occurred_at_ms,
                result.agent_id.encode("utf-8"),
                self._signals.encode(result.signal()),
                result.occurred_at_ms,
            )
        self._invalid.inc()
        return Row(
            False,
            None,
            0,
            str(partition).encode("utf-8"),
            self._dead_letters.encode(result.dead_letter()),
            record.timestamp_ms,
        )


def build_tables(t_env: StreamTableEnvironment, source: Table, config: AgentEventsConfig) -> dict[str, Table]:
    """Wire the pipeline onto `source` (columns `value` BYTES, `topic`, `partition`, `offset` and
    `timestamp` TIMESTAMP_LTZ(3), and optionally `headers` MAP<STRING, BYTES>). Returns the output tables
    (`k`, `v` BYTES, `ts` epoch ms; with `headers` in, also `traceparent` STRING) by name."""
    check = udf(
        CheckEvents(config.contract, config.signals, config.dead_letters),
        result_type=CHECKED_TYPE,
        name="check_agent_events",
    )
    assert isinstance(check, UserDefinedFunctionWrapper)  # udf() on an instance wraps it at once
    position = [col("value"), col("topic"), col("partition"), col("offset"), col("timestamp")]
    columns = list(_CHECKED_COLUMNS)
    out = [col("k"), col("v"), col("ts")]
    carried = []
    traced = "headers" in source.get_schema().get_field_names()
    if traced:
        # The Java function computes what the SQL expression defines, at a fraction of its cost (a test holds
        # the two equal); the Python-only comparison keeps the expression and needs no jar.
        traceparent = (
            call(HOP_TRACEPARENT, col("headers"), col("topic"), col("partition"), col("offset"))
            if config.native
            else call_sql(hop_traceparent_sql("headers", "topic", "partition", "offset"))
        )
        carried.append(traceparent.alias(TRACEPARENT))
        columns.append((TRACEPARENT, DataTypes.STRING()))
        out.append(col(TRACEPARENT))
    late = config.max_out_of_orderness_ms
    # DAY TO SECOND: the leading field holds up to 99 days, where SECOND alone stops at 99 seconds.
    bound = f"{late // 86_400_000} {late // 3_600_000 % 24:02d}:{late // 60_000 % 60:02d}:{late // 1000 % 60:02d}.{late % 1000:03d}"
    watermark = f"rowtime - INTERVAL '{bound}' DAY TO SECOND(3)"
    if config.native:
        valid, dead_letters = _native_first(
            t_env, source, config, check, position, carried, columns, watermark
        )
    else:
        checked = source.select(call(check, *position).alias("r"), *carried).select(
            col("r").flatten, *(col(TRACEPARENT) for _ in carried)
        )
        valid, dead_letters = _split(t_env, checked.alias(*(name for name, _ in columns)), columns, watermark)
    dead_letters = dead_letters.select(*out)
    t_env.create_temporary_view("agent_events_valid", valid)
    kept = "k, v, ts" + (f", `{TRACEPARENT}`" if traced else "")
    signals = t_env.sql_query(
        f"SELECT {kept} FROM ("
        f"  SELECT {kept}, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY proc ASC) AS rn"
        "  FROM agent_events_valid"
        ") WHERE rn = 1"
    )
    return {SIGNALS: signals, DEAD_LETTERS: dead_letters}


def _split(
    t_env: StreamTableEnvironment, checked: Table, columns: list[tuple[str, Any]], watermark: str
) -> tuple[Table, Table]:
    """(valid rows with event time and watermarks, rejects) of the checked rows: one evaluation of the
    functions behind `checked` feeds both (branch on a stream, not on the table plan: each plan translated
    on its own would read Kafka and call the functions again)."""
    branch = internal_rows(t_env, checked)
    rejects = t_env.from_data_stream(branch, _schema(columns).build()).where(col("valid").is_false)
    timed = t_env.from_data_stream(branch, _timed(_schema(columns), "event_time", watermark).build())
    return timed.where(col("valid").is_true), rejects


def _timed(builder: Any, event_time: str, watermark: str) -> Any:
    """Event time (`rowtime`, from epoch millis, with bounded out-of-orderness) and processing time (`proc`)."""
    return (
        builder.column_by_expression("rowtime", f"TO_TIMESTAMP_LTZ({event_time}, 3)")
        .column_by_expression("proc", "PROCTIME()")
        .watermark("rowtime", watermark)
    )


def _native_first(
    t_env: StreamTableEnvironment,
    source: Table,
    config: AgentEventsConfig,
    check: UserDefinedFunctionWrapper,
    position: list[Any],
    carried: list[Any],
    columns: list[tuple[str, Any]],
    watermark: str,
) -> tuple[Table, Table]:
    """(valid rows, rejects): the Java function on every record, the Python function only on what the Java
    one left undecided.

    The Java function's result crosses a stream boundary first, so the planner can neither merge it into the
    two filters below nor evaluate it twice; event time and watermarks are assigned right there, so the
    common case goes from the Kafka source to the dedup's exchange in one chain of operators. The rare
    undecided records take the Python path (`_split`) and join the valid ones before the dedup.
    """
    register_native(t_env, config)
    names = ["value", "topic", "partition", "offset", "timestamp"]
    native = source.select(call(NATIVE_FUNCTION, *position).alias("n"), *position, *carried)
    # Only undecided records need their raw bytes past this point. (The function is not deterministic to the
    # planner, so merging this projection into the one above cannot evaluate it twice.)
    native = native.select(
        col("n"),
        if_then_else(col("n").get(DECIDED), null_of(DataTypes.BYTES()), col("value")).alias("value"),
        *(col(name) for name in names[1:]),
        *(col(TRACEPARENT) for _ in carried),
    )
    # Undecided rows have event time 0: they never move the watermark.
    records = t_env.from_data_stream(
        internal_rows(t_env, native), _timed(Schema.new_builder(), "`n`.`event_time`", watermark).build()
    )
    kept = [col(TRACEPARENT)] if carried else []
    decided = records.where(col("n").get(DECIDED)).select(
        *(col("n").get(name).alias(name) for name, _ in _CHECKED_COLUMNS), *kept, col("rowtime"), col("proc")
    )
    undecided = (
        records.where(col("n").get(DECIDED).is_false)
        .select(call(check, *(col(name) for name in names)).alias("r"), *kept)
        .select(col("r").flatten, *kept)
        .alias(*(name for name, _ in columns))
    )
    valid, rejects = _split(t_env, undecided, columns, watermark)
    return decided.union_all(valid), rejects


def internal_rows(t_env: StreamTableEnvironment, table: Table) -> DataStream:
    """`table` as a stream of Flink's internal rows, for `from_data_stream` on the other side of a stream
    boundary: the rows cross as they are, where `to_data_stream` would convert each to a `Row` and back."""
    from pyflink.java_gateway import get_gateway

    internal = get_gateway().jvm.org.apache.flink.table.data.RowData
    j_type = table._j_table.getResolvedSchema().toPhysicalRowDataType().bridgedTo(internal._java_lang_class)
    return DataStream(t_env._j_tenv.toDataStream(table._j_table, j_type))


def register_native(t_env: StreamTableEnvironment, config: AgentEventsConfig) -> None:
    """Register the Java function, built with the contract and the signals' schema and registry id.

    Built on the client through the JVM gateway (PyFlink registers Java functions by class name only, and
    this one needs its configuration): its jar is on the job's classpath (`pipeline.jars` locally, Flink's
    lib/ in the image), and it fails here, at job build time, on a contract it cannot read."""
    from py4j.java_gateway import JavaClass
    from pyflink.java_gateway import get_gateway

    function_class = get_gateway().jvm
    for part in NATIVE_CLASS.split("."):
        function_class = getattr(function_class, part)
    if not isinstance(function_class, JavaClass):  # py4j names an unknown class a package
        raise RuntimeError(
            f"{NATIVE_CLASS} is not on the job's classpath: build it with `python -m headwater.jvm build "
            "flink-functions` and pass the jar in --pipeline-jars (the image has it in /opt/flink/lib)"
        )
    function = function_class(
        json.dumps(config.contract.schema),
        CONTRACT,
        json.dumps(config.signals.definition),
        config.signals.schema_id,
    )
    t_env._j_tenv.createTemporarySystemFunction(NATIVE_FUNCTION, function)
    t_env.create_java_temporary_system_function(HOP_TRACEPARENT, HOP_TRACEPARENT_CLASS)


def _schema(columns: list[tuple[str, Any]]) -> Any:
    builder = Schema.new_builder()
    for name, data_type in columns:
        builder = builder.column(name, data_type)
    return builder


def configure(t_env: StreamTableEnvironment, config: AgentEventsConfig) -> None:
    """Table settings the pipeline relies on: dedup state lives `dedup_ttl_ms` (processing time, refreshed
    on write, never read once expired), and an idle source split stops holding back the watermark."""
    conf = t_env.get_config()
    conf.set("table.exec.state.ttl", f"{config.dedup_ttl_ms} ms")
    conf.set("table.exec.source.idle-timeout", f"{config.idle_timeout_ms} ms")


def build(
    env: StreamExecutionEnvironment, source: DataStream, config: AgentEventsConfig
) -> dict[str, DataStream]:
    """The pipeline on a stream of flink_io.SOURCE_RECORD_TYPE rows (tests plug their sources here).

    Returns streams of flink_io.KAFKA_RECORD_TYPE rows by name: `signals`, `dead_letters`.
    """
    t_env = runtime.table_environment(env)
    configure(t_env, config)
    table = t_env.from_data_stream(source).select(
        col("value"),
        col("topic"),
        col("partition"),
        col("offset"),
        call("TO_TIMESTAMP_LTZ", col("timestamp"), 3).alias("timestamp"),
    )
    return {name: t_env.to_data_stream(out) for name, out in build_tables(t_env, table, config).items()}
