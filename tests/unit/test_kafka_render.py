"""Kafka renderers on every stack: plain dicts in, plain dicts out, no mocks."""

from __future__ import annotations

from typing import Any

import pytest

from components.kafka_cluster import render_kafka_cluster, render_strimzi_operator
from components.kafka_topics import render_topics
from components.kafka_users import render_users
from headwater import versions
from headwater.config import load_platform, stack_names
from headwater_cli.render import dump, render_stack

STACKS = stack_names()


def _kafka(stack: str) -> dict[str, Any]:
    p = load_platform(stack)
    (kafka,) = [o for o in render_kafka_cluster(p.kafka, p.namespace, p.tier) if o["kind"] == "Kafka"]
    return kafka


def _pools(stack: str) -> dict[str, dict[str, Any]]:
    p = load_platform(stack)
    return {
        o["metadata"]["name"]: o
        for o in render_kafka_cluster(p.kafka, p.namespace, p.tier)
        if o["kind"] == "KafkaNodePool"
    }


@pytest.mark.parametrize("stack", STACKS)
def test_only_v1_strimzi_resources(stack: str) -> None:
    for obj in render_stack(load_platform(stack)):
        if obj.get("apiVersion", "").startswith("kafka.strimzi.io"):
            assert obj["apiVersion"] == "kafka.strimzi.io/v1"


def test_prod_brokers_spread_over_three_zones_with_dedicated_controllers() -> None:
    pools = _pools("prod")
    assert pools["brokers"]["spec"]["roles"] == ["broker"] and pools["brokers"]["spec"]["replicas"] == 6
    assert (
        pools["controllers"]["spec"]["roles"] == ["controller"]
        and pools["controllers"]["spec"]["replicas"] == 3
    )
    spread = pools["brokers"]["spec"]["template"]["pod"]["topologySpreadConstraints"][0]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone" and spread["maxSkew"] == 1
    volumes = pools["brokers"]["spec"]["storage"]["volumes"]
    assert len(volumes) == 2 and all(
        v["class"] == "encrypted-ssd" and v["type"] == "persistent-claim" for v in volumes
    )
    assert _kafka("prod")["spec"]["kafka"]["rack"] == {"topologyKey": "topology.kubernetes.io/zone"}


def test_dev_uses_one_combined_pool() -> None:
    pools = _pools("dev")
    assert list(pools) == ["dual-role"]
    assert pools["dual-role"]["spec"]["roles"] == ["controller", "broker"]


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_tls_only_listeners_and_authorization(stack: str) -> None:
    spec = _kafka(stack)["spec"]["kafka"]
    assert all(listener["tls"] for listener in spec["listeners"])
    assert all(
        listener["authentication"]["type"] in ("tls", "scram-sha-512") for listener in spec["listeners"]
    )
    assert spec["authorization"]["type"] == "simple"
    assert spec["authorization"]["superUsers"] == ["CN=platform-admin"]


def test_prod_cluster_settings() -> None:
    kafka = _kafka("prod")
    config = kafka["spec"]["kafka"]["config"]
    assert config["auto.create.topics.enable"] is False
    assert config["default.replication.factor"] == 3 and config["min.insync.replicas"] == 2
    assert (
        config["transaction.state.log.replication.factor"] == 3
        and config["transaction.state.log.min.isr"] == 2
    )
    assert kafka["spec"]["kafka"]["version"] == versions.KAFKA_VERSION
    assert kafka["spec"]["kafka"]["metricsConfig"]["type"] == "jmxPrometheusExporter"
    assert "kafkaExporter" in kafka["spec"] and "userOperator" in kafka["spec"]["entityOperator"]
    assert kafka["metadata"]["annotations"]["pulumi.com/waitFor"] == "condition=Ready"


def test_dev_plaintext_listener_is_still_authenticated() -> None:
    from headwater.config import load_stack_config

    cfg = load_stack_config("dev")
    cfg["kafka"]["plaintextListener"] = True
    p = load_platform("dev", config=cfg)
    (kafka,) = [o for o in render_kafka_cluster(p.kafka, p.namespace, p.tier) if o["kind"] == "Kafka"]
    plain = [x for x in kafka["spec"]["kafka"]["listeners"] if not x["tls"]]
    assert len(plain) == 1 and plain[0]["authentication"]["type"] == "scram-sha-512"


def test_topics_carry_ownership_and_environment_settings() -> None:
    p = load_platform("prod")
    topics = {t["spec"]["topicName"]: t for t in render_topics(p)}
    raw = topics["agents.events.raw.v1"]
    assert raw["spec"]["partitions"] == 48 and raw["spec"]["replicas"] == 3
    assert raw["metadata"]["labels"]["headwater.io/owner"] == "agent-platform"
    assert raw["metadata"]["labels"]["headwater.io/sla"] == "gold"
    assert raw["spec"]["config"]["retention.ms"] == str(7 * 86_400_000)
    features = topics["features.agent_activity.v1"]
    assert features["spec"]["config"]["cleanup.policy"] == "compact"
    assert features["metadata"]["name"] == "features.agent-activity.v1"  # no underscores in Kubernetes names
    journal = topics["platform.registry_journal.v1"]["spec"]["config"]
    assert journal["cleanup.policy"] == "delete" and journal["retention.ms"] == "-1"


def test_users_use_the_v1_operations_list_and_per_env_authentication() -> None:
    prod = {u["metadata"]["name"]: u for u in render_users(load_platform("prod"))}
    dev = {u["metadata"]["name"]: u for u in render_users(load_platform("dev"))}
    assert prod["agent-gateway"]["spec"]["authentication"]["type"] == "tls"
    assert dev["agent-gateway"]["spec"]["authentication"]["type"] == "scram-sha-512"
    assert prod["agent-gateway"]["spec"]["quotas"] == {"producerByteRate": 52428800}
    for user in prod.values():
        for acl in user["spec"]["authorization"]["acls"]:
            assert isinstance(acl["operations"], list) and "operation" not in acl
            assert acl["resource"].get("name") != "*" and "All" not in acl["operations"]


def test_operator_uses_the_restricted_pod_security_provider() -> None:
    """Strimzi 1.2.0 defaults to the baseline provider: its pods would be refused by restricted namespaces."""
    release = render_strimzi_operator(("headwater",))
    envs = {e["name"]: e["value"] for e in release.values["extraEnvs"]}
    assert envs["STRIMZI_POD_SECURITY_PROVIDER_CLASS"] == "restricted"


def test_kafka_has_no_obsolete_annotations() -> None:
    """Strimzi 1.x is KRaft and node pools only; the annotations that switched them on are gone."""
    for stack in STACKS:
        annotations = _kafka(stack)["metadata"]["annotations"]
        assert not [a for a in annotations if a in ("strimzi.io/node-pools", "strimzi.io/kraft")], stack


def test_cruise_control_is_bounded_and_knows_broker_capacity() -> None:
    cc = _kafka("prod")["spec"]["cruiseControl"]
    assert cc["resources"] == {
        "requests": {"cpu": "500m", "memory": "2Gi"},
        "limits": {"cpu": "2", "memory": "2Gi"},
    }
    # Both network capacities: without them Strimzi drops the network capacity and distribution goals.
    assert cc["brokerCapacity"] == {"inboundNetwork": "500MiB/s", "outboundNetwork": "500MiB/s"}
    assert "cruiseControl" not in _kafka("staging")["spec"]


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_pools_run_one_pod_per_node_in_the_declared_zones(stack: str) -> None:
    racks = list(load_platform(stack).kafka.racks)
    for name, pool in _pools(stack).items():
        affinity = pool["spec"]["template"]["pod"]["affinity"]
        (term,) = affinity["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        assert term["labelSelector"]["matchLabels"]["strimzi.io/pool-name"] == name
        (selector,) = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"
        ]
        assert selector["matchExpressions"][0]["values"] == racks


def test_single_node_pool_needs_no_placement_rules() -> None:
    assert "template" not in _pools("dev")["dual-role"]["spec"]


@pytest.mark.parametrize("stack", STACKS)
def test_rack_aware_replica_selector_only_with_clients_that_know_their_rack(stack: str) -> None:
    """The selector serves only consumers that set client.rack; none of the platform's clients can."""
    from components.flink_application import render_flink_applications
    from components.schema_registry import render_schema_registry

    p = load_platform(stack)
    config = _kafka(stack)["spec"]["kafka"]["config"]
    clients = [dump(o) for o in [*render_flink_applications(p), *render_schema_registry(p)]]
    if not any("client.rack" in text for text in clients):
        assert "replica.selector.class" not in config


def test_operator_chart_and_images_are_pinned() -> None:
    release = render_strimzi_operator(("headwater",))
    assert release.version == versions.STRIMZI_VERSION
    assert release.values["defaultImageTag"] == versions.STRIMZI_VERSION
    assert release.values["watchNamespaces"] == ["headwater"] and release.values["watchAnyNamespace"] is False


def test_render_is_deterministic_and_anchor_free() -> None:
    first = [dump(o) for o in render_stack(load_platform("prod"))]
    second = [dump(o) for o in render_stack(load_platform("prod"))]
    assert first == second
    assert not any("&id" in text or "*id" in text for text in first)


def test_render_cli_writes_every_object(tmp_path: Any) -> None:
    from headwater_cli.main import main

    assert main(["render", "--stack", "prod", "--out", str(tmp_path)]) == 0
    files = sorted(p.name for p in tmp_path.glob("*.yaml"))
    assert len(files) == len(render_stack(load_platform("prod")))
    assert "Kafka_headwater_headwater.yaml" in files
