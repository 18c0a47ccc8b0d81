"""The SchemaRegistry component in every stack: rendered objects, Kafka wiring, ACL needs, Pulumi registration."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pulumi
import pytest

from components.kafka_topics import render_topic
from components.kafka_users import render_user
from components.schema_registry import (
    SchemaRegistry,
    SchemaRegistryArgs,
    external_url,
    registry_properties,
    render_schema_registry,
    service_url,
)
from components.testing import RecordingMocks, pulumi_test
from headwater import versions
from headwater.config import load_platform
from headwater.contracts import kafkasql
from headwater.contracts.model import load_contracts
from headwater.spec import Acl, AclResource, Authentication, Consume, Platform, Produce
from headwater_cli.validate import validate_object

STACKS = ["local", "dev", "staging", "prod"]
# The registry's principal, storage topics and group prefix, as the catalog names them.
STORE = kafkasql.storage(load_platform("local"))


def _objects(platform: Platform) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in render_schema_registry(platform)}


def _container(platform: Platform) -> dict[str, Any]:
    (container,) = _objects(platform)["Deployment"]["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _props(platform: Platform) -> dict[str, str]:
    text = _objects(platform)["ConfigMap"]["data"]["registry.properties"]
    return dict(line.split("=", 1) for line in text.splitlines())


@pytest.mark.parametrize("stack", STACKS)
def test_rendered_objects_validate_against_the_kubernetes_schemas(stack: str) -> None:
    for obj in render_schema_registry(load_platform(stack)):
        assert validate_object(obj) == [], obj["kind"]


@pytest.mark.parametrize(
    ("stack", "kinds", "replicas"),
    [
        ("local", ["ConfigMap", "Deployment", "Service", "NetworkPolicy"], 1),
        ("dev", ["ConfigMap", "Deployment", "Service", "NetworkPolicy"], 1),
        (
            "staging",
            ["ConfigMap", "Deployment", "Service", "Ingress", "NetworkPolicy", "PodDisruptionBudget"],
            2,
        ),
        (
            "prod",
            ["ConfigMap", "Deployment", "Service", "Ingress", "NetworkPolicy", "PodDisruptionBudget"],
            3,
        ),
    ],
)
def test_objects_and_replicas_per_stack(stack: str, kinds: list[str], replicas: int) -> None:
    platform = load_platform(stack)
    objs = _objects(platform)
    assert list(objs) == kinds
    deployment = objs["Deployment"]["spec"]
    assert deployment["replicas"] == replicas == platform.registry.replicas
    spread = deployment["template"]["spec"].get("topologySpreadConstraints", [])
    assert bool(spread) is (replicas > 1)
    if "PodDisruptionBudget" in objs:
        assert objs["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    assert _container(platform)["resources"] == platform.registry.resources.k8s()


@pytest.mark.parametrize("stack", STACKS)
def test_pod_is_pinned_non_root_and_unprivileged(stack: str) -> None:
    platform = load_platform(stack)
    pod = _objects(platform)["Deployment"]["spec"]["template"]["spec"]
    container = _container(platform)
    assert container["image"] == f"quay.io/apicurio/apicurio-registry:{versions.APICURIO_REGISTRY_VERSION}"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert pod["automountServiceAccountToken"] is False


@pytest.mark.parametrize("stack", STACKS)
def test_kafkasql_storage_uses_the_tls_listener_as_its_own_principal(stack: str) -> None:
    platform = load_platform(stack)
    props = _props(platform)
    assert props["apicurio.storage.kind"] == "kafkasql"
    assert (
        props["apicurio.kafkasql.bootstrap.servers"]
        == f"headwater-kafka-bootstrap.{platform.namespace}.svc:9093"
    )
    assert props["apicurio.kafkasql.topic"] == STORE.topics.journal
    assert props["apicurio.kafkasql.topic.auto-create"] == "false"
    assert props["apicurio.kafkasql.consumer.group-prefix"] == STORE.group_prefix
    assert props["apicurio.kafka.common.ssl.truststore.location"] == "/etc/headwater/kafka-ca/ca.crt"
    assert props["apicurio.kafka.common.ssl.endpoint.identification.algorithm"] == "https"
    volumes = {v["name"]: v for v in _objects(platform)["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["kafka-ca"]["secret"]["secretName"] == f"{platform.kafka.cluster_name}-cluster-ca-cert"
    env = {e["name"]: e for e in _container(platform)["env"]}
    if platform.kafka.authentication == Authentication.SCRAM:
        assert props["apicurio.kafka.common.security.protocol"] == "SASL_SSL"
        assert props["apicurio.kafka.common.sasl.mechanism"] == "SCRAM-SHA-512"
        assert props["apicurio.kafka.common.sasl.jaas.config"] == "${KAFKA_SASL_JAAS_CONFIG}"
        ref = env["KAFKA_SASL_JAAS_CONFIG"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "schema-registry", "key": "sasl.jaas.config"}
        assert "kafka-user" not in volumes
    else:
        assert props["apicurio.kafka.common.security.protocol"] == "SSL"
        assert props["apicurio.kafka.common.ssl.keystore.location"] == "/etc/headwater/kafka-user/user.p12"
        ref = env["KAFKA_KEYSTORE_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "schema-registry", "key": "user.password"}
        assert volumes["kafka-user"]["secret"]["secretName"] == "schema-registry"
    text = _objects(platform)["ConfigMap"]["data"]["registry.properties"]
    assert "password=" not in text.replace("password=${KAFKA_KEYSTORE_PASSWORD}", "")


@pytest.mark.parametrize("stack", STACKS)
def test_journal_topic_is_deleted_never_and_never_compacted(stack: str) -> None:
    platform = load_platform(stack)
    topic = render_topic(platform, platform.topic(STORE.topics.journal))
    config = topic["spec"]["config"]
    assert config["cleanup.policy"] == "delete"
    assert config["retention.ms"] == "-1"


@pytest.mark.parametrize("stack", STACKS)
def test_service_and_ingress_expose_the_ccompat_api(stack: str) -> None:
    platform = load_platform(stack)
    objs = _objects(platform)
    (port,) = objs["Service"]["spec"]["ports"]
    assert (objs["Service"]["metadata"]["name"], port["port"], objs["Service"]["spec"]["type"]) == (
        "schema-registry",
        8080,
        "ClusterIP",
    )
    assert service_url(platform) == f"http://schema-registry.{platform.namespace}.svc:8080"
    if platform.registry.host:
        spec = objs["Ingress"]["spec"]
        assert spec["ingressClassName"] == platform.registry.ingress_class
        assert spec["tls"] == [
            {"hosts": [platform.registry.host], "secretName": platform.registry.tls_secret}
        ]
        assert spec["rules"][0]["host"] == platform.registry.host
        assert external_url(platform) == f"https://{platform.registry.host}"
        assert registry_properties(platform)["quarkus.http.proxy.proxy-address-forwarding"] == "true"
    else:
        assert "Ingress" not in objs and external_url(platform) is None


def test_registry_acls_are_derived_from_its_flows() -> None:
    platform = load_platform("prod")
    user = render_user(platform, platform.principal(STORE.principal.name))
    acls = user["spec"]["authorization"]["acls"]
    assert {
        "resource": {"type": "topic", "name": STORE.topics.journal, "patternType": "literal"},
        "operations": ["Describe", "DescribeConfigs", "Read", "Write"],
    } in acls
    assert {
        "resource": {"type": "group", "name": STORE.group_prefix, "patternType": "prefix"},
        "operations": ["Read"],
    } in acls
    assert kafkasql.ungranted(platform) == []
    assert user["spec"]["authentication"] == {"type": "tls"}


def test_what_kafkasql_needs_beyond_the_declared_flows_is_reported() -> None:
    """A registry principal with only journal flows (what the catalog declared first) misses the rest."""
    prod = load_platform("prod")
    journal_only = replace(
        prod.principal(STORE.principal.name),
        consumes=(Consume(STORE.topics.journal, "schema-registry"),),
        produces=(Produce(STORE.topics.journal),),
        describe_topic_configs=False,
    )
    platform = replace(
        prod,
        topics=tuple(t for t in prod.topics if t.name not in (STORE.topics.snapshots, STORE.topics.events)),
        principals=tuple(journal_only if p.name == STORE.principal.name else p for p in prod.principals),
    )
    gaps = kafkasql.ungranted(platform)
    assert any(f"no topic {STORE.topics.snapshots!r}" in g for g in gaps)
    assert any(f"no topic {STORE.topics.events!r}" in g for g in gaps)
    assert any(f"DescribeConfigs on topic {STORE.topics.journal!r}" in g for g in gaps)
    assert any(f"Write on topic {STORE.topics.events!r}" in g for g in gaps)
    assert any("Read on group 'schema-registry-' (prefix)" in g for g in gaps)
    assert not any(f"Read on topic {STORE.topics.journal!r}" in g for g in gaps)  # the flows grant that
    assert len(gaps) == 2 + 7  # two topics; 9 needs minus journal Read and Write


def test_coverage_follows_kafka_acl_semantics() -> None:
    need_group = kafkasql.Need(AclResource.GROUP, "schema-registry-", "prefix", "Read", "")
    need_configs = kafkasql.Need(AclResource.TOPIC, "j.v1", "literal", "DescribeConfigs", "")
    need_describe = kafkasql.Need(AclResource.TOPIC, "j.v1", "literal", "Describe", "")
    literal_group = Acl(AclResource.GROUP, "schema-registry", "literal", ("Read",))
    prefix_group = Acl(AclResource.GROUP, "schema-", "prefix", ("Read",))
    assert not kafkasql.covers([literal_group], need_group)
    assert kafkasql.covers([prefix_group], need_group)
    assert kafkasql.covers([Acl(AclResource.TOPIC, "j.v1", "literal", ("AlterConfigs",))], need_configs)
    assert not kafkasql.covers([Acl(AclResource.TOPIC, "j.v1", "literal", ("Read",))], need_configs)
    assert kafkasql.covers([Acl(AclResource.TOPIC, "j.v1", "literal", ("Write",))], need_describe)


def test_invalid_settings_fail_fast_naming_key_value_and_allowed() -> None:
    prod = load_platform("prod")
    with pytest.raises(ValueError, match=r"registry.replicas = 1 is not valid; allowed: at least 2 in prod"):
        SchemaRegistryArgs(replace(prod, registry=replace(prod.registry, replicas=1)))
    with pytest.raises(ValueError, match=r"registry.tlsSecret = None is not valid; allowed: a TLS secret"):
        SchemaRegistryArgs(replace(prod, registry=replace(prod.registry, tls_secret=None)))
    dev = load_platform("dev")
    with pytest.raises(
        ValueError, match=r"registry.ingressClass = 'nginx' is not valid; allowed: only together"
    ):
        SchemaRegistryArgs(replace(dev, registry=replace(dev.registry, ingress_class="nginx")))
    principals = tuple(
        replace(p, authentication=Authentication.SCRAM) if p.name == STORE.principal.name else p
        for p in prod.principals
    )
    with pytest.raises(ValueError, match=r"authentication = 'scram-sha-512' is not valid; allowed: tls"):
        SchemaRegistryArgs(replace(prod, principals=principals))


@pytest.mark.parametrize("stack", STACKS)
def test_component_registers_objects_and_one_subject_per_contract(
    mocks: RecordingMocks, stack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HEADWATER_REGISTRY_URL", raising=False)
    platform = load_platform(stack)
    seen: dict[str, Any] = {}

    @pulumi_test
    def build() -> Any:
        registry = SchemaRegistry("registry", SchemaRegistryArgs(platform))
        return pulumi.Output.all(registry.ccompat_url, registry.urn).apply(
            lambda v: seen.update(url=v[0], urn=v[1])
        )

    build()
    assert seen["url"] == f"http://schema-registry.{platform.namespace}.svc:8080/apis/ccompat/v7"
    kinds = sorted(r.typ for r in mocks.resources if r.typ.startswith("kubernetes:"))
    expected = {o["kind"] for o in render_schema_registry(platform)}
    assert {k.rsplit(":", 1)[1] for k in kinds} == expected
    subjects = [r for r in mocks.resources if r.typ.endswith("dynamic/headwater:SubjectSchema")]
    contracts = {c.subject: c for c in load_contracts(platform)}
    assert {r.inputs["subject"] for r in subjects} == set(contracts)
    url = f"https://{platform.registry.host}" if platform.registry.host else service_url(platform)
    for r in subjects:
        contract = contracts[r.inputs["subject"]]
        assert r.inputs["registry_url"] == url
        assert r.inputs["compatibility"] == contract.compatibility.value
        assert r.inputs["schema"] == contract.text
        assert r.name == f"registry-subject-{contract.topic}"
        assert r.custom is True


@pytest.mark.parametrize("stack", STACKS)
def test_only_platform_pods_and_the_ingress_controller_reach_the_registry(stack: str) -> None:
    platform = load_platform(stack)
    policy = _objects(platform)["NetworkPolicy"]
    (rule,) = policy["spec"]["ingress"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert {"podSelector": {}} in rule["from"]
    ingress_peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    assert (ingress_peer in rule["from"]) == bool(platform.registry.host)


@pytest.mark.parametrize("stack", STACKS)
def test_registry_authenticates_and_authorizes_by_role(stack: str) -> None:
    """No anonymous access: basic authentication of the catalog's registry users, each with one role."""
    from headwater.contracts import access

    platform = load_platform(stack)
    props = registry_properties(platform)
    assert props["quarkus.http.auth.basic"] == "true"
    assert props["apicurio.auth.role-based-authorization"] == "true"
    assert props["apicurio.auth.anonymous-read-access.enabled"] == "false"
    roles = {
        k.rsplit(".", 1)[1]: v
        for k, v in props.items()
        if k.startswith("quarkus.security.users.embedded.roles.")
    }
    # The platform writes; every principal whose flows touch a contracted topic reads, nobody else.
    contracted = {t.name for t in platform.topics if t.schema}
    readers = {
        p.name
        for p in platform.principals
        if contracted & ({c.topic for c in p.consumes} | {f.topic for f in p.produces})
    }
    assert roles == {"contracts-publisher": "sr-developer"} | {name: "sr-readonly" for name in readers}
    assert STORE.principal.name not in roles and "agent-gateway" in roles and "agent-events" in roles
    # Passwords only as references to the environment, which takes them from one Secret per user.
    env = {e["name"]: e for e in _container(platform)["env"]}
    for user in access.registry_users(platform):
        assert props[f"quarkus.security.users.embedded.users.{user.name}"] == "${" + user.password_env + "}"
        ref = env[user.password_env]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": f"{user.name}-registry", "key": "password"}
    text = _objects(platform)["ConfigMap"]["data"]["registry.properties"]
    assert "quarkus.http.auth.basic=true" in text


def test_contracts_are_registered_as_the_publisher_with_its_secret_password(
    mocks: RecordingMocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HEADWATER_REGISTRY_PASSWORD", raising=False)
    platform = load_platform("prod")
    import base64

    mocks.existing[("kubernetes:core/v1:Secret", "headwater/contracts-publisher-registry")] = {
        "data": {"password": base64.b64encode(b"publisher-pw").decode()}
    }

    @pulumi_test
    def build() -> Any:
        return SchemaRegistry("registry", SchemaRegistryArgs(platform)).urn

    build()
    (read,) = mocks.reads
    assert read.resource_id == "headwater/contracts-publisher-registry"
    subjects = [r for r in mocks.resources if r.typ.endswith("dynamic/headwater:SubjectSchema")]
    assert subjects and all(r.inputs["username"] == "contracts-publisher" for r in subjects)
    from pulumi.runtime import rpc

    for r in subjects:  # a secret input: Pulumi keeps it encrypted in its state
        assert r.inputs["password"] == {
            rpc._special_sig_key: rpc._special_secret_sig,
            "value": "publisher-pw",
        }
