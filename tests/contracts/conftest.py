"""Contract tests run against a real Apicurio Registry that this session starts (in-memory storage).

`registry` (session): one local registry on a free port, its users those of the local stack, started once and stopped at the end of the
session (and on Ctrl-C / SIGTERM: nothing outlives pytest). Tests that change subjects use subject names
of their own (`fresh_subject`), so they do not depend on each other's order.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator

import pytest

from headwater.config import load_platform
from headwater.contracts import access
from headwater.contracts.registry import RegistryClient
from headwater.local.process import install_signal_handlers, stderr_progress
from headwater.local.registry import LocalRegistry


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    install_signal_handlers()
    local = LocalRegistry(
        tmp_path_factory.mktemp("registry"),
        port=0,
        progress=stderr_progress("registry"),
        users=access.registry_users(load_platform("local")),
    )
    local.start()
    print(f"\n[registry] in-memory Apicurio Registry ready in {local.started_in:.1f}s", file=sys.stderr)
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def client(registry: LocalRegistry) -> RegistryClient:
    """Authenticated as the platform's publisher (it may write)."""
    return registry.client()


@pytest.fixture
def fresh_subject() -> str:
    return f"test.{uuid.uuid4().hex[:10]}.v1-value"
