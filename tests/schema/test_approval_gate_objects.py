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
    platform = load_platform("local")  # names no span collector
    assert platform.gate_settings is not None and platform.gate_settings.tracing is None
    policy = _by_kind("local")["NetworkPolicy"]["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"] and policy["ingress"] == []
    to_kafka, to_dns = policy["egress"]
    assert to_kafka["to"] == [
        {"podSelector": {"matchLabels": {"strimzi.io/cluster": platform.kafka.cluster_name}}}
    ]
    assert {p["port"] for p in to_kafka["ports"]} == {9093}
    assert {p["port"] for p in to_dns["ports"]} == {53}


@pytest.mark.parametrize("stack", [s for s in stack_names() if s != "local"])
def test_where_the_stack_names_a_collector_the_spans_may_leave_for_it_only(stack: str) -> None:
    """The gate's and the page's pods: the SDK's OTLP/HTTP variables, the collector's CA from its Secret (an
    https endpoint), and one more egress rule: the collector's pods in its namespace, on its port."""
    from components.approvers_page import render_approvers_page

    platform = load_platform(stack)
    assert platform.gate_settings is not None
    export = platform.gate_settings.tracing
    assert export is not None
    for objs in (render_approval_gate(platform), render_approvers_page(platform)):
        by_kind = {o["kind"]: o for o in objs}
        pod = by_kind["Deployment"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == export.otlp_endpoint
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
        secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        if export.ca_secret is not None:
            assert export.otlp_endpoint.startswith("https://")
            assert export.ca_secret in secrets and "/etc/headwater/otlp-ca" in mounts
            assert env["OTEL_EXPORTER_OTLP_CERTIFICATE"] == "/etc/headwater/otlp-ca/ca.crt"
        else:
            assert "OTEL_EXPORTER_OTLP_CERTIFICATE" not in env and "/etc/headwater/otlp-ca" not in mounts
        *_, to_collector = by_kind["NetworkPolicy"]["spec"]["egress"]
        assert to_collector == {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": export.collector_namespace}
                    },
                    "podSelector": {"matchLabels": dict(export.collector_labels)},
                }
            ],
            "ports": [{"port": 4318, "protocol": "TCP"}],
        }
        for o in objs:
            assert validate_object(o) == [], o["kind"]


def test_without_a_collector_no_span_leaves_the_pods() -> None:
    from components.approvers_page import render_approvers_page

    platform = load_platform("local")
    for objs in (render_approval_gate(platform), render_approvers_page(platform)):
        by_kind = {o["kind"]: o for o in objs}
        (container,) = by_kind["Deployment"]["spec"]["template"]["spec"]["containers"]
        assert not [e for e in container["env"] if e["name"].startswith("OTEL_")]
        assert len(by_kind["NetworkPolicy"]["spec"]["egress"]) == 2
