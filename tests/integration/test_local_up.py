"""`headwater local up` as a user runs it: a real broker, registry and Flink jobs in a subprocess.

One state dir serves the whole module, the way `.local/<stack>/` serves `make local`:
1. a bounded run (`--duration`) from nothing: it exits 0 after printing throughput and latency, signals,
   features and dead letters were produced, and no process of the run is left behind;
2. a second run on the same state dir resumes (broker data and registry ids kept, both Flink jobs restored
   from what the first run retained) and is stopped by SIGINT in the middle of its traffic: it stops
   everything cleanly, prints its summary and exits 130.
A port already in use is refused before anything starts.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from headwater.local.kafka import KafkaPorts
from headwater.local.registry import free_port

ROOT = Path(__file__).resolve().parents[2]
TRAFFIC_S = 30
# Guards against a hung run, not assertions about speed: a healthy run ends well within these.
RUN_LIMIT_S = 600


@dataclass(frozen=True)
class Setup:
    state_dir: Path
    ports: KafkaPorts
    registry_port: int

    def argv(self, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "headwater_cli.main",
            "local",
            "up",
            "--state-dir",
            str(self.state_dir),
            "--kafka-sasl-port",
            str(self.ports.sasl),
            "--kafka-mtls-port",
            str(self.ports.mtls),
            "--kafka-controller-port",
            str(self.ports.controller),
            "--registry-port",
            str(self.registry_port),
            # Short feature windows and watermark delay, so features close within a short run.
            "--feature-window",
            "5",
            "--out-of-orderness",
            "1",
            "--rate",
            "20",
            "--seed",
            "7",
            "--plain",
            *extra,
        ]

    @property
    def all_ports(self) -> list[int]:
        return [self.ports.sasl, self.ports.mtls, self.ports.controller, self.registry_port]


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str
    summary: dict[str, Any]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return Setup(tmp_path_factory.mktemp("local-up") / "state", KafkaPorts.free(), free_port())


def _processes_mentioning(text: str) -> list[str]:
    """Live processes (zombies excluded) whose command line mentions `text`: what a run may leave behind."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = (
                Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state not in ("Z", "X"):
            found.append(f"{entry}: {cmdline[:200]}")
    return found


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _assert_nothing_left(setup: Setup) -> None:
    assert _processes_mentioning(str(setup.state_dir)) == [], "processes of the run outlived it"
    assert [p for p in setup.all_ports if _listening(p)] == [], "a port of the run is still open"


def _status(setup: Setup) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headwater_cli.main", "local", "status", "--state-dir", str(setup.state_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _contract_ids(stderr: str) -> dict[str, int]:
    return {m[0]: int(m[1]) for m in re.findall(r"\[contracts\] (\S+): .* id (\d+)", stderr)}


def _print_figures(title: str, summary: dict[str, Any]) -> None:
    lat = summary["latency_ms"]
    tp = summary["throughput_per_s"]
    print(
        f"\n[{title}] {summary['seconds']}s of traffic: totals {summary['totals']}; "
        f"throughput {tp['raw']}/s raw in, {tp['signals']}/s signals out; latency ms p50 {lat['p50']} "
        f"p95 {lat['p95']} p99 {lat['p99']} max {lat['max']} (n={lat['count']}); "
        f"dead-letter reasons {summary['dead_letter_reasons']}; start seconds {summary['start_seconds']}; "
        f"resumed from {summary['resumed_from']}",
        flush=True,
    )


@pytest.fixture(scope="module")
def first_run(setup: Setup) -> Finished:
    result = subprocess.run(
        setup.argv("--duration", str(TRAFFIC_S)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_LIMIT_S,
        start_new_session=True,
    )
    summary_file = setup.state_dir / "last-run.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    return Finished(result.returncode, result.stdout, result.stderr, summary)


def test_bounded_run_reports_figures_and_exits_cleanly(
    setup: Setup, first_run: Finished, capsys: pytest.CaptureFixture[str]
) -> None:
    assert first_run.returncode == 0, first_run.stderr[-4000:]
    with capsys.disabled():
        _print_figures("first run", first_run.summary)
    out = first_run.stdout
    assert "throughput:" in out and "end-to-end latency: p50" in out

    s = first_run.summary
    producer = s["producer"]
    assert producer["delivered"] == producer["sent"] > 0
    assert producer["duplicates"] > 0 and sum(producer["malformed"].values()) > 0
    totals = s["totals"]
    assert totals["raw"] == producer["sent"]
    # Every valid event, and only those, becomes a signal: duplicates are dropped, malformed ones rejected.
    assert totals["signals"] == producer["valid"]
    assert totals["dead_letters"] == sum(producer["malformed"].values())
    assert totals["features"] > 0
    assert {"malformed_json", "oversized_record"} <= set(s["dead_letter_reasons"])
    lat = s["latency_ms"]
    assert lat["count"] == totals["signals"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert s["throughput_per_s"]["raw"] > 0 and s["throughput_per_s"]["signals"] > 0
    assert s["resumed_from"] == {"agent-events": None, "feature-aggregator": None}
    assert "formatting the broker storage" in first_run.stderr
    _assert_nothing_left(setup)


def test_second_run_resumes_and_sigint_stops_everything(
    setup: Setup, first_run: Finished, capsys: pytest.CaptureFixture[str]
) -> None:
    assert first_run.returncode == 0, "the second run needs the first run's state"
    retained = {
        app: sorted((setup.state_dir / "flink" / app).glob("*/*/_metadata"))
        + sorted((setup.state_dir / "flink" / app).glob("*/*/*/_metadata"))
        for app in ("agent-events", "feature-aggregator")
    }
    assert all(retained.values()), f"the first run retained no checkpoint or savepoint: {retained}"

    stderr_file = setup.state_dir.parent / "second-run.err"
    with stderr_file.open("w") as err:
        proc = subprocess.Popen(
            setup.argv("--duration", "300"),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            start_new_session=True,
        )
    try:
        assert proc.stdout is not None
        seen = []
        for line in iter(proc.stdout.readline, ""):
            seen.append(line)
            # Plain status lines: interrupt once signals are flowing again, in the middle of the traffic.
            match = re.search(r"signals=([0-9.]+)/s", line)
            if match and float(match.group(1)) > 0:
                running = _status(setup)
                proc.send_signal(signal.SIGINT)
                break
        else:
            pytest.fail("the second run ended before signals flowed:\n" + stderr_file.read_text()[-4000:])
        rest, _ = proc.communicate(timeout=RUN_LIMIT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    stderr = stderr_file.read_text()
    assert proc.returncode == 128 + signal.SIGINT, stderr[-4000:]
    # `local status` saw every process up and every port listening, and sees nothing now.
    assert running.returncode == 0, running.stdout + running.stderr
    assert f"running as pid {proc.pid}" in running.stdout
    assert running.stdout.count(" up ") == 4 and "DOWN" not in running.stdout
    assert running.stdout.count("listening") == 4 and "closed" not in running.stdout
    stopped = _status(setup)
    assert stopped.returncode == 3 and "not running" in stopped.stdout
    assert "SIGINT: stopping the local platform" in stderr
    assert "stopped: nothing left running" in stderr
    _assert_nothing_left(setup)

    # The summary of what ran before the interruption is still printed and written.
    assert "end-to-end latency: p50" in rest
    summary = json.loads((setup.state_dir / "last-run.json").read_text())
    with capsys.disabled():
        _print_figures("second run (SIGINT)", summary)
    assert summary["totals"]["signals"] > 0

    # Resumed: the broker kept its storage, the registry (KafkaSQL) its ids, each job its state.
    assert "formatting the broker storage" not in stderr
    assert "everything already matches the spec" in stderr
    assert _contract_ids(stderr) == _contract_ids(first_run.stderr) != {}
    for app, snapshots in retained.items():
        kept = {str(m.parent) for m in snapshots}
        assert summary["resumed_from"][app] in kept, f"{app} did not start from what run 1 retained"
        # Flink's own word for it, in the job's logs.
        logs = "".join(
            p.read_text(errors="replace")
            for p in (setup.state_dir / "logs").rglob("*")
            if p.is_file() and app in str(p)
        )
        restored = re.findall(
            r"Restoring job \w+ from (?:Savepoint|Checkpoint) \d+ .* located at file:(\S+?)\.?$", logs, re.M
        )
        assert restored and restored[-1] in kept, f"{app}'s Flink log shows no restore from {kept}"


def test_sigterm_while_starting_stops_what_was_started(tmp_path: Path) -> None:
    setup = Setup(tmp_path / "state", KafkaPorts.free(), free_port())
    proc = subprocess.Popen(
        setup.argv(),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    seen = []
    try:
        assert proc.stderr is not None
        for line in iter(proc.stderr.readline, ""):
            seen.append(line)
            if "starting the schema registry" in line:  # the broker runs, the registry is on its way
                proc.send_signal(signal.SIGTERM)
                break
        else:
            pytest.fail("the run ended before the registry started:\n" + "".join(seen[-40:]))
        _, rest = proc.communicate(timeout=RUN_LIMIT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    stderr = "".join(seen) + rest
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-4000:]
    assert "stopping the Kafka broker" in stderr and "stopped: nothing left running" in stderr
    _assert_nothing_left(setup)


def test_a_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        free = KafkaPorts.free()
        setup = Setup(
            tmp_path / "state", KafkaPorts(sasl=port, mtls=free.mtls, controller=free.controller), free_port()
        )
        result = subprocess.run(setup.argv(), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert f"port {port}" in result.stderr and "HEADWATER_KAFKA_SASL_PORT" in result.stderr
    assert not setup.state_dir.exists(), "something was prepared before the port check"
