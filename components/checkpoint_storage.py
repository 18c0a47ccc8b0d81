"""Where Flink apps keep their state: checkpoints, savepoints and HA metadata, per app, under one base URI.

- Staging and prod point `FlinkSettings.state_uri` at a bucket (`s3://headwater-flink-prod`). Flink reaches it
  through its S3 filesystem plugin (Presto, the one Flink recommends for checkpoints) with access keys from
  the secret `s3_credentials_secret`, or through workload identity (IRSA and the like) when that is None:
  the plugin's default AWS credential chain reads both.
- Dev can run an in-cluster MinIO (`deploy_minio`): Deployment + Service + PVC, a pinned image, non-root,
  its root credentials read from the same existing secret by name. No credential is ever a plain value in
  configuration or in a rendered object.
- The local stack keeps state on a `file://` path; on Kubernetes that is a per-app volume claim.

`state_paths` is the one place that decides the per-app paths; everything else asks it.

The credentials secret holds two keys: `access-key` and `secret-key` (`ACCESS_KEY`, `SECRET_KEY`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import pulumi

from components.k8s import create_object, labels, metadata, pinned_image, restricted_container_security
from headwater import versions
from headwater.spec import FlinkSettings, Platform

# Keys of the S3 credentials secret (`FlinkSettings.s3_credentials_secret`).
ACCESS_KEY = "access-key"
SECRET_KEY = "secret-key"

# Environment variables the AWS default credential chain (used by Flink's S3 plugins) reads.
AWS_ACCESS_KEY_ENV = "AWS_ACCESS_KEY_ID"
AWS_SECRET_KEY_ENV = "AWS_SECRET_ACCESS_KEY"

S3_PLUGIN = f"flink-s3-fs-presto-{versions.FLINK_VERSION}.jar"  # in /opt/flink/opt of the Flink image

MINIO_NAME = "minio"
MINIO_IMAGE = f"quay.io/minio/minio:{versions.MINIO_VERSION}"
MINIO_PORT = 9000
MINIO_CONSOLE_PORT = 9001
MINIO_USER = 1000
MINIO_STORAGE = "20Gi"
MINIO_DATA = "/data"


@dataclass(frozen=True)
class StatePaths:
    """Where one app's state lives (URIs Flink understands)."""

    checkpoints: str
    savepoints: str
    ha: str


def state_paths(settings: FlinkSettings, app: str) -> StatePaths:
    """`<state_uri>/<app>/checkpoints`, `.../savepoints` and `.../ha`: the only place these paths are made."""
    root = f"{settings.state_uri.rstrip('/')}/{app}"
    return StatePaths(checkpoints=f"{root}/checkpoints", savepoints=f"{root}/savepoints", ha=f"{root}/ha")


def scheme(settings: FlinkSettings) -> str:
    return settings.state_scheme


def is_s3(settings: FlinkSettings) -> bool:
    return settings.is_s3


def is_local_path(settings: FlinkSettings) -> bool:
    return scheme(settings) == "file"


def bucket(settings: FlinkSettings) -> str:
    """The bucket of an S3 state URI (`s3://bucket/prefix` -> `bucket`)."""
    return settings.bucket


def local_root(settings: FlinkSettings) -> str:
    """The directory of a `file://` state URI."""
    return urlparse(settings.state_uri).path.rstrip("/") or "/"


def problems(settings: FlinkSettings) -> list[str]:
    """What is wrong with the checkpoint storage settings, one readable line each (empty: fine)."""
    return [f"{key} = {value!r}: allowed: {allowed}" for key, value, allowed in settings.storage_problems()]


def flink_configuration(settings: FlinkSettings) -> dict[str, str]:
    """The S3 filesystem keys of a FlinkDeployment (endpoint and path-style access for S3-compatible stores)."""
    if not is_s3(settings) or not settings.s3_endpoint:
        return {}
    return {"s3.endpoint": settings.s3_endpoint, "s3.path.style.access": "true"}


def container_env(settings: FlinkSettings) -> list[dict[str, Any]]:
    """Environment of the Flink containers: the S3 plugin enabled, and access keys from the secret."""
    if not is_s3(settings):
        return []
    env: list[dict[str, Any]] = [{"name": "ENABLE_BUILT_IN_PLUGINS", "value": S3_PLUGIN}]
    if settings.s3_credentials_secret:
        for name, key in ((AWS_ACCESS_KEY_ENV, ACCESS_KEY), (AWS_SECRET_KEY_ENV, SECRET_KEY)):
            env.append(
                {
                    "name": name,
                    "valueFrom": {"secretKeyRef": {"name": settings.s3_credentials_secret, "key": key}},
                }
            )
    return env


def local_state_claim(app: str) -> str:
    return f"{app}-flink-state"


def render_local_state(platform: Platform, app: str) -> list[dict[str, Any]]:
    """For a `file://` state URI: the claim an app's JobManager and TaskManagers share (one-node clusters)."""
    if not is_local_path(platform.flink):
        return []
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": metadata(local_state_claim(app), platform.namespace, labels("flink-state", app)),
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "5Gi"}},
            },
        }
    ]


def _minio_create_bucket(name: str) -> list[str]:
    """postStart hook: wait for the server, then create the bucket (idempotent). Credentials come from the
    container environment at run time, never from this command line as written."""
    script = (
        "export MC_CONFIG_DIR=/tmp/.mc; "
        f'export MC_HOST_local="http://$MINIO_ROOT_USER:$MINIO_ROOT_PASSWORD@127.0.0.1:{MINIO_PORT}"; '
        "for i in $(seq 1 60); do "
        f"mc mb --ignore-existing local/{name} >/dev/null 2>&1 && exit 0; sleep 2; "
        "done; exit 1"
    )
    return ["/bin/sh", "-c", script]


def render_minio(platform: Platform) -> list[dict[str, Any]]:
    """The dev MinIO (PVC, Deployment, Service) that holds checkpoints, savepoints and HA metadata."""
    settings = platform.flink
    if not settings.deploy_minio:
        return []
    ns = platform.namespace
    lab = labels("checkpoint-storage", MINIO_NAME)
    selector = {"app.kubernetes.io/name": MINIO_NAME, "app.kubernetes.io/component": "checkpoint-storage"}
    secret = settings.s3_credentials_secret
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(f"{MINIO_NAME}-data", ns, lab),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": MINIO_STORAGE}}},
    }
    container = {
        "name": MINIO_NAME,
        "image": pinned_image(MINIO_IMAGE),
        "imagePullPolicy": "IfNotPresent",
        "args": [
            "server",
            MINIO_DATA,
            "--address",
            f":{MINIO_PORT}",
            "--console-address",
            f":{MINIO_CONSOLE_PORT}",
        ],
        "env": [
            {"name": "MINIO_ROOT_USER", "valueFrom": {"secretKeyRef": {"name": secret, "key": ACCESS_KEY}}},
            {
                "name": "MINIO_ROOT_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": secret, "key": SECRET_KEY}},
            },
            {"name": "MINIO_BROWSER", "value": "off"},
        ],
        "ports": [{"name": "s3", "containerPort": MINIO_PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/minio/health/ready", "port": MINIO_PORT},
            "periodSeconds": 10,
        },
        "livenessProbe": {
            "httpGet": {"path": "/minio/health/live", "port": MINIO_PORT},
            "initialDelaySeconds": 10,
            "periodSeconds": 20,
        },
        "lifecycle": {"postStart": {"exec": {"command": _minio_create_bucket(bucket(settings))}}},
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
        "securityContext": restricted_container_security(),
        "volumeMounts": [
            {"name": "data", "mountPath": MINIO_DATA},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(MINIO_NAME, ns, lab),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},  # one pod owns the ReadWriteOnce volume
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": lab},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": MINIO_USER,
                        "runAsGroup": MINIO_USER,
                        "fsGroup": MINIO_USER,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [
                        {"name": "data", "persistentVolumeClaim": {"claimName": f"{MINIO_NAME}-data"}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(MINIO_NAME, ns, lab),
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "s3", "port": MINIO_PORT, "targetPort": MINIO_PORT, "protocol": "TCP"}],
        },
    }
    return [pvc, deployment, service]


def render_credentials(platform: Platform) -> list[dict[str, Any]]:
    """The S3 credentials secret, when the stack's secret config carries the keys (else it must exist)."""
    settings = platform.flink
    if settings.s3_credentials is None or not settings.s3_credentials_secret:
        return []
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata(
                settings.s3_credentials_secret, platform.namespace, labels("checkpoint-storage")
            ),
            "type": "Opaque",
            # pulumi-kubernetes keeps a Secret's data secret in state and outputs.
            "stringData": {
                ACCESS_KEY: settings.s3_credentials.access_key.value,
                SECRET_KEY: settings.s3_credentials.secret_key.value,
            },
        }
    ]


def render_checkpoint_storage(platform: Platform) -> list[dict[str, Any]]:
    """Every object the environment's shared checkpoint storage needs: credentials, dev's MinIO."""
    return [*render_credentials(platform), *render_minio(platform)]


@dataclass(frozen=True)
class CheckpointStorageArgs:
    platform: Platform

    def __post_init__(self) -> None:
        found = problems(self.platform.flink)
        if found:
            raise ValueError(
                f"invalid Flink checkpoint storage for stack {self.platform.stack}: " + "; ".join(found)
            )


class CheckpointStorage(pulumi.ComponentResource):
    """The environment's checkpoint storage: in dev an in-cluster MinIO, elsewhere nothing to create."""

    endpoint: pulumi.Output[str]
    """The S3 endpoint Flink uses ('' for the provider's default endpoint)."""
    state_uri: pulumi.Output[str]
    """Base URI of every app's checkpoints, savepoints and HA metadata."""

    def __init__(
        self, name: str, args: CheckpointStorageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("headwater:flink:CheckpointStorage", name, None, opts)
        self.resources = [
            create_object(
                f"{name}-{o['kind'].lower()}-{o['metadata']['name']}", o, pulumi.ResourceOptions(parent=self)
            )
            for o in render_checkpoint_storage(args.platform)
        ]
        self.endpoint = pulumi.Output.from_input(args.platform.flink.s3_endpoint or "")
        self.state_uri = pulumi.Output.from_input(args.platform.flink.state_uri)
        self.register_outputs({"endpoint": self.endpoint, "state_uri": self.state_uri})
