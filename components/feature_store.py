"""The online feature store on Kubernetes: Redis, the materializer, the feature server and freshness alerts.

Rendered only for a catalog with feature topics; the feature views come from `headwater.feature_views`, the
materializer's principal, group and dead-letter topic from its flows in the catalog.

- **Redis** (the pinned official image, 7.2: the BSD-licensed line, the same directives as the local
  redis-server) as a one-replica StatefulSet with a PersistentVolumeClaim of the stack's storage class
  (append-only file fsynced every second plus RDB snapshots), non-root with a read-only root filesystem. Its
  password is the key `password` of the Secret `featureStore.redis.passwordSecret`, created before `pulumi up`
  with the cluster's secret management: it reaches Redis through the container's environment and a file in a
  memory-backed volume, never a ConfigMap or an argument. With `featureStore.redis.tlsSecret` (required in
  staging and prod; keys `tls.crt`, `tls.key`, `ca.crt`, as cert-manager or any CA writes them; the
  certificate names `feature-store-redis.<namespace>.svc`) Redis listens on TLS only. The platform does not
  run cert-manager: that Secret is the cluster's to issue and rotate, like the registry's Ingress certificate.
- **The materializer** (`python -m feature_store.materializer`) as the catalog's materializer principal: its
  Strimzi user Secret and the cluster CA mounted, its SCRAM password (if SCRAM) from the user Secret's
  environment, its registry password from `<principal>-registry`; it serves Prometheus metrics (the newest
  window per view) on which its probes and the freshness alerts rest.
- **The feature server** (`python -m feature_store.server`) behind the Service `feature-server`: answers with
  provenance and freshness per answer, 404 for an unknown feature set, version or entity.
- **NetworkPolicies**: only the materializer and the feature server reach Redis; the platform's own pods and
  `featureStore.server.clientNamespaces` reach the feature server; the materializer takes connections on its
  metrics port only.
- **A PrometheusRule** with one freshness alert per feature view, its budget from the topic's SLA, and a
  PodMonitor that scrapes the materializer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from components.k8s import create_object, labels, metadata, pinned_image, restricted_container_security
from components.kafka_cluster import bootstrap_address, cluster_ca_secret
from components.kafka_users import user_secret
from components.observability import LAG_BUDGETS, PROMETHEUS_SELECTOR
from components.schema_registry import service_url as registry_service_url
from headwater import versions
from headwater.contracts import access
from headwater.contracts.model import CATALOG_DIR
from headwater.feature_views import (
    FeatureView,
    MaterializerFlows,
    feature_views,
    materializer_flows,
    repo_description,
)
from headwater.kafka_config import security_protocol
from headwater.spec import Authentication, FeatureStoreSettings, Platform, Sla

COMPONENT = "feature-store"
REDIS = "feature-store-redis"
MATERIALIZER = "feature-materializer"
SERVER = "feature-server"
REDIS_CONFIG = f"{REDIS}-config"
REPO_CONFIG = "feature-store-repo"
FRESHNESS_RULE = "feature-store-freshness"
IMAGE_NAME = "feature-store"
REDIS_PORT = 6379
SERVER_PORT = 8080
METRICS_PORT = 9404
REDIS_USER = 999  # the official image's `redis` user and group
APP_USER = 10001  # the feature store image's user
REDIS_CONF_DIR = "/etc/headwater/redis"
REDIS_TLS_DIR = "/etc/headwater/redis-tls"
REDIS_RUN_DIR = "/run/redis"  # memory-backed: the generated auth include lives only here
REDIS_DATA_DIR = "/data"
REPO_DIR = "/etc/headwater/feature-store"
KAFKA_CA_DIR = "/etc/headwater/kafka-ca"
KAFKA_USER_DIR = "/etc/headwater/kafka-user"
STORE_DIR = "/var/lib/feast"
# redis-cli and the start wrapper read the password from here; Redis itself from the generated include.
REDIS_AUTH_ENV = "REDISCLI_AUTH"
REDIS_PASSWORD_ENV = "HEADWATER_REDIS_PASSWORD"  # what feature_store.repo reads
KAFKA_SASL_PASSWORD_ENV = "HEADWATER_KAFKA_SASL_PASSWORD"  # what feature_store.materializer reads
REGISTRY_PASSWORD_ENV = "HEADWATER_REGISTRY_PASSWORD"
REGISTRY_USER_INFO_ENV = "HEADWATER_REGISTRY_USER_INFO"


def redis_image() -> str:
    return pinned_image(f"{versions.REDIS_IMAGE}:{versions.REDIS_VERSION}")


def feature_store_image(platform: Platform) -> str:
    """`<flink.imageRegistry>/feature-store:<featureStore.image>` (a digest `sha256:...` pins by digest)."""
    fs = _settings(platform)
    repo = f"{platform.flink.image_registry}/{IMAGE_NAME}" if platform.flink.image_registry else IMAGE_NAME
    ref = fs.image or "unset"
    return f"{repo}@{ref}" if ref.startswith("sha256:") else pinned_image(f"{repo}:{ref}")


def redis_address(platform: Platform) -> str:
    return f"{REDIS}.{platform.namespace}.svc:{REDIS_PORT}"


def server_url(platform: Platform) -> str:
    return f"http://{SERVER}.{platform.namespace}.svc:{SERVER_PORT}"


def _settings(platform: Platform) -> FeatureStoreSettings:
    if platform.feature_store is None:
        raise ValueError(f"stack {platform.stack}: no featureStore settings (load the spec with the loader)")
    return platform.feature_store


def _selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "headwater"}


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def redis_config(platform: Platform) -> str:
    """redis.conf (no secret in it: the password arrives through the generated include)."""
    tls = _settings(platform).redis_tls_secret
    lines = [
        "# Rendered by components/feature_store.py.",
        "bind * -::*",
        "protected-mode yes",
    ]
    if tls:
        lines += [
            "port 0",  # no plaintext listener
            f"tls-port {REDIS_PORT}",
            f"tls-cert-file {REDIS_TLS_DIR}/tls.crt",
            f"tls-key-file {REDIS_TLS_DIR}/tls.key",
            f"tls-ca-cert-file {REDIS_TLS_DIR}/ca.crt",
            "tls-auth-clients no",  # clients prove themselves with the password, over TLS
            'tls-protocols "TLSv1.2 TLSv1.3"',
        ]
    else:
        lines.append(f"port {REDIS_PORT}")
    lines += [
        f"dir {REDIS_DATA_DIR}",
        "appendonly yes",
        "appendfsync everysec",
        "save 3600 1 300 100 60 10000",
        "databases 1",
        'logfile ""',
        f"include {REDIS_RUN_DIR}/auth.conf",
    ]
    return "\n".join(lines) + "\n"


# The container's entry point: write the password into the include (owner-only, memory-backed), then exec Redis.
REDIS_START = (
    f'umask 077 && printf \'requirepass "%s"\\n\' "${REDIS_AUTH_ENV}" > {REDIS_RUN_DIR}/auth.conf '
    f"&& exec redis-server {REDIS_CONF_DIR}/redis.conf"
)


def _redis_ping(platform: Platform) -> dict[str, Any]:
    # A local PING over the same listener; certificate checks are for clients across the network.
    tls = " --tls --insecure" if _settings(platform).redis_tls_secret else ""
    return {
        "exec": {"command": ["sh", "-c", f"redis-cli{tls} -h 127.0.0.1 -p {REDIS_PORT} ping | grep -q PONG"]}
    }


def _redis_statefulset(platform: Platform, config_text: str) -> dict[str, Any]:
    fs = _settings(platform)
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": REDIS_CONFIG}},
        {"name": "run", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": REDIS_CONF_DIR, "readOnly": True},
        {"name": "run", "mountPath": REDIS_RUN_DIR},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "data", "mountPath": REDIS_DATA_DIR},
    ]
    if fs.redis_tls_secret:
        volumes.append({"name": "tls", "secret": {"secretName": fs.redis_tls_secret}})
        mounts.append({"name": "tls", "mountPath": REDIS_TLS_DIR, "readOnly": True})
    ping = _redis_ping(platform)
    container = {
        "name": "redis",
        "image": redis_image(),
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", REDIS_START],
        "ports": [{"name": "redis", "containerPort": REDIS_PORT, "protocol": "TCP"}],
        "env": [_secret_env(REDIS_AUTH_ENV, fs.redis_password_secret, "password")],
        "volumeMounts": mounts,
        "resources": fs.redis_resources.k8s(),
        # Loading the append-only file after a restart takes a while for a big store.
        "startupProbe": {**ping, "periodSeconds": 5, "failureThreshold": 60, "timeoutSeconds": 3},
        "livenessProbe": {**ping, "periodSeconds": 10, "failureThreshold": 3, "timeoutSeconds": 3},
        "readinessProbe": {**ping, "periodSeconds": 5, "failureThreshold": 2, "timeoutSeconds": 3},
        "securityContext": {**restricted_container_security(), "readOnlyRootFilesystem": True},
    }
    claim: dict[str, Any] = {
        "metadata": {"name": "data", "labels": labels(COMPONENT, REDIS)},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": fs.redis_storage.size}},
        },
    }
    if fs.redis_storage.storage_class:
        claim["spec"]["storageClassName"] = fs.redis_storage.storage_class
    common = labels(COMPONENT, REDIS)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(REDIS, platform.namespace, common),
        "spec": {
            "replicas": 1,
            "serviceName": REDIS,
            "selector": {"matchLabels": _selector(REDIS)},
            # Keep the data when the StatefulSet goes: the online store is rebuilt only by a full replay.
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            "template": {
                "metadata": {
                    "labels": common,
                    "annotations": {"headwater.io/config-hash": _hash(config_text)},
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": REDIS_USER,
                        "runAsGroup": REDIS_USER,
                        "fsGroup": REDIS_USER,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                    "volumes": volumes,
                },
            },
            "volumeClaimTemplates": [claim],
        },
    }


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def materializer_kafka_settings(platform: Platform, flows: MaterializerFlows) -> dict[str, str]:
    """librdkafka settings of the materializer's principal on the cluster (no secret: the SCRAM password
    comes from the environment)."""
    principal = platform.principal(flows.principal)
    settings = {
        "bootstrap.servers": bootstrap_address(platform.kafka, platform.namespace),
        "security.protocol": security_protocol(principal.authentication),
        "ssl.ca.location": f"{KAFKA_CA_DIR}/ca.crt",
        "ssl.endpoint.identification.algorithm": "https",
    }
    if principal.authentication == Authentication.SCRAM:
        settings |= {"sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": principal.name}
    else:
        settings |= {
            "ssl.certificate.location": f"{KAFKA_USER_DIR}/user.crt",
            "ssl.key.location": f"{KAFKA_USER_DIR}/user.key",
        }
    return dict(sorted(settings.items()))


def _deadletter_contract(platform: Platform, flows: MaterializerFlows) -> str:
    catalog = Path(platform.catalog_dir) if platform.catalog_dir else CATALOG_DIR
    schema = platform.topic(flows.deadletter_topic).schema
    if not schema:
        raise ValueError(f"catalog.topics.{flows.deadletter_topic}: the dead-letter topic needs its contract")
    return (catalog / schema).read_text()


def _repo_config_map(platform: Platform, flows: MaterializerFlows) -> dict[str, Any]:
    data = {
        "repo.json": json.dumps(repo_description(platform), indent=2, sort_keys=True) + "\n",
        "kafka.json": json.dumps(materializer_kafka_settings(platform, flows), indent=2, sort_keys=True)
        + "\n",
        "deadletter.avsc": _deadletter_contract(platform, flows),
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(REPO_CONFIG, platform.namespace, labels(COMPONENT, REPO_CONFIG)),
        "data": data,
    }


def _redis_client(platform: Platform) -> tuple[list[str], list[dict[str, Any]], list[dict[str, Any]]]:
    """(arguments, volumes, mounts) that reach Redis: its address and, with TLS, the CA that signed it."""
    fs = _settings(platform)
    args = [f"--redis={redis_address(platform)}"]
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if fs.redis_tls_secret:
        args += ["--redis-tls", f"--redis-ca={REDIS_TLS_DIR}/ca.crt"]
        volumes.append(
            {
                "name": "redis-ca",
                "secret": {"secretName": fs.redis_tls_secret, "items": [{"key": "ca.crt", "path": "ca.crt"}]},
            }
        )
        mounts.append({"name": "redis-ca", "mountPath": REDIS_TLS_DIR, "readOnly": True})
    return args, volumes, mounts


def _app_pod(
    platform: Platform,
    container: dict[str, Any],
    volumes: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
) -> dict[str, Any]:
    container["volumeMounts"] = [
        {"name": "repo", "mountPath": REPO_DIR, "readOnly": True},
        {"name": "store", "mountPath": STORE_DIR},
        {"name": "tmp", "mountPath": "/tmp"},
        *mounts,
    ]
    container["securityContext"] = {**restricted_container_security(), "readOnlyRootFilesystem": True}
    container["imagePullPolicy"] = "IfNotPresent"
    return {
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": APP_USER,
            "runAsGroup": APP_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {"name": "repo", "configMap": {"name": REPO_CONFIG}},
            # Feast's file registry, applied from the description at every start (each pod its own).
            {"name": "store", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
            *volumes,
        ],
    }


def _common_env(platform: Platform) -> list[dict[str, Any]]:
    return [
        _secret_env(REDIS_PASSWORD_ENV, _settings(platform).redis_password_secret, "password"),
        {"name": "HOME", "value": "/tmp"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]


def _http_probe(path: str, port: str, **timing: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, **timing}


def _materializer(platform: Platform, flows: MaterializerFlows, repo_text: str) -> dict[str, Any]:
    fs = _settings(platform)
    principal = platform.principal(flows.principal)
    redis_args, volumes, mounts = _redis_client(platform)
    volumes.append(
        {
            "name": "kafka-ca",
            "secret": {
                "secretName": cluster_ca_secret(platform.kafka),
                "items": [{"key": "ca.crt", "path": "ca.crt"}],
            },
        }
    )
    mounts.append({"name": "kafka-ca", "mountPath": KAFKA_CA_DIR, "readOnly": True})
    env = _common_env(platform)
    if principal.authentication == Authentication.SCRAM:
        env.append(_secret_env(KAFKA_SASL_PASSWORD_ENV, user_secret(principal.name), "password"))
    else:
        volumes.append(
            {
                "name": "kafka-user",
                "secret": {
                    "secretName": user_secret(principal.name),
                    "items": [
                        {"key": "user.crt", "path": "user.crt"},
                        {"key": "user.key", "path": "user.key"},
                    ],
                },
            }
        )
        mounts.append({"name": "kafka-user", "mountPath": KAFKA_USER_DIR, "readOnly": True})
    reader = access.registry_user(platform, principal.name)
    env += [
        _secret_env(REGISTRY_PASSWORD_ENV, reader.secret, access.SECRET_KEY),
        # Kubernetes expands $(VAR) from the variables above: the password never appears in the object.
        {"name": REGISTRY_USER_INFO_ENV, "value": f"{principal.name}:$({REGISTRY_PASSWORD_ENV})"},
    ]
    container = {
        "name": "materializer",
        "image": feature_store_image(platform),
        "command": ["python", "-m", "feature_store.materializer"],
        "args": [
            f"--repo={REPO_DIR}/repo.json",
            f"--store-dir={STORE_DIR}",
            *redis_args,
            f"--kafka-config={REPO_DIR}/kafka.json",
            f"--group={flows.group}",
            f"--deadletter-topic={flows.deadletter_topic}",
            f"--deadletter-schema={REPO_DIR}/deadletter.avsc",
            f"--registry-url={registry_service_url(platform)}",
            f"--metrics-port={METRICS_PORT}",
        ],
        "env": env,
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "resources": fs.materializer_resources.k8s(),
        # Metrics are served once the store is open and the dead-letter contract looked up (Feast's import
        # and registry apply take a while on a small node).
        "startupProbe": _http_probe(
            "/metrics", "metrics", periodSeconds=5, failureThreshold=60, timeoutSeconds=3
        ),
        "livenessProbe": _http_probe(
            "/metrics", "metrics", periodSeconds=15, failureThreshold=3, timeoutSeconds=5
        ),
        "readinessProbe": _http_probe(
            "/metrics", "metrics", periodSeconds=10, failureThreshold=3, timeoutSeconds=5
        ),
    }
    common = labels(COMPONENT, MATERIALIZER)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(MATERIALIZER, platform.namespace, common),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": _selector(MATERIALIZER)},
            # One consumer at a time: the held batch is retried by whoever owns the partitions next.
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": common, "annotations": {"headwater.io/config-hash": _hash(repo_text)}},
                "spec": _app_pod(platform, container, volumes, mounts),
            },
        },
    }


def _server(platform: Platform, repo_text: str) -> dict[str, Any]:
    fs = _settings(platform)
    redis_args, volumes, mounts = _redis_client(platform)
    container = {
        "name": "server",
        "image": feature_store_image(platform),
        "command": ["python", "-m", "feature_store.server"],
        "args": [
            f"--repo={REPO_DIR}/repo.json",
            f"--store-dir={STORE_DIR}",
            *redis_args,
            "--host=0.0.0.0",
            f"--port={SERVER_PORT}",
        ],
        "env": _common_env(platform),
        "ports": [{"name": "http", "containerPort": SERVER_PORT, "protocol": "TCP"}],
        "resources": fs.server_resources.k8s(),
        "startupProbe": _http_probe(
            "/healthz", "http", periodSeconds=5, failureThreshold=60, timeoutSeconds=3
        ),
        "livenessProbe": _http_probe(
            "/healthz", "http", periodSeconds=10, failureThreshold=3, timeoutSeconds=3
        ),
        "readinessProbe": _http_probe(
            "/readyz", "http", periodSeconds=5, failureThreshold=3, timeoutSeconds=3
        ),
    }
    common = labels(COMPONENT, SERVER)
    pod = _app_pod(platform, container, volumes, mounts)
    if fs.server_replicas > 1:
        pod["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": _selector(SERVER)},
            }
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(SERVER, platform.namespace, common),
        "spec": {
            "replicas": fs.server_replicas,
            "selector": {"matchLabels": _selector(SERVER)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": common, "annotations": {"headwater.io/config-hash": _hash(repo_text)}},
                "spec": pod,
            },
        },
    }


def _service(platform: Platform, name: str, port: int, port_name: str, headless: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": "ClusterIP",
        "selector": _selector(name),
        "ports": [{"name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP"}],
    }
    if headless:
        spec["clusterIP"] = "None"  # the StatefulSet's governing Service: its pod keeps a stable name
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, platform.namespace, labels(COMPONENT, name)),
        "spec": spec,
    }


def _network_policy(
    platform: Platform, name: str, peers: list[dict[str, Any]] | None, port: str
) -> dict[str, Any]:
    rule: dict[str, Any] = {"ports": [{"port": port, "protocol": "TCP"}]}
    if peers is not None:
        rule["from"] = peers
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(name, platform.namespace, labels(COMPONENT, name)),
        "spec": {
            "podSelector": {"matchLabels": _selector(name)},
            "policyTypes": ["Ingress"],
            "ingress": [rule],
        },
    }


def network_policies(platform: Platform) -> list[dict[str, Any]]:
    fs = _settings(platform)
    store_clients = [{"podSelector": {"matchLabels": _selector(n)}} for n in (MATERIALIZER, SERVER)]
    readers: list[dict[str, Any]] = [{"podSelector": {}}]  # the platform's own namespace
    readers += [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}
        for ns in fs.server_client_namespaces
    ]
    return [
        _network_policy(platform, REDIS, store_clients, "redis"),
        _network_policy(platform, SERVER, readers, "http"),
        # Nothing connects to the materializer but whoever scrapes its metrics (Prometheus, wherever it runs).
        _network_policy(platform, MATERIALIZER, None, "metrics"),
    ]


def freshness_rules(platform: Platform, views: tuple[FeatureView, ...]) -> dict[str, Any]:
    """One alert per feature view: its newest window is older than the freshness budget of its topic's SLA
    (or no window has been written since the materializer started)."""
    rules = []
    for view in views:
        budget = LAG_BUDGETS[Sla(view.sla)]
        metric = f'headwater_feature_window_end_seconds{{view="{view.name}"}}'
        rules.append(
            {
                "alert": "HeadwaterFeatureFreshness",
                "expr": f"(time() - max({metric}) > {view.freshness_s}) or absent({metric})",
                "for": budget.for_,
                "labels": {
                    "severity": budget.severity,
                    "owner": view.owner,
                    "view": view.name,  # one rule per view: an owner may have several
                    "topic": view.topic,
                },
                "annotations": {
                    "summary": (
                        f"{view.name}: the newest window served is older than its {view.freshness_s}s "
                        f"freshness budget ({view.sla} SLA of {view.topic}), or none was written since the "
                        "materializer started"
                    )
                },
            }
        )
    return {"groups": [{"name": "headwater-feature-freshness", "rules": rules}]}


def _prometheus_rule(platform: Platform, views: tuple[FeatureView, ...]) -> dict[str, Any]:
    return {
        "apiVersion": versions.PROMETHEUS_OPERATOR_API_VERSION,
        "kind": "PrometheusRule",
        "metadata": metadata(
            FRESHNESS_RULE, platform.namespace, labels("observability", extra=PROMETHEUS_SELECTOR)
        ),
        "spec": freshness_rules(platform, views),
    }


def _pod_monitor(platform: Platform) -> dict[str, Any]:
    return {
        "apiVersion": versions.PROMETHEUS_OPERATOR_API_VERSION,
        "kind": "PodMonitor",
        "metadata": metadata(
            MATERIALIZER, platform.namespace, labels("observability", extra=PROMETHEUS_SELECTOR)
        ),
        "spec": {
            "selector": {"matchLabels": _selector(MATERIALIZER)},
            "namespaceSelector": {"matchNames": [platform.namespace]},
            "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics", "interval": "30s"}],
        },
    }


def render_feature_store(platform: Platform) -> list[dict[str, Any]]:
    """Every object of the online feature store; nothing for a catalog without feature topics."""
    views = feature_views(platform)
    if not views:
        return []
    flows = materializer_flows(platform)
    config_text = redis_config(platform)
    repo = _repo_config_map(platform, flows)
    repo_text = json.dumps(repo["data"], sort_keys=True)
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(REDIS_CONFIG, platform.namespace, labels(COMPONENT, REDIS)),
            "data": {"redis.conf": config_text},
        },
        repo,
        _redis_statefulset(platform, config_text),
        _service(platform, REDIS, REDIS_PORT, "redis", headless=True),
        _materializer(platform, flows, repo_text),
        _server(platform, repo_text),
        _service(platform, SERVER, SERVER_PORT, "http", headless=False),
        *network_policies(platform),
        _prometheus_rule(platform, views),
        _pod_monitor(platform),
    ]


@dataclass(frozen=True)
class FeatureStoreArgs:
    platform: Platform

    def __post_init__(self) -> None:
        if self.platform.feature_store is None:
            raise ValueError(f"stack {self.platform.stack}: no featureStore settings (the loader sets them)")
        if feature_views(self.platform):
            materializer_flows(self.platform)  # raises with the catalog's problem


class FeatureStore(pulumi.ComponentResource):
    """Redis, the materializer, the feature server, their NetworkPolicies and the freshness alerts."""

    server_url: pulumi.Output[str]
    """The feature server inside the cluster."""

    def __init__(self, name: str, args: FeatureStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("headwater:features:FeatureStore", name, None, opts)
        rendered = render_feature_store(args.platform)
        config = [o for o in rendered if o["kind"] == "ConfigMap"]
        made = [
            create_object(f"{name}-{o['metadata']['name']}-configmap", o, pulumi.ResourceOptions(parent=self))
            for o in config
        ]
        for o in rendered:
            if o["kind"] != "ConfigMap":
                create_object(
                    f"{name}-{o['metadata']['name']}-{o['kind'].lower()}",
                    o,
                    pulumi.ResourceOptions(parent=self, depends_on=made),
                )
        self.server_url = pulumi.Output.from_input(server_url(args.platform) if rendered else "")
        self.register_outputs({"server_url": self.server_url})
