"""The approvers' page on this machine: `python -m approval_gate.approvers.main` as the catalog's approvers'
principal, over HTTPS with a certificate from the local CA, on 127.0.0.1 and a free port, supervised.

Everything it needs lives in `<state dir>/approvers/`: its description (rewritten at every start), the session
key, the users file (scrypt hashes) and `credentials.txt`, the local approvers' names and passwords (made up on
first use; owner-only, like every secret of the state dir). Logs name that file, never what is in it.
"""

from __future__ import annotations

import json
import os
import secrets
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headwater.action_gate import approvers_description, approvers_principal
from headwater.local.certs import write_private
from headwater.local.kafka import LocalKafka
from headwater.local.ports import HOST, free_port
from headwater.local.process import Progress, Supervised, stderr_progress
from headwater.local.provision import client_config
from headwater.spec import Platform
from headwater.tracing import span_file

# The people who may approve locally: each their own identity, so decisions say who took them.
LOCAL_APPROVERS = ("approver-1", "approver-2")
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class Credentials:
    name: str
    password: str


def page_dir(state_dir: Path) -> Path:
    return Path(state_dir).resolve() / "approvers"


def local_credentials(state_dir: Path) -> list[Credentials]:
    """The local approvers' credentials, made up once per state dir and kept there (owner-only)."""
    path = page_dir(state_dir) / "credentials.txt"
    if path.is_file():
        pairs = [
            line.split(" ", 1) for line in path.read_text().splitlines() if line and not line.startswith("#")
        ]
        found = [Credentials(n, p) for n, p in pairs]
        if {c.name for c in found} == set(LOCAL_APPROVERS):
            return found
    found = [Credentials(name, secrets.token_urlsafe(18)) for name in LOCAL_APPROVERS]
    text = "# the local approvers' page: name password\n" + "".join(f"{c.name} {c.password}\n" for c in found)
    write_private(path, text.encode())
    return found


def _users_file(path: Path, credentials_file: Path, credentials: list[Credentials]) -> None:
    """The users file the page reads (scrypt hashes), made by the page's own tool (the password on its stdin)
    whenever the credentials are newer than it."""
    if path.is_file() and path.stat().st_mtime >= credentials_file.stat().st_mtime:
        return
    path.unlink(missing_ok=True)
    for c in credentials:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "approval_gate.approvers.auth",
                "add",
                f"--file={path}",
                f"--name={c.name}",
            ],
            input=f"{c.password}\n".encode(),
            check=True,
            capture_output=True,
            timeout=60,
        )


class LocalApproversPage:
    """The page as a supervised child process; `start()`, `stop()`; `url` once started."""

    def __init__(
        self,
        platform: Platform,
        kafka: LocalKafka,
        state_dir: Path,
        *,
        progress: Progress | None = None,
        port: int | None = None,
    ) -> None:
        self.platform = platform
        self.kafka = kafka
        self.state_dir = Path(state_dir).resolve()
        self.folder = page_dir(self.state_dir)
        self.principal = approvers_principal(platform)
        self.description: dict[str, Any] = approvers_description(platform)
        self.progress = progress or stderr_progress("approvers-page")
        self.log_file = self.state_dir / "logs" / "approvers-page.log"
        self.port = port
        self._process: Supervised | None = None

    @property
    def url(self) -> str:
        assert self.port is not None, "start() first"
        return f"https://localhost:{self.port}/"

    @property
    def ca_file(self) -> Path:
        """The CA that signed the page's certificate (the local cluster CA): what a browser should trust."""
        return self.kafka.ca_file

    @property
    def credentials_file(self) -> Path:
        return self.folder / "credentials.txt"

    def credentials(self) -> list[Credentials]:
        return local_credentials(self.state_dir)

    def running(self) -> bool:
        return self._process is not None and self._process.running()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, *, wait: bool = True) -> LocalApproversPage:
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        description = self.folder / "approvers.json"
        description.write_text(json.dumps(self.description, indent=2, sort_keys=True) + "\n")
        users = self.folder / "users.json"
        _users_file(users, self.credentials_file, self.credentials())
        session_key = self.folder / "session.key"
        if not session_key.is_file():
            write_private(session_key, secrets.token_urlsafe(48).encode())
        cert = self.kafka.ca.issue(
            self.folder, "page", "approvers-page", hosts=("localhost", HOST), server=True
        )
        kafka_config = self.kafka.secrets_dir / f"{self.principal}.librdkafka.json"
        write_private(
            kafka_config, json.dumps(client_config(self.kafka, self.principal), sort_keys=True).encode()
        )
        self.port = self.port or free_port()
        argv = [
            sys.executable,
            "-m",
            "approval_gate.approvers.main",
            f"--description={description}",
            f"--kafka-config={kafka_config}",
            f"--users={users}",
            f"--session-key-file={session_key}",
            f"--tls-cert={cert.cert}",
            f"--tls-key={cert.key}",
            f"--host={HOST}",
            f"--port={self.port}",
            # The decisions' spans, read by `headwater actions trace` with the others of the state dir.
            f"--traces-file={span_file(self.state_dir, f'{self.principal}-page')}",
        ]
        self._process = Supervised(
            "approvers-page",
            argv,
            self.log_file,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stop_timeout=10,
            progress=self.progress,
        )
        self.progress("starting the approvers' page")
        self._started_at = time.monotonic()
        self._process.start()
        if wait:
            self.wait_ready()
        return self

    def _ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def ready(self) -> bool:
        """GET /readyz over HTTPS, checking the certificate against the local CA."""
        with urllib.request.urlopen(f"{self.url}readyz", timeout=2, context=self._ssl()) as r:
            return bool(r.status == 200)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> float:
        assert self._process is not None, "start() first"
        self._process.wait_ready(
            self.ready, timeout=timeout, what="the approvers' page to read the audit trail"
        )
        took = time.monotonic() - self._started_at
        self.progress(
            f"approvers' page at {self.url} after {took:.1f}s (sign-in names and passwords: "
            f"{self.credentials_file}; CA: {self.ca_file})"
        )
        return took

    def lines(self) -> list[str]:
        if self.port is None:
            return []
        return [
            f"approvers' page  {self.url}  (pid {self.pid}; sign in with a name and password from "
            f"{self.credentials_file}; trust {self.ca_file})"
        ]

    def stop(self, grace: float | None = None) -> int | None:
        if self._process is None:
            return None
        code = self._process.stop(grace)
        self._process = None
        return code

    def log_tail(self, lines: int = 40) -> str:
        if self._process is not None:
            return self._process.log_tail(lines)
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
