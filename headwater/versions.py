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

# Kubernetes API version whose schemas core objects are validated against (the oldest we support is 1.30)
KUBERNETES_SCHEMA_VERSION = "1.33"

# Schema registry
APICURIO_REGISTRY_VERSION = "3.3.3"

# Container image digests, by the image reference they were read for (`repository:tag` -> `sha256:...`).
# Renderers pin an image by digest when it is listed here (`components.k8s.pinned_image`, and the operator
# charts' `digest` values); otherwise by its version tag. A digest goes in only once read from the registry
# itself (`crane digest quay.io/strimzi/operator:1.2.0`, `skopeo inspect --format '{{.Digest}}' docker://...`):
# none is listed yet, because no container registry is reachable from where this tree is built and tested.
IMAGE_DIGESTS: dict[str, str] = {}
