"""The online feature store's Redis on this machine: Debian's `redis-server` as the current user.

It listens on 127.0.0.1 only, needs a password (generated at first start, kept owner-only in the state
dir and handed to Redis in its config file, never on a command line), and keeps its data in the state dir
with an append-only file fsynced every second plus RDB snapshots, so a restart resumes with what was written.
`make redis` installs the package when `redis-server` is missing; it is never run as a system service.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import time
from pathlib import Path

from headwater.local.ports import HOST
from headwater.local.process import Progress, Supervised, stderr_progress

START_TIMEOUT = 30.0


class LocalRedisError(RuntimeError):
    """The local Redis cannot start or answer; the message says what to change."""


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if not found:
        raise LocalRedisError(
            "no `redis-server` on PATH: `make redis` installs Debian's package "
            "(apt-get update && apt-get install -y redis-server)"
        )
    return found


def _secret(path: Path) -> str:
    """The password in `path`, created (mode 0600) at first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    return path.read_text().strip()


class LocalRedis:
    """One Redis server: `start()`, `stop()`, `kill()`; data and password survive restarts."""

    def __init__(
        self,
        state_dir: Path,
        port: int,
        *,
        progress: Progress | None = None,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.dir = Path(state_dir).resolve() / "redis"
        self.port = port
        self.progress = progress or stderr_progress("redis")
        self.start_timeout = start_timeout
        self.password_file = Path(state_dir).resolve() / "secrets" / "redis.password"
        self.config_file = self.dir / "redis.conf"
        self.log_file = Path(state_dir).resolve() / "logs" / "redis.log"
        self._process: Supervised | None = None

    @property
    def host(self) -> str:
        return HOST

    @property
    def password(self) -> str:
        return _secret(self.password_file)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    def running(self) -> bool:
        return self._process is not None and self._process.running()

    def write_config(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        lines = [
            "# Written by headwater.local.redis at every start.",
            f"bind {HOST}",
            f"port {self.port}",
            "protected-mode yes",
            f'dir "{self.dir}"',
            "daemonize no",
            'logfile ""',
            "loglevel notice",
            "appendonly yes",
            "appendfsync everysec",
            "save 60 1",
            "databases 1",
            f'requirepass "{self.password}"',
        ]
        self.config_file.touch(mode=0o600)
        self.config_file.write_text("\n".join(lines) + "\n")

    def start(self) -> LocalRedis:
        if self.running():
            return self
        t0 = time.monotonic()
        binary = redis_binary()
        self.write_config()
        self._process = Supervised(
            "redis", [binary, str(self.config_file)], self.log_file, cwd=self.dir, progress=self.progress
        )
        self.progress(f"starting Redis on {HOST}:{self.port} (password, data in {self.dir})")
        self._process.start()
        try:
            self._process.wait_ready(
                self.ping, timeout=self.start_timeout, what="Redis to answer", interval=0.1
            )
        except BaseException:
            self.stop()
            raise
        self.progress(f"ready in {time.monotonic() - t0:.1f}s")
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None

    def kill(self) -> None:
        """SIGKILL, as a crash of the process: what Redis wrote to its append-only file survives (the kernel
        has it; only a crash of the machine could lose the last second that was not yet fsynced)."""
        if self._process is not None:
            if self._process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._process.pid, signal.SIGKILL)
            self._process.stop()
            self._process = None

    def ping(self) -> bool:
        """True when Redis answers an authenticated PING (raw RESP: no client library needed here)."""
        with socket.create_connection((HOST, self.port), timeout=2) as sock:
            auth = self.password.encode()
            sock.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n*1\r\n$4\r\nPING\r\n" % (len(auth), auth))
            reply = b""
            while reply.count(b"\r\n") < 2:
                chunk = sock.recv(64)
                if not chunk:
                    return False
                reply += chunk
            return reply == b"+OK\r\n+PONG\r\n"
