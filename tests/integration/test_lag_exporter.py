"""The local lag exporter on a real broker: Kafka Exporter's lag series, read as the catalog's lag principal
with only the Describe ACLs its flows derive, so a group no flow declares stays invisible to it.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from headwater.local.lag_exporter import LagExporter, lag_principal
from headwater.local.ports import free_port

if TYPE_CHECKING:
    from conftest import Provisioned

RECORDS = 30
COMMITTED = 12


def _scrape(url: str) -> list[Sample]:
    with urllib.request.urlopen(url, timeout=60) as response:
        text = response.read().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def _commit(config: dict[str, object], group: str, topic: str, offset: int) -> None:
    consumer = Consumer({**config, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def exporter(scratch_provisioned: Provisioned) -> Iterator[tuple[LagExporter, str]]:
    p = scratch_provisioned
    raw = next(f.topic for f in p.platform.principal("agent-gateway").produces)
    producer = Producer({**p.config("agent-gateway"), "linger.ms": 0})
    for _ in range(RECORDS):
        producer.produce(raw, key=b"k", value=b"{}", partition=0)
    assert producer.flush(30) == 0
    # The app commits as itself in its declared group; the admin commits in a group no flow declares.
    app_group = next(c.group for c in p.platform.principal("agent-events").consumes if c.topic == raw)
    _commit(p.config("agent-events"), app_group, raw, COMMITTED)
    _commit(p.admin_config(), "undeclared-probe-group", raw, 1)
    principal = lag_principal(p.platform)
    lag = LagExporter(p.config(principal.name), free_port()).start()
    try:
        yield lag, raw
    finally:
        lag.stop()


def test_lag_of_a_declared_group_is_the_end_offset_minus_its_commit(
    scratch_provisioned: Provisioned, exporter: tuple[LagExporter, str]
) -> None:
    lag, raw = exporter
    samples = _scrape(lag.url)
    app_group = next(
        c.group for c in scratch_provisioned.platform.principal("agent-events").consumes if c.topic == raw
    )
    end = next(
        s.value
        for s in samples
        if s.name == "kafka_topic_partition_current_offset" and s.labels == {"topic": raw, "partition": "0"}
    )
    assert end >= RECORDS
    (row,) = [
        s
        for s in samples
        if s.name == "kafka_consumergroup_lag"
        and s.labels == {"consumergroup": app_group, "topic": raw, "partition": "0"}
    ]
    assert row.value == end - COMMITTED
    assert any(
        s.name == "kafka_consumergroup_lag_sum" and s.labels["consumergroup"] == app_group for s in samples
    )
    assert any(s.name == "kafka_brokers" and s.value == 1 for s in samples)


def test_a_group_no_flow_declares_is_invisible_to_the_lag_principal(
    exporter: tuple[LagExporter, str],
) -> None:
    lag, _ = exporter
    groups = {s.labels.get("consumergroup") for s in _scrape(lag.url)}
    assert "undeclared-probe-group" not in groups
    # Internal topics and topics of no consume flow are not described either.
    topics = {s.labels.get("topic") for s in _scrape(lag.url) if "topic" in s.labels}
    assert not any(t is not None and t.startswith("__") for t in topics)
