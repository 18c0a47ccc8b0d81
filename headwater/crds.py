"""Upstream CRDs of the pinned operator releases: the ones `pulumi up` installs, and the schemas tests validate against.

Both come from the operators' Helm charts exactly as tagged upstream, kept in `charts/` (checksums in
`charts/SHA256SUMS`): Strimzi 1.2.0's `crds/` and the Flink Kubernetes Operator 1.15.0's `crds/`. The
platform installs these very files as `CustomResourceDefinition` objects (`components.operator_crds`), so
what a rendered custom resource is checked against is what the cluster will enforce.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from headwater import versions

CHARTS = Path(__file__).resolve().parent.parent / "charts"

STRIMZI_GROUP = versions.STRIMZI_API_VERSION.split("/")[0]
FLINK_GROUP = versions.FLINK_CRD_API_VERSION.split("/")[0]


class CrdError(Exception):
    """A CRD schema could not be produced or looked up."""


class UnknownKindError(CrdError, KeyError):
    """No CRD of the pinned operators defines this group and kind."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


class UnservedVersionError(CrdError):
    """The CRD exists but does not serve the requested apiVersion."""


@dataclass(frozen=True)
class CrdSet:
    """The CRDs of one operator release, as shipped in its chart."""

    name: str
    group: str
    version: str
    folder: Path
    crds: dict[str, dict[str, Any]]
    """kind -> the whole CustomResourceDefinition document."""

    def served_versions(self, kind: str) -> list[str]:
        return [v["name"] for v in self.crds[kind]["spec"]["versions"] if v.get("served", False)]

    def documents(self) -> list[dict[str, Any]]:
        """Every CRD of the set (a fresh copy), in file order: what the cluster gets installed."""
        return [copy.deepcopy(doc) for doc in _read_folder(self.folder)]


def chart_folder(chart: str, version: str) -> Path:
    """The vendored chart `<chart>-<version>/` under `charts/`."""
    return CHARTS / f"{chart}-{version}"


def _read_folder(folder: Path) -> list[dict[str, Any]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    docs: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.y*ml")):
        for doc in yaml.load_all(path.read_text(), Loader=loader):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                docs.append(doc)
    return docs


def _load(name: str, chart: str, group: str, version: str) -> CrdSet:
    folder = chart_folder(chart, version) / "crds"
    if not folder.is_dir():
        raise CrdError(f"{name} {version}: no CRD folder {folder} (the vendored chart is missing)")
    crds = {
        doc["spec"]["names"]["kind"]: doc for doc in _read_folder(folder) if doc["spec"]["group"] == group
    }
    if not crds:
        raise CrdError(f"{name} {version}: no CustomResourceDefinition of group {group} in {folder}")
    return CrdSet(name, group, version, folder, crds)


@functools.cache
def strimzi() -> CrdSet:
    """Strimzi's CRDs of the pinned release."""
    return _load("strimzi", versions.STRIMZI_CHART, STRIMZI_GROUP, versions.STRIMZI_VERSION)


@functools.cache
def flink_operator() -> CrdSet:
    """The Flink Kubernetes Operator's CRDs of the pinned release."""
    return _load(
        "flink-operator", versions.FLINK_OPERATOR_CHART, FLINK_GROUP, versions.FLINK_OPERATOR_VERSION
    )


# --- Look-ups --------------------------------------------------------------------------------------------

_SETS = {STRIMZI_GROUP: strimzi, FLINK_GROUP: flink_operator}


def custom_groups() -> tuple[str, ...]:
    """API groups whose objects are checked against these CRDs."""
    return tuple(sorted(_SETS))


def crd_set(group: str) -> CrdSet:
    """The CRD set of an API group."""
    if group not in _SETS:
        raise UnknownKindError(f"no CRDs are known for API group {group!r}; known groups: {', '.join(_SETS)}")
    return _SETS[group]()


def known_kinds() -> dict[str, list[str]]:
    """Every kind with a CRD, by API group."""
    return {group: sorted(crd_set(group).crds) for group in sorted(_SETS)}


def warm() -> list[CrdSet]:
    """Load every CRD set now (a test session calls this once)."""
    return [crd_set(group) for group in sorted(_SETS)]


def crd(api_version: str, kind: str) -> dict[str, Any]:
    """The whole CustomResourceDefinition of `kind` whose group is that of `api_version`."""
    group = api_version.split("/")[0] if "/" in api_version else ""
    if group not in _SETS:
        raise UnknownKindError(
            f"{api_version} {kind}: not a custom resource of the pinned operators; known: {_describe_known()}"
        )
    crds = crd_set(group).crds
    if kind not in crds:
        raise UnknownKindError(
            f"{api_version} {kind}: no such kind in group {group}; known kinds: {', '.join(sorted(crds))}"
        )
    return crds[kind]


def _describe_known() -> str:
    return "; ".join(f"{group}: {', '.join(kinds)}" for group, kinds in known_kinds().items())


def crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    """The openAPIV3Schema of `kind` at `api_version` (e.g. "kafka.strimzi.io/v1", "KafkaTopic").

    A fresh copy each call, so a caller may change it. Raises UnknownKindError for a group or kind the pinned
    operators do not define, and UnservedVersionError when the CRD exists but does not serve that version.
    """
    definition = crd(api_version, kind)
    version = api_version.split("/", 1)[1]
    for entry in definition["spec"]["versions"]:
        if entry["name"] == version and entry.get("served", False):
            schema: dict[str, Any] = copy.deepcopy(entry["schema"]["openAPIV3Schema"])
            return schema
    group = definition["spec"]["group"]
    served = [f"{group}/{v['name']}" for v in definition["spec"]["versions"] if v.get("served", False)]
    owner = crd_set(group)
    raise UnservedVersionError(
        f"{api_version} {kind}: version {version!r} is not served by the {kind} CRD of "
        f"{owner.name} {owner.version}; served: {', '.join(served)}"
    )


if __name__ == "__main__":
    for loaded in warm():
        print(f"{loaded.name} {loaded.version}: {', '.join(sorted(loaded.crds))} in {loaded.folder}")
