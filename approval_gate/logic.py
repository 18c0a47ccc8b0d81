"""The gate as a pure state machine: records in, records out, no Kafka.

`Gate.on_proposal`, `on_decision` and `on_tick` each return the records to write, in one transaction with
the offsets of the inputs that caused them: audit records (every step), approved actions (to the proposing
agent's topic) and state changes (the changelog `restore` reads back at start). An action id is decided once:
its state remembers the outcome, so a replayed proposal, a second decision or a late one changes nothing but
an `ignored` audit record. Each proposal ends in exactly one terminal audit record: approved, rejected or
expired.

Traces: with a `StepTracer`, every audited step is a span continuing the proposal's trace (the `traceparent`
header it came with; each later step the child of the action's previous one, which the state remembers), the
audit record carries its trace and span id, and an approved action the `traceparent` of its approval.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from approval_gate.policy import Evaluation, Policy, evaluate

TERMINAL = ("approved", "rejected", "expired")
OPEN = ("pending", "escalated")
GATE = "gate"
TRACEPARENT = "traceparent"

# Checks a decoded record against its topic's contract; returns what is wrong, or None.
Validator = Callable[[Any], str | None]
# Makes the span of one audited step: (step, parent traceparent or None for a new trace, attributes, linked
# traceparents, at epoch ms) -> the step's traceparent.
StepTracer = Callable[[str, str | None, Mapping[str, str | int | bool], Sequence[str], int], str]


@dataclass(frozen=True)
class Agent:
    principal: str
    proposed: str
    approved: str
    action_types: tuple[str, ...]


@dataclass(frozen=True)
class Description:
    """What the platform tells the gate (headwater.action_gate.gate_description)."""

    principal: str
    group: str
    transactional_id: str
    decisions_topic: str
    audit_topic: str
    state_topic: str
    agents: tuple[Agent, ...]
    policies: Mapping[str, Policy]
    contracts: Mapping[str, Mapping[str, Any]]

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Description:
        if raw.get("version") != 1:
            raise ValueError(f"gate description version {raw.get('version')!r}; allowed: 1")
        return cls(
            principal=raw["principal"],
            group=raw["group"],
            transactional_id=raw["transactional_id"],
            decisions_topic=raw["topics"]["decisions"],
            audit_topic=raw["topics"]["audit"],
            state_topic=raw["topics"]["state"],
            agents=tuple(
                Agent(name, a["proposed"], a["approved"], tuple(a["action_types"]))
                for name, a in sorted(raw["agents"].items())
            ),
            policies={t: Policy.from_description(t, p) for t, p in raw["policies"].items()},
            contracts=raw.get("contracts", {}),
        )

    @classmethod
    def load(cls, path: Path) -> Description:
        return cls.from_dict(json.loads(path.read_text()))

    @property
    def proposed_topics(self) -> tuple[str, ...]:
        return tuple(a.proposed for a in self.agents)

    def agent_of(self, proposed_topic: str) -> Agent | None:
        return next((a for a in self.agents if a.proposed == proposed_topic), None)


@dataclass(frozen=True)
class Out:
    """One record to write: topic, key, JSON value (None: a tombstone), headers; `trace` is the traceparent of
    an audited step's span (not written: the next step's parent)."""

    topic: str
    key: str
    value: Mapping[str, Any] | None
    headers: tuple[tuple[str, bytes], ...] = ()
    trace: str | None = None


@dataclass
class Entry:
    """What the gate remembers of one action id."""

    status: str  # pending, escalated, approved, rejected, expired
    agent: str
    action_type: str | None
    proposal: Mapping[str, Any] | None = None
    deadline_ms: int | None = None
    trace: str | None = None  # traceparent of the action's latest step (the next step's parent)

    def value(self, action_id: str, now_ms: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "action_id": action_id,
            "status": self.status,
            "agent": self.agent,
            "updated_ms": now_ms,
        }
        if self.action_type is not None:
            out["type"] = self.action_type
        if self.status in OPEN:
            out["proposal"] = dict(self.proposal or {})
            out["deadline_ms"] = self.deadline_ms
            if self.trace is not None:
                out["traceparent"] = self.trace
        return out


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Source:
    topic: str
    partition: int
    offset: int

    def as_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


@dataclass
class Gate:
    description: Description
    validators: Mapping[str, Validator] = field(default_factory=dict)
    state: dict[str, Entry] = field(default_factory=dict)
    tracer: StepTracer | None = None

    # ---- state ---------------------------------------------------------------------------------------------

    def restore(self, key: str, value: Mapping[str, Any] | None) -> None:
        """Apply one changelog record (the latest per key wins, as compaction keeps it)."""
        if value is None:
            self.state.pop(key, None)
            return
        self.state[key] = Entry(
            status=str(value["status"]),
            agent=str(value["agent"]),
            action_type=value.get("type"),
            proposal=value.get("proposal"),
            deadline_ms=value.get("deadline_ms"),
            trace=value.get("traceparent"),
        )

    def pending(self) -> dict[str, Entry]:
        return {k: e for k, e in self.state.items() if e.status in OPEN}

    def next_deadline(self) -> int | None:
        deadlines = [e.deadline_ms for e in self.pending().values() if e.deadline_ms is not None]
        return min(deadlines) if deadlines else None

    # ---- records out ---------------------------------------------------------------------------------------

    def _audit(
        self,
        action_id: str,
        step: str,
        now_ms: int,
        agent: str,
        *,
        action_type: str | None = None,
        actor: str = GATE,
        reason: str | None = None,
        source: Source | None = None,
        parent: str | None = None,
        links: Sequence[str] = (),
        **detail: Any,
    ) -> Out:
        """The audit record of a step (and, with a tracer, its span: the child of `parent`)."""
        value: dict[str, Any] = {
            "action_id": action_id,
            "step": step,
            "terminal": step in TERMINAL,
            "at": iso(now_ms),
            "agent": agent,
            "actor": actor,
            "detail": {k: v for k, v in detail.items() if v is not None},
        }
        if action_type is not None:
            value["type"] = action_type
        if reason is not None:
            value["reason"] = reason
        if source is not None:
            value["source"] = source.as_dict()
        if "proposal" in value["detail"]:
            value["proposal"] = value["detail"].pop("proposal")
        if "deadline" in value["detail"]:
            value["deadline"] = value["detail"].pop("deadline")
        trace = None
        if self.tracer is not None:
            attributes: dict[str, str | int | bool] = {
                "action.id": action_id,
                "action.step": step,
                "action.actor": actor,
            }
            if agent:
                attributes["action.agent"] = agent
            if action_type is not None:
                attributes["action.type"] = action_type
            if source is not None:
                attributes.update(
                    {
                        "messaging.source.name": source.topic,
                        "messaging.kafka.source.partition": source.partition,
                        "messaging.kafka.message.offset": source.offset,
                    }
                )
            trace = self.tracer(step, parent, attributes, links, now_ms)
            value["trace_id"], value["span_id"] = trace[3:35], trace[36:52]
        return Out(self.description.audit_topic, action_id, value, trace=trace)

    def _set(self, action_id: str, entry: Entry, now_ms: int) -> Out:
        self.state[action_id] = entry
        return Out(self.description.state_topic, action_id, entry.value(action_id, now_ms))

    def _finish(
        self,
        action_id: str,
        entry: Entry,
        status: str,
        now_ms: int,
        actor: str,
        reason: str,
        source: Source | None,
    ) -> list[Out]:
        """The terminal step: the audit record, the state, and for an approval the approved action (with the
        approval's traceparent as its header)."""
        out = []
        audit = self._audit(
            action_id,
            status,
            now_ms,
            entry.agent,
            action_type=entry.action_type,
            actor=actor,
            reason=reason,
            source=source,
            parent=entry.trace,
        )
        if status == "approved":
            agent = next(a for a in self.description.agents if a.principal == entry.agent)
            trace = audit.trace or entry.trace
            out.append(
                Out(
                    agent.approved,
                    action_id,
                    {
                        "action_id": action_id,
                        "agent": entry.agent,
                        "proposal": dict(entry.proposal or {}),
                        "approved_by": actor,
                        "reason": reason,
                        "approved_at": iso(now_ms),
                    },
                    headers=((TRACEPARENT, trace.encode()),) if trace else (),
                )
            )
        out.append(audit)
        out.append(self._set(action_id, Entry(status, entry.agent, entry.action_type), now_ms))
        return out

    # ---- inputs --------------------------------------------------------------------------------------------

    def _decode(self, topic: str, raw: bytes | None) -> tuple[Any, str | None]:
        if raw is None:
            return None, "a tombstone (no value)"
        try:
            value = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return None, f"not JSON: {exc}"
        check = self.validators.get(topic)
        why = check(value) if check is not None else None
        if why is None and not isinstance(value, dict):
            why = "not a JSON object"
        return value, why

    def on_proposal(
        self,
        source: Source,
        key: bytes | None,
        raw: bytes | None,
        now_ms: int,
        traceparent: str | None = None,
    ) -> list[Out]:
        """`traceparent`: the proposal's header (the agent's span), which the action's trace continues."""
        agent = self.description.agent_of(source.topic)
        if agent is None:
            raise ValueError(f"{source.topic} is no agent's proposed topic")
        proposal, invalid = self._decode(source.topic, raw)
        action_id = proposal.get("action_id") if isinstance(proposal, dict) else None
        if not isinstance(action_id, str) or not action_id:
            action_id = f"{source.topic}:{source.partition}:{source.offset}"
        action_type = proposal.get("type") if isinstance(proposal, dict) else None
        action_type = action_type if isinstance(action_type, str) else None
        key_text = key.decode("utf-8", "replace") if key is not None else None
        if invalid is None and key_text != action_id:
            invalid = f"record key {key_text!r} is not the action_id {action_id!r} (proposals are keyed by action_id)"

        known = self.state.get(action_id)
        if known is not None:
            why = f"action id already proposed by {known.agent}, now {known.status}; decided once"
            return [
                self._audit(
                    action_id,
                    "ignored",
                    now_ms,
                    agent.principal,
                    action_type=action_type,
                    reason=why,
                    source=source,
                    parent=traceparent,
                )
            ]

        shown = proposal if isinstance(proposal, dict) else None
        proposed = self._audit(
            action_id,
            "proposed",
            now_ms,
            agent.principal,
            action_type=action_type,
            source=source,
            parent=traceparent,
            proposal=shown,
        )
        out = [proposed]
        entry = Entry(
            "pending",
            agent.principal,
            action_type,
            proposal if isinstance(proposal, dict) else None,
            trace=proposed.trace or traceparent,
        )
        if invalid is not None:
            return out + self._finish(
                action_id, entry, "rejected", now_ms, GATE, f"contract: {invalid}", source
            )
        assert isinstance(proposal, dict) and action_type is not None
        policy = self.description.policies.get(action_type)
        if policy is None:
            why = f"no risk policy for action type {action_type!r}; known: {', '.join(sorted(self.description.policies))}"
            return out + self._finish(action_id, entry, "rejected", now_ms, GATE, why, source)
        if action_type not in agent.action_types:
            why = f"{agent.principal} may not propose {action_type!r}; it may propose {', '.join(agent.action_types)}"
            return out + self._finish(action_id, entry, "rejected", now_ms, GATE, why, source)

        verdict: Evaluation = evaluate(policy, proposal)
        evaluated = self._audit(
            action_id,
            "evaluated",
            now_ms,
            agent.principal,
            action_type=action_type,
            reason="; ".join(verdict.reasons) if verdict.reasons else f"approved by rule {verdict.rule}",
            parent=entry.trace,
            automatic=verdict.automatic,
            rule=verdict.rule,
        )
        out.append(evaluated)
        entry.trace = evaluated.trace or entry.trace
        if verdict.automatic:
            assert verdict.rule is not None
            return out + self._finish(
                action_id, entry, "approved", now_ms, f"rule:{verdict.rule}", "within the risk policy", source
            )
        entry.deadline_ms = now_ms + policy.approval_sla_ms
        waiting = self._audit(
            action_id,
            "waiting",
            now_ms,
            agent.principal,
            action_type=action_type,
            reason="; ".join(verdict.reasons),
            parent=entry.trace,
            proposal=proposal,
            deadline=iso(entry.deadline_ms),
            sla_ms=policy.approval_sla_ms,
            on_expiry=policy.on_expiry,
        )
        out.append(waiting)
        entry.trace = waiting.trace or entry.trace
        out.append(self._set(action_id, entry, now_ms))
        return out

    def on_decision(
        self,
        source: Source,
        key: bytes | None,
        raw: bytes | None,
        now_ms: int,
        traceparent: str | None = None,
    ) -> list[Out]:
        """`traceparent`: the decision's header (the approver's span, if any), linked from the decided step."""
        links = (traceparent,) if traceparent else ()
        decision, invalid = self._decode(source.topic, raw)
        action_id = decision.get("action_id") if isinstance(decision, dict) else None
        if not isinstance(action_id, str) or not action_id:
            action_id = f"{source.topic}:{source.partition}:{source.offset}"
        entry = self.state.get(action_id)
        agent = entry.agent if entry is not None else ""
        action_type = entry.action_type if entry is not None else None
        if invalid is not None:
            return [
                self._audit(
                    action_id,
                    "ignored",
                    now_ms,
                    agent,
                    action_type=action_type,
                    reason=f"decision breaks its contract: {invalid}",
                    source=source,
                    parent=entry.trace if entry is not None else traceparent,
                )
            ]
        assert isinstance(decision, dict)
        actor = f"approver:{decision['approver']}"
        if entry is None:
            return [
                self._audit(
                    action_id,
                    "ignored",
                    now_ms,
                    agent,
                    actor=actor,
                    reason="a decision on no action the gate holds",
                    source=source,
                    parent=traceparent,
                )
            ]
        if entry.status not in OPEN:
            return [
                self._audit(
                    action_id,
                    "ignored",
                    now_ms,
                    agent,
                    action_type=action_type,
                    actor=actor,
                    reason=f"a decision on an action already {entry.status}; decided once",
                    source=source,
                    parent=traceparent,
                )
            ]
        verb = "approved" if decision["decision"] == "approve" else "rejected"
        decided = self._audit(
            action_id,
            "decided",
            now_ms,
            agent,
            action_type=action_type,
            actor=actor,
            reason=decision["reason"],
            source=source,
            parent=entry.trace,
            links=links,
            decision=decision["decision"],
            decided_at=decision.get("decided_at"),
        )
        entry.trace = decided.trace or entry.trace
        out = [decided]
        return out + self._finish(action_id, entry, verb, now_ms, actor, decision["reason"], source)

    def on_tick(self, now_ms: int) -> list[Out]:
        """Expire (or escalate) every open action whose deadline has passed."""
        out: list[Out] = []
        for action_id, entry in sorted(self.pending().items()):
            if entry.deadline_ms is None or entry.deadline_ms > now_ms:
                continue
            policy = self.description.policies.get(entry.action_type or "")
            if policy is not None and entry.status == "pending" and policy.on_expiry == "escalate":
                assert policy.escalation_sla_ms is not None
                entry.status = "escalated"
                entry.deadline_ms = now_ms + policy.escalation_sla_ms
                why = f"no decision within {policy.approval_sla_ms} ms; escalated to {policy.escalate_to}"
                escalated = self._audit(
                    action_id,
                    "escalated",
                    now_ms,
                    entry.agent,
                    action_type=entry.action_type,
                    reason=why,
                    parent=entry.trace,
                    deadline=iso(entry.deadline_ms),
                    escalate_to=policy.escalate_to,
                )
                entry.trace = escalated.trace or entry.trace
                out.append(escalated)
                out.append(self._set(action_id, entry, now_ms))
                continue
            why = "no decision before the deadline" + (
                " after escalation" if entry.status == "escalated" else ""
            )
            out += self._finish(action_id, entry, "expired", now_ms, GATE, why, None)
        return out
