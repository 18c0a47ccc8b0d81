"""Feature records in the aggregator's real format, and what the online store holds.

- `features`: records computed by the feature aggregator's own logic (`flink_apps.feature_aggregator.logic`)
  from signals made up here: every window of every entity, as the Flink job emits them.
- `FeatureProducer`: writes them as the `feature-aggregator` principal does: Avro in the wire format with
  the registry's id, keyed by entity id, in transactions (the materializer reads read_committed).
- `wait_drained`: the materializer's group has committed every partition up to its end.
- `redis_snapshot`: every hash of the online store, for comparisons.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis
from confluent_kafka import Consumer, Producer, TopicPartition

from flink_apps.feature_aggregator import logic
from headwater.contracts.registry import RegistryClient
from headwater.contracts.serde import AvroSerializer

WINDOW_MS = 60_000


def signals(entity: str, window_start_ms: int, count: int, seed: int = 0) -> list[logic.Signal]:
    """`count` signals of one entity inside one window (some errors, a few sessions and durations)."""
    return [
        logic.Signal(
            entity_id=entity,
            agent_id=f"{entity}-agent-{i % 2}",
            event_type=("tool.called", "message.sent", "task.failed")[(i + seed) % 3],
            event_category=("tool", "message", "task")[(i + seed) % 3],
            is_error=(i + seed) % 3 == 2,
            occurred_at_ms=window_start_ms + 1000 * (i % 59),
            source_topic="agents.signals.v1",
            source_partition=(i + seed) % 4,
            source_offset=1000 * seed + i,
            session_id=f"s{i % 3}",
            duration_ms=10 * (i + 1) if i % 2 else None,
        )
        for i in range(count)
    ]


def features(
    entity: str, window_start_ms: int, count: int, seed: int = 0, version: int = 1
) -> dict[str, Any]:
    """The aggregator's record for one entity and window (of feature-set `version`)."""
    (record,) = logic.compute_features(signals(entity, window_start_ms, count, seed), WINDOW_MS)
    record["provenance"]["feature_set_version"] = version
    return record


def signal(
    event_id: str, agent: str, entity: str, event_type: str, occurred_ms: int, **extra: Any
) -> dict[str, Any]:
    """An agents.signals.v1 record as agent-events writes it."""
    return {
        "event_id": event_id,
        "event_type": event_type,
        "event_category": event_type.split(".")[0],
        "is_error": event_type.endswith(".failed"),
        "agent_id": agent,
        "agent_type": "planner",
        "entity_id": entity,
        "tenant_id": None,
        "session_id": extra.get("session_id"),
        "trace_id": None,
        "parent_event_id": None,
        "status": None,
        "duration_ms": extra.get("duration_ms"),
        "tags": [],
        "occurred_at": occurred_ms,
        "payload_json": "{}",
        "payload_bytes": 2,
        "ingest_lag_ms": None,
        "source": {
            "topic": "agents.events.raw.v1",
            "partition": 0,
            "offset": 0,
            "timestamp": None,
            "schema_id": None,
        },
        "contract": "agents.events.raw.v1",
    }


def run_prefix() -> str:
    return f"e{uuid.uuid4().hex[:6]}"


class FeatureProducer:
    """Transactional producer of feature records, as the aggregator's principal."""

    def __init__(
        self,
        config: Mapping[str, Any],
        registry: RegistryClient,
        topic: str,
        schema: Mapping[str, Any],
        transactional_id: str,
        key_field: str = "entity_id",
    ) -> None:
        self.topic = topic
        self.key_field = key_field
        self.serialize = AvroSerializer(registry, topic, schema)
        self.producer = Producer({**config, "transactional.id": transactional_id, "linger.ms": 5})
        self.producer.init_transactions(30)
        self.offsets: list[tuple[int, int]] = []  # (partition, offset) of every record
        self.last_send: list[tuple[int, int]] = []  # (partition, offset) of each record of the last send

    def send(
        self, records: Iterable[Mapping[str, Any]], *, raw: Sequence[tuple[bytes, bytes]] = ()
    ) -> dict[bytes, tuple[int, int]]:
        """One transaction: the records (keyed by entity), then `raw` (key, value) pairs as they are.
        Returns where each key's last record of the transaction landed: (partition, offset)."""
        delivered: list[tuple[int, int]] = []
        positions: dict[bytes, tuple[int, int]] = {}
        records = list(records)
        by_index: list[tuple[int, int]] = [(-1, -1)] * len(records)

        def report(index: int, err: Any, msg: Any) -> None:
            assert err is None, err
            delivered.append((msg.partition(), msg.offset()))
            positions[msg.key()] = max(positions.get(msg.key(), (-1, -1)), (msg.partition(), msg.offset()))
            if index >= 0:
                by_index[index] = (msg.partition(), msg.offset())

        self.producer.begin_transaction()
        for index, record in enumerate(records):
            self.producer.produce(
                self.topic,
                key=str(record[self.key_field]).encode(),
                value=self.serialize(record),
                on_delivery=functools.partial(report, index),
            )
        for key, value in raw:
            self.producer.produce(self.topic, key=key, value=value, on_delivery=functools.partial(report, -1))
        self.producer.commit_transaction(30)
        self.offsets.extend(delivered)
        self.last_send = by_index
        return positions

    def raw_value(self, record: Mapping[str, Any]) -> bytes:
        return self.serialize(record)


def end_offsets(admin_config: Mapping[str, Any], topics: Sequence[str]) -> dict[tuple[str, int], int]:
    consumer = Consumer(
        {**admin_config, "group.id": f"probe-{uuid.uuid4().hex[:6]}", "isolation.level": "read_committed"}
    )
    try:
        out = {}
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            for p in meta.partitions:
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                out[(topic, p)] = high
        return out
    finally:
        consumer.close()


def committed(
    admin_config: Mapping[str, Any], group: str, topics: Sequence[str]
) -> dict[tuple[str, int], int]:
    consumer = Consumer({**admin_config, "group.id": group, "enable.auto.commit": False})
    try:
        partitions = [
            TopicPartition(t, p)
            for t in topics
            for p in consumer.list_topics(t, timeout=10).topics[t].partitions
        ]
        return {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(partitions, timeout=10)}
    finally:
        consumer.close()


def wait_drained(
    admin_config: Mapping[str, Any], group: str, topics: Sequence[str], timeout: float = 90
) -> float:
    """Seconds until `group` has committed the end of every partition of `topics` (transaction markers
    included: the end offset counts them, and a committed position after the last record passes them)."""
    t0 = time.monotonic()
    ends = end_offsets(admin_config, topics)
    while True:
        done = committed(admin_config, group, topics)
        behind = {tp: end for tp, end in ends.items() if end > 0 and done.get(tp, -1) < end - 1}
        # A transactional batch ends with a commit marker: the consumer's position stops one past the last
        # record, which is the marker's offset, or at the end.
        if not behind:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(
                f"group {group} still behind after {timeout}s: committed {done}, ends {ends}"
            )
        time.sleep(0.2)


def redis_snapshot(client: redis.Redis) -> dict[bytes, dict[bytes, bytes]]:
    """Every hash of the online store (Feast keeps one per entity key), field by field."""
    out: dict[bytes, dict[bytes, bytes]] = {}
    for key in sorted(client.scan_iter(count=1000)):
        fields = client.hgetall(key)
        assert isinstance(fields, dict)
        out[key] = fields
    return out
