"""The online feature store on the real broker, registry, Redis and Feast.

One broker for this module, provisioned from the local spec plus a second version of the activity feature
set (`features.agent_activity.v2`, its contract a copy of v1's with one more feature) that the aggregator's
principal writes and the materializer reads: everything else is the catalog as shipped, so the
materializer's principal, group, dead-letter topic and ACLs are the ones `make local` derives.

Feature records are computed by the aggregator's own logic and written in its real format (Avro, wire
format, registry ids, keyed by entity, in transactions) by its principal; the materializer runs as its own
process (`python -m feature_store.materializer`), and agents read through Feast's SDK (`FeatureClient`).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import shutil
import statistics
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient
from feature_io import (
    WINDOW_MS,
    FeatureProducer,
    committed,
    end_offsets,
    features,
    redis_snapshot,
    run_prefix,
    signal,
    wait_drained,
)
from redis import Redis as RedisConnection

from feature_store.description import Description
from feature_store.repo import Redis, open_store
from feature_store.serving import FeatureClient, UnknownEntity, UnknownFeatureSet, UnknownVersion
from flink_apps.feature_aggregator import logic
from headwater.contracts.model import CATALOG_DIR, SchemaType, registered_text
from headwater.contracts.serde import AvroDeserializer
from headwater.feature_views import materializer_flows
from headwater.local import KafkaPorts, LocalKafka, provision
from headwater.local.feature_store import LocalFeatureServer, LocalMaterializer, write_repo
from headwater.local.ports import free_port
from headwater.local.process import stderr_progress
from headwater.local.redis import LocalRedis
from headwater.spec import Consume, Platform, Produce

V1 = "features.agent_activity.v1"
V2 = "features.agent_activity.v2"
AGGREGATOR = "feature-aggregator"
AGGREGATOR_V2 = "feature-aggregator-v2"
SIGNALS = "agents.signals.v1"
SIGNAL_WRITER = "agent-events"
# A window boundary half an hour ago: the tests' windows run from there to ten minutes ahead, well inside the
# gold TTL (6 h), and older than the gold freshness budget (5 min) until the last few.
BASE_MS = int(time.time() * 1000) // WINDOW_MS * WINDOW_MS - 30 * WINDOW_MS


def _with_v2(platform: Platform, catalog: Path) -> Platform:
    """The local spec plus v2 of the feature set (its contract in a copy of the catalog's schemas), written by
    a pipeline of its own (`feature-aggregator-v2`) and read by the materializer; the aggregator's event time
    settles fast (1 s out of orderness, idle partitions after 1 s) so a test's windows close promptly."""
    shutil.copytree(CATALOG_DIR / "schemas", catalog / "schemas")
    schema = json.loads((catalog / "schemas" / f"{V1}.avsc").read_text())
    schema["namespace"] = "dev.headwater.features.v2"
    schema["fields"].insert(
        -1, {"name": "session_share", "type": "double", "doc": "distinct sessions per event"}
    )
    (catalog / "schemas" / f"{V2}.avsc").write_text(json.dumps(schema, indent=2))
    v1 = platform.topic(V1)
    v2 = dataclasses.replace(v1, name=V2, schema=f"schemas/{V2}.avsc")
    flows = materializer_flows(platform)
    principals = []
    for p in platform.principals:
        if p.name == flows.principal:
            p = dataclasses.replace(p, consumes=(*p.consumes, Consume(V2, flows.group)))
        principals.append(p)
    aggregator = platform.principal(AGGREGATOR)
    principals.append(
        dataclasses.replace(
            aggregator,
            name=AGGREGATOR_V2,
            kind="service",
            consumes=(),
            produces=(Produce(V2, transactional=True),),
            transactional_id_prefix=f"{AGGREGATOR_V2}-",
        )
    )
    fast = (("max-out-of-orderness-ms", "1000"), ("idle-timeout-ms", "1000"))
    return dataclasses.replace(
        platform,
        topics=(*platform.topics, v2),
        principals=tuple(principals),
        catalog_dir=str(catalog),
        flink=dataclasses.replace(platform.flink, app_args=((AGGREGATOR, fast),)),
    )


@dataclasses.dataclass
class Store:
    platform: Platform
    kafka: LocalKafka
    redis: LocalRedis
    materializer: LocalMaterializer
    registry: Any
    state_dir: Path
    producers: list[FeatureProducer] = dataclasses.field(default_factory=list)

    def admin(self) -> dict[str, Any]:
        return self.kafka.admin_config()

    def producer(
        self, topic: str, principal: str | None = None, key_field: str = "entity_id"
    ) -> FeatureProducer:
        """A transactional producer of `topic` as its writer in the spec (or `principal`)."""
        from headwater.local import client_config

        if principal is None:
            principal = next(
                p.name for p in self.platform.principals if any(f.topic == topic for f in p.produces)
            )
        schema = json.loads((Path(self.platform.catalog_dir or "") / "schemas" / f"{topic}.avsc").read_text())
        prefix = self.platform.principal(principal).transactional_id_prefix
        producer = FeatureProducer(
            client_config(self.kafka, principal),
            self.registry.client(),
            topic,
            schema,
            f"{prefix}{run_prefix()}",
            key_field,
        )
        self.producers.append(producer)
        return producer

    def drain(self, timeout: float = 90) -> float:
        flows = materializer_flows(self.platform)
        return wait_drained(self.admin(), flows.group, flows.topics, timeout)

    def client(self) -> FeatureClient:
        description = Description.load(write_repo(self.platform, self.state_dir))
        store = open_store(
            description,
            self.materializer.store_dir,
            Redis(self.redis.host, self.redis.port),
            password=self.redis.password,
        )
        return FeatureClient(store, description)

    def raw_redis(self) -> RedisConnection:
        return RedisConnection(host=self.redis.host, port=self.redis.port, password=self.redis.password)


@pytest.fixture(scope="module")
def store(
    local_platform: Platform, contracts_registry: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    state = tmp_path_factory.mktemp("feature-store")
    platform = _with_v2(local_platform, tmp_path_factory.mktemp("catalog"))
    v2_schema = (Path(platform.catalog_dir or "") / "schemas" / f"{V2}.avsc").read_text()
    publisher = contracts_registry.client()
    publisher.register(f"{V2}-value", registered_text(json.loads(v2_schema)), SchemaType.AVRO)
    kafka = LocalKafka(
        platform, state, KafkaPorts.free(), progress=stderr_progress("fs-kafka"), heap="512m"
    ).start()
    rds: LocalRedis | None = None
    materializer: LocalMaterializer | None = None
    try:
        provision(kafka, progress=stderr_progress("fs-provision"))
        rds = LocalRedis(state, free_port(), progress=stderr_progress("redis")).start()
        user = materializer_flows(platform).principal
        materializer = LocalMaterializer(
            platform,
            kafka,
            rds,
            contracts_registry.url,
            contracts_registry.user_info(user),
            state,
            metrics_port=free_port(),
        ).start()
        fixture = Store(platform, kafka, rds, materializer, contracts_registry, state)
        yield fixture
        fixture.producers.clear()  # librdkafka handles go before the broker does
        gc.collect()
    finally:
        if materializer is not None:
            materializer.stop()
        if rds is not None:
            rds.stop()
        kafka.stop()


def _dead_letters(store: Store, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    topic = materializer_flows(store.platform).deadletter_topic
    consumer = Consumer({**store.admin(), "group.id": f"dl-{run_prefix()}", "auto.offset.reset": "earliest"})
    decode = AvroDeserializer(store.registry.client())
    out: list[dict[str, Any]] = []
    try:
        consumer.subscribe([topic])
        end = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < end:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append(decode(msg.value() or b""))
    finally:
        consumer.close()
    return out


def test_features_are_served_for_their_entity_with_provenance(store: Store) -> None:
    run = run_prefix()
    producer = store.producer(V1)
    # Three windows per entity, the latest one last; then an older window arrives late for one entity.
    latest = {}
    for w in range(3):
        batch = [features(f"{run}-{e}", BASE_MS + w * WINDOW_MS, 5 + e + w, seed=w) for e in range(4)]
        positions = producer.send(batch)
        latest.update({r["entity_id"]: r for r in batch})
    producer.send([features(f"{run}-0", BASE_MS - WINDOW_MS, 50)])
    store.drain()

    client = store.client()
    for entity, record in latest.items():
        answer = client.get("agent_activity", 1, entity)
        assert answer.entity == entity
        assert answer.window_end.timestamp() * 1000 == record["window_end"]
        assert answer.values["event_count"] == record["event_count"]
        assert json.loads(answer.values["event_counts"]) == record["event_counts"]
        assert answer.values["error_rate"] == pytest.approx(record["error_rate"])
        assert (
            answer.provenance.feature_set == "agent_activity" and answer.provenance.feature_set_version == 1
        )
        assert answer.provenance.source_topic == V1
        assert (answer.provenance.source_partition, answer.provenance.source_offset) == positions[
            entity.encode()
        ]
        assert answer.provenance.upstream == record["provenance"]
        assert answer.freshness_s == pytest.approx(time.time() - record["window_end"] / 1000, abs=5)
        assert answer.fresh is False  # 27 minutes old: beyond the gold budget of 5 minutes
    # A window that ended a minute ago is fresh; one older than the TTL is not served at all.
    view = client.view("agent_activity", 1)
    now_ms = int(time.time() * 1000) // WINDOW_MS * WINDOW_MS
    too_old = now_ms - (view.ttl_s + 3600) * 1000
    producer.send([features(f"{run}-now", now_ms - WINDOW_MS, 3), features(f"{run}-old", too_old, 3)])
    store.drain()
    assert client.get("agent_activity", 1, f"{run}-now").fresh is True
    with pytest.raises(UnknownEntity, match=rf"older than the view's TTL of {view.ttl_s}s"):
        client.get("agent_activity", 1, f"{run}-old")


def test_unknown_feature_set_version_and_entity_are_clear_errors(store: Store) -> None:
    client = store.client()
    with pytest.raises(UnknownFeatureSet, match=r"'agent_activty' is not served; served: agent_activity"):
        client.get("agent_activty", 1, "x")
    with pytest.raises(UnknownVersion, match=r"has no version 3; served versions: 1, 2"):
        client.get("agent_activity", 3, "x")
    with pytest.raises(UnknownEntity, match=r"no agent_activity_v1 row for entity_id 'nobody-here'"):
        client.get("agent_activity", 1, "nobody-here")


def test_bad_records_go_to_the_dead_letter_topic_with_the_reason(store: Store) -> None:
    run = run_prefix()
    producer = store.producer(V1)
    wrong_version = features(f"{run}-v", BASE_MS, 3, version=2)
    empty_window = features(f"{run}-w", BASE_MS, 3)
    empty_window["window_end"] = empty_window["window_start"]
    good = features(f"{run}-ok", BASE_MS, 3)
    producer.send(
        [good],
        raw=[
            (f"{run}-a".encode(), b'{"not": "avro"}'),
            (f"{run}-b".encode(), b"\x00\x00\x00\x7f\xff" + b"x"),
            (f"{run}-someone-else".encode(), producer.raw_value(features(f"{run}-k", BASE_MS, 3))),
            (f"{run}-v".encode(), producer.raw_value(wrong_version)),
            (f"{run}-w".encode(), producer.raw_value(empty_window)),
        ],
    )
    store.drain()
    mine = set(producer.offsets)
    letters = [
        d
        for d in _dead_letters(store, 100, timeout=10)
        if (d["source_partition"], d["source_offset"]) in mine
    ]
    reasons = sorted(d["reason_code"] for d in letters)
    assert reasons == [
        "invalid_framing",
        "invalid_window",
        "key_mismatch",
        "unknown_schema",
        "version_mismatch",
    ], letters
    for d in letters:
        assert d["source_topic"] == V1 and d["pipeline"] == "feature-materializer" and d["reason"]
        assert d["original"] and d["original_size"] == len(d["original"])
    assert store.client().get("agent_activity", 1, f"{run}-ok").values["event_count"] == 3
    with pytest.raises(UnknownEntity):
        store.client().get("agent_activity", 1, f"{run}-v")


def _reset_group(store: Store) -> None:
    flows = materializer_flows(store.platform)
    admin = AdminClient(store.admin())
    partitions = [
        TopicPartition(t, p, 0)
        for t in flows.topics
        for p in admin.list_topics(t, timeout=10).topics[t].partitions
    ]
    for future in admin.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(flows.group, partitions)]
    ).values():
        future.result(30)


def test_kill_restart_and_replay_from_the_start_leave_the_store_identical(store: Store) -> None:
    run = run_prefix()
    producer = store.producer(V1)
    entities = [f"{run}-{i}" for i in range(200)]
    # 10 windows per entity, sent in window order; every 4th entity also gets a late, older window.
    expected: dict[str, dict[str, Any]] = {}
    rows = 0
    killed = False
    t0 = time.monotonic()
    for w in range(10):
        batch = [
            features(e, BASE_MS + w * WINDOW_MS, 3 + (i + w) % 7, seed=w) for i, e in enumerate(entities)
        ]
        late = [features(e, BASE_MS - WINDOW_MS, 99) for e in entities[::4]] if w == 5 else []
        producer.send(batch + late)
        rows += len(batch) + len(late)
        expected.update({r["entity_id"]: r for r in batch})
        if w == 4:
            store.materializer.kill()  # a crash mid-stream: uncommitted batches are replayed
            killed = True
            store.materializer.start()
    assert killed
    drained = store.drain(timeout=180)
    elapsed = time.monotonic() - t0
    client = store.client()
    answers = client.get_many("agent_activity", 1, entities)
    for answer in answers:
        assert answer.window_end.timestamp() * 1000 == expected[answer.entity]["window_end"]
        assert answer.values["event_count"] == expected[answer.entity]["event_count"]
    before = redis_snapshot(store.raw_redis())

    # Replay the whole topic from the start through the same group: nothing moves.
    store.materializer.stop()
    _reset_group(store)
    store.materializer.start()
    replay_s = store.drain(timeout=180)
    after = redis_snapshot(store.raw_redis())
    assert after == before
    read = _records_on(store, materializer_flows(store.platform).topics)
    print(
        f"\n[figures] materializer: {rows} rows produced and stored in {elapsed:.1f}s with a kill and restart "
        f"(drain after the last send {drained:.1f}s); replay of the whole topic from offset 0: {read} records "
        f"in {replay_s:.1f}s after the restart ({read / replay_s:.0f} records/s, every write a no-op)"
    )


def _records_on(store: Store, topics: tuple[str, ...]) -> int:
    """How many committed records the topics hold (what a replay from offset 0 reads)."""
    consumer = Consumer(
        {
            **store.admin(),
            "group.id": f"count-{run_prefix()}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    ends = {tp for tp, end in end_offsets(store.admin(), topics).items() if end > 0}
    count, done = 0, set[tuple[str | None, int | None]]()
    try:
        consumer.subscribe(list(topics))
        deadline = time.monotonic() + 60
        while not ends <= done and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            error = msg.error()
            if error is None:
                count += 1
            elif error.code() == KafkaError._PARTITION_EOF:
                done.add((msg.topic(), msg.partition()))
    finally:
        consumer.close()
    assert ends <= done, f"could not read {sorted(ends - done)} to the end"
    return count


def test_redis_restart_mid_stream_loses_nothing(store: Store) -> None:
    run = run_prefix()
    producer = store.producer(V1)
    flows = materializer_flows(store.platform)
    entities = [f"{run}-{i}" for i in range(100)]
    expected: dict[str, dict[str, Any]] = {}

    def send(w: int) -> None:
        batch = [
            features(e, BASE_MS + w * WINDOW_MS, 2 + (i * w) % 5, seed=w) for i, e in enumerate(entities)
        ]
        producer.send(batch)
        expected.update({r["entity_id"]: r for r in batch})

    for w in range(3):
        send(w)
    store.drain()
    outages_logged = store.materializer.log_file.read_text().count("online store unavailable")
    store.redis.kill()  # a crash: Redis keeps what it wrote to its append-only file
    held = committed(store.admin(), flows.group, flows.topics)
    send(3)
    send(4)
    # Down for over 10 s, and until the materializer has met the outage (on a busy machine it may poll late):
    # longer than the Redis client's own few retries, so the materializer's backoff holds the batch, and
    # commits nothing past it, until the store is back.
    down_since = time.monotonic()
    while store.materializer.log_file.read_text().count("online store unavailable") == outages_logged:
        assert time.monotonic() - down_since < 120, "the materializer never tried the store while it was down"
        time.sleep(0.5)
    time.sleep(max(0.0, 10 - (time.monotonic() - down_since)))
    assert committed(store.admin(), flows.group, flows.topics) == held
    store.redis.start()
    send(5)
    store.drain(timeout=120)
    answers = store.client().get_many("agent_activity", 1, entities)
    assert {a.entity: a.values["event_count"] for a in answers} == {
        e: r["event_count"] for e, r in expected.items()
    }
    assert {a.entity: a.window_end.timestamp() * 1000 for a in answers} == {
        e: r["window_end"] for e, r in expected.items()
    }


def test_two_versions_side_by_side(store: Store) -> None:
    run = run_prefix()
    entity = f"{run}-agent"
    v1, v2 = store.producer(V1), store.producer(V2)
    record_v1 = features(entity, BASE_MS, 6)
    v1.send([record_v1])
    store.drain()
    client = store.client()
    first = client.get("agent_activity", 1, entity)

    for w in range(3):
        record_v2 = features(entity, BASE_MS + (w + 5) * WINDOW_MS, 10 + w, version=2)
        record_v2["session_share"] = record_v2["distinct_sessions"] / record_v2["event_count"]
        v2.send([record_v2])
    store.drain()
    again = client.get("agent_activity", 1, entity)
    assert again == dataclasses.replace(first, freshness_s=again.freshness_s)  # v1 readers see nothing of v2
    assert "session_share" not in again.values
    newer = client.get("agent_activity", 2, entity)
    assert newer.provenance.feature_set_version == 2 and newer.provenance.source_topic == V2
    assert newer.values["event_count"] == 12 and newer.values["session_share"] == pytest.approx(
        record_v2["session_share"]
    )
    assert newer.window_end.timestamp() * 1000 == record_v2["window_end"]


def test_serving_latency_figures(store: Store) -> None:
    run = run_prefix()
    producer = store.producer(V1)
    entities = [f"{run}-{i}" for i in range(2000)]
    records = [features(e, BASE_MS, 4) for e in entities]
    producer.send(records)
    stored_s = store.drain()
    client = store.client()
    client.get("agent_activity", 1, entities[0])  # registry loaded, connections open
    single = []
    for e in entities[:300]:
        t = time.perf_counter()
        assert client.get("agent_activity", 1, e).entity == e
        single.append(time.perf_counter() - t)
    batch = []
    for i in range(20):
        chunk = entities[i * 100 : i * 100 + 100]
        t = time.perf_counter()
        assert len(client.get_many("agent_activity", 1, chunk)) == 100
        batch.append(time.perf_counter() - t)

    def q(values: list[float], p: int) -> float:
        return statistics.quantiles(values, n=100)[p - 1] * 1000

    print(
        f"\n[figures] materializer, fresh rows: {len(records)} rows of one transaction stored in {stored_s:.1f}s "
        f"({len(records) / stored_s:.0f} rows/s, from the commit to the group's committed offsets)"
    )
    print(
        f"[figures] serving through Feast's SDK: single lookups p50 {q(single, 50):.1f} ms / p99 {q(single, 99):.1f} ms "
        f"({len(single)} lookups); batches of 100 entities p50 {q(batch, 50):.1f} ms / p99 {q(batch, 99):.1f} ms "
        f"({len(batch)} batches)"
    )


def test_features_of_the_real_aggregator_are_served_with_their_provenance(store: Store) -> None:
    """Signals in, the feature aggregator as a real Flink job, its features stored and served for the right
    entity, with the signals' partitions and offsets as their upstream provenance."""
    from headwater.local.flink import LocalFlinkJob
    from headwater.local.runtime import FLINK_START_TIMEOUT

    job = LocalFlinkJob(
        store.platform,
        AGGREGATOR,
        store.kafka,
        store.registry.url,
        store.state_dir,
        progress=stderr_progress("flink:feature-aggregator"),
        restart_attempts=0,
        registry_user_info=store.registry.user_info(AGGREGATOR),
    )
    job.start(restore=False)
    try:
        job.wait_running(FLINK_START_TIMEOUT)
        run = run_prefix()
        window = BASE_MS + 12 * WINDOW_MS
        entities = [f"{run}-{i}" for i in range(3)]
        kinds = ("tool.called", "message.sent", "tool.failed")
        records = [
            signal(
                f"{run}-{n}",
                f"{run}-agent-{n % 4}",
                entities[n % 3],
                kinds[n % 3],
                window + 500 * n,
                session_id=f"s{n % 2}",
                duration_ms=n * 10 if n % 2 else None,
            )
            for n in range(24)
        ]
        signals_out = store.producer(SIGNALS, key_field="agent_id")
        signals_out.send(records)
        placed = signals_out.last_send
        # A later signal moves event time past the window's end (idle partitions stop holding it back).
        signals_out.send(
            [signal(f"{run}-late", f"{run}-agent-0", f"{run}-closer", "tool.called", window + 3 * WINDOW_MS)]
        )
        expected = {
            r["entity_id"]: r
            for r in logic.compute_features(
                [
                    logic.Signal.from_record(rec, SIGNALS, p, o)
                    for rec, (p, o) in zip(records, placed, strict=True)
                ],
                WINDOW_MS,
            )
        }
        client = store.client()
        deadline = time.monotonic() + 120
        while True:
            try:
                answers = client.get_many("agent_activity", 1, entities)
                break
            except UnknownEntity:
                if time.monotonic() > deadline or not job.running():
                    raise AssertionError(
                        f"no features served within 120 s; job log:\n{job.log_tail()}"
                    ) from None
                time.sleep(1)
        for answer in answers:
            want = expected[answer.entity]
            assert answer.window_end.timestamp() * 1000 == want["window_end"] == window + WINDOW_MS
            assert answer.values["event_count"] == want["event_count"] == 8
            assert json.loads(answer.values["event_counts"]) == want["event_counts"]
            assert answer.values["distinct_agents"] == want["distinct_agents"]
            assert answer.provenance.source_topic == V1 and answer.provenance.feature_set_version == 1
            assert answer.provenance.upstream == want["provenance"]  # the signals' own partitions and offsets
    finally:
        job.stop(savepoint=False)


@pytest.fixture(scope="module")
def feature_server(store: Store) -> Iterator[LocalFeatureServer]:
    """The feature server as `make local` runs it: its own process, its own Feast registry, the same Redis."""
    server = LocalFeatureServer(
        store.platform, store.redis, store.state_dir, free_port(), progress=stderr_progress("fs-server")
    ).start()
    try:
        yield server
    finally:
        assert server.stop() == 0, server.log_tail()


def test_feature_server_answers_with_provenance_and_freshness(
    store: Store, feature_server: LocalFeatureServer
) -> None:
    run = run_prefix()
    producer = store.producer(V1)
    now_ms = int(time.time() * 1000) // WINDOW_MS * WINDOW_MS
    records = {f"{run}-{e}": features(f"{run}-{e}", BASE_MS + e * WINDOW_MS, 4 + e) for e in range(3)}
    records[f"{run}-now"] = features(f"{run}-now", now_ms - WINDOW_MS, 9)
    positions = producer.send(list(records.values()))
    store.drain()
    http = requests.Session()
    base = feature_server.url

    entity = f"{run}-1"
    answer = http.get(f"{base}/features/agent_activity/1/{entity}", timeout=10)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    record = records[entity]
    assert body["entity"] == entity and body["view"] == "agent_activity_v1"
    assert body["values"]["event_count"] == record["event_count"]
    assert json.loads(body["values"]["event_counts"]) == record["event_counts"]
    window_end = datetime.fromisoformat(body["window_end"])
    assert window_end.timestamp() * 1000 == record["window_end"]
    assert body["freshness_s"] == pytest.approx(time.time() - record["window_end"] / 1000, abs=5)
    assert body["fresh"] is False  # about half an hour old: beyond the gold budget of 5 minutes
    assert body["provenance"]["feature_set"] == "agent_activity"
    assert body["provenance"]["feature_set_version"] == 1
    assert body["provenance"]["source_topic"] == V1
    assert (body["provenance"]["source_partition"], body["provenance"]["source_offset"]) == positions[
        entity.encode()
    ]
    assert body["provenance"]["upstream"] == record["provenance"]

    asked = [f"{run}-now", f"{run}-2", f"{run}-0"]
    batch = http.post(f"{base}/features/agent_activity/1", json={"entities": asked}, timeout=10)
    assert batch.status_code == 200, batch.text
    answers = batch.json()["answers"]
    assert [a["entity"] for a in answers] == asked
    assert [a["values"]["event_count"] for a in answers] == [records[e]["event_count"] for e in asked]
    assert [a["fresh"] for a in answers] == [True, False, False]

    served = http.get(f"{base}/features", timeout=10).json()["views"]
    assert [(v["view"], v["freshness_s"]) for v in served] == [
        ("agent_activity_v1", 300),
        ("agent_activity_v2", 300),
    ]


def test_feature_server_errors_name_what_exists(store: Store, feature_server: LocalFeatureServer) -> None:
    http = requests.Session()
    base = feature_server.url

    def error(method: str, path: str, **kwargs: Any) -> tuple[int, str, str]:
        answer = http.request(method, f"{base}{path}", timeout=10, **kwargs)
        body = answer.json()
        return answer.status_code, body["error"], body["detail"]

    status, kind, detail = error("GET", "/features/agent_activty/1/x")
    assert (status, kind) == (404, "unknown_feature_set") and "served: agent_activity" in detail
    status, kind, detail = error("GET", "/features/agent_activity/3/x")
    assert (status, kind) == (404, "unknown_version") and "served versions: 1, 2" in detail
    status, kind, detail = error("GET", "/features/agent_activity/1/nobody-here")
    assert (status, kind) == (404, "unknown_entity") and "'nobody-here' (never materialized)" in detail
    status, kind, detail = error("GET", "/features/agent_activity/v1/x")
    assert (status, kind) == (400, "bad_version") and "a positive integer" in detail
    status, kind, detail = error("POST", "/features/agent_activity/1", json={"entities": []})
    assert (status, kind) == (400, "bad_batch")
    run = run_prefix()
    store.producer(V1).send([features(f"{run}-known", BASE_MS, 3)])
    store.drain()
    status, kind, detail = error(
        "POST", "/features/agent_activity/1", json={"entities": [f"{run}-known", f"{run}-unknown"]}
    )
    assert (status, kind) == (404, "unknown_entity")
    assert f"'{run}-unknown'" in detail and f"'{run}-known'" not in detail
    assert http.get(f"{base}/readyz", timeout=10).status_code == 200


def test_feature_server_latency_figures(store: Store, feature_server: LocalFeatureServer) -> None:
    run = run_prefix()
    entities = [f"{run}-{i}" for i in range(1000)]
    store.producer(V1).send([features(e, BASE_MS, 4) for e in entities])
    store.drain()
    http = requests.Session()
    base = feature_server.url
    assert http.get(f"{base}/features/agent_activity/1/{entities[0]}", timeout=10).status_code == 200
    single = []
    for e in entities[:300]:
        t = time.perf_counter()
        answer = http.get(f"{base}/features/agent_activity/1/{e}", timeout=10)
        single.append(time.perf_counter() - t)
        assert answer.status_code == 200 and answer.json()["entity"] == e
    batch = []
    for i in range(10):
        chunk = entities[i * 100 : i * 100 + 100]
        t = time.perf_counter()
        answer = http.post(f"{base}/features/agent_activity/1", json={"entities": chunk}, timeout=30)
        batch.append(time.perf_counter() - t)
        assert answer.status_code == 200 and len(answer.json()["answers"]) == 100

    def q(values: list[float], p: int) -> float:
        return statistics.quantiles(values, n=100)[p - 1] * 1000

    print(
        f"\n[figures] feature server over HTTP: single lookups p50 {q(single, 50):.1f} ms / p99 "
        f"{q(single, 99):.1f} ms ({len(single)} lookups); batches of 100 entities p50 {q(batch, 50):.1f} ms / "
        f"p99 {q(batch, 99):.1f} ms ({len(batch)} batches)"
    )


def test_console_probe_shows_freshness_per_view_and_a_sample_lookup(
    store: Store, feature_server: LocalFeatureServer
) -> None:
    """What `make local`'s console shows: per view the age of the newest window served, and one agent lookup
    with its provenance, through the feature server."""
    from headwater.local.console import FeatureProbe

    run = run_prefix()
    now_ms = int(time.time() * 1000) // WINDOW_MS * WINDOW_MS
    record = features(f"{run}-console", now_ms - WINDOW_MS, 7)
    positions = store.producer(V1).send([record])
    store.drain()
    seen: list[str | None] = [None]
    probe = FeatureProbe(feature_server.url, V1, lambda: seen[0])
    assert probe.probe() == [
        "agent_activity_v1      no entity of this view read by the console yet",
        "agent_activity_v2      no entity of this view read by the console yet",
    ]
    seen[0] = record["entity_id"]
    lines = probe.probe()
    age = time.time() - record["window_end"] / 1000
    v1 = lines[0]
    assert v1.startswith("agent_activity_v1      newest window served ") and "(budget 300s, fresh)" in v1
    assert float(v1.split("served ")[1].split("s old")[0]) == pytest.approx(age, abs=5)
    assert lines[1] == "agent_activity_v2      no entity of this view read by the console yet"
    assert lines[2] == "sample agent lookup:"
    partition, offset = positions[record["entity_id"].encode()]
    assert lines[3].startswith(f"GET /features/agent_activity/1/{record['entity_id']} -> ")
    assert "event_count 7" in lines[3] and lines[3].endswith(f"from {V1}[{partition}]@{offset}")
    seen[0] = f"{run}-never-written"
    assert "unknown_entity: no agent_activity_v1 row" in probe.probe()[0]


def test_the_materializer_exports_what_the_freshness_alert_reads(store: Store) -> None:
    """The gauge each view's freshness alert selects is the one the materializer serves: the end of the newest
    window written, which a late, older window does not move back."""
    from prometheus_client.parser import text_string_to_metric_families

    from components.feature_store import freshness_rules
    from components.observability import metric_names
    from headwater.feature_views import feature_views

    rules = freshness_rules(store.platform, feature_views(store.platform))["groups"][0]["rules"]
    (metric,) = set().union(*(metric_names(r["expr"]) for r in rules))
    port = store.materializer.metrics_port

    def gauge(view: str) -> float | None:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == metric and sample.labels == {"view": view}:
                    return float(sample.value)
        return None

    run = run_prefix()
    producer = store.producer(V1)
    ahead_ms = (int(time.time() * 1000) // WINDOW_MS + 3) * WINDOW_MS  # later than any window written so far
    newest = features(f"{run}-ahead", ahead_ms, 5)
    producer.send([newest])
    store.drain()
    assert gauge("agent_activity_v1") == newest["window_end"] / 1000
    producer.send([features(f"{run}-late", BASE_MS - WINDOW_MS, 5)])
    store.drain()
    assert gauge("agent_activity_v1") == newest["window_end"] / 1000
    assert [r["labels"]["view"] for r in rules] == ["agent_activity_v1", "agent_activity_v2"]
