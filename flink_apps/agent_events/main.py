"""Entry point: `python -m flink_apps.agent_events.main --help` (or Flink's `-pym flink_apps.agent_events.main`).

Reads raw agent events from Kafka, writes signals and dead letters to Kafka exactly once.
"""

from __future__ import annotations

import argparse
import logging

from pyflink.datastream import StreamExecutionEnvironment

from flink_apps.agent_events import pipeline
from flink_apps.agent_events.logic import Contract
from flink_apps.common import cli, schemas

LOG = logging.getLogger("flink_apps.agent_events")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="flink_apps.agent_events.main", description=__doc__)
    cli.add_common_options(parser, job_name="agent_events")
    cli.option(parser, "--source-topic", required=True, help="raw agent events topic")
    cli.option(parser, "--sink-topic", required=True, help="topic of validated, deduplicated signals")
    cli.option(parser, "--dead-letter-topic", required=True, help="topic of rejected records")
    cli.option(
        parser, "--sink-schema-id", type=cli.non_negative_int, help="registry id of the signals schema"
    )
    cli.option(
        parser,
        "--dead-letter-schema-id",
        type=cli.non_negative_int,
        help="registry id of the dead-letter schema",
    )
    cli.option(
        parser,
        "--dedup-ttl-ms",
        type=cli.positive_int,
        default=24 * 3600 * 1000,
        help="how long event ids are remembered",
    )
    cli.option(
        parser,
        "--native-common-case",
        type=cli.flag,
        default=True,
        help="decide provably valid events in the JVM (flink/functions); false sends every record through "
        "Python (for comparison)",
    )
    cli.add_watermark_options(parser, records="events")
    return cli.parse(parser, argv)


def build_job(args: argparse.Namespace) -> StreamExecutionEnvironment:
    """The job, wired to Kafka; nothing runs until `execute`."""
    connection, registry_properties = cli.kafka_connection(args)
    folder = cli.schema_folder(args)
    registry = cli.registry_client(args, registry_properties)
    signals = cli.output_codec(
        schema_folder=folder,
        topic=args.sink_topic,
        explicit_id=args.sink_schema_id,
        id_option="--sink-schema-id",
        registry=registry,
        register=args.register_schemas,
    )
    dead_letters = cli.output_codec(
        schema_folder=folder,
        topic=args.dead_letter_topic,
        explicit_id=args.dead_letter_schema_id,
        id_option="--dead-letter-schema-id",
        registry=registry,
        register=args.register_schemas,
    )
    config = pipeline.AgentEventsConfig(
        contract=Contract(schemas.for_topic(args.source_topic, folder)),
        signals=signals,
        dead_letters=dead_letters,
        dedup_ttl_ms=args.dedup_ttl_ms,
        max_out_of_orderness_ms=args.max_out_of_orderness_ms,
        idle_timeout_ms=args.idle_timeout_ms,
        native=args.native_common_case,
    )
    LOG.info(
        "agent_events: %s -> %s (schema id %d), %s (schema id %d); group %s; native common case %s; kafka %r",
        args.source_topic,
        args.sink_topic,
        config.signals.schema_id,
        args.dead_letter_topic,
        config.dead_letters.schema_id,
        args.group_id,
        config.native,
        connection,
    )

    env, t_env, source = cli.kafka_source_table(args, connection)
    pipeline.configure(t_env, config)
    outputs = pipeline.build_tables(t_env, source, config)
    topics = {pipeline.SIGNALS: args.sink_topic, pipeline.DEAD_LETTERS: args.dead_letter_topic}
    cli.kafka_table_sinks(args, t_env, connection, outputs, topics)
    return env


def main(argv: list[str] | None = None) -> None:
    cli.run(parse_args, build_job, argv)


if __name__ == "__main__":
    main()
