"""Apicurio Registry 3 with KafkaSQL storage, and every catalog contract registered in it.

A plain Deployment of the pinned upstream image rather than the Apicurio operator's `ApicurioRegistry3`
resource: the operator would be one more controller to install, pin and upgrade, its CRD would have to
be fetched and validated like Strimzi's and Flink's, and it would generate the very objects written
here (Deployment, Service, Ingress, PodDisruptionBudget) while hiding the settings that matter for
KafkaSQL behind its own schema. These are core kinds, validated against the Kubernetes schemas.

The registry talks to Kafka over the cluster's TLS listener as its own principal `schema-registry`
(SCRAM-SHA-512 over TLS, or mTLS, as the cluster's listener demands), trusting the cluster CA. Its
storage needs are in `headwater.contracts.kafkasql`; what the catalog does not grant yet is reported as
warnings. The Confluent-compatible API (`/apis/ccompat/v7`) is served by the `schema-registry` Service on
port 8080 to the apps; with `registry.host` an Ingress publishes it, with TLS from `registry.tlsSecret`.

Nobody reaches the API without credentials (`headwater.contracts.access`): HTTP basic authentication of the
catalog's registry users and role-based authorization. The platform's publisher (`contracts-publisher`)
registers the contracts; every principal whose flows touch a contracted topic reads as itself. Each user's
password lives in its own Secret `<user>-registry` (key `password`), created with the cluster's secret
management before `pulumi up`; the registry reads them from its environment, each app mounts only its own.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import pulumi

from components.k8s import create_object, labels, metadata, pinned_image, restricted_container_security
from components.kafka_cluster import bootstrap_address, cluster_ca_secret
from components.kafka_users import user_secret
from headwater import versions
from headwater.contracts import access, kafkasql
from headwater.contracts.model import ContractError, load_contracts, registry_warnings
from headwater.kafka_config import KeyStore, format_properties, java_client_properties
from headwater.spec import Authentication, Platform

NAME = "schema-registry"
COMPONENT = "schema-registry"
IMAGE_REPOSITORY = "quay.io/apicurio/apicurio-registry"
HTTP_PORT = 8080
MANAGEMENT_PORT = 9000  # Quarkus management interface: /health/*, /metrics
RUN_AS_USER = 1001  # the image's user
CONFIG_DIR = "/etc/headwater/registry"
CONFIG_FILE = "registry.properties"
CONFIG_MAP = f"{NAME}-config"
CA_DIR = "/etc/headwater/kafka-ca"
USER_DIR = "/etc/headwater/kafka-user"
CCOMPAT_PATH = "/apis/ccompat/v7"
REGISTRY_URL_ENV = "HEADWATER_REGISTRY_URL"
PUBLISHER_PASSWORD_ENV = "HEADWATER_REGISTRY_PASSWORD"


def registry_image() -> str:
    return pinned_image(f"{IMAGE_REPOSITORY}:{versions.APICURIO_REGISTRY_VERSION}")


def service_url(platform: Platform) -> str:
    """The registry's root inside the cluster (apps add /apis/ccompat/v7)."""
    return f"http://{NAME}.{platform.namespace}.svc:{HTTP_PORT}"


def external_url(platform: Platform) -> str | None:
    """The registry's root through the Ingress, when the stack publishes one."""
    host = platform.registry.host
    if not host:
        return None
    return f"{'https' if platform.registry.tls_secret else 'http'}://{host}"


def _selector() -> dict[str, str]:
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "headwater"}


def kafka_client_settings(platform: Platform) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """(Kafka client settings of the registry's principal, the env vars carrying their secrets)."""
    principal = kafkasql.storage(platform).principal
    secret = user_secret(principal.name)
    client = java_client_properties(
        principal.authentication,
        truststore=KeyStore("PEM", f"{CA_DIR}/ca.crt"),
        keystore=KeyStore("PKCS12", f"{USER_DIR}/user.p12", "${KAFKA_KEYSTORE_PASSWORD}"),
        jaas_config="${KAFKA_SASL_JAAS_CONFIG}",
    )
    if principal.authentication == Authentication.SCRAM:
        env = [_secret_env("KAFKA_SASL_JAAS_CONFIG", secret, "sasl.jaas.config")]
    else:
        env = [_secret_env("KAFKA_KEYSTORE_PASSWORD", secret, "user.password")]
    return client, env


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def user_env(platform: Platform) -> list[dict[str, Any]]:
    """The registry users' passwords, each from its own Secret (`<user>-registry`, key `password`)."""
    return [
        _secret_env(user.password_env, user.secret, access.SECRET_KEY)
        for user in access.registry_users(platform)
    ]


def registry_properties(platform: Platform) -> dict[str, str]:
    """The registry's settings (no secrets: those are `${...}` references to environment variables)."""
    client, _ = kafka_client_settings(platform)
    props = kafkasql.storage_properties(
        bootstrap_address(platform.kafka, platform.namespace), client, kafkasql.storage(platform).topics
    )
    # Basic authentication of the catalog's registry users and role-based authorization (read-only or write).
    props |= access.realm_properties(access.registry_users(platform), lambda u: "${" + u.password_env + "}")
    props |= {
        "apicurio.rest.artifact.deletion.enabled": "false",
        "apicurio.storage.snapshot.location": "/tmp",
        "quarkus.http.port": str(HTTP_PORT),
        "quarkus.management.port": str(MANAGEMENT_PORT),
    }
    if platform.registry.host:
        # Behind the Ingress: links and redirects use the public host and scheme.
        props["quarkus.http.proxy.proxy-address-forwarding"] = "true"
        props["quarkus.http.proxy.enable-forwarded-host"] = "true"
    return dict(sorted(props.items()))


def _spread(platform: Platform) -> list[dict[str, Any]]:
    if platform.registry.replicas < 2:
        return []
    selector = {"matchLabels": _selector()}
    keys = ["kubernetes.io/hostname"]
    if platform.kafka.racks:
        keys.append(platform.kafka.rack_topology_key)
    return [
        {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": selector}
        for key in keys
    ]


def _volumes(platform: Platform) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts): the configuration, the cluster CA, a scratch /tmp and, for a tls principal, its
    key store."""
    principal = kafkasql.storage(platform).principal
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": CONFIG_MAP}},
        {
            "name": "kafka-ca",
            "secret": {
                "secretName": cluster_ca_secret(platform.kafka),
                "items": [{"key": "ca.crt", "path": "ca.crt"}],
            },
        },
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "kafka-ca", "mountPath": CA_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if principal.authentication == Authentication.TLS:
        volumes.append(
            {
                "name": "kafka-user",
                "secret": {
                    "secretName": user_secret(principal.name),
                    "items": [{"key": "user.p12", "path": "user.p12"}],
                },
            }
        )
        mounts.append({"name": "kafka-user", "mountPath": USER_DIR, "readOnly": True})
    return volumes, mounts


def _probe(path: str, **timing: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "management"}, **timing}


def _pod_spec(platform: Platform) -> dict[str, Any]:
    """One non-root, read-only registry container with its secrets from the environment, spread over nodes
    (and zones) when there are several replicas."""
    volumes, mounts = _volumes(platform)
    _, secret_env = kafka_client_settings(platform)
    container = {
        "name": "registry",
        "image": registry_image(),
        "imagePullPolicy": "IfNotPresent",
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "management", "containerPort": MANAGEMENT_PORT, "protocol": "TCP"},
        ],
        "env": [
            {"name": "QUARKUS_CONFIG_LOCATIONS", "value": f"{CONFIG_DIR}/{CONFIG_FILE}"},
            *secret_env,
            *user_env(platform),
        ],
        "volumeMounts": mounts,
        "resources": platform.registry.resources.k8s(),
        # KafkaSQL replays the whole journal before it is ready: give start-up time, then probe tightly.
        "startupProbe": _probe("/health/live", periodSeconds=5, failureThreshold=60, timeoutSeconds=3),
        "livenessProbe": _probe("/health/live", periodSeconds=10, failureThreshold=3, timeoutSeconds=3),
        "readinessProbe": _probe("/health/ready", periodSeconds=5, failureThreshold=3, timeoutSeconds=3),
        "securityContext": {**restricted_container_security(), "readOnlyRootFilesystem": True},
    }
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    spread = _spread(platform)
    if spread:
        pod_spec["topologySpreadConstraints"] = spread
    return pod_spec


def _deployment(platform: Platform, config_text: str) -> dict[str, Any]:
    common = labels(COMPONENT, NAME)
    config_hash = hashlib.sha256(config_text.encode()).hexdigest()[:16]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(NAME, platform.namespace, common),
        "spec": {
            "replicas": platform.registry.replicas,
            "selector": {"matchLabels": _selector()},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": common,
                    # A changed configuration rolls the pods.
                    "annotations": {"headwater.io/config-hash": config_hash},
                },
                "spec": _pod_spec(platform),
            },
        },
    }


def _service(platform: Platform) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(NAME, platform.namespace, labels(COMPONENT, NAME)),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(),
            "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _ingress(platform: Platform) -> dict[str, Any]:
    settings = platform.registry
    assert settings.host, "only for a published registry"
    ingress_spec: dict[str, Any] = {
        "rules": [
            {
                "host": settings.host,
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": NAME, "port": {"name": "http"}}},
                        }
                    ]
                },
            }
        ]
    }
    if settings.ingress_class:
        ingress_spec["ingressClassName"] = settings.ingress_class
    if settings.tls_secret:
        ingress_spec["tls"] = [{"hosts": [settings.host], "secretName": settings.tls_secret}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata(NAME, platform.namespace, labels(COMPONENT, NAME)),
        "spec": ingress_spec,
    }


def _network_policy(platform: Platform) -> dict[str, Any]:
    # Only the platform's own pods (apps, producers) and, when published, the ingress controller reach the API.
    settings = platform.registry
    peers: list[dict[str, Any]] = [{"podSelector": {}}]
    if settings.host:
        peers.append(
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": settings.ingress_namespace}
                }
            }
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(NAME, platform.namespace, labels(COMPONENT, NAME)),
        "spec": {
            "podSelector": {"matchLabels": _selector()},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"port": "http", "protocol": "TCP"}]}],
        },
    }


def _disruption_budget(platform: Platform) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(NAME, platform.namespace, labels(COMPONENT, NAME)),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _selector()}},
    }


def render_schema_registry(platform: Platform) -> list[dict[str, Any]]:
    """ConfigMap, Deployment, Service and NetworkPolicy of the registry (+ Ingress and PDB per stack)."""
    config_text = format_properties(registry_properties(platform))
    objs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(CONFIG_MAP, platform.namespace, labels(COMPONENT, NAME)),
            "data": {CONFIG_FILE: config_text},
        },
        _deployment(platform, config_text),
        _service(platform),
    ]
    if platform.registry.host:
        objs.append(_ingress(platform))
    objs.append(_network_policy(platform))
    if platform.registry.replicas > 1:
        objs.append(_disruption_budget(platform))
    return objs


@dataclass(frozen=True)
class SchemaRegistryArgs:
    """What the registry needs. `registry_url` is where Pulumi reaches its API to register the contracts:
    by default $HEADWATER_REGISTRY_URL, else the Ingress URL, else the in-cluster Service (for a program
    that runs inside the cluster). `register_contracts=False` deploys the registry alone."""

    platform: Platform
    registry_url: str | None = None
    register_contracts: bool = True
    verify_tls: bool | str = True
    # The publisher's password: given, else $HEADWATER_REGISTRY_PASSWORD, else read from its Secret in the
    # cluster (the same one the registry reads), so it is written down in one place.
    publisher_password: Any = None  # pulumi.Input[str]

    def __post_init__(self) -> None:
        problems = kafkasql.registry_problems(self.platform)
        if self.register_contracts:
            try:
                load_contracts(self.platform)
            except ContractError as err:
                problems += err.problems
        if problems:
            raise ValueError(
                f"invalid schema registry settings for stack {self.platform.stack}:\n  "
                + "\n  ".join(problems)
            )

    def api_url(self) -> str:
        return (
            self.registry_url
            or os.environ.get(REGISTRY_URL_ENV)
            or external_url(self.platform)
            or service_url(self.platform)
        )


def _publisher_password(args: SchemaRegistryArgs, name: str, parent: pulumi.Resource) -> Any:
    if args.publisher_password is not None:
        return args.publisher_password
    if os.environ.get(PUBLISHER_PASSWORD_ENV):
        return pulumi.Output.secret(os.environ[PUBLISHER_PASSWORD_ENV])
    import base64

    import pulumi_kubernetes as k8s

    secret = access.publisher().secret
    existing = k8s.core.v1.Secret.get(
        f"{name}-publisher-secret",
        f"{args.platform.namespace}/{secret}",
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return pulumi.Output.secret(
        existing.data.apply(
            lambda data: base64.b64decode((data or {}).get(access.SECRET_KEY, "")).decode() or None
        )
    )


class SchemaRegistry(pulumi.ComponentResource):
    """The registry Deployment behind its Service (and Ingress), plus one `SubjectSchema` per contract."""

    service_url: pulumi.Output[str]
    """Root URL of the registry inside the cluster; apps use `<service_url>/apis/ccompat/v7`."""
    ccompat_url: pulumi.Output[str]
    """The Confluent-compatible API inside the cluster."""
    schema_ids: pulumi.Output[dict[str, int]]
    """Subject -> the registry's id of its current schema."""

    def __init__(
        self, name: str, args: SchemaRegistryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("headwater:registry:SchemaRegistry", name, None, opts)
        platform = args.platform
        for gap in kafkasql.ungranted(platform):
            pulumi.log.warn(f"schema registry: {gap}", self)
        rendered = render_schema_registry(platform)
        config = [o for o in rendered if o["kind"] == "ConfigMap"]
        made = {
            o["kind"]: create_object(f"{name}-{o['kind'].lower()}", o, pulumi.ResourceOptions(parent=self))
            for o in config
        }
        for o in rendered:
            if o["kind"] != "ConfigMap":
                made[o["kind"]] = create_object(
                    f"{name}-{o['kind'].lower()}",
                    o,
                    pulumi.ResourceOptions(parent=self, depends_on=list(made.values())),
                )
        self.subjects: dict[str, pulumi.Resource] = {}
        if args.register_contracts:
            from headwater.contracts.provider import SubjectSchema, SubjectSchemaArgs

            # Registration needs the API up: after the Deployment is ready (and the Ingress, if any).
            api = [made[k] for k in ("Deployment", "Service", "Ingress") if k in made]
            password = _publisher_password(args, name, self)
            for contract in load_contracts(platform):
                for warning in registry_warnings(contract):
                    pulumi.log.warn(f"schema registry: {warning}", self)
                self.subjects[contract.subject] = SubjectSchema(
                    f"{name}-subject-{contract.topic}",
                    SubjectSchemaArgs(
                        registry_url=args.api_url(),
                        subject=contract.subject,
                        schema=contract.text,
                        schema_type=contract.schema_type.value,
                        compatibility=contract.compatibility.value,
                        verify_tls=args.verify_tls,
                        username=access.PUBLISHER,
                        password=password,
                    ),
                    pulumi.ResourceOptions(parent=self, depends_on=api),
                )
        self.service_url = pulumi.Output.from_input(service_url(platform))
        self.ccompat_url = pulumi.Output.from_input(service_url(platform) + CCOMPAT_PATH)
        ids = {subject: res.schema_id for subject, res in self.subjects.items()}  # type: ignore[attr-defined]
        self.schema_ids = pulumi.Output.from_input(ids) if ids else pulumi.Output.from_input({})
        self.register_outputs(
            {"service_url": self.service_url, "ccompat_url": self.ccompat_url, "schema_ids": self.schema_ids}
        )
