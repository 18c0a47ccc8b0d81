"""The whole platform of one stack as a single component: what the Pulumi program (`__main__.py`) creates."""

from __future__ import annotations

import pulumi

from components.approval_gate import ApprovalGate, ApprovalGateArgs
from components.approvers_page import ApproversPage, ApproversPageArgs
from components.checkpoint_storage import CheckpointStorage, CheckpointStorageArgs
from components.feature_store import FeatureStore, FeatureStoreArgs
from components.flink_application import FlinkApplication, FlinkApplicationArgs
from components.flink_operator import FlinkOperator
from components.k8s import create_object, namespace
from components.kafka_cluster import OPERATOR_NAMESPACE, KafkaCluster, KafkaClusterArgs, StrimziOperator
from components.kafka_connect import Cdc, CdcArgs
from components.kafka_topics import KafkaTopics, KafkaTopicsArgs
from components.kafka_users import KafkaPrincipals, KafkaPrincipalsArgs
from components.observability import Observability
from components.operator_crds import OperatorCrds, render_flink_operator_crds, render_strimzi_crds
from components.schema_registry import SchemaRegistry, SchemaRegistryArgs
from components.slot_exporter import SlotExporters, SlotExportersArgs
from headwater.spec import Platform


class HeadwaterPlatform(pulumi.ComponentResource):
    """Operators, the Kafka cluster, topics and principals, the registry, Flink apps and observability."""

    bootstrap: pulumi.Output[str]
    """Kafka TLS bootstrap address inside the cluster."""
    cluster_ca_secret: pulumi.Output[str]
    """Secret with the cluster CA certificate clients trust."""
    principal_secrets: pulumi.Output[dict[str, str]]
    """Principal -> secret with its Kafka credentials."""

    def __init__(self, name: str, platform: Platform, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("headwater:platform:Platform", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ns = create_object(f"{name}-namespace", namespace(platform.namespace, "platform"), child)
        operators_ns = create_object(
            f"{name}-operators-namespace", namespace(OPERATOR_NAMESPACE, "operators"), child
        )
        strimzi_crds = OperatorCrds(f"{name}-strimzi-crds", render_strimzi_crds(), child)
        flink_crds = OperatorCrds(f"{name}-flink-crds", render_flink_operator_crds(), child)
        operator = StrimziOperator(
            f"{name}-strimzi",
            platform.watched_namespaces,
            # The chart creates RoleBindings in the watched (platform) namespace, not only in its own.
            pulumi.ResourceOptions(parent=self, depends_on=[operators_ns, ns, strimzi_crds]),
            create_namespace=False,
            charts_folder=platform.operator_charts,
        )
        after_operator = pulumi.ResourceOptions(parent=self, depends_on=[ns, operator])
        kafka = KafkaCluster(
            f"{name}-kafka",
            KafkaClusterArgs(platform.namespace, platform.tier, platform.kafka),
            after_operator,
        )
        after_kafka = pulumi.ResourceOptions(parent=self, depends_on=[kafka.kafka])
        topics = KafkaTopics(f"{name}-topics", KafkaTopicsArgs(platform), after_kafka)
        principals = KafkaPrincipals(f"{name}-principals", KafkaPrincipalsArgs(platform), after_kafka)
        SchemaRegistry(
            f"{name}-registry",
            SchemaRegistryArgs(platform),
            pulumi.ResourceOptions(parent=self, depends_on=[ns, topics, principals]),
        )
        Cdc(
            f"{name}-cdc",
            CdcArgs(platform),
            pulumi.ResourceOptions(parent=self, depends_on=[ns, operator, kafka.kafka, topics, principals]),
        )
        SlotExporters(
            f"{name}-slot-exporters",
            SlotExportersArgs(platform),
            pulumi.ResourceOptions(parent=self, depends_on=[ns]),
        )
        ApprovalGate(
            f"{name}-approval-gate",
            ApprovalGateArgs(platform),
            pulumi.ResourceOptions(parent=self, depends_on=[ns, kafka.kafka, topics, principals]),
        )
        ApproversPage(
            f"{name}-approvers-page",
            ApproversPageArgs(platform),
            pulumi.ResourceOptions(parent=self, depends_on=[ns, kafka.kafka, topics, principals]),
        )
        flink_operator = FlinkOperator(
            f"{name}-flink-operator",
            platform.watched_namespaces,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ns, operators_ns, flink_crds]),
            charts_folder=platform.operator_charts,
        )
        state = CheckpointStorage(
            f"{name}-checkpoint-storage",
            CheckpointStorageArgs(platform),
            pulumi.ResourceOptions(parent=self, depends_on=[ns]),
        )
        after_flink = pulumi.ResourceOptions(
            parent=self, depends_on=[flink_operator, state, kafka.kafka, principals]
        )
        for app in platform.apps:
            FlinkApplication(
                f"{name}-flink-{app.name}", FlinkApplicationArgs(platform, app.name), after_flink
            )
        FeatureStore(
            f"{name}-feature-store",
            FeatureStoreArgs(platform),
            pulumi.ResourceOptions(parent=self, depends_on=[ns, topics, principals]),
        )
        Observability(f"{name}-observability", platform, pulumi.ResourceOptions(parent=self, depends_on=[ns]))
        self.bootstrap = kafka.bootstrap
        self.cluster_ca_secret = kafka.cluster_ca_secret
        self.principal_secrets = principals.secrets
        self.register_outputs(
            {
                "bootstrap": self.bootstrap,
                "cluster_ca_secret": self.cluster_ca_secret,
                "principal_secrets": self.principal_secrets,
            }
        )
