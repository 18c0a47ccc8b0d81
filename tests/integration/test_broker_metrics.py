"""The brokers' JMX exporter rules, proven on real MBeans: the local broker runs the Prometheus JMX exporter
agent with the very text every Kubernetes stack puts in its Kafka metrics ConfigMap, and a scrape holds every
broker series the alerts and dashboards read, with throughput and request latency that moved with traffic.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterable
from typing import TYPE_CHECKING

import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from components.kafka_cluster import METRICS_KEY
from components.observability import queried_metrics
from headwater import kafka_metrics
from headwater.config import load_platform, stack_names
from headwater_cli.render import render_stack

if TYPE_CHECKING:
    from conftest import Provisioned

# Families the JMX rules own (the rest come from Kafka Exporter and Flink's reporter).
JMX_PREFIXES = ("kafka_server_", "kafka_controller_", "kafka_network_", "kafka_cluster_")
RECORDS = 200


def _scrape(url: str) -> list[Sample]:
    started = time.monotonic()
    # The agent reads the MBeans while it answers: seconds when the machine is busy.
    with urllib.request.urlopen(url, timeout=60) as response:
        text = response.read().decode()
    print(f"[broker metrics] scrape of {url}: {len(text)} bytes in {time.monotonic() - started:.2f}s")
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def _value(samples: Iterable[Sample], name: str, **labels: str) -> float | None:
    found = [
        s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    return sum(found) if found else None


@pytest.fixture(scope="module")
def scraped(scratch_provisioned: Provisioned) -> list[Sample]:
    """A scrape of the broker after RECORDS records went to the raw topic (as its declared producer)."""
    p = scratch_provisioned
    topic = next(f.topic for f in p.platform.principal("agent-gateway").produces)
    producer = Producer({**p.config("agent-gateway"), "acks": "all", "linger.ms": 0})
    for i in range(RECORDS):
        producer.produce(topic, key=f"agent-{i % 7}", value=b'{"probe": true}')
        producer.poll(0)
    assert producer.flush(30) == 0
    # The agent reads the MBeans at scrape time; Kafka's meters count at once.
    deadline = time.monotonic() + 30
    while True:
        samples = _scrape(p.kafka.metrics_url)
        count = _value(samples, kafka_metrics.MESSAGES_IN, topic=topic) or 0
        if count >= RECORDS or time.monotonic() > deadline:
            return samples
        time.sleep(0.5)


@pytest.mark.parametrize("stack", stack_names())
def test_every_stack_configures_its_brokers_with_the_rules_the_local_broker_runs(
    stack: str, scratch_provisioned: Provisioned
) -> None:
    (config_map,) = [
        o
        for o in render_stack(load_platform(stack))
        if o["kind"] == "ConfigMap" and METRICS_KEY in o.get("data", {})
    ]
    assert config_map["data"][METRICS_KEY] == scratch_provisioned.kafka.metrics_config.read_text()


def test_every_broker_series_the_alerts_and_dashboards_read_exists(scraped: list[Sample]) -> None:
    names = {s.name for s in scraped}
    wanted = {
        name
        for stack in stack_names()
        for name in queried_metrics(load_platform(stack))
        if name.startswith(JMX_PREFIXES)
    }
    assert wanted >= {
        kafka_metrics.BYTES_IN,
        kafka_metrics.MESSAGES_IN,
        kafka_metrics.REQUEST_TOTAL_TIME,
        kafka_metrics.UNDER_REPLICATED,
        kafka_metrics.OFFLINE_PARTITIONS,
    }
    missing = sorted(wanted - names)
    assert not missing, f"queried but not exported by the broker rules: {missing}"
    print(f"\n[broker metrics] {len(scraped)} samples, {len(names)} series names; asserted {sorted(wanted)}")


def test_throughput_counts_the_records_sent(scratch_provisioned: Provisioned, scraped: list[Sample]) -> None:
    topic = next(f.topic for f in scratch_provisioned.platform.principal("agent-gateway").produces)
    assert (_value(scraped, kafka_metrics.MESSAGES_IN, topic=topic) or 0) >= RECORDS
    assert (_value(scraped, kafka_metrics.BYTES_IN, topic=topic) or 0) >= RECORDS * len(b'{"probe": true}')
    # The broker-wide meter (no topic label) is exported too.
    broker_wide = [s for s in scraped if s.name == kafka_metrics.BYTES_IN and "topic" not in s.labels]
    assert broker_wide and broker_wide[0].value > 0


def test_request_latency_percentiles_are_exported(scraped: list[Sample]) -> None:
    quantiles = {
        s.labels["quantile"]
        for s in scraped
        if s.name == kafka_metrics.REQUEST_TOTAL_TIME and s.labels.get("request") == "Produce"
    }
    assert {"0.50", "0.99", "0.999"} <= quantiles


def test_a_healthy_single_node_reports_no_offline_or_under_replicated_partitions(
    scraped: list[Sample],
) -> None:
    assert _value(scraped, kafka_metrics.OFFLINE_PARTITIONS) == 0
    assert _value(scraped, kafka_metrics.UNDER_REPLICATED) == 0
