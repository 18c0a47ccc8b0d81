"""Flink wiring of the agent event pipeline; every decision is made in `logic`.

source records -> validate --(dead letters)--> encode -> dead-letter output
                     |
                event time + watermarks -> key by event id -> dedup (TTL state) -> encode -> signals output
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pyflink.common import Duration, Row, Time, Types, WatermarkStrategy
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import (
    DataStream,
    KeyedProcessFunction,
    MapFunction,
    OutputTag,
    ProcessFunction,
    RuntimeContext,
    StreamExecutionEnvironment,
)
from pyflink.datastream.state import StateTtlConfig, ValueStateDescriptor

from flink_apps.agent_events.logic import AgentEvent, Contract, Rejected, SourceRecord
from flink_apps.common.flink_io import KAFKA_RECORD_TYPE
from flink_apps.common.wire import AvroCodec

# Flink metric names (under the operator's metric group).
VALID = "events_valid"
INVALID = "events_invalid"
DUPLICATES = "events_duplicate"

SIGNALS = "signals"
DEAD_LETTERS = "dead_letters"

_DEAD_LETTER_TAG = OutputTag("dead-letters", KAFKA_RECORD_TYPE)


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


def build(
    env: StreamExecutionEnvironment, source: DataStream, config: AgentEventsConfig
) -> dict[str, DataStream]:
    """Wire the pipeline onto `source` (rows of flink_io.SOURCE_RECORD_TYPE).

    Returns the output streams (rows of flink_io.KAFKA_RECORD_TYPE) by name: `signals`, `dead_letters`.
    """
    del env  # part of the uniform build() signature; nothing here needs it
    checked = (
        source.process(
            ValidateEvents(config.contract, config.dead_letters), output_type=Types.PICKLED_BYTE_ARRAY()
        )
        .name("validate against agents.events.raw.v1")
        .uid("agent-events-validate")
    )
    dead_letters = checked.get_side_output(_DEAD_LETTER_TAG)
    watermarks = (
        WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(config.max_out_of_orderness_ms))
        .with_idleness(Duration.of_millis(config.idle_timeout_ms))
        .with_timestamp_assigner(EventTime())
    )
    signals = (
        checked.assign_timestamps_and_watermarks(watermarks)
        .name("event time")
        .uid("agent-events-watermarks")
        .key_by(_dedup_key, key_type=Types.STRING())
        .process(Deduplicate(config.dedup_ttl_ms), output_type=Types.PICKLED_BYTE_ARRAY())
        .name("deduplicate by event_id")
        .uid("agent-events-dedup")
        .map(EncodeSignal(config.signals), output_type=KAFKA_RECORD_TYPE)
        .name("encode signals")
        .uid("agent-events-encode-signals")
    )
    return {SIGNALS: signals, DEAD_LETTERS: dead_letters}


def _dedup_key(event: AgentEvent) -> str:
    return event.dedup_key


def to_source_record(row: Row) -> SourceRecord:
    # Positional: rows handed over inside one Python worker carry no field names.
    topic, partition, offset, timestamp_ms, value = row
    return SourceRecord(topic, partition, offset, timestamp_ms, None if value is None else bytes(value))


class ValidateEvents(ProcessFunction):
    """Valid events continue as `AgentEvent`s; rejected records leave as encoded dead letters."""

    def __init__(self, contract: Contract, codec: AvroCodec) -> None:
        self._contract = contract
        self._codec = codec
        self._valid: Any = None
        self._invalid: Any = None

    def open(self, runtime_context: RuntimeContext) -> None:
        metrics = runtime_context.get_metrics_group()
        self._valid = metrics.counter(VALID)
        self._invalid = metrics.counter(INVALID)

    def process_element(self, value: Row, ctx: ProcessFunction.Context) -> Iterator[Any]:
        record = to_source_record(value)
        result = self._contract.check(record)
        if isinstance(result, Rejected):
            self._invalid.inc()
            encoded = self._codec.encode(result.dead_letter())
            # Keyed by source partition: one partition's rejects stay in order on one dead-letter partition.
            yield _DEAD_LETTER_TAG, Row(str(record.partition).encode("utf-8"), encoded, record.timestamp_ms)
        else:
            self._valid.inc()
            yield result


class EventTime(TimestampAssigner):
    def extract_timestamp(self, value: AgentEvent, record_timestamp: int) -> int:
        return value.occurred_at_ms


class Deduplicate(KeyedProcessFunction):
    """Passes the first event of each key; remembers keys for `ttl_ms` (processing time) in keyed state."""

    def __init__(self, ttl_ms: int) -> None:
        self._ttl_ms = ttl_ms
        self._seen: Any = None
        self._duplicates: Any = None

    def open(self, runtime_context: RuntimeContext) -> None:
        # Expired entries are dropped by RocksDB compaction, Flink's default background cleanup (checked
        # every 1,000 entries). Configuring it explicitly would build a Java object through the JVM gateway,
        # which a Python worker process on a cluster does not have.
        ttl = (
            StateTtlConfig.new_builder(Time.milliseconds(self._ttl_ms))
            .set_update_type(StateTtlConfig.UpdateType.OnCreateAndWrite)
            .set_state_visibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
            .build()
        )
        descriptor = ValueStateDescriptor("seen", Types.BOOLEAN())
        descriptor.enable_time_to_live(ttl)
        self._seen = runtime_context.get_state(descriptor)
        self._duplicates = runtime_context.get_metrics_group().counter(DUPLICATES)

    def process_element(self, value: AgentEvent, ctx: KeyedProcessFunction.Context) -> Iterator[AgentEvent]:
        if self._seen.value():
            self._duplicates.inc()
            return
        self._seen.update(True)
        yield value


class EncodeSignal(MapFunction):
    """Signals are keyed by agent id so one agent's signals stay in order on one partition."""

    def __init__(self, codec: AvroCodec) -> None:
        self._codec = codec

    def map(self, value: AgentEvent) -> Row:
        return Row(value.agent_id.encode("utf-8"), self._codec.encode(value.signal()), value.occurred_at_ms)
