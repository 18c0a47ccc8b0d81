"""Risk policies and the evaluation of one proposed action against its type's policy (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Policy:
    """One action type's policy, as the description carries it (see headwater.spec.RiskPolicy)."""

    action_type: str
    always_human: bool
    max_amount: float | None
    targets: tuple[str, ...]
    scopes: tuple[str, ...]
    approval_sla_ms: int
    on_expiry: Literal["reject", "escalate"]
    escalate_to: str | None = None
    escalation_sla_ms: int | None = None

    @classmethod
    def from_description(cls, action_type: str, raw: Mapping[str, Any]) -> Policy:
        return cls(
            action_type=action_type,
            always_human=bool(raw["always_human"]),
            max_amount=None if raw.get("max_amount") is None else float(raw["max_amount"]),
            targets=tuple(raw.get("targets") or ()),
            scopes=tuple(raw.get("scopes") or ()),
            approval_sla_ms=int(raw["approval_sla_ms"]),
            on_expiry="escalate" if raw["on_expiry"] == "escalate" else "reject",
            escalate_to=raw.get("escalate_to"),
            escalation_sla_ms=None if raw.get("escalation_sla_ms") is None else int(raw["escalation_sla_ms"]),
        )

    @property
    def rule(self) -> str:
        """The name of the rule that approves automatically, as audit records and approved actions cite it."""
        parts = []
        if self.max_amount is not None:
            parts.append(f"amount<={self.max_amount:g}")
        if self.targets:
            parts.append(f"target in {'|'.join(self.targets)}")
        if self.scopes:
            parts.append(f"scope in {'|'.join(self.scopes)}")
        return f"{self.action_type}/auto({', '.join(parts)})"


@dataclass(frozen=True)
class Evaluation:
    """The outcome of evaluating a proposal: approved by `rule`, or held for a human for `reasons`."""

    automatic: bool
    rule: str | None
    reasons: tuple[str, ...]


def evaluate(policy: Policy, proposal: Mapping[str, Any]) -> Evaluation:
    """Approve by rule only when the type is not always human and every declared condition holds."""
    if policy.always_human:
        return Evaluation(False, None, (f"{policy.action_type} is always decided by a human",))
    reasons = []
    if policy.max_amount is not None:
        amount = proposal.get("amount")
        if not isinstance(amount, int | float) or isinstance(amount, bool):
            reasons.append(f"no amount, and the policy approves by rule only up to {policy.max_amount:g}")
        elif amount > policy.max_amount:
            reasons.append(f"amount {amount:g} is above {policy.max_amount:g}")
    if policy.targets and proposal.get("target") not in policy.targets:
        reasons.append(f"target {proposal.get('target')!r} is not one of {', '.join(policy.targets)}")
    if policy.scopes and proposal.get("scope") not in policy.scopes:
        reasons.append(f"scope {proposal.get('scope')!r} is not one of {', '.join(policy.scopes)}")
    if reasons:
        return Evaluation(False, None, tuple(reasons))
    return Evaluation(True, policy.rule, ())
