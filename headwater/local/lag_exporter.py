"""Consumer lag for the local Prometheus, with Kafka Exporter's metric names, as the catalog's lag exporter.

On Kubernetes, Strimzi's Kafka Exporter exports lag and the alerts and dashboards read its metrics. Kafka
Exporter is a Go program that the Go module proxy reachable here does not serve, so the local platform
exports the same families under the same names and labels itself, the way Kafka Exporter does: on every
scrape it lists the consumer groups, fetches their committed offsets and the end offsets of their topics:

    kafka_brokers
    kafka_topic_partitions{topic}
    kafka_topic_partition_current_offset{topic, partition}      (high watermark)
    kafka_topic_partition_oldest_offset{topic, partition}
    kafka_consumergroup_current_offset{consumergroup, topic, partition}
    kafka_consumergroup_lag{consumergroup, topic, partition}    (high watermark - committed offset)
    kafka_consumergroup_lag_sum{consumergroup, topic}
    kafka_consumergroup_members{consumergroup}

It connects over TLS + SCRAM as the principal the catalog declares with `monitorsConsumerGroups: true`,
whose ACLs (derived from the flows) allow Describe on each declared group and its topic and nothing else: a
group or topic no flow declares is invisible to it, and it can read no record.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from typing import Any
from wsgiref.simple_server import WSGIServer

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from headwater.local.ports import HOST
from headwater.spec import Platform, Principal

TIMEOUT_S = 10.0


class LagExporterError(RuntimeError):
    """The lag exporter cannot start; the message says what to change."""


def lag_principal(platform: Platform) -> Principal:
    """The principal the catalog declares to read consumer lag (`monitorsConsumerGroups: true`)."""
    found = [p for p in platform.principals if p.monitors]
    if len(found) != 1:
        raise LagExporterError(
            f"stack {platform.stack}: expected exactly one principal with monitorsConsumerGroups: true in the "
            f"catalog, found {[p.name for p in found] or 'none'}"
        )
    return found[0]


class LagCollector(Collector):
    """Reads offsets at scrape time (as Kafka Exporter does), so a scrape shows the lag of that moment."""

    def __init__(self, client_config: Mapping[str, Any]) -> None:
        config: dict[str, Any] = {**client_config, "error_cb": lambda err: None}
        self.admin = AdminClient(config)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        admin = self.admin
        md = admin.list_topics(timeout=TIMEOUT_S)
        brokers = GaugeMetricFamily("kafka_brokers", "Number of brokers in the cluster")
        brokers.add_metric([], len(md.brokers))
        yield brokers
        # Only the topics this principal may Describe are listed: those of the declared flows.
        partitions = {
            name: sorted(t.partitions)
            for name, t in md.topics.items()
            if not name.startswith("__") and t.error is None
        }
        # Every request goes out before any answer is awaited: a scrape costs one round trip per kind of call.
        latest_f = self._offsets(admin, partitions, OffsetSpec.latest())
        oldest_f = self._offsets(admin, partitions, OffsetSpec.earliest())
        groups_f = admin.list_consumer_groups(request_timeout=TIMEOUT_S)
        latest = {k: int(f.result().offset) for k, f in latest_f.items()}
        oldest = {k: int(f.result().offset) for k, f in oldest_f.items()}
        count = GaugeMetricFamily(
            "kafka_topic_partitions", "Number of partitions for this topic", labels=["topic"]
        )
        current = GaugeMetricFamily(
            "kafka_topic_partition_current_offset",
            "Current offset of a broker at topic/partition",
            labels=["topic", "partition"],
        )
        old = GaugeMetricFamily(
            "kafka_topic_partition_oldest_offset",
            "Oldest offset of a broker at topic/partition",
            labels=["topic", "partition"],
        )
        for topic, parts in sorted(partitions.items()):
            count.add_metric([topic], len(parts))
            for p in parts:
                current.add_metric([topic, str(p)], latest[(topic, p)])
                old.add_metric([topic, str(p)], oldest[(topic, p)])
        yield count
        yield current
        yield old
        groups = sorted(g.group_id for g in groups_f.result().valid)
        yield from self._groups(admin, groups, partitions, latest)

    @staticmethod
    def _offsets(
        admin: AdminClient, partitions: Mapping[str, list[int]], spec: OffsetSpec
    ) -> dict[tuple[str, int], Future[Any]]:
        request = {TopicPartition(t, p): spec for t, ps in partitions.items() for p in ps}
        if not request:
            return {}
        futures = admin.list_offsets(request, request_timeout=TIMEOUT_S)
        return {(tp.topic, tp.partition): f for tp, f in futures.items()}

    @staticmethod
    def _groups(
        admin: AdminClient,
        groups: list[str],
        partitions: Mapping[str, list[int]],
        latest: Mapping[tuple[str, int], int],
    ) -> Iterator[GaugeMetricFamily]:
        # `groups`: Kafka lists only the groups this principal may Describe, those of the declared flows.
        members = GaugeMetricFamily(
            "kafka_consumergroup_members", "Amount of members in a consumer group", labels=["consumergroup"]
        )
        offset = GaugeMetricFamily(
            "kafka_consumergroup_current_offset",
            "Current Offset of a ConsumerGroup at Topic/Partition",
            labels=["consumergroup", "topic", "partition"],
        )
        lag = GaugeMetricFamily(
            "kafka_consumergroup_lag",
            "Current Approximate Lag of a ConsumerGroup at Topic/Partition",
            labels=["consumergroup", "topic", "partition"],
        )
        lag_sum = GaugeMetricFamily(
            "kafka_consumergroup_lag_sum",
            "Current Approximate Lag of a ConsumerGroup at Topic",
            labels=["consumergroup", "topic"],
        )
        described = admin.describe_consumer_groups(groups, request_timeout=TIMEOUT_S) if groups else {}
        everything = [TopicPartition(t, p) for t, ps in partitions.items() for p in ps]
        committed = {
            group: admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group, everything)], request_timeout=TIMEOUT_S
            )[group]
            for group in groups
        }
        for group, future in sorted(described.items()):
            members.add_metric([group], len(future.result().members))
        for group in groups:
            result = committed[group].result()
            per_topic: dict[str, int] = {}
            for tp in result.topic_partitions:
                if tp.offset < 0 or (tp.topic, tp.partition) not in latest:
                    continue  # nothing committed on this partition
                behind = max(0, latest[(tp.topic, tp.partition)] - tp.offset)
                offset.add_metric([group, tp.topic, str(tp.partition)], tp.offset)
                lag.add_metric([group, tp.topic, str(tp.partition)], behind)
                per_topic[tp.topic] = per_topic.get(tp.topic, 0) + behind
            for topic, total in sorted(per_topic.items()):
                lag_sum.add_metric([group, topic], total)
        yield members
        yield offset
        yield lag
        yield lag_sum


class LagExporter:
    """An HTTP `/metrics` endpoint on 127.0.0.1:`port` serving `LagCollector`, until `stop()`."""

    def __init__(self, client_config: Mapping[str, Any], port: int) -> None:
        self.port = port
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = LagCollector(client_config)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/metrics"

    def start(self) -> LagExporter:
        try:
            self.registry.register(self.collector)
            self._server, self._thread = start_http_server(self.port, HOST, self.registry)
        except OSError as exc:
            raise LagExporterError(f"the lag exporter cannot listen on {HOST}:{self.port}: {exc}") from exc
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
