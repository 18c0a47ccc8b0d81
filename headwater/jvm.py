"""JVM artifacts from Maven Central, fetched with `mvn` into a project-local cache.

Each artifact set is a small POM under `jvm/<name>/pom.xml` whose versions are Maven properties; the values
come from `headwater.versions`, so a version is written once. `fetch("kafka")` copies the set's jars
(with their transitive dependencies) to `.cache/jvm/kafka/` and returns that folder. A stamp keyed on the
POM and the versions makes repeated calls free.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from headwater import versions

ROOT = Path(__file__).resolve().parent.parent
POMS = ROOT / "jvm"
# Our own JVM code: Maven projects built (tests included) into the cache, by name.
PROJECTS = {
    "contract-check": ROOT / "connect" / "contract-check",  # the Connect transform checking outbox payloads
    "flink-functions": ROOT / "flink" / "functions",  # native functions of the Flink apps' hot paths
}
CACHE = Path(os.environ.get("HEADWATER_CACHE", ROOT / ".cache")) / "jvm"


def maven_properties() -> dict[str, str]:
    """Every pinned version as a Maven property (`KAFKA_VERSION` -> `-Dkafka.version=...`)."""
    return {
        name.lower().replace("_", "."): str(value)
        for name, value in vars(versions).items()
        if name.isupper() and isinstance(value, str)
    }


def _stamp(pom: Path, props: dict[str, str]) -> str:
    digest = hashlib.sha256(pom.read_bytes())
    for key in sorted(props):
        digest.update(f"{key}={props[key]}\n".encode())
    return digest.hexdigest()


def fetch(name: str, *, quiet: bool = False) -> Path:
    """Resolve the artifact set `name` and return the folder holding its jars (and other files)."""
    pom = POMS / name / "pom.xml"
    if not pom.is_file():
        known = sorted(p.name for p in POMS.iterdir() if (p / "pom.xml").is_file())
        raise ValueError(f"unknown JVM artifact set {name!r}; known sets: {', '.join(known)}")
    props = maven_properties()
    out = CACHE / name
    stamp_file = out / ".stamp"
    stamp = _stamp(pom, props)
    if stamp_file.is_file() and stamp_file.read_text() == stamp:
        return out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if not quiet:
        print(f"[jvm] fetching {name} from Maven Central into {out}", file=sys.stderr, flush=True)
    _mvn(
        pom,
        props,
        [f"-DoutputDirectory={out}", "dependency:copy-dependencies"],
        quiet,
        f"fetch the JVM artifact set {name!r}",
    )
    stamp_file.write_text(stamp)
    return out


def _mvn(pom: Path, props: dict[str, str], args: list[str], quiet: bool, what: str) -> None:
    """Run Maven on `pom` with the pinned versions as properties; a failure names `what` (and, quiet, Maven's
    output)."""
    cmd = [
        "mvn",
        "-B",
        "-q" if quiet else "-ntp",
        "-f",
        str(pom),
        *(f"-D{k}={v}" for k, v in sorted(props.items())),
        *args,
    ]
    result = subprocess.run(cmd, capture_output=quiet, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stdout or "") + (result.stderr or "") if quiet else ""
        raise RuntimeError(f"mvn could not {what} (exit {result.returncode})\n{detail}")


def _project_stamp(project: Path, props: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in project.rglob("*") if p.is_file() and "target" not in p.parts):
        digest.update(f"{path.relative_to(project)}\n".encode())
        digest.update(path.read_bytes())
    for key in sorted(props):
        digest.update(f"{key}={props[key]}\n".encode())
    return digest.hexdigest()


def build(name: str, *, quiet: bool = False) -> Path:
    """Build our Maven project `name` (see PROJECTS; its unit tests run too) and return its jar in the cache.

    The project's version is `versions.<NAME>_VERSION` (`-Drevision`), the other versions as in `fetch`; the
    build goes to `.cache/jvm/<name>/`, and a stamp keyed on the sources and versions makes repeated calls free.
    Maven keeps what it downloads in its local repository, so a rebuild needs no network.
    """
    project = PROJECTS.get(name)
    if project is None:
        raise ValueError(f"unknown JVM project {name!r}; known projects: {', '.join(sorted(PROJECTS))}")
    revision = getattr(versions, name.upper().replace("-", "_") + "_VERSION", None)
    if not isinstance(revision, str):
        raise ValueError(f"headwater/versions.py pins no {name.upper().replace('-', '_')}_VERSION")
    props = maven_properties() | {"revision": revision}
    out = CACHE / name
    jar = out / f"{name}-{revision}.jar"
    stamp_file = out / ".stamp"
    stamp = _project_stamp(project, props)
    if jar.is_file() and stamp_file.is_file() and stamp_file.read_text() == stamp:
        return jar
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if not quiet:
        print(f"[jvm] building {project} into {out}", file=sys.stderr, flush=True)
    _mvn(
        project / "pom.xml",
        props,
        [f"-Dheadwater.build.directory={out / 'build'}", "package"],
        quiet,
        f"build the JVM project {name!r}",
    )
    shutil.copyfile(out / "build" / jar.name, jar)
    stamp_file.write_text(stamp)
    return jar


def classpath(name: str) -> str:
    """The `:`-joined classpath of every jar in the artifact set `name`."""
    return ":".join(str(p) for p in sorted(fetch(name).glob("*.jar")))


class JavaNotFoundError(RuntimeError):
    """No `java` of the release a tool needs."""


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
    raise JavaNotFoundError(
        f"needs Java {minimum} or newer; found: {found}. Set JAVA_HOME to a JDK >= {minimum}."
    )


if __name__ == "__main__":
    # `python -m headwater.jvm kafka connect` fetches sets; `python -m headwater.jvm build contract-check` builds.
    if sys.argv[1:2] == ["build"]:
        for arg in sys.argv[2:]:
            print(build(arg))
    else:
        for arg in sys.argv[1:]:
            print(fetch(arg))
