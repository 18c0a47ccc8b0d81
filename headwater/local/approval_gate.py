"""The approval gate on this machine: its description from the spec, and `python -m approval_gate.main` as the
catalog's gate principal against the local broker, supervised (clean stop on Ctrl-C, nothing left running)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from headwater.action_gate import action_gate, gate_description
from headwater.local.kafka import LocalKafka
from headwater.local.process import Progress, Supervised, stderr_progress
from headwater.local.provision import client_config
from headwater.spec import Platform
from headwater.tracing import span_file

DESCRIPTION_FILE = "gate.json"
START_TIMEOUT = 60.0


def gate_dir(state_dir: Path) -> Path:
    return Path(state_dir).resolve() / "approval_gate"


def write_description(description: dict[str, Any], state_dir: Path) -> Path:
    """The gate's description under the state dir (rewritten at every start)."""
    folder = gate_dir(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / DESCRIPTION_FILE
    path.write_text(json.dumps(description, indent=2, sort_keys=True) + "\n")
    return path


def _secret_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)
    return path


class LocalApprovalGate:
    """The gate as a supervised child process; `start()`, `stop()` (clean), `kill()` (a crash)."""

    def __init__(
        self,
        platform: Platform,
        kafka: LocalKafka,
        state_dir: Path,
        *,
        progress: Progress | None = None,
        description: dict[str, Any] | None = None,
    ) -> None:
        self.platform = platform
        self.kafka = kafka
        self.state_dir = Path(state_dir).resolve()
        self.gate = action_gate(platform)
        # The platform's own description unless given one (a test's stack with shorter SLAs, say).
        self.description = description if description is not None else gate_description(platform)
        self.progress = progress or stderr_progress("approval-gate")
        self.log_file = self.state_dir / "logs" / "approval-gate.log"
        self._process: Supervised | None = None
        self._started_at = 0.0
        self._log_offset = 0

    def running(self) -> bool:
        return self._process is not None and self._process.running()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, *, wait: bool = True) -> LocalApprovalGate:
        description = write_description(self.description, self.state_dir)
        kafka_config = _secret_file(
            self.kafka.secrets_dir / f"{self.gate.principal}.librdkafka.json",
            json.dumps(client_config(self.kafka, self.gate.principal), sort_keys=True),
        )
        argv = [
            sys.executable,
            "-m",
            "approval_gate.main",
            f"--description={description}",
            f"--kafka-config={kafka_config}",
            f"--traces-file={span_file(self.state_dir, self.gate.principal)}",
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._process = Supervised(
            self.gate.principal, argv, self.log_file, env=env, stop_timeout=15, progress=self.progress
        )
        self._log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        self.progress("starting the approval gate")
        self._started_at = time.monotonic()
        self._process.start()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> float:
        """Wait until the gate has restored its state and subscribed; the seconds since `start`."""
        assert self._process is not None, "start() first"
        self._process.wait_ready(self._started, timeout=timeout, what="the approval gate to subscribe")
        took = time.monotonic() - self._started_at
        self.progress(f"gating after {took:.1f}s (log: {self.log_file})")
        return took

    def _started(self) -> bool:
        try:
            with self.log_file.open("rb") as log:
                log.seek(self._log_offset)
                return b" gating " in log.read()
        except OSError:
            return False

    def stop(self, grace: float | None = None) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds (default 15: its last transaction commits)."""
        if self._process is None:
            return None
        code = self._process.stop(grace)
        self._process = None
        return code

    def kill(self) -> None:
        """SIGKILL, as a crash: no clean shutdown, the open transaction is left to be aborted."""
        if self._process is not None:
            if self._process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._process.pid, signal.SIGKILL)
            self._process.stop()
            self._process = None

    def log_tail(self, lines: int = 40) -> str:
        if self._process is not None:
            return self._process.log_tail(lines)
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
