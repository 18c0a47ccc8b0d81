"""What the approvers' page shows, built from the gate's audit trail alone (pure: records in, views out).

The gate writes every step of every action to the audit topic. An action is pending from its `waiting` step
(which carries the proposal and the deadline) until its terminal step (approved, rejected, expired); an
`escalated` step moves its deadline. The board keeps the pending actions and the recent outcomes; a decision
the gate ignored (late, on an action already decided, breaking the contract) is kept too, so the person who
sent it sees why.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

TERMINAL = ("approved", "rejected", "expired")
APPROVER_PREFIX = "approver:"
# Outcomes and ignored decisions kept for display; the oldest go first (the audit topic keeps them all).
KEEP_OUTCOMES = 5000


def _traceparent(record: Mapping[str, Any]) -> str | None:
    """The traceparent of an audit record's span (the gate writes its trace and span id), or None."""
    trace_id, span_id = record.get("trace_id"), record.get("span_id")
    if isinstance(trace_id, str) and isinstance(span_id, str) and len(trace_id) == 32 and len(span_id) == 16:
        return f"00-{trace_id}-{span_id}-01"
    return None


def parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def time_left(deadline: datetime | None, now: datetime) -> str:
    """`12 min 5 s left`, `2 h 3 min left`, `overdue`: how long an approver still has."""
    if deadline is None:
        return "no deadline"
    seconds = int((deadline - now).total_seconds())
    if seconds <= 0:
        return "overdue"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min left"
    if minutes:
        return f"{minutes} min {secs} s left"
    return f"{secs} s left"


@dataclass
class Pending:
    """An action held for a human, with what the approver needs to judge it."""

    action_id: str
    agent: str
    action_type: str
    proposal: Mapping[str, Any]
    reasons: str  # why the risk policy did not approve it by rule
    deadline: datetime | None
    status: str = "pending"  # or "escalated"
    escalate_to: str | None = None
    on_expiry: str | None = None
    traceparent: str | None = None  # the latest audited step's span: a decision's span continues it

    @property
    def summary(self) -> str:
        return str(self.proposal.get("summary", ""))

    @property
    def fields(self) -> list[tuple[str, str]]:
        """The proposal's own fields (not its context), in a stable order, as text."""
        return [
            (k, _text(v))
            for k, v in sorted(self.proposal.items())
            if k not in ("context", "summary", "action_id")
        ]

    @property
    def signals(self) -> list[str]:
        context = self.proposal.get("context")
        raw = context.get("signals") if isinstance(context, dict) else None
        return [_text(s) for s in raw] if isinstance(raw, list) else []

    @property
    def features(self) -> list[tuple[str, str]]:
        context = self.proposal.get("context")
        raw = context.get("features") if isinstance(context, dict) else None
        return [(str(k), _text(v)) for k, v in sorted(raw.items())] if isinstance(raw, dict) else []


@dataclass(frozen=True)
class Outcome:
    """How an action ended (or, `step == "ignored"`, why the gate ignored a decision on it)."""

    action_id: str
    step: str
    actor: str
    reason: str
    at: datetime | None

    @property
    def decider(self) -> str | None:
        """The person, when a person decided."""
        return self.actor[len(APPROVER_PREFIX) :] if self.actor.startswith(APPROVER_PREFIX) else None


@dataclass
class Board:
    pending: dict[str, Pending] = field(default_factory=dict)
    outcomes: OrderedDict[str, Outcome] = field(default_factory=OrderedDict)
    ignored: OrderedDict[str, Outcome] = field(default_factory=OrderedDict)
    records: int = 0

    def apply(self, record: Mapping[str, Any]) -> None:
        """One audit record (decoded JSON); a record the board cannot read is skipped, never fatal."""
        action_id, step = record.get("action_id"), record.get("step")
        if not isinstance(action_id, str) or not isinstance(step, str):
            return
        self.records += 1
        if step == "waiting":
            proposal = record.get("proposal")
            detail = record.get("detail") or {}
            self.pending[action_id] = Pending(
                action_id=action_id,
                agent=str(record.get("agent", "")),
                action_type=str(record.get("type", "")),
                proposal=proposal if isinstance(proposal, dict) else {},
                reasons=str(record.get("reason", "")),
                deadline=parse_time(record.get("deadline")),
                on_expiry=detail.get("on_expiry") if isinstance(detail, dict) else None,
                traceparent=_traceparent(record),
            )
        elif step == "escalated":
            entry = self.pending.get(action_id)
            if entry is not None:
                detail = record.get("detail") or {}
                entry.status = "escalated"
                entry.deadline = parse_time(record.get("deadline"))
                entry.escalate_to = detail.get("escalate_to") if isinstance(detail, dict) else None
                entry.traceparent = _traceparent(record) or entry.traceparent
        elif step in TERMINAL or step == "ignored":
            outcome = Outcome(
                action_id,
                step,
                str(record.get("actor", "")),
                str(record.get("reason", "")),
                parse_time(record.get("at")),
            )
            kept = self.ignored if step == "ignored" else self.outcomes
            kept.pop(action_id, None)
            kept[action_id] = outcome
            while len(kept) > KEEP_OUTCOMES:
                kept.popitem(last=False)
            if step in TERMINAL:
                self.pending.pop(action_id, None)

    def waiting(self) -> list[Pending]:
        """Pending actions, the most urgent first."""
        far = datetime.max.replace(tzinfo=UTC)
        return sorted(self.pending.values(), key=lambda p: (p.deadline or far, p.action_id))

    def outcome(self, action_id: str) -> Outcome | None:
        return self.outcomes.get(action_id)

    def recent(self, limit: int = 10) -> list[Outcome]:
        """The latest outcomes people decided, newest first."""
        people = [o for o in reversed(self.outcomes.values()) if o.decider is not None]
        return people[:limit]


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_text(v)}" for k, v in sorted(value.items()))
    if isinstance(value, list):
        return "; ".join(_text(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
