"""Every pinned version of the platform, in one place.

Renderers, the local runtime and the tests read these; nothing else in Python spells a version. What cannot
import Python repeats a version and a test holds it equal: the apps' Dockerfile `ARG` defaults
(tests/flink/test_app_images.py), the Makefile's uv and the POMs under jvm/ (filled in from here at fetch time).
"""

from __future__ import annotations

# Kafka on Kubernetes
STRIMZI_VERSION = "1.2.0"
STRIMZI_API_VERSION = "kafka.strimzi.io/v1"
STRIMZI_HELM_REPO = "oci://quay.io/strimzi-helm/strimzi-kafka-operator"
KAFKA_VERSION = "4.3.1"
KAFKA_METADATA_VERSION = "4.3-IV0"
KAFKA_SCALA = "2.13"

# Flink
FLINK_VERSION = "2.2.1"
FLINK_OPERATOR_VERSION = "1.15.0"
FLINK_CRD_API_VERSION = "flink.apache.org/v1beta1"
FLINK_VERSION_ENUM = "v2_2"
FLINK_KAFKA_CONNECTOR_VERSION = "5.0.0-2.2"
# Maven Central as reachable here serves flink-kubernetes-operator-api only up to 1.10.0: its CRDs stand in for
# the pinned operator's in schema tests (with the pinned flinkVersion enum added) until the pinned jar is served.
FLINK_OPERATOR_CRD_STAND_IN = "1.10.0"
FLINK_OPERATOR_HELM_REPO = (
    f"https://downloads.apache.org/flink/flink-kubernetes-operator-{FLINK_OPERATOR_VERSION}/"
)

# Dev's in-cluster S3 for checkpoints (quay.io/minio/minio)
MINIO_VERSION = "RELEASE.2025-04-22T22-12-26Z"

# Kubernetes API version whose schemas core objects are validated against (the oldest we support is 1.30)
KUBERNETES_SCHEMA_VERSION = "1.33"

# Schema registry
APICURIO_REGISTRY_VERSION = "3.3.3"
