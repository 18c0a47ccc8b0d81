"""Minimal valid objects for the schema tests, and the CRD cache warmed once per session."""

from __future__ import annotations

from typing import Any

import pytest

from headwater import crds, versions

Obj = dict[str, Any]


@pytest.fixture(scope="session", autouse=True)
def crd_cache() -> list[crds.CrdSet]:
    """Load every CRD set before the first test."""
    return crds.warm()


def _meta(name: str, namespace: str, cluster: str | None = "events") -> Obj:
    meta: Obj = {"name": name, "namespace": namespace}
    if cluster:
        meta["labels"] = {"strimzi.io/cluster": cluster}
    return meta


@pytest.fixture
def kafka() -> Obj:
    return {
        "apiVersion": versions.STRIMZI_API_VERSION,
        "kind": "Kafka",
        "metadata": _meta("events", "kafka", cluster=None),
        "spec": {
            "kafka": {
                "version": versions.KAFKA_VERSION,
                "metadataVersion": versions.KAFKA_METADATA_VERSION,
                "listeners": [
                    {
                        "name": "tls",
                        "port": 9093,
                        "type": "internal",
                        "tls": True,
                        "authentication": {"type": "tls"},
                    }
                ],
                "authorization": {"type": "simple"},
                "config": {"min.insync.replicas": 2, "transaction.max.timeout.ms": 900000},
            },
            "entityOperator": {"topicOperator": {}, "userOperator": {}},
        },
    }


@pytest.fixture
def node_pool() -> Obj:
    return {
        "apiVersion": versions.STRIMZI_API_VERSION,
        "kind": "KafkaNodePool",
        "metadata": _meta("dual", "kafka"),
        "spec": {
            "replicas": 3,
            "roles": ["controller", "broker"],
            "storage": {
                "type": "jbod",
                "volumes": [
                    {
                        "id": 0,
                        "type": "persistent-claim",
                        "size": "10Gi",
                        "deleteClaim": False,
                        "kraftMetadata": "shared",
                    }
                ],
            },
            "resources": {"requests": {"cpu": "500m", "memory": "2Gi"}, "limits": {"memory": "2Gi"}},
        },
    }


@pytest.fixture
def topic() -> Obj:
    return {
        "apiVersion": versions.STRIMZI_API_VERSION,
        "kind": "KafkaTopic",
        "metadata": _meta("orders", "kafka"),
        "spec": {
            "partitions": 6,
            "replicas": 3,
            "config": {"retention.ms": 604800000, "cleanup.policy": "delete"},
        },
    }


@pytest.fixture
def user() -> Obj:
    return {
        "apiVersion": versions.STRIMZI_API_VERSION,
        "kind": "KafkaUser",
        "metadata": _meta("ingest", "kafka"),
        "spec": {
            "authentication": {"type": "tls"},
            "authorization": {
                "type": "simple",
                "acls": [
                    {
                        "resource": {"type": "topic", "name": "orders", "patternType": "literal"},
                        "operations": ["Write", "Describe"],
                    },
                    {
                        "resource": {"type": "transactionalId", "name": "ingest-", "patternType": "prefix"},
                        "operations": ["Write", "Describe"],
                    },
                ],
            },
        },
    }


@pytest.fixture
def flink_deployment() -> Obj:
    return {
        "apiVersion": versions.FLINK_CRD_API_VERSION,
        "kind": "FlinkDeployment",
        "metadata": {"name": "enrich", "namespace": "flink"},
        "spec": {
            "image": f"flink:{versions.FLINK_VERSION}",
            "flinkVersion": versions.FLINK_VERSION_ENUM,
            "serviceAccount": "flink",
            "flinkConfiguration": {"taskmanager.numberOfTaskSlots": "2", "state.backend.type": "rocksdb"},
            "jobManager": {"resource": {"memory": "1600m", "cpu": 1}},
            "taskManager": {"resource": {"memory": "1600m", "cpu": 0.5}},
            "job": {
                "jarURI": f"local:///opt/flink/opt/flink-python-{versions.FLINK_VERSION}.jar",
                "entryClass": "org.apache.flink.client.python.PythonDriver",
                "args": ["-pyclientexec", "/usr/bin/python3", "-pym", "enrich.main"],
                "parallelism": 1,
                "upgradeMode": "savepoint",
            },
        },
    }


@pytest.fixture
def deployment() -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "registry", "namespace": "registry", "labels": {"app": "registry"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "registry"}},
            "template": {
                "metadata": {"labels": {"app": "registry"}},
                "spec": {
                    "containers": [
                        {
                            "name": "registry",
                            "image": "quay.io/apicurio/apicurio-registry:3.0.0",
                            "imagePullPolicy": "IfNotPresent",
                            "ports": [{"containerPort": 8080, "name": "http"}],
                            "resources": {"requests": {"cpu": "250m", "memory": 512}},
                        }
                    ]
                },
            },
        },
    }
