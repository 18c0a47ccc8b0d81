"""Kafka Connect with Debezium (`KafkaConnect`, a `KafkaConnector` per outbox source), from the platform spec.

Strimzi builds the Connect image itself: its build pulls Debezium's PostgreSQL connector archive from Maven
Central at the pinned version and checks its SHA-512, and our contract-check transform's jar from the repository
the stack names (`connect.<name>.contractCheck`, SHA-512 checked too), then pushes the image to
`ConnectCluster.image`. Each connector ends its transform chain with that check, configured with the contracts
of its route topics read from the catalog. Workers
talk to Kafka over TLS as the cluster's own principal (its `KafkaUser`, ACLs derived from the sources' routes),
with exactly-once source support. Database credentials stay in each source's Secret: the connector names them
through Strimzi's `KubernetesSecretConfigProvider`, which reads them with the workers' service account, bound
by a Role to exactly those Secrets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from components.k8s import create_object, labels, metadata
from components.kafka_cluster import bootstrap_address, cluster_ca_secret
from components.kafka_users import user_secret
from headwater import versions
from headwater.cdc import CONTRACT_CHECK_PLUGIN, outbox_connector_config, route_contracts, worker_config
from headwater.kafka_metrics import connect_jmx_exporter_config
from headwater.spec import Authentication, ConnectCluster, Platform, PluginArtifact, Source

METRICS_KEY = "metrics-config.yml"
SECRETS_PROVIDER = "secrets"
SECRETS_PROVIDER_CLASS = "io.strimzi.kafka.KubernetesSecretConfigProvider"
PLUGIN_NAME = "debezium-postgres"


def plugin_url() -> str:
    v = versions.DEBEZIUM_VERSION
    return (
        f"{versions.MAVEN_CENTRAL}/io/debezium/debezium-connector-postgres/{v}/"
        f"debezium-connector-postgres-{v}-plugin.tar.gz"
    )


CONTRACT_CHECK_GROUP_PATH = "dev/headwater/connect"


def contract_check_url(artifact: PluginArtifact) -> str:
    """The contract-check jar at the pinned version in the stack's Maven-layout repository."""
    v = versions.CONTRACT_CHECK_VERSION
    name = CONTRACT_CHECK_PLUGIN
    return f"{artifact.repository}/{CONTRACT_CHECK_GROUP_PATH}/{name}/{v}/{name}-{v}.jar"


def _contract_check_plugin(cluster: ConnectCluster) -> dict[str, Any]:
    if cluster.contract_check is None:
        # The loader requires it of every cluster that captures a source; a spec built by hand may lack it.
        raise ValueError(
            f"Connect cluster {cluster.name} has no contractCheck artifact (stack connect.{cluster.name})"
        )
    return {
        "name": CONTRACT_CHECK_PLUGIN,
        "artifacts": [
            {
                "type": "jar",
                "url": contract_check_url(cluster.contract_check),
                "sha512sum": cluster.contract_check.sha512,
            }
        ],
    }


def service_account(cluster: ConnectCluster) -> str:
    """Strimzi names the Connect pods' service account `<cluster>-connect`."""
    return f"{cluster.name}-connect"


def metrics_config_map_name(cluster: ConnectCluster) -> str:
    return f"{cluster.name}-connect-metrics"


def output_image(platform: Platform, cluster: ConnectCluster) -> str:
    """Where the build pushes the image: the stack's `connect.<name>.image`, else next to the apps' images."""
    if cluster.image:
        return cluster.image
    repo = (
        f"{platform.flink.image_registry}/{cluster.name}" if platform.flink.image_registry else cluster.name
    )
    return f"{repo}:{versions.DEBEZIUM_VERSION}"


def _authentication(platform: Platform, cluster: ConnectCluster) -> dict[str, Any]:
    principal = platform.principal(cluster.name)
    secret = user_secret(principal.name)
    if principal.authentication == Authentication.TLS:
        return {
            "type": "tls",
            "certificateAndKey": {"secretName": secret, "certificate": "user.crt", "key": "user.key"},
        }
    return {
        "type": Authentication.SCRAM.value,
        "username": principal.name,
        "passwordSecret": {"secretName": secret, "password": "password"},
    }


def _sources_of(platform: Platform, cluster: ConnectCluster) -> list[Source]:
    return [s for s in platform.sources if s.connect == cluster.name]


def render_kafka_connect(platform: Platform, cluster: ConnectCluster) -> dict[str, Any]:
    config = worker_config(cluster) | {
        "config.providers": SECRETS_PROVIDER,
        f"config.providers.{SECRETS_PROVIDER}.class": SECRETS_PROVIDER_CLASS,
    }
    spec: dict[str, Any] = {
        "version": versions.KAFKA_VERSION,
        "replicas": cluster.replicas,
        "bootstrapServers": bootstrap_address(platform.kafka, platform.namespace),
        "groupId": cluster.group,
        "configStorageTopic": cluster.config_topic,
        "offsetStorageTopic": cluster.offset_topic,
        "statusStorageTopic": cluster.status_topic,
        "tls": {
            "trustedCertificates": [
                {"secretName": cluster_ca_secret(platform.kafka), "certificate": "ca.crt"}
            ]
        },
        "authentication": _authentication(platform, cluster),
        "config": dict(sorted(config.items())),
        "metricsConfig": {
            "type": "jmxPrometheusExporter",
            "valueFrom": {"configMapKeyRef": {"name": metrics_config_map_name(cluster), "key": METRICS_KEY}},
        },
        "build": {
            "output": {"type": "docker", "image": output_image(platform, cluster)},
            "plugins": [
                {
                    "name": PLUGIN_NAME,
                    "artifacts": [
                        {
                            "type": "tgz",
                            "url": plugin_url(),
                            "sha512sum": versions.DEBEZIUM_POSTGRES_PLUGIN_SHA512,
                        }
                    ],
                },
                _contract_check_plugin(cluster),
            ],
        },
    }
    if cluster.resources is not None:
        spec["resources"] = cluster.resources.k8s()
    return {
        "apiVersion": versions.STRIMZI_API_VERSION,
        "kind": "KafkaConnect",
        # No readiness wait: the first start builds the image, and the connectors need the resource, not a
        # running build (Strimzi starts them once the workers are up).
        "metadata": metadata(cluster.name, platform.namespace, labels("kafka-connect", cluster.name)),
        "spec": spec,
    }


def secret_ref(platform: Platform, source: Source) -> str:
    """The config-provider reference of a source's credentials Secret (without the key and closing brace)."""
    return f"${{{SECRETS_PROVIDER}:{platform.namespace}/{source.endpoint.credentials_secret}"


def render_connector(platform: Platform, source: Source) -> dict[str, Any]:
    config = outbox_connector_config(source, secret_ref(platform, source), route_contracts(platform, source))
    connector_class = config.pop("connector.class")
    tasks = int(config.pop("tasks.max"))
    return {
        "apiVersion": versions.STRIMZI_API_VERSION,
        "kind": "KafkaConnector",
        "metadata": metadata(
            source.connector_name,
            platform.namespace,
            labels(
                "cdc-source",
                source.name,
                {"strimzi.io/cluster": source.connect, "headwater.io/owner": source.owner},
            ),
        ),
        "spec": {"class": connector_class, "tasksMax": tasks, "state": "running", "config": config},
    }


def _metrics_config_map(platform: Platform, cluster: ConnectCluster) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(
            metrics_config_map_name(cluster), platform.namespace, labels("kafka-connect", cluster.name)
        ),
        "data": {METRICS_KEY: connect_jmx_exporter_config()},
    }


def _secret_access(platform: Platform, cluster: ConnectCluster) -> list[dict[str, Any]]:
    """Read access for the workers to exactly their sources' credentials Secrets (and nothing else)."""
    name = f"{cluster.name}-source-credentials"
    meta = metadata(name, platform.namespace, labels("kafka-connect", cluster.name))
    secrets = sorted({s.endpoint.credentials_secret for s in _sources_of(platform, cluster)})
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": meta,
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": secrets, "verbs": ["get"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [
            {"kind": "ServiceAccount", "name": service_account(cluster), "namespace": platform.namespace}
        ],
    }
    return [role, binding]


def render_cdc(platform: Platform) -> list[dict[str, Any]]:
    """Every Connect cluster that captures at least one source, its connectors and their secret access."""
    out: list[dict[str, Any]] = []
    for cluster in platform.connect_clusters:
        sources = _sources_of(platform, cluster)
        if not sources:
            continue
        out.append(_metrics_config_map(platform, cluster))
        out.append(render_kafka_connect(platform, cluster))
        out += _secret_access(platform, cluster)
        out += [render_connector(platform, s) for s in sources]
    return out


@dataclass(frozen=True)
class CdcArgs:
    platform: Platform

    def __post_init__(self) -> None:
        names = {p.name for p in self.platform.principals}
        for cluster in self.platform.connect_clusters:
            if cluster.name not in names:
                raise ValueError(f"Connect cluster {cluster.name!r} has no principal (the loader derives it)")


class Cdc(pulumi.ComponentResource):
    """Kafka Connect clusters with Debezium and a connector per outbox source."""

    def __init__(self, name: str, args: CdcArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("headwater:cdc:Cdc", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        connects: dict[str, Any] = {}
        for obj in render_cdc(args.platform):
            if obj["kind"] == "KafkaConnector":
                continue
            connects[obj["kind"] + "/" + obj["metadata"]["name"]] = create_object(
                f"{name}-{obj['kind'].lower()}-{obj['metadata']['name']}", obj, child
            )
        for obj in render_cdc(args.platform):
            if obj["kind"] != "KafkaConnector":
                continue
            cluster = obj["metadata"]["labels"]["strimzi.io/cluster"]
            create_object(
                f"{name}-connector-{obj['metadata']['name']}",
                obj,
                pulumi.ResourceOptions(parent=self, depends_on=[connects[f"KafkaConnect/{cluster}"]]),
            )
        self.register_outputs({})
