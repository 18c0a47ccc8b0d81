"""Command-line options shared by the apps. Every option can also come from `HEADWATER_<OPTION>`.

Flink's PythonDriver appends arguments of its own, so apps parse with `parse_known_args`. Secrets are never
options: Kafka (and registry) credentials come from the file given by --kafka-properties-file.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment, Table
from pyflink.table.expressions import col

from flink_apps.common import flink_io, runtime, schemas
from flink_apps.common.flink_io import ISOLATION_LEVELS, STARTUP_MODES, KafkaConnection
from flink_apps.common.kafka_properties import read_properties_file, split_client_properties
from flink_apps.common.registry import RegistryClient
from flink_apps.common.wire import AvroCodec

ENV_PREFIX = "HEADWATER_"


def env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").upper().replace("-", "_")


def option(
    parser: argparse.ArgumentParser,
    flag: str,
    *,
    help: str,
    type: Callable[[str], Any] = str,
    default: Any = None,
    required: bool = False,
    choices: tuple[str, ...] | None = None,
    switch: bool = False,
) -> None:
    """Add `flag`, defaulting to its environment variable; required only when neither is given."""
    env = env_name(flag)
    from_env = os.environ.get(env)
    if from_env is not None and from_env != "":
        default = from_env  # argparse applies `type` to string defaults
    shown = f" (default: {default})" if default is not None and from_env is None else ""
    extra: dict[str, Any] = {"nargs": "?", "const": True} if switch else {}
    parser.add_argument(
        flag,
        type=type,
        default=default,
        required=required and default is None,
        choices=choices,
        help=f"{help}{shown} [env {env}]",
        **extra,
    )


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, got {text}")
    return value


def flag(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_common_options(parser: argparse.ArgumentParser, *, job_name: str) -> None:
    option(
        parser, "--bootstrap-servers", required=True, help="Kafka bootstrap servers, host:port[,host:port]"
    )
    option(
        parser,
        "--kafka-properties-file",
        help="Java properties file with the Kafka client's security settings (and schema.registry.* keys)",
    )
    option(parser, "--group-id", required=True, help="consumer group id of the source")
    option(
        parser,
        "--isolation-level",
        default="read_committed",
        choices=ISOLATION_LEVELS,
        help="read_committed: only committed transactions (exactly-once input); read_uncommitted: every "
        "record as soon as it is written (at-least-once, lower latency)",
    )
    option(
        parser,
        "--transactional-id-prefix",
        required=True,
        help="prefix of the sinks' Kafka transactional ids (each output adds a suffix)",
    )
    option(
        parser,
        "--transaction-timeout-ms",
        type=positive_int,
        default=900_000,
        help="Kafka transaction timeout; must not exceed the brokers' transaction.max.timeout.ms",
    )
    option(
        parser,
        "--startup-mode",
        default="group-offsets",
        choices=STARTUP_MODES,
        help="where a new job starts reading",
    )
    option(parser, "--schema-registry-url", help="registry root; output schema ids are looked up there")
    option(
        parser,
        "--register-schemas",
        type=flag,
        default=False,
        switch=True,
        help="register the output schemas in the registry instead of only looking them up",
    )
    option(parser, "--schema-dir", help="folder holding the catalog's schema files")
    option(parser, "--pipeline-jars", help="comma-separated connector jars to ship with the job (local runs)")
    option(
        parser,
        "--checkpoint-interval-ms",
        type=positive_int,
        default=10_000,
        help="checkpoint interval, used when the cluster configures none",
    )
    option(parser, "--job-name", default=job_name, help="Flink job name")
    parser.add_argument(
        "--flink-conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Flink setting for a local run (state backend, checkpoint dir, state-recovery path); repeatable. "
        f"On Kubernetes the operator sets these. [env {env_name('--flink-conf')}, one KEY=VALUE per line]",
    )


def add_watermark_options(parser: argparse.ArgumentParser, *, records: str) -> None:
    """Event-time options every app shares: how late records may arrive, and when an idle split stops counting."""
    option(
        parser,
        "--max-out-of-orderness-ms",
        type=positive_int,
        default=30_000,
        help="watermark delay behind the largest event time seen",
    )
    option(
        parser,
        "--idle-timeout-ms",
        type=positive_int,
        default=60_000,
        help=f"after this long without {records} a source split stops holding back the watermark",
    )


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    args, _flink_args = parser.parse_known_args(argv)
    return args


def kafka_connection(args: argparse.Namespace) -> tuple[KafkaConnection, dict[str, str]]:
    """The Kafka connection and the schema-registry client properties."""
    props: dict[str, str] = {}
    if args.kafka_properties_file:
        props = read_properties_file(args.kafka_properties_file)
    kafka, registry = split_client_properties(props)
    return KafkaConnection(args.bootstrap_servers, kafka), registry


def schema_folder(args: argparse.Namespace) -> Path:
    return schemas.schema_dir(args.schema_dir)


def registry_client(
    args: argparse.Namespace, registry_properties: Mapping[str, str]
) -> RegistryClient | None:
    if not args.schema_registry_url:
        return None
    return RegistryClient(args.schema_registry_url, dict(registry_properties))


def output_codec(
    *,
    schema_folder: Path,
    topic: str,
    explicit_id: int | None,
    id_option: str,
    registry: RegistryClient | None,
    register: bool,
) -> AvroCodec:
    """The codec of one output: the topic's contract, its schema id given (`explicit_id`) or looked up as
    `<topic>-value`."""
    if explicit_id is None and registry is None:
        raise SystemExit(f"no schema id for topic {topic!r}: give {id_option} or --schema-registry-url")
    schema = schemas.for_topic(topic, schema_folder)
    if explicit_id is not None:
        return AvroCodec(schema, explicit_id)
    assert registry is not None
    return AvroCodec(schema, registry.lookup_id(f"{topic}-value", schema, register=register))


def transactional_id_prefix(base: str, output: str) -> str:
    """One prefix per output sink, each still starting with `base` (the prefix the app's ACLs allow)."""
    separator = "" if base.endswith(("-", ".", "_")) else "-"
    return f"{base}{separator}{output.replace('_', '-')}"


def flink_settings(args: argparse.Namespace) -> dict[str, str]:
    """The --flink-conf settings (after those from the environment variable), as a mapping."""
    lines = os.environ.get(env_name("--flink-conf"), "").splitlines() + list(args.flink_conf)
    settings: dict[str, str] = {}
    for line in (entry.strip() for entry in lines):
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--flink-conf {line!r}: expected KEY=VALUE, e.g. state.backend.type=rocksdb")
        settings[key.strip()] = value.strip()
    return settings


def jars(args: argparse.Namespace) -> list[str]:
    return [j.strip() for j in (args.pipeline_jars or "").split(",") if j.strip()]


# --- the job around an app's pipeline: one Kafka source, exactly-once Kafka sinks -------------------------


def kafka_source(
    args: argparse.Namespace, connection: KafkaConnection, *, uid: str, traced: bool = False
) -> tuple[StreamExecutionEnvironment, StreamTableEnvironment, DataStream]:
    """The environment (settings, jars, exactly-once checkpointing) and the records of `--source-topic`
    (`traced`: with their `traceparent` header, see `flink_io.kafka_source`)."""
    env = runtime.create_environment(flink_settings(args), jars=jars(args))
    runtime.ensure_checkpointing(env, args.checkpoint_interval_ms)
    t_env = runtime.table_environment(env)
    records = flink_io.kafka_source(
        t_env,
        connection,
        topic=args.source_topic,
        group_id=args.group_id,
        isolation_level=args.isolation_level,
        startup_mode=args.startup_mode,
        uid=uid,
        traced=traced,
    )
    return env, t_env, records


def kafka_sinks(
    args: argparse.Namespace,
    t_env: StreamTableEnvironment,
    connection: KafkaConnection,
    outputs: Mapping[str, DataStream],
    topics: Mapping[str, str],
) -> None:
    """Each named output to its topic, in transactions under its own prefix of the app's transactional id."""
    statements = t_env.create_statement_set()
    for name, topic in topics.items():
        flink_io.kafka_sink(
            t_env,
            statements,
            connection,
            outputs[name],
            topic=topic,
            transactional_id_prefix=transactional_id_prefix(args.transactional_id_prefix, name),
            transaction_timeout_ms=args.transaction_timeout_ms,
        )
    statements.attach_as_datastream()


def kafka_source_table(
    args: argparse.Namespace, connection: KafkaConnection
) -> tuple[StreamExecutionEnvironment, StreamTableEnvironment, Table]:
    """`kafka_source` for pipelines written in the Table API: the records of `--source-topic` as a table
    (`value`, `topic`, `partition`, `offset`, `timestamp` TIMESTAMP_LTZ(3), `headers`)."""
    env = runtime.create_environment(flink_settings(args), jars=jars(args))
    runtime.ensure_checkpointing(env, args.checkpoint_interval_ms)
    t_env = runtime.table_environment(env)
    table = flink_io.kafka_source_table(
        t_env,
        connection,
        topic=args.source_topic,
        group_id=args.group_id,
        isolation_level=args.isolation_level,
        startup_mode=args.startup_mode,
    ).select(
        col("value"),
        col("topic"),
        col("partition"),
        col("offset"),
        col("ts").alias("timestamp"),
        col("headers"),
    )
    return env, t_env, table


def kafka_table_sinks(
    args: argparse.Namespace,
    t_env: StreamTableEnvironment,
    connection: KafkaConnection,
    outputs: Mapping[str, Table],
    topics: Mapping[str, str],
) -> None:
    """`kafka_sinks` for output tables (`k`, `v` BYTES, `ts` epoch ms, optionally `traceparent`)."""
    statements = t_env.create_statement_set()
    for name, topic in topics.items():
        flink_io.kafka_sink_table(
            statements,
            connection,
            outputs[name],
            topic=topic,
            transactional_id_prefix=transactional_id_prefix(args.transactional_id_prefix, name),
            transaction_timeout_ms=args.transaction_timeout_ms,
        )
    statements.attach_as_datastream()


def run(
    parse_args: Callable[[list[str] | None], argparse.Namespace],
    build_job: Callable[[argparse.Namespace], StreamExecutionEnvironment],
    argv: list[str] | None = None,
) -> None:
    """An app's `main`: log to stderr, read the options, build the job and run it."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    args = parse_args(argv)
    build_job(args).execute(args.job_name)
