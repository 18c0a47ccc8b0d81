"""The approval gate on Kubernetes: a Deployment of one pod, its description and client settings, a
NetworkPolicy.

A Deployment, not a FlinkDeployment: the gate is a plain Kafka client (see `approval_gate.main` for why), one
process with one transactional id, so exactly one replica and the `Recreate` strategy (a rolling update would
start the new pod while the old one still runs, and the two would fence each other). Its identity is the
catalog's gate principal: the KafkaUser Strimzi creates from the derived flows, whose Secret gives the password
(SCRAM) or the client certificate (TLS); the cluster CA comes from the cluster's CA Secret. Its description
(`headwater.action_gate.gate_description`) and its client settings (no secret in them) are a ConfigMap, whose
hash rolls the pod when a policy changes. Non-root, read-only root filesystem, no service account token;
probes on the gate's /healthz (its loop turns) and /readyz (state restored, subscribed). Network: no ingress
(the kubelet's probes come from the node, which NetworkPolicy always allows), egress only to the Kafka
cluster's pods on the TLS listener and to DNS, and, where the stack names a collector
(`headwater:actionGate.tracing`), to the collector's pods on its OTLP port: the spans of every audited step
leave the pod over OTLP/HTTP (`SpanExportPod`, shared with the approvers' page).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pulumi

from components.k8s import create_object, labels, metadata, restricted_container_security
from components.kafka_cluster import TLS_PORT, bootstrap_address, cluster_ca_secret
from components.kafka_users import user_secret
from headwater.action_gate import gate_description
from headwater.kafka_config import librdkafka_settings
from headwater.spec import Authentication, Platform

COMPONENT = "approval-gate"
CONFIG_DIR = "/etc/headwater/gate"
CA_DIR = "/etc/headwater/kafka-ca"
USER_DIR = "/etc/headwater/kafka-user"
HEALTH_PORT = 8080
RUN_AS_USER = 10001  # the image's user (approval_gate/Dockerfile)
PASSWORD_ENV = "HEADWATER_KAFKA_PASSWORD"  # approval_gate.main reads the SCRAM password from it
OTLP_CA_DIR = "/etc/headwater/otlp-ca"


def client_settings(platform: Platform, principal: str) -> dict[str, str]:
    """librdkafka settings of an action-path process logging in as `principal` (no secret in them): the
    cluster CA, the client certificate and the password come from the files and variable `KafkaClient`
    puts in its pod."""
    return librdkafka_settings(
        platform.principal(principal).authentication,
        principal,
        bootstrap_address(platform.kafka, platform.namespace),
        f"{CA_DIR}/ca.crt",
        f"{USER_DIR}/user.crt",
        f"{USER_DIR}/user.key",
    )


def kafka_settings(platform: Platform) -> dict[str, str]:
    assert platform.action_gate is not None
    return client_settings(platform, platform.action_gate.principal)


@dataclass(frozen=True)
class KafkaClient:
    """What a pod of the gate's image needs to log in to Kafka as its principal: the cluster CA, and the
    password (SCRAM, from the KafkaUser Secret into `PASSWORD_ENV`) or the client certificate (TLS)."""

    ca_volume: dict[str, Any]
    ca_mount: dict[str, Any]
    user_volumes: list[dict[str, Any]]
    user_mounts: list[dict[str, Any]]
    env: list[dict[str, Any]]

    @classmethod
    def of(cls, platform: Platform, principal: str) -> KafkaClient:
        env: list[dict[str, Any]] = [{"name": "PYTHONUNBUFFERED", "value": "1"}]
        user_volumes: list[dict[str, Any]] = []
        user_mounts: list[dict[str, Any]] = []
        if platform.principal(principal).authentication == Authentication.SCRAM:
            env.append(
                {
                    "name": PASSWORD_ENV,
                    "valueFrom": {"secretKeyRef": {"name": user_secret(principal), "key": "password"}},
                }
            )
        else:
            user_volumes.append(
                {
                    "name": "kafka-user",
                    "secret": {
                        "secretName": user_secret(principal),
                        "items": [
                            {"key": "user.crt", "path": "user.crt"},
                            {"key": "user.key", "path": "user.key"},
                        ],
                    },
                }
            )
            user_mounts.append({"name": "kafka-user", "mountPath": USER_DIR, "readOnly": True})
        return cls(
            ca_volume={
                "name": "kafka-ca",
                "secret": {
                    "secretName": cluster_ca_secret(platform.kafka),
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                },
            },
            ca_mount={"name": "kafka-ca", "mountPath": CA_DIR, "readOnly": True},
            user_volumes=user_volumes,
            user_mounts=user_mounts,
            env=env,
        )


@dataclass(frozen=True)
class SpanExportPod:
    """What a pod of the gate's image needs to send its spans to the stack's collector: the OpenTelemetry
    SDK's variables (OTLP over HTTP), and the CA that verifies an https endpoint when the stack names one."""

    env: list[dict[str, Any]]
    volumes: list[dict[str, Any]]
    mounts: list[dict[str, Any]]

    @classmethod
    def of(cls, platform: Platform) -> SpanExportPod:
        export = platform.gate_settings.tracing if platform.gate_settings is not None else None
        if export is None:
            return cls([], [], [])
        env: list[dict[str, Any]] = [
            {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": export.otlp_endpoint},
            {"name": "OTEL_EXPORTER_OTLP_PROTOCOL", "value": "http/protobuf"},
        ]
        if export.ca_secret is None:
            return cls(env, [], [])
        env.append({"name": "OTEL_EXPORTER_OTLP_CERTIFICATE", "value": f"{OTLP_CA_DIR}/ca.crt"})
        volume = {
            "name": "otlp-ca",
            "secret": {"secretName": export.ca_secret, "items": [{"key": "ca.crt", "path": "ca.crt"}]},
        }
        return cls(env, [volume], [{"name": "otlp-ca", "mountPath": OTLP_CA_DIR, "readOnly": True}])


def selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "headwater"}


def _probe(path: str, **timing: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "health"}, **timing}


def pod_spec(container: dict[str, Any], volumes: list[dict[str, Any]], grace_s: int) -> dict[str, Any]:
    """A pod of the gate's image: non-root as the image's user, no service account token, its root
    filesystem read-only."""
    container["securityContext"] = {**restricted_container_security(), "readOnlyRootFilesystem": True}
    return {
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationGracePeriodSeconds": grace_s,
        "containers": [container],
        "volumes": volumes,
    }


def _pod_spec(platform: Platform, name: str) -> dict[str, Any]:
    assert platform.action_gate is not None and platform.gate_settings is not None
    kafka = KafkaClient.of(platform, name)
    spans = SpanExportPod.of(platform)
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": f"{name}-config"}},
        kafka.ca_volume,
        {"name": "tmp", "emptyDir": {}},
        *kafka.user_volumes,
        *spans.volumes,
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        kafka.ca_mount,
        {"name": "tmp", "mountPath": "/tmp"},
        *kafka.user_mounts,
        *spans.mounts,
    ]
    container = {
        "name": "gate",
        "image": platform.gate_settings.image_ref(COMPONENT),
        "imagePullPolicy": "IfNotPresent",
        "command": [
            "python",
            "-m",
            "approval_gate.main",
            f"--description={CONFIG_DIR}/gate.json",
            f"--kafka-config={CONFIG_DIR}/kafka.json",
            f"--health-port={HEALTH_PORT}",
        ],
        "ports": [{"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"}],
        "env": [*kafka.env, *spans.env],
        "volumeMounts": mounts,
        "resources": platform.gate_settings.resources.k8s(),
        # Restoring the changelog comes before readiness: give it time, then probe tightly.
        "startupProbe": _probe("/healthz", periodSeconds=5, failureThreshold=24, timeoutSeconds=3),
        "livenessProbe": _probe("/healthz", periodSeconds=10, failureThreshold=3, timeoutSeconds=3),
        "readinessProbe": _probe("/readyz", periodSeconds=5, failureThreshold=3, timeoutSeconds=3),
    }
    return pod_spec(container, volumes, grace_s=30)


def network_policy(
    platform: Platform, component: str, name: str, ingress: list[dict[str, Any]]
) -> dict[str, Any]:
    """Ingress as given; egress only to the Kafka cluster's pods on the TLS listener, to DNS, and (where the
    stack names one) to the span collector's pods on its OTLP port."""
    egress: list[dict[str, Any]] = [
        {
            "to": [{"podSelector": {"matchLabels": {"strimzi.io/cluster": platform.kafka.cluster_name}}}],
            "ports": [{"port": TLS_PORT, "protocol": "TCP"}],
        },
        {
            "to": [{"namespaceSelector": {}}],
            "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
        },
    ]
    export = platform.gate_settings.tracing if platform.gate_settings is not None else None
    if export is not None:
        egress.append(
            {
                "to": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": export.collector_namespace}
                        },
                        "podSelector": {"matchLabels": dict(export.collector_labels)},
                    }
                ],
                "ports": [{"port": export.port, "protocol": "TCP"}],
            }
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(name, platform.namespace, labels(component, name)),
        "spec": {
            "podSelector": {"matchLabels": selector(name)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        },
    }


def render_approval_gate(platform: Platform) -> list[dict[str, Any]]:
    """ConfigMap (description, client settings), Deployment and NetworkPolicy of the gate; nothing without an
    actionGate in the catalog."""
    if platform.action_gate is None or platform.gate_settings is None:
        return []
    name = platform.action_gate.principal
    data = {
        "gate.json": json.dumps(gate_description(platform), indent=2, sort_keys=True) + "\n",
        "kafka.json": json.dumps(kafka_settings(platform), indent=2, sort_keys=True) + "\n",
    }
    config_hash = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    common = labels(COMPONENT, name)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, platform.namespace, common),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector(name)},
            "strategy": {"type": "Recreate"},
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
    # No ingress: the kubelet's probes come from the node, which NetworkPolicy always allows.
    return [config_map, deployment, network_policy(platform, COMPONENT, name, [])]


@dataclass(frozen=True)
class ApprovalGateArgs:
    platform: Platform

    def __post_init__(self) -> None:
        gate = self.platform.action_gate
        if gate is None:
            return
        if self.platform.gate_settings is None:
            raise ValueError("the catalog declares an actionGate but the stack sets no actionGate.image")
        if gate.principal not in {p.name for p in self.platform.principals}:
            raise ValueError(f"the gate's principal {gate.principal!r} is not a principal of the platform")


class ApprovalGate(pulumi.ComponentResource):
    """The approval gate's ConfigMap, Deployment and NetworkPolicy (nothing without an actionGate)."""

    def __init__(self, name: str, args: ApprovalGateArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("headwater:gate:ApprovalGate", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        for obj in render_approval_gate(args.platform):
            create_object(f"{name}-{obj['kind'].lower()}-{obj['metadata']['name']}", obj, child)
        self.register_outputs({})
