"""`StopSignals`: the one SIGINT/SIGTERM handling of programs that own supervised processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from headwater.local.process import StopSignals


@pytest.fixture(autouse=True)
def _usual_dispositions() -> Iterator[None]:
    """SIGINT and SIGTERM as a program started from a terminal has them, whatever this test process
    inherited (a background job starts with SIGINT ignored, which StopSignals rightly leaves alone)."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


@pytest.fixture
def orderly() -> Iterator[StopSignals]:
    signals = StopSignals(orderly=True).install()
    try:
        yield signals
    finally:
        signals.restore()


def _deliver(sig: signal.Signals) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.05)  # the handler runs in the main thread at the next bytecode boundary


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_starting_aborts_the_start(orderly: StopSignals, sig: signal.Signals) -> None:
    with pytest.raises(KeyboardInterrupt):
        _deliver(sig)
    assert orderly.requested.is_set()
    assert orderly.exit_code == 128 + sig


def test_a_signal_while_running_is_only_noted(orderly: StopSignals) -> None:
    orderly.interrupting = False
    _deliver(signal.SIGTERM)
    assert orderly.requested.is_set()
    assert orderly.signum == signal.SIGTERM
    assert orderly.exit_code == 143


def test_no_signal_means_exit_code_zero(orderly: StopSignals) -> None:
    assert not orderly.requested.is_set()
    assert orderly.exit_code == 0


def test_restore_puts_back_the_previous_handlers() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signals = StopSignals().install()
    assert signal.getsignal(signal.SIGINT) != before[signal.SIGINT]
    signals.restore()
    assert {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)} == before


def _run(program: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(program)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_second_signal_while_stopping_ends_the_program_at_once() -> None:
    done = _run(
        """
        import os, signal, time
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as from a terminal, not a background job
        from headwater.local.process import StopSignals
        signals = StopSignals(orderly=True).install()
        signals.interrupting = False
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        assert signals.requested.is_set()
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
        print("still running")
        """
    )
    assert done.returncode == 130, done.stderr
    assert "second signal" in done.stderr
    assert "still running" not in done.stdout


def test_sigterm_to_a_plain_program_ends_it_as_sigterm_would() -> None:
    done = _run(
        """
        import os, signal, time
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        from headwater.local.process import install_signal_handlers
        install_signal_handlers()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        print("still running")
        """
    )
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert "still running" not in done.stdout


def test_an_ignored_signal_stays_ignored() -> None:
    done = _run(
        """
        import os, signal, time
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        from headwater.local.process import StopSignals
        signals = StopSignals(orderly=True).install()
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        print("requested" if signals.requested.is_set() else "ignored")
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ignored"
