"""What a real kube-apiserver admits, for the pods the operators create from our rendered objects.

- Pod Security: the platform namespace, created as rendered (it enforces `restricted`), must admit every
  pod the Strimzi cluster operator creates for the rendered Kafka (brokers, controllers, the rack init
  container, entity operator, Kafka Exporter, Cruise Control), with the pod security provider that the
  rendered operator release selects. Server-side dry runs: admission runs, nothing is stored.
- RBAC: a Flink JobManager creates its TaskManager pods owned by its Deployment with `blockOwnerDeletion`;
  with owner references enforced (OwnerReferencesPermissionEnforcement), only the rendered Role's
  `deployments/finalizers` rule lets it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import apiserver
import pytest
from apiserver import ControlPlane
from strimzi_pods import kafka_pods, provider_of

from components.k8s import object_key
from headwater.config import load_platform
from headwater_cli.render import render_stack

STACKS = ["prod", "staging", "dev"]


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with apiserver.running(tmp_path_factory.mktemp("apiserver")) as plane:
        yield plane


def _rendered(stack: str) -> dict[str, dict[str, Any]]:
    return {object_key(o): o for o in render_stack(load_platform(stack))}


def _namespace(control_plane: ControlPlane, rendered: dict[str, dict[str, Any]], name: str) -> None:
    """The platform namespace as rendered, under a name of its own (so stacks do not collide)."""
    (ns,) = [
        o for o in rendered.values() if o["kind"] == "Namespace" and o["metadata"]["name"] == "headwater"
    ]
    ns = copy.deepcopy(ns)
    ns["metadata"]["name"] = name
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    control_plane.must_create(ns)


def _strimzi_pods(
    rendered: dict[str, dict[str, Any]], namespace: str, values: dict[str, Any]
) -> list[dict[str, Any]]:
    (kafka,) = [o for o in rendered.values() if o["kind"] == "Kafka"]
    pools = [o for o in rendered.values() if o["kind"] == "KafkaNodePool"]
    pods = kafka_pods(kafka, pools, values)
    for pod in pods:
        pod["metadata"]["namespace"] = namespace
    return pods


def _service_accounts(control_plane: ControlPlane, pods: list[dict[str, Any]], namespace: str) -> None:
    for sa in sorted({p["spec"]["serviceAccountName"] for p in pods}):
        control_plane.must_create(
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": namespace}}
        )


@pytest.mark.parametrize("stack", STACKS)
def test_restricted_namespace_admits_every_pod_strimzi_creates(
    control_plane: ControlPlane, stack: str
) -> None:
    rendered = _rendered(stack)
    values = rendered["HelmRelease/headwater-system/strimzi-cluster-operator"]["values"]
    namespace = f"admit-{stack}"
    _namespace(control_plane, rendered, namespace)
    pods = _strimzi_pods(rendered, namespace, values)
    _service_accounts(control_plane, pods, namespace)
    names = {p["spec"]["containers"][0]["name"] for p in pods}
    assert {"kafka", "topic-operator", "kafka-exporter"} <= names
    if stack == "prod":
        assert "cruise-control" in names and any("initContainers" in p["spec"] for p in pods)
    refused = {}
    for pod in pods:
        answer = control_plane.create(pod, dry_run=True)
        if answer.status_code != 201:
            refused[pod["metadata"]["name"]] = answer.json().get("message", answer.text)
    assert refused == {}, f"with the {provider_of(values)} pod security provider"
    print(f"\n[pod-security] {stack}: {len(pods)} Strimzi pods admitted by the restricted namespace")


def test_baseline_provider_pods_are_refused(control_plane: ControlPlane) -> None:
    """The control: the same pods with Strimzi's default (baseline) provider are what the namespace refuses."""
    rendered = _rendered("prod")
    values = copy.deepcopy(rendered["HelmRelease/headwater-system/strimzi-cluster-operator"]["values"])
    values["extraEnvs"] = [
        e for e in values.get("extraEnvs", []) if e["name"] != "STRIMZI_POD_SECURITY_PROVIDER_CLASS"
    ]
    namespace = "refuse-baseline"
    _namespace(control_plane, rendered, namespace)
    pods = _strimzi_pods(rendered, namespace, values)
    _service_accounts(control_plane, pods, namespace)
    for pod in pods:
        answer = control_plane.create(pod, dry_run=True)
        assert answer.status_code == 403, (pod["metadata"]["name"], answer.text)
        message = answer.json()["message"]
        assert 'violates PodSecurity "restricted:latest"' in message
        assert "allowPrivilegeEscalation != false" in message and "runAsNonRoot != true" in message


def test_restricted_operators_namespace_admits_the_flink_operator_pod(control_plane: ControlPlane) -> None:
    """The chart puts values.podSecurityContext on the pod and values.operatorSecurityContext on its container."""
    rendered = _rendered("prod")
    (ns,) = [
        o
        for o in rendered.values()
        if o["kind"] == "Namespace" and o["metadata"]["name"] == "headwater-system"
    ]
    ns = copy.deepcopy(ns)
    ns["metadata"]["name"] = "operators-admit"
    control_plane.must_create(ns)
    control_plane.must_create(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "flink-operator", "namespace": "operators-admit"},
        }
    )
    values = rendered["HelmRelease/headwater-system/flink-kubernetes-operator"]["values"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "flink-kubernetes-operator", "namespace": "operators-admit"},
        "spec": {
            "serviceAccountName": "flink-operator",
            "securityContext": values["podSecurityContext"],
            "containers": [
                {
                    "name": "flink-kubernetes-operator",
                    "image": f"{values['image']['repository']}:{values['image']['tag']}",
                    "securityContext": values["operatorSecurityContext"],
                }
            ],
        },
    }
    answer = control_plane.create(pod, dry_run=True)
    assert answer.status_code == 201, answer.text


# --- RBAC of the Flink apps ----------------------------------------------------------------------------------


def _taskmanager_pod(app: str, namespace: str, owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{app}-taskmanager-1-1",
            "namespace": namespace,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": owner["metadata"]["name"],
                    "uid": owner["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "serviceAccountName": f"{app}-flink",
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 9999,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "flink-main-container",
                    "image": "registry.example.com/headwater/agent-events:0.1.0",
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            ],
        },
    }


def _jobmanager_deployment(app: str, namespace: str) -> dict[str, Any]:
    labels = {"app": app, "component": "jobmanager"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": app, "namespace": namespace},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "flink-main-container", "image": "flink:2.2.1"}]},
            },
        },
    }


@pytest.mark.parametrize("with_finalizers", [True, False], ids=["rendered-role", "without-finalizers"])
def test_jobmanager_may_own_its_taskmanagers(control_plane: ControlPlane, with_finalizers: bool) -> None:
    from components.flink_application import render_rbac

    platform = load_platform("prod")
    app = platform.apps[0]
    namespace = f"flink-rbac-{'rendered' if with_finalizers else 'bare'}"
    control_plane.must_create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    for obj in render_rbac(platform, app):
        obj = copy.deepcopy(obj)
        obj["metadata"]["namespace"] = namespace
        if obj["kind"] == "RoleBinding":
            obj["subjects"][0]["namespace"] = namespace
        if obj["kind"] == "Role" and not with_finalizers:
            obj["rules"] = [r for r in obj["rules"] if "deployments/finalizers" not in r["resources"]]
        control_plane.must_create(obj)
    owner = control_plane.must_create(_jobmanager_deployment(app.name, namespace))
    pod = _taskmanager_pod(app.name, namespace, owner)
    answer = control_plane.create(
        pod, dry_run=True, as_user=f"system:serviceaccount:{namespace}:{app.name}-flink"
    )
    if with_finalizers:
        assert answer.status_code == 201, answer.text
    else:
        assert answer.status_code in (403, 422), answer.text
        assert "cannot set blockOwnerDeletion" in answer.json()["message"]


# --- the online feature store ---------------------------------------------------------------------------------


def _feature_store_pods(objs: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """The pods the StatefulSet and Deployment controllers create from the rendered templates."""
    pods = []
    for obj in objs:
        if obj["kind"] not in ("StatefulSet", "Deployment"):
            continue
        spec = copy.deepcopy(obj["spec"]["template"]["spec"])
        for claim in obj["spec"].get("volumeClaimTemplates", []):
            # The StatefulSet controller mounts each claim of the template as `<claim>-<set>-<ordinal>`.
            spec["volumes"].append(
                {
                    "name": claim["metadata"]["name"],
                    "persistentVolumeClaim": {
                        "claimName": f"{claim['metadata']['name']}-{obj['metadata']['name']}-0"
                    },
                }
            )
        pods.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"{obj['metadata']['name']}-0",
                    "namespace": namespace,
                    "labels": obj["spec"]["template"]["metadata"]["labels"],
                },
                "spec": spec,
            }
        )
    return pods


@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_the_feature_store_objects_and_pods_are_admitted_in_the_restricted_namespace(
    control_plane: ControlPlane, stack: str
) -> None:
    """Redis, the materializer and the feature server as rendered: every object accepted by the API server
    (server-side dry runs), and the pods their controllers create admitted under `restricted`."""
    from components.feature_store import render_feature_store

    rendered = _rendered(stack)
    namespace = f"features-{stack}"
    _namespace(control_plane, rendered, namespace)
    objs = [copy.deepcopy(o) for o in render_feature_store(load_platform(stack))]
    refused = {}
    sent = 0
    for obj in objs:
        obj["metadata"]["namespace"] = namespace
        if obj["apiVersion"].startswith("monitoring.coreos.com"):
            continue  # the Prometheus Operator's kinds: not served by a bare API server (schema-checked offline)
        sent += 1
        answer = control_plane.create(obj, dry_run=True)
        if answer.status_code != 201:
            refused[object_key(obj)] = answer.json().get("message", answer.text)
    assert refused == {}
    pods = _feature_store_pods(objs, namespace)
    # The pods run as the namespace's `default` account (no controller-manager here creates it).
    control_plane.must_create(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": namespace},
        }
    )
    assert sorted(p["metadata"]["name"] for p in pods) == [
        "feature-materializer-0",
        "feature-server-0",
        "feature-store-redis-0",
    ]
    for pod in pods:
        answer = control_plane.create(pod, dry_run=True)
        assert answer.status_code == 201, (pod["metadata"]["name"], answer.text)
    # The control: the same Redis pod allowed to escalate privileges is refused.
    redis_pod = next(p for p in pods if p["metadata"]["name"] == "feature-store-redis-0")
    redis_pod["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    answer = control_plane.create(redis_pod, dry_run=True)
    assert answer.status_code == 403 and "allowPrivilegeEscalation != false" in answer.json()["message"]
    print(f"\n[pod-security] {stack}: {sent} feature-store objects and {len(pods)} pods admitted")
