"""Upstream CRD schemas of the pinned operator versions, fetched from Maven Central and cached on disk.

Two sources, both resolved through the artifact sets of `headwater.jvm`:
- Strimzi: the `io.strimzi:api` jar carries no CRD files, so `io.strimzi.crdgenerator.CrdGenerator` (the
  tool Strimzi's own build uses) regenerates them from the api model classes, with the arguments the
  upstream build passes. The generator is compiled for a newer Java than the default one here, so a
  suitable `java` is looked up (JAVA_HOME, PATH, /usr/lib/jvm).
- Flink Kubernetes Operator: the `flink-kubernetes-operator-api` jar ships its CRDs under
  `META-INF/fabric8/`; they are extracted as they are.
- Prometheus Operator: its Go module carries the CRDs under `example/prometheus-operator-crd/`; `go mod
  download` fetches the module zip from the module proxy (checked against the checksum database) and the
  CRD files are read from it as they are.

Each set lands in `.cache/crds/<set>-<version>/` (the YAML as generated or shipped, plus `crds.json` for
fast loading); a version bump names a new folder, so it regenerates by itself.
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

from headwater import jvm, versions

CACHE = Path(os.environ.get("HEADWATER_CACHE", jvm.ROOT / ".cache")) / "crds"

# Bumped when the way a set is produced changes, so old caches are not trusted.
_FORMAT = "1"

STRIMZI_GROUP = versions.STRIMZI_API_VERSION.split("/")[0]
FLINK_GROUP = versions.FLINK_CRD_API_VERSION.split("/")[0]
MONITORING_GROUP = versions.PROMETHEUS_OPERATOR_API_VERSION.split("/")[0]
# Where the Prometheus Operator module keeps its CRDs (one file per kind, as `kubectl apply` takes them).
PROMETHEUS_OPERATOR_CRD_DIR = "example/prometheus-operator-crd"

# Custom resources whose CRDs are generated from Strimzi's api model classes (names as in the api jar).
STRIMZI_MODEL_CLASSES: dict[str, str] = {
    "Kafka": "io.strimzi.api.kafka.model.kafka.Kafka",
    "KafkaNodePool": "io.strimzi.api.kafka.model.nodepool.KafkaNodePool",
    "KafkaTopic": "io.strimzi.api.kafka.model.topic.KafkaTopic",
    "KafkaUser": "io.strimzi.api.kafka.model.user.KafkaUser",
    "KafkaConnect": "io.strimzi.api.kafka.model.connect.KafkaConnect",
    "KafkaConnector": "io.strimzi.api.kafka.model.connector.KafkaConnector",
    "KafkaRebalance": "io.strimzi.api.kafka.model.rebalance.KafkaRebalance",
    "KafkaBridge": "io.strimzi.api.kafka.model.bridge.KafkaBridge",
    "KafkaMirrorMaker2": "io.strimzi.api.kafka.model.mirrormaker2.KafkaMirrorMaker2",
}

# The Flink operator's api jar for the pinned release is not served by the Maven Central that this
# project's machines reach (it lists 1.3.0, 1.7.0 and 1.10.0 only). Until it is, the newest served release
# stands in and the pinned release is tried first every time the cache is built. Remove the entry once
# the pinned jar resolves.
FLINK_OPERATOR_STAND_IN: dict[str, str] = {
    versions.FLINK_OPERATOR_VERSION: versions.FLINK_OPERATOR_CRD_STAND_IN
}


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
    """The CRDs of one operator release, as cached on disk."""

    name: str
    group: str
    version: str
    folder: Path
    crds: dict[str, dict[str, Any]]
    """kind -> the whole CustomResourceDefinition document."""
    source: dict[str, Any] = field(default_factory=dict)
    """How the set was produced (artifact, version actually used, stand-in notes)."""

    def served_versions(self, kind: str) -> list[str]:
        return [v["name"] for v in self.crds[kind]["spec"]["versions"] if v.get("served", False)]


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


class _CrdLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe loading, plus YAML 1.1's `=` "value" scalar (an enum value of relabel actions) as plain text."""


_CrdLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def _build(folder: Path, stamp: str, produce: Callable[[Path], dict[str, Any]]) -> None:
    """Run `produce(tmp)` into a fresh folder and move it into place only when it succeeded."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        source = produce(tmp)
        crds: dict[str, dict[str, Any]] = {}
        for path in sorted(tmp.glob("*.y*ml")):
            doc = yaml.load(path.read_text(), Loader=_CrdLoader)
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                crds[doc["spec"]["names"]["kind"]] = doc
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


def _load(
    name: str, group: str, version: str, stamp: str, produce: Callable[[Path], dict[str, Any]]
) -> CrdSet:
    folder = CACHE / f"{name}-{version}"
    stamp_file = folder / ".stamp"
    if not (stamp_file.is_file() and stamp_file.read_text() == stamp):
        with _locked(name):
            if not (stamp_file.is_file() and stamp_file.read_text() == stamp):
                _progress(f"building {name} {version} CRDs into {folder}")
                _build(folder, stamp, produce)
    data = json.loads((folder / "crds.json").read_text())
    return CrdSet(name, group, version, folder, data["crds"], data["source"])


# --- Strimzi -----------------------------------------------------------------------------------------


def _java_major(java: str) -> int | None:
    """The feature release of a `java` binary (17, 21, 25), or None if it does not run."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60, check=False)
    except OSError:
        return None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not found:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def _class_file_java(jar: Path, class_name: str) -> int:
    """The Java release a class in `jar` was compiled for (class file major version - 44)."""
    with zipfile.ZipFile(jar) as archive:
        header = archive.read(class_name.replace(".", "/") + ".class")[:8]
    return int.from_bytes(header[6:8], "big") - 44


def find_java(minimum: int) -> str:
    """A `java` binary of at least release `minimum`: JAVA_HOME, then PATH, then /usr/lib/jvm."""
    candidates: list[str] = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    on_path = shutil.which("java")
    if on_path:
        candidates.append(on_path)
    candidates += [str(p) for p in sorted(Path("/usr/lib/jvm").glob("*/bin/java"))]
    seen: dict[str, int | None] = {}
    for java in candidates:
        real = os.path.realpath(java)
        if real in seen:
            continue
        seen[real] = _java_major(java)
        if (seen[real] or 0) >= minimum:
            return java
    found = ", ".join(f"{path} ({major or 'does not run'})" for path, major in seen.items()) or "none"
    raise CrdError(
        f"Strimzi's CrdGenerator {versions.STRIMZI_VERSION} needs Java {minimum} or newer; found: {found}. "
        f"Set JAVA_HOME to a JDK >= {minimum}."
    )


def _generate_strimzi(out: Path) -> dict[str, Any]:
    classpath = jvm.classpath("strimzi-crds")
    generator_jar = next(p for p in classpath.split(":") if Path(p).name.startswith("crd-generator-"))
    java = find_java(_class_file_java(Path(generator_jar), "io.strimzi.crdgenerator.CrdGenerator"))
    api_version = versions.STRIMZI_API_VERSION.split("/")[1]
    # The same arguments as the upstream build (the exec step in the api module's POM), restricted to the
    # one served version.
    cmd = [
        java,
        "-cp",
        classpath,
        "io.strimzi.crdgenerator.CrdGenerator",
        "--label",
        "app:strimzi",
        "--label",
        "strimzi.io/crd-install:true",
        "--target-kube",
        "1.16+",
        "--crd-api-version",
        "v1",
        "--api-versions",
        api_version,
        "--storage-version",
        api_version,
        "--yaml",
        *(f"{cls}={out / (kind.lower() + '.yaml')}" for kind, cls in sorted(STRIMZI_MODEL_CLASSES.items())),
    ]
    _progress(f"running CrdGenerator with {java} for {len(STRIMZI_MODEL_CLASSES)} kinds")
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise CrdError(
            f"CrdGenerator {versions.STRIMZI_VERSION} failed (exit {result.returncode}):\n"
            f"{result.stdout}{result.stderr}"
        )
    return {
        "artifact": f"io.strimzi:api:{versions.STRIMZI_VERSION}",
        "generator": "CrdGenerator",
        "java": java,
    }


@functools.cache
def strimzi() -> CrdSet:
    """Strimzi's CRDs for the pinned release (generated on first use)."""
    stamp = _stamp(
        versions.STRIMZI_VERSION,
        versions.STRIMZI_API_VERSION,
        *(f"{kind}={cls}" for kind, cls in sorted(STRIMZI_MODEL_CLASSES.items())),
    )
    return _load("strimzi", STRIMZI_GROUP, versions.STRIMZI_VERSION, stamp, _generate_strimzi)


# --- Flink Kubernetes Operator -------------------------------------------------------------------------


def _fetch_jar(version: str, scratch: Path) -> Path:
    """The operator api jar of `version`, through the `flink-operator-api` artifact set's POM.

    The pinned version goes through `headwater.jvm` (and its cache); another one is copied into `scratch`.
    """
    if version == versions.FLINK_OPERATOR_VERSION:
        folder = jvm.fetch("flink-operator-api", quiet=True)
    else:
        folder = scratch
        props = {**jvm.maven_properties(), "flink.operator.version": version}
        cmd = [
            "mvn",
            "-B",
            "-q",
            "-f",
            str(jvm.POMS / "flink-operator-api" / "pom.xml"),
            *(f"-D{k}={v}" for k, v in sorted(props.items())),
            f"-DoutputDirectory={folder}",
            "dependency:copy-dependencies",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise CrdError(
                f"mvn could not fetch flink-kubernetes-operator-api {version}:\n{result.stdout}{result.stderr}"
            )
    jars = sorted(folder.glob("flink-kubernetes-operator-api-*.jar"))
    if not jars:
        raise CrdError(f"no flink-kubernetes-operator-api jar in {folder}")
    return jars[0]


def _extract_flink(out: Path) -> dict[str, Any]:
    pinned = versions.FLINK_OPERATOR_VERSION
    source: dict[str, Any] = {"artifact": f"org.apache.flink:flink-kubernetes-operator-api:{pinned}"}
    scratch = out / ".jar"
    try:
        _progress(f"fetching flink-kubernetes-operator-api {pinned}")
        jar = _fetch_jar(pinned, scratch)
        source["version_used"] = pinned
    except RuntimeError as error:
        stand_in = FLINK_OPERATOR_STAND_IN.get(pinned)
        # Maven words it differently when the miss is remembered from an earlier attempt.
        if stand_in is None or not re.search(r"Could not find artifact|was not found in", str(error)):
            raise
        _progress(
            f"WARNING: flink-kubernetes-operator-api {pinned} is not served by Maven Central here; "
            f"using the CRDs of {stand_in} instead (see FLINK_OPERATOR_CRD_STAND_IN in headwater/versions.py)"
        )
        jar = _fetch_jar(stand_in, scratch)
        source["version_used"] = stand_in
        source["stand_in_for"] = pinned
    # `<plural>.<group>-v1.yml` are the apiextensions.k8s.io/v1 CRDs; the `-v1beta1.yml` twins are the
    # same CRDs in the long-removed apiextensions v1beta1 form.
    with zipfile.ZipFile(jar) as archive:
        for member in archive.namelist():
            if re.fullmatch(r"META-INF/fabric8/[^/]+-v1\.yml", member):
                (out / Path(member).name).write_bytes(archive.read(member))
    shutil.rmtree(scratch)
    return source


@functools.cache
def flink_operator() -> CrdSet:
    """The Flink Kubernetes Operator's CRDs for the pinned release (fetched on first use)."""
    stamp = _stamp(versions.FLINK_OPERATOR_VERSION, json.dumps(FLINK_OPERATOR_STAND_IN, sort_keys=True))
    loaded = _load("flink-operator", FLINK_GROUP, versions.FLINK_OPERATOR_VERSION, stamp, _extract_flink)
    if loaded.source.get("stand_in_for"):
        _widen_flink_versions(loaded)
    return loaded


def _widen_flink_versions(stand_in: CrdSet) -> None:
    """Let a stand-in FlinkDeployment CRD accept the pinned `flinkVersion`.

    An older operator's enum stops before the Flink release the platform pins, which the pinned operator
    accepts; without this every rendered FlinkDeployment would fail on that one field. Nothing else is
    changed: fields that only the pinned release has still count as unknown.
    """
    definition = stand_in.crds.get("FlinkDeployment")
    if definition is None:
        return
    for entry in definition["spec"]["versions"]:
        spec = entry["schema"]["openAPIV3Schema"].get("properties", {}).get("spec", {})
        flink_version = spec.get("properties", {}).get("flinkVersion", {})
        enum = flink_version.get("enum")
        if isinstance(enum, list) and versions.FLINK_VERSION_ENUM not in enum:
            enum.append(versions.FLINK_VERSION_ENUM)
            stand_in.source["widened"] = f"FlinkDeployment spec.flinkVersion += {versions.FLINK_VERSION_ENUM}"


# --- Prometheus Operator ---------------------------------------------------------------------------------


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
    prefix = f"{versions.PROMETHEUS_OPERATOR_MODULE}@v{versions.PROMETHEUS_OPERATOR_VERSION}/{PROMETHEUS_OPERATOR_CRD_DIR}/"
    with zipfile.ZipFile(info["Zip"]) as archive:
        for member in archive.namelist():
            if member.startswith(prefix) and re.fullmatch(r"[^/]+\.yaml", member[len(prefix) :]):
                (out / Path(member).name).write_bytes(archive.read(member))
    return {"module": module, "sum": info.get("Sum"), "path": PROMETHEUS_OPERATOR_CRD_DIR}


@functools.cache
def prometheus_operator() -> CrdSet:
    """The Prometheus Operator's CRDs for the pinned release (fetched on first use)."""
    stamp = _stamp(versions.PROMETHEUS_OPERATOR_VERSION, PROMETHEUS_OPERATOR_CRD_DIR)
    return _load(
        "prometheus-operator",
        MONITORING_GROUP,
        versions.PROMETHEUS_OPERATOR_VERSION,
        stamp,
        _extract_prometheus_operator,
    )


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
    """The cached CRD set of an API group (built on first use)."""
    if group not in _SETS:
        raise UnknownKindError(f"no CRDs are known for API group {group!r}; known groups: {', '.join(_SETS)}")
    return _SETS[group]()


def known_kinds() -> dict[str, list[str]]:
    """Every kind with a CRD, by API group."""
    return {group: sorted(crd_set(group).crds) for group in sorted(_SETS)}


def warm() -> list[CrdSet]:
    """Build every CRD set now (a test session calls this once)."""
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

    A fresh copy each call, so a caller may change it. Raises UnknownKindError for a group or kind the pinned operators do not define, and
    UnservedVersionError when the CRD exists but does not serve that version.
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
        if loaded.source.get("stand_in_for"):
            print(
                f"  (CRDs of {loaded.source['version_used']} standing in for {loaded.source['stand_in_for']})"
            )
