"""The approvers' page rule: passes what every shipped stack renders, fails a weakened object saying what to set."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from headwater.config import stack_names

Obj = dict[str, Any]
Get = Callable[[str, str], Obj]
Judge = Callable[..., list[str]]

RULE = "gate-approvers-page-https"
DEPLOYMENT = "Deployment/headwater/action-approvers-page"
SERVICE = "Service/headwater/action-approvers-page"


def _container(deployment: Obj) -> Obj:
    container: Obj = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


@pytest.mark.parametrize("stack", stack_names())
def test_every_shipped_stack_passes(stack: str, obj: Get, judge: Judge) -> None:
    for key in (DEPLOYMENT, SERVICE):
        assert judge(RULE, obj(stack, key), stack) == [], key


def test_a_page_without_its_certificate_fails(obj: Get, judge: Judge) -> None:
    deployment = obj("prod", DEPLOYMENT)
    c = _container(deployment)
    c["command"] = [a for a in c["command"] if not a.startswith("--tls-cert=")]
    (message,) = judge(RULE, deployment, "prod")
    assert message == (
        "Deployment action-approvers-page container page: no --tls-cert (the certificate): the page serves "
        "HTTPS only and needs it from a Secret"
    )


def test_secrets_from_a_config_map_fail(obj: Get, judge: Judge) -> None:
    deployment = obj("dev", DEPLOYMENT)
    pod = deployment["spec"]["template"]["spec"]
    for v in pod["volumes"]:
        if v["name"] == "users":
            del v["secret"]
            v["configMap"] = {"name": "approvers-users"}
    (message,) = judge(RULE, deployment, "dev")
    assert (
        "--users /etc/headwater/approvers-users/users.json (the users file) is not on a Secret volume"
        in message
    )


def test_plain_http_probes_and_a_node_port_fail(obj: Get, judge: Judge) -> None:
    deployment = obj("prod", DEPLOYMENT)
    del _container(deployment)["readinessProbe"]["httpGet"]["scheme"]
    (message,) = judge(RULE, deployment, "prod")
    assert "readinessProbe is plain HTTP on an HTTPS-only port: set httpGet.scheme HTTPS" in message
    service = obj("prod", SERVICE)
    service["spec"]["type"] = "NodePort"
    (message,) = judge(RULE, service, "prod")
    assert message.endswith(
        "is of type NodePort: the approvers' page is reached through the cluster's ingress or a port-forward; set type ClusterIP"
    )


def test_other_deployments_are_not_judged(obj: Get, judge: Judge) -> None:
    gate = obj("prod", "Deployment/headwater/approval-gate")
    assert judge(RULE, gate, "prod") == []
