"""Data-plane benchmark: agent-events against the raw transactional pass-through, on one local broker.

One run starts a local broker and registry from the `local` stack, writes a backlog of raw agent events
(with a share of malformed records and producer retries) and measures, back to back over the same backlog:

1. the anchor: a transactional consume -> produce loop (confluent-kafka, read_committed, a transaction
   committed every checkpoint interval) copying the raw bytes to a scratch topic: what the pipe can do;
2. agent-events as `make local` runs it (the same Flink settings as the FlinkDeployment), from the start of
   the backlog: events/s while draining it (records read by its Kafka source, from the job's REST API). The
   backlog starts with `--warm-up` records (as many as `--events` by default) that the job drains first: a
   JVM just started spends much of its CPU compiling the hot paths, so the rate it sustains is measured over
   the `--events` records after them, and the rate from a cold start over the warm-up is printed beside it;
3. agent-events at 80% of that rate (`--latency-load`), live: produce -> visible latency of its signals
   (p50/p99) to a reader of each delivery a flow may choose: exactly-once (read_committed) and at-least-once
   (read_uncommitted, each event id counted the first time it is seen).

It prints events/s, the ratio to the anchor, the latencies, CPU per process (broker, Flink JVM and Python
workers, the anchor) and the settings. Figures, not assertions: the machine may be shared, so the ratio to
the anchor measured in the same run is what compares across machines.

    make bench                                         # 200,000 events
    .venv/bin/python bench/dataplane_bench.py --events 20000 --latency-seconds 10
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from headwater import flink_conf
from headwater.config import load_platform
from headwater.contracts import access, load_contracts
from headwater.contracts.serde import HEADER_SIZE, frame
from headwater.local import KafkaPorts, LocalKafka, client_config, install_signal_handlers, provision
from headwater.local.console import percentile
from headwater.local.flink import LocalFlinkJob
from headwater.local.process import stderr_progress
from headwater.local.producer import MALFORMED_KINDS, ProducerSettings, SampleEvents
from headwater.local.registry import LocalRegistry
from headwater.spec import AT_LEAST_ONCE, DELIVERIES, EXACTLY_ONCE, Platform, app_flows, isolation_level

APP = "agent-events"
AT_LEAST_ONCE_BUDGET_MS = 250.0
ANCHOR_TOPIC = "bench.passthrough.v1"
# The app's option --native-common-case as an environment variable (the local job inherits the environment).
NATIVE_OPTION_ENV = "HEADWATER_NATIVE_COMMON_CASE"
SAY = stderr_progress("bench")
# Agents per type in the backlog (five types): a fleet's worth, so that the records, keyed by agent id, spread
# over the raw topic's partitions about evenly. With the sample producer's 15 agents, one partition held a fifth
# of the backlog and another two fifths, and the end of every drain measured one partition alone.
BENCH_AGENTS_PER_TYPE = 200


@dataclass(frozen=True)
class Backlog:
    records: int
    valid: int
    duplicates: int
    malformed: int
    warm_up: int = 0  # the first `warm_up` records warm the job up; the rest are measured


def _topic(platform: Platform, role: str) -> str:
    """The app's source / sink / dead-letter topic, from its principal's flows."""
    (app,) = [a for a in platform.apps if a.name == APP]
    flows = app_flows(platform, app)
    return {"source": flows.sources[0], "sink": flows.sinks[0], "dead": flows.dead_letters[0]}[role]


def _events(contract: dict[str, Any], seed: int) -> SampleEvents:
    settings = ProducerSettings(rate=1.0, seed=seed, agents_per_type=BENCH_AGENTS_PER_TYPE)
    return SampleEvents(contract, settings, random.Random(seed))


def write_backlog(
    kafka: LocalKafka, topic: str, schema_id: int, contract: dict[str, Any], n: int, seed: int = 11
) -> Backlog:
    """`n` records: 2% malformed (every kind), 3% retries of earlier events, the rest fresh valid events."""
    events = _events(contract, seed)
    rng = random.Random(seed)
    producer = Producer({**client_config(kafka, "agent-gateway"), "linger.ms": 20, "batch.size": 262_144})
    recent: list[tuple[bytes, bytes]] = []
    counts = {"valid": 0, "dup": 0, "bad": 0}
    for i in range(n):
        roll = rng.random()
        if roll < 0.02:
            record = events.malformed(MALFORMED_KINDS[i % len(MALFORMED_KINDS)])
            body = record if isinstance(record, bytes) else json.dumps(record).encode()
            # Keyed by an agent of the fleet, as an agent runtime sends them: all under one key, the
            # malformed records (a fifth of them over the size limit) would load one partition alone.
            key, value, kind = rng.choice(events.agents)[0].encode(), frame(schema_id, body), "bad"
        elif roll < 0.05 and recent:
            key, value = rng.choice(recent)
            kind = "dup"
        else:
            doc = events.valid()
            key, value, kind = doc["agent_id"].encode(), frame(schema_id, json.dumps(doc).encode()), "valid"
            recent = [*recent, (key, value)][-1000:]
        _produce(producer, topic, key, value)
        counts[kind] += 1
        if i % 50_000 == 0 and i:
            SAY(f"backlog: {i:,} records written")
    producer.flush(60)
    return Backlog(n, counts["valid"], counts["dup"], counts["bad"])


def _produce(producer: Producer, topic: str, key: bytes | None, value: bytes | None) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key)
            return
        except BufferError:
            producer.poll(0.01)


def end_offsets(kafka: LocalKafka, topic: str) -> dict[int, int]:
    consumer = Consumer({**kafka.admin_config(), "group.id": "bench-offsets"})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    finally:
        consumer.close()


# --- the anchor ---------------------------------------------------------------------------------------------


def anchor(kafka: LocalKafka, source: str, records: int, commit_every_s: float) -> dict[str, float]:
    """Transactional copy of `records` raw records from `source` to the scratch topic; events/s and CPU."""
    admin = AdminClient(kafka.admin_config())
    partitions = len(admin.list_topics(source, timeout=10).topics[source].partitions)
    admin.create_topics([NewTopic(ANCHOR_TOPIC, partitions, 1)])[ANCHOR_TOPIC].result(30)
    base = kafka.admin_config()
    consumer = Consumer(
        {
            **base,
            "group.id": "bench-anchor",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    producer = Producer({**base, "transactional.id": "bench-anchor", "linger.ms": 5})
    producer.init_transactions(30)
    consumer.subscribe([source])
    me = psutil.Process()
    cpu0 = sum(me.cpu_times()[:2])
    copied = 0
    started: float | None = None
    producer.begin_transaction()
    last_commit = time.monotonic()
    try:
        while copied < records:
            batch = consumer.consume(1000, timeout=1.0)
            for msg in batch:
                if msg.error():
                    raise KafkaException(msg.error())
                _produce(producer, ANCHOR_TOPIC, msg.key(), msg.value())
            copied += len(batch)
            if batch and started is None:
                started = time.monotonic()
            if time.monotonic() - last_commit >= commit_every_s or copied >= records:
                producer.send_offsets_to_transaction(
                    consumer.position(consumer.assignment()), consumer.consumer_group_metadata()
                )
                producer.commit_transaction()
                producer.begin_transaction()
                last_commit = time.monotonic()
        producer.abort_transaction()
    finally:
        consumer.close()
    elapsed = time.monotonic() - (started or time.monotonic())
    cpu = sum(me.cpu_times()[:2]) - cpu0
    return {"events_s": copied / elapsed, "seconds": elapsed, "cpu_us_per_event": cpu / copied * 1e6}


# --- agent-events -------------------------------------------------------------------------------------------


def _tree(pid: int | None) -> list[psutil.Process]:
    if pid is None:
        return []
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _cpu(procs: Iterable[psutil.Process]) -> dict[str, float]:
    """CPU seconds per process kind (Flink JVM, Python workers, Python driver)."""
    out: dict[str, float] = {}
    for p in procs:
        try:
            cmd = " ".join(p.cmdline())
            spent = sum(p.cpu_times()[:2])
        except psutil.NoSuchProcess:
            continue
        kind = "flink jvm" if "java" in cmd else "python worker" if "beam_boot" in cmd else "python driver"
        out[kind] = out.get(kind, 0.0) + spent
    return out


METRICS_FRESHNESS_KEY = "metrics.fetcher.update-interval"
METRICS_FRESHNESS_MS = "250"


def _source_records(job: LocalFlinkJob) -> int | None:
    """Records the job's Kafka source vertex has emitted (REST API), None while unknown."""
    if job.job_id is None:
        job.job_state()
    try:
        vertices = job._rest(f"/jobs/{job.job_id}")["vertices"]
    except (OSError, ValueError, KeyError):
        return None
    sources = [v for v in vertices if "Source" in v.get("name", "")]
    if not sources:
        return None
    return sum(int(v.get("metrics", {}).get("write-records", 0)) for v in sources)


def drain(job: LocalFlinkJob, kafka: LocalKafka, backlog: Backlog, timeout: float) -> dict[str, Any]:
    """Start the job on the backlog and measure its source's rate from 10% to 90% of the measured records
    (after the warm-up) and, from a cold start, from 10% to 90% of the warm-up."""
    job.start(restore=False)
    job.wait_running(timeout)
    running_at = time.monotonic()
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout
    last_report = 0.0
    while True:
        read = _source_records(job)
        now = time.monotonic()
        if read is not None:
            samples.append((now, read))
            if now - last_report > 10:
                SAY(f"agent-events: {read:,} of {backlog.records:,} records read")
                last_report = now
            if read >= backlog.records:
                break
        if now > deadline or not job.running():
            raise SystemExit(f"agent-events did not read the backlog in {timeout:.0f}s:\n{job.log_tail()}")
        time.sleep(0.5)

    def first(at_least: float) -> tuple[float, int]:
        return next(s for s in samples if s[1] >= at_least)

    def rate(offset: int, size: int) -> float:
        (t1, r1), (t2, r2) = first(offset + 0.1 * size), first(offset + 0.9 * size)
        if t2 <= t1:  # read between two samples (a small backlog): the rate since the job ran, then
            (t1, r1), (t2, r2) = (running_at, 0), samples[-1]
        return (r2 - r1) / (t2 - t1)

    measured = backlog.records - backlog.warm_up
    tenth = backlog.records / 10
    return {
        "events_s": rate(backlog.warm_up, measured),
        "cold_events_s": rate(0, backlog.warm_up) if backlog.warm_up else None,
        # How the rate moves along the drain: over each tenth of the backlog (the last one ends at the last
        # sample, when the source has emitted every record); none for a tenth begun before the first sample.
        "by_tenth": [
            _between(first(i * tenth), first(min((i + 1) * tenth, backlog.records)))
            if i * tenth >= samples[0][1]
            else math.nan
            for i in range(10)
        ],
    }


def _between(a: tuple[float, int], b: tuple[float, int]) -> float:
    """Records per second from sample `a` to sample `b` (NaN when both fall on one sample)."""
    return (b[1] - a[1]) / (b[0] - a[0]) if b[0] > a[0] else math.nan


@dataclass
class _Watch:
    """One reader of the signals, on its own thread: when each event id first became visible to it."""

    delivery: str
    reader: Consumer
    seen: dict[str, float]

    def collect(self, stop: threading.Event) -> None:
        while not stop.is_set():
            # Waits in librdkafka, without the GIL, for 100 records or 10 ms: a record is stamped at most that late.
            batch = self.reader.consume(100, timeout=0.01)
            now = time.time()
            for msg in batch:
                if not msg.error():
                    # The first copy counts (at-least-once: an aborted transaction's copy, then the committed
                    # one), as an idempotent consumer keyed by event id would act on it.
                    self.seen.setdefault(signal_event_id(msg.value() or b""), now)

    def figures(self, sent: dict[str, float]) -> dict[str, float]:
        seen = [self.seen[event_id] - at for event_id, at in sent.items() if event_id in self.seen]
        # An event never seen counts as slower than every one seen: p99 is over what was sent, not what arrived.
        ordered = sorted(seen) + [math.inf] * (len(sent) - len(seen))
        return {
            "sent": len(sent),
            "seen": len(seen),
            "p50_ms": (percentile(ordered, 50) or float("nan")) * 1000,
            "p99_ms": (percentile(ordered, 99) or float("nan")) * 1000,
        }


def signal_event_id(body: bytes) -> str:
    """The event id of a signal: the Avro record's first field (a string: its zigzag varint length, then its
    UTF-8 bytes) after the wire format's header. Not a full Avro decode: the readers take every signal."""
    at, shift, zigzag = HEADER_SIZE, 0, 0
    while at < len(body):
        byte = body[at]
        zigzag |= (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            break
        shift += 7
    length = zigzag >> 1
    return body[at : at + length].decode("utf-8", "replace")


def latency(
    job: LocalFlinkJob,
    kafka: LocalKafka,
    platform: Platform,
    schema_id: int,
    contract: dict[str, Any],
    rate: float,
    seconds: float,
) -> dict[str, dict[str, float]]:
    """Produce valid events at `rate` for `seconds`; produce -> visible per signal, for each delivery a
    consume flow may choose (`exactly-once`: read_committed; `at-least-once`: read_uncommitted, first copy).

    The events are made before the clock starts and the readers wait in librdkafka on their own threads: the
    benchmark spends its CPU on sending and reading, not on making up events or spinning, so the job shares
    the machine with no more than a real producer and consumers would take."""
    sink = _topic(platform, "sink")
    watches = []
    for delivery in DELIVERIES:
        reader = Consumer(
            {
                **kafka.admin_config(),
                "group.id": f"bench-latency-{delivery}-{time.time_ns()}",
                "auto.offset.reset": "latest",
                "isolation.level": isolation_level(delivery),
            }
        )
        reader.subscribe([sink])
        watches.append(_Watch(delivery, reader, {}))
    deadline = time.monotonic() + 30
    for watch in watches:
        while not watch.reader.assignment() and time.monotonic() < deadline:
            watch.reader.poll(0.2)
    maker = _events(contract, 23)
    docs = (maker.valid() for _ in range(math.ceil(rate * seconds)))
    events = [(d["event_id"], d["agent_id"].encode(), frame(schema_id, json.dumps(d).encode())) for d in docs]
    stop = threading.Event()
    readers = [threading.Thread(target=w.collect, args=(stop,), name=f"reader-{w.delivery}") for w in watches]
    for thread in readers:
        thread.start()
    producer = Producer({**client_config(kafka, "agent-gateway"), "linger.ms": 5})
    source = _topic(platform, "source")
    sent: dict[str, float] = {}
    try:
        start = time.monotonic()
        for n, (event_id, key, value) in enumerate(events):
            due = start + n / rate
            pause = due - time.monotonic()
            if pause > 0.001:
                producer.poll(0)
                time.sleep(pause)
            sent[event_id] = time.time()
            _produce(producer, source, key, value)
        producer.flush(30)
        tail = time.monotonic() + 30
        # (A reader may also see the backlog's last signals: count only what this phase sent.)
        while any(not sent.keys() <= w.seen.keys() for w in watches) and time.monotonic() < tail:
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in readers:
            thread.join()
        for watch in watches:
            watch.reader.close()
    return {watch.delivery: watch.figures(sent) for watch in watches}


def latency_verdict(p99_ms: float, checkpoint_interval_ms: int) -> str:
    """p99 produce-to-visible against the exactly-once budget: 1.5x the checkpoint interval."""
    return _verdict(p99_ms, 1.5 * checkpoint_interval_ms, f"1.5 x {checkpoint_interval_ms} ms")


def _verdict(p99_ms: float, budget: float, what: str) -> str:
    if math.isinf(p99_ms):
        return f"p99 not reached (over 1% of the events unseen); budget {budget:,.0f} ms: OVER"
    verdict = "within" if p99_ms <= budget else "OVER"
    return f"p99 {p99_ms:,.0f} ms vs budget {what} = {budget:,.0f} ms: {verdict}"


# --- the run ------------------------------------------------------------------------------------------------


def run(
    events: int,
    latency_seconds: float,
    state: Path,
    timeout: float,
    load_share: float = 0.8,
    warm_up: int = 0,
    extra_conf: dict[str, str] | None = None,
) -> None:
    install_signal_handlers()
    platform = load_platform("local")
    kafka = LocalKafka(platform, state / "kafka", KafkaPorts.free(), progress=stderr_progress("kafka"))
    # Everyone reads schemas as themselves, as on the platform: the app with its own registry credentials.
    registry = LocalRegistry(
        state / "registry",
        port=0,
        users=access.registry_users(platform),
        progress=stderr_progress("registry"),
    )
    job: LocalFlinkJob | None = None
    try:
        kafka.start()
        provision(kafka, progress=stderr_progress("provision"))
        registry.start()
        client = registry.client()
        for contract in load_contracts(platform):
            client.set_compatibility(contract.subject, contract.compatibility)
            client.register(contract.subject, contract.text, contract.schema_type)
        source = _topic(platform, "source")
        raw_contract = next(c for c in load_contracts(platform) if c.subject == f"{source}-value")
        raw_schema = json.loads(raw_contract.text)
        schema_id = client.register(raw_contract.subject, raw_contract.text, raw_contract.schema_type)

        SAY(f"writing a backlog of {warm_up:,} + {events:,} records to {source}")
        written = write_backlog(kafka, source, schema_id, raw_schema, warm_up + events)
        backlog = Backlog(written.records, written.valid, written.duplicates, written.malformed, warm_up)
        broker = _tree(kafka.pid)
        interval_s = platform.flink.checkpoint_interval_ms / 1000

        SAY("anchor: transactional pass-through of the backlog")
        broker_cpu0 = sum(_cpu(broker).values())
        anchored = anchor(kafka, source, backlog.records, interval_s)
        broker_anchor = sum(_cpu(broker).values()) - broker_cpu0

        SAY("agent-events: draining the same backlog")
        job = LocalFlinkJob(
            platform,
            APP,
            kafka,
            registry.url,
            state / "flink",
            progress=stderr_progress("flink"),
            restart_attempts=0,
            registry_user_info=registry.user_info(APP),
            # The REST API's metrics are at most this old (Flink's default, 10 s, is most of a drain): the
            # rates below read the source's record count from it.
            flink_conf={METRICS_FRESHNESS_KEY: METRICS_FRESHNESS_MS, **(extra_conf or {})},
        )
        broker_cpu0 = sum(_cpu(broker).values())
        drained = drain(job, kafka, backlog, timeout)
        tree = _tree(job.pid)
        cpu_job = _cpu(tree)
        broker_job = sum(_cpu(broker).values()) - broker_cpu0

        load = load_share * drained["events_s"]
        SAY(
            f"agent-events: latency at {load_share:.0%} of its rate ({load:,.0f} events/s) "
            f"for {latency_seconds:.0f}s"
        )
        lat = latency(job, kafka, platform, schema_id, raw_schema, load, latency_seconds)

        # The settings the job ran with: the platform's, and this run's --flink-conf over them.
        conf = {
            **flink_conf.app_flink_conf(platform.flink, "<checkpoints>", "<savepoints>"),
            **(extra_conf or {}),
        }
        ratio = drained["events_s"] / anchored["events_s"]
        path = (
            "every record through Python"
            if os.environ.get(NATIVE_OPTION_ENV) == "false"
            else "native common case"
        )
        lines = [
            f"agent-events path: {path} (flink_apps/agent_events/pipeline.py)",
            f"backlog: {backlog.records:,} records ({backlog.valid:,} valid, {backlog.duplicates:,} retries, "
            f"{backlog.malformed:,} malformed) on {source}, the first {backlog.warm_up:,} the warm-up",
            f"anchor (transactional pass-through of the whole backlog, commit every {interval_s:g}s): "
            f"{anchored['events_s']:,.0f} events/s, {anchored['cpu_us_per_event']:.0f} us CPU/event in the "
            f"client, broker {broker_anchor / backlog.records * 1e6:.0f} us/event",
            f"agent-events: {drained['events_s']:,.0f} events/s = {ratio:.1%} of the anchor (sustained: 10-90% of "
            f"the {events:,} records after the {warm_up:,} that warmed the job up)"
            + (
                f"; from a cold start (10-90% of the warm-up): {drained['cold_events_s']:,.0f} events/s = "
                f"{drained['cold_events_s'] / anchored['events_s']:.1%}"
                if drained["cold_events_s"]
                else ""
            ),
            "agent-events rate over each tenth of the backlog, in order (events/s): "
            + ", ".join("-" if math.isnan(r) else f"{r:,.0f}" for r in drained["by_tenth"]),
            "agent-events CPU for the whole run: "
            + ", ".join(f"{k} {v:.1f}s" for k, v in sorted(cpu_job.items()))
            + f"; broker during the drain {broker_job:.1f}s",
            *(
                f"latency at {load_share:.0%} load, {delivery} reader ({load:,.0f} events/s, {f['sent']:,} sent, "
                f"{f['seen']:,} seen, isolation.level={isolation_level(delivery)}): "
                f"p50 {f['p50_ms']:,.0f} ms, p99 {f['p99_ms']:,.0f} ms"
                for delivery, f in lat.items()
            ),
            "exactly-once latency (visible when its checkpoint commits): "
            + latency_verdict(lat[EXACTLY_ONCE]["p99_ms"], platform.flink.checkpoint_interval_ms),
            "at-least-once latency (visible when written; duplicates possible after a restart): "
            + _verdict(lat[AT_LEAST_ONCE]["p99_ms"], AT_LEAST_ONCE_BUDGET_MS, "the at-least-once target"),
            "settings: "
            + ", ".join(f"{k}={v}" for k, v in sorted(conf.items()) if "dir" not in k)
            + f", parallelism={platform.flink.parallelism}",
        ]
        print("\n".join(f"[dataplane] {line}" for line in lines), flush=True)
    finally:
        if job is not None:
            job.kill()
        registry.stop()
        kafka.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000, help="measured backlog size (records)")
    parser.add_argument(
        "--warm-up",
        type=int,
        help="records drained before the measured ones, while the job's JVM compiles its hot paths "
        "(default: as many as --events; 0: measure from a cold start)",
    )
    parser.add_argument("--latency-seconds", type=float, default=20.0, help="length of the latency phase")
    parser.add_argument(
        "--latency-load",
        type=float,
        default=0.8,
        help="the latency phase's rate, as a share of the drained rate (0 < x <= 1)",
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="give up draining after this long")
    parser.add_argument("--state-dir", type=Path, help="keep the broker's and job's state here")
    parser.add_argument(
        "--python-only",
        action="store_true",
        help="run agent-events with every record through its Python function (the path before the native "
        "common case), for comparison",
    )
    parser.add_argument(
        "--flink-conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Flink setting for agent-events' job in this run, over the platform's (repeatable), to compare "
        "settings: e.g. state.backend.rocksdb.use-bloom-filter=true",
    )
    args = parser.parse_args(argv)
    extra_conf = {}
    for item in args.flink_conf:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            parser.error(f"--flink-conf {item!r}: allowed: KEY=VALUE, both not empty")
        extra_conf[key.strip()] = value.strip()
    if args.python_only:
        # The app reads its options from HEADWATER_<OPTION> too; the local job inherits this environment.
        os.environ[NATIVE_OPTION_ENV] = "false"
    if args.events < 1000:
        parser.error(f"--events {args.events}: allowed: at least 1000")
    if not 0 < args.latency_load <= 1:
        parser.error(f"--latency-load {args.latency_load}: allowed: more than 0, at most 1")
    warm_up = args.events if args.warm_up is None else args.warm_up
    if warm_up < 0:
        parser.error(f"--warm-up {warm_up}: allowed: 0 or more records")
    with tempfile.TemporaryDirectory(prefix="headwater-bench-") as folder:
        state = args.state_dir.resolve() if args.state_dir else Path(folder)
        run(args.events, args.latency_seconds, state, args.timeout, args.latency_load, warm_up, extra_conf)


if __name__ == "__main__":
    main()
