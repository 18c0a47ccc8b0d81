"""Shared shapes: labels and metadata, Helm releases, and turning rendered dicts into Pulumi resources.

Renderers return plain dicts (the exact objects the cluster receives). `create_object` is the single place
that maps such a dict onto a pulumi-kubernetes resource, so the offline render and `pulumi up` can never
disagree about an object.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from headwater.config import ROOT as PROJECT_ROOT

PART_OF = "headwater"
WAIT_READY = {"pulumi.com/waitFor": "condition=Ready"}
RESTRICTED_POD_SECURITY = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
}


def labels(component: str, name: str | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    out = {"app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/component": component}
    if name:
        out["app.kubernetes.io/name"] = name
    out.update(extra or {})
    return dict(sorted(out.items()))


def metadata(
    name: str,
    namespace: str | None,
    labels: Mapping[str, str],
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": dict(labels)}
    if namespace:
        meta["namespace"] = namespace
    if annotations:
        meta["annotations"] = dict(sorted(annotations.items()))
    return meta


def namespace(name: str, component: str) -> dict[str, Any]:
    """A namespace that enforces the Restricted Pod Security Standard."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": metadata(name, None, labels(component, extra=RESTRICTED_POD_SECURITY)),
    }


def restricted_container_security() -> dict[str, Any]:
    """Container securityContext that satisfies the Restricted Pod Security Standard."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def image_digest(ref: str) -> str | None:
    """The verified digest of `repository:tag`, if `headwater.versions.IMAGE_DIGESTS` lists one."""
    from headwater import versions

    digest = versions.IMAGE_DIGESTS.get(ref)
    if digest is not None and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise ValueError(f"IMAGE_DIGESTS[{ref!r}] = {digest!r} is not valid; allowed: sha256:<64 hex digits>")
    return digest


def pinned_image(ref: str) -> str:
    """`repository:tag@sha256:...` when the digest of `repository:tag` is known, else `repository:tag`."""
    digest = image_digest(ref)
    return f"{ref}@{digest}" if digest else ref


@dataclass(frozen=True)
class HelmRelease:
    """A pinned Helm chart installation (rendered as its own document; installed with helm.v3.Release)."""

    name: str
    namespace: str
    chart: str
    version: str
    repository: str
    values: Mapping[str, Any] = field(default_factory=dict)
    charts_folder: str | None = None
    """A local folder holding `<chart>-<version>/` (air-gapped installs); None: the chart's repository."""

    @property
    def local_chart(self) -> str | None:
        """Path of the chart in `charts_folder` (relative paths are taken from the project root)."""
        return f"{self.charts_folder.rstrip('/')}/{self.chart}-{self.version}" if self.charts_folder else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "HelmRelease",
            "name": self.name,
            "namespace": self.namespace,
            "chart": self.chart,
            "version": self.version,
            "repository": self.repository,
            **({"chartsFolder": self.charts_folder} if self.charts_folder else {}),
            # CRDs are installed (and upgraded) by the platform itself, never by Helm.
            "skipCrds": True,
            "values": dict(self.values),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> HelmRelease:
        return cls(
            name=doc["name"],
            namespace=doc["namespace"],
            chart=doc["chart"],
            version=doc["version"],
            repository=doc["repository"],
            values=dict(doc.get("values") or {}),
            charts_folder=doc.get("chartsFolder"),
        )


# libyaml's emitter when PyYAML was built with it (the wheels are): same output, several times faster.
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _NoAliases(_Dumper):  # type: ignore[misc]  # the C dumper is only known at run time
    """Write repeated values out in full: reviewers and GitOps tools should not have to follow anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(obj: Any, sort_keys: bool = True) -> str:
    """YAML text of rendered data (objects, embedded config files), deterministic and anchor-free."""
    return yaml.dump(obj, Dumper=_NoAliases, sort_keys=sort_keys, default_flow_style=False)


def object_key(obj: Mapping[str, Any]) -> str:
    """`Kind/namespace/name` (or `Kind/name`), the identity used in reports and file names.

    Tolerates malformed objects (missing metadata or name), so validators can name what they reject.
    """
    if obj.get("kind") == "HelmRelease":
        return f"HelmRelease/{obj.get('namespace')}/{obj.get('name')}"
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    parts = [str(obj.get("kind", "?")), meta.get("namespace"), str(meta.get("name", "?"))]
    return "/".join(str(p) for p in parts if p)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def create_object(resource_name: str, obj: Mapping[str, Any], opts: Any = None) -> Any:
    """Create the pulumi-kubernetes resource for one rendered object (imports Pulumi lazily)."""
    import pulumi_kubernetes as k8s

    api_version = obj["apiVersion"]
    kind = obj["kind"]
    # Typed classes take top-level API fields (roleRef, automountServiceAccountToken) as snake_case keywords.
    body = {_snake(k): v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    typed: dict[tuple[str, str], Any] = {
        (
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
        ): k8s.apiextensions.v1.CustomResourceDefinition,
        ("v1", "Namespace"): k8s.core.v1.Namespace,
        ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
        ("v1", "Secret"): k8s.core.v1.Secret,
        ("v1", "Service"): k8s.core.v1.Service,
        ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
        ("v1", "PersistentVolumeClaim"): k8s.core.v1.PersistentVolumeClaim,
        ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
        ("apps/v1", "StatefulSet"): k8s.apps.v1.StatefulSet,
        ("rbac.authorization.k8s.io/v1", "Role"): k8s.rbac.v1.Role,
        ("rbac.authorization.k8s.io/v1", "RoleBinding"): k8s.rbac.v1.RoleBinding,
        ("networking.k8s.io/v1", "NetworkPolicy"): k8s.networking.v1.NetworkPolicy,
        ("networking.k8s.io/v1", "Ingress"): k8s.networking.v1.Ingress,
        ("policy/v1", "PodDisruptionBudget"): k8s.policy.v1.PodDisruptionBudget,
    }
    cls = typed.get((api_version, kind))
    if cls is not None:
        return cls(resource_name, opts=opts, **body)
    if "/" in api_version and "." in api_version.split("/")[0]:
        return k8s.apiextensions.CustomResource(
            resource_name,
            api_version=api_version,
            kind=kind,
            opts=opts,
            **{k: obj[k] for k in obj if k not in ("apiVersion", "kind")},
        )
    raise ValueError(
        f"no Pulumi resource type for apiVersion {api_version!r} kind {kind!r}; add it to create_object"
    )


def release_inputs(release: HelmRelease) -> dict[str, Any]:
    """The inputs of the `helm.v3.Release` a rendered release becomes, as the engine receives them (camelCase).

    The one mapping of a HelmRelease onto Pulumi: `create_release` creates it, `headwater check` judges it.
    """
    props: dict[str, Any] = {
        "name": release.name,
        "namespace": release.namespace,
        "values": dict(release.values),
        "skipCrds": True,
        "atomic": True,
    }
    if release.local_chart is not None:
        # The folder name carries the version (checked by the config loader); a source-tree chart may carry a
        # placeholder version in its Chart.yaml, so no version is asked of it.
        path = Path(release.local_chart)
        props["chart"] = str(path if path.is_absolute() else PROJECT_ROOT / path)
    elif release.repository.startswith("oci://"):
        props |= {"chart": release.repository, "version": release.version}
    else:
        props |= {
            "chart": release.chart,
            "version": release.version,
            "repositoryOpts": {"repo": release.repository},
        }
    return props


def create_release(resource_name: str, release: HelmRelease, opts: Any = None) -> Any:
    """A Helm release from the chart's repository, or from a local folder when `charts_folder` is set."""
    import pulumi_kubernetes as k8s

    inputs = release_inputs(release)
    repo = inputs.pop("repositoryOpts", None)
    return k8s.helm.v3.Release(
        resource_name,
        name=inputs.pop("name"),
        namespace=inputs.pop("namespace"),
        chart=inputs.pop("chart"),
        version=inputs.pop("version", None),
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(**repo) if repo else None,
        values=inputs.pop("values"),
        skip_crds=inputs.pop("skipCrds"),
        atomic=inputs.pop("atomic"),
        opts=opts,
    )


def sorted_objects(objs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return sorted((dict(o) for o in objs), key=object_key)
