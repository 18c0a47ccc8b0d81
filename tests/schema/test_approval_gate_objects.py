"""The approval gate's Kubernetes objects against the Kubernetes schemas, and what they must say."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from components.approval_gate import render_approval_gate
from headwater.action_gate import gate_description
from headwater.config import load_platform, stack_names
from headwater.spec import Authentication
from headwater_cli.validate import validate_object


def _by_kind(stack: str) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in render_approval_gate(load_platform(stack))}


@pytest.mark.parametrize("stack", stack_names())
def test_the_gate_objects_are_schema_valid_in_every_stack(stack: str) -> None:
    objs = render_approval_gate(load_platform(stack))
    assert sorted(o["kind"] for o in objs) == ["ConfigMap", "Deployment", "NetworkPolicy"]
    for o in objs:
        assert validate_object(o) == [], o["kind"]


def test_a_broken_gate_deployment_is_caught() -> None:
    deployment = copy.deepcopy(_by_kind("prod")["Deployment"])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    assert validate_object(deployment) != []


@pytest.mark.parametrize("stack", stack_names())
def test_one_non_root_pod_with_its_own_identity_and_probes(stack: str) -> None:
    platform = load_platform(stack)
    objs = _by_kind(stack)
    spec = objs["Deployment"]["spec"]
    # One transactional id: one pod, never two at once (a rolling update would overlap them).
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["image"].endswith("approval-gate:0.1.0")
    gate = platform.action_gate
    assert gate is not None
    principal = platform.principal(gate.principal)
    secrets = [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v]
    env = {e["name"]: e for e in container["env"]}
    if principal.authentication == Authentication.SCRAM:
        ref = env["HEADWATER_KAFKA_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": gate.principal, "key": "password"}
    else:
        assert gate.principal in secrets
    # The ConfigMap holds the description the gate reads and client settings without a secret.
    data = objs["ConfigMap"]["data"]
    assert json.loads(data["gate.json"]) == gate_description(platform)
    kafka = json.loads(data["kafka.json"])
    assert not {k for k in kafka if "password" in k}
    assert kafka.get("sasl.username", gate.principal) == gate.principal
    annotation = spec["template"]["metadata"]["annotations"]["headwater.io/config-hash"]
    assert len(annotation) == 16


def test_a_changed_policy_rolls_the_pod() -> None:
    from headwater.config import CATALOG_DIR, read_yaml

    catalog = read_yaml(CATALOG_DIR / "catalog.yaml")
    catalog["actionGate"]["riskPolicies"]["refund"]["autoApprove"]["maxAmount"] = 20
    before = _by_kind("prod")["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    changed = render_approval_gate(load_platform("prod", catalog=catalog))
    after = next(o for o in changed if o["kind"] == "Deployment")["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert before != after


def test_the_network_reaches_only_kafka_and_dns() -> None:
    platform = load_platform("prod")
    policy = _by_kind("prod")["NetworkPolicy"]["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"] and policy["ingress"] == []
    to_kafka, to_dns = policy["egress"]
    assert to_kafka["to"] == [
        {"podSelector": {"matchLabels": {"strimzi.io/cluster": platform.kafka.cluster_name}}}
    ]
    assert {p["port"] for p in to_kafka["ports"]} == {9093}
    assert {p["port"] for p in to_dns["ports"]} == {53}
