"""The registry with KafkaSQL storage on a real local broker (TLS, SCRAM, ACLs), as it runs on Kubernetes.

One broker from the local spec, provisioned like Strimzi would (topics, credentials, ACLs derived from the
catalog's flows and nothing else). The registry logs in as
`schema-registry`; a producer and a consumer use their own principals and the registry's ids. Restarting
the registry replays the journal: the ids still resolve.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from headwater.config import load_platform
from headwater.contracts import kafkasql
from headwater.contracts.model import load_contracts
from headwater.contracts.serde import AvroDeserializer, AvroSerializer
from headwater.local import KafkaPorts, LocalKafka, client_config, install_signal_handlers, provision
from headwater.local.ports import free_port
from headwater.local.process import stderr_progress
from headwater.local.registry import KafkaSqlStorage, LocalRegistry

TOPIC = "agents.signals.v1"
# The registry's principal, storage topics and group prefix, as the catalog names them.
STORE = kafkasql.storage(load_platform("local"))


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    install_signal_handlers()
    local = LocalKafka(
        load_platform("local"),
        tmp_path_factory.mktemp("kafka"),
        KafkaPorts.free(),
        progress=stderr_progress("kafka"),
        heap="512m",
    )
    local.start()
    try:
        provision(local)
        yield local
    finally:
        local.stop()


def _signal() -> dict[str, Any]:
    return {
        "event_id": "e-9",
        "event_type": "task.completed",
        "event_category": "task",
        "is_error": False,
        "agent_id": "agent-1",
        "agent_type": "planner",
        "entity_id": "agent-1",
        "tenant_id": "t-1",
        "session_id": None,
        "trace_id": None,
        "parent_event_id": None,
        "status": "ok",
        "duration_ms": 40,
        "tags": [],
        "occurred_at": 1_764_000_000_000,
        "payload_json": "{}",
        "payload_bytes": 2,
        "ingest_lag_ms": None,
        "source": {
            "topic": "agents.events.raw.v1",
            "partition": 0,
            "offset": 1,
            "timestamp": None,
            "schema_id": None,
        },
        "contract": "agents.events.raw.v1",
    }


def test_kafkasql_registry_serves_ids_that_survive_a_restart(kafka: LocalKafka, tmp_path: Path) -> None:
    platform = kafka.platform
    # The flow-derived ACLs alone (as Strimzi's user operator would apply them) are all the registry needs.
    assert kafkasql.ungranted(platform) == []
    storage = KafkaSqlStorage.for_local_kafka(kafka)
    port = free_port()
    (signals,) = [c for c in load_contracts(platform) if c.topic == TOPIC]

    with LocalRegistry(tmp_path / "registry", port, kafka=storage) as registry:
        client = registry.client()
        client.set_compatibility(signals.subject, signals.compatibility)
        value = AvroSerializer(client, TOPIC, signals.schema, register=True)(_signal())
        schema_id = client.lookup(signals.subject, signals.text, signals.schema_type).id  # type: ignore[union-attr]

    producer = Producer({**client_config(kafka, "agent-events"), "enable.idempotence": True})
    producer.produce(TOPIC, value=value, key=b"agent-1")
    assert producer.flush(30) == 0

    admin = Consumer({**kafka.admin_config(), "group.id": "test-watermarks"})
    try:
        journal = admin.get_watermark_offsets(TopicPartition(STORE.topics.journal, 0), timeout=10)
        events = admin.get_watermark_offsets(TopicPartition(STORE.topics.events, 0), timeout=10)
    finally:
        admin.close()
    assert journal[1] > 0 and events[1] > 0  # the registry's state lives in Kafka

    # A fresh registry process rebuilds its state from the journal; the consumer resolves the id there.
    with LocalRegistry(tmp_path / "registry", port, kafka=storage) as registry:
        client = registry.client()
        assert signals.subject in client.subjects()
        consumer = Consumer(
            {
                **client_config(kafka, "agent-runtime"),
                "group.id": "agent-runtime",
                "auto.offset.reset": "earliest",
            }
        )
        try:
            consumer.subscribe([TOPIC])
            message = None
            for _ in range(60):
                message = consumer.poll(1.0)
                if message is not None and message.error() is None:
                    break
            assert message is not None and message.error() is None
            data = message.value()
            assert data is not None and int.from_bytes(data[1:5], "big") == schema_id
            assert AvroDeserializer(client)(data) == _signal()
        finally:
            consumer.close()
