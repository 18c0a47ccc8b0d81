"""The action path in the catalog: its topics, roles, derived flows and ACLs, and the risk policies' loader."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from headwater.action_gate import gate_description
from headwater.config import CATALOG_DIR, ConfigError, load_platform, load_stack_config, read_yaml
from headwater.spec import AclResource, Platform, TopicKind, acls_for

STACKS = ("local", "dev", "staging", "prod")


def _catalog() -> dict[str, Any]:
    return copy.deepcopy(read_yaml(CATALOG_DIR / "catalog.yaml"))


def _problems(catalog: dict[str, Any], stack: str = "prod") -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_platform(stack, config=copy.deepcopy(load_stack_config(stack)), catalog=catalog)
    return info.value.problems


def _one(catalog: dict[str, Any]) -> str:
    problems = _problems(catalog)
    assert len(problems) == 1, problems
    return problems[0]


@pytest.fixture(scope="module", params=STACKS)
def platform(request: pytest.FixtureRequest) -> Platform:
    return load_platform(request.param)


def _writers(platform: Platform, topic: str) -> set[str]:
    return {p.name for p in platform.principals if any(f.topic == topic for f in p.produces)}


def _readers(platform: Platform, topic: str) -> set[str]:
    return {p.name for p in platform.principals if any(c.topic == topic for c in p.consumes)}


def test_every_flow_on_the_action_topics_follows_from_the_roles(platform: Platform) -> None:
    gate = platform.action_gate
    assert gate is not None and len(gate.agents) >= 2
    assert _writers(platform, gate.decisions_topic) == set(gate.approvers)
    assert _readers(platform, gate.decisions_topic) == {gate.principal, *gate.auditors}
    assert _writers(platform, gate.audit_topic) == {gate.principal}
    assert _readers(platform, gate.audit_topic) == {*gate.approvers, *gate.auditors}
    assert _writers(platform, gate.state_topic) == _readers(platform, gate.state_topic) == {gate.principal}
    for agent in gate.agents:
        assert _writers(platform, agent.proposed_topic) == {agent.principal}
        assert _readers(platform, agent.proposed_topic) == {gate.principal}
        # Only the gate writes an agent's approved actions; only that agent reads them.
        assert _writers(platform, agent.approved_topic) == {gate.principal}
        assert _readers(platform, agent.approved_topic) == {agent.principal}
    writes = {f.topic: f.transactional for f in platform.principal(gate.principal).produces}
    assert all(writes.values()) and platform.principal(gate.principal).transactional_id_prefix
    assert gate.transactional_id.startswith(str(platform.principal(gate.principal).transactional_id_prefix))


def test_agents_acls_never_reach_decisions_approved_actions_or_other_agents(platform: Platform) -> None:
    gate = platform.action_gate
    assert gate is not None
    for agent in gate.agents:
        acls = acls_for(platform.principal(agent.principal))
        topics = {(a.name, op) for a in acls if a.resource == AclResource.TOPIC for op in a.operations}
        assert (agent.proposed_topic, "Write") in topics and (agent.approved_topic, "Read") in topics
        for other in gate.agents:
            if other is not agent:
                assert not {t for t, _ in topics} & {other.proposed_topic, other.approved_topic}
        for topic in (gate.decisions_topic, gate.audit_topic, gate.state_topic):
            assert not {op for t, op in topics if t == topic}, topic
        assert (agent.approved_topic, "Write") not in topics
        # Every grant is literal: a prefixed topic ACL would reach other agents' topics.
        assert all(a.pattern == "literal" for a in acls if a.resource == AclResource.TOPIC)


def test_the_audit_topic_is_append_only_and_kept_forever(platform: Platform) -> None:
    gate = platform.action_gate
    assert gate is not None
    audit = platform.topic(gate.audit_topic)
    assert audit.kind == TopicKind.AUDIT and not audit.compacted
    config = platform.topic_config(audit)
    assert config["cleanup.policy"] == "delete" and config["retention.ms"] == "-1"
    for principal in platform.principals:
        for acl in acls_for(principal):
            if acl.resource == AclResource.TOPIC and acl.name == gate.audit_topic:
                assert set(acl.operations) <= {"Describe", "Read", "Write"}, principal.name


def test_the_state_topic_is_compacted_and_every_action_topic_has_a_contract(platform: Platform) -> None:
    gate = platform.action_gate
    assert gate is not None
    assert platform.topic(gate.state_topic).compacted
    for name in gate.topics:
        assert platform.topic(name).schema, name


def test_the_agents_copies_of_a_contract_are_the_same_but_for_their_id() -> None:
    # One file per topic (the registry's subject), kept identical so no agent's contract drifts.
    for role in ("proposed", "approved"):
        files = sorted((CATALOG_DIR / "schemas").glob(f"actions.{role}.*.v1.json"))
        assert len(files) >= 2
        bodies = []
        for f in files:
            body = json.loads(f.read_text())
            assert body.pop("$id") == f"urn:headwater:schema:{f.name[: -len('.json')]}"
            bodies.append(body)
        assert all(b == bodies[0] for b in bodies), role


def test_the_description_carries_roles_policies_and_input_contracts() -> None:
    platform = load_platform("local")
    d = gate_description(platform)
    gate = platform.action_gate
    assert gate is not None
    assert d["transactional_id"] == gate.transactional_id and d["group"] == gate.principal
    assert set(d["agents"]) == {a.principal for a in gate.agents}
    assert set(d["contracts"]) == {gate.decisions_topic, *(a.proposed_topic for a in gate.agents)}
    refund = d["policies"]["refund"]
    assert refund["max_amount"] == 50 and refund["on_expiry"] == "escalate" and refund["escalation_sla_ms"]
    assert json.loads(json.dumps(d)) == d


# ---- bad input: one line each, naming the key, the value and what is allowed -----------------------------


def test_a_negative_max_amount() -> None:
    cat = _catalog()
    cat["actionGate"]["riskPolicies"]["refund"]["autoApprove"]["maxAmount"] = -5
    msg = _one(cat)
    assert "catalog.actionGate.riskPolicies.refund.autoApprove.maxAmount = -5" in msg
    assert "an amount >= 0" in msg


def test_an_unknown_expiry_action() -> None:
    cat = _catalog()
    cat["actionGate"]["riskPolicies"]["account_note"]["onExpiry"] = "approve"
    msg = _one(cat)
    assert "riskPolicies.account_note.onExpiry = 'approve'" in msg and "reject, escalate" in msg


def test_escalation_needs_where_and_for_how_long() -> None:
    cat = _catalog()
    del cat["actionGate"]["riskPolicies"]["refund"]["escalateTo"]
    del cat["actionGate"]["riskPolicies"]["refund"]["escalationSla"]
    problems = _problems(cat)
    assert len(problems) == 2
    assert any("riskPolicies.refund.escalateTo is required" in p for p in problems)
    assert any("riskPolicies.refund.escalationSla is required" in p for p in problems)


def test_escalation_settings_without_escalation() -> None:
    cat = _catalog()
    cat["actionGate"]["riskPolicies"]["account_note"]["escalateTo"] = "leads"
    msg = _one(cat)
    assert "riskPolicies.account_note.escalateTo = 'leads'" in msg and "only with onExpiry: escalate" in msg


def test_a_bad_sla() -> None:
    cat = _catalog()
    cat["actionGate"]["riskPolicies"]["refund"]["approvalSla"] = "soon"
    msg = _one(cat)
    assert "riskPolicies.refund.approvalSla = 'soon'" in msg and "a duration like" in msg
    cat["actionGate"]["riskPolicies"]["refund"]["approvalSla"] = "forever"
    assert "a finite duration" in _one(cat)


def test_a_policy_that_would_approve_everything_by_rule() -> None:
    cat = _catalog()
    del cat["actionGate"]["riskPolicies"]["account_note"]["autoApprove"]
    msg = _one(cat)
    assert "riskPolicies.account_note.autoApprove = None" in msg
    assert "at least one of maxAmount, targets, scopes" in msg and "alwaysHuman: true" in msg


def test_always_human_with_rules() -> None:
    cat = _catalog()
    cat["actionGate"]["riskPolicies"]["account_close"]["autoApprove"] = {"maxAmount": 10}
    msg = _one(cat)
    assert "riskPolicies.account_close.autoApprove" in msg and "no autoApprove on an alwaysHuman" in msg


def test_unknown_keys_in_a_policy_and_its_rules() -> None:
    cat = _catalog()
    cat["actionGate"]["riskPolicies"]["refund"]["autoApprove"]["maxAmmount"] = 10
    cat["actionGate"]["riskPolicies"]["refund"]["sla"] = "1h"
    problems = _problems(cat)
    assert len(problems) == 2
    assert any(
        "unknown key 'catalog.actionGate.riskPolicies.refund.autoApprove.maxAmmount'" in p for p in problems
    )
    assert any(
        "unknown key 'catalog.actionGate.riskPolicies.refund.sla'" in p and "approvalSla" in p
        for p in problems
    )


def test_bad_targets_and_action_type_names() -> None:
    cat = _catalog()
    cat["actionGate"]["riskPolicies"]["refund"]["autoApprove"]["targets"] = ["Order", 3]
    cat["actionGate"]["riskPolicies"]["Bad-Type"] = {
        "alwaysHuman": True,
        "approvalSla": "1h",
        "onExpiry": "reject",
    }
    problems = _problems(cat)
    assert len(problems) == 3, problems
    assert any("autoApprove.targets[0] = 'Order'" in p and "a lower-case word" in p for p in problems)
    assert any("autoApprove.targets[1] = 3" in p for p in problems)
    assert any("riskPolicies.Bad-Type = 'Bad-Type'" in p and "an action type" in p for p in problems)


def test_an_agent_may_only_propose_types_with_a_policy() -> None:
    cat = _catalog()
    cat["actionGate"]["agents"]["billing-agent"]["actionTypes"].append("wire_transfer")
    msg = _one(cat)
    assert "agents.billing-agent.actionTypes[2] = 'wire_transfer'" in msg and "a type of riskPolicies" in msg


def test_roles_name_catalog_principals_and_topics_of_the_right_kind() -> None:
    cat = _catalog()
    cat["actionGate"]["approvers"] = ["nobody"]
    msg = _one(cat)
    assert "catalog.actionGate.approvers[0] = 'nobody'" in msg and "a principal of the catalog" in msg
    cat = _catalog()
    cat["actionGate"]["audit"] = "actions.decisions.v1"
    problems = _problems(cat)
    assert any("actionGate.audit = 'actions.decisions.v1'" in p and "kind audit" in p for p in problems)
    assert any("a topic of one role" in p for p in problems)


def test_an_agent_cannot_also_be_an_approver() -> None:
    cat = _catalog()
    cat["actionGate"]["approvers"].append("support-agent")
    msg = _one(cat)
    assert "actionGate.approvers = 'support-agent'" in msg and "already in agents" in msg


def test_a_flow_on_an_action_topic_declared_by_hand() -> None:
    # E.g. an agent granting itself the decisions topic, or another service reading an agent's approvals.
    cat = _catalog()
    cat["principals"]["support-agent"]["produces"] = [{"topic": "actions.decisions.v1"}]
    cat["principals"]["agent-runtime"]["consumes"].append(
        {"topic": "actions.approved.billing-agent.v1", "group": "x"}
    )
    problems = _problems(cat)
    assert len(problems) == 2, problems
    assert any(
        "catalog.principals.support-agent.produces[0].topic = 'actions.decisions.v1'" in p
        and "follow from the roles in catalog.actionGate" in p
        for p in problems
    )
    assert any("catalog.principals.agent-runtime.consumes[3].topic" in p for p in problems)


def test_an_audit_topic_must_be_kept_forever() -> None:
    cat = _catalog()
    cat["topics"]["audit.actions.v1"]["retention"] = "365d"
    msg = _one(cat)
    assert (
        "catalog.topics.audit.actions.v1.retention = '365d'" in msg and "'forever' for an audit topic" in msg
    )
