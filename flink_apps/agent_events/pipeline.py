"""Flink wiring of the agent event pipeline; every decision about a record is made in `logic`.

What runs where, and why (decided by a profile: Python was ~70% of the CPU per event when every stage was a
Python DataStream operator, each crossing between JVM and Python costing more than the work itself):

    Kafka source (native, offsets in checkpoints)
      -> check_events: ONE Python scalar function per record, batched in bundles: validate against the
         contract (compiled validator; the full validator only explains rejects), normalize, and encode the
         signal or the dead letter (Avro, registry id) -> (valid, event_id, event_time, key, value, ts)
      -> native: rejects -> dead-letter sink (Kafka, exactly once)
      -> native: event-time watermarks on the valid events' occurred_at (bounded out-of-orderness, idleness)
      -> native: dedup by event id (first row per key on processing time; RocksDB state with TTL, expired
         entries dropped by compaction as Flink does by default)
      -> signals sink (Kafka, exactly once)

Trace context: the `traceparent` of each output record is computed natively next to the Python function (a
SQL expression over the source's `headers` metadata and its position, forwarded past the Python operator in
the JVM): the raw record's trace continues with a span id derived from the raw record's topic, partition and
offset (`flink_apps.common.tracing`), on signals and dead letters alike. No SDK call, no exporter, no Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyflink.common import Row
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.table import DataTypes, Schema, StreamTableEnvironment, Table
from pyflink.table.expressions import call, call_sql, col
from pyflink.table.udf import FunctionContext, ScalarFunction, UserDefinedFunctionWrapper, udf

from flink_apps.agent_events.logic import AgentEvent, Contract, SourceRecord
from flink_apps.common import runtime
from flink_apps.common.flink_io import epoch_millis
from flink_apps.common.tracing import TRACEPARENT, hop_traceparent_sql
from flink_apps.common.wire import AvroCodec

# Flink metric names (under the operator's metric group).
VALID = "events_valid"
INVALID = "events_invalid"

SIGNALS = "signals"
DEAD_LETTERS = "dead_letters"

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
    checked_call = call(check, col("value"), col("topic"), col("partition"), col("offset"), col("timestamp"))
    columns = list(_CHECKED_COLUMNS)
    out = [col("k"), col("v"), col("ts")]
    traced = "headers" in source.get_schema().get_field_names()
    if traced:
        traceparent = call_sql(hop_traceparent_sql("headers", "topic", "partition", "offset"))
        checked = source.select(checked_call.alias("r"), traceparent.alias(TRACEPARENT))
        checked = checked.select(col("r").flatten, col(TRACEPARENT))
        columns.append((TRACEPARENT, DataTypes.STRING()))
        out.append(col(TRACEPARENT))
    else:
        checked = source.select(checked_call.alias("r")).select(col("r").flatten)
    checked = checked.alias(*(name for name, _ in columns))
    # One evaluation of the Python function feeds both branches: branch on a stream, not on the table plan
    # (each plan translated on its own would read Kafka and call Python again).
    branch = t_env.to_data_stream(checked)
    rejects = t_env.from_data_stream(branch, _schema(columns).build())
    dead_letters = rejects.where(col("valid").is_false).select(*out)

    late = config.max_out_of_orderness_ms
    # DAY TO SECOND: the leading field holds up to 99 days, where SECOND alone stops at 99 seconds.
    bound = f"{late // 86_400_000} {late // 3_600_000 % 24:02d}:{late // 60_000 % 60:02d}:{late // 1000 % 60:02d}.{late % 1000:03d}"
    timed = t_env.from_data_stream(
        branch,
        _schema(columns)
        .column_by_expression("rowtime", "TO_TIMESTAMP_LTZ(event_time, 3)")
        .column_by_expression("proc", "PROCTIME()")
        .watermark("rowtime", f"rowtime - INTERVAL '{bound}' DAY TO SECOND(3)")
        .build(),
    )
    t_env.create_temporary_view("agent_events_valid", timed.where(col("valid").is_true))
    kept = "k, v, ts" + (f", `{TRACEPARENT}`" if traced else "")
    signals = t_env.sql_query(
        f"SELECT {kept} FROM ("
        f"  SELECT {kept}, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY proc ASC) AS rn"
        "  FROM agent_events_valid"
        ") WHERE rn = 1"
    )
    return {SIGNALS: signals, DEAD_LETTERS: dead_letters}


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
