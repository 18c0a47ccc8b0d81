"""A real PostgreSQL server on this machine for the outbox sources: Debian's server as a plain process.

One cluster in `<state>/postgres/data`, listening on 127.0.0.1 only (no Unix socket) on a free port, with
`wal_level=logical` so Debezium can stream committed changes through a replication slot. Every login uses
SCRAM over TCP: the `postgres` superuser (for setup) and, per source, a `<database>_cdc` role that may only
replicate and read its outbox table. Passwords live owner-only under `<state>/secrets/`.

PostgreSQL refuses to run as root. When this runs as root (a CI container), the server runs as the dedicated
unprivileged system user `headwater-postgres` (`make postgres` creates it), which owns only the data folder.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

import psycopg

from headwater.cdc import outbox_table_ddl
from headwater.local.certs import write_private
from headwater.local.ports import HOST, free_port
from headwater.local.process import Progress, Supervised, stderr_progress
from headwater.spec import Source

SYSTEM_USER = "headwater-postgres"
SUPERUSER = "postgres"
START_TIMEOUT = 60.0


class LocalPostgresError(RuntimeError):
    """The local PostgreSQL cannot be set up or started; the message says what to change."""


def server_bin_dir() -> Path:
    """Debian's server binaries (`/usr/lib/postgresql/<major>/bin`), the newest installed."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name)
    )
    if not found:
        raise LocalPostgresError(
            "no PostgreSQL server found under /usr/lib/postgresql: run `make postgres` "
            "(apt-get install postgresql)"
        )
    return found[-1].parent


@dataclass(frozen=True)
class RunAs:
    """Who the server runs as: the current user, or (as root) the unprivileged system user."""

    uid: int
    gid: int
    name: str

    @classmethod
    def for_server(cls) -> RunAs:
        if os.geteuid() != 0:
            return cls(os.geteuid(), os.getegid(), pwd.getpwuid(os.geteuid()).pw_name)
        try:
            entry = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise LocalPostgresError(
                f"running as root, and PostgreSQL refuses to run as root; allowed: the unprivileged system "
                f"user {SYSTEM_USER!r}, which `make postgres` creates"
            ) from None
        return cls(entry.pw_uid, entry.pw_gid, entry.pw_name)

    @property
    def switches(self) -> bool:
        return self.uid != os.geteuid()

    def wrap(self, argv: list[str]) -> list[str]:
        if not self.switches:
            return argv
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise LocalPostgresError(
                "running as root needs setpriv (util-linux) to start PostgreSQL as a user"
            )
        return [setpriv, f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", "--", *argv]


def _reachable_by(path: Path, run_as: RunAs) -> str | None:
    """Why `run_as` cannot reach `path` (a folder above it it may not enter), or None."""
    if not run_as.switches:
        return None
    for parent in reversed(path.resolve().parents):
        st = parent.stat()
        if st.st_uid != run_as.uid and not st.st_mode & 0o001:
            return f"{parent} (mode {st.st_mode & 0o777:04o}) cannot be entered by {run_as.name}"
    return None


class LocalPostgres:
    """Debian's PostgreSQL server in a state dir, on 127.0.0.1 and a free port, with wal_level=logical."""

    def __init__(
        self,
        state_dir: Path,
        *,
        port: int | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.root = state_dir / "postgres"
        self.data_dir = self.root / "data"
        self.secrets_dir = state_dir / "secrets"
        self.log_file = state_dir / "logs" / "postgres.log"
        self.port = port or free_port()
        self.progress = progress or stderr_progress("postgres")
        self._run_as: RunAs | None = None
        self._process: Supervised | None = None

    @property
    def run_as(self) -> RunAs:
        """Who runs the server, decided at first use (so a spec can be realized without a server user)."""
        if self._run_as is None:
            self._run_as = RunAs.for_server()
        return self._run_as

    # ---- credentials --------------------------------------------------------------------------------------

    def _password(self, role: str) -> str:
        path = self.secrets_dir / f"postgres-{role}.password"
        if path.is_file():
            return path.read_text().strip()
        self.secrets_dir.mkdir(parents=True, exist_ok=True)
        self.secrets_dir.chmod(0o700)
        value = secrets.token_urlsafe(24)
        write_private(path, value.encode())
        return value

    def cdc_role(self, source: Source) -> str:
        return f"{source.database}_cdc"

    def credentials_dir(self, source: Source) -> Path:
        """An owner-only folder with files `username` and `password`: what Connect's DirectoryConfigProvider
        reads for `${dir:<folder>:password}`, the local counterpart of the source's Kubernetes Secret."""
        folder = self.secrets_dir / f"{source.name}-db"
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        write_private(folder / "username", self.cdc_role(source).encode())
        write_private(folder / "password", self._password(self.cdc_role(source)).encode())
        return folder

    def conninfo(self, database: str = "postgres", *, role: str = SUPERUSER) -> str:
        return psycopg.conninfo.make_conninfo(
            host=HOST,
            port=self.port,
            dbname=database,
            user=role,
            password=self._password(role),
            connect_timeout=5,
        )

    def connect(
        self, database: str = "postgres", *, role: str = SUPERUSER, autocommit: bool = False
    ) -> psycopg.Connection:
        return psycopg.connect(self.conninfo(database, role=role), autocommit=autocommit)

    # ---- lifecycle -----------------------------------------------------------------------------------------

    def _run(self, argv: list[str]) -> None:
        result = subprocess.run(self.run_as.wrap(argv), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise LocalPostgresError(
                f"{' '.join(argv[:2])} failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
            )

    def _own(self, path: Path) -> None:
        if self.run_as.switches:
            os.chown(path, self.run_as.uid, self.run_as.gid)

    def _init(self, bin_dir: Path) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        self._own(self.root)
        why = _reachable_by(self.root, self.run_as)
        if why:
            raise LocalPostgresError(
                f"the PostgreSQL state folder {self.root} is out of reach of the server's user: {why}; "
                "allowed: a state dir whose parent folders others may enter (chmod o+x), e.g. under /tmp"
            )
        pwfile = self.root / "initdb.pw"
        write_private(pwfile, self._password(SUPERUSER).encode())
        self._own(pwfile)
        try:
            self.progress(f"initializing a PostgreSQL cluster in {self.data_dir}")
            self._run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self) -> LocalPostgres:
        if self.running():
            return self
        bin_dir = server_bin_dir()
        if not (self.data_dir / "PG_VERSION").is_file():
            self._init(bin_dir)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.progress(f"starting PostgreSQL on {HOST}:{self.port} (wal_level=logical, state {self.root})")
        self._process = Supervised(
            "postgres",
            self.run_as.wrap(
                [
                    str(bin_dir / "postgres"),
                    "-D",
                    str(self.data_dir),
                    "-c",
                    f"listen_addresses={HOST}",
                    "-c",
                    f"port={self.port}",
                    "-c",
                    "unix_socket_directories=",
                    "-c",
                    "wal_level=logical",
                    "-c",
                    "max_replication_slots=8",
                    "-c",
                    "max_wal_senders=8",
                    "-c",
                    "fsync=on",
                    "-c",
                    "shared_buffers=64MB",
                ]
            ),
            self.log_file,
            progress=self.progress,
            stop_timeout=20.0,
        )
        self._process.start()
        self._process.wait_ready(self._answers, timeout=START_TIMEOUT, what="PostgreSQL to accept logins")
        return self

    def _answers(self) -> bool:
        with self.connect() as conn:
            conn.execute("SELECT 1")
        return True

    def running(self) -> bool:
        return self._process is not None and self._process.running()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def stop(self) -> None:
        """A fast shutdown (SIGINT: sessions are ended, the WAL is flushed), then the supervisor's stop."""
        if self._process is None:
            return
        pid = self._process.pid
        if self._process.running() and pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGINT)
            deadline = time.monotonic() + 20
            while self._process.running() and time.monotonic() < deadline:
                time.sleep(0.1)
        self._process.stop()
        self._process = None

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- sources ---------------------------------------------------------------------------------------------

    def prepare_source(self, source: Source) -> None:
        """The source's database, its outbox table, the publication of exactly that table, and the CDC role
        (LOGIN REPLICATION, SELECT on the outbox, nothing else). Idempotent."""
        with self.connect(autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (source.database,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{source.database}"')
            role = self.cdc_role(source)
            password = self._password(role)
            has_role = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            verb = "ALTER" if has_role else "CREATE"
            conn.execute(
                psycopg.sql.SQL("{} ROLE {} LOGIN REPLICATION PASSWORD {}").format(
                    psycopg.sql.SQL(verb), psycopg.sql.Identifier(role), psycopg.sql.Literal(password)
                )
            )
        with self.connect(source.database, autocommit=True) as conn:
            conn.execute(outbox_table_ddl(source))
            schema, table = source.outbox_table.split(".")
            conn.execute(
                psycopg.sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                    psycopg.sql.Identifier(schema), psycopg.sql.Identifier(self.cdc_role(source))
                )
            )
            conn.execute(
                psycopg.sql.SQL("GRANT SELECT ON {}.{} TO {}").format(
                    psycopg.sql.Identifier(schema),
                    psycopg.sql.Identifier(table),
                    psycopg.sql.Identifier(self.cdc_role(source)),
                )
            )
            has_pub = conn.execute(
                "SELECT 1 FROM pg_publication WHERE pubname = %s", (source.publication,)
            ).fetchone()
            if not has_pub:
                conn.execute(
                    psycopg.sql.SQL("CREATE PUBLICATION {} FOR TABLE {}.{}").format(
                        psycopg.sql.Identifier(source.publication),
                        psycopg.sql.Identifier(schema),
                        psycopg.sql.Identifier(table),
                    )
                )

    def served(self, source: Source) -> Source:
        """The source as this server serves it: the spec's endpoint with this server's address and port."""
        return replace(source, endpoint=replace(source.endpoint, host=HOST, port=self.port))

    def slot_lag_bytes(self, source: Source) -> int | None:
        """How many bytes of WAL the source's replication slot holds back (None: no slot yet)."""
        with self.connect(source.database) as conn:
            row = conn.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint "
                "FROM pg_replication_slots WHERE slot_name = %s",
                (source.slot_name,),
            ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def slot_active(self, source: Source) -> bool:
        with self.connect(source.database) as conn:
            row = conn.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (source.slot_name,)
            ).fetchone()
        return bool(row and row[0])


@contextlib.contextmanager
def transaction(pg: LocalPostgres, source: Source) -> Iterator[psycopg.Connection]:
    """A connection to the source's database in one transaction: committed on success, rolled back on error."""
    with pg.connect(source.database) as conn, conn.transaction():
        yield conn
