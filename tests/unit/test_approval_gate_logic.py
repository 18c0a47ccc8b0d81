"""The gate's pure parts: risk evaluation and the state machine (records in, records out), on the catalog's
own description, so the tests see the policies the platform ships."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from approval_gate.logic import Description, Gate, Out, Source
from approval_gate.main import validators
from approval_gate.policy import Policy, evaluate
from headwater.action_gate import gate_description
from headwater.config import load_platform

T0 = 1_800_000_000_000
DESCRIPTION = Description.from_dict(gate_description(load_platform("local")))
SUPPORT = next(a for a in DESCRIPTION.agents if a.principal == "support-agent")
BILLING = next(a for a in DESCRIPTION.agents if a.principal == "billing-agent")
_offsets: Iterator[int] = iter(range(10**9))


def _gate() -> Gate:
    return Gate(DESCRIPTION, validators(DESCRIPTION))


def proposal(action_id: str, action_type: str = "refund", **fields: Any) -> dict[str, Any]:
    body = {
        "action_id": action_id,
        "type": action_type,
        "target": "order",
        "scope": "single-order",
        "amount": 20,
        "summary": "refund a late order",
        "proposed_at": "2026-11-29T04:00:00Z",
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


def propose(
    gate: Gate, body: Any, *, topic: str = SUPPORT.proposed, now: int = T0, key: str | None = None
) -> list[Out]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    k = key if key is not None else (body.get("action_id") if isinstance(body, dict) else "x")
    return gate.on_proposal(Source(topic, 0, next(_offsets)), str(k).encode(), raw, now)


def decide(
    gate: Gate, action_id: str, verdict: str = "approve", *, now: int = T0, approver: str = "ana"
) -> list[Out]:
    body = {
        "action_id": action_id,
        "decision": verdict,
        "approver": approver,
        "reason": "checked the order",
        "decided_at": "2026-11-29T04:01:00Z",
    }
    return gate.on_decision(
        Source(DESCRIPTION.decisions_topic, 0, next(_offsets)),
        action_id.encode(),
        json.dumps(body).encode(),
        now,
    )


def steps(out: list[Out]) -> list[str]:
    return [str(o.value["step"]) for o in out if o.topic == DESCRIPTION.audit_topic and o.value]


def approved(out: list[Out]) -> list[Out]:
    return [o for o in out if o.topic in {a.approved for a in DESCRIPTION.agents}]


# ---- evaluation ----------------------------------------------------------------------------------------------


def test_evaluation_approves_only_when_every_condition_holds() -> None:
    refund = DESCRIPTION.policies["refund"]
    ok = evaluate(refund, proposal("a"))
    assert ok.automatic and ok.rule == "refund/auto(amount<=50, target in order, scope in single-order)"
    assert evaluate(refund, proposal("a", amount=50)).automatic
    high = evaluate(refund, proposal("a", amount=50.01, scope="account"))
    assert not high.automatic and high.reasons == (
        "amount 50.01 is above 50",
        "scope 'account' is not one of single-order",
    )
    assert evaluate(refund, proposal("a", amount=None)).reasons == (
        "no amount, and the policy approves by rule only up to 50",
    )
    assert evaluate(refund, proposal("a", amount=True)).automatic is False


def test_always_human_types_are_never_approved_by_rule() -> None:
    close = DESCRIPTION.policies["account_close"]
    verdict = evaluate(close, proposal("a", "account_close", amount=0, target="customer"))
    assert not verdict.automatic and verdict.reasons == ("account_close is always decided by a human",)


def test_a_policy_reads_back_from_its_description() -> None:
    p = Policy.from_description(
        "t", {"always_human": False, "targets": ["x"], "approval_sla_ms": 5, "on_expiry": "reject"}
    )
    assert p.max_amount is None and p.targets == ("x",) and p.on_expiry == "reject"


# ---- the state machine ---------------------------------------------------------------------------------------


def test_a_low_risk_action_is_approved_by_rule_once_to_its_agents_topic() -> None:
    gate = _gate()
    out = propose(gate, proposal("a1"))
    assert steps(out) == ["proposed", "evaluated", "approved"]
    [action] = approved(out)
    assert action.topic == SUPPORT.approved and action.key == "a1" and action.value is not None
    assert str(action.value["approved_by"]).startswith("rule:refund/auto(")
    assert gate.state["a1"].status == "approved"
    # Replayed, and then decided by a human: nothing more is approved.
    assert steps(propose(gate, proposal("a1"))) == ["ignored"]
    later = decide(gate, "a1")
    assert steps(later) == ["ignored"] and not approved(later)


def test_a_high_risk_action_waits_and_an_approver_approves_it_once() -> None:
    gate = _gate()
    out = propose(gate, proposal("a2", amount=400))
    assert steps(out) == ["proposed", "evaluated", "waiting"] and not approved(out)
    waiting = next(o for o in out if o.value and o.value.get("step") == "waiting").value
    assert waiting is not None and waiting["deadline"] == "2027-01-15T08:15:00.000Z"
    assert waiting["proposal"]["amount"] == 400 and "amount 400 is above 50" in waiting["reason"]
    state = [o for o in out if o.topic == DESCRIPTION.state_topic][-1].value
    assert state is not None and state["status"] == "pending" and state["deadline_ms"] == T0 + 15 * 60_000
    out = decide(gate, "a2", now=T0 + 1000)
    assert steps(out) == ["decided", "approved"]
    [action] = approved(out)
    assert action.value is not None and action.value["approved_by"] == "approver:ana"
    assert steps(decide(gate, "a2", "reject")) == ["ignored"]
    assert gate.on_tick(T0 + 10**9) == []


def test_an_approver_rejects() -> None:
    gate = _gate()
    propose(gate, proposal("a3", "account_close", target="customer", scope="account", amount=None))
    out = decide(gate, "a3", "reject")
    assert steps(out) == ["decided", "rejected"] and not approved(out)
    terminal = [o.value for o in out if o.value and o.value.get("terminal")]
    assert len(terminal) == 1 and terminal[0] is not None and terminal[0]["actor"] == "approver:ana"


def test_expiry_rejects_or_escalates_as_the_policy_says() -> None:
    gate = _gate()
    propose(gate, proposal("n1", "account_note", target="order"))  # account_note: onExpiry reject, 1h
    propose(gate, proposal("r1", amount=90))  # refund: escalate after 15m, then 1h more
    assert gate.on_tick(T0 + 15 * 60_000 - 1) == []
    out = gate.on_tick(T0 + 15 * 60_000)
    assert steps(out) == ["escalated"] and gate.state["r1"].status == "escalated"
    assert out[0].value is not None and out[0].value["detail"]["escalate_to"] == "support-leads"
    out = gate.on_tick(T0 + 60 * 60_000)
    assert steps(out) == ["expired"] and out[0].key == "n1"
    out = gate.on_tick(T0 + 75 * 60_000)
    assert steps(out) == ["expired"] and out[0].key == "r1" and "after escalation" in str(out[0].value)
    assert steps(decide(gate, "r1")) == ["ignored"]


def test_an_escalated_action_can_still_be_decided() -> None:
    gate = _gate()
    propose(gate, proposal("r2", amount=90))
    gate.on_tick(T0 + 15 * 60_000)
    assert steps(decide(gate, "r2", now=T0 + 16 * 60_000)) == ["decided", "approved"]


@pytest.mark.parametrize(
    ("body", "topic", "key", "why"),
    [
        (b"{not json", SUPPORT.proposed, "k", "contract: not JSON"),
        (
            proposal("b1", amount=-1),
            SUPPORT.proposed,
            None,
            "contract: amount: -1 is less than the minimum of 0",
        ),
        (proposal("b2", surprise=1), SUPPORT.proposed, None, "contract: (record): Additional properties"),
        (proposal("b3"), SUPPORT.proposed, "other", "record key 'other' is not the action_id 'b3'"),
        (
            proposal("b4", "wire_transfer"),
            SUPPORT.proposed,
            None,
            "no risk policy for action type 'wire_transfer'",
        ),
        (
            proposal("b5", "account_close"),
            BILLING.proposed,
            None,
            "billing-agent may not propose 'account_close'",
        ),
    ],
)
def test_bad_proposals_are_rejected_with_the_reason(body: Any, topic: str, key: str | None, why: str) -> None:
    gate = _gate()
    out = propose(gate, body, topic=topic, key=key)
    assert steps(out) == ["proposed", "rejected"] and not approved(out)
    rejected = next(o.value for o in out if o.value and o.value.get("step") == "rejected")
    assert rejected is not None and why in rejected["reason"] and rejected["source"]["topic"] == topic


def test_a_proposal_the_agent_names_is_not_the_agents_own() -> None:
    # The proposer is the topic's agent: an action id already taken by another agent is not hijacked.
    gate = _gate()
    propose(gate, proposal("c1", amount=400), topic=SUPPORT.proposed)
    out = propose(gate, proposal("c1", amount=1), topic=BILLING.proposed)
    assert steps(out) == ["ignored"] and "already proposed by support-agent" in str(out[0].value)


def test_bad_and_unmatched_decisions_are_ignored_with_the_reason() -> None:
    gate = _gate()
    out = gate.on_decision(Source(DESCRIPTION.decisions_topic, 1, 7), b"z", b'{"action_id": "z"}', T0)
    assert steps(out) == ["ignored"] and "decision breaks its contract" in str(out[0].value)
    assert "a decision on no action" in str(decide(gate, "never")[0].value)


def test_state_restored_from_the_changelog_decides_nothing_twice() -> None:
    gate = _gate()
    changelog: dict[str, Any] = {}
    for o in propose(gate, proposal("d1", amount=400)) + propose(gate, proposal("d2")):
        if o.topic == DESCRIPTION.state_topic:
            changelog[o.key] = o.value
    restarted = _gate()
    for key, value in changelog.items():
        restarted.restore(key, value)
    assert set(restarted.pending()) == {"d1"} and restarted.state["d2"].status == "approved"
    assert restarted.next_deadline() == T0 + 15 * 60_000
    assert steps(propose(restarted, proposal("d2"))) == ["ignored"]
    out = decide(restarted, "d1")
    [action] = approved(out)
    assert action.value is not None and action.value["proposal"]["amount"] == 400
    restarted.restore("d1", None)
    assert "d1" not in restarted.state


def test_a_description_of_another_version_is_refused() -> None:
    with pytest.raises(ValueError, match="version 2; allowed: 1"):
        Description.from_dict({**gate_description(load_platform("local")), "version": 2})


def test_the_sample_agents_propose_a_mix_the_gate_sorts_as_intended() -> None:
    import random

    from headwater.local.action_flow import sample_proposal

    platform = load_platform("local")
    gate = platform.action_gate
    assert gate is not None
    rng = random.Random(7)
    automatic = {True: 0, False: 0}
    for agent in gate.agents:
        for high_risk in (False, True):
            for _ in range(50):
                body = sample_proposal(agent, gate, rng, high_risk)
                assert validators(DESCRIPTION)[agent.proposed_topic](body) is None, body
                verdict = evaluate(DESCRIPTION.policies[body["type"]], body)
                automatic[verdict.automatic] += 1
                if not high_risk:
                    always_human = DESCRIPTION.policies[body["type"]].always_human
                    assert verdict.automatic != always_human, body
                else:
                    assert not verdict.automatic, body
    assert automatic[True] and automatic[False]
