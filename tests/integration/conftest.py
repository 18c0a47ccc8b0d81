"""Integration fixtures: real local Kafka brokers, started by the tests themselves from the `local` spec.

- `provisioned` (session): THE platform of this test session: one broker in a temporary state dir on free
  ports, provisioned from the local spec (topics, credentials, ACLs, client files). Shared by every
  integration test that needs Kafka (registry, Flink jobs...): treat its spec topics as the platform's, and
  leave them as you would leave a shared cluster.
- `local_kafka` (session): the broker under `provisioned`, for tests that only need the broker itself.
- `scratch_provisioned` (session, started on first use): a second, separate broker provisioned the same
  way, for tests that write probe records everywhere, commit offsets in every group or restart the broker
  (the ACL matrix, the lifecycle tests), so the shared platform stays clean.

Both brokers are stopped at the end of the session, on Ctrl-C and on SIGTERM; nothing outlives pytest.

`HEADWATER_TEST_BURN_CPUS=N` (`make test-under-load` sets it to the number of cores) keeps N cores busy
for the whole session with CPU burners that this session starts and stops, so that a race between the
product and the machine's other work shows up here rather than on a busy laptop or CI runner.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from headwater.config import load_platform
from headwater.local import (
    KafkaPorts,
    LocalKafka,
    ProvisionReport,
    bootstrap_servers,
    client_config,
    install_signal_handlers,
    properties_file,
    provision,
)
from headwater.local.process import stderr_progress
from headwater.spec import Platform

HERE = Path(__file__).resolve().parent
_handlers_installed = False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def _sigint_as_from_a_terminal() -> Iterator[None]:
    """Children that tests interrupt with SIGINT get it as from a terminal's Ctrl-C.

    A shell without job control starts a background job (`make test &` in a script, a CI step's
    background command) with SIGINT ignored, and an ignored signal stays ignored in every program started
    from there: `headwater local up` then rightly leaves it so (nohup semantics) and Ctrl-C tests see a
    run that never stops. A signal this process *handles* is reset to its default at exec, so handling
    SIGINT here gives every child the default a person's terminal gives it.
    """
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


# ---- CPU burners: the suite under load -------------------------------------------------------------------

BURN_ENV = "HEADWATER_TEST_BURN_CPUS"
BURN_LIMIT_S = 3 * 3600  # a burner ends by itself after this long, or as soon as this session is gone
_BURNER = """
import os, sys, time
parent, end = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
while os.getppid() == parent and time.monotonic() < end:
    sum(range(100_000))
"""
_burn_report: list[str] = []


def _burners_wanted() -> int:
    raw = os.environ.get(BURN_ENV, "").strip()
    if raw in ("", "0"):
        return 0
    if raw == "all":
        return os.cpu_count() or 1
    if not raw.isdigit() or not 0 < int(raw) <= 64:
        raise pytest.UsageError(f"{BURN_ENV} = {raw!r} is not valid; allowed: a number of cores 1-64, or all")
    return int(raw)


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="session", autouse=True)
def _cpu_burners() -> Iterator[None]:
    """With HEADWATER_TEST_BURN_CPUS=N: N processes each spinning on one core for the whole session."""
    count = _burners_wanted()
    if not count:
        yield
        return
    burners = [
        subprocess.Popen(
            [sys.executable, "-c", _BURNER, str(os.getpid()), str(BURN_LIMIT_S)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]
    began = time.monotonic()
    try:
        yield
    finally:
        wall = time.monotonic() - began
        used = [_cpu_seconds(b.pid) for b in burners]
        for burner in burners:
            burner.kill()
            burner.wait()
        alive = sum(b.returncode is None for b in burners)
        _burn_report.append(
            f"{count} CPU burner(s) ran {wall:.0f}s alongside the suite and used {sum(used):.0f} CPU seconds "
            f"({sum(used) / max(wall, 1e-9):.2f} cores on average; {os.cpu_count()} cores, load average "
            f"{os.getloadavg()[0]:.1f} at the end); {alive} left running"
        )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in _burn_report:
        terminalreporter.write_line(f"[under load] {line}")


@dataclass(frozen=True)
class Provisioned:
    """A running broker provisioned from a spec, and how each principal connects to it."""

    kafka: LocalKafka
    report: ProvisionReport  # what the first provisioning created

    @property
    def platform(self) -> Platform:
        return self.kafka.platform

    def config(self, principal: str, **overrides: Any) -> dict[str, Any]:
        """librdkafka settings for `principal` (plus overrides such as group.id)."""
        return {**client_config(self.kafka, principal), **overrides}

    def admin_config(self, **overrides: Any) -> dict[str, Any]:
        """librdkafka settings for the platform super user."""
        return {**self.kafka.admin_config(), **overrides}

    def bootstrap(self, principal: str) -> str:
        return bootstrap_servers(self.kafka, principal)

    def properties_file(self, principal: str, *, flink: bool = False) -> Path:
        """The Java client properties file of `principal` (`flink=True`: for flink-sql-connector-kafka)."""
        return properties_file(self.kafka, principal, flink=flink)


def _start(platform: Platform, state_dir: Path, name: str) -> LocalKafka:
    global _handlers_installed
    if not _handlers_installed:
        install_signal_handlers()  # SIGTERM to pytest must not orphan a broker
        _handlers_installed = True
    kafka = LocalKafka(platform, state_dir, KafkaPorts.free(), progress=stderr_progress(name), heap="512m")
    return kafka.start()


@pytest.fixture(scope="session")
def local_platform() -> Platform:
    """The `local` stack's platform spec, as `make local` runs it."""
    return load_platform("local")


@pytest.fixture(scope="session")
def local_kafka(local_platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    kafka = _start(local_platform, tmp_path_factory.mktemp("headwater-local"), "kafka")
    try:
        yield kafka
    finally:
        kafka.stop()


@pytest.fixture(scope="session")
def provisioned(local_kafka: LocalKafka) -> Provisioned:
    return Provisioned(local_kafka, provision(local_kafka, progress=stderr_progress("provision")))


@pytest.fixture(scope="session")
def scratch_provisioned(
    local_platform: Platform, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Provisioned]:
    kafka = _start(local_platform, tmp_path_factory.mktemp("headwater-scratch"), "scratch-kafka")
    try:
        yield Provisioned(kafka, provision(kafka, progress=stderr_progress("scratch-provision")))
    finally:
        kafka.stop()


# ---- schema registry and Flink jobs on the session's broker ------------------------------------------------


@pytest.fixture(scope="session")
def contracts_registry(local_platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A local Apicurio Registry (in-memory storage, a free port) holding every contract of the local stack,
    registered as `headwater contracts register` does (compatibility level, then the schema)."""
    from headwater.contracts import access, load_contracts
    from headwater.local.registry import LocalRegistry

    registry = LocalRegistry(
        tmp_path_factory.mktemp("registry"),
        port=0,
        progress=stderr_progress("registry"),
        users=access.registry_users(local_platform),
    )
    registry.start()
    try:
        client = registry.client()
        for contract in load_contracts(local_platform):
            client.set_compatibility(contract.subject, contract.compatibility)
            client.register(contract.subject, contract.text, contract.schema_type)
        yield registry
    finally:
        registry.stop()


@pytest.fixture(scope="session")
def agent_events_job(provisioned: Provisioned, contracts_registry: Any) -> Iterator[Any]:
    """The agent-events app as a real local Flink job (headwater.local.flink.LocalFlinkJob) on the session's
    broker and registry, running once its first checkpoint has completed; shared by the data-plane tests.

    It never restarts by itself (restart_attempts=0): a task failure ends its process, which the tests
    notice. A test that kills it starts it again (from its latest retained checkpoint) before it ends.
    """
    from headwater.local.flink import LocalFlinkJob
    from headwater.local.runtime import FLINK_START_TIMEOUT

    job = LocalFlinkJob(
        provisioned.platform,
        "agent-events",
        provisioned.kafka,
        contracts_registry.url,
        provisioned.kafka.state_dir,
        progress=stderr_progress("flink:agent-events"),
        restart_attempts=0,
        registry_user_info=contracts_registry.user_info("agent-events"),
    )
    job.start(restore=True)
    try:
        # The same limit `local up` gives a job's start: what the product accepts as healthy, the tests do.
        job.wait_running(FLINK_START_TIMEOUT)
        yield job
    finally:
        job.stop()


@pytest.fixture
def cleanup() -> Iterator[Any]:
    """A contextlib.ExitStack unwound when the test ends, pass or fail: close clients with
    `cleanup.callback(consumer.close)` so none keeps polling a broker that the session stops."""
    import contextlib

    with contextlib.ExitStack() as stack:
        yield stack
