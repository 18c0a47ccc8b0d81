"""Pulumi wiring of the Kafka components with mocks: counts, names, parents, outputs, fail-fast args."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pulumi
import pytest

from components.kafka_cluster import KafkaCluster, KafkaClusterArgs
from components.kafka_topics import KafkaTopics, KafkaTopicsArgs
from components.kafka_users import KafkaPrincipals, KafkaPrincipalsArgs
from components.testing import RecordingMocks, pulumi_test
from headwater.config import load_platform
from headwater.spec import Tier


def test_prod_cluster_children_outputs_and_parents(mocks: RecordingMocks) -> None:
    p = load_platform("prod")
    seen: list[Any] = []

    @pulumi_test
    def build() -> Any:
        cluster = KafkaCluster("kafka", KafkaClusterArgs(p.namespace, p.tier, p.kafka))
        return pulumi.Output.all(cluster.bootstrap, cluster.cluster_ca_secret, cluster.kafka.urn).apply(
            seen.extend
        )

    build()
    if True:
        bootstrap, ca, kafka_urn = seen
        assert bootstrap == "headwater-kafka-bootstrap.headwater.svc:9093"
        assert ca == "headwater-cluster-ca-cert"
        assert "headwater:kafka:KafkaCluster$kubernetes:kafka.strimzi.io/v1:Kafka::kafka-kafka" in kafka_urn
        pools = mocks.of_type("kubernetes:kafka.strimzi.io/v1:KafkaNodePool")
        assert sorted(r.name for r in pools) == [
            "kafka-kafkanodepool-brokers",
            "kafka-kafkanodepool-controllers",
        ]
        (kafka,) = mocks.of_type("kubernetes:kafka.strimzi.io/v1:Kafka")
        assert kafka.inputs["spec"]["kafka"]["listeners"][0]["authentication"] == {"type": "tls"}
        # The brokers' metrics rules and Cruise Control's.
        assert len(mocks.of_type("kubernetes:core/v1:ConfigMap")) == 2


def test_topics_and_principals_one_resource_each(mocks: RecordingMocks) -> None:
    p = load_platform("staging")
    seen: dict[str, Any] = {}

    @pulumi_test
    def build() -> Any:
        topics = KafkaTopics("topics", KafkaTopicsArgs(p))
        principals = KafkaPrincipals("principals", KafkaPrincipalsArgs(p))
        return pulumi.Output.all(principals.secrets, topics.topics["agents.signals.v1"].urn).apply(
            lambda v: seen.update(secrets=v[0], topic_urn=v[1])
        )

    build()  # returns once every registration has reached the mocks
    assert seen["secrets"] == {pr.name: pr.name for pr in p.principals}
    assert "headwater:kafka:KafkaTopics$kubernetes:kafka.strimzi.io/v1:KafkaTopic" in seen["topic_urn"]
    assert len(mocks.of_type("kubernetes:kafka.strimzi.io/v1:KafkaTopic")) == len(p.topics)
    users = {r.name: r for r in mocks.of_type("kubernetes:kafka.strimzi.io/v1:KafkaUser")}
    assert set(users) == {f"principals-{pr.name}" for pr in p.principals}
    assert users["principals-agent-gateway"].inputs["spec"]["authorization"]["acls"] == [
        {
            "resource": {"type": "topic", "name": "agents.events.raw.v1", "patternType": "literal"},
            "operations": ["Describe", "Write"],
        }
    ]


@pytest.mark.parametrize("stack", ["local", "dev", "staging", "prod"])
def test_whole_platform_registers_every_rendered_object(mocks: RecordingMocks, stack: str) -> None:
    """`pulumi up` creates exactly what `headwater render` writes: same objects, same content."""
    from components.k8s import object_key
    from components.platform import HeadwaterPlatform
    from headwater_cli.render import render_stack

    p = load_platform(stack)

    @pulumi_test
    def build() -> Any:
        return HeadwaterPlatform("headwater", p).bootstrap

    build()
    rendered = {object_key(o): o for o in render_stack(p)}
    registered: dict[str, dict[str, Any]] = {}
    for r in mocks.resources:
        if r.typ == "kubernetes:helm.sh/v3:Release":
            registered[f"HelmRelease/{r.inputs['namespace']}/{r.inputs['name']}"] = dict(r.inputs)
        elif r.typ.startswith("kubernetes:"):
            meta = r.inputs.get("metadata") or {}
            kind = r.typ.rsplit(":", 1)[1]
            ns = meta.get("namespace")
            registered[f"{kind}/{ns}/{meta['name']}" if ns else f"{kind}/{meta['name']}"] = dict(r.inputs)
    assert set(registered) == set(rendered)
    for key, obj in rendered.items():
        if obj["kind"] == "HelmRelease":
            assert registered[key]["version"] == obj["version"]
            assert registered[key]["values"] == obj["values"]
        else:
            fields = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
            got = {k: v for k, v in registered[key].items() if k not in ("apiVersion", "kind")}
            assert got == fields, key
    parents = {r.name for r in mocks.resources}
    assert "headwater-kafka-kafka" in parents


def test_args_validate_themselves() -> None:
    p = load_platform("prod")
    with pytest.raises(ValueError, match=r"kafka.brokers = 1 \(allowed: at least 3 in prod\)"):
        KafkaClusterArgs(
            p.namespace, Tier.PROD, replace(p.kafka, brokers=1, replication_factor=1, min_insync_replicas=1)
        )
    bad = replace(p, principals=(replace(p.principal("agent-gateway"), produces=()),))
    KafkaPrincipalsArgs(bad)  # fine: no flows at all
    from headwater.spec import Produce

    worse = replace(p, principals=(replace(p.principal("agent-gateway"), produces=(Produce("x.y.v1"),)),))
    with pytest.raises(ValueError, match="not in the catalog"):
        KafkaPrincipalsArgs(worse)


def test_operator_releases_wait_for_the_namespaces_their_charts_write_into(mocks: RecordingMocks) -> None:
    """The Strimzi chart creates RoleBindings in the watched (platform) namespace, not only its own."""
    from components.platform import HeadwaterPlatform

    @pulumi_test
    def build() -> Any:
        return HeadwaterPlatform("headwater", load_platform("prod")).bootstrap

    build()
    for release in ("headwater-strimzi-release", "headwater-flink-operator-release"):
        assert mocks.depends_on(release, "headwater-namespace"), release
        assert mocks.depends_on(release, "headwater-operators-namespace"), release
