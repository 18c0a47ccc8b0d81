"""The approval gate on the real broker, as its real process, killed mid-stream twice.

The agents propose a mix of actions through their own principals (approved by rule; held for a human who
approves or rejects; held and left to expire, directly or after an escalation; breaking the contract;
retried with the same id); an approver (the approvers' principal) decides the held ones it is meant to as it
sees them waiting in the audit trail, and sometimes decides twice. Meanwhile the gate is SIGKILLed twice and
restarted. At the end, read `read_committed` as each reader's own principal: every proposal has exactly one
terminal audit record, and the one its plan says; no action id reaches an agent's approved topic twice, nor
another agent's topic; every record the gate wrote keeps its topic's contract.

The SLAs come from a copy of the catalog with shorter approval windows (seconds instead of minutes), so
expiries happen within the test; everything else (topics, principals, ACLs) is the local stack's.

Prints: auto-approval latency (proposal produced -> approved action visible to its agent) and decision ->
approved latency, p50/p99, in a steady phase and in the phase with the kills, and the gate's restart times.
"""

from __future__ import annotations

import copy
import json
import random
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from headwater.action_gate import gate_description
from headwater.config import CATALOG_DIR, load_platform, read_yaml
from headwater.local.approval_gate import LocalApprovalGate
from headwater.local.process import stderr_progress
from headwater.spec import ActionGate

if TYPE_CHECKING:
    from conftest import Provisioned

# Approval windows short enough to expire within the test, long enough that a human decision made while
# the gate is down for a restart (about 10 s: a new process, its changelog, a group rejoin) is still in time.
TEST_SLAS = {
    "refund": {"approvalSla": "3s", "escalationSla": "3s"},  # > 50: escalated, then expired
    "account_note": {"approvalSla": "5s"},  # not on a customer: expired
    "account_close": {"approvalSla": "3m"},  # always a human: decided
    "credit_limit_change": {"approvalSla": "3m"},  # > 200: decided
}


def _test_description() -> dict[str, Any]:
    catalog = copy.deepcopy(read_yaml(CATALOG_DIR / "catalog.yaml"))
    for action_type, slas in TEST_SLAS.items():
        catalog["actionGate"]["riskPolicies"][action_type].update(slas)
    return gate_description(load_platform("local", catalog=catalog))


@dataclass
class Planned:
    action_id: str
    agent: str
    body: dict[str, Any]
    expect: str  # auto, approve, reject, expire, escalate, invalid
    phase: str
    produced_at: float = 0.0


def plan(run: str, phase: str, count: int) -> list[Planned]:
    """A reproducible mix: half approved by rule, a quarter for a human, the rest expiring or malformed."""
    rng = random.Random(f"{run}-{phase}")
    out = []
    for i in range(count):
        action_id = f"{run}-{phase}-{i:04d}"
        kind = i % 10
        body: dict[str, Any] = {
            "action_id": action_id,
            "summary": f"planned {phase} action {i}",
            "proposed_at": "2026-11-29T04:00:00Z",
            "context": {"signals": [{"event_id": f"e-{i}"}], "features": {"error_rate": rng.random()}},
        }
        if kind in (0, 1):
            agent, expect = "support-agent", "auto"
            body.update(type="refund", target="order", scope="single-order", amount=rng.randint(1, 50))
        elif kind == 2:
            agent, expect = "support-agent", "auto"
            body.update(type="account_note", target="customer", scope="account")
        elif kind in (3, 4):
            agent, expect = "billing-agent", "auto"
            body.update(type="credit_limit_change", target="customer", scope="single-account", amount=150)
        elif kind == 5:
            agent, expect = "support-agent", "approve"
            body.update(type="account_close", target="customer", scope="account")
        elif kind == 6:
            agent, expect = "billing-agent", "approve"
            body.update(type="credit_limit_change", target="customer", scope="single-account", amount=900)
        elif kind == 7:
            agent, expect = "billing-agent", "reject"
            body.update(type="credit_limit_change", target="customer", scope="single-account", amount=5000)
        elif kind == 8:
            agent, expect = "support-agent", "expire"
            body.update(type="account_note", target="order", scope="account")
        else:
            agent, expect = "support-agent", "escalate"
            body.update(type="refund", target="order", scope="single-order", amount=80)
        if i % 23 == 11:
            expect = "invalid"
            del body["summary"]
        out.append(Planned(action_id, agent, body, expect, phase))
    return out


@dataclass
class Seen:
    """What a reader received: (key, value, receive time) in order."""

    records: list[tuple[str, dict[str, Any], float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> list[tuple[str, dict[str, Any], float, str]]:
        with self.lock:
            return list(self.records)


class Reader(threading.Thread):
    """A read_committed consumer in the background, as one principal, in its declared group."""

    def __init__(
        self,
        conf: dict[str, Any],
        topics: list[str],
        on_record: Callable[[str, dict[str, Any], str], None] | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.conf = {
            **conf,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,  # as an executor waiting for its actions would (the default waits 500 ms)
        }
        self.topics = topics
        self.seen = Seen()
        self.on_record = on_record
        self.stopping = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        consumer = Consumer(self.conf)
        try:
            consumer.subscribe(self.topics)
            while not self.stopping.is_set():
                for msg in consumer.consume(200, 0.02):
                    error = msg.error()
                    if error is not None:
                        if error.code() != KafkaError._PARTITION_EOF:
                            self.errors.append(str(error))
                        continue
                    now = time.time()
                    key, value, topic = (
                        (msg.key() or b"").decode(),
                        json.loads(msg.value() or b"null"),
                        str(msg.topic()),
                    )
                    with self.seen.lock:
                        self.seen.records.append((key, value, now, topic))
                    if self.on_record is not None:
                        self.on_record(key, value, topic)
        finally:
            consumer.close()


def _proposed_ids(provisioned: Provisioned, topics: list[str]) -> set[str]:
    """Every action id ever proposed on `topics` (read to their current ends, as the platform's admin)."""
    consumer = Consumer(
        provisioned.admin_config(
            **{"group.id": f"proposed-ids-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False}
        )
    )
    try:
        parts = []
        for topic in topics:
            for partition in consumer.list_topics(topic, timeout=30).topics[topic].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
                if high > low:
                    parts.append((TopicPartition(topic, partition, low), high))
        consumer.assign([tp for tp, _ in parts])
        ends = {(tp.topic, tp.partition): high for tp, high in parts}
        ids: set[str] = set()
        deadline = time.monotonic() + 120
        while ends and time.monotonic() < deadline:
            for msg in consumer.consume(500, 1.0):
                if msg.error() is None:
                    ids.add((msg.key() or b"").decode())
            # Read to the end once the position passes it (a transaction marker may be the last offset).
            for tp in consumer.position([TopicPartition(t, p) for t, p in ends]):
                if tp.offset >= ends[(tp.topic, tp.partition)]:
                    del ends[(tp.topic, tp.partition)]
        assert not ends, f"could not read the proposals to their ends: {ends}"
        return ids
    finally:
        consumer.close()


def quantiles(values: list[float]) -> str:
    if len(values) < 2:
        return f"n={len(values)} (too few)"
    q = statistics.quantiles(values, n=100, method="inclusive")
    return f"p50 {q[49] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms (n={len(values)})"


@pytest.fixture
def gate(provisioned: Provisioned, tmp_path: Path) -> Iterator[LocalApprovalGate]:
    g = LocalApprovalGate(
        provisioned.platform,
        provisioned.kafka,
        tmp_path,
        progress=stderr_progress("approval-gate"),
        description=_test_description(),
    )
    try:
        yield g
    finally:
        g.stop()


def test_every_proposal_ends_once_through_two_kills(
    provisioned: Provisioned, gate: LocalApprovalGate, tmp_path: Path
) -> None:
    spec: ActionGate | None = provisioned.platform.action_gate
    assert spec is not None
    agents = {a.principal: a for a in spec.agents}
    run = uuid.uuid4().hex[:8]
    contracts = {
        t.name: json.loads((CATALOG_DIR / str(t.schema)).read_text())
        for t in provisioned.platform.topics
        if t.name in spec.topics
    }

    # ---- readers, each as its own principal ---------------------------------------------------------------
    approver_conf = provisioned.config(spec.approvers[0], **{"group.id": spec.approvers[0]})
    decisions = Producer({**provisioned.config(spec.approvers[0]), "enable.idempotence": True})
    decided_at: dict[str, float] = {}
    expected_decision: dict[str, str] = {}
    decide_lock = threading.Lock()

    def approver(key: str, value: dict[str, Any], topic: str) -> None:
        # The approvers' side: decide what the plan says to decide, as soon as it is seen waiting.
        if value.get("step") != "waiting" or key not in expected_decision:
            return
        with decide_lock:
            if key in decided_at:
                return
            verdict = expected_decision[key]
            body = {
                "action_id": key,
                "decision": verdict,
                "approver": "ana@example.org",
                "reason": f"{verdict}d after checking the customer's history",
                "decided_at": "2026-11-29T04:01:00Z",
            }
            decided_at[key] = time.time()
            decisions.produce(spec.decisions_topic, key=key, value=json.dumps(body).encode())
            if int(key.rsplit("-", 1)[1]) % 4 == 1:  # a second click: must change nothing
                again = {**body, "decision": "approve", "reason": "clicked twice"}
                decisions.produce(spec.decisions_topic, key=key, value=json.dumps(again).encode())
            decisions.poll(0)

    approvers = Reader(approver_conf, [spec.audit_topic], approver)
    auditor = Reader(
        provisioned.config(spec.auditors[0], **{"group.id": spec.auditors[0]}), [spec.audit_topic]
    )
    executors = {
        name: Reader(provisioned.config(name, **{"group.id": a.group}), [a.approved_topic])
        for name, a in agents.items()
    }
    readers = [approvers, auditor, *executors.values()]
    for r in readers:
        r.start()
    proposers = {name: Producer({**provisioned.config(name), "enable.idempotence": True}) for name in agents}

    def propose(items: list[Planned], rate: float, duplicates: bool) -> None:
        for i, item in enumerate(items):
            producer = proposers[item.agent]
            item.produced_at = time.time()
            value = json.dumps(item.body).encode()
            producer.produce(agents[item.agent].proposed_topic, key=item.action_id.encode(), value=value)
            if duplicates and i % 20 == 3:  # the agent retries: same id, same body
                producer.produce(agents[item.agent].proposed_topic, key=item.action_id.encode(), value=value)
            producer.poll(0)
            time.sleep(1 / rate)
        for p in proposers.values():
            assert p.flush(30) == 0

    def terminal_by_id() -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for key, value, _, _ in auditor.seen.snapshot():
            if value.get("terminal"):
                out.setdefault(key, []).append(value)
        return out

    def wait_terminal(items: list[Planned], timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            done = terminal_by_id()
            if all(i.action_id in done for i in items):
                return
            time.sleep(0.2)
        missing = [i.action_id for i in items if i.action_id not in terminal_by_id()]
        raise AssertionError(
            f"{len(missing)} proposals without a terminal audit record, e.g. {missing[:5]}\n{gate.log_tail()}"
        )

    try:
        gate.start()
        # Warm-up, not in the figures: every client connected (a new broker's SCRAM credentials take a moment
        # to be usable), a transaction committed and read by every reader.
        warm = [i for i in plan(run, "w", 10) if i.expect == "auto"]
        propose(warm, rate=20, duplicates=False)
        wait_terminal(warm, 60)
        # ---- phase A: steady, for the figures --------------------------------------------------------------
        steady = plan(run, "a", 100)
        for p in steady:
            if p.expect in ("approve", "reject"):
                expected_decision[p.action_id] = p.expect
        propose(steady, rate=40, duplicates=False)
        wait_terminal([p for p in steady if p.expect in ("auto", "approve", "reject", "invalid")], 60)

        # ---- phase B: the same mix with retries, and the gate killed twice mid-stream -----------------------
        chaos = plan(run, "b", 300)
        for p in chaos:
            if p.expect in ("approve", "reject"):
                expected_decision[p.action_id] = p.expect
        producing = threading.Thread(target=propose, args=(chaos, 20, True), daemon=True)
        producing.start()
        restarts = []
        for delay in (3.0, 2.0):
            time.sleep(delay)
            assert producing.is_alive(), "the proposals were all written before the kill: not mid-stream"
            gate.kill()
            began = time.monotonic()
            gate.start()
            restarts.append(time.monotonic() - began)
        producing.join(60)
        assert not producing.is_alive()
        wait_terminal(warm + steady + chaos, 120)
        time.sleep(2.0)  # anything written twice would arrive by now
    finally:
        for r in readers:
            r.stopping.set()
        for r in readers:
            r.join(15)
        decisions.flush(10)

    for r in readers:
        assert not r.errors, r.errors
    log = gate.log_file.read_text(errors="replace")
    restored = [line for line in log.splitlines() if "restored" in line and "changelog records" in line]
    assert len(restored) == 3, restored  # the first start and two restarts
    assert any(" 0 open actions" not in line for line in restored[1:]), "no kill found actions open"

    # ---- exactly one terminal record per proposal, the one its plan says -----------------------------------
    items = warm + steady + chaos
    terminal = terminal_by_id()
    audit = auditor.seen.snapshot()
    by_id: dict[str, list[dict[str, Any]]] = {}
    for key, value, _, _ in audit:
        by_id.setdefault(key, []).append(value)
    outcome = {
        "auto": "approved",
        "approve": "approved",
        "reject": "rejected",
        "expire": "expired",
        "escalate": "expired",
        "invalid": "rejected",
    }
    wrong = []
    for item in items:
        records = terminal[item.action_id]
        if len(records) != 1 or records[0]["step"] != outcome[item.expect]:
            wrong.append((item.action_id, item.expect, [r["step"] for r in records]))
            continue
        actor, reason = records[0]["actor"], records[0].get("reason", "")
        steps = [r["step"] for r in by_id[item.action_id]]
        if item.expect == "auto" and (
            not actor.startswith("rule:") or steps[:3] != ["proposed", "evaluated", "approved"]
        ):
            wrong.append((item.action_id, item.expect, steps))
        if item.expect in ("approve", "reject") and (
            actor != "approver:ana@example.org" or "decided" not in steps
        ):
            wrong.append((item.action_id, item.expect, steps))
        if item.expect == "escalate" and steps.index("escalated") > steps.index("expired"):
            wrong.append((item.action_id, item.expect, steps))
        if item.expect == "expire" and "escalated" in steps:
            wrong.append((item.action_id, item.expect, steps))
        if item.expect == "invalid" and not reason.startswith("contract: "):
            wrong.append((item.action_id, item.expect, reason))
    assert not wrong, f"{len(wrong)} proposals ended wrongly, e.g. {wrong[:5]}"
    # The gate invents nothing: every terminal record is for an action this run proposed, or for one an
    # earlier test of the session proposed on the same broker (its sample agents' leftovers).
    ours = {i.action_id for i in items}
    earlier = _proposed_ids(provisioned, [a.proposed_topic for a in spec.agents]) - ours
    assert {k for k in terminal if k.startswith(f"{run}-")} == ours
    foreign = set(terminal) - ours
    assert foreign <= earlier, (
        f"terminal records for actions nobody proposed: {sorted(foreign - earlier)[:5]}"
    )

    # Retries and second clicks were seen and ignored, never approved again.
    ignored = [v for _, v, _, _ in audit if v["step"] == "ignored"]
    assert any(
        "decided once" in v.get("reason", "") and v.get("actor", "").startswith("approver:") for v in ignored
    )
    assert any("already proposed" in v.get("reason", "") for v in ignored)

    # ---- each approved action reaches its own agent's executor once ---------------------------------------
    expected_approved = {i.action_id: i.agent for i in items if outcome[i.expect] == "approved"}
    delivered: dict[str, list[str]] = {}
    for name, reader in executors.items():
        for key, value, _, topic in reader.seen.snapshot():
            assert topic == agents[name].approved_topic
            assert value["agent"] == name, (key, value["agent"], name)
            delivered.setdefault(key, []).append(name)
    twice = {k: v for k, v in delivered.items() if len(v) != 1}
    assert not twice, f"approved more than once: {list(twice.items())[:5]}"
    assert {k: v[0] for k, v in delivered.items() if k not in earlier} == expected_approved

    # ---- every record the gate wrote keeps its contract --------------------------------------------------
    for written_to, written in [(spec.audit_topic, audit)] + [
        (agents[n].approved_topic, r.seen.snapshot()) for n, r in executors.items()
    ]:
        validator = jsonschema.Draft7Validator(contracts[written_to])
        for _, value, _, _ in written:
            validator.validate(value)

    # ---- figures ------------------------------------------------------------------------------------------
    approved_seen = {key: at for reader in executors.values() for key, _, at, _ in reader.seen.snapshot()}
    for phase, label in (("a", "steady"), ("b", "two kills")):
        auto = [
            approved_seen[i.action_id] - i.produced_at
            for i in items
            if i.phase == phase and i.expect == "auto"
        ]
        human = [
            approved_seen[i.action_id] - decided_at[i.action_id]
            for i in items
            if i.phase == phase and i.expect == "approve"
        ]
        print(
            f"\napproval gate ({label}): auto-approval latency {quantiles(auto)}; decision -> approved {quantiles(human)}"
        )
    counts = {k: sum(1 for i in items if i.expect == k) for k in outcome}
    print(
        f"approval gate: {len(items)} proposals {counts}, {len(audit)} audit records, "
        f"{len(approved_seen)} approved; restarts after SIGKILL ready in "
        + ", ".join(f"{s:.1f}s" for s in restarts)
    )
