"""The apps' Flink configuration, derived once: checkpointing, state backend, Python execution mode, bundles.

Every realization reads it: the FlinkDeployments' `flinkConfiguration` (`components.flink_application`),
the local jobs' `--flink-conf` (`headwater.local.flink`) and the MiniCluster tests (`tests/flink`). What
differs between them (restart strategy, REST ports, resources, HA) stays with each realization.

Python runs as on a cluster everywhere. A PyFlink job started from a local Python process would otherwise run
its Python operators inside that process ("loopback"), where the JVM gateway (py4j) is at hand; on a cluster
it never is, so a job that passes locally could fail there. `PYTHON_WORKER_ENV` turns loopback off for local
starts; `PYTHON_EXECUTION_MODE` picks how the cluster runs Python operators.

Only the spec is imported: this module sits below the components and the local runtime.
"""

from __future__ import annotations

from headwater.spec import FlinkSettings

# How Python operators run: `process` (separate Python worker processes fed by gRPC) or `thread` (an
# interpreter embedded in the task manager's JVM).
PYTHON_EXECUTION_MODE = "process"
# Read by PyFlink's local executor: "process" makes a local run start its Python workers the way a task
# manager on a cluster does, instead of serving them from the submitting process.
PYTHON_WORKER_ENV = {"_python_worker_execution_mode": "process"}

CHECKPOINTS_RETAINED = 3
# Records leave a Python worker when its bundle is full or this old; exactly-once output is visible only at
# the next checkpoint anyway, so the bundle time is a small share of the latency budget.
BUNDLE_SIZE = 1_000
BUNDLE_TIME_MS = 20
# A network buffer leaves a task when full or this old: at high rates buffers fill long before; at low rates
# it bounds what a record waits per exchange (Flink's default is 100 ms), for at-least-once readers' latency.
BUFFER_TIMEOUT_MS = 20
WATERMARK_INTERVAL_MS = 200


def checkpoint_conf(checkpoint_interval_ms: int, checkpoints: str, savepoints: str) -> dict[str, str]:
    """RocksDB with incremental, exactly-once checkpoints under `checkpoints`, retained on cancellation."""
    if checkpoint_interval_ms <= 0:
        raise ValueError(f"checkpoint interval must be positive, got {checkpoint_interval_ms} ms")
    return {
        "state.backend.type": "rocksdb",
        "execution.checkpointing.incremental": "true",
        "execution.checkpointing.interval": f"{checkpoint_interval_ms} ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.timeout": "10 min",
        "execution.checkpointing.min-pause": f"{max(checkpoint_interval_ms // 2, 1)} ms",
        "execution.checkpointing.tolerable-failed-checkpoints": "3",
        "execution.checkpointing.storage": "filesystem",
        "execution.checkpointing.dir": checkpoints,
        "execution.checkpointing.savepoint-dir": savepoints,
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.num-retained": str(CHECKPOINTS_RETAINED),
    }


def python_conf() -> dict[str, str]:
    """How the Python operators run and how many records they take at a time."""
    return {
        "python.execution-mode": PYTHON_EXECUTION_MODE,
        "python.fn-execution.bundle.size": str(BUNDLE_SIZE),
        "python.fn-execution.bundle.time": str(BUNDLE_TIME_MS),
    }


def flink_conf(checkpoint_interval_ms: int, checkpoints: str, savepoints: str) -> dict[str, str]:
    """Every setting the apps share wherever they run."""
    return {
        **checkpoint_conf(checkpoint_interval_ms, checkpoints, savepoints),
        **python_conf(),
        "pipeline.auto-watermark-interval": f"{WATERMARK_INTERVAL_MS} ms",
        "execution.buffer-timeout.interval": f"{BUFFER_TIMEOUT_MS} ms",
    }


def prometheus_reporter_conf(port: int) -> dict[str, str]:
    """Flink's Prometheus reporter on `port` (the PodMonitors' scrape target; a free port locally)."""
    return {
        "metrics.reporter.prom.factory.class": "org.apache.flink.metrics.prometheus.PrometheusReporterFactory",
        "metrics.reporter.prom.port": str(port),
    }


def app_flink_conf(settings: FlinkSettings, checkpoints: str, savepoints: str) -> dict[str, str]:
    """`flink_conf` for an environment's Flink settings."""
    return flink_conf(settings.checkpoint_interval_ms, checkpoints, savepoints)
