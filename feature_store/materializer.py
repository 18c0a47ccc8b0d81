"""The materializer: feature topics -> the online store, idempotently. `python -m feature_store.materializer`.

- Reads every feature topic of the repo description (read_committed: only what the aggregator committed)
  in its own consumer group, under its own principal (ACLs derived from its flows in the catalog).
- Writes each batch through Feast's online write path, which keeps the later window per entity and view:
  an equal or earlier window is a no-op, so replays and restarts never move a feature back in time.
- Commits offsets only after the batch is stored and its dead letters are acknowledged by the broker, so a
  crash replays (harmlessly) instead of losing rows.
- Records that cannot be stored go to the dead-letter topic with the reason and source offsets.
- When the store is down it retries the same batch with exponential backoff (reading nothing more: the
  topic is the buffer) and says so in the log; nothing is dropped.

Options come from arguments; secrets from the environment (HEADWATER_REDIS_PASSWORD,
HEADWATER_REGISTRY_USER_INFO) and from the client config file (mode 0600).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import requests
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from feast import FeatureStore
from prometheus_client import Counter, Gauge, start_http_server

from feature_store.description import Description, View
from feature_store.records import BadRecord, Source, dead_letter, decode, encode, to_row
from feature_store.repo import Redis, open_store

LOG = logging.getLogger("feature_store.materializer")
# What the freshness alert per view reads (`time() - window end > the view's freshness budget`).
WINDOW_END = Gauge(
    "headwater_feature_window_end_seconds",
    "End of the newest window written to the online store, per feature view (Unix seconds)",
    ["view"],
)
ROWS = Counter("headwater_feature_rows", "Rows written to the online store", ["view"])
DEAD_LETTERS = Counter("headwater_feature_dead_letters", "Records sent to the dead-letter topic", ["reason"])
KAFKA_SASL_PASSWORD_ENV = "HEADWATER_KAFKA_SASL_PASSWORD"
PIPELINE = "feature-materializer"
CCOMPAT = "/apis/ccompat/v7"


class Registry:
    """Writer schemas by id and the dead-letter contract's id, from the registry's Confluent-compatible API."""

    def __init__(self, url: str, user_info: str | None, ca_file: str | None = None) -> None:
        self.base = url.rstrip("/") if url.rstrip("/").endswith(CCOMPAT) else url.rstrip("/") + CCOMPAT
        self.session = requests.Session()
        if user_info:
            self.session.headers["Authorization"] = "Basic " + base64.b64encode(user_info.encode()).decode()
        self.session.verify = ca_file or True
        self._schemas: dict[int, dict[str, Any]] = {}

    def schema(self, schema_id: int) -> dict[str, Any]:
        if schema_id not in self._schemas:
            answer = self.session.get(f"{self.base}/schemas/ids/{schema_id}", timeout=10)
            if answer.status_code == 404:
                raise LookupError(f"schema id {schema_id} is unknown to the registry")
            answer.raise_for_status()
            self._schemas[schema_id] = json.loads(answer.json()["schema"])
        return self._schemas[schema_id]

    def lookup_id(self, subject: str, schema: Mapping[str, Any]) -> int:
        body = {"schema": json.dumps(schema, sort_keys=True), "schemaType": "AVRO"}
        answer = self.session.post(f"{self.base}/subjects/{subject}", json=body, timeout=10)
        if answer.status_code == 404:
            raise SystemExit(
                f"the dead-letter contract is not registered under {subject!r}; register the contracts first"
            )
        answer.raise_for_status()
        return int(answer.json()["id"])


@dataclass
class Counts:
    rows: int = 0
    dead_letters: int = 0
    batches: int = 0
    store_retries: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    description: Description
    store_dir: Path
    redis: Redis
    kafka: Mapping[str, Any]
    group: str
    deadletter_topic: str
    deadletter_schema: Mapping[str, Any]
    registry: Registry
    batch_size: int = 500
    batch_wait_s: float = 0.2
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0


class Materializer:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.counts = Counts()
        self.newest: dict[str, float] = {}  # view -> end of the newest window written (Unix seconds)
        self.stopping = False
        self.store: FeatureStore = open_store(
            settings.description, settings.store_dir, settings.redis, apply=True
        )
        self.views = {v.topic: v for v in settings.description.views}
        self.dl_id = settings.registry.lookup_id(
            f"{settings.deadletter_topic}-value", settings.deadletter_schema
        )
        self.consumer = Consumer(
            {
                **settings.kafka,
                "group.id": settings.group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                # The loop stops polling while the store is down: give it time before the group evicts it.
                "max.poll.interval.ms": 600_000,
            }
        )
        self.producer = Producer({**settings.kafka, "enable.idempotence": True, "acks": "all"})

    def run(self) -> Counts:
        self.consumer.subscribe(sorted(self.views))
        LOG.info(
            "materializing %s into Redis %s:%s",
            ", ".join(sorted(self.views)),
            self.s.redis.host,
            self.s.redis.port,
        )
        try:
            while not self.stopping:
                messages = self.consumer.consume(self.s.batch_size, self.s.batch_wait_s)
                if messages:
                    self._process(messages)
        finally:
            self.consumer.close()
            self.producer.flush(10)
        return self.counts

    def _process(self, messages: Sequence[Message]) -> None:
        rows: dict[str, list[dict[str, Any]]] = {}
        letters: list[tuple[Source, BadRecord]] = []
        for msg in messages:
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise SystemExit(f"consumer error: {error}")
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            assert topic is not None and partition is not None and offset is not None
            ts_type, ts = msg.timestamp()
            source = Source(topic, partition, offset, msg.key(), msg.value(), ts if ts_type else None)
            view = self.views[topic]
            try:
                schema_id, record = decode(source.value, self.s.registry.schema)
                rows.setdefault(view.name, []).append(to_row(view, record, source, schema_id))
            except BadRecord as refused:
                letters.append((source, refused))
        for view_name, batch in rows.items():
            self._write(self.s.description.view(view_name), batch)
        for source, bad in letters:
            self._dead_letter(source, bad)
        if letters:
            remaining = self.producer.flush(30)
            if remaining:
                raise SystemExit(f"{remaining} dead letters not acknowledged by the broker; not committing")
        self.consumer.commit(offsets=_next_offsets(messages), asynchronous=False)
        self.counts.batches += 1

    def _write(self, view: View, batch: list[dict[str, Any]]) -> None:
        delay = self.s.backoff_initial_s
        columns = {name: [row[name] for row in batch] for name in batch[0]}
        while True:
            try:
                self.store.write_to_online_store(view.name, inputs=columns)
                self.counts.rows += len(batch)
                ROWS.labels(view=view.name).inc(len(batch))
                newest = max(row[view.timestamp_field].timestamp() for row in batch)
                # A late, older window does not make the view look older than what it already serves.
                self.newest[view.name] = max(newest, self.newest.get(view.name, 0.0))
                WINDOW_END.labels(view=view.name).set(self.newest[view.name])
                return
            except Exception as exc:
                if not _store_unavailable(exc):
                    raise
                self.counts.store_retries += 1
                LOG.warning(
                    "online store unavailable (%s): %d rows of %s wait, retry in %.1fs",
                    type(exc).__name__,
                    len(batch),
                    view.name,
                    delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, self.s.backoff_max_s)
                if self.stopping:
                    raise SystemExit("stopped while the online store was down; nothing committed") from exc

    def _dead_letter(self, source: Source, bad: BadRecord) -> None:
        record = dead_letter(source, bad, f"{source.topic}-value", PIPELINE)
        self.producer.produce(
            self.s.deadletter_topic,
            key=str(source.partition).encode(),
            value=encode(self.s.deadletter_schema, self.dl_id, record),
        )
        self.counts.dead_letters += 1
        self.counts.by_reason[bad.code] = self.counts.by_reason.get(bad.code, 0) + 1
        DEAD_LETTERS.labels(reason=bad.code).inc()
        LOG.warning("dead letter: %s/%d@%d %s", source.topic, source.partition, source.offset, bad)


def _store_unavailable(exc: BaseException) -> bool:
    """Connection trouble (retry), as opposed to a defect (crash)."""
    import redis.exceptions

    return isinstance(
        exc,
        redis.exceptions.ConnectionError | redis.exceptions.TimeoutError | redis.exceptions.BusyLoadingError,
    )


def _next_offsets(messages: Sequence[Message]) -> list[TopicPartition]:
    last: dict[tuple[str, int], int] = {}
    for m in messages:
        topic, partition, offset = m.topic(), m.partition(), m.offset()
        if m.error() is None and topic is not None and partition is not None and offset is not None:
            last[(topic, partition)] = max(offset, last.get((topic, partition), -1))
    return [TopicPartition(t, p, o + 1) for (t, p), o in sorted(last.items())]


def _kafka_settings(path: Path) -> dict[str, Any]:
    """The principal's client settings; a SCRAM password from the environment wins (on Kubernetes it comes
    from the user's Secret, never from the settings file a ConfigMap holds)."""
    settings: dict[str, Any] = json.loads(path.read_text())
    import os

    if os.environ.get(KAFKA_SASL_PASSWORD_ENV):
        settings["sasl.password"] = os.environ[KAFKA_SASL_PASSWORD_ENV]
    return settings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="feature_store.materializer", description=__doc__)
    p.add_argument("--repo", type=Path, required=True, help="the repo description (repo.json)")
    p.add_argument("--store-dir", type=Path, required=True, help="Feast's registry folder")
    p.add_argument("--redis", required=True, help="host:port of the online store")
    p.add_argument("--redis-tls", action="store_true")
    p.add_argument("--redis-ca", help="CA bundle for Redis over TLS")
    p.add_argument(
        "--kafka-config", type=Path, required=True, help="librdkafka settings of the principal (JSON)"
    )
    p.add_argument("--group", required=True)
    p.add_argument("--deadletter-topic", required=True)
    p.add_argument(
        "--deadletter-schema", type=Path, required=True, help="the dead-letter topic's Avro contract"
    )
    p.add_argument("--registry-url", required=True)
    p.add_argument("--registry-ca")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port (all interfaces)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import os

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stdout
    )
    args = parse_args(argv)
    host, _, port = args.redis.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"--redis {args.redis!r}: allowed: host:port")
    settings = Settings(
        description=Description.load(args.repo),
        store_dir=args.store_dir,
        redis=Redis(host, int(port), tls=args.redis_tls, ca_file=args.redis_ca),
        kafka=_kafka_settings(args.kafka_config),
        group=args.group,
        deadletter_topic=args.deadletter_topic,
        deadletter_schema=json.loads(args.deadletter_schema.read_text()),
        registry=Registry(
            args.registry_url, os.environ.get("HEADWATER_REGISTRY_USER_INFO"), args.registry_ca
        ),
        batch_size=args.batch_size,
    )
    materializer = Materializer(settings)
    if args.metrics_port is not None:
        start_http_server(args.metrics_port)

    def stop(signum: int, frame: FrameType | None) -> None:
        materializer.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    counts = materializer.run()
    LOG.info("stopped: %s", json.dumps(counts.__dict__, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
