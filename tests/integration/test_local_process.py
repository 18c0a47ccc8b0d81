"""The process supervisor the local runtime is built on: clean stops, fast failures, and no orphans.

These use tiny shell children rather than a broker, so they take seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from headwater.local.process import ProcessError, Supervised, quiet


def _state(pid: int) -> str | None:
    """The kernel's state letter of a process, or None when it is gone (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state = stat.rsplit(")", 1)[1].split()[0]
    return None if state in ("Z", "X") else state


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                members.append(int(entry))
    return members


def _wait_gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in pids if _state(p) is not None]
    return alive


def _wait_for(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_stop_ends_the_whole_process_group(tmp_path: Path) -> None:
    proc = Supervised(
        "family", ["bash", "-c", "sleep 300 & sleep 300 & wait"], tmp_path / "family.log", progress=quiet
    )
    proc.start()
    assert proc.pid is not None
    _wait_for(lambda: len(_group_members(proc.pid or -1)) >= 3)  # bash and its two children
    members = _group_members(proc.pid)
    proc.stop()
    assert not proc.running()
    assert _wait_gone(members) == []
    assert "starting family" in (tmp_path / "family.log").read_text()


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    proc = Supervised(
        "stubborn",
        ["bash", "-c", "trap '' TERM; sleep 300 & wait"],
        tmp_path / "stubborn.log",
        stop_timeout=1.0,
        progress=quiet,
    )
    proc.start()
    assert proc.pid is not None
    _wait_for(lambda: len(_group_members(proc.pid or -1)) >= 2)
    members = _group_members(proc.pid)
    started = time.monotonic()
    status = proc.stop()
    assert status == -signal.SIGKILL
    assert time.monotonic() - started < 5
    assert _wait_gone(members) == []


def test_wait_ready_fails_fast_with_the_log_when_the_process_dies(tmp_path: Path) -> None:
    proc = Supervised(
        "crasher", ["bash", "-c", "echo 'cannot bind 9093'; exit 3"], tmp_path / "c.log", progress=quiet
    )
    proc.start()
    started = time.monotonic()
    with pytest.raises(ProcessError) as err:
        proc.wait_ready(lambda: False, timeout=60, what="readiness")
    assert time.monotonic() - started < 10
    assert "status 3" in str(err.value) and "cannot bind 9093" in str(err.value)


def test_wait_ready_gives_up_after_the_timeout_and_stops_the_process(tmp_path: Path) -> None:
    proc = Supervised("sleeper", ["sleep", "300"], tmp_path / "s.log", progress=quiet)
    proc.start()
    with pytest.raises(ProcessError, match="did not reach readiness within 1s"):
        proc.wait_ready(lambda: False, timeout=1, what="readiness", interval=0.1)
    assert not proc.running()


def test_wait_ready_returns_once_the_probe_passes(tmp_path: Path) -> None:
    flag = tmp_path / "ready"
    proc = Supervised(
        "starter", ["bash", "-c", f"sleep 0.5; touch {flag}; sleep 300"], tmp_path / "r.log", progress=quiet
    )
    proc.start()
    try:
        waited = proc.wait_ready(flag.exists, timeout=30, what="the flag", interval=0.05)
        assert 0.3 < waited < 10
        assert proc.running()
    finally:
        proc.stop()


_OWNER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from headwater.local.process import Supervised, install_signal_handlers, quiet
    install_signal_handlers()
    child = Supervised("child", ["sleep", "300"], Path(sys.argv[1]), progress=quiet)
    child.start()
    print(child.pid, flush=True)
    if sys.argv[2] == "exit":
        sys.exit(0)  # no explicit stop: atexit must do it
    time.sleep(300)
    """
)


@pytest.mark.parametrize("ending", ["exit", "SIGINT", "SIGTERM", "SIGKILL"])
def test_the_owner_ending_leaves_no_child_behind(ending: str, tmp_path: Path) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, str(tmp_path / "child.log"), ending],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert owner.stdout is not None
        child_pid = int(owner.stdout.readline())
        if ending != "exit":
            assert _state(child_pid) is not None
            owner.send_signal(getattr(signal, ending))
        owner.wait(15)
        assert _wait_gone([child_pid]) == [], f"the child outlived its owner ({ending})"
    finally:
        owner.kill()
        owner.wait()
