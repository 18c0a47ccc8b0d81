"""The Strimzi cluster operator and the Kafka cluster (KRaft node pools + `Kafka`), from the platform spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from components.k8s import WAIT_READY, HelmRelease, create_object, create_release, labels, metadata, namespace
from headwater import versions
from headwater.kafka_config import broker_config
from headwater.spec import Authentication, KafkaSettings, Storage, Tier

OPERATOR_NAMESPACE = "headwater-system"
TLS_PORT = 9093
PLAIN_PORT = 9092
METRICS_KEY = "kafka-metrics-config.yml"

# JMX exporter rules for the broker metrics the dashboards and alerts use (throughput, ISR, request latency,
# controller health). Kept small on purpose: each rule is a metric family someone reads.
_JMX_RULES = """lowercaseOutputName: true
rules:
  - pattern: kafka.server<type=(.+), name=(.+), clientId=(.+), topic=(.+), partition=(.*)><>Value
    name: kafka_server_$1_$2
    type: GAUGE
    labels: {clientId: "$3", topic: "$4", partition: "$5"}
  - pattern: kafka.server<type=(.+), name=(.+)PerSec\\\\w*, topic=(.+)><>Count
    name: kafka_server_$1_$2_total
    type: COUNTER
    labels: {topic: "$3"}
  - pattern: kafka.server<type=(.+), name=(.+)PerSec\\\\w*><>Count
    name: kafka_server_$1_$2_total
    type: COUNTER
  - pattern: kafka.server<type=(.+), name=(.+)><>Value
    name: kafka_server_$1_$2
    type: GAUGE
  - pattern: kafka.controller<type=(.+), name=(.+)><>(Count|Value)
    name: kafka_controller_$1_$2
  - pattern: kafka.network<type=(.+), name=(.+), request=(.+)><>(\\\\d+)thPercentile
    name: kafka_network_$1_$2_percentile
    type: GAUGE
    labels: {request: "$3", quantile: "0.$4"}
  - pattern: kafka.cluster<type=(.+), name=(.+), topic=(.+), partition=(.*)><>Value
    name: kafka_cluster_$1_$2
    type: GAUGE
    labels: {topic: "$3", partition: "$4"}
"""


def super_user_principal(settings: KafkaSettings, name: str) -> str:
    """Strimzi names TLS users by their certificate subject (`CN=<name>`) and SCRAM users by name."""
    return f"CN={name}" if settings.authentication == Authentication.TLS else name


def render_strimzi_operator(
    watched_namespaces: tuple[str, ...], charts_folder: str | None = None
) -> HelmRelease:
    """The cluster operator at a pinned chart and image version, watching only the platform namespaces."""
    return HelmRelease(
        name="strimzi-cluster-operator",
        namespace=OPERATOR_NAMESPACE,
        chart=versions.STRIMZI_CHART,
        version=versions.STRIMZI_VERSION,
        repository=versions.STRIMZI_HELM_REPO,
        charts_folder=charts_folder,
        values={
            "watchNamespaces": list(watched_namespaces),
            "watchAnyNamespace": False,
            "defaultImageRegistry": "quay.io",
            "defaultImageRepository": "strimzi",
            "defaultImageTag": versions.STRIMZI_VERSION,
            "replicas": 1,
            "resources": {
                "requests": {"cpu": "200m", "memory": "384Mi"},
                "limits": {"cpu": "1", "memory": "384Mi"},
            },
        },
    )


def _jbod(storage: Storage, metadata_volume: bool) -> dict[str, Any]:
    volumes = []
    for i in range(storage.volumes):
        vol: dict[str, Any] = {
            "id": i,
            "type": "persistent-claim",
            "size": storage.size,
            "deleteClaim": storage.delete_claim,
        }
        if storage.storage_class:
            vol["class"] = storage.storage_class
        if metadata_volume and i == 0:
            vol["kraftMetadata"] = "shared"
        volumes.append(vol)
    return {"type": "jbod", "volumes": volumes}


def _zone_template(settings: KafkaSettings, cluster: str, pool: str) -> dict[str, Any]:
    """Spread a pool's pods evenly over the declared zones (one replica of each partition per zone)."""
    if not settings.racks:
        return {}
    selector = {"matchLabels": {"strimzi.io/cluster": cluster, "strimzi.io/pool-name": pool}}
    return {
        "pod": {
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {
                                        "key": settings.rack_topology_key,
                                        "operator": "In",
                                        "values": list(settings.racks),
                                    }
                                ]
                            }
                        ]
                    }
                }
            },
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": settings.rack_topology_key,
                    "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": selector,
                }
            ],
        }
    }


def _node_pool(
    settings: KafkaSettings,
    namespace: str,
    name: str,
    roles: list[str],
    replicas: int,
    storage: Storage,
    resources: Any,
) -> dict[str, Any]:
    cluster = settings.cluster_name
    spec: dict[str, Any] = {
        "replicas": replicas,
        "roles": roles,
        "storage": _jbod(storage, metadata_volume=True),
        "resources": resources.k8s(),
    }
    template = _zone_template(settings, cluster, name)
    if template:
        spec["template"] = template
    return {
        "apiVersion": versions.STRIMZI_API_VERSION,
        "kind": "KafkaNodePool",
        "metadata": metadata(name, namespace, labels("kafka", cluster, {"strimzi.io/cluster": cluster})),
        "spec": spec,
    }


def _node_pools(settings: KafkaSettings, namespace: str) -> list[dict[str, Any]]:
    """Combined broker+controller nodes, or a controller quorum and brokers in pools of their own."""
    if settings.combined:
        return [
            _node_pool(
                settings,
                namespace,
                "dual-role",
                ["controller", "broker"],
                settings.brokers,
                settings.broker_storage,
                settings.broker_resources,
            )
        ]
    return [
        _node_pool(
            settings,
            namespace,
            "controllers",
            ["controller"],
            settings.controllers,
            settings.controller_storage,
            settings.controller_resources,
        ),
        _node_pool(
            settings,
            namespace,
            "brokers",
            ["broker"],
            settings.brokers,
            settings.broker_storage,
            settings.broker_resources,
        ),
    ]


def _metrics_config_map(settings: KafkaSettings, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(
            metrics_config_map_name(settings), namespace, labels("kafka", settings.cluster_name)
        ),
        "data": {METRICS_KEY: _JMX_RULES},
    }


def metrics_config_map_name(settings: KafkaSettings) -> str:
    return f"{settings.cluster_name}-kafka-metrics"


def _listeners(settings: KafkaSettings, tier: Tier) -> list[dict[str, Any]]:
    auth = {"type": settings.authentication.value}
    listeners: list[dict[str, Any]] = [
        {"name": "tls", "port": TLS_PORT, "type": "internal", "tls": True, "authentication": auth},
    ]
    if settings.plaintext_listener and tier.is_development:
        # Development only: still authenticated (SCRAM), never anonymous.
        listeners.append(
            {
                "name": "plain",
                "port": PLAIN_PORT,
                "type": "internal",
                "tls": False,
                "authentication": {"type": Authentication.SCRAM.value},
            }
        )
    return listeners


def _kafka_spec(settings: KafkaSettings, tier: Tier) -> dict[str, Any]:
    """`spec.kafka`: version, listeners, authorization, the derived broker config, metrics, racks."""
    kafka_spec: dict[str, Any] = {
        "version": versions.KAFKA_VERSION,
        "metadataVersion": versions.KAFKA_METADATA_VERSION,
        "listeners": _listeners(settings, tier),
        "authorization": {
            "type": "simple",
            "superUsers": [super_user_principal(settings, u) for u in settings.super_users],
        },
        "config": broker_config(settings),
        "metricsConfig": {
            "type": "jmxPrometheusExporter",
            "valueFrom": {"configMapKeyRef": {"name": metrics_config_map_name(settings), "key": METRICS_KEY}},
        },
    }
    if settings.racks:
        kafka_spec["rack"] = {"topologyKey": settings.rack_topology_key}
    return kafka_spec


def _kafka(settings: KafkaSettings, namespace: str, tier: Tier) -> dict[str, Any]:
    """The `Kafka` resource: the brokers' spec, the entity operators and the optional exporter and Cruise
    Control."""
    operator_resources = {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"cpu": "500m", "memory": "512Mi"},
    }
    spec: dict[str, Any] = {
        "kafka": _kafka_spec(settings, tier),
        "entityOperator": {
            "topicOperator": {"resources": operator_resources},
            "userOperator": {"resources": operator_resources},
        },
    }
    if settings.exporter:
        spec["kafkaExporter"] = {
            "topicRegex": ".*",
            "groupRegex": ".*",
            "resources": {
                "requests": {"cpu": "100m", "memory": "128Mi"},
                "limits": {"cpu": "500m", "memory": "256Mi"},
            },
        }
    if settings.cruise_control:
        spec["cruiseControl"] = {"autoRebalance": [{"mode": "add-brokers"}, {"mode": "remove-brokers"}]}
    cluster = settings.cluster_name
    return {
        "apiVersion": versions.STRIMZI_API_VERSION,
        "kind": "Kafka",
        "metadata": metadata(
            cluster,
            namespace,
            labels("kafka", cluster),
            {"strimzi.io/node-pools": "enabled", "strimzi.io/kraft": "enabled", **WAIT_READY},
        ),
        "spec": spec,
    }


def render_kafka_cluster(settings: KafkaSettings, namespace: str, tier: Tier) -> list[dict[str, Any]]:
    """Node pools, the `Kafka` resource and its metrics ConfigMap: the whole broker side of one environment."""
    return [
        *_node_pools(settings, namespace),
        _metrics_config_map(settings, namespace),
        _kafka(settings, namespace, tier),
    ]


def bootstrap_address(settings: KafkaSettings, namespace: str) -> str:
    """The in-cluster TLS bootstrap address that clients use."""
    return f"{settings.cluster_name}-kafka-bootstrap.{namespace}.svc:{TLS_PORT}"


def cluster_ca_secret(settings: KafkaSettings) -> str:
    return f"{settings.cluster_name}-cluster-ca-cert"


@dataclass(frozen=True)
class KafkaClusterArgs:
    """What a Kafka cluster needs; validates itself with the same rules as the stack loader."""

    namespace: str
    tier: Tier
    settings: KafkaSettings

    def __post_init__(self) -> None:
        problems = self.settings.problems(self.tier)
        if problems:
            lines = "; ".join(f"kafka.{k} = {v!r} (allowed: {a})" for k, v, a in problems)
            raise ValueError(f"invalid Kafka cluster settings for a {self.tier.value} environment: {lines}")


class StrimziOperator(pulumi.ComponentResource):
    """The Strimzi cluster operator, installed from its pinned Helm chart into its own namespace."""

    release: pulumi.Output[str]
    """Name of the Helm release."""

    def __init__(
        self,
        name: str,
        watched_namespaces: tuple[str, ...],
        opts: pulumi.ResourceOptions | None = None,
        create_namespace: bool = True,
        charts_folder: str | None = None,
    ) -> None:
        super().__init__("headwater:kafka:StrimziOperator", name, None, opts)
        deps = []
        if create_namespace:
            ns = namespace(OPERATOR_NAMESPACE, "operators")
            deps.append(create_object(f"{name}-namespace", ns, pulumi.ResourceOptions(parent=self)))
        release = create_release(
            f"{name}-release",
            render_strimzi_operator(watched_namespaces, charts_folder),
            pulumi.ResourceOptions(parent=self, depends_on=deps),
        )
        self.release = release.name
        self.register_outputs({"release": self.release})


class KafkaCluster(pulumi.ComponentResource):
    """A Strimzi Kafka cluster: KRaft node pools, the `Kafka` resource (waited on until Ready) and metrics."""

    bootstrap: pulumi.Output[str]
    """TLS bootstrap address inside the cluster (host:port)."""
    cluster_ca_secret: pulumi.Output[str]
    """Name of the secret holding the cluster CA certificate (`ca.crt`) that clients trust."""
    kafka: pulumi.Resource
    """The `Kafka` custom resource; dependents (topics, users, apps) wait on it."""

    def __init__(self, name: str, args: KafkaClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("headwater:kafka:KafkaCluster", name, None, opts)
        rendered = render_kafka_cluster(args.settings, args.namespace, args.tier)
        parts = [
            create_object(
                f"{name}-{o['kind'].lower()}-{o['metadata']['name']}", o, pulumi.ResourceOptions(parent=self)
            )
            for o in rendered
            if o["kind"] != "Kafka"
        ]
        (kafka,) = (o for o in rendered if o["kind"] == "Kafka")
        self.kafka = create_object(
            f"{name}-kafka", kafka, pulumi.ResourceOptions(parent=self, depends_on=parts)
        )
        self.bootstrap = pulumi.Output.from_input(bootstrap_address(args.settings, args.namespace))
        self.cluster_ca_secret = pulumi.Output.from_input(cluster_ca_secret(args.settings))
        self.register_outputs({"bootstrap": self.bootstrap, "cluster_ca_secret": self.cluster_ca_secret})
