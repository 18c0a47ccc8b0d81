"""Kubernetes rules: pinned images in Helm values and workloads, restricted pods, no stray load balancers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from headwater.config import stack_names

Obj = dict[str, Any]
Get = Callable[[str, str], Obj]
Judge = Callable[..., list[str]]

STRIMZI = "HelmRelease/headwater-system/strimzi-cluster-operator"
FLINK_OPERATOR = "HelmRelease/headwater-system/flink-kubernetes-operator"
MINIO = "Deployment/headwater/minio"
MINIO_SERVICE = "Service/headwater/minio"
APP = "FlinkDeployment/headwater/agent-events"
KAFKA = "Kafka/headwater/headwater"
K8S_RULES = ("k8s-pinned-images", "k8s-pod-security", "k8s-operator-pod-security", "k8s-no-load-balancer")
BROKERS = "KafkaNodePool/headwater/brokers"


@pytest.mark.parametrize("stack", stack_names())
def test_every_shipped_object_passes_the_kubernetes_rules(
    stack: str, objs_of_kind: Callable[[str, str], list[Obj]], judge: Judge
) -> None:
    kinds = ("HelmRelease", "Deployment", "Service", "FlinkDeployment", "Kafka", "KafkaNodePool")
    objs = [o for kind in kinds for o in objs_of_kind(stack, kind)]
    assert len(objs) >= 6
    for o in objs:
        for rule in K8S_RULES:
            assert judge(rule, o, environment=stack) == [], (rule, o["kind"])


# --- k8s-pinned-images -------------------------------------------------------------------------------


def test_strimzi_chart_without_image_tag_fails(obj: Get, judge: Judge) -> None:
    release = obj("prod", STRIMZI)
    del release["values"]["defaultImageTag"]
    (message,) = judge("k8s-pinned-images", release)
    assert (
        "Helm release strimzi-cluster-operator (chart strimzi-kafka-operator) does not pin its image: "
        "set values.defaultImageTag to a version" in message
    )


def test_flink_operator_chart_with_latest_fails(obj: Get, judge: Judge) -> None:
    release = obj("prod", FLINK_OPERATOR)
    release["values"]["image"]["tag"] = "latest"
    (message,) = judge("k8s-pinned-images", release)
    assert "(chart flink-kubernetes-operator): values.image.tag is latest: set a version tag" in message


def test_flink_operator_chart_default_tag_fails(obj: Get, judge: Judge) -> None:
    release = obj("prod", FLINK_OPERATOR)
    del release["values"]["image"]["tag"]
    (message,) = judge("k8s-pinned-images", release)
    assert "does not pin its image: set values.image.tag or values.image.digest" in message


def test_release_without_chart_version_fails(obj: Get, judge: Judge) -> None:
    release = obj("prod", STRIMZI)
    release["version"] = ""
    (message,) = judge("k8s-pinned-images", release)
    assert "has no chart version: pin it (headwater/versions.py)" in message


def test_unpinned_deployment_image_fails(obj: Get, judge: Judge) -> None:
    minio = obj("dev", MINIO)
    minio["spec"]["template"]["spec"]["containers"][0]["image"] = "quay.io/minio/minio"
    (message,) = judge("k8s-pinned-images", minio, environment="dev")
    assert (
        "Deployment minio: container minio image 'quay.io/minio/minio' has no tag (it means latest)"
        in message
    )


def test_unpinned_image_in_a_custom_resource_fails(obj: Get, judge: Judge) -> None:
    kafka = obj("prod", KAFKA)
    kafka["spec"]["kafka"]["image"] = "quay.io/strimzi/kafka:latest"
    (message,) = judge("k8s-pinned-images", kafka)
    assert "Kafka headwater: spec.kafka.image 'quay.io/strimzi/kafka:latest' uses the latest tag" in message


def test_flink_images_are_left_to_the_flink_rule(obj: Get, judge: Judge) -> None:
    app = obj("prod", APP)
    app["spec"]["image"] = "agent-events:latest"
    assert judge("k8s-pinned-images", app) == []
    assert len(judge("flink-pinned-versions", app)) == 1


# --- k8s-pod-security --------------------------------------------------------------------------------


def test_deployment_allowing_privilege_escalation_fails(obj: Get, judge: Judge) -> None:
    minio = obj("dev", MINIO)
    del minio["spec"]["template"]["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"]
    (message,) = judge("k8s-pod-security", minio, environment="dev")
    assert message == (
        "Deployment minio: container minio does not set securityContext.allowPrivilegeEscalation: false"
    )


def test_deployment_that_may_run_as_root_fails(obj: Get, judge: Judge) -> None:
    minio = obj("dev", MINIO)
    pod = minio["spec"]["template"]["spec"]
    del pod["securityContext"]["runAsNonRoot"]
    del pod["containers"][0]["securityContext"]["runAsNonRoot"]
    (message,) = judge("k8s-pod-security", minio, environment="dev")
    assert "container minio may run as root: set securityContext.runAsNonRoot: true" in message


def test_root_user_fails(obj: Get, judge: Judge) -> None:
    minio = obj("dev", MINIO)
    minio["spec"]["template"]["spec"]["securityContext"]["runAsUser"] = 0
    (message,) = judge("k8s-pod-security", minio, environment="dev")
    assert "Deployment minio: securityContext.runAsUser is 0 (root)" in message


def test_flink_pods_without_a_secured_main_container_fail_once(obj: Get, judge: Judge) -> None:
    app = obj("prod", APP)
    app["spec"]["podTemplate"]["spec"]["containers"] = []
    (message,) = judge("k8s-pod-security", app)
    assert message.startswith(
        "FlinkDeployment agent-events jobManager and taskManager pod: the pod template has no "
        "flink-main-container container"
    )


def test_flink_role_template_escalating_privileges_fails_for_that_role(obj: Get, judge: Judge) -> None:
    app = obj("prod", APP)
    app["spec"]["taskManager"]["podTemplate"] = {
        "spec": {
            "containers": [
                {"name": "flink-main-container", "securityContext": {"allowPrivilegeEscalation": True}}
            ]
        }
    }
    (message,) = judge("k8s-pod-security", app)
    assert message == (
        "FlinkDeployment agent-events taskManager pod: container flink-main-container does not set "
        "securityContext.allowPrivilegeEscalation: false"
    )


def test_flink_operator_chart_needs_restricted_security_values(obj: Get, judge: Judge) -> None:
    release = obj("prod", FLINK_OPERATOR)
    del release["values"]["operatorSecurityContext"]
    del release["values"]["podSecurityContext"]["runAsNonRoot"]
    assert judge("k8s-pod-security", release) == [
        "Helm release flink-kubernetes-operator (chart flink-kubernetes-operator): set "
        "values.podSecurityContext.runAsNonRoot: true",
        "Helm release flink-kubernetes-operator (chart flink-kubernetes-operator): set "
        "values.operatorSecurityContext.allowPrivilegeEscalation: false",
    ]


def test_privileged_override_in_any_chart_fails(obj: Get, judge: Judge) -> None:
    release = obj("prod", STRIMZI)
    release["values"]["securityContext"] = {"privileged": True}
    (message,) = judge("k8s-pod-security", release)
    assert "values.securityContext.privileged is true: remove it" in message


# --- k8s-no-load-balancer ----------------------------------------------------------------------------


def _load_balancer(o: Obj) -> Obj:
    o["spec"]["type"] = "LoadBalancer"
    return o


def test_load_balancer_service_fails(obj: Get, judge: Judge) -> None:
    (message,) = judge("k8s-no-load-balancer", _load_balancer(obj("dev", MINIO_SERVICE)), environment="dev")
    assert message.startswith("Service minio is of type LoadBalancer (a public address)")
    assert "headwater:allowLoadBalancer: true" in message


def test_load_balancer_allowed_by_the_stack_or_the_policy_config(obj: Get, judge: Judge) -> None:
    service = _load_balancer(obj("dev", MINIO_SERVICE))
    assert judge("k8s-no-load-balancer", service, allow_load_balancer=True) == []
    assert judge("k8s-no-load-balancer", service, config={"allowLoadBalancer": True}) == []
    # policy config wins over the stack, both ways
    assert (
        len(
            judge(
                "k8s-no-load-balancer", service, allow_load_balancer=True, config={"allowLoadBalancer": False}
            )
        )
        == 1
    )


def test_kafka_load_balancer_listener_fails(obj: Get, judge: Judge) -> None:
    kafka = obj("prod", KAFKA)
    kafka["spec"]["kafka"]["listeners"][0]["type"] = "loadbalancer"
    (message,) = judge("k8s-no-load-balancer", kafka)
    assert "Kafka headwater: spec.kafka.listeners[0] is of type loadbalancer" in message


def test_load_balancer_in_helm_values_fails(obj: Get, judge: Judge) -> None:
    release = obj("prod", FLINK_OPERATOR)
    release["values"]["service"] = {"type": "LoadBalancer"}
    (message,) = judge("k8s-no-load-balancer", release)
    assert "values.service.type is LoadBalancer" in message


def test_flink_rest_service_load_balancer_fails(obj: Get, judge: Judge) -> None:
    app = obj("prod", APP)
    app["spec"]["flinkConfiguration"]["kubernetes.rest-service.exposed.type"] = "LoadBalancer"
    (message,) = judge("k8s-no-load-balancer", app)
    assert "kubernetes.rest-service.exposed.type is LoadBalancer" in message


# --- k8s-operator-pod-security -----------------------------------------------------------------------


def test_strimzi_operator_with_the_restricted_provider_passes(obj: Get, judge: Judge) -> None:
    release = obj("prod", STRIMZI)
    assert {"name": "STRIMZI_POD_SECURITY_PROVIDER_CLASS", "value": "restricted"} in release["values"][
        "extraEnvs"
    ]
    assert judge("k8s-operator-pod-security", release) == []


@pytest.mark.parametrize("provider", [None, "baseline", "io.example.OwnProvider"])
def test_strimzi_operator_without_the_restricted_provider_fails(
    obj: Get, judge: Judge, provider: str | None
) -> None:
    release = obj("prod", STRIMZI)
    envs = [e for e in release["values"]["extraEnvs"] if e["name"] != "STRIMZI_POD_SECURITY_PROVIDER_CLASS"]
    if provider:
        envs.append({"name": "STRIMZI_POD_SECURITY_PROVIDER_CLASS", "value": provider})
    release["values"]["extraEnvs"] = envs
    (message,) = judge("k8s-operator-pod-security", release)
    assert f"uses the {provider or 'default (baseline)'} pod security provider" in message
    assert "set values.extraEnvs [{name: STRIMZI_POD_SECURITY_PROVIDER_CLASS, value: restricted}]" in message


def test_baseline_namespaces_need_no_restricted_provider(obj: Get, judge: Judge) -> None:
    release = obj("prod", STRIMZI)
    release["values"]["extraEnvs"] = []
    assert judge("k8s-operator-pod-security", release, config={"podSecurityStandard": "baseline"}) == []


def test_strimzi_operator_container_context_weakened_fails(obj: Get, judge: Judge) -> None:
    release = obj("prod", STRIMZI)
    release["values"]["securityContext"] = {"runAsNonRoot": True, "allowPrivilegeEscalation": False}
    (message,) = judge("k8s-operator-pod-security", release)
    assert (
        "values.securityContext lacks capabilities.drop: [ALL]; seccompProfile.type: RuntimeDefault"
        in message
    )


def test_flink_operator_without_dropped_capabilities_fails(obj: Get, judge: Judge) -> None:
    release = obj("prod", FLINK_OPERATOR)
    assert judge("k8s-operator-pod-security", release) == []
    del release["values"]["operatorSecurityContext"]["capabilities"]
    (message,) = judge("k8s-operator-pod-security", release)
    assert (
        "values.operatorSecurityContext (with values.podSecurityContext) lacks capabilities.drop: [ALL]"
        in (message)
    )


def test_node_pool_template_replacing_the_provider_context_fails(obj: Get, judge: Judge) -> None:
    pool = obj("prod", BROKERS)
    pool["spec"]["template"]["kafkaContainer"] = {"securityContext": {"runAsNonRoot": True}}
    (message,) = judge("k8s-operator-pod-security", pool)
    assert "KafkaNodePool brokers: spec.template.kafkaContainer.securityContext replaces" in message
    assert "allowPrivilegeEscalation: false" in message
    pool["spec"]["template"]["kafkaContainer"]["securityContext"] = {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert judge("k8s-operator-pod-security", pool) == []
