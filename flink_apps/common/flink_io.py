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
from flink_apps.common.tracing import TRACEPARENT, headers_sql

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
) -> DataStream:
    """A stream of `SOURCE_RECORD_TYPE` rows from `topic` (see `kafka_source_table`)."""
    table = kafka_source_table(
        t_env,
        connection,
        topic=topic,
        group_id=group_id,
        isolation_level=isolation_level,
        startup_mode=startup_mode,
    )
    # Without the headers: the record crosses into Python next, and nothing of this path reads them.
    table = table.select(col("value"), col("topic"), col("partition"), col("offset"), col("ts"))
    rows = t_env.to_data_stream(table)
    return rows.map(_to_source_record, output_type=SOURCE_RECORD_TYPE).name(f"{topic} records").uid(uid)


def _to_source_record(row: Row) -> Row:
    value, topic, partition, offset, ts = row  # the table's column order
    return Row(topic, partition, offset, epoch_millis(ts), value)


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

    The transaction timeout must not exceed the brokers' `transaction.max.timeout.ms`.
    """
    table = t_env.from_data_stream(stream).select(
        col("key").alias("k"), col("value").alias("v"), col("timestamp").alias("ts")
    )
    kafka_sink_table(
        statements,
        connection,
        table,
        topic=topic,
        transactional_id_prefix=transactional_id_prefix,
        transaction_timeout_ms=transaction_timeout_ms,
    )


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
    if the table has one, a `traceparent` column (STRING) written as the record's `traceparent` header."""
    traced = TRACEPARENT in table.get_schema().get_field_names()
    columns = [col("k"), col("v"), call("TO_TIMESTAMP_LTZ", col("ts"), 3).alias("ts")]
    if traced:
        columns.append(call_sql(headers_sql(TRACEPARENT)).alias("headers"))
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
