"""The action path as `make local` runs it: the gate, the approvers' page, the sample agents and the pending
approvals the console shows, on the session's broker; stopped, nothing of it is left running."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from headwater.local.action_flow import LocalActionFlow
from headwater.local.process import running_processes

if TYPE_CHECKING:
    from conftest import Provisioned


def test_sample_agents_through_the_gate_to_the_console(provisioned: Provisioned, tmp_path: Path) -> None:
    flow = LocalActionFlow(provisioned.platform, provisioned.kafka, tmp_path, rate=10.0)
    try:
        flow.start()
        end = time.monotonic() + 60
        while time.monotonic() < end:
            state = flow.view.state
            with flow.view.lock:
                by_rule, pending = state.outcomes["approved by rule"], len(state.pending)
            if by_rule >= 5 and pending >= 3:
                break
            time.sleep(0.5)
        lines = flow.lines()
        assert by_rule >= 5 and pending >= 3, lines
        assert lines[0].startswith("approval gate  pid ")
        assert lines[1].startswith("approvals: ") and " pending" in lines[1]
        assert any(line.startswith("  pending ") and "min left" in line for line in lines[2:]), lines
        assert any(line.startswith(f"approvers' page  {flow.page.url}") for line in lines), lines
        assert flow.page.ready()  # over HTTPS, its certificate checked against the local CA
        assert str(flow.page.credentials_file) in lines[-1]
        assert flow.dead() == []
    finally:
        flow.stop()
    assert not flow.gate.running()
    assert not flow.page.running()
    assert not [p for p in running_processes() if p.name in (flow.gate.gate.principal, "approvers-page")]
