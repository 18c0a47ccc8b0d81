"""Strimzi rules: each one passes what the shipped stacks render and fails a changed object, with a message
that says what to change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from headwater.config import load_platform, stack_names

Obj = dict[str, Any]
Get = Callable[[str, str], Obj]
Judge = Callable[..., list[str]]

KAFKA = "Kafka/headwater/headwater"
TOPIC = "KafkaTopic/headwater/agents.signals.v1"
FEATURE_TOPIC = "KafkaTopic/headwater/features.agent-activity.v1"
JOURNAL = "KafkaTopic/headwater/platform.registry-journal.v1"
USER = "KafkaUser/headwater/agent-runtime"
TRANSACTIONAL_USER = "KafkaUser/headwater/agent-events"
PLAINTEXT = {
    "name": "plain",
    "port": 9092,
    "type": "internal",
    "tls": False,
    "authentication": {"type": "scram-sha-512"},
}


# --- strimzi-api-version -----------------------------------------------------------------------------


@pytest.mark.parametrize("stack", stack_names())
def test_every_rendered_strimzi_resource_uses_v1(
    stack: str, objs_of_kind: Callable[[str, str], list[Obj]], judge: Judge
) -> None:
    for kind in ("Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser"):
        for o in objs_of_kind(stack, kind):
            assert judge("strimzi-api-version", o) == []


def test_v1beta2_is_rejected_with_the_served_version(obj: Get, judge: Judge) -> None:
    topic = obj("prod", TOPIC)
    topic["apiVersion"] = "kafka.strimzi.io/v1beta2"
    (message,) = judge("strimzi-api-version", topic)
    assert "kafka.strimzi.io/v1beta2 is not served by Strimzi 1.2.0" in message
    assert "use kafka.strimzi.io/v1" in message


def test_non_strimzi_resources_are_not_judged_by_strimzi_rules(obj: Get, judge: Judge) -> None:
    flink = obj("prod", "FlinkDeployment/headwater/agent-events")
    assert judge("strimzi-api-version", flink) == []
    assert judge("strimzi-listener-security", flink) == []


# --- strimzi-listener-security -----------------------------------------------------------------------


def test_prod_listeners_pass(obj: Get, judge: Judge) -> None:
    assert judge("strimzi-listener-security", obj("prod", KAFKA)) == []


def test_plaintext_listener_fails_in_prod(obj: Get, judge: Judge) -> None:
    kafka = obj("prod", KAFKA)
    kafka["spec"]["kafka"]["listeners"].append(PLAINTEXT)
    (message,) = judge("strimzi-listener-security", kafka)
    assert (
        "spec.kafka.listeners[1] (plain, port 9092) is plaintext (tls: false) in a prod environment"
        in message
    )
    assert "set tls: true" in message and "kafka.plaintextListener: false" in message


def test_authenticated_plaintext_listener_is_allowed_in_dev(obj: Get, judge: Judge) -> None:
    kafka = obj("dev", KAFKA)
    kafka["spec"]["kafka"]["listeners"].append(PLAINTEXT)
    assert judge("strimzi-listener-security", kafka, environment="dev") == []
    assert len(judge("strimzi-listener-security", kafka, environment="staging")) == 1


def test_listener_without_authentication_fails_even_in_dev(obj: Get, judge: Judge) -> None:
    kafka = obj("dev", KAFKA)
    del kafka["spec"]["kafka"]["listeners"][0]["authentication"]
    (message,) = judge("strimzi-listener-security", kafka, environment="dev")
    assert "spec.kafka.listeners[0] (tls, port 9093) has no authentication" in message
    assert "tls, scram-sha-512, custom" in message


def test_no_listener_at_all_fails(obj: Get, judge: Judge) -> None:
    kafka = obj("prod", KAFKA)
    kafka["spec"]["kafka"]["listeners"] = []
    assert judge("strimzi-listener-security", kafka) == [
        "spec.kafka.listeners is empty: declare a TLS listener with authentication"
    ]


# --- strimzi-authorization ---------------------------------------------------------------------------


def test_simple_authorization_passes(obj: Get, judge: Judge) -> None:
    assert judge("strimzi-authorization", obj("prod", KAFKA)) == []


def test_missing_authorization_fails(obj: Get, judge: Judge) -> None:
    kafka = obj("prod", KAFKA)
    del kafka["spec"]["kafka"]["authorization"]
    (message,) = judge("strimzi-authorization", kafka)
    assert message.startswith("spec.kafka.authorization.type is None: set it to simple")


def test_allow_everyone_if_no_acl_fails(obj: Get, judge: Judge) -> None:
    kafka = obj("prod", KAFKA)
    kafka["spec"]["kafka"]["config"]["allow.everyone.if.no.acl.found"] = True
    (message,) = judge("strimzi-authorization", kafka)
    assert "allow.everyone.if.no.acl.found is true: remove it" in message


# --- strimzi-acl-least-privilege ---------------------------------------------------------------------


def test_acls_derived_from_flows_pass(objs_of_kind: Callable[[str, str], list[Obj]], judge: Judge) -> None:
    users = objs_of_kind("prod", "KafkaUser")
    assert len(users) == len(load_platform("prod").principals)
    for user in users:
        assert judge("strimzi-acl-least-privilege", user) == []


def _add_acl(user: Obj, name: str, pattern: str, operations: list[str], **extra: Any) -> Obj:
    user["spec"]["authorization"]["acls"].append(
        {
            "resource": {"type": "topic", "name": name, "patternType": pattern},
            "operations": operations,
            **extra,
        }
    )
    return user


def test_wildcard_topic_acl_fails(obj: Get, judge: Judge) -> None:
    user = _add_acl(obj("prod", USER), "*", "literal", ["Read"])
    (message,) = judge("strimzi-acl-least-privilege", user)
    assert "KafkaUser agent-runtime allows Read on every topic (name '*' with patternType literal)" in message
    assert "catalog/catalog.yaml" in message


def test_empty_prefix_covers_every_topic_and_fails(obj: Get, judge: Judge) -> None:
    user = _add_acl(obj("prod", USER), "", "prefix", ["Write"])
    (message,) = judge("strimzi-acl-least-privilege", user)
    assert "allows Write on every topic (name '' with patternType prefix)" in message


def test_a_real_prefix_and_a_wildcard_deny_pass(obj: Get, judge: Judge) -> None:
    user = _add_acl(obj("prod", USER), "agents.", "prefix", ["Read"])
    user = _add_acl(user, "*", "literal", ["Write"], type="deny")
    assert judge("strimzi-acl-least-privilege", user) == []


def test_all_operation_fails(obj: Get, judge: Judge) -> None:
    user = _add_acl(obj("prod", USER), "agents.signals.v1", "literal", ["All"])
    (message,) = judge("strimzi-acl-least-privilege", user)
    assert "grants the All operation on topic agents.signals.v1" in message
    assert "list only the operations the flows need" in message


def test_wildcard_transactional_id_fails(obj: Get, judge: Judge) -> None:
    user = obj("prod", TRANSACTIONAL_USER)
    for acl in user["spec"]["authorization"]["acls"]:
        if acl["resource"]["type"] == "transactionalId":
            acl["resource"]["name"] = "*"
    (message,) = judge("strimzi-acl-least-privilege", user)
    assert "on every transactionalId (name '*' with patternType prefix)" in message


# --- strimzi-topic-durability ------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_shipped_topics_and_cluster_are_durable(
    stack: str, objs_of_kind: Callable[[str, str], list[Obj]], judge: Judge
) -> None:
    for o in objs_of_kind(stack, "KafkaTopic") + objs_of_kind(stack, "Kafka"):
        assert judge("strimzi-topic-durability", o, environment=stack) == []


def test_replication_factor_one_fails_in_prod(obj: Get, judge: Judge) -> None:
    topic = obj("prod", TOPIC)
    topic["spec"]["replicas"] = 1
    assert judge("strimzi-topic-durability", topic) == [
        "topic agents.signals.v1: spec.replicas = 1: a prod topic needs a replication factor of at least 3 "
        "(kafka.replicationFactor in the stack)",
        "topic agents.signals.v1: replicas (1) must be greater than min.insync.replicas (2), so producers "
        "with acks=all keep writing while one broker is down",
    ]


def test_min_isr_below_two_fails_in_prod(obj: Get, judge: Judge) -> None:
    topic = obj("prod", TOPIC)
    topic["spec"]["config"]["min.insync.replicas"] = "1"
    (message,) = judge("strimzi-topic-durability", topic)
    assert "min.insync.replicas = 1: a prod topic needs at least 2" in message


def test_rf_equal_to_min_isr_fails_in_staging(obj: Get, judge: Judge) -> None:
    topic = obj("staging", TOPIC)
    topic["spec"]["config"]["min.insync.replicas"] = "3"
    (message,) = judge("strimzi-topic-durability", topic, environment="staging")
    assert "replicas (3) must be greater than min.insync.replicas (3)" in message


def test_missing_replicas_and_isr_fail_in_prod(obj: Get, judge: Judge) -> None:
    topic = obj("prod", TOPIC)
    del topic["spec"]["replicas"]
    del topic["spec"]["config"]["min.insync.replicas"]
    messages = judge("strimzi-topic-durability", topic)
    assert len(messages) == 2
    assert "spec.replicas is not set (the broker default would apply): set it" in messages[0]
    assert "min.insync.replicas is not set" in messages[1]


def test_single_replica_topics_are_fine_in_dev(obj: Get, judge: Judge) -> None:
    topic = obj("dev", TOPIC)
    assert topic["spec"]["replicas"] == 1
    assert judge("strimzi-topic-durability", topic, environment="dev") == []


def test_cluster_defaults_below_prod_minimum_fail(obj: Get, judge: Judge) -> None:
    kafka = obj("prod", KAFKA)
    kafka["spec"]["kafka"]["config"]["default.replication.factor"] = 1
    messages = judge("strimzi-topic-durability", kafka)
    assert messages[0].startswith("spec.kafka.config default.replication.factor = 1")
    assert "set it to at least 3 in prod" in messages[0]
    assert "must be greater than min.insync.replicas (2)" in messages[1]
    assert len(messages) == 2


# --- strimzi-topic-convention ------------------------------------------------------------------------


@pytest.mark.parametrize("stack", stack_names())
def test_catalog_topics_follow_the_convention(
    stack: str, objs_of_kind: Callable[[str, str], list[Obj]], judge: Judge
) -> None:
    for topic in objs_of_kind(stack, "KafkaTopic"):
        assert judge("strimzi-topic-convention", topic) == []


def test_topic_name_outside_the_convention_fails(obj: Get, judge: Judge) -> None:
    topic = obj("prod", TOPIC)
    topic["spec"]["topicName"] = "AgentSignals"
    (message,) = judge("strimzi-topic-convention", topic)
    assert "topic name 'AgentSignals' does not follow the convention <domain>.<dataset>.v<N>" in message


def test_missing_owner_and_unknown_sla_fail(obj: Get, judge: Judge) -> None:
    topic = obj("prod", TOPIC)
    del topic["metadata"]["labels"]["headwater.io/owner"]
    topic["metadata"]["labels"]["headwater.io/sla"] = "platinum"
    messages = judge("strimzi-topic-convention", topic)
    assert len(messages) == 2
    assert "label headwater.io/owner is None: set it to the owning team" in messages[0]
    assert "label headwater.io/sla is 'platinum': set it to one of gold, silver, bronze" in messages[1]


def test_missing_kind_label_fails(obj: Get, judge: Judge) -> None:
    topic = obj("prod", TOPIC)
    del topic["metadata"]["labels"]["headwater.io/kind"]
    (message,) = judge("strimzi-topic-convention", topic)
    assert "label headwater.io/kind is None: set it to one of events, state, feature" in message


# --- strimzi-topic-cleanup ---------------------------------------------------------------------------


@pytest.mark.parametrize("stack", stack_names())
def test_shipped_topics_have_the_cleanup_of_their_kind(
    stack: str, objs_of_kind: Callable[[str, str], list[Obj]], judge: Judge
) -> None:
    for topic in objs_of_kind(stack, "KafkaTopic"):
        assert judge("strimzi-topic-cleanup", topic) == []


def test_feature_topic_with_delete_fails(obj: Get, judge: Judge) -> None:
    topic = obj("prod", FEATURE_TOPIC)
    topic["spec"]["config"]["cleanup.policy"] = "delete"
    (message,) = judge("strimzi-topic-cleanup", topic)
    assert (
        "feature topic features.agent_activity.v1: cleanup.policy is 'delete': set it to compact" in message
    )


def test_state_topic_must_be_compacted_too(obj: Get, judge: Judge) -> None:
    topic = obj("prod", TOPIC)
    topic["metadata"]["labels"]["headwater.io/kind"] = "state"
    (message,) = judge("strimzi-topic-cleanup", topic)
    assert "state topic agents.signals.v1: cleanup.policy is 'delete': set it to compact" in message


def test_journal_with_finite_retention_fails(obj: Get, judge: Judge) -> None:
    journal = obj("prod", JOURNAL)
    journal["spec"]["config"]["retention.ms"] = "604800000"
    (message,) = judge("strimzi-topic-cleanup", journal)
    assert "journal topic platform.registry_journal.v1: retention.ms is '604800000': set it to -1" in message


def test_compacted_journal_fails(obj: Get, judge: Judge) -> None:
    journal = obj("prod", JOURNAL)
    journal["spec"]["config"]["cleanup.policy"] = "compact"
    (message,) = judge("strimzi-topic-cleanup", journal)
    assert "cleanup.policy is 'compact': set it to delete" in message


AUDIT = "KafkaTopic/headwater/audit.actions.v1"


def test_the_audit_trail_passes_as_rendered(obj: Get, judge: Judge) -> None:
    audit = obj("prod", AUDIT)
    assert audit["metadata"]["labels"]["headwater.io/kind"] == "audit"
    assert judge("strimzi-topic-cleanup", audit) == []


def test_an_audit_trail_that_expires_or_compacts_fails(obj: Get, judge: Judge) -> None:
    audit = obj("prod", AUDIT)
    audit["spec"]["config"]["retention.ms"] = "31536000000"
    audit["spec"]["config"]["cleanup.policy"] = "compact"
    messages = judge("strimzi-topic-cleanup", audit)
    assert any(
        "audit topic audit.actions.v1: retention.ms is '31536000000': set it to -1" in m for m in messages
    )
    assert any(
        "audit topic audit.actions.v1: cleanup.policy is 'compact': set it to delete" in m for m in messages
    )
