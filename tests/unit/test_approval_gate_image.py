"""The gate's image installs what the tests run: the same uv, Python and locked package versions."""

from __future__ import annotations

import re
from pathlib import Path

from components.approval_gate import RUN_AS_USER

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "approval_gate" / "Dockerfile"


def _pins(lock: Path) -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", lock.read_text(), flags=re.MULTILINE))


def test_the_image_pins_match_the_project() -> None:
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE.read_text(), flags=re.MULTILINE))
    makefile = (ROOT / "Makefile").read_text()
    assert f"UV_VERSION := {args['UV_VERSION']}\n" in makefile
    assert f"--python-version {args['PYTHON_VERSION']} requirements/approval-gate.in" in makefile
    assert f"USER {RUN_AS_USER}:{RUN_AS_USER}" in DOCKERFILE.read_text()


def test_the_image_lock_is_the_platform_environment_s_versions() -> None:
    # The gate runs in the platform environment locally and in the tests: its image must hold the same versions.
    gate = _pins(ROOT / "requirements" / "approval-gate.lock")
    platform = _pins(ROOT / "requirements" / "platform.lock")
    assert {"confluent-kafka", "jsonschema"} <= set(gate)
    assert {name: platform.get(name) for name in gate} == gate
