"""`headwater check`: every shipped stack passes; a weakened prod fails with exactly the expected violations,
at the config loader and at the policy layer; what it judges is what the Pulumi program registers."""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pulumi
import pytest
from google.protobuf import json_format, struct_pb2

from components.k8s import object_key
from components.platform import HeadwaterPlatform
from components.testing import RecordingMocks, pulumi_test
from headwater.config import ConfigError, load_platform, load_stack_config, stack_names
from headwater.spec import Platform
from headwater_cli import check
from headwater_cli.check import check_objects, check_stack, facts_of, resource_of
from headwater_cli.main import main
from headwater_cli.render import render_stack

STACKS = stack_names()


def test_the_shipped_stacks_are_the_four_environments() -> None:
    assert STACKS == ["dev", "local", "prod", "staging"]


@pytest.mark.parametrize("stack", STACKS)
def test_every_shipped_stack_passes_its_mandatory_rules(
    stack: str, capsys: pytest.CaptureFixture[str]
) -> None:
    report = check_stack(stack)
    assert report.objects >= 28 and report.policies == 26
    assert report.mandatory == [], report.format()
    assert main(["check", "--stack", stack]) == 0
    out = capsys.readouterr().out
    assert f"stack {stack} ({stack}): {report.objects} objects, 26 policies: 0 mandatory" in out


# --- the same objects as the Pulumi program --------------------------------------------------------------


def _canonical(props: Any) -> str:
    struct = struct_pb2.Struct()
    struct.update(dict(props))
    return json.dumps(json_format.MessageToDict(struct), sort_keys=True)


@pytest.mark.parametrize("stack", STACKS)
def test_check_judges_what_the_pulumi_program_registers(stack: str) -> None:
    platform = load_platform(stack)
    recorder = RecordingMocks.install()
    pulumi.runtime.set_mocks(recorder, project="headwater", stack=stack, preview=True)

    @pulumi_test
    def build() -> Any:
        return HeadwaterPlatform("headwater", platform).urn

    build()
    registered = Counter(
        (r.typ, _canonical(r.inputs)) for r in recorder.resources if r.typ.startswith("kubernetes:")
    )
    judged = Counter((t, _canonical(p)) for t, p in map(resource_of, render_stack(platform)))
    assert sum(registered.values()) == len(render_stack(platform))
    assert registered == judged


# --- a weakened prod ---------------------------------------------------------------------------------


def _weakened_prod_objects() -> list[dict[str, Any]]:
    """Prod as rendered, then weakened the way the loader would not let a stack file do it."""
    objs = {object_key(o): o for o in render_stack(load_platform("prod"))}
    objs["Kafka/headwater/headwater"]["spec"]["kafka"]["listeners"].append(
        {
            "name": "plain",
            "port": 9092,
            "type": "internal",
            "tls": False,
            "authentication": {"type": "scram-sha-512"},
        }
    )
    objs["KafkaTopic/headwater/agents.signals.v1"]["spec"]["replicas"] = 1
    app = objs["FlinkDeployment/headwater/agent-events"]["spec"]
    app["image"] = "registry.example.com/headwater/agent-events:latest"
    app["flinkConfiguration"]["execution.checkpointing.dir"] = "file:///flink/checkpoints"
    objs["KafkaUser/headwater/agent-runtime"]["spec"]["authorization"]["acls"].append(
        {"resource": {"type": "topic", "name": "*", "patternType": "literal"}, "operations": ["Read"]}
    )
    return list(objs.values())


def test_weakened_prod_fails_with_exactly_the_expected_violations() -> None:
    report = check_objects(_weakened_prod_objects(), facts_of(load_platform("prod")))
    found = [(f.resource, f.policy, f.level.value) for f in report.findings]
    assert found == [
        ("FlinkDeployment/headwater/agent-events", "flink-durable-state", "mandatory"),
        ("FlinkDeployment/headwater/agent-events", "flink-pinned-versions", "mandatory"),
        ("Kafka/headwater/headwater", "strimzi-listener-security", "mandatory"),
        ("KafkaTopic/headwater/agents.signals.v1", "strimzi-topic-durability", "mandatory"),
        ("KafkaTopic/headwater/agents.signals.v1", "strimzi-topic-durability", "mandatory"),
        ("KafkaUser/headwater/agent-runtime", "strimzi-acl-least-privilege", "mandatory"),
    ]
    messages = [f.message for f in report.findings]
    assert "execution.checkpointing.dir = file:///flink/checkpoints is a local (file://) path" in messages[0]
    assert (
        "spec.image 'registry.example.com/headwater/agent-events:latest' uses the latest tag" in messages[1]
    )
    assert "listeners[1] (plain, port 9092) is plaintext (tls: false) in a prod environment" in messages[2]
    assert "spec.replicas = 1: a prod topic needs a replication factor of at least 3" in messages[3]
    assert "replicas (1) must be greater than min.insync.replicas (2)" in messages[4]
    assert (
        "KafkaUser agent-runtime allows Read on every topic (name '*' with patternType literal)"
        in messages[5]
    )
    assert report.exit_code == 1


def test_weakened_prod_is_advisory_when_judged_as_dev() -> None:
    facts = facts_of(load_platform("dev"))
    report = check_objects(_weakened_prod_objects(), facts)
    assert report.mandatory == [] and report.exit_code == 0
    # dev thresholds: plaintext, RF 1 and file:// are fine there; latest and the wildcard ACL are not
    assert sorted(f.policy for f in report.advisory) == [
        "flink-pinned-versions",
        "strimzi-acl-least-privilege",
    ]


def _weakened_prod_config() -> dict[str, Any]:
    config = copy.deepcopy(load_stack_config("prod"))
    config["kafka"]["plaintextListener"] = True
    config["kafka"]["replicationFactor"] = 1
    config["flink"]["images"]["agent-events"] = "latest"
    config["flink"]["stateUri"] = "file:///var/lib/headwater/flink"
    config.setdefault("principals", {})["agent-runtime"] = {"transactionalIdPrefix": "*"}
    return config


def test_weakened_prod_config_is_stopped_by_the_loader_first() -> None:
    with pytest.raises(ConfigError) as err:
        load_platform("prod", config=_weakened_prod_config())
    keys = sorted(p.split(" = ")[0].removeprefix("stack prod: ") for p in err.value.problems)
    assert keys == [
        "flink.images.agent-events",
        "kafka.minInsyncReplicas",
        "kafka.plaintextListener",
        "kafka.replicationFactor",
        "kafka.replicationFactor",
        "principals.agent-runtime.transactionalIdPrefix",  # the stack's override, where the value is
    ]  # file:// state is not the loader's business: the policy layer catches it


def test_what_the_loader_lets_through_the_policies_catch() -> None:
    config = copy.deepcopy(load_stack_config("prod"))
    config["flink"]["stateUri"] = "file:///var/lib/headwater/flink"
    report = check_stack("prod", platform=load_platform("prod", config=config))
    found = sorted(
        (f.resource, f.policy, f.message.split(" = ")[0].rsplit(" ", 1)[1]) for f in report.findings
    )
    assert found == [
        (f"FlinkDeployment/headwater/{app}", "flink-durable-state", key)
        for app in ("agent-events", "feature-aggregator")
        for key in (
            "execution.checkpointing.dir",
            "execution.checkpointing.savepoint-dir",
            "high-availability.storageDir",
        )
    ]
    assert {f.level.value for f in report.findings} == {"mandatory"} and report.exit_code == 1


# --- the command ---------------------------------------------------------------------------------------


@pytest.fixture
def weak_prod(monkeypatch: pytest.MonkeyPatch) -> Platform:
    config = copy.deepcopy(load_stack_config("prod"))
    config["flink"]["stateUri"] = "file:///var/lib/headwater/flink"
    platform = load_platform("prod", config=config)
    monkeypatch.setattr(check, "load_platform", lambda stack: platform)
    return platform


def test_mandatory_violations_exit_1_grouped_by_resource(
    weak_prod: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--stack", "prod"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert (
        lines[0]
        == "FlinkDeployment/headwater/agent-events  (kubernetes:flink.apache.org/v1beta1:FlinkDeployment)"
    )
    assert all(
        line.startswith("  [mandatory] flink-durable-state: FlinkDeployment agent-events: ")
        for line in lines[1:4]
    )
    assert lines[4].startswith("FlinkDeployment/headwater/feature-aggregator  (")
    assert lines[-1] == (
        f"stack prod (prod): {len(render_stack(weak_prod))} objects, 26 policies: "
        "6 mandatory and 0 advisory violation(s) in 2 object(s)"
    )


def test_policy_config_can_make_a_rule_advisory(
    weak_prod: Platform, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy_config = tmp_path / "policy.json"
    policy_config.write_text(json.dumps({"flink-durable-state": {"enforcementLevel": "advisory"}}))
    assert main(["check", "--stack", "prod", "--policy-config", str(policy_config)]) == 0
    assert "6 advisory violation(s)" in capsys.readouterr().out
    policy_config.write_text(json.dumps({"all": "disabled"}))
    assert main(["check", "--stack", "prod", "--policy-config", str(policy_config)]) == 0
    assert "0 mandatory and 0 advisory" in capsys.readouterr().out


def test_policy_config_can_judge_a_rule_as_another_environment(weak_prod: Platform, tmp_path: Path) -> None:
    policy_config = tmp_path / "policy.json"
    policy_config.write_text(json.dumps({"flink-durable-state": {"environment": "dev"}}))
    assert check_stack("prod", policy_config).findings == []


def test_environment_policy_config_file_applies_by_itself(weak_prod: Platform, tmp_path: Path) -> None:
    (tmp_path / "prod.json").write_text(json.dumps({"flink-durable-state": "advisory"}))
    report = check_stack("prod", config_dir=tmp_path)
    assert report.exit_code == 0 and len(report.advisory) == 6
    # a file given on the command line wins over the environment's file
    override = tmp_path / "strict.json"
    override.write_text(json.dumps({"flink-durable-state": "mandatory"}))
    assert check_stack("prod", override, config_dir=tmp_path).exit_code == 1


def test_bad_policy_config_exits_2(
    weak_prod: Platform, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy_config = tmp_path / "policy.json"
    policy_config.write_text(json.dumps({"flink-durable-storage": "advisory"}))
    assert main(["check", "--stack", "prod", "--policy-config", str(policy_config)]) == 2
    err = capsys.readouterr().err
    assert f"policy config {policy_config}: unknown policy 'flink-durable-storage'" in err
    policy_config.write_text("{not json")
    assert main(["check", "--stack", "prod", "--policy-config", str(policy_config)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_bad_stack_config_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _weakened_prod_config()
    monkeypatch.setattr(check, "load_platform", lambda stack: load_platform("prod", config=config))
    assert main(["check", "--stack", "prod"]) == 2
    assert "kafka.plaintextListener = True is not valid" in capsys.readouterr().err
