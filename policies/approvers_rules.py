"""Rules for the approvers' page: HTTPS only, its secrets from Secrets, no public address of its own.

People sign in on that page with their passwords and carry a session cookie that can approve an agent's
action; over plain HTTP both cross the network in clear. The page refuses to start without a certificate, so
the rule judges what the render must say for it to start safely: the certificate and key, the users file and
the session key read from Secret volumes (never a ConfigMap, which anyone who may read config sees), probes over
HTTPS, and a ClusterIP Service (an Ingress or a port-forward in front of it is the cluster's choice).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from components.approvers_page import COMPONENT
from policies.rulebook import Context, Rule, dig, items, labels_of, mapping, of_kind

COMPONENT_LABEL = "app.kubernetes.io/component"
PAGE_MODULE = "approval_gate.approvers.main"
# Option -> what it names; each must be a file on a Secret volume.
SECRET_FILES = {
    "--tls-cert": "the certificate",
    "--tls-key": "the certificate's key",
    "--users": "the users file",
    "--session-key-file": "the session key",
}


def _option(args: list[str], name: str) -> str | None:
    for i, a in enumerate(args):
        if a.startswith(f"{name}="):
            return a.split("=", 1)[1]
        if a == name and i + 1 < len(args):
            return args[i + 1]
    return None


def _deployment(props: Mapping[str, Any]) -> Iterator[str]:
    name = dig(props, "metadata", "name")
    pod = mapping(dig(props, "spec", "template", "spec"))
    volumes = {mapping(v).get("name"): mapping(v) for v in items(pod.get("volumes"))}
    for c in [mapping(c) for c in items(pod.get("containers"))]:
        args = [str(a) for a in [*items(c.get("command")), *items(c.get("args"))]]
        if PAGE_MODULE not in args:
            continue
        where = f"Deployment {name} container {c.get('name')}"
        mounts = [mapping(m) for m in items(c.get("volumeMounts"))]
        for option, what in SECRET_FILES.items():
            path = _option(args, option)
            if path is None:
                yield f"{where}: no {option} ({what}): the page serves HTTPS only and needs it from a Secret"
                continue
            mount = max(
                (m for m in mounts if path.startswith(str(m.get("mountPath", "")).rstrip("/") + "/")),
                key=lambda m: len(str(m.get("mountPath", ""))),
                default=None,
            )
            volume = volumes.get(mount.get("name")) if mount is not None else None
            if volume is None or "secret" not in volume:
                yield f"{where}: {option} {path} ({what}) is not on a Secret volume: mount it from its Secret"
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = mapping(dig(c, probe, "httpGet"))
            if get and get.get("scheme") != "HTTPS":
                yield f"{where}: {probe} is plain HTTP on an HTTPS-only port: set httpGet.scheme HTTPS"


def _check(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[str]:
    if labels_of(props).get(COMPONENT_LABEL) != COMPONENT:
        return
    kind = resource_type.rsplit(":", 1)[-1]
    if kind == "Deployment":
        yield from _deployment(props)
    elif kind == "Service":
        kind_of_service = dig(props, "spec", "type") or "ClusterIP"
        if kind_of_service != "ClusterIP":
            yield (
                f"Service {dig(props, 'metadata', 'name')} is of type {kind_of_service}: the approvers' page "
                "is reached through the cluster's ingress or a port-forward; set type ClusterIP"
            )


RULES: tuple[Rule, ...] = (
    Rule(
        name="gate-approvers-page-https",
        description=(
            "The approvers' page serves HTTPS only with its certificate, users and session key from Secrets, "
            "probes over HTTPS, behind a ClusterIP Service."
        ),
        applies=lambda token: of_kind("apps", "Deployment")(token) or of_kind("core", "Service")(token),
        check=_check,
    ),
)
