"""Upstream CRDs of the pinned operator releases: the ones `pulumi up` installs, and the schemas tests validate against.

Strimzi and the Flink Kubernetes Operator come from the operators' Helm charts exactly as tagged upstream, kept
in `charts/` (checksums in `charts/SHA256SUMS`): Strimzi 1.2.0's `crds/` and the Flink Kubernetes Operator
1.15.0's `crds/`. The platform installs these very files as `CustomResourceDefinition` objects
(`components.operator_crds`), so what a rendered custom resource is checked against is what the cluster will
enforce.

The Prometheus Operator's CRDs (PodMonitor, PrometheusRule, ...) come from its Go module, which carries them
under `example/prometheus-operator-crd/`: `go mod download` fetches the module zip from the module proxy
(checked against the checksum database) and the CRD files are read from it as they are, into
`.cache/crds/prometheus-operator-<version>/` (plus `crds.json` for fast loading); a version bump names a new
folder, so it is fetched again by itself. The platform does not install these: the monitoring stack that
runs the operator owns them.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from headwater import versions

ROOT = Path(__file__).resolve().parent.parent
CHARTS = ROOT / "charts"
CACHE = Path(os.environ.get("HEADWATER_CACHE", ROOT / ".cache")) / "crds"

# Bumped when the way a fetched set is produced changes, so old caches are not trusted.
_FORMAT = "1"

STRIMZI_GROUP = versions.STRIMZI_API_VERSION.split("/")[0]
FLINK_GROUP = versions.FLINK_CRD_API_VERSION.split("/")[0]
MONITORING_GROUP = versions.PROMETHEUS_OPERATOR_API_VERSION.split("/")[0]
# Where the Prometheus Operator module keeps its CRDs (one file per kind, as `kubectl apply` takes them).
PROMETHEUS_OPERATOR_CRD_DIR = "example/prometheus-operator-crd"


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
    """The CRDs of one operator release, as shipped in its chart (or its Go module)."""

    name: str
    group: str
    version: str
    folder: Path
    crds: dict[str, dict[str, Any]]
    """kind -> the whole CustomResourceDefinition document."""
    source: dict[str, Any] = field(default_factory=dict)
    """Where a fetched set came from (module and its checksum); empty for a vendored chart."""

    def served_versions(self, kind: str) -> list[str]:
        return [v["name"] for v in self.crds[kind]["spec"]["versions"] if v.get("served", False)]

    def documents(self) -> list[dict[str, Any]]:
        """Every CRD of the set (a fresh copy), in file order: what the cluster gets installed."""
        return [copy.deepcopy(doc) for doc in _read_folder(self.folder)]


def chart_folder(chart: str, version: str) -> Path:
    """The vendored chart `<chart>-<version>/` under `charts/`."""
    return CHARTS / f"{chart}-{version}"


class _CrdLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe loading, plus YAML 1.1's `=` "value" scalar (an enum value of relabel actions) as plain text."""


_CrdLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def _read_folder(folder: Path) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.y*ml")):
        for doc in yaml.load_all(path.read_text(), Loader=_CrdLoader):
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


# --- Prometheus Operator ---------------------------------------------------------------------------------


def _progress(message: str) -> None:
    print(f"[crds] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """Serialise cache builds of one set between processes (two test runs started at once)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _stamp(*parts: str) -> str:
    return hashlib.sha256("\n".join((_FORMAT, *parts)).encode()).hexdigest()


def _build(folder: Path, stamp: str, produce: Callable[[Path], dict[str, Any]]) -> None:
    """Run `produce(tmp)` into a fresh folder and move it into place only when it succeeded."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        source = produce(tmp)
        crds = {doc["spec"]["names"]["kind"]: doc for doc in _read_folder(tmp)}
        if not crds:
            raise CrdError(f"no CustomResourceDefinition was produced in {tmp}")
        (tmp / "crds.json").write_text(json.dumps({"source": source, "crds": crds}, sort_keys=True))
        (tmp / ".stamp").write_text(stamp)
        tmp.chmod(0o755)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _go() -> str:
    found = shutil.which("go") or next((str(p) for p in (Path("/usr/local/go/bin/go"),) if p.is_file()), None)
    if not found:
        raise CrdError(
            f"the Prometheus Operator CRDs come from its Go module ({versions.PROMETHEUS_OPERATOR_MODULE}): "
            "no `go` found on PATH or in /usr/local/go/bin; install Go"
        )
    return found


def _extract_prometheus_operator(out: Path) -> dict[str, Any]:
    module = f"{versions.PROMETHEUS_OPERATOR_MODULE}@v{versions.PROMETHEUS_OPERATOR_VERSION}"
    _progress(f"downloading the Go module {module}")
    env = {
        **os.environ,
        # Beside the other caches of the project; writable so `make clean` can remove it.
        "GOMODCACHE": str(CACHE.parent / "gomod"),
        "GOFLAGS": "-modcacherw",
        "GOTOOLCHAIN": "local",
    }
    result = subprocess.run(
        [_go(), "mod", "download", "-json", module],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=CACHE.parent,
    )
    if result.returncode != 0:
        raise CrdError(
            f"go mod download {module} failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
        )
    info = json.loads(result.stdout)
    prefix = f"{module}/{PROMETHEUS_OPERATOR_CRD_DIR}/"
    with zipfile.ZipFile(info["Zip"]) as archive:
        for member in archive.namelist():
            if member.startswith(prefix) and re.fullmatch(r"[^/]+\.yaml", member[len(prefix) :]):
                (out / Path(member).name).write_bytes(archive.read(member))
    return {"module": module, "sum": info.get("Sum"), "path": PROMETHEUS_OPERATOR_CRD_DIR}


@functools.cache
def prometheus_operator() -> CrdSet:
    """The Prometheus Operator's CRDs of the pinned release (fetched from its Go module on first use)."""
    name, version = "prometheus-operator", versions.PROMETHEUS_OPERATOR_VERSION
    folder = CACHE / f"{name}-{version}"
    stamp = _stamp(version, PROMETHEUS_OPERATOR_CRD_DIR)
    stamp_file = folder / ".stamp"
    if not (stamp_file.is_file() and stamp_file.read_text() == stamp):
        with _locked(name):
            if not (stamp_file.is_file() and stamp_file.read_text() == stamp):
                _progress(f"fetching {name} {version} CRDs into {folder}")
                _build(folder, stamp, _extract_prometheus_operator)
    data = json.loads((folder / "crds.json").read_text())
    return CrdSet(name, MONITORING_GROUP, version, folder, data["crds"], data["source"])


# --- Look-ups --------------------------------------------------------------------------------------------

_SETS: dict[str, Callable[[], CrdSet]] = {
    STRIMZI_GROUP: strimzi,
    FLINK_GROUP: flink_operator,
    MONITORING_GROUP: prometheus_operator,
}


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
