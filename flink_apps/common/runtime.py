"""Creating the Flink environments the apps run in (locally, in tests, and inside the image)."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from pyflink.common import Configuration
from pyflink.datastream import CheckpointingMode, StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment


def create_environment(
    settings: Mapping[str, str] | None = None, jars: Sequence[str | Path] = ()
) -> StreamExecutionEnvironment:
    """A stream environment whose Python workers use this interpreter, with `jars` on the job's classpath.

    In the image the connector jar and our native functions sit in /opt/flink/lib and `jars` stays empty;
    local runs pass the jars fetched into .cache/jvm/flink-connectors and the flink-functions jar built by
    headwater.jvm.
    """
    conf = Configuration()
    # The workers must run the interpreter (and so the packages) the job was built with.
    conf.set_string("python.executable", sys.executable)
    urls = [_jar_url(j) for j in jars]
    if urls:
        conf.set_string("pipeline.jars", ";".join(urls))
    for key, value in (settings or {}).items():
        conf.set_string(key, value)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    if urls:
        # Also on the client's class loader: functions the job builds through the gateway come from them.
        from pyflink.util.java_utils import add_jars_to_context_class_loader

        add_jars_to_context_class_loader(urls)
    return env


def _jar_url(jar: str | Path) -> str:
    text = str(jar)
    if "://" in text:
        return text
    path = Path(text).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"connector jar {path} does not exist")
    return path.as_uri()


def ensure_checkpointing(env: StreamExecutionEnvironment, interval_ms: int) -> None:
    """Exactly-once sinks commit only on checkpoints: turn them on unless the cluster already has."""
    config = env.get_checkpoint_config()
    if not config.is_checkpointing_enabled():
        env.enable_checkpointing(interval_ms, CheckpointingMode.EXACTLY_ONCE)
    else:
        config.set_checkpointing_mode(CheckpointingMode.EXACTLY_ONCE)


def table_environment(env: StreamExecutionEnvironment) -> StreamTableEnvironment:
    """The table environment for the Kafka source and sinks, with stable operator uids.

    The Table API sets no uids by default; without them a savepoint cannot be matched to the Kafka source's
    offsets or the sinks' transactions after the job graph changes.
    """
    t_env = StreamTableEnvironment.create(env)
    t_env.get_config().set("table.exec.uid.generation", "ALWAYS")
    _reset_uid_counter(t_env)
    return t_env


def _reset_uid_counter(t_env: StreamTableEnvironment) -> None:
    """Generated uids number the plan's nodes with a counter of the JVM: reset it, so one program always
    gets the same uids, also when a second job is built in the same process (a restore in tests).

    The planner lives in its own class loader, hence reflection (on the client, where the gateway is)."""
    from pyflink.java_gateway import get_gateway

    gateway = get_gateway()
    loader = t_env._j_tenv.getPlanner().getClass().getClassLoader()
    context = loader.loadClass("org.apache.flink.table.planner.plan.nodes.exec.ExecNodeContext")
    reset = context.getMethod("resetIdCounter", gateway.new_array(gateway.jvm.Class, 0))
    reset.invoke(None, gateway.new_array(gateway.jvm.Object, 0))
