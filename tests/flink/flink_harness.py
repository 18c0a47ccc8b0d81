"""Running the apps' pipelines on a local MiniCluster with test sources and file sinks.

Sources are deterministic and checkpointable (a NumberSequenceSource mapped to fixed records), sinks are
exactly-once FileSinks: a record appears in a finished part file only once its checkpoint has completed.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyflink.common import Encoder, Row, Types, WatermarkStrategy
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.datastream.connectors.file_system import FileSink, OutputFileConfig, RollingPolicy
from pyflink.datastream.connectors.number_seq import NumberSequenceSource

from flink_apps.common import runtime
from flink_apps.common.flink_io import SOURCE_RECORD_TYPE
from headwater import flink_conf, jvm


@dataclass(frozen=True)
class Raw:
    """A test input record: value bytes at a (partition, offset) of a topic."""

    value: bytes | None
    partition: int
    offset: int
    timestamp_ms: int | None
    topic: str = "agents.events.raw.v1"
    # Seconds the source waits before emitting this record (to let checkpoints or watermarks happen).
    delay_s: float = 0.0


def minicluster_settings(
    work: Path, *, checkpoint_interval_ms: int = 500, parallelism: int = 1
) -> dict[str, str]:
    """The apps' own Flink settings (headwater.flink_conf: state backend, checkpointing, Python execution
    mode, bundles) with a short checkpoint interval, plus what only tests want."""
    return {
        **flink_conf.flink_conf(
            checkpoint_interval_ms, (work / "checkpoints").as_uri(), (work / "savepoints").as_uri()
        ),
        "execution.checkpointing.num-retained": "2",
        # A failing job must fail the test, not restart forever.
        "restart-strategy.type": "none",
        "parallelism.default": str(parallelism),
        "pipeline.auto-watermark-interval": "50 ms",
        # The test sources pace records by sleeping in a Python map; one record per bundle lets checkpoint
        # barriers and watermarks pass between records instead of waiting for a whole bundle to be paced.
        "python.fn-execution.bundle.size": "1",
        "python.fn-execution.bundle.time": "10",
        "taskmanager.memory.managed.size": "128m",
    }


def environment(work: Path, extra: dict[str, str] | None = None, **kwargs: Any) -> StreamExecutionEnvironment:
    """A MiniCluster environment with the apps' settings and their native functions on the classpath."""
    settings = {**minicluster_settings(work, **kwargs), **(extra or {})}
    return runtime.create_environment(settings, jars=[jvm.build("flink-functions", quiet=True)])


def completed_checkpoints(work: Path, job_id: str) -> list[Path]:
    """Completed checkpoints of a job (those with metadata), oldest first."""
    folders = (work / "checkpoints" / job_id).glob("chk-*")
    done = [f for f in folders if (f / "_metadata").is_file()]
    return sorted(done, key=lambda f: int(f.name.split("-")[1]))


def records_source(
    env: StreamExecutionEnvironment, records: Sequence[Raw], uid: str = "test-source"
) -> DataStream:
    """Rows of SOURCE_RECORD_TYPE, one per record, in order (with parallelism 1)."""
    table = [(r.topic, r.partition, r.offset, r.timestamp_ms, r.value, r.delay_s) for r in records]

    def emit(index: int) -> Row:
        topic, partition, offset, timestamp_ms, value, delay_s = table[index]
        if delay_s:
            time.sleep(delay_s)
        return Row(topic, partition, offset, timestamp_ms, value)

    return (
        env.from_source(NumberSequenceSource(0, len(table) - 1), WatermarkStrategy.no_watermarks(), "records")
        .uid(f"{uid}-sequence")
        .map(emit, output_type=SOURCE_RECORD_TYPE)
        .uid(f"{uid}-records")
        # Delays must act like a slow topic: the source itself slows down (the map is chained to it, so
        # checkpoint barriers queue behind no backlog), while the pipeline's operators, in another task
        # behind this network edge, keep firing their timers (periodic watermarks).
        .rebalance()
    )


def file_sink(stream: DataStream, folder: Path, uid: str) -> None:
    """Write KAFKA_RECORD_TYPE rows as JSON lines into `folder`, committed on checkpoints."""

    def line(row: Row) -> str:
        key, value, timestamp = row
        return json.dumps(
            {
                "key": None if key is None else base64.b64encode(bytes(key)).decode(),
                "value": base64.b64encode(bytes(value)).decode(),
                "timestamp": timestamp,
            }
        )

    sink = (
        FileSink.for_row_format(str(folder), Encoder.simple_string_encoder())
        .with_output_file_config(
            OutputFileConfig.builder().with_part_prefix("part").with_part_suffix(".jsonl").build()
        )
        .with_rolling_policy(RollingPolicy.on_checkpoint_rolling_policy())
        .build()
    )
    stream.map(line, output_type=Types.STRING()).uid(f"{uid}-lines").sink_to(sink).uid(f"{uid}-sink")


@dataclass(frozen=True)
class Written:
    key: bytes | None
    value: bytes
    timestamp: int | None


def committed(folder: Path) -> list[Written]:
    """Records in finished part files (in-progress and pending files are hidden, named with a leading dot)."""
    out: list[Written] = []
    for part in sorted(folder.rglob("part*")):
        for text in part.read_text().splitlines():
            item = json.loads(text)
            key = None if item["key"] is None else base64.b64decode(item["key"])
            out.append(Written(key, base64.b64decode(item["value"]), item["timestamp"]))
    return out
