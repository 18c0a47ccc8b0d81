"""Supervised child processes for the local runtime (broker, schema registry, Flink jobs).

Each child runs in its own session and process group, so a terminal's Ctrl-C reaches only the supervisor,
which then stops the children in order (SIGTERM to the whole group, a grace period, then SIGKILL). Output
goes to a log file under the state dir. Every started process is kept in a registry: `stop_all()` runs at
interpreter exit, and `StopSignals` (the one SIGINT/SIGTERM handling, `install_signal_handlers()` for short)
makes those signals run it too; the program that owns the processes (the CLI, a test session) installs it
once. As a last resort, when `setpriv` is available the
child is also told by the kernel to die with its parent (PR_SET_PDEATHSIG), which covers a supervisor that
is itself killed with SIGKILL. The kernel ties that to the *thread* that started the child, so start
long-lived processes from the main thread.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

Progress = Callable[[str], None]


def stderr_progress(prefix: str) -> Progress:
    """A progress reporter printing `[prefix] message` lines to stderr."""

    def report(message: str) -> None:
        print(f"[{prefix}] {message}", file=sys.stderr, flush=True)

    return report


def quiet(message: str) -> None:
    """A progress reporter that drops everything."""


class ProcessError(RuntimeError):
    """A supervised process failed to start, died while starting, or never became ready."""


_LOCK = threading.RLock()
_LIVE: dict[int, Supervised] = {}


def running_processes() -> list[Supervised]:
    """The processes started here and not yet stopped, oldest first."""
    with _LOCK:
        return list(_LIVE.values())


def stop_all() -> None:
    """Stop every supervised process, newest first (dependents before what they depend on)."""
    for proc in reversed(running_processes()):
        try:
            proc.stop()
        except Exception as exc:  # keep stopping the others
            print(f"[{proc.name}] could not stop pid {proc.pid}: {exc}", file=sys.stderr, flush=True)


atexit.register(stop_all)


class StopSignals:
    """The one SIGINT/SIGTERM handling of a program that owns supervised processes.

    While `interrupting` (a program with no orderly stop of its own, or one still starting), the first
    signal interrupts: SIGINT stops every supervised process and raises KeyboardInterrupt (so `finally`
    blocks and pytest's teardown still run); SIGTERM stops them and is delivered again with its previous
    disposition, so the program ends the way it would have, only without orphans. An orderly program (the
    local platform) sets `interrupting = False` once it runs: the first signal is then only noted
    (`requested`, `signum`) and the program stops its parts in order; a second signal stops every process
    at once and ends the program. Install it from the main thread; `restore()` puts back what was there.
    """

    def __init__(self, *, orderly: bool = False, announce: Callable[[int], str] | None = None) -> None:
        self.orderly = orderly
        self.interrupting = True
        self.requested = threading.Event()
        self.signum: int | None = None
        self._announce = announce
        self._previous: dict[int, Any] = {}

    def install(self) -> StopSignals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            current = signal.getsignal(sig)
            if current is signal.SIG_IGN:  # started to ignore it (nohup, background job): leave it so
                continue
            self._previous[sig] = current
            signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @property
    def exit_code(self) -> int:
        """128 + the signal that stopped the program, 0 when none did."""
        return 128 + self.signum if self.signum else 0

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.orderly and self.requested.is_set():
            print("second signal: stopping every process now", file=sys.stderr, flush=True)
            stop_all()
            os._exit(128 + signum)
        self.signum = signum
        self.requested.set()
        if self._announce is not None:
            print(self._announce(signum), file=sys.stderr, flush=True)
        if not self.interrupting:
            return  # the orderly program sees `requested` and stops its parts itself
        if not self.orderly:
            stop_all()
        if signum == signal.SIGTERM and not self.orderly:
            self._deliver_again(signum, frame)
            return
        raise KeyboardInterrupt

    def _deliver_again(self, signum: int, frame: FrameType | None) -> None:
        previous = self._previous.get(signum, signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
            return
        signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def install_signal_handlers() -> StopSignals:
    """Make SIGINT and SIGTERM stop every supervised process before the program ends (see `StopSignals`).

    For programs with no orderly stop of their own (a test session, a benchmark, a single server).
    """
    return StopSignals().install()


def _setpriv() -> str | None:
    return shutil.which("setpriv") if sys.platform.startswith("linux") else None


def _die_with_parent(argv: Sequence[str]) -> list[str]:
    setpriv = _setpriv()
    return list(argv) if setpriv is None else [setpriv, "--pdeathsig", "KILL", "--", *argv]


def _wait_for_exec(pid: int, program: str, timeout: float = 5.0) -> None:
    """Wait until the child runs `program` itself: the wrapper (setpriv) has set the death signal and exec'd.

    Between fork and the wrapper's exec the child still shows the supervisor's own command line, and until
    the wrapper has exec'd the program a supervisor killed outright would leave an orphan. Waiting for the
    program's own argv[0] closes both windows before `start()` returns.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            argv = psutil.Process(pid).cmdline()
        except psutil.NoSuchProcess:
            return  # gone already: the caller sees that as an early exit
        except psutil.Error:
            argv = []  # a zombie or not readable yet: look again
        if argv[:1] == [program]:
            return
        time.sleep(0.002)


class Supervised:
    """One child process: started in its own process group, logged to a file, probed, stopped cleanly."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_file: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_timeout: float = 30.0,
        progress: Progress | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_file = log_file
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.stop_timeout = stop_timeout
        self.progress = progress or stderr_progress(name)
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen else None

    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def start(self) -> None:
        if self.running():
            raise ProcessError(f"{self.name} is already running (pid {self.pid})")
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name}\n".encode())
            log.flush()
            try:
                self._popen = subprocess.Popen(
                    _die_with_parent(self.argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.cwd,
                    env=self.env,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ProcessError(f"{self.name}: cannot run {self.argv[0]!r}: {exc}") from exc
        with _LOCK:
            _LIVE[self._popen.pid] = self
        if _setpriv() is not None:
            _wait_for_exec(self._popen.pid, self.argv[0])

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _failure(self, what: str) -> ProcessError:
        return ProcessError(f"{self.name} {what}; last lines of {self.log_file}:\n{self.log_tail()}")

    def wait_ready(
        self,
        probe: Callable[[], bool],
        *,
        timeout: float,
        what: str,
        interval: float = 0.5,
        report_every: float = 5.0,
    ) -> float:
        """Call `probe` until it returns True; return the seconds waited.

        Fails fast when the process exits, and stops it when `timeout` passes. An exception from the probe
        counts as "not ready yet"; the last one is quoted if the wait times out.
        """
        start = time.monotonic()
        next_report = start + report_every
        last_error: BaseException | None = None
        self.progress(f"waiting for {what} (up to {timeout:.0f}s, log: {self.log_file})")
        while True:
            if not self.running():
                with _LOCK:
                    _LIVE.pop(self.pid or -1, None)
                raise self._failure(f"exited with status {self.returncode} before {what}")
            try:
                if probe():
                    return time.monotonic() - start
            except Exception as exc:
                last_error = exc
            now = time.monotonic()
            if now - start > timeout:
                self.stop()
                detail = f" (last probe error: {last_error})" if last_error else ""
                raise self._failure(f"did not reach {what} within {timeout:.0f}s{detail}; stopped it")
            if now >= next_report:
                self.progress(f"still waiting for {what} ({now - start:.0f}s)")
                next_report = now + report_every
            time.sleep(interval)

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM the process group, wait `timeout` (default `stop_timeout`), then SIGKILL; return the exit
        status."""
        popen = self._popen
        if popen is None:
            return None
        grace = self.stop_timeout if timeout is None else timeout
        try:
            if popen.poll() is None:
                self._signal_group(popen.pid, signal.SIGTERM)
                try:
                    popen.wait(grace)
                except subprocess.TimeoutExpired:
                    self.progress(f"pid {popen.pid} did not stop within {grace:.0f}s of SIGTERM; killing it")
                    self._signal_group(popen.pid, signal.SIGKILL)
                    popen.wait()
            # Anything the child left in its group (helpers, grandchildren) goes with it.
            self._signal_group(popen.pid, signal.SIGKILL)
        finally:
            with _LOCK:
                _LIVE.pop(popen.pid, None)
        return popen.returncode

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
