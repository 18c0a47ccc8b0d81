"""The platform spec of every shipped stack, as plain data."""

from __future__ import annotations

import pytest

from headwater.config import load_platform, stack_names
from headwater.spec import TOPIC_NAME, Acl, AclResource, Tier, TopicKind, acls_for

STACKS = stack_names()


def test_every_environment_has_a_stack() -> None:
    assert set(STACKS) == {"local", "dev", "staging", "prod"}


@pytest.mark.parametrize("stack", STACKS)
def test_stack_loads_and_names_topics_by_convention(stack: str) -> None:
    platform = load_platform(stack)
    assert platform.tier == Tier(stack)
    for topic in platform.topics:
        assert TOPIC_NAME.match(topic.name), topic.name
        assert topic.owner and topic.sla


def test_prod_is_replicated_across_zones_and_tls_only() -> None:
    kafka = load_platform("prod").kafka
    assert kafka.brokers >= 3 and kafka.controllers >= 3
    assert len(set(kafka.racks)) >= 3
    assert kafka.replication_factor == 3 and kafka.min_insync_replicas == 2
    assert not kafka.plaintext_listener
    assert kafka.authentication.value == "tls"


@pytest.mark.parametrize("stack", STACKS)
def test_compacted_topics_are_exactly_state_and_feature(stack: str) -> None:
    platform = load_platform(stack)
    for topic in platform.topics:
        policy = platform.topic_config(topic)["cleanup.policy"]
        expected = "compact" if topic.kind in (TopicKind.STATE, TopicKind.FEATURE) else "delete"
        assert policy == expected, topic.name
        if topic.kind == TopicKind.JOURNAL:
            assert platform.topic_config(topic)["retention.ms"] == "-1"


@pytest.mark.parametrize("stack", STACKS)
def test_acls_are_exactly_what_the_flows_need(stack: str) -> None:
    """Recompute the expected ACLs of each principal from its flows, independently of acls_for."""
    platform = load_platform(stack)
    for principal in platform.principals:
        expected: set[tuple[str, str, str, str]] = set()
        for c in principal.consumes:
            expected |= {("topic", c.topic, "literal", "Describe"), ("topic", c.topic, "literal", "Read")}
            expected.add(("group", c.group, c.group_pattern, "Read"))
            if principal.describe_topic_configs:
                expected.add(("topic", c.topic, "literal", "DescribeConfigs"))
        for m in principal.monitors:
            expected |= {
                ("topic", m.topic, "literal", "Describe"),
                ("group", m.group, m.group_pattern, "Describe"),
            }
        for t in principal.verifies_configs_of:
            expected.add(("topic", t, "literal", "DescribeConfigs"))
        for tid in principal.transactional_ids:
            expected |= {("transactionalId", tid, "literal", op) for op in ("Describe", "Write")}
        for p in principal.produces:
            expected |= {("topic", p.topic, "literal", "Describe"), ("topic", p.topic, "literal", "Write")}
            if principal.describe_topic_configs:
                expected.add(("topic", p.topic, "literal", "DescribeConfigs"))
            if p.transactional:
                prefix = principal.transactional_id_prefix
                assert prefix and prefix.startswith(principal.name)
                # No IdempotentWrite on the cluster: Kafka has not needed it since 3.0.
                expected |= {
                    ("transactionalId", prefix, "prefix", "Describe"),
                    ("transactionalId", prefix, "prefix", "Write"),
                }
        got = {(a.resource.value, a.name, a.pattern, op) for a in acls_for(principal) for op in a.operations}
        assert got == expected, principal.name
        for acl in acls_for(principal):
            assert acl.name not in ("*", "") and "All" not in acl.operations
            if acl.pattern == "prefix" and acl.operations != ("Describe",):
                # A prefix that grants more than Describe is always the principal's own name space (a lag
                # exporter describes the groups others name under their declared prefix).
                assert acl.name.startswith(principal.name), acl


def test_exactly_once_apps_get_a_transactional_prefix_of_their_own() -> None:
    platform = load_platform("prod")
    agent_events = acls_for(platform.principal("agent-events"))
    assert Acl(AclResource.TRANSACTIONAL_ID, "agent-events-", "prefix", ("Describe", "Write")) in agent_events
    gateway = acls_for(platform.principal("agent-gateway"))
    assert all(a.resource != AclResource.TRANSACTIONAL_ID for a in gateway)


def test_overrides_apply_per_environment() -> None:
    prod, local = load_platform("prod"), load_platform("local")
    assert prod.topic("agents.events.raw.v1").partitions == 48
    assert local.topic("agents.events.raw.v1").partitions == 3
    assert prod.principal("agent-gateway").quotas.producer_byte_rate == 52428800
    assert local.principal("agent-gateway").quotas.producer_byte_rate is None


def test_lineage_goes_from_producer_through_topic_to_consumer() -> None:
    edges = load_platform("local").lineage()
    assert ("agent-gateway", "agents.events.raw.v1", "produce") in edges
    assert ("agents.events.raw.v1", "agent-events", "group agent-events") in edges
    assert ("agent-events", "agents.signals.v1", "exactly-once") in edges


def test_stack_app_args_follow_the_catalog_and_win() -> None:
    local, prod = load_platform("local"), load_platform("prod")
    app = local.apps[[a.name for a in local.apps].index("feature-aggregator")]
    assert dict(local.app_args(app))["window-size-ms"] == "10000"
    assert "window-size-ms" not in dict(prod.app_args(app))


@pytest.mark.parametrize("stack", STACKS)
def test_the_lag_exporter_may_describe_every_declared_group_and_read_nothing(stack: str) -> None:
    platform = load_platform(stack)
    (exporter,) = [p for p in platform.principals if p.monitors]
    # Connect workers read their internal topics by assignment and commit no offsets: no lag to export.
    workers = {c.name for c in platform.connect_clusters}
    flows = {(c.group, c.topic) for p in platform.principals if p.name not in workers for c in p.consumes}
    assert {(m.group, m.topic) for m in exporter.monitors} == flows
    assert not exporter.consumes and not exporter.produces
    ops = {op for a in acls_for(exporter) for op in a.operations}
    assert ops == {"Describe"}
