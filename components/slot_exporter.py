"""The CDC sources' replication slots, watched from the database's side on Kubernetes.

A slot keeps the WAL its consumer has not confirmed; when Connect is down, or a task is stuck, the source
database's disk fills. Connect's own metrics vanish with Connect, so the slot alerts read the database itself:
per source, the Prometheus PostgreSQL exporter (the same release as the local Debian package) runs only the
platform's slot query (`headwater.cdc.slot_exporter_queries`) as the source's replication login (any login may
read `pg_replication_slots`), with the source's `sslMode`. Objects per source: a Deployment (non-root, read-only
root filesystem, the login from the source's credentials Secret as environment), a NetworkPolicy admitting
connections on its metrics port only, and a PodMonitor; the query file is one ConfigMap for all sources.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from components.k8s import create_object, labels, metadata, pinned_image, restricted_container_security
from components.observability import PROMETHEUS_SELECTOR
from headwater import versions
from headwater.cdc import SLOT_EXPORTER, slot_exporter_args, slot_exporter_queries
from headwater.spec import Platform, Source

COMPONENT = "cdc"
QUERIES = f"{SLOT_EXPORTER}-queries"
QUERIES_DIR = "/etc/slot-exporter"
QUERIES_KEY = "queries.yaml"
METRICS_PORT = 9187
EXPORTER_USER = 65534  # the image's `nobody`


def exporter_image() -> str:
    return pinned_image(f"{versions.POSTGRES_EXPORTER_IMAGE}:v{versions.POSTGRES_EXPORTER_VERSION}")


def exporter_name(source: Source) -> str:
    return f"{SLOT_EXPORTER}-{source.name}"


def _selector(source: Source) -> dict[str, str]:
    return {"app.kubernetes.io/name": exporter_name(source), "app.kubernetes.io/part-of": "headwater"}


def _queries(platform: Platform) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(QUERIES, platform.namespace, labels(COMPONENT, SLOT_EXPORTER)),
        "data": {QUERIES_KEY: slot_exporter_queries()},
    }


def _deployment(platform: Platform, source: Source) -> dict[str, Any]:
    name = exporter_name(source)
    ep = source.endpoint
    secret = ep.credentials_secret
    container = {
        "name": "exporter",
        "image": exporter_image(),
        "imagePullPolicy": "IfNotPresent",
        "args": slot_exporter_args(f":{METRICS_PORT}", f"{QUERIES_DIR}/{QUERIES_KEY}"),
        "env": [
            # A URL, so the exporter's error lines show PASSWORD_REMOVED instead of the password.
            {
                "name": "DATA_SOURCE_URI",
                "value": f"{ep.host}:{ep.port}/{source.database}?sslmode={ep.ssl_mode}",
            },
            {"name": "DATA_SOURCE_USER", "valueFrom": {"secretKeyRef": {"name": secret, "key": "username"}}},
            {"name": "DATA_SOURCE_PASS", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}},
        ],
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/metrics", "port": "metrics"}, "periodSeconds": 30},
        "livenessProbe": {
            "httpGet": {"path": "/metrics", "port": "metrics"},
            "periodSeconds": 30,
            "failureThreshold": 5,
        },
        "resources": {
            "requests": {"cpu": "10m", "memory": "32Mi"},
            "limits": {"cpu": "200m", "memory": "64Mi"},
        },
        "securityContext": {**restricted_container_security(), "readOnlyRootFilesystem": True},
        "volumeMounts": [{"name": "queries", "mountPath": QUERIES_DIR, "readOnly": True}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, platform.namespace, labels(COMPONENT, name)),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": _selector(source)},
            "template": {
                "metadata": {"labels": {**labels(COMPONENT, name), **_selector(source)}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": EXPORTER_USER,
                        "runAsGroup": EXPORTER_USER,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [{"name": "queries", "configMap": {"name": QUERIES}}],
                },
            },
        },
    }


def _network_policy(platform: Platform, source: Source) -> dict[str, Any]:
    name = exporter_name(source)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(name, platform.namespace, labels(COMPONENT, name)),
        "spec": {
            "podSelector": {"matchLabels": _selector(source)},
            "policyTypes": ["Ingress"],
            # Its metrics port only, from wherever the cluster's Prometheus runs (as the materializer's).
            "ingress": [{"ports": [{"port": "metrics", "protocol": "TCP"}]}],
        },
    }


def _pod_monitor(platform: Platform, source: Source) -> dict[str, Any]:
    name = exporter_name(source)
    return {
        "apiVersion": versions.PROMETHEUS_OPERATOR_API_VERSION,
        "kind": "PodMonitor",
        "metadata": metadata(name, platform.namespace, labels("observability", extra=PROMETHEUS_SELECTOR)),
        "spec": {
            "selector": {"matchLabels": _selector(source)},
            "namespaceSelector": {"matchNames": [platform.namespace]},
            "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics", "interval": "30s"}],
        },
    }


def render_slot_exporters(platform: Platform) -> list[dict[str, Any]]:
    """Per CDC source: the exporter of its replication slot; nothing for a catalog without sources."""
    if not platform.sources:
        return []
    out = [_queries(platform)]
    for source in platform.sources:
        out += [
            _deployment(platform, source),
            _network_policy(platform, source),
            _pod_monitor(platform, source),
        ]
    return out


@dataclass(frozen=True)
class SlotExportersArgs:
    platform: Platform


class SlotExporters(pulumi.ComponentResource):
    """The replication slots' exporters of the catalog's CDC sources."""

    def __init__(
        self, name: str, args: SlotExportersArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("headwater:cdc:SlotExporters", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        for obj in render_slot_exporters(args.platform):
            create_object(f"{name}-{obj['kind'].lower()}-{obj['metadata']['name']}", obj, child)
        self.register_outputs({})
