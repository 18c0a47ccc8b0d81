"""The Strimzi cluster operator and the Kafka cluster (KRaft node pools + `Kafka`), from the platform spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from components.k8s import (
    WAIT_READY,
    HelmRelease,
    create_object,
    create_release,
    image_digest,
    labels,
    metadata,
    namespace,
)
from headwater import versions
from headwater.kafka_config import broker_config
from headwater.kafka_metrics import cruise_control_config, jmx_exporter_config
from headwater.spec import Authentication, KafkaSettings, Storage, Tier

OPERATOR_NAMESPACE = "headwater-system"
TLS_PORT = 9093
PLAIN_PORT = 9092
METRICS_KEY = "kafka-metrics-config.yml"
CRUISE_CONTROL_METRICS_KEY = "metrics-config.yml"


def super_user_principal(settings: KafkaSettings, name: str) -> str:
    """Strimzi names TLS users by their certificate subject (`CN=<name>`) and SCRAM users by name."""
    return f"CN={name}" if settings.authentication == Authentication.TLS else name


# The cluster operator's pod security provider. Strimzi 1.2.0 defaults to `baseline`, whose Kafka, init,
# entity operator, Kafka Exporter and Cruise Control containers get no security context; the restricted one
# (`io.strimzi.plugin.security.profiles.impl.RestrictedPodSecurityProvider`) gives each of them
# allowPrivilegeEscalation: false, runAsNonRoot: true, capabilities drop ALL and seccomp RuntimeDefault,
# which the Restricted Pod Security Standard of the platform namespaces demands.
POD_SECURITY_PROVIDER_ENV = "STRIMZI_POD_SECURITY_PROVIDER_CLASS"
POD_SECURITY_PROVIDER = "restricted"


# The chart's image keys (each `<key>.image`, or `image` for the operator itself) and what each runs.
_CHART_IMAGES = {
    "": "operator",
    "topicOperator": "operator",
    "userOperator": "operator",
    "kafkaInit": "operator",
    "kafka": f"kafka:{versions.STRIMZI_VERSION}-kafka-{versions.KAFKA_VERSION}",
    "kafkaExporter": f"kafka:{versions.STRIMZI_VERSION}-kafka-{versions.KAFKA_VERSION}",
    "cruiseControl": f"kafka:{versions.STRIMZI_VERSION}-kafka-{versions.KAFKA_VERSION}",
}


def _chart_digests() -> dict[str, Any]:
    """Chart values that pin by digest the images whose digests are known (the chart prefers a digest)."""
    values: dict[str, Any] = {}
    for key, image in _CHART_IMAGES.items():
        name = image if ":" in image else f"{image}:{versions.STRIMZI_VERSION}"
        digest = image_digest(f"quay.io/strimzi/{name}")
        if digest:
            if key:
                values[key] = {"image": {"digest": digest}}
            else:
                values["image"] = {"digest": digest}
    return values


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
            # The chart's only way to set an operator setting it has no value for (1.2.0: `extraEnvs`).
            "extraEnvs": [{"name": POD_SECURITY_PROVIDER_ENV, "value": POD_SECURITY_PROVIDER}],
            "resources": {
                "requests": {"cpu": "200m", "memory": "384Mi"},
                "limits": {"cpu": "1", "memory": "384Mi"},
            },
            **_chart_digests(),
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


def _pool_template(settings: KafkaSettings, cluster: str, pool: str, replicas: int) -> dict[str, Any]:
    """Where a pool's pods may run: one per node, spread evenly over the declared zones.

    - per node: a required anti-affinity on the hostname, so losing one node costs one broker (or one
      controller: a KRaft quorum must not lose two voters to one node);
    - per zone (with `racks`): a required node affinity on the declared zones (Strimzi adds only `Exists` on
      the topology key) and an even spread over them, so each replica of a partition lands in its own zone.
    """
    if replicas < 2 and not settings.racks:
        return {}
    selector = {"matchLabels": {"strimzi.io/cluster": cluster, "strimzi.io/pool-name": pool}}
    affinity: dict[str, Any] = {}
    if replicas > 1:
        affinity["podAntiAffinity"] = {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": selector, "topologyKey": "kubernetes.io/hostname"}
            ]
        }
    pod: dict[str, Any] = {"affinity": affinity}
    if settings.racks:
        affinity["nodeAffinity"] = {
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
        pod["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": settings.rack_topology_key,
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": selector,
            }
        ]
    return {"pod": dict(sorted(pod.items()))}


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
    template = _pool_template(settings, cluster, name, replicas)
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
        "data": {METRICS_KEY: jmx_exporter_config()},
    }


def metrics_config_map_name(settings: KafkaSettings) -> str:
    return f"{settings.cluster_name}-kafka-metrics"


def cruise_control_config_map_name(settings: KafkaSettings) -> str:
    return f"{settings.cluster_name}-cruise-control-metrics"


def _cruise_control_config_map(settings: KafkaSettings, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(
            cruise_control_config_map_name(settings), namespace, labels("kafka", settings.cluster_name)
        ),
        "data": {CRUISE_CONTROL_METRICS_KEY: cruise_control_config()},
    }


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
        # broker.rack from the node's zone: replicas of a partition are placed in different zones.
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
    cc = settings.cruise_control
    if cc is not None:
        spec["cruiseControl"] = {
            "resources": cc.resources.k8s(),
            # Without network capacities Strimzi drops the network goals; CPU and disk capacity it
            # derives from the brokers' resource requests and storage.
            "brokerCapacity": {"inboundNetwork": cc.inbound_network, "outboundNetwork": cc.outbound_network},
            "autoRebalance": [{"mode": "add-brokers"}, {"mode": "remove-brokers"}],
            # Without a metrics config Cruise Control's pod has no metrics port for its PodMonitor to scrape.
            "metricsConfig": {
                "type": "jmxPrometheusExporter",
                "valueFrom": {
                    "configMapKeyRef": {
                        "name": cruise_control_config_map_name(settings),
                        "key": CRUISE_CONTROL_METRICS_KEY,
                    }
                },
            },
        }
    cluster = settings.cluster_name
    return {
        "apiVersion": versions.STRIMZI_API_VERSION,
        "kind": "Kafka",
        "metadata": metadata(cluster, namespace, labels("kafka", cluster), WAIT_READY),
        "spec": spec,
    }


def render_kafka_cluster(settings: KafkaSettings, namespace: str, tier: Tier) -> list[dict[str, Any]]:
    """Node pools, the `Kafka` resource and its metrics ConfigMaps: the whole broker side of one environment."""
    return [
        *_node_pools(settings, namespace),
        _metrics_config_map(settings, namespace),
        *([_cruise_control_config_map(settings, namespace)] if settings.cruise_control is not None else []),
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
        # What the component waits for (the namespaces the chart writes into), the release waits for too.
        deps: list[Any] = list(opts.depends_on) if opts and isinstance(opts.depends_on, list) else []
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
