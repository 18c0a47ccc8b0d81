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
# The Prometheus JMX exporter agent the local broker runs with the same rules as every Kubernetes stack. The pinned
# Strimzi's Kafka image ships 1.6.0 (its Dockerfile's JMX_EXPORTER_VERSION), which is not on Maven Central (the
# agent's releases after 1.0.1 are published elsewhere); 1.0.1 is the newest there. Both are the 1.x line (the
# client_java 1.x exposition: `_total` counters, same rule syntax), so one rule file means the same on both.
JMX_EXPORTER_VERSION = "1.0.1"
STRIMZI_JMX_EXPORTER_VERSION = "1.6.0"

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

# Prometheus Operator whose CRDs (PodMonitor, PrometheusRule) the monitoring objects are validated against;
# the CRD YAMLs come from its Go module (the module proxy's zip, example/prometheus-operator-crd/).
PROMETHEUS_OPERATOR_VERSION = "0.85.0"
PROMETHEUS_OPERATOR_API_VERSION = "monitoring.coreos.com/v1"
PROMETHEUS_OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator"

# Kubernetes API version whose schemas core objects are validated against (the oldest we support is 1.30)
KUBERNETES_SCHEMA_VERSION = "1.33"

# CDC: Debezium (one version for every Debezium artifact) on Kafka Connect. Connect is Apache Kafka's own runtime at
# KAFKA_VERSION (Strimzi's Connect image locally: connect-runtime from Maven Central). The PostgreSQL connector's
# plugin archive is what Strimzi's image build downloads, checked against this SHA-512 (read from the archive
# Maven Central serves: `sha512sum debezium-connector-postgres-<v>-plugin.tar.gz`).
DEBEZIUM_VERSION = "3.6.1.Final"
DEBEZIUM_POSTGRES_PLUGIN_SHA512 = "774f6854a6c1c9a7ad3bdb6ddd367e9479a0b80e511ea27fc361320a955f9bf57a72393ff0e045b868b63589e7e16c27266cda296d9b1419bb071e914ee4d212"
MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
# Our own Connect transform that checks each outbox event against its topic's contract (connect/contract-check):
# built locally by headwater.jvm, published by the platform team to the repository each stack names
# (connect.<cluster>.contractCheck), as dev.headwater.connect:contract-check:<this version>.
CONTRACT_CHECK_VERSION = "0.1.0"
# Our own native Flink functions (flink/functions): the agent-events hot path in the JVM. Built locally by
# headwater.jvm onto the jobs' pipeline.jars; built into the apps' image by flink_apps/Dockerfile.
FLINK_FUNCTIONS_VERSION = "0.1.0"

# Schema registry
APICURIO_REGISTRY_VERSION = "3.3.3"

# The online feature store's Redis on Kubernetes (the official image; 7.2 is the newest BSD-licensed line, the
# same protocol and config directives as Debian's redis-server 7.0 that `make local` runs).
# The Prometheus PostgreSQL exporter reading the CDC sources' replication slots: Debian's package locally
# (bookworm: 0.11.1), the same release's image on Kubernetes.
POSTGRES_EXPORTER_IMAGE = "quay.io/prometheuscommunity/postgres-exporter"
POSTGRES_EXPORTER_VERSION = "0.11.1"
REDIS_IMAGE = "redis"
REDIS_VERSION = "7.2.10"

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

# Container image digests, by the image reference they were read for (`repository:tag` -> `sha256:...`).
# Renderers pin an image by digest when it is listed here (`components.k8s.pinned_image`, and the operator
# charts' `digest` values); otherwise by its version tag. A digest goes in only once read from the registry
# itself (`crane digest quay.io/strimzi/operator:1.2.0`, `skopeo inspect --format '{{.Digest}}' docker://...`):
# none is listed yet, because no container registry is reachable from where this tree is built and tested.
IMAGE_DIGESTS: dict[str, str] = {}
