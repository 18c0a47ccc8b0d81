"""The action path's access rules on a real broker, stated by role (catalog.actionGate), not by flow.

The generated ACL matrix (test_acl_matrix.py) already covers every principal and topic from the declared
flows; this states what the issue asks in its own terms, so a change of the derivation that still matches
itself fails here: an agent writes only its own proposals and reads only its own approved actions, never a
decision, an approved action or the audit trail; approvers decide but read no approved action; nobody, the
gate included, may delete, truncate or reconfigure the audit trail. Runs on the scratch broker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from acl_probes import ALLOWED, DENIED, Outcome, admin_operations, produce, read, transactional
from confluent_kafka import Producer

from headwater.config import load_platform
from headwater.spec import ActionGate

if TYPE_CHECKING:
    from conftest import Provisioned

PLATFORM = load_platform("local")


def _gate() -> ActionGate:
    gate = PLATFORM.action_gate
    assert gate is not None, "the local catalog declares no actionGate"
    return gate


GATE = _gate()
AGENTS = {a.principal: a for a in GATE.agents}


def _cases() -> list[tuple[str, str, str, Outcome]]:
    """(principal, operation, topic, expected) by role."""
    g = GATE
    out: list[tuple[str, str, str, Outcome]] = []
    for name, agent in AGENTS.items():
        out += [
            (name, "produce", agent.proposed_topic, ALLOWED),
            (name, "read", agent.approved_topic, ALLOWED),
            (name, "produce", g.decisions_topic, DENIED),
            (name, "produce", agent.approved_topic, DENIED),
            (name, "produce", g.audit_topic, DENIED),
            (name, "produce", g.state_topic, DENIED),
            (name, "read", g.audit_topic, DENIED),
            (name, "read", g.decisions_topic, DENIED),
            (name, "read", agent.proposed_topic, DENIED),
        ]
        for other_name, other in AGENTS.items():
            if other_name != name:
                out += [
                    (name, "read", other.approved_topic, DENIED),
                    (name, "produce", other.proposed_topic, DENIED),
                ]
    for name in g.approvers:
        out += [(name, "produce", g.decisions_topic, ALLOWED), (name, "read", g.audit_topic, ALLOWED)]
        out += [(name, "read", a.approved_topic, DENIED) for a in GATE.agents]
        out += [(name, "produce", a.approved_topic, DENIED) for a in GATE.agents]
        out += [(name, "produce", g.audit_topic, DENIED)]
    for name in g.auditors:
        out += [(name, "read", g.audit_topic, ALLOWED), (name, "read", g.decisions_topic, ALLOWED)]
        out += [(name, "produce", t, DENIED) for t in (g.audit_topic, g.decisions_topic)]
    # The gate writes approved actions only in its transactions; never a decision.
    out += [(g.principal, "produce", g.decisions_topic, DENIED)]
    out += [(g.principal, "read", a.approved_topic, DENIED) for a in GATE.agents]
    return out


CASES = [pytest.param(*c, id=f"{c[0]}-{c[1]}-{c[2]}-{c[3]}") for c in _cases()]


@pytest.fixture(scope="module")
def env(scratch_provisioned: Provisioned) -> Provisioned:
    """The scratch broker with one record at the start of partition 0 of each action topic (to be read)."""
    producer = Producer(scratch_provisioned.admin_config())
    for topic in sorted(GATE.topics):
        producer.produce(topic, key=b"seed", value=b"{}", partition=0)
    assert producer.flush(30) == 0
    return scratch_provisioned


def test_the_cases_cover_both_outcomes_for_every_role() -> None:
    principals = {c[0] for c in _cases()}
    assert principals == {GATE.principal, *AGENTS, *GATE.approvers, *GATE.auditors}
    assert {c[3] for c in _cases()} == {ALLOWED, DENIED}


@pytest.mark.parametrize(("principal", "operation", "topic", "expected"), CASES)
def test_action_path_access(
    principal: str, operation: str, topic: str, expected: Outcome, env: Provisioned
) -> None:
    conf = env.config(principal)
    outcome = produce(conf, topic) if operation == "produce" else read(conf, topic)
    assert outcome == expected


def test_the_gate_writes_in_its_own_transactions(env: Provisioned) -> None:
    conf = env.config(GATE.principal)
    assert transactional(conf, GATE.transactional_id, GATE.audit_topic) == ALLOWED
    for agent in AGENTS:
        assert transactional(env.config(agent), GATE.transactional_id, None) == DENIED


# Those who see the audit trail at all (every other principal is not even shown it: the ACL matrix checks
# each one's metadata), so a denial here is the broker refusing the operation, not a topic it cannot find.
AUDIT_USERS = sorted(
    p.name
    for p in PLATFORM.principals
    if GATE.audit_topic in {c.topic for c in p.consumes} | {f.topic for f in p.produces}
)


def test_the_audit_trail_is_seen_by_the_gate_approvers_and_auditors_only() -> None:
    assert sorted({GATE.principal, *GATE.approvers, *GATE.auditors}) == AUDIT_USERS


@pytest.mark.parametrize("principal", AUDIT_USERS)
@pytest.mark.parametrize("operation", ["delete-records", "delete-topic", "alter-topic-config"])
def test_nobody_deletes_or_reconfigures_the_audit_trail(
    principal: str, operation: str, env: Provisioned
) -> None:
    ops = admin_operations(GATE.audit_topic, principal)
    assert ops[operation](env.config(principal)) == DENIED
