"""The approvers' page's Kubernetes objects against the Kubernetes schemas, and what they must say."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from components.approvers_page import (
    HTTPS_PORT,
    render_approvers_page,
    session_secret,
    tls_secret,
    users_secret,
)
from headwater.action_gate import approvers_description
from headwater.config import load_platform, stack_names
from headwater.spec import Authentication
from headwater_cli.render import render_stack
from headwater_cli.validate import validate_object


def _by_kind(stack: str) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in render_approvers_page(load_platform(stack))}


@pytest.mark.parametrize("stack", stack_names())
def test_the_page_objects_are_schema_valid_in_every_stack(stack: str) -> None:
    objs = render_approvers_page(load_platform(stack))
    assert sorted(o["kind"] for o in objs) == ["ConfigMap", "Deployment", "NetworkPolicy", "Service"]
    for o in objs:
        assert validate_object(o) == [], o["kind"]
    # Part of the stack's render, once.
    rendered = {(o["kind"], o.get("metadata", {}).get("name")) for o in render_stack(load_platform(stack))}
    assert {(o["kind"], o["metadata"]["name"]) for o in objs} <= rendered


def test_a_broken_page_deployment_is_caught() -> None:
    deployment = copy.deepcopy(_by_kind("prod")["Deployment"])
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "https"
    assert validate_object(deployment) != []


@pytest.mark.parametrize("stack", stack_names())
def test_https_only_as_the_approvers_principal_non_root(stack: str) -> None:
    platform = load_platform(stack)
    gate = platform.action_gate
    assert gate is not None
    objs = _by_kind(stack)
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["image"].endswith("approval-gate:0.1.0")  # the gate's image holds the page
    args = container["command"]
    assert args[:3] == ["python", "-m", "approval_gate.approvers.main"]
    assert any(a.startswith("--tls-cert=") for a in args) and any(a.startswith("--tls-key=") for a in args)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS"
    # Its certificate, users and session key come from Secrets, never from config.
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert {tls_secret(platform), users_secret(platform), session_secret(platform)} <= secrets
    principal = platform.principal(gate.approvers[0])
    env = {e["name"]: e for e in container["env"]}
    if principal.authentication == Authentication.SCRAM:
        ref = env["HEADWATER_KAFKA_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": principal.name, "key": "password"}
    else:
        assert principal.name in secrets
    data = objs["ConfigMap"]["data"]
    assert json.loads(data["approvers.json"]) == approvers_description(platform)
    kafka = json.loads(data["kafka.json"])
    assert not {k for k in kafka if "password" in k}
    assert kafka.get("sasl.username", principal.name) == principal.name
    # The Service exposes HTTPS only; the network lets in HTTPS only, and out only to Kafka and DNS (and to
    # the span collector, where the stack names one).
    (port,) = objs["Service"]["spec"]["ports"]
    assert port["port"] == 443 and port["targetPort"] == "https"
    policy = objs["NetworkPolicy"]["spec"]
    assert policy["ingress"] == [{"ports": [{"port": HTTPS_PORT, "protocol": "TCP"}]}]
    to_kafka, to_dns, *to_collector = policy["egress"]
    assert {p["port"] for p in to_kafka["ports"]} == {9093}
    assert {p["port"] for p in to_dns["ports"]} == {53}
    export = platform.gate_settings.tracing if platform.gate_settings else None
    assert len(to_collector) == (1 if export is not None else 0)
    assert ("OTEL_EXPORTER_OTLP_ENDPOINT" in env) == (export is not None)
