"""`headwater local up` with the catalog's outbox source: PostgreSQL, Kafka Connect with Debezium and the
agent-actions sample service start with the platform, the console shows the CDC flow, Ctrl-C-equivalent ends
leave nothing running."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from headwater.local.kafka import KafkaPorts
from headwater.local.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
RUN_LIMIT_S = 600  # guards against a hung run


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # PostgreSQL's unprivileged user must be able to enter the folders above its data (not list them).
    base = Path(tempfile.mkdtemp(prefix="headwater-local-cdc-"))
    base.chmod(0o711)
    try:
        yield base / "state"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _live_processes_mentioning(text: str) -> list[str]:
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


def test_local_up_runs_the_outbox_flow_and_stops_cleanly(state_dir: Path) -> None:
    ports = KafkaPorts.free()
    argv = [
        sys.executable,
        "-m",
        "headwater_cli.main",
        "local",
        "up",
        "--state-dir",
        str(state_dir),
        "--kafka-sasl-port",
        str(ports.sasl),
        "--kafka-mtls-port",
        str(ports.mtls),
        "--kafka-controller-port",
        str(ports.controller),
        "--kafka-metrics-port",
        str(ports.metrics),
        "--registry-port",
        str(free_port()),
        "--prometheus-port",
        str(free_port()),
        "--no-producer",
        "--no-apps",  # the Flink apps have runs of their own (test_local_up.py); this one is about CDC
        "--plain",
        "--duration",
        "20",
    ]
    result = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=RUN_LIMIT_S, start_new_session=True
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "[local] starting CDC: PostgreSQL, Kafka Connect with Debezium" in result.stderr
    assert (
        "agent-actions-db-outbox: agent_actions.public.outbox -> approval: actions.approvals.v1"
        in result.stderr
    )
    flow = [line for line in result.stdout.splitlines() if "cdc flow" in line]
    assert flow, result.stdout[-2000:]
    summary = json.loads((state_dir / "last-run.json").read_text())
    cdc = summary["cdc"]
    print(f"\n[local up cdc] {flow[-1].strip()}; start seconds {summary.get('start_seconds')}")
    assert "starting the Flink apps" not in result.stderr
    assert cdc["committed"] > 20 and 0 < cdc["captured"] <= cdc["committed"]
    assert cdc["dead_letters"] == 0 and cdc["connector_state"] == "RUNNING/RUNNING"
    assert cdc["slot_lag_bytes"] is not None
    # The worker's JMX exporter (the KafkaConnect's rules) was scraped: the series the CDC alerts read exist.
    prom = summary["prometheus"]
    # So was the slot exporter: the database's own view of the slot, which the slot alerts read.
    cdc_series = {
        n: c
        for n, c in prom["queried_series"].items()
        if n.startswith(("debezium_", "kafka_connect_", "headwater_cdc_slot_"))
    }
    print(f"[local up cdc] series the CDC alerts read: {cdc_series}; scrapes {prom['scrapes']}")
    assert sorted(cdc_series) == [
        "debezium_metrics_millisecondsbehindsource",
        "headwater_cdc_slot_inactive",
        "headwater_cdc_slot_retained_bytes",
        "kafka_connect_connector_status",
    ], prom["queried_series"]
    assert all(cdc_series.values()), prom["queried_series"]
    assert prom["scrapes_answered"].get("cdc-slot-exporter", 0) > 0, prom["scrapes_answered"]
    assert _live_processes_mentioning(str(state_dir)) == [], "processes of the run outlived it"
