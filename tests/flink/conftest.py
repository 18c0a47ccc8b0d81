"""The Flink suite runs in .venv-flink (apache-flink, fastavro, jsonschema), never in the platform venv."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

# The suite imports `flink_apps` from the repository and its helpers from this folder.
ROOT = Path(__file__).resolve().parents[2]
for path in (ROOT, Path(__file__).resolve().parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from registry_stub import FakeRegistry  # noqa: E402  (needs the path above)


def pytest_configure(config: pytest.Config) -> None:
    # Import-time deprecation notices of third-party code: PyFlink marks its own deprecated API at import,
    # and apache-beam imports httplib2, which uses deprecated pyparsing names.
    for module in ("pyflink", "httplib2"):
        config.addinivalue_line("filterwarnings", f"ignore::DeprecationWarning:{module}.*")
    # Locally the Python workers run inside this process; when a job ends or is cancelled, Beam's gRPC
    # reader thread sees its stream hang up.
    config.addinivalue_line(
        "filterwarnings",
        "ignore:Exception in thread read_grpc_client_inputs:pytest.PytestUnhandledThreadExceptionWarning",
    )


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    """A running registry stand-in (see registry_stub)."""
    fake = FakeRegistry()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
