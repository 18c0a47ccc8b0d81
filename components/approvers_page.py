"""The approvers' page on Kubernetes: a Deployment serving HTTPS, its Service, its description and client
settings, a NetworkPolicy.

The page (`approval_gate.approvers`) ships in the gate's image and runs as the catalog's approvers' principal
(`headwater.action_gate.approvers_principal`): the KafkaUser Strimzi creates from the derived flows gives its
password (SCRAM) or client certificate (TLS). It serves HTTPS only, with the certificate of a
`kubernetes.io/tls` Secret (`tls.crt`, `tls.key`: what cert-manager or any CA writes; the cluster's to issue and
rotate, as for the registry's Ingress), and reads two more Secrets the cluster's operators create, never Pulumi
config: the approvers' users file (scrypt hashes, `python -m approval_gate.approvers.auth add`) and the key
that signs session cookies. The Service exposes the HTTPS port only; an Ingress or a port-forward in front of
it is the cluster's choice. Non-root, read-only root filesystem, no service account token, probes over HTTPS.
Network: ingress on the HTTPS port only; egress to the Kafka cluster's TLS listener and DNS, and to the span
collector where the stack names one (`headwater:actionGate.tracing`: the page's spans go there over OTLP/HTTP).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pulumi

from components.approval_gate import (
    KafkaClient,
    SpanExportPod,
    client_settings,
    network_policy,
    pod_spec,
    selector,
)
from components.k8s import create_object, labels, metadata
from headwater.action_gate import approvers_description, approvers_principal
from headwater.spec import Platform

COMPONENT = "approvers-page"
IMAGE = "approval-gate"  # the gate's image holds the page too (approval_gate/Dockerfile)
CONFIG_DIR = "/etc/headwater/approvers"
TLS_DIR = "/etc/headwater/approvers-tls"
USERS_DIR = "/etc/headwater/approvers-users"
SESSION_DIR = "/etc/headwater/approvers-session"
HTTPS_PORT = 8443
SERVICE_PORT = 443


def page_name(platform: Platform) -> str:
    return f"{approvers_principal(platform)}-page"


def tls_secret(platform: Platform) -> str:
    """The page's certificate (kubernetes.io/tls), for `<name>.<namespace>.svc` and the host people use."""
    return f"{page_name(platform)}-tls"


def users_secret(platform: Platform) -> str:
    """Key `users.json`: the approvers' users file."""
    return f"{page_name(platform)}-users"


def session_secret(platform: Platform) -> str:
    """Key `session.key`: at least 32 random bytes that sign session cookies."""
    return f"{page_name(platform)}-session"


def kafka_settings(platform: Platform) -> dict[str, str]:
    return client_settings(platform, approvers_principal(platform))


def _probe(path: str, **timing: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "https", "scheme": "HTTPS"}, **timing}


def _secret_volume(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "secret": {"secretName": secret, "items": [{"key": key, "path": key}]}}


def _pod_spec(platform: Platform, name: str) -> dict[str, Any]:
    assert platform.gate_settings is not None
    kafka = KafkaClient.of(platform, approvers_principal(platform))
    spans = SpanExportPod.of(platform)
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": f"{name}-config"}},
        kafka.ca_volume,
        {
            "name": "tls",
            "secret": {
                "secretName": tls_secret(platform),
                "items": [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}],
            },
        },
        _secret_volume("users", users_secret(platform), "users.json"),
        _secret_volume("session", session_secret(platform), "session.key"),
        {"name": "tmp", "emptyDir": {}},
        *kafka.user_volumes,
        *spans.volumes,
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        kafka.ca_mount,
        {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
        {"name": "users", "mountPath": USERS_DIR, "readOnly": True},
        {"name": "session", "mountPath": SESSION_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
        *kafka.user_mounts,
        *spans.mounts,
    ]
    container = {
        "name": "page",
        "image": platform.gate_settings.image_ref(IMAGE),
        "imagePullPolicy": "IfNotPresent",
        "command": [
            "python",
            "-m",
            "approval_gate.approvers.main",
            f"--description={CONFIG_DIR}/approvers.json",
            f"--kafka-config={CONFIG_DIR}/kafka.json",
            f"--users={USERS_DIR}/users.json",
            f"--session-key-file={SESSION_DIR}/session.key",
            f"--tls-cert={TLS_DIR}/tls.crt",
            f"--tls-key={TLS_DIR}/tls.key",
            "--host=0.0.0.0",  # the Service and the kubelet's probes reach the pod's address
            f"--port={HTTPS_PORT}",
        ],
        "ports": [{"name": "https", "containerPort": HTTPS_PORT, "protocol": "TCP"}],
        "env": [*kafka.env, *spans.env],
        "volumeMounts": mounts,
        "resources": platform.gate_settings.resources.k8s(),
        "startupProbe": _probe("/healthz", periodSeconds=5, failureThreshold=24, timeoutSeconds=3),
        "livenessProbe": _probe("/healthz", periodSeconds=10, failureThreshold=3, timeoutSeconds=3),
        "readinessProbe": _probe("/readyz", periodSeconds=5, failureThreshold=3, timeoutSeconds=3),
    }
    return pod_spec(container, volumes, grace_s=15)


def render_approvers_page(platform: Platform) -> list[dict[str, Any]]:
    """ConfigMap (description, client settings), Deployment, Service and NetworkPolicy of the approvers' page;
    nothing without an actionGate in the catalog."""
    if platform.action_gate is None or platform.gate_settings is None:
        return []
    name = page_name(platform)
    data = {
        "approvers.json": json.dumps(approvers_description(platform), indent=2, sort_keys=True) + "\n",
        "kafka.json": json.dumps(kafka_settings(platform), indent=2, sort_keys=True) + "\n",
    }
    config_hash = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    common = labels(COMPONENT, name)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, platform.namespace, common),
        "spec": {
            # The audit trail is read afresh at start: a rolling update is safe. Sessions live in the pod (signing
            # out revokes one), so a new pod signs everyone out: they sign in again.
            "replicas": 1,
            "selector": {"matchLabels": selector(name)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": common, "annotations": {"headwater.io/config-hash": config_hash}},
                "spec": _pod_spec(platform, name),
            },
        },
    }
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(f"{name}-config", platform.namespace, common),
        "data": data,
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, platform.namespace, common),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(name),
            "ports": [{"name": "https", "port": SERVICE_PORT, "targetPort": "https", "protocol": "TCP"}],
        },
    }
    ingress = [{"ports": [{"port": HTTPS_PORT, "protocol": "TCP"}]}]
    return [config_map, deployment, service, network_policy(platform, COMPONENT, name, ingress)]


@dataclass(frozen=True)
class ApproversPageArgs:
    platform: Platform

    def __post_init__(self) -> None:
        gate = self.platform.action_gate
        if gate is None:
            return
        if self.platform.gate_settings is None:
            raise ValueError("the catalog declares an actionGate but the stack sets no actionGate.image")
        name = approvers_principal(self.platform)
        if name not in {p.name for p in self.platform.principals}:
            raise ValueError(f"the approvers' principal {name!r} is not a principal of the platform")


class ApproversPage(pulumi.ComponentResource):
    """The approvers' page: ConfigMap, Deployment, Service and NetworkPolicy (nothing without an actionGate)."""

    def __init__(
        self, name: str, args: ApproversPageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("headwater:gate:ApproversPage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        for obj in render_approvers_page(args.platform):
            create_object(f"{name}-{obj['kind'].lower()}-{obj['metadata']['name']}", obj, child)
        self.register_outputs({})
