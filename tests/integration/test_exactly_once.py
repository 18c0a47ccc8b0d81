"""Exactly-once under failure, as production users would ask for it: while the agent-gateway sends 10,000
records, agent-events is killed (SIGKILL of its whole process tree) three times and the broker once, and
each is brought back (the job from its newest retained checkpoint, the broker on its own data).

A read_committed reader (agent-runtime, in its own group) must see every valid event's signal exactly once
and nothing else of this run; every invalid record must be in the dead-letter topic exactly once; and
what went in must reconcile with what came out, by event id: events = signals + dead letters + duplicates
dropped, 0 lost, 0 duplicated. Retries of an event (same event_id) are spread so that many arrive after a
crash that followed the original: the deduplication state has to come back from the checkpoint, not just
the Kafka offsets. The assertions are about outcomes (what the reader sees), not how the job runs.
"""

from __future__ import annotations

import os
import random
import re
import signal
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from agent_events_io import RAW, RawEvents, Sent, Tail, dumps, ensure_running, event, run_id
from confluent_kafka import Consumer, TopicPartition

if TYPE_CHECKING:
    from conftest import Provisioned

    from headwater.local.flink import LocalFlinkJob
    from headwater.local.registry import LocalRegistry

UNIQUE = 8_800  # valid events, each with its own event_id
RETRIES = 900  # re-sends of earlier valid events (same event_id, same body)
INVALID = 300  # records that break the contract
TOTAL = UNIQUE + RETRIES + INVALID
AGENTS = 24
RATE = 100.0  # records per second the gateway sends, so the faults land while events are still arriving
# (what is killed, records sent before the kill)
FAULTS = (
    ("agent-events", TOTAL * 15 // 100),
    ("agent-events", TOTAL * 35 // 100),
    ("broker", TOTAL * 55 // 100),
    ("agent-events", TOTAL * 75 // 100),
)
START_TIMEOUT = 240.0  # guards against a hung start on a loaded machine; a healthy one takes 15-40 s
DRAIN_TIMEOUT = 240.0


@dataclass(frozen=True)
class Item:
    kind: str  # "valid", "retry" or "invalid"
    event_id: str
    agent: str
    value: dict[str, Any] | bytes


def workload(run: str, seed: int = 7) -> list[Item]:
    """The records to send, in order: originals, retries 100-900 records after their original, and
    invalid records of four kinds scattered in between."""
    rng = random.Random(seed)
    keyed: list[tuple[float, Item]] = []
    originals = []
    for i in range(UNIQUE):
        doc = event(f"{run}-{i:05d}", agent=f"agent-{i % AGENTS}", event_type=rng.choice(EVENT_TYPES))
        originals.append(doc)
        keyed.append((float(i), Item("valid", doc["event_id"], doc["agent_id"], doc)))
    for i in rng.sample(range(UNIQUE - 100), RETRIES):
        doc = originals[i]
        keyed.append((i + rng.uniform(100, 900), Item("retry", doc["event_id"], doc["agent_id"], doc)))
    for n in range(INVALID):
        bad_id = f"{run}-bad-{n:03d}"
        kind = n % 4
        if kind == 0:
            value: bytes = b'{"event_id": "' + bad_id.encode() + b'", "event_type": '  # cut off
        elif kind == 1:
            value = dumps({k: v for k, v in event(bad_id).items() if k != "agent_type"})
        elif kind == 2:
            value = dumps(event(bad_id, event_type="agent.teleported"))
        else:
            value = dumps(event(bad_id, duration_ms="slow"))
        keyed.append((rng.uniform(0, UNIQUE), Item("invalid", bad_id, "agent-0", value)))
    keyed.sort(key=lambda pair: pair[0])
    return [item for _, item in keyed]


EVENT_TYPES = ("tool.called", "tool.succeeded", "llm.requested", "llm.responded", "task.completed")


class Gateway(threading.Thread):
    """Sends the workload at RATE records per second, as agent-gateway, up to `limit` records.

    The test raises the limit as it goes, so that each fault lands while records are still arriving and
    the gateway keeps sending through the outage, however long a restart takes on a loaded machine.
    """

    def __init__(self, producer: RawEvents, items: list[Item], limit: int) -> None:
        super().__init__(name="gateway", daemon=True)
        self.producer = producer
        self.items = items
        self.sent: list[tuple[Item, Sent]] = []
        self.started_at = 0.0
        self.finished_at: float | None = None
        self.failure: BaseException | None = None
        self.held_s = 0.0  # time spent waiting at a limit
        self._halt = threading.Event()
        self._limit = limit
        self._raised = threading.Condition()

    def release(self, limit: int) -> None:
        """Let the gateway send up to `limit` records."""
        with self._raised:
            self._limit = max(self._limit, limit)
            self._raised.notify_all()

    def halt(self) -> None:
        """Stop sending (a failing test must not keep producing while the session stops the broker)."""
        self._halt.set()
        self.join(timeout=30)

    def run(self) -> None:
        try:
            self.started_at = time.monotonic()
            next_at = self.started_at
            for n, item in enumerate(self.items):
                if n >= self._limit:
                    held = time.monotonic()
                    with self._raised:
                        while n >= self._limit and not self._halt.is_set():
                            self._raised.wait(0.2)
                    self.held_s += time.monotonic() - held
                    next_at = time.monotonic()  # carry on at RATE, no burst after the hold
                if self._halt.wait(max(next_at - time.monotonic(), 0)):
                    return
                next_at += 1 / RATE
                if isinstance(item.value, bytes):
                    sent = self.producer.send_bytes(item.value, key=item.agent, label=item.event_id)
                else:
                    sent = self.producer.send_event(item.value, label=item.event_id)
                self.sent.append((item, sent))
            self.producer.flush()
            self.finished_at = time.monotonic()
        except BaseException as exc:
            self.failure = exc


def committed_offsets(provisioned: Provisioned, group: str, ends: dict[int, int]) -> dict[int, int]:
    """The offsets the job's consumer group has committed on the raw topic (Flink commits on checkpoints)."""
    consumer = Consumer(provisioned.admin_config(**{"group.id": group}))
    try:
        parts = consumer.committed([TopicPartition(RAW, p) for p in ends], timeout=10)
        return {tp.partition: tp.offset for tp in parts}
    finally:
        consumer.close()


def end_offsets(provisioned: Provisioned) -> dict[int, int]:
    consumer = Consumer(provisioned.admin_config(**{"group.id": "end-offsets"}))
    try:
        partitions = consumer.list_topics(RAW, timeout=10).topics[RAW].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(RAW, p), timeout=10)[1] for p in partitions}
    finally:
        consumer.close()


@pytest.mark.timeout(1200, func_only=True)
def test_exactly_once_across_kills(
    provisioned: Provisioned,
    contracts_registry: LocalRegistry,
    agent_events_job: LocalFlinkJob,
    cleanup: ExitStack,
    capsys: pytest.CaptureFixture[str],
) -> None:
    job = ensure_running(agent_events_job)
    registry = contracts_registry.client()
    run = run_id("eo")
    items = workload(run)
    assert len(items) == TOTAL

    signals = Tail.signals(provisioned, registry, keep=lambda r: r["event_id"].startswith(run + "-"))
    marker = run.encode()
    dead = Tail.dead_letters(provisioned, registry, keep=lambda r: marker in (r["original"] or b""))
    thresholds = [threshold for _, threshold in FAULTS]
    gateway = Gateway(RawEvents(provisioned, registry), items, limit=thresholds[0])
    cleanup.callback(signals.close)
    cleanup.callback(dead.close)
    cleanup.callback(gateway.halt)
    began = time.monotonic()
    gateway.start()

    kills: list[dict[str, Any]] = []
    for n, (target, threshold) in enumerate(FAULTS):
        seen_at_start = len(signals.records)
        deadline = time.monotonic() + START_TIMEOUT
        # Kill once this incarnation has committed output of its own and the gateway is past the mark.
        while len(gateway.sent) < threshold or len(signals.records) <= seen_at_start:
            assert gateway.failure is None, f"the gateway failed: {gateway.failure!r}"
            assert job.running(), f"agent-events exited on its own:\n{job.log_tail()}"
            assert time.monotonic() < deadline, (
                f"no kill point within {START_TIMEOUT:.0f}s: {len(gateway.sent)} sent (need {threshold}), "
                f"{len(signals.records)} signals seen ({seen_at_start} before this incarnation)"
            )
            signals.poll(0.2)
        sent_before = len(gateway.sent)
        # Records keep arriving through the outage, up to the next fault's mark (or the end).
        gateway.release(thresholds[n + 1] if n + 1 < len(thresholds) else TOTAL)
        arriving = sent_before < TOTAL
        killed = time.monotonic()
        if target == "broker":
            how = restart_broker(provisioned, job, signals)
        else:
            job.kill()
            job.start(restore=True)
            assert job.restored_from is not None, "a retained checkpoint should exist after a kill mid-stream"
            job.wait_running(START_TIMEOUT)
            how = f"restored from {job.restored_from.name}"
        kills.append(
            {
                "target": target,
                "sent": sent_before,
                "signals": len(signals.records),
                "arriving": arriving,
                "restart_s": time.monotonic() - killed,
                "how": how,
            }
        )

    gateway.join(timeout=TOTAL / RATE + 300)
    assert not gateway.is_alive(), "the gateway did not finish sending"
    assert gateway.failure is None, f"the gateway failed: {gateway.failure!r}"
    ends = end_offsets(provisioned)

    # Everything read and committed: the job's group offsets reach the end of the raw topic.
    group = job_group(provisioned)
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while True:
        committed = committed_offsets(provisioned, group, ends)
        if all(committed.get(p, -1) >= end for p, end in ends.items()):
            break
        assert job.running(), f"agent-events exited on its own:\n{job.log_tail()}"
        assert time.monotonic() < deadline, (
            f"agent-events did not commit its way to the end of {RAW} within {DRAIN_TIMEOUT:.0f}s: "
            f"committed {committed}, end {ends}"
        )
        signals.poll(0.5)
    drained = time.monotonic()
    valid_ids = {i.event_id for i in items if i.kind == "valid"}
    invalid_ids = {i.event_id for i in items if i.kind == "invalid"}
    invalid_positions = {(s.partition, s.offset) for i, s in gateway.sent if i.kind == "invalid"}
    signals.poll_until(lambda rs: {r["event_id"] for r in rs} >= valid_ids, 60, "every valid event's signal")
    dead.poll_until(lambda rs: len(rs) >= INVALID, 60, "every invalid record's dead letter")
    # The outputs of the checkpoint that covered the last input are committed: read a little past them.
    signals.poll(3)
    dead.poll(1)
    finished = time.monotonic()

    # Signals, by event id: every valid event once, nothing else.
    ids = Counter(r["event_id"] for r in signals.records)
    lost = sorted(valid_ids - set(ids))
    twice = sorted(i for i, n in ids.items() if n > 1)
    strangers = sorted(set(ids) - valid_ids)
    # Dead letters, by the event id inside the rejected record: every invalid record once.
    bad_id = re.compile(rf"{re.escape(run)}-bad-\d+".encode())
    dead_ids = Counter(
        m[0].decode() for r in dead.records for m in [bad_id.search(r["original"] or b"")] if m
    )
    dead_lost = sorted(invalid_ids - set(dead_ids))
    dead_twice = sorted(i for i, n in dead_ids.items() if n > 1)
    duplicates_dropped = TOTAL - len(signals.records) - len(dead.records)
    first_sent: dict[str, int] = {}
    for n, (i, _) in enumerate(gateway.sent):
        first_sent.setdefault(i.event_id, n)
    late_retries = sum(
        1
        for n, (i, _) in enumerate(gateway.sent)
        if i.kind == "retry" and any(first_sent[i.event_id] < k["sent"] <= n for k in kills)
    )
    elapsed = finished - began
    sending = (gateway.finished_at or drained) - gateway.started_at
    committed_after = drained - gateway.started_at
    lines = [
        f"{TOTAL} records in ({UNIQUE} valid, {RETRIES} retries, {INVALID} invalid), sent at {RATE:.0f}/s "
        f"in {sending:.1f}s (held {gateway.held_s:.0f}s at fault marks until the part before was back); "
        f"{sum(k['target'] == 'agent-events' for k in kills)} SIGKILLs of agent-events and "
        f"{sum(k['target'] == 'broker' for k in kills)} of the broker",
        *(
            f"kill {n} ({k['target']}): after {k['sent']} records sent and {k['signals']} signals seen, "
            f"{'while events were still arriving' if k['arriving'] else 'after the last event was sent'}; "
            f"back {k['restart_s']:.1f}s later ({k['how']})"
            for n, k in enumerate(kills, 1)
        ),
        f"signals: {len(signals.records)} for {len(valid_ids)} valid events: {len(lost)} lost, "
        f"{len(twice)} duplicated, {len(strangers)} unexpected",
        f"dead letters: {len(dead.records)} for {len(invalid_ids)} invalid records: {len(dead_lost)} lost, "
        f"{len(dead_twice)} duplicated",
        f"{duplicates_dropped} duplicates dropped ({late_retries} of them retries sent after a kill that "
        f"followed their original); in = signals + dead letters + dropped: {TOTAL} = {len(signals.records)} + "
        f"{len(dead.records)} + {duplicates_dropped}",
        f"all input committed {committed_after:.1f}s after the first record: {TOTAL / committed_after:.0f} "
        f"records/s end to end, paced by the gateway and including {sum(k['restart_s'] for k in kills):.0f}s "
        f"of restarts; test body {elapsed:.1f}s",
    ]
    with capsys.disabled():
        print("\n" + "\n".join(f"[exactly-once] {line}" for line in lines), flush=True)

    assert not lost, f"{len(lost)} valid events have no signal, e.g. {lost[:5]}"
    assert not twice, (
        f"{len(twice)} events have more than one signal, e.g. {[(i, ids[i]) for i in twice[:5]]}"
    )
    assert not strangers, f"signals for events that were not valid: {strangers[:5]}"
    assert not signals.undecodable, f"undecodable signals: {signals.undecodable[:3]}"
    agents = {i.event_id: i.agent for i in items}
    wrong = [r["event_id"] for r in signals.records if r["agent_id"] != agents[r["event_id"]]]
    assert not wrong, f"signals with another event's agent: {wrong[:5]}"
    assert not dead_lost and not dead_twice, (
        f"dead letters by event id: lost {dead_lost[:5]}, written more than once {dead_twice[:5]}"
    )
    positions = Counter((r["source_partition"], r["source_offset"]) for r in dead.records)
    assert set(positions) == invalid_positions, (
        f"dead letters should be exactly the invalid records: missing {sorted(invalid_positions - set(positions))[:5]}, "
        f"unexpected {sorted(set(positions) - invalid_positions)[:5]}"
    )
    assert max(positions.values()) == 1, (
        f"dead letters written twice: {[p for p, n in positions.items() if n > 1][:5]}"
    )
    assert duplicates_dropped == RETRIES, (
        f"in {TOTAL} != {len(signals.records)} signals + {len(dead.records)} dead letters + {RETRIES} retries; "
        f"{duplicates_dropped} records are unaccounted for as dropped duplicates"
    )
    assert [k["target"] for k in kills] == [target for target, _ in FAULTS] and job.running()


def restart_broker(provisioned: Provisioned, job: LocalFlinkJob, signals: Tail) -> str:
    """SIGKILL the broker, start it again on its data, and return once agent-events is whole again: either
    it rode the outage out, or it failed (it never restarts by itself here) and is started again from its
    newest retained checkpoint. Whole means it is RUNNING and its output advances again."""
    kafka = provisioned.kafka
    pid = kafka.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    kafka.stop()  # reaps it; the data stays
    kafka.start()
    seen = len(signals.records)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if not job.running():
            job.start(restore=True)
            job.wait_running(START_TIMEOUT)
            return (
                f"broker back on its data; agent-events failed meanwhile, restored from {job.restored_from}"
            )
        if len(signals.records) > seen and job.job_state() == "RUNNING":
            return "broker back on its data; agent-events rode it out"
        assert time.monotonic() < deadline, (
            f"agent-events neither failed nor wrote output within {START_TIMEOUT:.0f}s of the broker's "
            f"restart:\n{job.log_tail()}"
        )
        signals.poll(0.5)


def job_group(provisioned: Provisioned) -> str:
    from headwater.spec import app_flows

    (app,) = [a for a in provisioned.platform.apps if a.name == "agent-events"]
    return app_flows(provisioned.platform, app).group_id
