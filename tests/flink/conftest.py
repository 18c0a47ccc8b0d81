"""The Flink suite runs in .venv-flink (apache-flink, fastavro, jsonschema), never in the platform venv."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

# The suite imports `flink_apps` from the repository and its helpers from this folder.
ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
for path in (ROOT, HERE):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from registry_stub import FakeRegistry  # noqa: E402  (needs the path above)

from headwater import flink_conf  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def python_workers_as_on_a_cluster() -> Iterator[None]:
    """Python operators run in worker processes the MiniCluster starts (never inside this process), in the
    execution mode the apps use everywhere; the workers import the apps and these helpers from PYTHONPATH."""
    saved = {k: os.environ.get(k) for k in (*flink_conf.PYTHON_WORKER_ENV, "PYTHONPATH")}
    os.environ.update(flink_conf.PYTHON_WORKER_ENV)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE), *filter(None, [saved["PYTHONPATH"]])])
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def pytest_configure(config: pytest.Config) -> None:
    # Import-time deprecation notices of third-party code: PyFlink marks its own deprecated API at import,
    # and apache-beam imports httplib2, which uses deprecated pyparsing names.
    for module in ("pyflink", "httplib2"):
        config.addinivalue_line("filterwarnings", f"ignore::DeprecationWarning:{module}.*")


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    """A running registry stand-in (see registry_stub)."""
    fake = FakeRegistry()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
