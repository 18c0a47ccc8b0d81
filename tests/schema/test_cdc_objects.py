"""Kafka Connect and its connectors against Strimzi 1.2.0's CRDs, and what they must say."""

from __future__ import annotations

import copy

import pytest

from components.kafka_connect import contract_check_url, plugin_url, render_cdc
from headwater import versions
from headwater.config import load_platform, stack_names
from headwater_cli.validate import validate_object


@pytest.mark.parametrize("stack", stack_names())
def test_connect_and_its_connectors_are_schema_valid_in_every_stack(stack: str) -> None:
    objs = render_cdc(load_platform(stack))
    kinds = sorted(o["kind"] for o in objs)
    assert kinds == ["ConfigMap", "KafkaConnect", "KafkaConnector", "Role", "RoleBinding"]
    for o in objs:
        assert validate_object(o) == [], o["kind"]


def test_the_build_pulls_the_pinned_debezium_archive_with_its_checksum() -> None:
    (connect,) = [o for o in render_cdc(load_platform("prod")) if o["kind"] == "KafkaConnect"]
    plugin, contract_check = connect["spec"]["build"]["plugins"]
    (artifact,) = plugin["artifacts"]
    assert artifact["url"] == plugin_url()
    assert artifact["url"].startswith(
        "https://repo1.maven.org/maven2/io/debezium/debezium-connector-postgres/"
    )
    assert f"/{versions.DEBEZIUM_VERSION}/" in artifact["url"]
    assert len(artifact["sha512sum"]) == 128 and int(artifact["sha512sum"], 16)
    # Our contract check, as the stack says the platform team published it, its SHA-512 checked by the build.
    platform = load_platform("prod")
    published = platform.connect_cluster("cdc-connect").contract_check
    assert published is not None
    assert contract_check == {
        "name": "contract-check",
        "artifacts": [{"type": "jar", "url": contract_check_url(published), "sha512sum": published.sha512}],
    }
    assert contract_check_url(published) == (
        f"{published.repository}/dev/headwater/connect/contract-check/{versions.CONTRACT_CHECK_VERSION}/"
        f"contract-check-{versions.CONTRACT_CHECK_VERSION}.jar"
    )
    spec = connect["spec"]
    assert spec["version"] == versions.KAFKA_VERSION
    assert spec["authentication"]["type"] == "tls"  # prod's principals authenticate with certificates
    assert spec["tls"]["trustedCertificates"][0]["secretName"] == "headwater-cluster-ca-cert"
    assert spec["metricsConfig"]["type"] == "jmxPrometheusExporter"
    assert spec["config"]["exactly.once.source.support"] == "enabled"
    assert spec["replicas"] == 3


def test_credentials_come_from_the_sources_secret_and_never_appear_in_plain() -> None:
    objs = render_cdc(load_platform("prod"))
    (connector,) = [o for o in objs if o["kind"] == "KafkaConnector"]
    (role,) = [o for o in objs if o["kind"] == "Role"]
    config = connector["spec"]["config"]
    assert config["database.password"] == "${secrets:headwater/agent-actions-db-cdc:password}"
    assert config["database.user"] == "${secrets:headwater/agent-actions-db-cdc:username}"
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["agent-actions-db-cdc"],
            "verbs": ["get"],
        }
    ]
    assert config["slot.name"] == config["publication.name"] == "headwater_agent_actions_db"


def test_a_broken_connect_object_is_caught_by_the_crd() -> None:
    (connect,) = [o for o in render_cdc(load_platform("dev")) if o["kind"] == "KafkaConnect"]
    broken = copy.deepcopy(connect)
    broken["spec"]["build"]["plugins"][0]["artifacts"][0]["type"] = "tar.gz"
    broken["spec"]["bootstrap"] = broken["spec"].pop("bootstrapServers")
    messages = validate_object(broken)
    assert any(m.startswith("spec.build.plugins[0].artifacts[0].type") for m in messages), messages
    assert any(m.startswith("spec.bootstrap: unknown field") for m in messages), messages
    assert any("bootstrapServers" in m for m in messages), messages
