"""The feature store's image runs what the tests ran: its lock pins the platform lock's versions, its build
arguments and user are the ones the Makefile and the Kubernetes components use."""

from __future__ import annotations

import re
from pathlib import Path

from components.feature_store import APP_USER

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s\\;]+)", re.MULTILINE)


def _pins(path: Path) -> dict[str, str]:
    return {name.lower(): version for name, version in PIN.findall(path.read_text())}


def _arg(dockerfile: str, name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", dockerfile, re.MULTILINE)
    assert match, f"ARG {name} has no default"
    return match.group(1)


def test_the_image_lock_pins_what_the_tests_ran() -> None:
    image = _pins(ROOT / "requirements" / "feature-store.lock")
    platform = _pins(ROOT / "requirements" / "platform.lock")
    assert {
        "feast",
        "redis",
        "confluent-kafka",
        "fastavro",
        "fastapi",
        "uvicorn",
        "prometheus-client",
    } <= set(image)
    assert {name: v for name, v in image.items() if platform.get(name) != v} == {}


def test_the_dockerfile_agrees_with_the_makefile_and_the_components() -> None:
    dockerfile = (ROOT / "feature_store" / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    uv = re.search(r"^UV_VERSION := (\S+)$", makefile, re.MULTILINE)
    assert uv and _arg(dockerfile, "UV_VERSION") == uv.group(1)
    # The interpreter the locks are resolved for (--python-version 3.11).
    assert _arg(dockerfile, "PYTHON_VERSION").startswith("3.11.")
    assert f"USER {APP_USER}:{APP_USER}" in dockerfile.splitlines()
    assert "COPY requirements/feature-store.lock" in dockerfile and "--require-hashes" in dockerfile
