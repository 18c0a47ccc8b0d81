"""`KafkaTopic`s from the topic catalog: partitions, replicas and configs per environment, ownership labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from components.k8s import create_object, labels, metadata
from headwater import versions
from headwater.spec import TOPIC_NAME, TOPIC_NAME_RULE, Platform, Topic

LABEL_PREFIX = "headwater.io"


def topic_labels(cluster: str, topic: Topic) -> dict[str, str]:
    return labels(
        "topic",
        extra={
            "strimzi.io/cluster": cluster,
            f"{LABEL_PREFIX}/domain": topic.domain,
            f"{LABEL_PREFIX}/owner": topic.owner,
            f"{LABEL_PREFIX}/sla": topic.sla.value,
            f"{LABEL_PREFIX}/kind": topic.kind.value,
        },
    )


# Annotation naming the topic's data contract (its file under catalog/): the policy pack refuses an outbox
# topic without one, since what a service's outbox publishes is its API to agents.
CONTRACT_ANNOTATION = f"{LABEL_PREFIX}/contract"


def render_topic(platform: Platform, topic: Topic) -> dict[str, Any]:
    annotations: dict[str, str] = {}
    if topic.description:
        annotations[f"{LABEL_PREFIX}/description"] = topic.description
    if topic.schema:
        annotations[CONTRACT_ANNOTATION] = topic.schema
    return {
        "apiVersion": versions.STRIMZI_API_VERSION,
        "kind": "KafkaTopic",
        "metadata": metadata(
            topic.resource_name,
            platform.namespace,
            topic_labels(platform.kafka.cluster_name, topic),
            annotations or None,
        ),
        "spec": {
            "topicName": topic.name,
            "partitions": topic.partitions,
            "replicas": platform.kafka.replication_factor,
            "config": platform.topic_config(topic),
        },
    }


def render_topics(platform: Platform) -> list[dict[str, Any]]:
    return [render_topic(platform, t) for t in platform.topics]


@dataclass(frozen=True)
class KafkaTopicsArgs:
    platform: Platform

    def __post_init__(self) -> None:
        bad = [t.name for t in self.platform.topics if not TOPIC_NAME.match(t.name)]
        if bad:
            raise ValueError(f"topic names {bad} do not follow {TOPIC_NAME_RULE}")


class KafkaTopics(pulumi.ComponentResource):
    """One `KafkaTopic` per catalog entry, managed by Strimzi's topic operator."""

    topics: dict[str, pulumi.Resource]
    """Topic name -> its `KafkaTopic` resource."""

    def __init__(self, name: str, args: KafkaTopicsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("headwater:kafka:KafkaTopics", name, None, opts)
        self.topics = {
            t.name: create_object(
                f"{name}-{t.resource_name}",
                render_topic(args.platform, t),
                pulumi.ResourceOptions(parent=self),
            )
            for t in args.platform.topics
        }
        self.register_outputs({"topics": sorted(self.topics)})
