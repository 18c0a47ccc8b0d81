"""Every pinned version of the platform, in one place.

Renderers, the local runtime and the tests read these; nothing else in Python spells a version. What cannot
import Python repeats a version and a test holds it equal: the apps' Dockerfile `ARG` defaults
(tests/flink/test_app_images.py), the Makefile's uv and the POMs under jvm/ (filled in from here at fetch time).
"""

from __future__ import annotations

# Kafka on Kubernetes
STRIMZI_VERSION = "1.2.0"
STRIMZI_API_VERSION = "kafka.strimzi.io/v1"
# Operator Helm charts: the upstream repositories by default; `charts/<chart>-<version>/` holds both as tagged
# upstream (air-gapped installs, and the CRDs the platform installs and the tests validate against).
STRIMZI_CHART = "strimzi-kafka-operator"
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
FLINK_OPERATOR_CHART = "flink-kubernetes-operator"
FLINK_OPERATOR_HELM_REPO = (
    f"https://downloads.apache.org/flink/flink-kubernetes-operator-{FLINK_OPERATOR_VERSION}/"
)

# Dev's in-cluster S3 for checkpoints (quay.io/minio/minio)
MINIO_VERSION = "RELEASE.2025-04-22T22-12-26Z"

# Kubernetes API version whose schemas core objects are validated against (the oldest we support is 1.30)
KUBERNETES_SCHEMA_VERSION = "1.33"

# Schema registry
APICURIO_REGISTRY_VERSION = "3.3.3"

# The deploy toolchain the end-to-end tests build from Go modules (engine/build.sh reads these).
# pulumi pkg/v3 and sdk/v3 (3.272/3.273 are not served by the module proxy); the Python language host's source is
# the v3.259.0 tag's (its own module is not served), compiled against PULUMI_ENGINE_VERSION.
PULUMI_ENGINE_VERSION = "3.274.1"
PULUMI_LANGUAGE_PYTHON_SOURCE_VERSION = "3.259.0"
# pulumi-resource-kubernetes: provider/v4 pseudo-version of tag v4.25.0, the only provider version the proxy serves;
# the pulumi-kubernetes Python SDK is pinned to the same version (requirements/platform.in).
PULUMI_KUBERNETES_VERSION = "4.25.0"
PULUMI_KUBERNETES_PROVIDER_MODULE_VERSION = "v4.0.0-20260115033456-f47bc2d6f199"
# kube-apiserver + kube-controller-manager (k8s.io/kubernetes) and the etcd that release pins
KUBE_CONTROL_PLANE_VERSION = "1.35.4"
ETCD_VERSION = "3.6.5"
# kwok (sigs.k8s.io/kwok): the simulated kubelet of the end-to-end tests' control plane
KWOK_VERSION = "0.8.0"
