"""Flink wiring of the feature pipeline; every computation is in `logic`.

signal records -> decode -> event time + watermarks -> key by entity -> tumbling event-time window
    -> accumulate -> features (with window and provenance) -> encode -> features output
records of closed windows (late) -> counted

Trace context (`FeatureConfig.traced`): the source rows carry their record's `traceparent` (validated in Flink
SQL, `flink_io.TRACED_SOURCE_RECORD_TYPE`); the window keeps its newest signal's and the links
(`logic.Accumulator.trace`); the output rows (`flink_io.TRACED_KAFKA_RECORD_TYPE`) carry them, and the sink
derives the record's `traceparent` and `tracelinks` headers natively (`flink_io.traced_table`). No SDK call.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pyflink.common import Duration, Row, Time, Types, WatermarkStrategy
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import (
    AggregateFunction,
    DataStream,
    OutputTag,
    ProcessFunction,
    ProcessWindowFunction,
    RuntimeContext,
    StreamExecutionEnvironment,
)
from pyflink.datastream.window import TimeWindow, TumblingEventTimeWindows

from flink_apps.common.flink_io import KAFKA_RECORD_TYPE, TRACED_KAFKA_RECORD_TYPE
from flink_apps.common.wire import AvroCodec, WireFormatError
from flink_apps.feature_aggregator.logic import Accumulator, Signal

# Flink metric names (under the operator's metric group).
DECODED = "signals_decoded"
UNDECODABLE = "signals_undecodable"
LATE = "signals_late"
EMITTED = "features_emitted"

FEATURES = "features"

_LATE_TAG = OutputTag("late-signals", Types.PICKLED_BYTE_ARRAY())


@dataclass(frozen=True)
class FeatureConfig:
    signals: AvroCodec
    features: AvroCodec
    window_size_ms: int = 60_000
    allowed_lateness_ms: int = 0
    max_out_of_orderness_ms: int = 30_000
    idle_timeout_ms: int = 60_000
    # Source rows carry a traceparent; output rows carry the window's trace context (see the module's doc).
    traced: bool = False

    def __post_init__(self) -> None:
        for name in ("window_size_ms", "max_out_of_orderness_ms", "idle_timeout_ms"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.allowed_lateness_ms < 0:
            raise ValueError(f"allowed_lateness_ms must not be negative, got {self.allowed_lateness_ms}")


def build(
    env: StreamExecutionEnvironment, source: DataStream, config: FeatureConfig
) -> dict[str, DataStream]:
    """Wire the pipeline onto `source` (rows of flink_io.SOURCE_RECORD_TYPE read from the signals topic).

    Returns the output streams (rows of flink_io.KAFKA_RECORD_TYPE) by name: `features`.
    """
    del env  # part of the uniform build() signature; nothing here needs it
    watermarks = (
        WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(config.max_out_of_orderness_ms))
        .with_idleness(Duration.of_millis(config.idle_timeout_ms))
        .with_timestamp_assigner(SignalTime())
    )
    signals = (
        source.process(DecodeSignals(config.signals), output_type=Types.PICKLED_BYTE_ARRAY())
        .name("decode agents.signals.v1")
        .uid("features-decode")
        .assign_timestamps_and_watermarks(watermarks)
        .name("event time")
        .uid("features-watermarks")
    )
    features = (
        signals.key_by(_entity, key_type=Types.STRING())
        .window(TumblingEventTimeWindows.of(Time.milliseconds(config.window_size_ms)))
        .allowed_lateness(config.allowed_lateness_ms)
        .side_output_late_data(_LATE_TAG)
        .aggregate(
            AccumulateSignals(),
            EmitFeatures(config.features, traced=config.traced),
            accumulator_type=Types.PICKLED_BYTE_ARRAY(),
            output_type=TRACED_KAFKA_RECORD_TYPE if config.traced else KAFKA_RECORD_TYPE,
        )
        .name("activity features per entity and window")
        .uid("features-window")
    )
    (
        features.get_side_output(_LATE_TAG)
        .process(CountLate(), output_type=Types.PICKLED_BYTE_ARRAY())
        .name("count late signals")
        .uid("features-late")
    )
    return {FEATURES: features}


def _entity(signal: Signal) -> str:
    return signal.entity_id


class DecodeSignals(ProcessFunction):
    """Signals that do not decode are counted and skipped: they were written by agent_events, so a bad one
    is a defect there (already dead-lettered at the raw stage), not something to stop features for."""

    def __init__(self, codec: AvroCodec) -> None:
        self._codec = codec
        self._decoded: Any = None
        self._undecodable: Any = None

    def open(self, runtime_context: RuntimeContext) -> None:
        metrics = runtime_context.get_metrics_group()
        self._decoded = metrics.counter(DECODED)
        self._undecodable = metrics.counter(UNDECODABLE)

    def process_element(self, value: Row, ctx: ProcessFunction.Context) -> Iterator[Signal]:
        # positional: see flink_io.SOURCE_RECORD_TYPE (and TRACED_SOURCE_RECORD_TYPE: one more, the traceparent)
        topic, partition, offset, _timestamp, data = value[:5]
        traceparent = value[5] if len(value) > 5 else None
        try:
            signal = Signal.from_record(
                self._codec.decode(bytes(data or b"")), topic, partition, offset, traceparent
            )
        except (WireFormatError, ValueError, TypeError):
            self._undecodable.inc()
            return
        self._decoded.inc()
        yield signal


class SignalTime(TimestampAssigner):
    def extract_timestamp(self, value: Signal, record_timestamp: int) -> int:
        return value.occurred_at_ms


class AccumulateSignals(AggregateFunction):
    def create_accumulator(self) -> Accumulator:
        return Accumulator()

    def add(self, value: Signal, accumulator: Accumulator) -> Accumulator:
        return accumulator.add(value)

    def get_result(self, accumulator: Accumulator) -> Accumulator:
        return accumulator

    def merge(self, acc_a: Accumulator, acc_b: Accumulator) -> Accumulator:
        return acc_a.merge(acc_b)


class EmitFeatures(ProcessWindowFunction[Accumulator, Row, str, TimeWindow]):
    """Keyed by entity id for the compacted topic; timestamped with the window's last millisecond."""

    def __init__(self, codec: AvroCodec, traced: bool = False) -> None:
        self._codec = codec
        self._traced = traced
        self._emitted: Any = None

    def open(self, runtime_context: RuntimeContext) -> None:
        self._emitted = runtime_context.get_metrics_group().counter(EMITTED)

    def process(
        self, key: str, context: ProcessWindowFunction.Context[TimeWindow], elements: Iterable[Accumulator]
    ) -> Iterator[Row]:
        window: TimeWindow = context.window()
        for accumulator in elements:
            record = accumulator.features(key, window.start, window.end)
            self._emitted.inc()
            out = (key.encode("utf-8"), self._codec.encode(record), window.max_timestamp())
            if not self._traced:
                yield Row(*out)
                continue
            trace = accumulator.trace()
            yield Row(*out, trace.parent, trace.topic, trace.partition, trace.offset, trace.links_header)


class CountLate(ProcessFunction):
    def __init__(self) -> None:
        self._late: Any = None

    def open(self, runtime_context: RuntimeContext) -> None:
        self._late = runtime_context.get_metrics_group().counter(LATE)

    def process_element(self, value: Signal, ctx: ProcessFunction.Context) -> Iterator[Any]:
        self._late.inc()
        return iter(())
