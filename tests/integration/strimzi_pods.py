"""The pods the Strimzi 1.2.0 cluster operator creates for our rendered `Kafka` and `KafkaNodePool`s.

Their security-relevant shape is taken from Strimzi 1.2.0's source (tag 1.2.0), not from our renderer:
- pod security provider: `ClusterOperatorConfig.POD_SECURITY_PROVIDER_CLASS` is read from the operator's
  `STRIMZI_POD_SECURITY_PROVIDER_CLASS` (shortcuts `baseline`/`restricted`, default baseline).
  `BaselinePodSecurityProvider` sets no container security context at all, and `fsGroup: 0` on Kafka pods
  with persistent storage; `RestrictedPodSecurityProvider` keeps that pod context and gives every Kafka,
  Kafka init, topic and user operator, Kafka Exporter and Cruise Control container
  `allowPrivilegeEscalation: false, runAsNonRoot: true, seccompProfile RuntimeDefault, capabilities drop ALL`.
  A container securityContext in a template is used instead of the provider's (both providers).
- volumes (`KafkaCluster.getNonDataVolumes`/`getPodSetVolumes`, `EntityOperator`, `KafkaExporter`,
  `CruiseControl`): the projected service account token, memory emptyDirs (tmp, ready-files, the rack
  init volume), config maps, secrets and one persistentVolumeClaim per JBOD volume;
- the rack init container `kafka-init` on broker pods when `rack` is set (`KafkaCluster.createInitContainer`),
  and the template's affinity and topology spread constraints on the pods.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from headwater import versions

RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
    "capabilities": {"drop": ["ALL"]},
}
RESTRICTED_NAMES = ("restricted", "io.strimzi.plugin.security.profiles.impl.RestrictedPodSecurityProvider")
OPERATOR_IMAGE = f"quay.io/strimzi/operator:{versions.STRIMZI_VERSION}"
KAFKA_IMAGE = f"quay.io/strimzi/kafka:{versions.STRIMZI_VERSION}-kafka-{versions.KAFKA_VERSION}"


def provider_of(operator_values: Mapping[str, Any]) -> str:
    """`restricted` or `baseline`: what the cluster operator's environment selects (default baseline)."""
    for env in operator_values.get("extraEnvs") or []:
        if env.get("name") == "STRIMZI_POD_SECURITY_PROVIDER_CLASS":
            value = str(env.get("value", "")).strip()
            return "restricted" if value.lower() in [n.lower() for n in RESTRICTED_NAMES] else "baseline"
    return "baseline"


def _container_context(provider: str, template_container: Mapping[str, Any] | None) -> dict[str, Any] | None:
    supplied = (template_container or {}).get("securityContext")
    if supplied is not None:
        return dict(supplied)
    return copy.deepcopy(RESTRICTED_CONTAINER) if provider == "restricted" else None


def _container(name: str, image: str, context: dict[str, Any] | None, mounts: list[str]) -> dict[str, Any]:
    c: dict[str, Any] = {
        "name": name,
        "image": image,
        "volumeMounts": [{"name": m, "mountPath": f"/mnt/{m}"} for m in mounts],
    }
    if context is not None:
        c["securityContext"] = context
    return c


def _sa_volume() -> dict[str, Any]:
    return {
        "name": "kube-api-access",
        "projected": {
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {
                    "downwardAPI": {
                        "items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]
                    }
                },
            ]
        },
    }


def _empty_dir(name: str, size: str) -> dict[str, Any]:
    return {"name": name, "emptyDir": {"medium": "Memory", "sizeLimit": size}}


def _pod(name: str, namespace: str, sa: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"strimzi.io/name": name}},
        "spec": {"serviceAccountName": sa, "automountServiceAccountToken": False, **spec},
    }


def kafka_pods(
    kafka: Mapping[str, Any], pools: Sequence[Mapping[str, Any]], operator_values: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """One pod per node pool (its first node), the entity operator, Kafka Exporter and Cruise Control."""
    provider = provider_of(operator_values)
    cluster = kafka["metadata"]["name"]
    namespace = kafka["metadata"]["namespace"]
    spec = kafka["spec"]
    rack = spec["kafka"].get("rack")
    pods = []
    for pool in pools:
        pool_name = pool["metadata"]["name"]
        pspec = pool["spec"]
        template = pspec.get("template") or {}
        broker = "broker" in pspec["roles"]
        volumes: list[dict[str, Any]] = [
            {
                "name": f"data-{v['id']}",
                "persistentVolumeClaim": {"claimName": f"data-{v['id']}-{cluster}-{pool_name}-0"},
            }
            for v in pspec["storage"]["volumes"]
        ]
        volumes += [
            _sa_volume(),
            _empty_dir("strimzi-tmp", "5Mi"),
            {"name": "kafka-metrics-and-logging", "configMap": {"name": f"{cluster}-{pool_name}-0"}},
            _empty_dir("ready-files", "1Ki"),
        ]
        pod_spec: dict[str, Any] = {
            # Both providers: fsGroup 0 for pods with persistent storage (outside OpenShift).
            "securityContext": dict((template.get("pod") or {}).get("securityContext") or {"fsGroup": 0}),
            "containers": [
                _container(
                    "kafka",
                    KAFKA_IMAGE,
                    _container_context(provider, template.get("kafkaContainer")),
                    [v["name"] for v in volumes],
                )
            ],
        }
        if broker and rack:
            volumes.append(_empty_dir("rack-volume", "1Mi"))
            pod_spec["containers"][0]["volumeMounts"].append(
                {"name": "rack-volume", "mountPath": "/opt/kafka/init"}
            )
            pod_spec["initContainers"] = [
                _container(
                    "kafka-init",
                    OPERATOR_IMAGE,
                    _container_context(provider, template.get("initContainer")),
                    ["kube-api-access", "rack-volume"],
                )
            ]
        pod_template = template.get("pod") or {}
        for key in ("affinity", "topologySpreadConstraints", "tolerations"):
            if key in pod_template:
                pod_spec[key] = copy.deepcopy(pod_template[key])
        pod_spec["volumes"] = volumes
        pods.append(_pod(f"{cluster}-{pool_name}-0", namespace, f"{cluster}-kafka", pod_spec))

    eo = spec.get("entityOperator")
    if eo is not None:
        eo_template = eo.get("template") or {}
        containers = [
            _container(
                f"{role}-operator",
                OPERATOR_IMAGE,
                _container_context(provider, eo_template.get(f"{role}OperatorContainer")),
                ["kube-api-access", f"strimzi-{role[0]}o-tmp", f"entity-{role}-operator-metrics-and-logging"],
            )
            for role in ("topic", "user")
            if f"{role}Operator" in eo
        ]
        volumes = [_sa_volume()]
        for role in ("topic", "user"):
            volumes += [
                _empty_dir(f"strimzi-{role[0]}o-tmp", "5Mi"),
                {
                    "name": f"entity-{role}-operator-metrics-and-logging",
                    "configMap": {"name": f"{cluster}-entity-{role}-operator-config"},
                },
            ]
        pod_spec = {"containers": containers, "volumes": volumes}
        if (eo_template.get("pod") or {}).get("securityContext"):
            pod_spec["securityContext"] = dict(eo_template["pod"]["securityContext"])
        pods.append(_pod(f"{cluster}-entity-operator", namespace, f"{cluster}-entity-operator", pod_spec))

    for key, name, container_key, mounts in (
        (
            "kafkaExporter",
            "kafka-exporter",
            "container",
            ["strimzi-tmp", "kafka-exporter-certs", "cluster-ca-certs"],
        ),
        (
            "cruiseControl",
            "cruise-control",
            "cruiseControlContainer",
            ["strimzi-tmp", "cc-certs", "cluster-ca-certs", "config"],
        ),
    ):
        if key not in spec:
            continue
        template = spec[key].get("template") or {}
        volumes = [_empty_dir("strimzi-tmp", "5Mi")] + [
            {"name": m, "secret": {"secretName": f"{cluster}-{m}"}} for m in mounts[1:-1]
        ]
        last = mounts[-1]
        volumes.append(
            {"name": last, "configMap": {"name": f"{cluster}-{name}-config"}}
            if last == "config"
            else {"name": last, "secret": {"secretName": f"{cluster}-cluster-ca-cert"}}
        )
        pod_spec = {
            "containers": [
                _container(
                    name, KAFKA_IMAGE, _container_context(provider, template.get(container_key)), mounts
                )
            ],
            "volumes": volumes,
        }
        pods.append(_pod(f"{cluster}-{name}", namespace, f"{cluster}-{name}", pod_spec))
    return pods
