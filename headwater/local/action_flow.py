"""The action path on this machine: the approval gate, sample agents proposing actions, and the pending
approvals as the console shows them.

- the gate (`LocalApprovalGate`) as the catalog's gate principal, under `Supervised`;
- `SampleAgents`: each agent of `catalog.actionGate` proposes, as its own principal on its own topic, a mix of
  actions of the types it may propose: most within their type's rule (approved automatically), the rest above
  an amount, outside a scope or of a type a human always decides (held for an approver until their SLA);
  each proposal acts on the newest signal or, every other one when there is one, on the newest feature record
  (`SignalFeed`, read as the agents read signals and features): its context names the record and its trace,
  and its `traceparent` header is the agent's "propose" span, a child of the record's (exported to
  `<state>/traces/sample-agents.jsonl`);
- `ApprovalsView`: the audit trail read `read_committed` as the catalog's auditor: what is pending (with the
  time left), and how many were approved by rule or by people, rejected or expired.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaError, Message, Producer, TopicPartition
from opentelemetry.trace import Span, SpanKind, Tracer, format_trace_id, set_span_in_context

from headwater import tracing
from headwater.action_gate import action_gate
from headwater.local.approval_gate import LocalApprovalGate
from headwater.local.approvers import LocalApproversPage
from headwater.local.console import Topology
from headwater.local.kafka import LocalKafka
from headwater.local.process import Progress, stderr_progress
from headwater.local.provision import client_config
from headwater.spec import ActionGate, GateAgent, Platform, RiskPolicy

HIGH_RISK_SHARE = 0.3
FEATURE_SHARE = 0.5  # of the proposals, those acting on a feature record (when one has come)
AGENTS_SERVICE = "sample-agents"


@dataclass(frozen=True)
class SignalRef:
    """Where a signal (or feature) record is, its key (the agent or entity id) and the trace context its
    headers carry."""

    topic: str
    partition: int
    offset: int
    key: str | None
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def traceparent(self) -> str | None:
        return tracing.header(self.headers)

    def as_context(self) -> dict[str, Any]:
        out: dict[str, Any] = {"topic": self.topic, "partition": self.partition, "offset": self.offset}
        if self.key is not None:
            out["agent_id"] = self.key
        return out

    def as_feature_context(self) -> dict[str, Any]:
        """The proposal's `context.features` when it acted on this feature record."""
        out: dict[str, Any] = {"topic": self.topic, "partition": self.partition, "offset": self.offset}
        if self.key is not None:
            out["entity_id"] = self.key
        return out

    @classmethod
    def of(cls, msg: Message) -> SignalRef:
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        assert topic is not None and partition is not None and offset is not None
        key = msg.key()
        raw = msg.headers() or []
        pairs = list(raw.items()) if isinstance(raw, dict) else list(raw)
        headers = tuple((k, v) for k, v in pairs if isinstance(v, bytes))
        return cls(topic, partition, offset, key.decode("utf-8", "replace") if key else None, headers)


class SignalFeed(threading.Thread):
    """The newest signals (or, `topic`, feature records), read as the agents read them (the catalog's reader
    of signals and features, committed records only, from the end of the topic at start, no offsets
    committed): where each is and its trace context."""

    def __init__(
        self,
        platform: Platform,
        kafka: LocalKafka,
        client_logger: logging.Logger | None = None,
        keep: int = 200,
        topic: str | None = None,
    ) -> None:
        topology = Topology.of(platform)
        self.topic = topic or topology.signals
        super().__init__(name=f"feed-{self.topic}", daemon=True)
        self.conf = {
            **client_config(kafka, topology.reader),
            "group.id": dict(topology.reader_groups).get(self.topic, topology.reader),
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            **({"logger": client_logger} if client_logger is not None else {}),
        }
        self.recent: deque[SignalRef] = deque(maxlen=keep)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.assigned = threading.Event()

    def run(self) -> None:
        consumer = Consumer(self.conf)
        try:
            partitions = consumer.list_topics(self.topic, timeout=30).topics[self.topic].partitions
            consumer.assign([TopicPartition(self.topic, p, OFFSET_END) for p in sorted(partitions)])
            self.assigned.set()
            while not self.stopping.is_set():
                for msg in consumer.consume(200, 0.2):
                    if msg.error() is None:
                        with self.lock:
                            self.recent.append(SignalRef.of(msg))
        finally:
            consumer.close()

    def take(self) -> SignalRef | None:
        """The newest signal not taken yet, if any."""
        with self.lock:
            return self.recent.pop() if self.recent else None

    def find(self, match: Callable[[SignalRef], bool]) -> SignalRef | None:
        with self.lock:
            return next((s for s in self.recent if match(s)), None)

    def stop(self, grace: float | None = None) -> None:
        self.stopping.set()
        self.join(10 if grace is None else grace)


def sample_proposal(
    agent: GateAgent, gate: ActionGate, rng: random.Random, high_risk: bool
) -> dict[str, Any]:
    """One proposal of a type the agent may propose: within its type's rule, or (high_risk) outside it."""
    action_type = rng.choice(agent.action_types)
    policy = gate.policy(action_type)
    assert policy is not None, "the loader checks every agent's types against the policies"
    body: dict[str, Any] = {
        "action_id": f"{agent.principal}-{uuid.uuid4().hex[:12]}",
        "type": action_type,
        "target": _pick(policy.targets, "account", rng),
        "scope": _pick(policy.scopes, "account", rng),
        "summary": f"sample {action_type} from {agent.principal}",
        "proposed_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "context": {"signals": [{"event_id": f"sample-{rng.randrange(10**6)}"}], "features": {}},
    }
    if policy.max_amount is not None:
        low = round(rng.uniform(1, policy.max_amount), 2)
        body["amount"] = round(policy.max_amount * rng.uniform(1.5, 20), 2) if high_risk else low
        body["currency"] = "EUR"
    elif high_risk and not policy.always_human:
        body["target"] = "all-customers"  # outside any declared target
    return body


def traced_proposal(
    tracer: Tracer,
    agent: GateAgent,
    body: dict[str, Any],
    signal: SignalRef | None,
    feature: SignalRef | None = None,
) -> tuple[dict[str, Any], tracing.ProducedHeaders, Span]:
    """The proposal acting on `signal` or on a `feature` record: its context names the record and the trace
    (the feature's continues its window's newest signal's); returns the body, the headers to send it with
    (the "propose" span's traceparent, a child of the record's) and the span (end it once sent)."""
    acted_on = feature if feature is not None else signal
    parent = tracing.extract(acted_on.headers) if acted_on is not None else None
    attributes: dict[str, str | int] = {
        "messaging.system": "kafka",
        "messaging.destination.name": agent.proposed_topic,
        "action.id": body["action_id"],
        "action.type": body["type"],
        "action.agent": agent.principal,
    }
    if signal is not None:
        attributes.update(
            {
                "signal.topic": signal.topic,
                "signal.partition": signal.partition,
                "signal.offset": signal.offset,
            }
        )
    if feature is not None:
        attributes.update(
            {
                "feature.topic": feature.topic,
                "feature.partition": feature.partition,
                "feature.offset": feature.offset,
            }
        )
    span = tracer.start_span(
        f"propose {body['type']}", context=parent, kind=SpanKind.PRODUCER, attributes=attributes
    )
    context = dict(body.get("context") or {})
    if signal is not None:
        context["signals"] = [signal.as_context()]
    if feature is not None:
        context["features"] = feature.as_feature_context()
    context["trace_id"] = format_trace_id(span.get_span_context().trace_id)
    return {**body, "context": context}, tracing.inject(set_span_in_context(span)), span


def _ender(span: Span) -> Callable[[KafkaError | None, Message], None]:
    """A delivery callback that ends `span` (the propose span lasts until the broker has the record)."""
    return lambda err, msg: span.end()


def _pick(allowed: tuple[str, ...], fallback: str, rng: random.Random) -> str:
    return rng.choice(allowed) if allowed else fallback


class SampleAgents(threading.Thread):
    """Every agent proposes, as itself, `rate` actions per second in total (a share of them high-risk)."""

    def __init__(
        self,
        platform: Platform,
        kafka: LocalKafka,
        rate: float = 0.5,
        seed: int | None = None,
        client_logger: logging.Logger | None = None,
        *,
        signals: SignalFeed | None = None,
        features: SignalFeed | None = None,
        state_dir: Path | None = None,
    ) -> None:
        """`signals`: the feed each proposal takes its signal from (none: proposals act on no signal);
        `features`: the feed of feature records a share of them acts on instead (FEATURE_SHARE);
        `state_dir`: where the "propose" spans are exported (`<state_dir>/traces/`)."""
        super().__init__(name="sample-agents", daemon=True)
        self.signals = signals
        self.features = features
        self.tracing = tracing.tracer_provider(AGENTS_SERVICE, state_dir)
        self.tracer = self.tracing.get_tracer("headwater.local.action_flow")
        self.gate = action_gate(platform)
        self.kafka = kafka
        self.rate = rate
        self.rng = random.Random(seed)
        self.stopping = threading.Event()
        self.sent = 0
        self.logged = {"logger": client_logger} if client_logger is not None else {}
        self.flush_timeout = 5.0

    def run(self) -> None:
        producers = {
            a.principal: Producer(
                {**client_config(self.kafka, a.principal), "enable.idempotence": True, **self.logged}
            )
            for a in self.gate.agents
        }
        try:
            while not self.stopping.wait(1 / self.rate):
                agent = self.rng.choice(self.gate.agents)
                body = sample_proposal(agent, self.gate, self.rng, self.rng.random() < HIGH_RISK_SHARE)
                feature = (
                    self.features.take()
                    if self.features is not None and self.rng.random() < FEATURE_SHARE
                    else None
                )
                signal = self.signals.take() if self.signals is not None and feature is None else None
                body, headers, span = traced_proposal(self.tracer, agent, body, signal, feature)
                producer = producers[agent.principal]
                producer.produce(
                    agent.proposed_topic,
                    key=body["action_id"].encode(),
                    value=json.dumps(body).encode(),
                    headers=headers,
                    on_delivery=_ender(span),
                )
                producer.poll(0)
                self.sent += 1
        finally:
            for p in producers.values():  # `flush_timeout` in all
                p.flush(self.flush_timeout / len(producers))
            self.tracing.shutdown()

    def stop(self, grace: float | None = None) -> None:
        """Stop proposing; queued proposals get `grace` seconds (default 5) to be delivered."""
        if grace is not None:
            self.flush_timeout = grace
        self.stopping.set()
        self.join(self.flush_timeout + 5)


@dataclass
class Pending:
    action_id: str
    agent: str
    action_type: str
    amount: float | None
    deadline: datetime | None


@dataclass
class ApprovalsState:
    pending: dict[str, Pending] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    proposed: int = 0


class ApprovalsView(threading.Thread):
    """The audit trail as the auditor reads it: pending approvals and outcomes, since the topic began."""

    def __init__(
        self, platform: Platform, kafka: LocalKafka, client_logger: logging.Logger | None = None
    ) -> None:
        super().__init__(name="approvals-view", daemon=True)
        gate = action_gate(platform)
        if not gate.auditors:
            raise ValueError("catalog.actionGate declares no auditor to read the audit trail as")
        self.topic = gate.audit_topic
        self.conf = {
            **client_config(kafka, gate.auditors[0]),
            "group.id": gate.auditors[0],
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **({"logger": client_logger} if client_logger is not None else {}),
        }
        self.state = ApprovalsState()
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def run(self) -> None:
        consumer = Consumer(self.conf)
        try:
            consumer.subscribe([self.topic])
            while not self.stopping.is_set():
                for msg in consumer.consume(200, 0.2):
                    error = msg.error()
                    if error is not None or msg.value() is None:
                        if error is not None and error.code() != KafkaError._PARTITION_EOF:
                            time.sleep(0.5)
                        continue
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        self.apply(json.loads(msg.value() or b"{}"))
        finally:
            consumer.close()

    def apply(self, record: dict[str, Any]) -> None:
        step, action_id = record["step"], record["action_id"]
        with self.lock:
            if step == "proposed":
                self.state.proposed += 1
            elif step in ("waiting", "escalated"):
                proposal = record.get("proposal") or {}
                previous = self.state.pending.get(action_id)
                deadline = record.get("deadline")
                self.state.pending[action_id] = Pending(
                    action_id,
                    record.get("agent", ""),
                    record.get("type", "") or (previous.action_type if previous else ""),
                    proposal.get("amount", previous.amount if previous else None),
                    datetime.fromisoformat(deadline.replace("Z", "+00:00")) if deadline else None,
                )
            elif record.get("terminal"):
                self.state.pending.pop(action_id, None)
                by_rule = step == "approved" and str(record.get("actor", "")).startswith("rule:")
                self.state.outcomes["approved by rule" if by_rule else step] += 1

    def lines(self, limit: int = 3) -> list[str]:
        now = datetime.now(UTC)
        with self.lock:
            pending = sorted(self.state.pending.values(), key=lambda p: p.deadline or now)
            o = self.state.outcomes
            head = (
                f"approvals: {self.state.proposed} proposed, {len(pending)} pending, "
                f"{o['approved by rule']} approved by rule, {o['approved']} by people, {o['rejected']} rejected, "
                f"{o['expired']} expired"
            )
        out = [head]
        for p in pending[:limit]:
            left = (
                "-"
                if p.deadline is None
                else f"{max(0.0, (p.deadline - now).total_seconds()) / 60:.0f} min left"
            )
            amount = "" if p.amount is None else f" {p.amount:g}"
            out.append(f"  pending {p.action_id} {p.agent} {p.action_type}{amount} ({left})")
        return out

    def stop(self, grace: float | None = None) -> None:
        self.stopping.set()
        self.join(10 if grace is None else grace)  # a daemon thread: never holds the process up


class LocalActionFlow:
    """The gate, the approvers' page, the sample agents and the pending-approvals view, started and stopped
    together."""

    def __init__(
        self,
        platform: Platform,
        kafka: LocalKafka,
        state_dir: Path,
        *,
        agents: bool = True,
        rate: float = 0.5,
        progress: Progress | None = None,
        client_logger: logging.Logger | None = None,
    ) -> None:
        """`client_logger`: where the agents' and the view's Kafka clients log (else librdkafka's stderr)."""
        self.platform = platform
        self.gate = LocalApprovalGate(
            platform, kafka, state_dir, progress=progress or stderr_progress("approval-gate")
        )
        self.page = LocalApproversPage(
            platform, kafka, state_dir, progress=progress or stderr_progress("approvers-page")
        )
        self.view = ApprovalsView(platform, kafka, client_logger)
        self.signals = SignalFeed(platform, kafka, client_logger) if agents else None
        features = Topology.of(platform).features
        self.features = SignalFeed(platform, kafka, client_logger, topic=features) if agents else None
        self.agents = (
            SampleAgents(
                platform,
                kafka,
                rate,
                client_logger=client_logger,
                signals=self.signals,
                features=self.features,
                state_dir=state_dir,
            )
            if agents
            else None
        )

    @property
    def policies(self) -> tuple[RiskPolicy, ...]:
        return action_gate(self.platform).policies

    def start(self) -> None:
        self.gate.start()
        self.page.start()
        self.view.start()
        if self.signals is not None:
            self.signals.start()
        if self.features is not None:
            self.features.start()
        if self.agents is not None:
            self.agents.start()

    def lines(self) -> list[str]:
        gate = f"approval gate  pid {self.gate.pid}  (log {self.gate.log_file})"
        return [gate, *self.view.lines(), *self.page.lines()]

    def dead(self) -> list[str]:
        if self.gate.pid is not None and not self.gate.running():
            return [f"the approval gate exited (log: {self.gate.log_file})"]
        if self.page.pid is not None and not self.page.running():
            return [f"the approvers' page exited (log: {self.page.log_file})"]
        return []

    def stop(self, grace: float | None = None) -> None:
        """Stop the agents, the view and the gate; `grace`: seconds for each when the broker is gone."""
        if self.agents is not None and self.agents.is_alive():
            self.agents.stop(grace)
        if self.signals is not None and self.signals.is_alive():
            self.signals.stop(grace)
        if self.features is not None and self.features.is_alive():
            self.features.stop(grace)
        if self.view.is_alive():
            self.view.stop(grace)
        self.page.stop(grace)
        self.gate.stop(grace)
