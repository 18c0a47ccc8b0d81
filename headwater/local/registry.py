"""Apicurio Registry on this machine, from its Maven Central distribution (no container).

`io.apicurio:apicurio-registry-app:<APICURIO_REGISTRY_VERSION>:tar.gz:all` is a Quarkus fast-jar
(`quarkus-run.jar` + `lib/`), fetched with the `jvm/apicurio` artifact set and unpacked once under
`.cache/apicurio/<version>/`. It needs Java 21 or newer (its classes are compiled for release 21), looked
up like the other JVM tools (JAVA_HOME, PATH, /usr/lib/jvm).

Storage is in memory (H2) by default: enough for tests and a throwaway local stack. Given a
`KafkaSqlStorage`, the registry keeps its state in Kafka as it does on Kubernetes (journal, snapshots and
events topics; the `schema-registry` principal's SASL_SSL or mTLS settings). Secrets are handed over in
environment variables that the properties file references (`${...}`), never written into it.

Nobody uses it anonymously (`headwater.contracts.access`): HTTP basic authentication of its users, each
with one role (the platform's publisher writes, the catalog's principals read), as on Kubernetes. Each
user's password is made at the first start and kept in `<state dir>/credentials/<user>.password` (mode
0600); `client(user)` and `user_info(user)` hand them to the platform's own clients.

The process runs under `headwater.local.process.Supervised`: its own process group, a log file, stopped
with SIGTERM then SIGKILL, and stopped at interpreter exit, so nothing outlives the program.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import sys
import tarfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from headwater import jvm, versions
from headwater.contracts import access, kafkasql
from headwater.contracts.registry import RegistryClient
from headwater.kafka_config import format_properties
from headwater.local.ports import HOST, free_port, port_free
from headwater.local.process import ProcessError, Progress, Supervised, stderr_progress
from headwater.spec import RegistryStorage

ROOT = Path(__file__).resolve().parent.parent.parent
DIST_CACHE = Path(os.environ.get("HEADWATER_CACHE", ROOT / ".cache")) / "apicurio"
DEFAULT_STATE_DIR = ROOT / ".local" / "registry"
DEFAULT_PORT = 8181  # not 8081: that is Flink's REST port
PORT_ENV = "HEADWATER_REGISTRY_PORT"
MIN_JAVA = 21
START_TIMEOUT = 180.0
# Keys of Kafka client settings that carry secrets: passed in the environment, referenced from the file.
_SECRET_KEYS = ("sasl.jaas.config", "ssl.keystore.password", "ssl.key.password", "ssl.truststore.password")


# Apicurio's log line when KafkaSQL storage has read its snapshot and journal and serves what they hold.
KAFKASQL_BOOTSTRAPPED = b"KafkaSQL storage bootstrapped in"


class RegistryStartError(RuntimeError):
    """The local registry could not be installed or started."""


@dataclass(frozen=True)
class KafkaSqlStorage:
    """Where and as whom a KafkaSQL registry keeps its state. `client` are Java Kafka client settings
    (security.protocol, sasl.mechanism, sasl.jaas.config, ssl.truststore.*, ssl.keystore.*)."""

    bootstrap: str
    topics: RegistryStorage
    client: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def for_local_kafka(cls, kafka: Any) -> KafkaSqlStorage:
        """The catalog's registry storage (its principal, topics and group prefix) on a provisioned
        `headwater.local.kafka.LocalKafka`."""
        from headwater.local.provision import bootstrap_servers, java_client_properties

        store = kafkasql.storage(kafka.platform)
        principal = store.principal.name
        return cls(
            bootstrap=bootstrap_servers(kafka, principal),
            topics=store.topics,
            client=java_client_properties(kafka, principal),
        )

    def split(self) -> tuple[dict[str, str], dict[str, str]]:
        """(properties for the file, environment variables holding the secrets they reference)."""
        public: dict[str, str] = {}
        env: dict[str, str] = {}
        for key, value in self.client.items():
            if key in _SECRET_KEYS:
                var = "HEADWATER_KAFKA_" + key.upper().replace(".", "_")
                env[var] = value
                public[key] = "${" + var + "}"
            else:
                public[key] = value
        props = kafkasql.storage_properties(self.bootstrap, public, self.topics)
        return props, env


def default_port() -> int:
    raw = os.environ.get(PORT_ENV)
    if raw is None:
        return DEFAULT_PORT
    if not raw.isdigit() or not 0 <= int(raw) < 65536:
        raise ValueError(
            f"${PORT_ENV} = {raw!r} is not valid; allowed: a TCP port 1-65535, or 0 for any free port"
        )
    return int(raw)


@contextlib.contextmanager
def _download_progress(progress: Progress, folder: Path, every: float = 3.0) -> Iterator[None]:
    """Report how much of the distribution Maven has downloaded so far (it prints nothing in batch mode)."""
    stop = threading.Event()

    def watch() -> None:
        last = -1
        while not stop.wait(every):
            size = sum(p.stat().st_size for p in folder.glob("*") if p.is_file()) if folder.is_dir() else 0
            if size != last:
                progress(
                    f"downloading Apicurio Registry {versions.APICURIO_REGISTRY_VERSION}: {size / 1e6:.0f} MB"
                )
                last = size

    thread = threading.Thread(target=watch, name="apicurio-download-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def install(progress: Progress | None = None) -> Path:
    """The unpacked distribution of the pinned version (fetched and unpacked on first use); returns its folder."""
    report = progress or stderr_progress("registry")
    version = versions.APICURIO_REGISTRY_VERSION
    home = DIST_CACHE / version
    stamp = home / ".unpacked"
    if stamp.is_file() and (home / "quarkus-run.jar").is_file():
        return home
    m2 = Path.home() / ".m2" / "repository" / "io" / "apicurio" / "apicurio-registry-app" / version
    report(f"fetching Apicurio Registry {version} (about 160 MB) from Maven Central")
    with _download_progress(report, m2):
        try:
            folder = jvm.fetch("apicurio", quiet=True)
        except RuntimeError as exc:
            raise RegistryStartError(f"could not fetch Apicurio Registry {version}: {exc}") from exc
    archives = sorted(folder.glob(f"apicurio-registry-app-{version}-all.tar.gz"))
    if not archives:
        raise RegistryStartError(
            f"the apicurio artifact set has no apicurio-registry-app-{version}-all.tar.gz in {folder}"
        )
    report(f"unpacking {archives[0].name}")
    tmp = home.with_name(f".{version}.unpacking")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(archives[0]) as tar:
        tar.extractall(tmp, filter="data")
    if not (tmp / "quarkus-run.jar").is_file():
        raise RegistryStartError(f"{archives[0]} holds no quarkus-run.jar: not the Quarkus distribution")
    shutil.rmtree(home, ignore_errors=True)
    tmp.rename(home)
    stamp.write_text(version)
    return home


def find_java() -> str:
    try:
        return jvm.find_java(MIN_JAVA)
    except Exception as exc:
        raise RegistryStartError(
            f"Apicurio Registry {versions.APICURIO_REGISTRY_VERSION} needs Java {MIN_JAVA} or newer: {exc}"
        ) from None


class LocalRegistry:
    """One local Apicurio Registry process: `start()`, `url`, `client()`, `stop()`; or use it with `with`.

    `port` 0 picks a free port. `kafka` switches from in-memory storage to KafkaSQL storage. `users` are
    who may use it (default: the platform's publisher only; a platform's are `access.registry_users`).
    """

    def __init__(
        self,
        state_dir: Path | None = None,
        port: int | None = None,
        *,
        kafka: KafkaSqlStorage | None = None,
        users: Sequence[access.RegistryUser] | None = None,
        progress: Progress | None = None,
        heap: str = "512m",
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.state_dir = (state_dir or DEFAULT_STATE_DIR).resolve()
        wanted = default_port() if port is None else port
        self.port = free_port() if wanted == 0 else wanted
        self.kafka = kafka
        self.progress = progress or stderr_progress("registry")
        self.heap = heap
        self.start_timeout = start_timeout
        self.users = tuple(sorted(set(users or ()) | {access.publisher()}))
        self.credentials_dir = self.state_dir / "credentials"
        self.log_file = self.state_dir / "registry.log"
        self.properties_file = self.state_dir / "registry.properties"
        self.started_in: float | None = None
        self._process: Supervised | None = None

    @property
    def url(self) -> str:
        """The registry's root URL (the Confluent-compatible API is under /apis/ccompat/v7)."""
        return f"http://{HOST}:{self.port}"

    @property
    def ccompat_url(self) -> str:
        return f"{self.url}/apis/ccompat/v7"

    def password(self, user: str = access.PUBLISHER) -> str:
        """The user's password (made and kept under the state dir at first use)."""
        if user not in {u.name for u in self.users}:
            known = ", ".join(u.name for u in self.users)
            raise KeyError(f"{user!r} is not a user of this registry; users: {known}")
        from headwater.local.certs import write_private

        path = self.credentials_dir / f"{user}.password"
        if not path.is_file():
            self.credentials_dir.mkdir(parents=True, exist_ok=True)
            self.credentials_dir.chmod(0o700)
            write_private(path, secrets.token_urlsafe(24).encode())
        return path.read_text().strip()

    def user_info(self, user: str) -> str:
        """`user:password`, as clients' `basic.auth.user.info` setting takes it."""
        return f"{user}:{self.password(user)}"

    def client(self, user: str | None = access.PUBLISHER) -> RegistryClient:
        """A client authenticated as `user` (the publisher by default; None: anonymous)."""
        return RegistryClient(self.url, auth=(user, self.password(user)) if user else None)

    def running(self) -> bool:
        return self._process is not None and self._process.running()

    def properties(self) -> tuple[dict[str, str], dict[str, str]]:
        """(the properties file's settings, the environment's secrets) for the chosen storage."""
        base = {
            "quarkus.http.host": HOST,
            "quarkus.http.port": str(self.port),
            # The management interface (health, metrics) is on in the build whatever is set at run time, and
            # would bind 0.0.0.0:9000: keep it on loopback, on a free port, so registries can run side by side.
            "quarkus.management.host": HOST,
            "quarkus.management.port": str(free_port()),
            "quarkus.http.access-log.enabled": "false",
            "apicurio.datasource.jdbc.initial-size": "2",
            "apicurio.datasource.jdbc.min-size": "2",
            "apicurio.storage.snapshot.location": str(self.state_dir / "snapshots"),
            "apicurio.import.work-dir": str(self.state_dir / "import"),
        }
        # Authentication and role-based authorization, as on Kubernetes; passwords only in the environment.
        base |= access.realm_properties(self.users, lambda u: "${" + u.password_env + "}")
        user_env = {u.password_env: self.password(u.name) for u in self.users}
        if self.kafka is None:
            return {**base, "apicurio.storage.kind": "sql", "apicurio.storage.sql.kind": "h2"}, user_env
        props, env = self.kafka.split()
        # Start-up reads the snapshots topic and verifies the journal with polls of this length (5 s by
        # default, several in a row); on one machine the answer comes in milliseconds.
        props["apicurio.kafkasql.consumer.poll.timeout"] = "1000"
        return {**base, **props}, {**env, **user_env}

    def command(self, java: str, home: Path) -> list[str]:
        digest = hashlib.sha256(f"{java}|{home}".encode()).hexdigest()[:12]
        archive = DIST_CACHE / f"cds-{versions.APICURIO_REGISTRY_VERSION}-{digest}.jsa"
        return [
            java,
            f"-Xmx{self.heap}",
            # A short-lived local service: start fast rather than peak throughput.
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseSerialGC",
            # Class data sharing: the first start writes the archive, later starts load it (about 2x faster).
            "-XX:+AutoCreateSharedArchive",
            f"-XX:SharedArchiveFile={archive}",
            f"-Dquarkus.config.locations={self.properties_file}",
            "-jar",
            str(home / "quarkus-run.jar"),
        ]

    def start(self) -> LocalRegistry:
        if self.running():
            return self
        if not port_free(self.port):
            raise RegistryStartError(
                f"port {self.port} on {HOST} is in use: stop what listens there, or choose another port "
                f"(${PORT_ENV}, or port=0 for any free port)"
            )
        home = install(self.progress)
        java = find_java()
        from headwater.local.certs import write_private

        props, secrets = self.properties()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        write_private(self.properties_file, format_properties(dict(sorted(props.items()))).encode())
        storage = "in-memory storage" if self.kafka is None else f"KafkaSQL storage on {self.kafka.bootstrap}"
        self.progress(
            f"starting Apicurio Registry {versions.APICURIO_REGISTRY_VERSION} on {self.url} ({storage})"
        )
        env = {**os.environ, **secrets}
        self._process = Supervised(
            "registry",
            self.command(java, home),
            self.log_file,
            env=env,
            cwd=self.state_dir,
            stop_timeout=20.0,
            progress=self.progress,
        )
        started = time.monotonic()
        log_start = self.log_file.stat().st_size if self.log_file.is_file() else 0
        self._process.start()
        client = self.client()
        ready = client.ready
        what = f"the registry API on {self.ccompat_url}"
        if self.kafka is not None:
            # The API answers before KafkaSQL storage has replayed its journal, with an empty registry until
            # then; the storage logs when it is done (the line upstream's own tests wait for).
            ready = lambda: client.ready() and self._bootstrapped(log_start)  # noqa: E731
            what += " and its KafkaSQL storage bootstrapped from the journal"
        try:
            self._process.wait_ready(ready, timeout=self.start_timeout, what=what)
        except ProcessError as exc:
            self._process = None
            raise RegistryStartError(str(exc)) from None
        self.started_in = time.monotonic() - started
        self.progress(f"registry ready on {self.url} after {self.started_in:.1f}s")
        return self

    def _bootstrapped(self, log_start: int) -> bool:
        """True once this start's log (what follows `log_start`) says the KafkaSQL storage is bootstrapped."""
        with self.log_file.open("rb") as log:
            log.seek(log_start)
            return KAFKASQL_BOOTSTRAPPED in log.read()

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    def stop(self, grace: float | None = None) -> None:
        """Stop the registry (SIGTERM, then SIGKILL after `grace` seconds, 20 by default)."""
        if self._process is not None:
            self._process.stop(grace)
            self._process = None

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


if __name__ == "__main__":
    # `python -m headwater.local.registry [port]`: an in-memory registry until Ctrl-C.
    from headwater.local.process import install_signal_handlers

    install_signal_handlers()
    registry = LocalRegistry(port=int(sys.argv[1]) if len(sys.argv) > 1 else None)
    with registry:
        print(registry.ccompat_url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while registry.running():
                time.sleep(1)
