"""Traces from source to decision on the real broker, the real agent-events Flink job and the real gate process.

The sample producer's code sends raw events (each with the `traceparent` of its exported "produce" span);
agent-events turns them into signals (their header: the raw trace with the hop span id derived from the raw
record's position); the sample agents' code proposes two actions acting on one signal (a refund within its
rule, approved automatically; a credit limit change above it, approved by an approver whose decision record
carries its own traceparent); the gate process decides. Then, each read as the principal allowed to:
- every audit record of each action and its approved action's header carry the raw event's trace id;
- the exported span files hold a connected chain: produce -> (agent-events' derived hop) -> propose ->
  gate proposed -> evaluated -> [waiting -> decided ->] approved, parent ids linking each to the one before;
- `headwater actions trace` prints that chain.

And through the feature path: the real feature-aggregator job turns signals into windowed features, each
continuing the trace of its window's newest signal (a span id derived from that signal's position) and linking
the window's traces; an action proposed on a feature record traces raw event -> signal -> feature -> proposal
-> gate -> approved action, in the library's view and in `headwater actions trace`.

Prints: spans per action, bytes the traceparent header adds per record, features' links.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from opentelemetry.trace import set_span_in_context

from headwater import tracing
from headwater.action_gate import action_gate
from headwater.contracts import load_contracts
from headwater.contracts.serde import JsonSerializer
from headwater.local.action_flow import SignalFeed, SignalRef, sample_proposal, traced_proposal
from headwater.local.action_trace import trace_action
from headwater.local.approval_gate import LocalApprovalGate
from headwater.local.console import Topology
from headwater.local.process import stderr_progress
from headwater.local.producer import ProducerSettings, SampleProducer
from headwater.local.runtime import RUNTIME_FILE
from headwater.tracing import TraceParent, hop_traceparent

if TYPE_CHECKING:
    from conftest import Provisioned

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 240.0) -> T:
    """Poll until `probe` returns something (generous: the machine is shared and loaded)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = probe()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def read_keyed(
    conf: dict[str, Any], topic: str, keys: set[str]
) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    """Every committed record of `topic` whose key is one of `keys`: (value, headers) in order, per key."""
    consumer = Consumer(
        {
            **conf,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    out: dict[str, list[tuple[dict[str, Any], Any]]] = {k: [] for k in keys}
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        remaining = set(partitions)
        end = time.monotonic() + 60
        while remaining and time.monotonic() < end:
            for msg in consumer.consume(500, 0.5):
                if msg.error() is not None:
                    remaining.discard(msg.partition() or 0)
                    continue
                key = (msg.key() or b"").decode()
                if key in keys:
                    out[key].append((json.loads(msg.value() or b"{}"), msg.headers()))
    finally:
        consumer.close()
    return out


def record_header(conf: dict[str, Any], topic: str, partition: int, offset: int) -> str | None:
    """The `traceparent` header of the record at (topic, partition, offset)."""
    consumer = Consumer({**conf, "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        end = time.monotonic() + 60
        while time.monotonic() < end:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None and msg.offset() == offset:
                return tracing.header(msg.headers())
    finally:
        consumer.close()
    raise AssertionError(f"no record at {topic}/{partition}@{offset}")


def _trace_cli(action_id: str, state_dir: Path) -> list[str]:
    """`headwater actions trace <action_id>` as a user runs it: its output lines (it must exit 0)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "headwater_cli.main",
            "actions",
            "trace",
            action_id,
            f"--state-dir={state_dir}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ},
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()


@pytest.mark.timeout(900)
def test_one_trace_from_the_raw_event_to_the_approved_action(
    provisioned: Provisioned, contracts_registry: Any, agent_events_job: Any, cleanup: Any
) -> None:
    platform, kafka = provisioned.platform, provisioned.kafka
    state_dir = kafka.state_dir  # where the session's broker keeps its secrets: the CLI reads them from here
    traces = tracing.traces_dir(state_dir)
    topology = Topology.of(platform)
    gate = action_gate(platform)
    support = next(a for a in gate.agents if a.principal == "support-agent")
    billing = next(a for a in gate.agents if a.principal == "billing-agent")

    # The agents' view of signals, from the end of the topic, before anything is sent.
    feed = SignalFeed(platform, kafka)
    feed.start()
    cleanup.callback(feed.stop)
    assert feed.assigned.wait(60), "the signal feed did not get its partitions"

    # 1. Raw events from the sample producer's code, with its produce spans exported.
    schema = next(c.schema for c in load_contracts(platform) if c.topic == topology.raw)
    serializer = JsonSerializer(contracts_registry.client(topology.producer), topology.raw, schema)
    producer = SampleProducer(
        provisioned.config(topology.producer),
        topology.raw,
        serializer,
        ProducerSettings(malformed_share=0.0, duplicate_share=0.0, seed=7),
        state_dir=state_dir,
    )
    sent_before = {s.trace_id for s in tracing.read_spans(traces)} if traces.exists() else set()
    for _ in range(3):
        producer.send_one()
    assert producer.stop(flush_timeout=60) == 0
    assert producer.stats.as_dict()["delivered"] == 3
    produced = [
        s
        for s in tracing.read_spans(traces)
        if s.service == "sample-producer" and s.trace_id not in sent_before
    ]
    assert len(produced) == 3 and all(s.parent_span_id is None for s in produced)
    by_trace = {s.trace_id: s for s in produced}

    # 2. agent-events turns one into a signal carrying its trace (a hop span id from the raw position).
    def ours(ref: SignalRef) -> bool:
        tp = TraceParent.parse(ref.traceparent)
        return tp is not None and tp.trace_id in by_trace

    signal = wait_for("a signal of our raw events", lambda: feed.find(ours))
    signal_tp = TraceParent.parse(signal.traceparent)
    assert signal_tp is not None
    raw_span = by_trace[signal_tp.trace_id]
    a = raw_span.attributes
    raw_at = (
        str(a["messaging.destination.name"]),
        int(a["messaging.kafka.destination.partition"]),
        int(a["messaging.kafka.message.offset"]),
    )
    # The raw record on the broker (read as the platform's super user) carries its produce span's context.
    raw_header = record_header(
        provisioned.admin_config(**{"group.id": f"trace-test-{uuid.uuid4().hex[:6]}"}), *raw_at
    )
    raw_tp = TraceParent.parse(raw_header)
    assert raw_tp is not None and (raw_tp.trace_id, raw_tp.span_id) == (raw_span.trace_id, raw_span.span_id)
    assert signal.traceparent == hop_traceparent(raw_header, *raw_at)
    trace_id = raw_span.trace_id

    # 3. The sample agents' proposals acting on that signal, each with its propose span's header.
    rng = random.Random(3)
    run = uuid.uuid4().hex[:8]
    agents_tracing = tracing.tracer_provider("sample-agents", state_dir)
    tracer = agents_tracing.get_tracer("test")
    low = {
        **sample_proposal(support, gate, rng, high_risk=False),
        "action_id": f"trace-{run}-auto",
        "type": "refund",
        "target": "order",
        "scope": "single-order",
        "amount": 12.5,
        "currency": "EUR",
    }
    high = {
        **sample_proposal(billing, gate, rng, high_risk=True),
        "action_id": f"trace-{run}-human",
        "type": "credit_limit_change",
        "target": "customer",
        "scope": "single-account",
        "amount": 5000,
        "currency": "EUR",
    }
    proposals: dict[str, tuple[Any, dict[str, Any], Any]] = {}
    for agent, body in ((support, low), (billing, high)):
        body, headers, span = traced_proposal(tracer, agent, body, signal)
        assert body["context"]["trace_id"] == trace_id
        assert body["context"]["signals"] == [signal.as_context()]
        p = Producer(provisioned.config(agent.principal, **{"enable.idempotence": True}))
        p.produce(
            agent.proposed_topic,
            key=body["action_id"].encode(),
            value=json.dumps(body).encode(),
            headers=headers,
        )
        assert p.flush(60) == 0
        span.end()
        proposals[body["action_id"]] = (agent, body, headers)
    agents_tracing.shutdown()
    added = sum(len(k) + len(v) for k, v in proposals[low["action_id"]][2])

    # 4. The real gate process decides; an approver approves the held one (its decision has a trace too).
    local_gate = LocalApprovalGate(platform, kafka, state_dir, progress=stderr_progress("approval-gate"))
    local_gate.start()
    cleanup.callback(local_gate.stop)
    auditor = provisioned.config(gate.auditors[0], **{"group.id": gate.auditors[0]})
    ids = set(proposals)

    def audit() -> dict[str, list[tuple[dict[str, Any], Any]]]:
        return read_keyed(auditor, gate.audit_topic, ids)

    def waiting() -> dict[str, Any] | None:
        return next((r for r, _ in audit()[high["action_id"]] if r["step"] == "waiting"), None)

    # The approver sees the waiting step in the audit trail and continues its trace, as a page can.
    held = wait_for("the held action waiting", waiting)
    approver_tracing = tracing.tracer_provider("approvers", state_dir)
    decision_span = approver_tracing.get_tracer("test").start_span(
        "decide",
        context=tracing.extract([("traceparent", f"00-{held['trace_id']}-{held['span_id']}-01".encode())]),
    )
    decision = {
        "action_id": high["action_id"],
        "decision": "approve",
        "approver": "ana",
        "reason": "the customer's history supports it",
        "decided_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    p = Producer(provisioned.config(gate.approvers[0], **{"enable.idempotence": True}))
    p.produce(
        gate.decisions_topic,
        key=decision["action_id"].encode(),
        value=json.dumps(decision).encode(),
        headers=tracing.inject(set_span_in_context(decision_span)),
    )
    assert p.flush(60) == 0
    decision_span.end()
    approver_tracing.shutdown()

    def all_approved() -> dict[str, list[tuple[dict[str, Any], Any]]] | None:
        trails = audit()
        return trails if all(any(r["step"] == "approved" for r, _ in trails[i]) for i in ids) else None

    trails = wait_for("both actions approved", all_approved)
    local_gate.stop()

    # Every audit record of both actions carries the raw event's trace id (and a span id of its own).
    for action_id, trail in trails.items():
        steps = [r["step"] for r, _ in trail]
        assert steps[-1] == "approved", (action_id, steps)
        assert {r.get("trace_id") for r, _ in trail} == {trace_id}, (action_id, trail)
        assert len({r["span_id"] for r, _ in trail}) == len(trail)
    assert [r["step"] for r, _ in trails[low["action_id"]]] == ["proposed", "evaluated", "approved"]
    assert [r["step"] for r, _ in trails[high["action_id"]]] == [
        "proposed",
        "evaluated",
        "waiting",
        "decided",
        "approved",
    ]

    # The approved actions (read as their agents) carry the approval's span as their traceparent.
    for action_id, (agent, _, _) in proposals.items():
        approved = read_keyed(
            provisioned.config(agent.principal, **{"group.id": agent.group}),
            agent.approved_topic,
            {action_id},
        )
        ((_, headers),) = approved[action_id]
        tp = TraceParent.parse(tracing.header(headers))
        approval = next(r for r, _ in trails[action_id] if r["step"] == "approved")
        assert tp is not None and (tp.trace_id, tp.span_id) == (trace_id, approval["span_id"])

    # The exported spans link: produce <- hop (derived) <- propose <- gate steps, in order.
    spans = {s.span_id: s for s in tracing.read_spans(traces, trace_id)}
    for action_id, trail in trails.items():
        chain = [spans[r["span_id"]] for r, _ in trail]
        propose = spans[str(chain[0].parent_span_id)]
        assert propose.service == "sample-agents" and propose.attributes["action.id"] == action_id
        assert propose.parent_span_id == signal_tp.span_id
        for before, after in itertools.pairwise(chain):
            assert after.parent_span_id == before.span_id, (action_id, after.name)
        if action_id == high["action_id"]:
            decided = next(s for s in chain if s.name == "gate decided")
            assert decided.links == [
                {"trace_id": trace_id, "span_id": tracing.traceparent_of(decision_span)[36:52]}
            ]
        print(
            f"\n[traces] {action_id}: {1 + 1 + len(chain)} exported spans (produce, propose, {len(chain)} gate steps)"
        )
    print(f"[traces] traceparent header: {added} bytes added per record (name + value, each hop)")

    # The audit view of each decision, as the library returns it and as `headwater actions trace` prints it.
    view = trace_action(platform, kafka, state_dir, high["action_id"])
    assert view.trace_id == trace_id and view.problems == [] and view.broken_links() == []
    assert [h.kind for h in view.hops] == [
        "raw event",
        "signal",
        "proposal",
        "gate proposed",
        "gate evaluated",
        "gate waiting",
        "gate decided",
        "gate approved",
        "approved action",
    ]
    assert view.hops[0].span_id == raw_span.span_id
    runtime_file = state_dir / RUNTIME_FILE
    assert not runtime_file.exists(), "the session's broker dir has no runtime file of its own"
    runtime_file.write_text(json.dumps({"kafka": {"ports": dataclasses.asdict(kafka.ports)}}))
    cleanup.callback(runtime_file.unlink)
    for action_id in proposals:
        lines = _trace_cli(action_id, state_dir)
        assert lines[0] == f"action {action_id}  trace {trace_id}"
        assert lines[1].lstrip().startswith("raw event") and raw_span.span_id in lines[1]
        assert "signal" in lines[2] and f"{signal.topic}/{signal.partition}@{signal.offset}" in lines[2]
        assert any(line.lstrip().startswith("approved action") for line in lines)
        assert "  chain connected" in lines


@pytest.mark.timeout(900)
def test_an_action_taken_on_features_traces_back_through_the_feature_and_its_newest_signal(
    provisioned: Provisioned, contracts_registry: Any, agent_events_job: Any, cleanup: Any
) -> None:
    from headwater.local.flink import LocalFlinkJob
    from headwater.local.runtime import FLINK_START_TIMEOUT

    platform, kafka = provisioned.platform, provisioned.kafka
    state_dir = kafka.state_dir
    traces = tracing.traces_dir(state_dir)
    topology = Topology.of(platform)
    gate = action_gate(platform)
    support = next(a for a in gate.agents if a.principal == "support-agent")
    aggregator = next(
        a.name
        for a in platform.apps
        if topology.features in {f.topic for f in platform.principal(a.name).produces}
    )

    features = SignalFeed(platform, kafka, topic=topology.features)
    features.start()
    cleanup.callback(features.stop)
    assert features.assigned.wait(60), "the feature feed did not get its partitions"
    job = LocalFlinkJob(
        platform,
        aggregator,
        kafka,
        contracts_registry.url,
        state_dir,
        progress=stderr_progress(f"flink:{aggregator}"),
        restart_attempts=0,
        registry_user_info=contracts_registry.user_info(aggregator),
    )
    job.start(restore=False)
    cleanup.callback(lambda: job.stop(savepoint=False))
    job.wait_running(FLINK_START_TIMEOUT)

    # Raw events from the sample producer's code until a window of their signals closes (event time moves on
    # as later events come; the local stack's windows are 10 s).
    schema = next(c.schema for c in load_contracts(platform) if c.topic == topology.raw)
    serializer = JsonSerializer(contracts_registry.client(topology.producer), topology.raw, schema)
    producer = SampleProducer(
        provisioned.config(topology.producer),
        topology.raw,
        serializer,
        ProducerSettings(rate=5.0, malformed_share=0.0, duplicate_share=0.0, seed=11),
        state_dir=state_dir,
    )
    before = {s.trace_id for s in tracing.read_spans(traces)} if traces.exists() else set()

    def ours() -> set[str]:
        return {
            s.trace_id
            for s in tracing.read_spans(traces)
            if s.service == "sample-producer" and s.trace_id not in before
        }

    def feature_of_ours() -> SignalRef | None:
        mine = ours()

        def match(ref: SignalRef) -> bool:
            tp = TraceParent.parse(ref.traceparent)
            return tp is not None and tp.trace_id in mine

        return features.find(match)

    producer.start()
    try:
        feature = wait_for("a feature record continuing one of our traces", feature_of_ours, timeout=300)
    finally:
        assert producer.stop(flush_timeout=60) == 0
    feature_tp = TraceParent.parse(feature.traceparent)
    assert feature_tp is not None
    links = [
        TraceParent.parse(x) for x in (tracing.header(feature.headers, tracing.TRACELINKS) or "").split(",")
    ]
    assert links and all(links) and len(links) <= 16
    assert links[0] is not None and links[0].trace_id == feature_tp.trace_id  # the newest signal's, first
    assert len({tp.trace_id for tp in links if tp}) == len(links)
    print(
        f"\n[traces] feature {feature.topic}/{feature.partition}@{feature.offset} links {len(links)} trace(s)"
    )

    # An action proposed on that feature record, decided by the real gate (a refund within its rule).
    run = uuid.uuid4().hex[:8]
    agents_tracing = tracing.tracer_provider("sample-agents", state_dir)
    body = {
        **sample_proposal(support, gate, random.Random(5), high_risk=False),
        "action_id": f"trace-{run}-features",
        "type": "refund",
        "target": "order",
        "scope": "single-order",
        "amount": 9.5,
        "currency": "EUR",
    }
    body, headers, span = traced_proposal(agents_tracing.get_tracer("test"), support, body, None, feature)
    assert body["context"]["trace_id"] == feature_tp.trace_id
    assert body["context"]["features"] == feature.as_feature_context()
    p = Producer(provisioned.config(support.principal, **{"enable.idempotence": True}))
    p.produce(
        support.proposed_topic,
        key=body["action_id"].encode(),
        value=json.dumps(body).encode(),
        headers=headers,
    )
    assert p.flush(60) == 0
    span.end()
    agents_tracing.shutdown()

    local_gate = LocalApprovalGate(platform, kafka, state_dir, progress=stderr_progress("approval-gate"))
    local_gate.start()
    cleanup.callback(local_gate.stop)
    auditor = provisioned.config(gate.auditors[0], **{"group.id": gate.auditors[0]})
    wait_for(
        "the action approved",
        lambda: any(
            r["step"] == "approved"
            for r, _ in read_keyed(auditor, gate.audit_topic, {body["action_id"]})[body["action_id"]]
        ),
    )
    local_gate.stop()

    view = trace_action(platform, kafka, state_dir, body["action_id"])
    assert view.trace_id == feature_tp.trace_id and view.problems == [] and view.broken_links() == []
    assert [h.kind for h in view.hops] == [
        "raw event",
        "signal",
        "feature",
        "proposal",
        "gate proposed",
        "gate evaluated",
        "gate approved",
        "approved action",
    ]
    raw, signal, feat = view.hops[:3]
    assert feat.where == f"{feature.topic}/{feature.partition}@{feature.offset}"
    assert feat.span_id == feature_tp.span_id and feat.parent_span_id == signal.span_id
    # The feature's span id is derived from its newest signal's position; that signal's from its raw record's.
    topic, at = signal.where.split("/")
    partition, offset = at.split("@")
    assert tracing.hop_span_id(topic, int(partition), int(offset)) == feature_tp.span_id
    assert links[0].span_id == signal.span_id
    topic, at = raw.where.split("/")
    partition, offset = at.split("@")
    assert tracing.hop_span_id(topic, int(partition), int(offset)) == signal.span_id
    assert [tp.trace_id for tp in view.feature_links] == [tp.trace_id for tp in links if tp]

    runtime_file = state_dir / RUNTIME_FILE
    runtime_file.write_text(json.dumps({"kafka": {"ports": dataclasses.asdict(kafka.ports)}}))
    cleanup.callback(lambda: runtime_file.unlink(missing_ok=True))
    lines = _trace_cli(body["action_id"], state_dir)
    assert lines[1].lstrip().startswith("raw event") and lines[2].lstrip().startswith("signal")
    assert (
        lines[3].lstrip().startswith("feature") and feat.where in lines[3] and feature_tp.span_id in lines[3]
    )
    assert "  chain connected" in lines
    assert any(line.strip().startswith(f"the feature links {len(links)} trace") for line in lines)
