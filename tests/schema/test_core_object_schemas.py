"""Core Kubernetes objects against kubernetes-validate's strict schemas."""

from __future__ import annotations

from typing import Any

import pytest

from headwater_cli.validate import KUBERNETES_SCHEMA_VERSION, validate_object

Obj = dict[str, Any]

NS = {"name": "registry", "namespace": "registry"}
CORE_OBJECTS: list[Obj] = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "registry", "labels": {"team": "data"}}},
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": NS},
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": NS, "data": {"application.properties": "a=b"}},
    {"apiVersion": "v1", "kind": "Secret", "metadata": NS, "type": "Opaque", "stringData": {"password": "x"}},
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": NS,
        "spec": {
            "selector": {"app": "registry"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    },
    {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": NS,
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": NS,
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": NS,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "registry"},
        "subjects": [{"kind": "ServiceAccount", "name": "registry", "namespace": "registry"}],
    },
    {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": NS,
        "spec": {
            "podSelector": {"matchLabels": {"app": "registry"}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"namespaceSelector": {"matchLabels": {"team": "data"}}}],
                    "ports": [{"port": 8080}],
                }
            ],
        },
    },
]


@pytest.mark.parametrize("obj", CORE_OBJECTS, ids=lambda o: str(o["kind"]))
def test_valid_core_objects_pass(obj: Obj) -> None:
    assert validate_object(obj) == []


def test_valid_deployment_passes(deployment: Obj) -> None:
    assert validate_object(deployment) == []


def test_deployment_with_a_typo_fails_strictly(deployment: Obj) -> None:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["imagePullPolcy"] = container.pop("imagePullPolicy")

    messages = validate_object(deployment)

    assert len(messages) == 1
    assert messages[0].startswith("spec.template.spec.containers[0].imagePullPolcy: unknown field")
    assert "imagePullPolicy" in messages[0]


def test_deployment_wrong_type_and_all_errors_reported(deployment: Obj) -> None:
    deployment["spec"]["replicas"] = "1"
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"

    assert validate_object(deployment) == [
        'spec.replicas: expected integer or null, got string "1"',
        'spec.template.spec.containers[0].ports[0].containerPort: expected integer, got string "8080"',
    ]


def test_removed_core_api_version_has_no_schema(deployment: Obj) -> None:
    deployment["apiVersion"] = "extensions/v1beta1"

    messages = validate_object(deployment)

    assert len(messages) == 1
    assert messages[0].startswith("kind: no schema for extensions/v1beta1 Deployment")
    assert KUBERNETES_SCHEMA_VERSION in messages[0]


def test_kind_from_an_unknown_group_is_an_error_not_a_pass() -> None:
    certificate = {"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": NS, "spec": {}}

    assert validate_object(certificate)[0].startswith("kind: no schema for cert-manager.io/v1 Certificate")


def test_missing_api_version_and_kind() -> None:
    assert validate_object({"metadata": NS}) == [
        "apiVersion: required string is missing or not a string",
        "kind: required string is missing or not a string",
    ]
