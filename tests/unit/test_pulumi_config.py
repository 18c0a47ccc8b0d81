"""Stack configuration as Pulumi hands it to the program, secrets, chart sources, and the one validation entry point."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from components.k8s import release_inputs
from components.kafka_cluster import render_strimzi_operator
from headwater.config import (
    ROOT,
    ConfigError,
    decode_pulumi_config,
    load_platform,
    load_stack_config,
    refuse_encrypted,
)
from headwater_cli.render import render_stack


def _pulumi_values(config: dict[str, Any]) -> dict[str, str]:
    """What Pulumi passes a Python program: `headwater:<key>` -> a string (objects and lists as JSON)."""
    return {f"headwater:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}


@pytest.mark.parametrize("stack", ["local", "dev", "staging", "prod"])
def test_config_through_pulumi_builds_the_same_platform_as_the_stack_file(stack: str) -> None:
    from_file = load_platform(stack)
    values = _pulumi_values(load_stack_config(stack)) | {"aws:region": "eu-west-1"}
    assert load_platform(stack, decode_pulumi_config(values)) == from_file


def test_plain_strings_and_scalars_from_pulumi_config_set() -> None:
    decoded = decode_pulumi_config(
        {"headwater:environment": "dev", "headwater:allowLoadBalancer": "true", "kubernetes:context": "x"}
    )
    assert decoded == {"environment": "dev", "allowLoadBalancer": True}


def test_s3_credentials_are_accepted_only_as_secrets_and_become_a_secret_object() -> None:
    config = copy.deepcopy(load_stack_config("dev"))
    config["flink"]["s3Credentials"] = {"accessKey": "ak", "secretKey": "very-secret-value"}

    with pytest.raises(ConfigError) as err:
        load_platform("dev", config)
    assert err.value.problems == [
        "stack dev: flink.s3Credentials = '(plain value)' is not valid; allowed: a Pulumi secret: "
        "`pulumi config set --secret --path flink.s3Credentials.secretKey ...` (and accessKey); "
        "never plain text in a stack file"
    ]

    platform = load_platform("dev", config, secret_keys={"headwater:flink"})
    assert "very-secret-value" not in repr(platform)
    (secret,) = [o for o in render_stack(platform) if o["kind"] == "Secret"]
    assert secret["metadata"]["name"] == config["flink"]["s3CredentialsSecret"]
    assert secret["stringData"] == {"access-key": "ak", "secret-key": "very-secret-value"}


def test_offline_tools_refuse_encrypted_values_naming_each(tmp_path: Path) -> None:
    config = copy.deepcopy(load_stack_config("dev"))
    config["flink"]["s3Credentials"] = {"accessKey": {"secure": "v1:abc"}, "secretKey": {"secure": "v1:def"}}
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    (stacks / "Pulumi.dev.yaml").write_text(
        json.dumps({"config": {f"headwater:{k}": v for k, v in config.items()}})
    )

    with pytest.raises(ConfigError) as refused:
        refuse_encrypted("dev", load_stack_config("dev", stacks))
    assert [p.split(" is a Pulumi secret")[0] for p in refused.value.problems] == [
        "stack dev: flink.s3Credentials.accessKey",
        "stack dev: flink.s3Credentials.secretKey",
    ]
    assert "pulumi config --show-secrets --json -s dev" in refused.value.problems[0]


def test_operator_charts_from_a_local_folder_or_their_repositories() -> None:
    config = copy.deepcopy(load_stack_config("prod"))
    config["operatorCharts"] = "charts"
    platform = load_platform("prod", config)
    local = release_inputs(render_strimzi_operator(platform.watched_namespaces, platform.operator_charts))
    assert local["chart"] == str(ROOT / "charts" / "strimzi-kafka-operator-1.2.0")
    assert "repositoryOpts" not in local and "version" not in local
    assert local["skipCrds"] is True

    upstream = release_inputs(render_strimzi_operator(platform.watched_namespaces))
    assert upstream["chart"].startswith("oci://") and upstream["version"] == "1.2.0"

    config["operatorCharts"] = "no/such/folder"
    with pytest.raises(ConfigError) as err:
        load_platform("prod", config)
    (problem,) = err.value.problems
    assert problem.startswith("stack prod: operatorCharts = 'no/such/folder' is not valid; allowed: a folder")
    assert "lacks strimzi-kafka-operator-1.2.0, flink-kubernetes-operator-1.15.0" in problem


def test_every_stack_renders_the_operators_crds_from_the_charts() -> None:
    objs = render_stack(load_platform("dev"))
    crds = {o["metadata"]["name"] for o in objs if o["kind"] == "CustomResourceDefinition"}
    assert {
        "kafkas.kafka.strimzi.io",
        "kafkanodepools.kafka.strimzi.io",
        "flinkdeployments.flink.apache.org",
    } <= crds
    assert all(o.get("skipCrds") for o in objs if o["kind"] == "HelmRelease")


def test_rules_pulumi_up_would_hit_are_the_loaders() -> None:
    """Checkpoint storage, the apps' flows and the registry: rejected with the stack's other problems,
    before any resource is registered (they used to raise inside the components, after Kafka was created)."""
    config = copy.deepcopy(load_stack_config("dev"))
    del config["flink"]["s3CredentialsSecret"]
    config["flink"]["stateUri"] = "gs://bucket"
    config["registry"]["tlsSecret"] = "registry-tls"
    with pytest.raises(ConfigError) as err:
        load_platform("dev", config)
    keys = sorted(p.split(" = ")[0].removeprefix("stack dev: ") for p in err.value.problems)
    assert keys == ["flink.deployMinio", "flink.deployMinio", "flink.stateUri", "registry.tlsSecret"]


def test_another_catalog_folder(tmp_path: Path) -> None:
    config = copy.deepcopy(load_stack_config("dev"))
    config["catalog"] = str(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_platform("dev", config)
    assert err.value.problems == [
        f"stack dev: catalog = '{tmp_path}' is not valid; allowed: a folder holding catalog.yaml and its schemas/ "
        f"(absolute, or relative to {ROOT})"
    ]
    config["catalog"] = "catalog"
    assert load_platform("dev", config).catalog_dir == str(ROOT / "catalog")
