"""The gate as a pure state machine: records in, records out, no Kafka.

`Gate.on_proposal`, `on_decision` and `on_tick` each return the records to write, in one transaction with
the offsets of the inputs that caused them: audit records (every step), approved actions (to the proposing
agent's topic) and state changes (the changelog `restore` reads back at start). An action id is decided once:
its state remembers the outcome, so a replayed proposal, a second decision or a late one changes nothing but
an `ignored` audit record. Each proposal ends in exactly one terminal audit record: approved, rejected or
expired.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from approval_gate.policy import Evaluation, Policy, evaluate

TERMINAL = ("approved", "rejected", "expired")
OPEN = ("pending", "escalated")
GATE = "gate"

# Checks a decoded record against its topic's contract; returns what is wrong, or None.
Validator = Callable[[Any], str | None]


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
    """One record to write: topic, key, JSON value (None: a tombstone)."""

    topic: str
    key: str
    value: Mapping[str, Any] | None


@dataclass
class Entry:
    """What the gate remembers of one action id."""

    status: str  # pending, escalated, approved, rejected, expired
    agent: str
    action_type: str | None
    proposal: Mapping[str, Any] | None = None
    deadline_ms: int | None = None

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
        **detail: Any,
    ) -> Out:
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
        return Out(self.description.audit_topic, action_id, value)

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
        """The terminal step: the audit record, the state, and for an approval the approved action."""
        out = []
        if status == "approved":
            agent = next(a for a in self.description.agents if a.principal == entry.agent)
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
                )
            )
        out.append(
            self._audit(
                action_id,
                status,
                now_ms,
                entry.agent,
                action_type=entry.action_type,
                actor=actor,
                reason=reason,
                source=source,
            )
        )
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

    def on_proposal(self, source: Source, key: bytes | None, raw: bytes | None, now_ms: int) -> list[Out]:
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
                )
            ]

        shown = proposal if isinstance(proposal, dict) else None
        out = [
            self._audit(
                action_id,
                "proposed",
                now_ms,
                agent.principal,
                action_type=action_type,
                source=source,
                proposal=shown,
            )
        ]
        entry = Entry(
            "pending", agent.principal, action_type, proposal if isinstance(proposal, dict) else None
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
        out.append(
            self._audit(
                action_id,
                "evaluated",
                now_ms,
                agent.principal,
                action_type=action_type,
                reason="; ".join(verdict.reasons) if verdict.reasons else f"approved by rule {verdict.rule}",
                automatic=verdict.automatic,
                rule=verdict.rule,
            )
        )
        if verdict.automatic:
            assert verdict.rule is not None
            return out + self._finish(
                action_id, entry, "approved", now_ms, f"rule:{verdict.rule}", "within the risk policy", source
            )
        entry.deadline_ms = now_ms + policy.approval_sla_ms
        out.append(
            self._audit(
                action_id,
                "waiting",
                now_ms,
                agent.principal,
                action_type=action_type,
                reason="; ".join(verdict.reasons),
                proposal=proposal,
                deadline=iso(entry.deadline_ms),
                sla_ms=policy.approval_sla_ms,
                on_expiry=policy.on_expiry,
            )
        )
        out.append(self._set(action_id, entry, now_ms))
        return out

    def on_decision(self, source: Source, key: bytes | None, raw: bytes | None, now_ms: int) -> list[Out]:
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
                )
            ]
        verb = "approved" if decision["decision"] == "approve" else "rejected"
        out = [
            self._audit(
                action_id,
                "decided",
                now_ms,
                agent,
                action_type=action_type,
                actor=actor,
                reason=decision["reason"],
                source=source,
                decision=decision["decision"],
                decided_at=decision.get("decided_at"),
            )
        ]
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
                out.append(
                    self._audit(
                        action_id,
                        "escalated",
                        now_ms,
                        entry.agent,
                        action_type=entry.action_type,
                        reason=why,
                        deadline=iso(entry.deadline_ms),
                        escalate_to=policy.escalate_to,
                    )
                )
                out.append(self._set(action_id, entry, now_ms))
                continue
            why = "no decision before the deadline" + (
                " after escalation" if entry.status == "escalated" else ""
            )
            out += self._finish(action_id, entry, "expired", now_ms, GATE, why, None)
        return out
