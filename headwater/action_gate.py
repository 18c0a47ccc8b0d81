"""The approval gate's description, derived from the catalog's `actionGate`: the one thing the gate reads.

The gate (`approval_gate/`, its own layer, shipped as its own process or image) imports nothing of the
platform; it is configured by this plain-data description, which the local platform writes as a file and the
Kubernetes component mounts: its principal, consumer group and transactional id, its topics by role, each
agent's proposed and approved topic and the action types it may propose, the risk policy of every action type,
and the data contracts it checks inputs against.
"""

from __future__ import annotations

from typing import Any

from headwater.contracts.model import load_contracts
from headwater.spec import ActionGate, Platform

DESCRIPTION_VERSION = 1


class NoActionGate(ValueError):
    """The platform's catalog declares no `actionGate`."""


def action_gate(platform: Platform) -> ActionGate:
    if platform.action_gate is None:
        raise NoActionGate(f"stack {platform.stack}: the catalog declares no actionGate")
    return platform.action_gate


def gate_description(platform: Platform) -> dict[str, Any]:
    """The gate's description: plain JSON-ready data, sorted, the same for every realization of a stack."""
    gate = action_gate(platform)
    inputs = {gate.decisions_topic, *(a.proposed_topic for a in gate.agents)}
    contracts = {c.topic: dict(c.schema) for c in load_contracts(platform) if c.topic in inputs}
    return {
        "version": DESCRIPTION_VERSION,
        "principal": gate.principal,
        "group": gate.group,
        "transactional_id": gate.transactional_id,
        "topics": {
            "decisions": gate.decisions_topic,
            "audit": gate.audit_topic,
            "state": gate.state_topic,
        },
        "agents": {
            a.principal: {
                "proposed": a.proposed_topic,
                "approved": a.approved_topic,
                "action_types": list(a.action_types),
            }
            for a in gate.agents
        },
        "policies": {
            p.action_type: {
                "always_human": p.always_human,
                "max_amount": p.max_amount,
                "targets": list(p.targets),
                "scopes": list(p.scopes),
                "approval_sla_ms": p.approval_sla_ms,
                "on_expiry": p.on_expiry,
                "escalate_to": p.escalate_to,
                "escalation_sla_ms": p.escalation_sla_ms,
            }
            for p in gate.policies
        },
        "contracts": dict(sorted(contracts.items())),
    }


def approvers_principal(platform: Platform) -> str:
    """The principal the approvers' page runs as: the catalog's first approver principal."""
    return action_gate(platform).approvers[0]


def approvers_description(platform: Platform) -> dict[str, Any]:
    """The approvers' page's description: its principal and group, the audit topic it reads, the decisions
    topic it writes with that topic's contract (checked before sending), and each action type's policy in
    words. Plain JSON-ready data, the same for every realization of a stack."""
    gate = action_gate(platform)
    principal = approvers_principal(platform)
    contracts = {c.topic: dict(c.schema) for c in load_contracts(platform) if c.topic == gate.decisions_topic}
    return {
        "version": DESCRIPTION_VERSION,
        "principal": principal,
        "group": principal,
        "topics": {"decisions": gate.decisions_topic, "audit": gate.audit_topic},
        "contracts": contracts,
        "policies": {
            p.action_type: {
                "description": p.description,
                "approval_sla_ms": p.approval_sla_ms,
                "on_expiry": p.on_expiry,
            }
            for p in gate.policies
        },
    }
