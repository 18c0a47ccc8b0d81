"""Kafka in and out of the DataStream pipelines, through the Table API's Kafka connector.

Why tables: the PyFlink DataStream KafkaSource offers only value deserializers, so partition and offset
(needed for dead letters and provenance) are lost; and the DataStream KafkaSink can derive a record key
only from the whole element. The Kafka table connector exposes both as columns and is the same
KafkaSource/KafkaSink underneath (same checkpointed offsets, same transactions).

Pipelines see only two row types: `SOURCE_RECORD_TYPE` coming in and `KAFKA_RECORD_TYPE` going out, so
tests can plug any source and sink in their place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pyflink.common import Row, Types
from pyflink.datastream import DataStream
from pyflink.table import DataTypes, Schema, StatementSet, StreamTableEnvironment, Table, TableDescriptor
from pyflink.table.expressions import call, call_sql, col

from flink_apps.common.kafka_properties import redacted
from flink_apps.common.tracing import (
    TRACELINKS,
    TRACEPARENT,
    header_value_sql,
    headers_sql,
    hop_traceparent_of_sql,
    valid_traceparent_sql,
)

SOURCE_RECORD_TYPE = Types.ROW_NAMED(
    ["topic", "partition", "offset", "timestamp", "value"],
    [Types.STRING(), Types.INT(), Types.LONG(), Types.LONG(), Types.PRIMITIVE_ARRAY(Types.BYTE())],
)
"""A record read from Kafka: where it was, its broker timestamp (epoch ms) and its value bytes."""

KAFKA_RECORD_TYPE = Types.ROW_NAMED(
    ["key", "value", "timestamp"],
    [Types.PRIMITIVE_ARRAY(Types.BYTE()), Types.PRIMITIVE_ARRAY(Types.BYTE()), Types.LONG()],
)
"""A record to write: key and value bytes and its timestamp (epoch ms, None for the broker's clock)."""

TRACED_SOURCE_RECORD_TYPE = Types.ROW_NAMED(
    [*SOURCE_RECORD_TYPE.get_field_names(), "traceparent"],
    [*SOURCE_RECORD_TYPE.get_field_types(), Types.STRING()],
)
"""`SOURCE_RECORD_TYPE` and the record's `traceparent` header when it is a valid one (checked in SQL), else None."""

TRACED_KAFKA_RECORD_TYPE = Types.ROW_NAMED(
    [
        *KAFKA_RECORD_TYPE.get_field_names(),
        "parent",
        "parent_topic",
        "parent_partition",
        "parent_offset",
        "links",
    ],
    [
        *KAFKA_RECORD_TYPE.get_field_types(),
        Types.STRING(),
        Types.STRING(),
        Types.INT(),
        Types.LONG(),
        Types.STRING(),
    ],
)
"""`KAFKA_RECORD_TYPE` and where its trace continues: the traceparent (or None) and position of the input
record whose trace it continues (the hop's span id is derived from that position, in SQL: `traced_table`),
and the `tracelinks` header's value (comma-separated traceparents, may be empty)."""

HEADERS_TYPE = DataTypes.MAP(DataTypes.STRING(), DataTypes.BYTES())
"""The Kafka connector's `headers` metadata column (W3C trace context travels in `traceparent`)."""

STARTUP_MODES = ("group-offsets", "earliest-offset", "latest-offset")
ISOLATION_LEVELS = ("read_committed", "read_uncommitted")


@dataclass(frozen=True)
class KafkaConnection:
    """Where the brokers are and the client properties (security) every client of the app uses."""

    bootstrap_servers: str
    properties: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"KafkaConnection({self.bootstrap_servers!r}, {redacted(dict(self.properties))!r})"

    def options(self) -> dict[str, str]:
        opts = {"properties.bootstrap.servers": self.bootstrap_servers}
        opts.update({f"properties.{k}": v for k, v in self.properties.items()})
        return opts


def kafka_source_table(
    t_env: StreamTableEnvironment,
    connection: KafkaConnection,
    *,
    topic: str,
    group_id: str,
    isolation_level: str = "read_committed",
    startup_mode: str = "group-offsets",
) -> Table:
    """A table of `topic`'s records (`value`, `topic`, `partition`, `offset`, `ts` TIMESTAMP_LTZ(3),
    `headers` MAP<STRING, BYTES>), reading only committed transactions unless the flow chose
    `read_uncommitted` (at-least-once). A query that does not select `headers` does not read them."""
    if startup_mode not in STARTUP_MODES:
        raise ValueError(f"startup mode {startup_mode!r} is not one of {', '.join(STARTUP_MODES)}")
    if isolation_level not in ISOLATION_LEVELS:
        raise ValueError(f"isolation level {isolation_level!r} is not one of {', '.join(ISOLATION_LEVELS)}")
    schema = (
        Schema.new_builder()
        .column("value", DataTypes.BYTES())
        .column_by_metadata("topic", DataTypes.STRING(), "topic", True)
        .column_by_metadata("partition", DataTypes.INT(), "partition", True)
        .column_by_metadata("offset", DataTypes.BIGINT(), "offset", True)
        .column_by_metadata("ts", DataTypes.TIMESTAMP_LTZ(3), "timestamp", True)
        .column_by_metadata("headers", HEADERS_TYPE, "headers", True)
        .build()
    )
    builder = TableDescriptor.for_connector("kafka").schema(schema).format("raw")
    options = {
        **connection.options(),
        "topic": topic,
        "properties.group.id": group_id,
        "properties.isolation.level": isolation_level,
        # Without committed offsets (first start) read the topic from its beginning.
        "properties.auto.offset.reset": "earliest",
        "scan.startup.mode": startup_mode,
    }
    for key, value in options.items():
        builder = builder.option(key, value)
    return t_env.from_descriptor(builder.build())


def kafka_source(
    t_env: StreamTableEnvironment,
    connection: KafkaConnection,
    *,
    topic: str,
    group_id: str,
    isolation_level: str = "read_committed",
    startup_mode: str = "group-offsets",
    uid: str,
    traced: bool = False,
) -> DataStream:
    """A stream of `SOURCE_RECORD_TYPE` rows from `topic` (see `kafka_source_table`); `traced`: of
    `TRACED_SOURCE_RECORD_TYPE` rows, the `traceparent` header read and validated natively."""
    table = kafka_source_table(
        t_env,
        connection,
        topic=topic,
        group_id=group_id,
        isolation_level=isolation_level,
        startup_mode=startup_mode,
    )
    return source_records(t_env, table, traced=traced, name=f"{topic} records", uid=uid)


def source_records(
    t_env: StreamTableEnvironment, table: Table, *, traced: bool, name: str, uid: str
) -> DataStream:
    """A table of Kafka records (`value`, `topic`, `partition`, `offset`, `ts`, `headers`) as a stream of
    `SOURCE_RECORD_TYPE` rows, or (`traced`) of `TRACED_SOURCE_RECORD_TYPE` rows."""
    columns = [col("value"), col("topic"), col("partition"), col("offset"), col("ts")]
    if traced:
        # Only the one header's text crosses into Python, never the header map.
        columns.append(call_sql(valid_traceparent_sql(header_value_sql("headers"))).alias(TRACEPARENT))
    rows = t_env.to_data_stream(table.select(*columns))
    record_type = TRACED_SOURCE_RECORD_TYPE if traced else SOURCE_RECORD_TYPE
    return rows.map(_to_source_record, output_type=record_type).name(name).uid(uid)


def _to_source_record(row: Row) -> Row:
    value, topic, partition, offset, ts = row[:5]  # the table's column order
    return Row(topic, partition, offset, epoch_millis(ts), value, *row[5:])


def epoch_millis(value: Any) -> int | None:
    """Epoch millis of a TIMESTAMP_LTZ as the Python operators get it: a datetime in process mode, a
    java.time.Instant in thread mode (PyFlink's `Instant`, or the Java object itself), or a number."""
    if value is None:
        return None
    if hasattr(value, "to_epoch_milli"):
        return int(value.to_epoch_milli())
    if hasattr(value, "toEpochMilli"):
        return int(value.toEpochMilli())
    if hasattr(value, "timestamp"):
        return round(float(value.timestamp()) * 1000)
    return int(value)


def kafka_sink(
    t_env: StreamTableEnvironment,
    statements: StatementSet,
    connection: KafkaConnection,
    stream: DataStream,
    *,
    topic: str,
    transactional_id_prefix: str,
    transaction_timeout_ms: int,
) -> None:
    """Write a stream of `KAFKA_RECORD_TYPE` rows to `topic` exactly once (Kafka transactions committed on
    checkpoints; readers must use read_committed).

    The transaction timeout must not exceed the brokers' `transaction.max.timeout.ms`. Rows of
    `TRACED_KAFKA_RECORD_TYPE` are written with their `traceparent` and `tracelinks` headers (`traced_table`).
    """
    table = traced_table(t_env, stream)
    kafka_sink_table(
        statements,
        connection,
        table,
        topic=topic,
        transactional_id_prefix=transactional_id_prefix,
        transaction_timeout_ms=transaction_timeout_ms,
    )


def traced_table(t_env: StreamTableEnvironment, stream: DataStream) -> Table:
    """A stream of `KAFKA_RECORD_TYPE` rows as a table of `k`, `v`, `ts`; of `TRACED_KAFKA_RECORD_TYPE` rows,
    with `traceparent` (the input's trace with the hop's span id derived from the input's position, in SQL:
    `flink_apps.common.tracing.hop_traceparent_of_sql`) and `tracelinks`."""
    table = t_env.from_data_stream(stream)
    columns = [col("key").alias("k"), col("value").alias("v"), col("timestamp").alias("ts")]
    if "parent" in table.get_schema().get_field_names():
        hop = hop_traceparent_of_sql("`parent`", "parent_topic", "parent_partition", "parent_offset")
        columns += [call_sql(hop).alias(TRACEPARENT), col("links").alias(TRACELINKS)]
    return table.select(*columns)


def kafka_sink_table(
    statements: StatementSet,
    connection: KafkaConnection,
    table: Table,
    *,
    topic: str,
    transactional_id_prefix: str,
    transaction_timeout_ms: int,
) -> None:
    """`kafka_sink` for a table of `k`, `v` (BYTES) and `ts` (epoch ms, null for the broker's clock); and,
    if the table has one, a `traceparent` column (STRING) written as the record's `traceparent` header, and a
    `tracelinks` column (STRING) as its `tracelinks` header (when not empty)."""
    names = table.get_schema().get_field_names()
    traced = TRACEPARENT in names
    columns = [col("k"), col("v"), call("TO_TIMESTAMP_LTZ", col("ts"), 3).alias("ts")]
    if traced:
        links = TRACELINKS if TRACELINKS in names else None
        columns.append(call_sql(headers_sql(TRACEPARENT, links)).alias("headers"))
    table = table.select(*columns)
    builder_schema = (
        Schema.new_builder()
        .column("k", DataTypes.BYTES())
        .column("v", DataTypes.BYTES())
        .column_by_metadata("ts", DataTypes.TIMESTAMP_LTZ(3), "timestamp")
    )
    if traced:
        builder_schema = builder_schema.column_by_metadata("headers", HEADERS_TYPE, "headers")
    schema = builder_schema.build()
    options = {
        **connection.options(),
        "topic": topic,
        "key.format": "raw",
        "key.fields": "k",
        "value.format": "raw",
        "value.fields-include": "EXCEPT_KEY",
        "sink.delivery-guarantee": "exactly-once",
        "sink.transactional-id-prefix": transactional_id_prefix,
        "properties.transaction.timeout.ms": str(transaction_timeout_ms),
    }
    builder = TableDescriptor.for_connector("kafka").schema(schema)
    for key, value in options.items():
        builder = builder.option(key, value)
    statements.add_insert(builder.build(), table)
