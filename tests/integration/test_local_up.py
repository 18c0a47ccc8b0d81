"""`headwater local up` as a user runs it: a real broker, registry and Flink jobs in a subprocess.

One state dir serves the whole module, the way `.local/<stack>/` serves `make local`:
1. a bounded run (`--duration`) from nothing: it exits 0 after printing throughput and latency, signals,
   features and dead letters were produced, its Prometheus scraped the broker, the lag exporter, both Flink
   jobs and the reader, loaded the alert rules and held the consumer lag and end-to-end latency the console
   showed, and no process of the run is left behind;
2. a second run on the same state dir resumes (broker data and registry ids kept, both Flink jobs restored
   from what the first run retained) and is stopped by SIGINT in the middle of its traffic: it stops
   everything cleanly, prints its summary and exits 130.
A port already in use is refused before anything starts. Then faults on the same state dir, as a person
meets them: a damaged newest snapshot and secrets others can read are refused before anything starts,
naming the file and the way on; a broker that crashes mid-traffic ends the run in a prompt, quiet, clean
stop whose last line says why.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from headwater.local.kafka import KafkaPorts
from headwater.local.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
TRAFFIC_S = 30
# Guards against a hung run, not assertions about speed: a healthy run ends well within these.
RUN_LIMIT_S = 600


@dataclass(frozen=True)
class Setup:
    state_dir: Path
    ports: KafkaPorts
    registry_port: int
    prometheus_port: int

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
            "--kafka-metrics-port",
            str(self.ports.metrics),
            "--registry-port",
            str(self.registry_port),
            "--prometheus-port",
            str(self.prometheus_port),
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
            # The outbox sources have their own run (test_local_up_cdc.py): PostgreSQL's unprivileged user
            # cannot enter pytest's owner-only temporary folders.
            "--no-cdc",
            *extra,
        ]

    @property
    def all_ports(self) -> list[int]:
        return [
            self.ports.sasl,
            self.ports.mtls,
            self.ports.controller,
            self.ports.metrics,
            self.registry_port,
            self.prometheus_port,
        ]


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str
    summary: dict[str, Any]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return Setup(tmp_path_factory.mktemp("local-up") / "state", KafkaPorts.free(), free_port(), free_port())


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


def test_bounded_run_shows_lag_and_latency_read_from_its_prometheus(
    first_run: Finished, capsys: pytest.CaptureFixture[str]
) -> None:
    assert first_run.returncode == 0, first_run.stderr[-4000:]
    prom = first_run.summary["prometheus"]
    with capsys.disabled():
        print(f"\n[prometheus] {json.dumps(prom, sort_keys=True)}", flush=True)
    assert "error" not in prom, prom
    # Every exporter of the run was scraped, repeatedly, and answered.
    jobs = {"kafka", "kafka-exporter", "agent-runtime", "flink-agent-events", "flink-feature-aggregator"}
    assert set(prom["scrapes"]) == jobs and min(prom["scrapes"].values()) >= 2, prom["scrapes"]
    assert set(prom["scrapes_answered"]) == jobs and min(prom["scrapes_answered"].values()) >= 1, prom
    assert set(prom["targets_up"]) == jobs
    # Every series the alerts and the dashboard of the stack read was there (broker, lag, Flink).
    missing = sorted(name for name, count in prom["queried_series"].items() if count == 0)
    assert not missing and len(prom["queried_series"]) >= 10, prom["queried_series"]
    # Lag of the apps' groups, with Kafka Exporter's name, as the declared lag exporter sees it.
    groups = {key.split(" ")[0] for key in prom["lag"]}
    assert {"agent-events", "feature-aggregator", "agent-runtime"} <= groups
    # End-to-end latency quantiles from the reader's histogram, in line with the exact per-run figures.
    exact_max_s = first_run.summary["latency_ms"]["max"] / 1000
    p50, p99 = prom["latency_s"]["p50"], prom["latency_s"]["p99"]
    assert p50 is not None and p99 is not None and 0 < p50 <= p99
    assert p50 <= exact_max_s * 2 + 1  # a histogram quantile lands within its bucket, not on a sample
    # The console's plain lines were those figures, read from Prometheus, while the run went on.
    lines = [line for line in first_run.stdout.splitlines() if "prometheus lag" in line]
    assert lines and any("agent-events=" in line for line in lines)
    assert any(re.search(r"prometheus latency p50=\d", line) for line in lines)
    assert prom["started_seconds"] > 0


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
    # broker, registry, two Flink jobs, Prometheus, the approval gate and the approvers' page; four broker
    # ports, the registry's, Prometheus's and the page's
    assert running.stdout.count(" up ") == 7 and "DOWN" not in running.stdout
    assert running.stdout.count("listening") == 7 and "closed" not in running.stdout
    assert re.search(r"^  approvers' page  +pid \d+  +up  +https://\S+ listening", running.stdout, re.M)
    # One row per process, its columns apart whatever the app names (no "flink agent-eventspid 123").
    for app in ("agent-events", "feature-aggregator"):
        assert re.search(rf"^  flink {app}  +pid \d+  +up  +log ", running.stdout, re.M), running.stdout
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
        # The choice is said before the app starts: which snapshot, and that it was checked.
        chosen = re.search(rf"\[flink:{app}\] resuming from \w+ (\S+) \(.*checked before use", stderr)
        assert chosen and chosen[1] == summary["resumed_from"][app], stderr[-4000:]
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
    setup = Setup(tmp_path / "state", KafkaPorts.free(), free_port(), free_port())
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


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_port_in_use_is_refused_before_anything_starts(tmp_path: Path, how: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        free = KafkaPorts.free()
        setup = Setup(
            tmp_path / "state",
            KafkaPorts(sasl=port, mtls=free.mtls, controller=free.controller, metrics=free.metrics),
            free_port(),
            free_port(),
        )
        argv, env = setup.argv(), dict(os.environ)
        if how == "environment":  # the port from HEADWATER_KAFKA_SASL_PORT, not from the flag
            at = argv.index("--kafka-sasl-port")
            del argv[at : at + 2]
            env["HEADWATER_KAFKA_SASL_PORT"] = str(port)
        result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2
    assert f"port {port}" in result.stderr
    # The message names the setting the person used, and only that one.
    used, other = (
        ("--kafka-sasl-port", "HEADWATER_KAFKA_SASL_PORT")
        if how == "flag"
        else ("HEADWATER_KAFKA_SASL_PORT", "--kafka-sasl-port")
    )
    assert f"choose another with {used}" in result.stderr and other not in result.stderr, result.stderr
    assert not setup.state_dir.exists(), "something was prepared before the port check"


# ---- faults on the state dir of the runs above --------------------------------------------------------------


def _refused(setup: Setup, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run `local up` expecting a refusal before anything starts; a run that starts anyway is stopped."""
    proc = subprocess.Popen(
        setup.argv("--duration", "60", *extra),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=RUN_LIMIT_S)
        pytest.fail("the run was not refused: it started\n" + err[-3000:])
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert "starting the Kafka broker" not in err, f"it started before refusing:\n{err[-3000:]}"
    _assert_nothing_left(setup)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _snapshots_newest_first(setup: Setup, app: str) -> list[Path]:
    found = list((setup.state_dir / "flink" / app).glob("*/*/_metadata")) + list(
        (setup.state_dir / "flink" / app).glob("*/*/*/_metadata")
    )
    return [m.parent for m in sorted(found, key=lambda m: m.stat().st_mtime_ns, reverse=True)]


def test_a_damaged_newest_snapshot_stops_the_start_and_names_the_ways_on(
    setup: Setup, first_run: Finished
) -> None:
    snapshots = _snapshots_newest_first(setup, "agent-events")
    assert len(snapshots) >= 2, f"this needs the savepoints of both runs above: {snapshots}"
    newest, older = snapshots[:2]
    metadata = newest / "_metadata"
    original = metadata.read_bytes()
    try:
        for damage, named in ((b"", "empty (0 bytes)"), (original[: len(original) // 2], "damaged: ")):
            metadata.write_bytes(damage)
            result = _refused(setup)
            assert result.returncode == 2, result.stderr[-3000:]
            err = result.stderr
            assert "Flink app agent-events: the newest snapshot" in err and str(newest) in err, err
            assert named in err and "nothing was started" in err, err
            assert f"--restore-from agent-events={older}" in err and "--fresh agent-events" in err, err
            assert "Traceback" not in err and "EOFException" not in err
    finally:
        metadata.write_bytes(original)


def test_secrets_others_can_read_are_refused_before_anything_starts(
    setup: Setup, first_run: Finished
) -> None:
    assert first_run.returncode == 0, "this needs the first run's secrets"
    secrets = setup.state_dir / "secrets"
    loosened = [secrets / "agent-gateway.password", secrets / "agent-events.flink.properties"]
    try:
        for path in loosened:
            path.chmod(0o644)
        result = _refused(setup)
        assert result.returncode == 2, result.stderr[-3000:]
        for path in loosened:
            assert f"{path} has mode 0644" in result.stderr and f"chmod 600 {path}" in result.stderr
        assert "allowed: 0600, owner only" in result.stderr
    finally:
        for path in loosened:
            path.chmod(0o600)


def test_a_broker_crash_ends_in_a_prompt_quiet_clean_stop(
    setup: Setup, first_run: Finished, capsys: pytest.CaptureFixture[str]
) -> None:
    """Also resumes agent-events, as asked, from an older snapshot than its damaged newest one."""
    snapshots = _snapshots_newest_first(setup, "agent-events")
    assert len(snapshots) >= 2, f"this needs the savepoints of both runs above: {snapshots}"
    newest, older = snapshots[:2]
    (newest / "_metadata").write_bytes(b"")
    stderr_file = setup.state_dir.parent / "crash-run.err"
    with stderr_file.open("w") as err:
        proc = subprocess.Popen(
            setup.argv("--duration", "300", "--restore-from", f"agent-events={older}"),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            start_new_session=True,
        )
    try:
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, ""):
            match = re.search(r"signals=([0-9.]+)/s", line)
            if match and float(match.group(1)) > 0:
                break
        else:
            pytest.fail("the run ended before signals flowed:\n" + stderr_file.read_text()[-4000:])
        broker = json.loads((setup.state_dir / "runtime.json").read_text())["kafka"]["pid"]
        lines_before = len(stderr_file.read_text().splitlines())
        os.kill(broker, signal.SIGKILL)
        killed = time.monotonic()
        rest, _ = proc.communicate(timeout=RUN_LIMIT_S)
        stopped_in = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    stderr = stderr_file.read_text()
    after = stderr.splitlines()[lines_before:]
    with capsys.disabled():
        print(
            f"\n[broker crash] stopped {stopped_in:.1f}s after the broker's SIGKILL, exit {proc.returncode}, "
            f"{len(after)} lines on stderr after the kill",
            flush=True,
        )
    assert proc.returncode == 1, stderr[-4000:]
    # Prompt: no savepoint attempts against a dead broker, no waiting on parts that cannot finish.
    assert stopped_in < 45, f"the stop took {stopped_in:.0f}s:\n" + "\n".join(after)
    # Quiet: a handful of lines, no client retry noise; the last one says why.
    assert len(after) <= 30, "\n".join(after)
    assert not [line for line in after if "Connection refused" in line or "rdkafka" in line]
    assert after[-1].startswith("error: stopped because the Kafka broker was killed by SIGKILL"), after[-1]
    assert "stopped with savepoint" not in "\n".join(after)
    assert "stopped: nothing left running" in stderr
    _assert_nothing_left(setup)
    # The explicit choice was taken and said: the older snapshot, the damaged newest one skipped.
    assert re.search(
        rf"\[flink:agent-events\] resuming from \w+ {re.escape(str(older))} .*--restore-from", stderr
    )
    assert re.search(rf"skipped \w+ {re.escape(str(newest))} .*empty", stderr), stderr[-4000:]
    assert "end-to-end latency" in rest  # what ran before the crash is still summarized
