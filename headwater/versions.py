"""Every pinned version of the platform, in one place.

Renderers, the local runtime, Dockerfiles' build args and the tests read these; nothing else spells a version.
"""

from __future__ import annotations

# Kafka on Kubernetes
STRIMZI_VERSION = "1.2.0"
STRIMZI_API_VERSION = "kafka.strimzi.io/v1"
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
# Maven Central as reachable here serves flink-kubernetes-operator-api only up to 1.10.0: its CRDs stand in for
# the pinned operator's in schema tests (with the pinned flinkVersion enum added) until the pinned jar is served.
FLINK_OPERATOR_CRD_STAND_IN = "1.10.0"
FLINK_OPERATOR_HELM_REPO = "https://downloads.apache.org/flink/flink-kubernetes-operator-1.15.0/"

# Prometheus Operator whose CRDs (PodMonitor, PrometheusRule) the monitoring objects are validated against;
# the CRD YAMLs come from its Go module (the module proxy's zip, example/prometheus-operator-crd/).
PROMETHEUS_OPERATOR_VERSION = "0.85.0"
PROMETHEUS_OPERATOR_API_VERSION = "monitoring.coreos.com/v1"
PROMETHEUS_OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator"

# Kubernetes API version whose schemas core objects are validated against (the oldest we support is 1.30)
KUBERNETES_SCHEMA_VERSION = "1.33"

# Schema registry
APICURIO_REGISTRY_VERSION = "3.3.3"
