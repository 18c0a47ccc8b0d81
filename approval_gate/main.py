"""The approval gate process: exactly-once consume -> decide -> produce on Kafka.

One transaction per batch holds everything a batch causes: the audit records, the approved actions, the state
changes (the compacted changelog) and the consumed offsets (`send_offsets_to_transaction`). Inputs are read
`read_committed`. At start the gate first takes over its transactional id (`init_transactions` fences the
process it replaces and aborts its open transaction), then reads its changelog to the end, then subscribes: so
its state always matches the offsets it resumes from, and an action id is approved at most once, across kills.

Why a plain Kafka client and not a Flink job: the gate's volume is low (actions, not events), its state is one
small record per open action, and it needs per-key timers (SLA expiry) and a join with human decisions by
action id: a transactional consume-transform-produce loop with a changelog (the Kafka Streams model) does all
of it in one small process, where a Flink job would cost a JobManager and a TaskManager per gate.

It runs as one instance (one transactional id): a second copy started by mistake fences the first, which
stops, rather than both deciding.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

import jsonschema
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from approval_gate.logic import Description, Gate, Out, Source, Validator
from approval_gate.tracing import GateTracer, header

LOG = logging.getLogger("approval_gate")
BATCH = 500
# A batch closes after this long (or BATCH records): one transaction per batch, so this bounds the latency the
# gate adds; actions are few, so short batches cost little.
BATCH_WINDOW_S = 0.05
# Fetch requests return after this long without data (librdkafka's default waits 500 ms).
FETCH_WAIT_MS = 50
# Live while the loop has turned within this long (a stuck broker call or a deadlock is not alive).
LIVE_WITHIN_S = 60.0
# The Kafka password, when the client settings file leaves it out (on Kubernetes: from the KafkaUser secret).
PASSWORD_ENV = "HEADWATER_KAFKA_PASSWORD"


def validators(description: Description) -> dict[str, Validator]:
    """Per input topic: the first contract violation of a record, as `<field>: <rule>`, or None."""
    out: dict[str, Validator] = {}
    for topic, schema in description.contracts.items():
        cls = jsonschema.validators.validator_for(schema)
        validator = cls(schema, format_checker=cls.FORMAT_CHECKER)

        def check(value: Any, v: Any = validator) -> str | None:
            error = jsonschema.exceptions.best_match(v.iter_errors(value))
            if error is None:
                return None
            where = "/".join(str(p) for p in error.absolute_path) or "(record)"
            return f"{where}: {error.message}"

        out[topic] = check
    return out


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def restore(gate: Gate, kafka: Mapping[str, Any], timeout_s: float = 120.0) -> int:
    """Read the changelog from the start to its end (committed records only) into the gate's state."""
    topic = gate.description.state_topic
    consumer = Consumer(
        {
            **kafka,
            "group.id": gate.description.group,  # assigned, never subscribed: nothing is committed under it
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=30)
        partitions = sorted(metadata.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])  # offset 0: the beginning
        remaining, count = set(partitions), 0
        deadline = time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                raise RuntimeError(f"restoring {topic}: partitions {sorted(remaining)} not read to the end")
            for msg in consumer.consume(BATCH, 0.5):
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        remaining.discard(msg.partition() or 0)
                        continue
                    raise KafkaException(error)
                key = (msg.key() or b"").decode()
                raw = msg.value()
                gate.restore(key, json.loads(raw) if raw is not None else None)
                count += 1
        return count
    finally:
        consumer.close()


class Runner:
    """The loop: consume a batch, let the gate decide, write it all and the offsets in one transaction."""

    def __init__(
        self,
        description: Description,
        kafka: Mapping[str, Any],
        clock: Callable[[], int] = now_ms,
        tracer: GateTracer | None = None,
    ):
        self.description = description
        self.kafka = dict(kafka)
        self.clock = clock
        self.tracer = tracer
        self.gate = Gate(description, validators(description), tracer=tracer.step if tracer else None)
        self.stopping = False
        self.counts = {"proposals": 0, "decisions": 0, "transactions": 0, "records_out": 0}
        self.ready = False  # state restored and subscribed
        self.last_step = time.monotonic()

    def live(self) -> bool:
        return time.monotonic() - self.last_step < LIVE_WITHIN_S

    def run(self) -> dict[str, int]:
        d = self.description
        producer = Producer(
            {
                **self.kafka,
                "transactional.id": d.transactional_id,
                "enable.idempotence": True,
                "transaction.timeout.ms": 60_000,
                "linger.ms": 5,
            }
        )
        producer.init_transactions(60)  # fences the gate this one replaces, aborts its open transaction
        restored = restore(self.gate, self.kafka)
        LOG.info("restored %d changelog records: %d open actions", restored, len(self.gate.pending()))
        consumer = Consumer(
            {
                **self.kafka,
                "group.id": d.group,
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 1000,
                "fetch.wait.max.ms": FETCH_WAIT_MS,
            }
        )
        consumer.subscribe([*d.proposed_topics, d.decisions_topic])
        LOG.info("gating %s and %s", ", ".join(d.proposed_topics), d.decisions_topic)
        self.ready = True
        try:
            while not self.stopping:
                self._step(consumer, producer)
                self.last_step = time.monotonic()
        finally:
            consumer.close()
            producer.flush(10)
        return self.counts

    def _timeout(self) -> float:
        deadline = self.gate.next_deadline()
        if deadline is None:
            return BATCH_WINDOW_S
        return max(0.0, min(BATCH_WINDOW_S, (deadline - self.clock()) / 1000))

    def _step(self, consumer: Consumer, producer: Producer) -> None:
        msgs = consumer.consume(BATCH, self._timeout())
        d = self.description
        out: list[Out] = []
        consumed: dict[tuple[str, int], int] = {}
        for msg in msgs:
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(error)
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            assert topic is not None and partition is not None and offset is not None
            source = Source(topic, partition, offset)
            now = self.clock()
            traceparent = header(msg.headers())
            if topic == d.decisions_topic:
                self.counts["decisions"] += 1
                out += self.gate.on_decision(source, msg.key(), msg.value(), now, traceparent)
            else:
                self.counts["proposals"] += 1
                out += self.gate.on_proposal(source, msg.key(), msg.value(), now, traceparent)
            consumed[(topic, partition)] = offset + 1
        out += self.gate.on_tick(self.clock())
        if not out and not consumed:
            return
        producer.begin_transaction()
        for o in out:
            value = None if o.value is None else json.dumps(o.value, sort_keys=True).encode()
            producer.produce(o.topic, key=o.key.encode(), value=value, headers=list(o.headers) or None)
        if consumed:
            offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(consumed.items())]
            producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
        if self.tracer is not None:
            self.tracer.commit()  # the steps' spans, now that their records are committed
        self.counts["transactions"] += 1
        self.counts["records_out"] += len(out)


def serve_health(runner: Runner, port: int) -> ThreadingHTTPServer:
    """GET /healthz (the loop turns) and /readyz (state restored, subscribed) for the kubelet's probes."""

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            checks: dict[str, Callable[[], bool]] = {
                "/healthz": runner.live,
                "/readyz": lambda: runner.ready and runner.live(),
            }
            ok = checks.get(self.path)
            code = 404 if ok is None else 200 if ok() else 503
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes every few seconds would drown the log

    server = ThreadingHTTPServer(("0.0.0.0", port), Health)  # the kubelet probes the pod's address
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server


def kafka_settings(path: Path) -> dict[str, Any]:
    """librdkafka settings from the file, with `sasl.password` from the environment when the file has none."""
    settings: dict[str, Any] = json.loads(path.read_text())
    password = os.environ.get(PASSWORD_ENV)
    if password and "sasl.password" not in settings:
        settings["sasl.password"] = password
    return settings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="approval_gate.main", description=__doc__)
    p.add_argument("--description", type=Path, required=True, help="the gate description (gate.json)")
    p.add_argument(
        "--kafka-config",
        type=Path,
        required=True,
        help=f"librdkafka settings of the gate's principal (JSON; a password in it, or in ${PASSWORD_ENV})",
    )
    p.add_argument("--health-port", type=int, default=0, help="serve /healthz and /readyz here (0: none)")
    p.add_argument(
        "--traces-file",
        type=Path,
        default=None,
        help="append the spans of the audited steps here, one JSON line each (default: none; "
        "OTEL_EXPORTER_OTLP_ENDPOINT also exports them over OTLP where the exporter is installed)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stdout
    )
    args = parse_args(argv)
    description = Description.load(args.description)
    tracer = GateTracer(description.principal, args.traces_file)
    runner = Runner(description, kafka_settings(args.kafka_config), tracer=tracer)
    if args.health_port:
        serve_health(runner, args.health_port)

    def stop(signum: int, frame: FrameType | None) -> None:
        runner.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        counts = runner.run()
    finally:
        tracer.shutdown()
    LOG.info("stopped: %s", json.dumps(counts, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
