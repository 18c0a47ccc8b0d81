"""The app images pin what the rest of the project pins: same Flink, connector, jar checksum, Python, uv."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from headwater import jvm, versions

ROOT = Path(__file__).resolve().parents[2]
APPS = ("agent_events", "feature_aggregator")


DOCKERFILE = ROOT / "flink_apps" / "Dockerfile"  # one for every app, built with --build-arg APP=<app>


def build_args(app: str) -> dict[str, str]:
    text = DOCKERFILE.read_text()
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.MULTILINE))


@pytest.fixture(scope="module")
def jar_sha256() -> str:
    (jar,) = jvm.fetch("flink-connectors", quiet=True).glob("flink-sql-connector-kafka-*.jar")
    assert jar.name == f"flink-sql-connector-kafka-{versions.FLINK_KAFKA_CONNECTOR_VERSION}.jar"
    return hashlib.sha256(jar.read_bytes()).hexdigest()


@pytest.mark.parametrize("app", APPS)
def test_image_pins_match_the_project(app: str, jar_sha256: str) -> None:
    args = build_args(app)
    assert args["FLINK_VERSION"] == versions.FLINK_VERSION
    assert args["FLINK_KAFKA_CONNECTOR_VERSION"] == versions.FLINK_KAFKA_CONNECTOR_VERSION
    assert args["FLINK_KAFKA_CONNECTOR_SHA256"] == jar_sha256
    assert args["FLINK_FUNCTIONS_VERSION"] == versions.FLINK_FUNCTIONS_VERSION
    makefile = (ROOT / "Makefile").read_text()
    assert f"UV_VERSION := {args['UV_VERSION']}\n" in makefile
    assert f"--python-version {args['PYTHON_VERSION']} requirements/flink.in" in makefile


@pytest.mark.parametrize("app", APPS)
def test_image_runs_the_app_as_the_flink_user_from_the_lock(app: str) -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM flink:\$\{FLINK_VERSION\}$", text, flags=re.MULTILINE)
    assert "--require-hashes" in text and "requirements/flink.lock" in text
    assert '-m "flink_apps.${APP}.main" --help' in text and (ROOT / "flink_apps" / app / "main.py").is_file()
    assert "ENV HEADWATER_APP=${APP}" in text
    # The native functions come from this repository's Maven project, tested in the build.
    assert "COPY flink/functions/ /build/flink/functions/" in text and " package;" in text
    assert "COPY --from=functions --chmod=0644 /flink-functions.jar /opt/flink/lib/" in text
    users = re.findall(r"^USER (\S+)$", text, flags=re.MULTILINE)
    assert users[-1] == "flink"


def test_lock_pins_the_same_pyflink() -> None:
    lock = (ROOT / "requirements" / "flink.lock").read_text()
    assert f"\napache-flink=={versions.FLINK_VERSION} " in lock
    assert f"\napache-flink-libraries=={versions.FLINK_VERSION} " in lock
