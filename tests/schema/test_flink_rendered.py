"""Every Flink object every stack renders is valid: FlinkDeployments against the Flink Kubernetes Operator's
CRD (unknown fields rejected), the apps' RBAC, ConfigMaps and the dev MinIO against the Kubernetes schemas."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.checkpoint_storage import render_checkpoint_storage
from components.flink_application import render_flink_applications
from headwater import versions
from headwater.config import load_platform, stack_names
from headwater_cli.render import render_stack
from headwater_cli.validate import validate_object


def _flink_objects(stack: str) -> list[dict[str, Any]]:
    p = load_platform(stack)
    return [*render_checkpoint_storage(p), *render_flink_applications(p)]


@pytest.mark.parametrize("stack", stack_names())
def test_every_rendered_flink_deployment_is_valid_against_the_operator_crd(stack: str) -> None:
    p = load_platform(stack)
    deployments = [o for o in render_stack(p) if o["kind"] == "FlinkDeployment"]
    assert sorted(d["metadata"]["name"] for d in deployments) == sorted(a.name for a in p.apps)
    for obj in deployments:
        assert obj["apiVersion"] == versions.FLINK_CRD_API_VERSION
        assert validate_object(obj) == [], obj["metadata"]["name"]


@pytest.mark.parametrize("stack", stack_names())
def test_every_other_flink_object_is_valid(stack: str) -> None:
    objs = [o for o in _flink_objects(stack) if o["kind"] != "FlinkDeployment"]
    assert {"ServiceAccount", "Role", "RoleBinding", "ConfigMap"} <= {o["kind"] for o in objs}
    for obj in objs:
        assert validate_object(obj) == [], f"{obj['kind']}/{obj['metadata']['name']}"


def test_an_unknown_field_in_a_flink_deployment_is_rejected() -> None:
    """The check above can fail: a misspelt or made-up field is reported with its path."""
    (deployment,) = [
        o for o in render_flink_applications(load_platform("prod")) if o["metadata"]["name"] == "agent-events"
    ]
    broken = copy.deepcopy(deployment)
    broken["spec"]["job"]["upgradeModes"] = "savepoint"
    problems = validate_object(broken)
    assert any("spec.job" in m and "upgradeModes" in m for m in problems), problems
    wrong = copy.deepcopy(deployment)
    wrong["spec"]["job"]["upgradeMode"] = "latest-state"
    assert any("spec.job.upgradeMode" in m for m in validate_object(wrong))
