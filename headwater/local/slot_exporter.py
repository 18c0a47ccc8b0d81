"""The replication slots' exporter on this machine: Debian's `prometheus-postgres-exporter` against the local
PostgreSQL, running only the platform's slot query (`headwater.cdc.slot_exporter_queries`), which the local
Prometheus scrapes as the alerts `HeadwaterCdcSlotRetainsWal` and `HeadwaterCdcSlotInactive` read it.

It logs in as a source's CDC role (any login may read `pg_replication_slots`), with the password read from the
role's owner-only credentials file; the connection is given as a URL, so the exporter's error lines show
`PASSWORD_REMOVED` instead of the password.
"""

from __future__ import annotations

import os
import shutil
import urllib.request
from pathlib import Path

from headwater.cdc import slot_exporter_args, slot_exporter_queries
from headwater.local.certs import write_private
from headwater.local.ports import HOST, free_port
from headwater.local.postgres import LocalPostgres
from headwater.local.process import Progress, Supervised, stderr_progress
from headwater.spec import Source

BINARY = "prometheus-postgres-exporter"
START_TIMEOUT = 60.0


class LocalSlotExporterError(RuntimeError):
    """The slot exporter cannot run here; the message says what to install."""


def exporter_binary() -> str:
    found = shutil.which(BINARY)
    if not found:
        raise LocalSlotExporterError(
            f"no `{BINARY}` on PATH: `make postgres` installs Debian's package "
            f"(apt-get update && apt-get install -y {BINARY})"
        )
    return found


class LocalSlotExporter:
    """One exporter for the local PostgreSQL server (every source's database lives in it)."""

    def __init__(
        self,
        postgres: LocalPostgres,
        source: Source,
        state_dir: Path,
        *,
        port: int | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.postgres = postgres
        self.source = source
        self.port = port or free_port()
        self.query_file = state_dir / "postgres" / "slot-queries.yaml"
        self.log_file = state_dir / "logs" / "slot-exporter.log"
        self.progress = progress or stderr_progress("slot-exporter")
        self._process: Supervised | None = None

    @property
    def metrics_target(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> LocalSlotExporter:
        binary = exporter_binary()
        self.query_file.parent.mkdir(parents=True, exist_ok=True)
        write_private(self.query_file, slot_exporter_queries().encode())
        credentials = self.postgres.credentials_dir(self.source)
        env = {
            **os.environ,
            "DATA_SOURCE_URI": f"{HOST}:{self.postgres.port}/{self.source.database}?sslmode=disable",
            "DATA_SOURCE_USER": (credentials / "username").read_text().strip(),
            "DATA_SOURCE_PASS_FILE": str(credentials / "password"),
        }
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.progress(f"exporting the replication slots of {self.source.database} on {self.metrics_target}")
        self._process = Supervised(
            "slot-exporter",
            [binary, *slot_exporter_args(self.metrics_target, str(self.query_file))],
            self.log_file,
            env=env,
            progress=self.progress,
            stop_timeout=10.0,
        )
        self._process.start()
        self._process.wait_ready(self._answers, timeout=START_TIMEOUT, what="the exporter to read PostgreSQL")
        return self

    def _answers(self) -> bool:
        """Logged in and the slot query loaded (its series appear once the connector has created the slot)."""
        with urllib.request.urlopen(f"http://{self.metrics_target}/metrics", timeout=5) as response:
            lines = response.read().decode().splitlines()
        loaded = [line for line in lines if line.startswith("pg_exporter_user_queries_load_error")]
        if loaded and not all(line.endswith(" 0") for line in loaded):
            raise LocalSlotExporterError(f"the exporter could not load {self.query_file}: {loaded}")
        return "pg_up 1" in lines and bool(loaded)

    def running(self) -> bool:
        return self._process is not None and self._process.running()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None
