"""Entry point: `python -m flink_apps.feature_aggregator.main --help` (or Flink's
`-pym flink_apps.feature_aggregator.main`).

Reads agent signals from Kafka (read_committed), writes windowed activity features per entity to a
compacted Kafka topic exactly once, each continuing the trace of its window's newest signal (`traceparent`)
and linking those of up to 16 traces (`tracelinks`).
"""

from __future__ import annotations

import argparse
import logging

from pyflink.datastream import StreamExecutionEnvironment

from flink_apps.common import cli, schemas
from flink_apps.common.wire import AvroCodec
from flink_apps.feature_aggregator import pipeline

LOG = logging.getLogger("flink_apps.feature_aggregator")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="flink_apps.feature_aggregator.main", description=__doc__)
    cli.add_common_options(parser, job_name="feature_aggregator")
    cli.option(parser, "--source-topic", required=True, help="signals topic (written by agent_events)")
    cli.option(parser, "--sink-topic", required=True, help="compacted topic of features keyed by entity id")
    cli.option(
        parser, "--source-schema-id", type=cli.non_negative_int, help="registry id of the signals schema"
    )
    cli.option(
        parser, "--sink-schema-id", type=cli.non_negative_int, help="registry id of the features schema"
    )
    cli.option(
        parser, "--window-size-ms", type=cli.positive_int, default=60_000, help="tumbling window length"
    )
    cli.option(
        parser,
        "--allowed-lateness-ms",
        type=cli.non_negative_int,
        default=0,
        help="how long a fired window still accepts late signals (each re-fires it)",
    )
    cli.add_watermark_options(parser, records="signals")
    return cli.parse(parser, argv)


def build_job(args: argparse.Namespace) -> StreamExecutionEnvironment:
    """The job, wired to Kafka; nothing runs until `execute`."""
    connection, registry_properties = cli.kafka_connection(args)
    folder = cli.schema_folder(args)
    registry = cli.registry_client(args, registry_properties)
    if args.source_schema_id is None and registry is None:
        raise SystemExit(
            f"no schema id for topic {args.source_topic!r}: give --source-schema-id or --schema-registry-url"
        )
    signals_schema = schemas.for_topic(args.source_topic, folder)
    if args.source_schema_id is not None:
        signals_id = args.source_schema_id
    else:
        assert registry is not None
        signals_id = registry.lookup_id(
            f"{args.source_topic}-value", signals_schema, register=args.register_schemas
        )
    config = pipeline.FeatureConfig(
        # Signals written with another (compatible) schema version decode through the registry.
        signals=AvroCodec(signals_schema, signals_id, registry.schema_by_id if registry else None),
        features=cli.output_codec(
            schema_folder=folder,
            topic=args.sink_topic,
            explicit_id=args.sink_schema_id,
            id_option="--sink-schema-id",
            registry=registry,
            register=args.register_schemas,
        ),
        window_size_ms=args.window_size_ms,
        allowed_lateness_ms=args.allowed_lateness_ms,
        max_out_of_orderness_ms=args.max_out_of_orderness_ms,
        idle_timeout_ms=args.idle_timeout_ms,
        traced=True,
    )
    LOG.info(
        "feature_aggregator: %s (schema id %d) -> %s (schema id %d); window %d ms; group %s; kafka %r",
        args.source_topic,
        signals_id,
        args.sink_topic,
        config.features.schema_id,
        args.window_size_ms,
        args.group_id,
        connection,
    )

    env, t_env, source = cli.kafka_source(args, connection, uid="features-source-records", traced=True)
    outputs = pipeline.build(env, source, config)
    cli.kafka_sinks(args, t_env, connection, outputs, {pipeline.FEATURES: args.sink_topic})
    return env


def main(argv: list[str] | None = None) -> None:
    cli.run(parse_args, build_job, argv)


if __name__ == "__main__":
    main()
