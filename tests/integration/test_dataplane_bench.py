"""`make bench`'s data-plane benchmark runs end to end on a small backlog (figures are not judged here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(900)
def test_the_dataplane_benchmark_runs_on_a_small_backlog(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "dataplane_bench.py"),
            "--events",
            "3000",
            "--latency-seconds",
            "3",
            "--state-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=880,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("[dataplane]")]
    for what in (
        "backlog:",
        "anchor",
        "agent-events:",
        "CPU",
        "latency at 80% load, exactly-once reader",
        "latency at 80% load, at-least-once reader",
        "exactly-once latency",
        "at-least-once latency",
        "settings:",
    ):
        assert any(what in line for line in lines), (what, done.stdout[-2000:])
    # Each latency reader found every event the phase sent in the signals it read (by event id).
    found = [
        m for line in lines if "reader (" in line and (m := re.search(r"([\d,]+) sent, ([\d,]+) seen", line))
    ]
    assert len(found) == 2, done.stdout[-2000:]
    for match in found:
        sent, seen = (int(n.replace(",", "")) for n in match.groups())
        assert sent > 0 and seen == sent, match.group(0)
    print("\n".join(lines))
