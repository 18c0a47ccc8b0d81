"""The pack as Pulumi runs it: policy objects, the analyzer service in process, and `policies/__main__.py`
started the way the Python policy analyzer starts it (`python -m pulumi.policy <engine> <pack dir>`)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime import proto
from pulumi_policy import EnforcementLevel, Policy, ResourceValidationPolicy
from pulumi_policy.policy import _PolicyAnalyzerServicer

from headwater.config import load_platform
from headwater.spec import Tier
from headwater_cli.check import resource_of
from headwater_cli.render import render_stack
from policies import pack
from policies.rulebook import PolicyConfigError, StackFacts, image_problem, parse_policy_config

POLICIES_DIR = Path(pack.__file__).resolve().parent
EXPECTED_POLICIES = {
    "cdc-database-tls",
    "cdc-exactly-once",
    "cdc-contract-check",
    "cdc-outbox-contract",
    "strimzi-api-version",
    "strimzi-listener-security",
    "strimzi-authorization",
    "strimzi-acl-least-privilege",
    "strimzi-topic-durability",
    "strimzi-topic-convention",
    "strimzi-topic-cleanup",
    "flink-state-backend",
    "flink-exactly-once",
    "flink-durable-state",
    "flink-high-availability",
    "flink-upgrade-mode",
    "flink-pinned-versions",
    "flink-current-config-keys",
    "flink-resources",
    "k8s-pinned-images",
    "k8s-pod-security",
    "k8s-operator-pod-security",
    "k8s-no-load-balancer",
    "feature-store-redis-config",
    "feature-store-redis-workload",
    "gate-approvers-page-https",
}
LEVELS = {proto.ADVISORY: "advisory", proto.MANDATORY: "mandatory", proto.DISABLED: "disabled"}


def _plaintext_kafka_request() -> Any:
    """An AnalyzeRequest for the prod Kafka with a plaintext listener, as the engine would send it."""
    (kafka,) = [o for o in render_stack(load_platform("prod")) if o["kind"] == "Kafka"]
    kafka["spec"]["kafka"]["listeners"].append(
        {"name": "plain", "port": 9092, "type": "internal", "tls": False, "authentication": {"type": "tls"}}
    )
    resource_type, props = resource_of(kafka)
    struct = struct_pb2.Struct()
    struct.update(props)
    return proto.AnalyzeRequest(
        type=resource_type, properties=struct, urn=f"urn:pulumi:prod::headwater::{resource_type}::k", name="k"
    )


def test_pack_arguments_build_every_policy_without_a_server() -> None:
    args = pack.pack_arguments(StackFacts(stack="prod", environment=Tier.PROD))
    policies = args["policies"]
    assert args["name"] == "headwater"
    assert all(isinstance(p, ResourceValidationPolicy) for p in policies)
    assert [p.name for p in policies] == [r.name for r in pack.RULES]
    assert {p.name for p in policies} == EXPECTED_POLICIES
    assert all(p.config_schema and "environment" in p.config_schema.properties for p in policies)


@pytest.mark.parametrize(
    ("environment", "level"),
    [
        (Tier.LOCAL, EnforcementLevel.ADVISORY),
        (Tier.DEV, EnforcementLevel.ADVISORY),
        (Tier.STAGING, EnforcementLevel.MANDATORY),
        (Tier.PROD, EnforcementLevel.MANDATORY),
        (None, EnforcementLevel.MANDATORY),  # unknown environment: judged as prod
    ],
)
def test_default_levels_follow_the_environment(environment: Tier | None, level: EnforcementLevel) -> None:
    policies = pack.build_policies(StackFacts(environment=environment))
    assert {p.enforcement_level for p in policies} == {level}


def test_stack_facts_come_from_the_config_pulumi_passes() -> None:
    facts = StackFacts.from_environ(
        {
            "PULUMI_STACK": "dev",
            "PULUMI_CONFIG": json.dumps(
                {
                    "headwater:environment": "dev",
                    "headwater:allowLoadBalancer": "true",
                    "headwater:kafka": "{}",
                }
            ),
        }
    )
    assert facts == StackFacts(stack="dev", environment=Tier.DEV, allow_load_balancer=True)
    assert StackFacts.from_environ({}).tier == Tier.PROD
    assert StackFacts.from_environ({"PULUMI_CONFIG": "not json"}).environment is None


def test_analyzer_service_reports_violations_with_the_environment_level() -> None:
    for environment, level in ((Tier.PROD, "mandatory"), (Tier.DEV, "advisory")):
        args = pack.pack_arguments(StackFacts(environment=environment))
        servicer = _PolicyAnalyzerServicer(
            args["name"], "0.1.0", args["policies"], args["enforcement_level"], args["initial_config"]
        )
        info = servicer.GetAnalyzerInfo(None, None)
        assert {p.name for p in info.policies} == EXPECTED_POLICIES
        assert {LEVELS[p.enforcementLevel] for p in info.policies} == {level}
        response = servicer.Analyze(_plaintext_kafka_request(), None)
        found = [(d.policyName, LEVELS[d.enforcementLevel]) for d in response.diagnostics]
        if environment == Tier.PROD:
            assert found == [("strimzi-listener-security", "mandatory")]
            assert "listeners[1] (plain, port 9092) is plaintext" in response.diagnostics[0].message
        else:
            assert found == []  # an authenticated plaintext listener is fine in dev


def test_policy_config_sets_level_and_environment_per_policy() -> None:
    args = pack.pack_arguments(StackFacts(environment=Tier.PROD))
    servicer = _PolicyAnalyzerServicer(args["name"], "0.1.0", args["policies"], args["enforcement_level"])
    config = struct_pb2.Struct()
    config.update({"environment": "staging"})
    servicer.Configure(
        proto.ConfigureAnalyzerRequest(
            policyConfig={
                "strimzi-listener-security": proto.PolicyConfig(
                    enforcementLevel=proto.ADVISORY, properties=config
                )
            }
        ),
        None,
    )
    response = servicer.Analyze(_plaintext_kafka_request(), None)
    assert [(d.policyName, LEVELS[d.enforcementLevel]) for d in response.diagnostics] == [
        ("strimzi-listener-security", "advisory")
    ]
    assert "in a staging environment" in response.diagnostics[0].message


def test_environment_config_file_becomes_the_initial_config(tmp_path: Path) -> None:
    (tmp_path / "prod.json").write_text(
        json.dumps(
            {"flink-high-availability": "advisory", "k8s-no-load-balancer": {"allowLoadBalancer": True}}
        )
    )
    args = pack.pack_arguments(StackFacts(environment=Tier.PROD), config_dir=tmp_path)
    assert args["initial_config"] == {
        "flink-high-availability": EnforcementLevel.ADVISORY,
        "k8s-no-load-balancer": {"allowLoadBalancer": True},
    }
    assert (
        pack.pack_arguments(StackFacts(environment=Tier.DEV), config_dir=tmp_path)["initial_config"] is None
    )
    # accepted by the SDK as it is
    servicer = _PolicyAnalyzerServicer(
        "headwater", "0.1.0", args["policies"], args["enforcement_level"], args["initial_config"]
    )
    info = servicer.GetAnalyzerInfo(None, None)
    assert LEVELS[info.initialConfig["flink-high-availability"].enforcementLevel] == "advisory"


def test_bad_policy_config_names_every_problem() -> None:
    with pytest.raises(PolicyConfigError) as err:
        parse_policy_config(
            {
                "no-such-policy": "mandatory",
                "all": "strict",
                "flink-durable-state": {"environment": "qa", "bucket": "x"},
                "k8s-no-load-balancer": {"allowLoadBalancer": "yes"},
            },
            pack.RULES,
            "policy.json",
        )
    problems = err.value.problems
    assert len(problems) == 5
    assert problems[0].startswith(
        "unknown policy 'no-such-policy'; policies: all, cdc-contract-check, cdc-database-tls"
    )
    assert (
        problems[1] == "all: enforcement level 'strict' is not valid; allowed: advisory, mandatory, disabled"
    )
    assert (
        problems[2]
        == "flink-durable-state.environment = 'qa' is not valid; allowed: local, dev, staging, prod"
    )
    assert (
        problems[3]
        == "flink-durable-state: unknown property 'bucket'; allowed: enforcementLevel, environment"
    )
    assert (
        problems[4] == "k8s-no-load-balancer.allowLoadBalancer = 'yes' is not valid; allowed: true or false"
    )


@pytest.mark.parametrize(
    ("ref", "problem"),
    [
        ("flink:2.2.1", None),
        ("registry:5000/team/app:1.0", None),
        ("app@sha256:" + "0" * 64, None),
        ("registry:5000/team/app", "has no tag (it means latest)"),
        ("app:latest", "uses the latest tag"),
        ("", "is empty"),
    ],
)
def test_image_pinning(ref: str, problem: str | None) -> None:
    assert image_problem(ref) == problem


@pytest.fixture
def served_pack() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`policies/` started as the Python policy analyzer does for `pulumi preview --policy-pack policies`."""
    env = {
        **os.environ,
        "PULUMI_CONFIG": json.dumps({"headwater:environment": "prod"}),
        "PULUMI_STACK": "prod",
        "PULUMI_PROJECT": "headwater",
        "PULUMI_DRY_RUN": "true",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "pulumi.policy", "127.0.0.1:1", str(POLICIES_DIR)],
        cwd=POLICIES_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        # A guard against a pack that never starts, not a measurement.
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        line = proc.stdout.readline() if ready else b""
        if not line.strip().isdigit():
            proc.kill()
            raise AssertionError(f"the pack did not start: {line!r} {proc.communicate()[1].decode()[-2000:]}")
        yield proc, int(line)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_main_serves_the_pack_to_the_engine(served_pack: tuple[subprocess.Popen[bytes], int]) -> None:
    _, port = served_pack
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = proto.AnalyzerStub(channel)
        info = stub.GetAnalyzerInfo(empty_pb2.Empty())
        assert info.name == "headwater" and info.supportsConfig
        assert {p.name for p in info.policies} == EXPECTED_POLICIES
        assert {LEVELS[p.enforcementLevel] for p in info.policies} == {"mandatory"}  # from PULUMI_CONFIG
        schema = json_format.MessageToDict(
            next(p for p in info.policies if p.name == "k8s-no-load-balancer").configSchema.properties
        )
        assert schema["allowLoadBalancer"]["type"] == "boolean"
        response = stub.Analyze(_plaintext_kafka_request())
        assert [d.policyName for d in response.diagnostics] == ["strimzi-listener-security"]


@pytest.mark.parametrize("resource_type", ["pulumi:providers:kubernetes", "headwater:platform:Platform"])
def test_providers_and_components_are_not_judged(resource_type: str) -> None:
    servicer = _PolicyAnalyzerServicer(
        "headwater",
        "0.1.0",
        list[Policy](pack.build_policies(StackFacts(environment=Tier.PROD))),
        EnforcementLevel.ADVISORY,
    )
    struct = struct_pb2.Struct()
    struct.update({"spec": {"type": "LoadBalancer"}, "image": "x:latest"})
    request = proto.AnalyzeRequest(type=resource_type, properties=struct, urn="urn:x", name="x")
    assert list(servicer.Analyze(request, None).diagnostics) == []
