"""The pure parts of `headwater local up`: sample events against the contract, the console's topology from
the spec, percentiles, rendering and the summary. No broker; the real run is tests/integration/test_local_up.py.
"""

from __future__ import annotations

import dataclasses
import io
import json
import random
import threading
from typing import Any, cast

import pytest

from headwater.config import load_platform
from headwater.contracts import load_contracts
from headwater.contracts.registry import RegistryClient
from headwater.contracts.serde import JsonSerializer, violations
from headwater.local.console import (
    Console,
    GroupLag,
    Latency,
    Monitor,
    RunSummary,
    Snapshot,
    Topology,
    format_summary,
    percentile,
    render,
    status_line,
)
from headwater.local.producer import MALFORMED_KINDS, ProducerSettings, SampleEvents, SampleProducer
from headwater.spec import Platform


@pytest.fixture(scope="module")
def platform() -> Platform:
    return load_platform("local")


@pytest.fixture(scope="module")
def raw_contract(platform: Platform) -> dict[str, Any]:
    topology = Topology.of(platform)
    return dict(next(c.schema for c in load_contracts(platform) if c.topic == topology.raw))


def test_sample_events_satisfy_the_raw_contract_and_cover_its_event_types(
    raw_contract: dict[str, Any],
) -> None:
    events = SampleEvents(raw_contract, ProducerSettings(), random.Random(3))
    sample = [events.valid() for _ in range(3000)]
    assert [e for e in sample if violations(raw_contract, e)] == []
    assert {e["event_type"] for e in sample} == set(raw_contract["properties"]["event_type"]["enum"])
    assert len({e["agent_type"].lower() for e in sample}) >= 3
    assert len({e["event_id"] for e in sample}) == len(sample)


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_each_malformed_kind_breaks_the_contract(raw_contract: dict[str, Any], kind: str) -> None:
    events = SampleEvents(raw_contract, ProducerSettings(), random.Random(5))
    record = events.malformed(kind)
    if isinstance(record, bytes):
        with pytest.raises(ValueError):
            json.loads(record)
    elif kind == "oversized":
        assert len(json.dumps(record).encode()) > events.max_record_bytes
    else:
        assert violations(raw_contract, record) != []


@pytest.mark.parametrize(
    ("field", "value"),
    [("rate", 0.0), ("malformed_share", 1.5), ("duplicate_share", -0.1), ("agents_per_type", 0)],
)
def test_producer_settings_refuse_nonsense(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        ProducerSettings(**{field: value})  # type: ignore[arg-type]


def test_topology_follows_the_flows_of_the_spec(platform: Platform) -> None:
    t = Topology.of(platform)
    gateway = platform.principal("agent-gateway")
    assert [p.topic for p in gateway.produces] == [t.raw]
    app_outputs = {p.topic for p in platform.principal("agent-events").produces}
    assert {t.signals, t.dead_letters} == app_outputs
    reader = {c.topic: c.group for c in platform.principal("agent-runtime").consumes}
    assert t.reader_group(t.signals) == reader[t.signals]
    assert t.reader_group(t.features) == reader[t.features]
    groups = {g for g, _ in t.lag_groups}
    assert {"agent-events", "feature-aggregator"} <= groups
    assert not any(g.startswith("schema-registry") for g in groups)  # prefixed, per start: not a lag to watch
    assert t.signals in t.transactional and t.raw not in t.transactional
    assert t.app_groups == {"agent-events", "feature-aggregator"}
    assert (t.producer, t.reader, t.signals_app) == ("agent-gateway", "agent-runtime", "agent-events")


def test_topology_reads_the_principals_from_the_flows_not_their_names(platform: Platform) -> None:
    # Renamed principals are found by what they do: the producer of the app's input, the reader of signals
    # and features, the app writing dead letters.
    renames = {"agent-gateway": "edge", "agent-runtime": "agents", "agent-events": "ingest"}
    principals = tuple(dataclasses.replace(p, name=renames.get(p.name, p.name)) for p in platform.principals)
    apps = tuple(dataclasses.replace(a, name=renames.get(a.name, a.name)) for a in platform.apps)
    t = Topology.of(dataclasses.replace(platform, principals=principals, apps=apps))
    assert (t.producer, t.reader, t.signals_app) == ("edge", "agents", "ingest")
    assert t.reader_group(t.signals) == "agent-runtime"


def test_percentiles_by_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile(values, 99) == 99.0
    assert percentile([], 50) is None
    lat = Latency.of([300.0, 100.0, 200.0])
    assert (lat.count, lat.p50, lat.max) == (3, 200.0, 300.0)


def _snapshot() -> Snapshot:
    return Snapshot(
        uptime_s=75.0,
        rates={"raw": 20.0, "signals": 18.5, "dead_letters": 1.0, "features": 2.0},
        totals={"raw": 1500, "signals": 1380, "dead_letters": 70, "features": 90},
        latency_recent=Latency.of([2000.0, 3000.0, 5000.0]),
        latency_run=Latency.of([1500.0, 2500.0, 5100.0]),
        lags=(
            GroupLag("agent-events", "agents.events.raw.v1", 12),
            GroupLag("agent-runtime", "agents.signals.v1", None),
        ),
        dead_letter_reasons={"schema_violation": 40, "malformed_json": 30},
        latest_signals=("12:00:01  planner-01  task.completed",),
        latest_features=(),
        errors=(),
    )


def test_render_shows_every_figure() -> None:
    text = "\n".join(
        render(
            _snapshot(),
            title="headwater local",
            producer={
                "sent": 1500,
                "valid": 1380,
                "duplicates": 50,
                "malformed": {"bad_json": 70},
                "delivered": 1500,
                "failed": 0,
                "queue_full_retries": 0,
            },
            components=["kafka pid 1"],
            footer="Ctrl-C stops everything",
        )
    )
    for expected in (
        "raw events in",
        "signals out",
        "dead letters",
        "features",
        "p50 3.00s",
        "p99 5.00s",
        "agent-events",
        "schema_violation 40",
        "planner-01",
        "kafka pid 1",
        "0:01:15",
    ):
        assert expected in text
    line = status_line(_snapshot())
    assert "signals=18.5/s" in line and "agent-runtime=-" in line and "p95=5.00s" in line


def test_summary_reports_throughput_and_latency() -> None:
    snap = _snapshot()
    summary = RunSummary(
        stack="local",
        seconds=60.0,
        producer=None,
        totals=snap.totals,
        latency=snap.latency_run,
        dead_letter_reasons=snap.dead_letter_reasons,
        start_seconds={"kafka": 4.0},
        resumed={"agent-events": None},
    )
    assert summary.throughput()["raw"] == 25.0
    data = summary.as_dict()
    assert data["latency_ms"]["p50"] == 2500.0 and data["throughput_per_s"]["signals"] == 23.0
    text = format_summary(summary)
    assert "25.0 raw events/s in" in text and "p95 5.10s" in text and "agent-events started fresh" in text


class _FixedId(JsonSerializer):
    """The raw contract's serializer with a made-up schema id, so no registry is needed."""

    @property
    def schema_id(self) -> int:
        return 7


def test_a_full_producer_queue_is_retried_with_backoff_not_dropped(raw_contract: dict[str, Any]) -> None:
    # Nothing listens on port 1: nothing is ever delivered, so the three-record queue stays full.
    serializer = _FixedId(RegistryClient("http://127.0.0.1:1"), "agents.events.raw.v1", raw_contract)
    producer = SampleProducer(
        {"bootstrap.servers": "127.0.0.1:1", "queue.buffering.max.messages": 3, "log_level": 0},
        "agents.events.raw.v1",
        serializer,
        ProducerSettings(malformed_share=0.0, duplicate_share=0.0, seed=1),
    )
    for _ in range(3):
        producer.send_one()
    assert producer.stats.valid == 3 and producer.stats.queue_full_retries == 0
    # A full queue: the producer keeps retrying (serving delivery reports in between) until told to stop.
    sender = threading.Thread(target=producer.send_one)
    sender.start()
    sender.join(timeout=1.0)
    assert sender.is_alive(), "a record was dropped or sent past a full queue"
    producer._stop.set()
    sender.join()
    assert producer.stats.queue_full_retries > 1
    assert producer.stats.valid == 3  # given up on stop, and not counted as sent
    assert producer.stop(flush_timeout=0) == 3


def test_groups_nobody_runs_locally_are_not_waited_for() -> None:
    """The dead letters' triage group is declared but never committed locally: `behind` must ignore it."""
    from headwater.config import load_platform
    from headwater.local.console import GroupLag, Monitor, Topology

    platform = load_platform("local")
    topology = Topology.of(platform)
    assert topology.triage == ("deadletter-triage", "deadletter-triage")
    monitor = Monitor(platform, {}, {}, "http://127.0.0.1:1")
    monitor._lags = (
        GroupLag("deadletter-triage", topology.dead_letters, None),
        GroupLag("agent-events", topology.raw, 7),
    )
    assert monitor.behind() == {"agent-events": 7}


class _FakePrometheus:
    """Canned answers of the Prometheus HTTP API, keyed by query."""

    url = "http://127.0.0.1:9090"

    def __init__(self, answers: dict[str, list[dict[str, Any]]], alerts: list[dict[str, Any]]) -> None:
        self.answers = answers
        self._alerts = alerts
        self.asked: list[str] = []

    def query(self, expr: str) -> list[dict[str, Any]]:
        self.asked.append(expr)
        return self.answers.get(expr, [])

    def alerts(self) -> list[dict[str, Any]]:
        return self._alerts


def test_prometheus_figures_are_read_from_the_http_api_answers() -> None:
    from headwater.local.observe import LAG_QUERY, latency_query, read_figures

    api = _FakePrometheus(
        {
            LAG_QUERY: [
                {
                    "metric": {"consumergroup": "agent-events", "topic": "agents.events.raw.v1"},
                    "value": [1, "42"],
                }
            ],
            latency_query(0.5): [{"metric": {}, "value": [1, "2.5"]}],
            latency_query(0.99): [{"metric": {}, "value": [1, "NaN"]}],  # no samples in the window
            "up": [
                {"metric": {"job": "kafka"}, "value": [1, "1"]},
                {"metric": {"job": "flink-agent-events"}, "value": [1, "0"]},
            ],
        },
        [
            {"labels": {"alertname": "HeadwaterConsumerLag"}, "state": "firing"},
            {"labels": {"alertname": "X"}, "state": "pending"},
        ],
    )
    figures = read_figures(api)
    assert [(x.group, x.lag) for x in figures.lags] == [("agent-events", 42.0)]
    assert figures.latency_s == {0.5: 2.5, 0.95: None, 0.99: None}
    assert figures.targets_up == {"flink-agent-events": (0, 1), "kafka": (1, 1)}
    assert figures.firing == ("HeadwaterConsumerLag",)
    assert "headwater_end_to_end_latency_seconds_bucket" in latency_query(0.95)


def test_the_console_shows_lag_and_latency_from_prometheus_when_it_has_them() -> None:
    from headwater.local.observe import PromFigures, PromLag

    prom = PromFigures(
        "http://127.0.0.1:9090",
        (PromLag("agent-events", "agents.events.raw.v1", 7.0),),
        {0.5: 2.5, 0.95: 4.75, 0.99: None},
        ("HeadwaterDeadLetters",),
        {"kafka": (1, 1)},
        None,
        1.0,
    )
    text = "\n".join(
        render(_snapshot(), title="t", producer=None, components=(), footer="f", prometheus=prom)
    )
    assert "consumer lag from Prometheus (http://127.0.0.1:9090" in text
    assert "p50 2.50s  p95 4.75s  p99 -" in text and "HeadwaterDeadLetters" in text
    lag_line = next(line for line in text.splitlines() if line.strip().startswith("agent-events"))
    assert lag_line.split()[-1] == "7"  # Prometheus's figure, not the monitor's 12
    line = status_line(_snapshot(), prom)
    assert "prometheus lag agent-events=7" in line and "prometheus latency p50=2.50s" in line


@pytest.mark.parametrize(
    ("flag", "value", "allowed"),
    [
        ("--duration", "-5", "a number of seconds > 0"),
        ("--duration", "inf", "a number of seconds > 0"),
        ("--duration", "nan", "a number of seconds > 0"),
        ("--rate", "inf", "a number of events per second > 0"),
        ("--rate", "0", "a number of events per second > 0"),
        ("--malformed-share", "1.5", "a share from 0 to 1"),
        ("--feature-window", "soon", "a number of seconds > 0"),
        ("--registry-port", "70000", "a TCP port 1-65535"),
        ("--kafka-sasl-port", "-1", "a TCP port 1-65535"),
    ],
)
def test_bad_flag_values_say_what_is_allowed(
    flag: str, value: str, allowed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from headwater_cli.main import main

    with pytest.raises(SystemExit) as info:
        main(["local", "up", f"{flag}={value}"])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert f"argument {flag}: '{value}' is not valid; allowed: {allowed}" in err
    assert "invalid _" not in err and "value:" not in err


def test_the_producer_refuses_an_infinite_rate() -> None:
    with pytest.raises(ValueError, match="a finite number of events per second"):
        ProducerSettings(rate=float("inf"))


def test_the_console_shows_the_feature_lines_only_when_a_feature_server_runs() -> None:
    lines = ["agent_activity_v1      newest window served 6.4s old (budget 300s, fresh)"]
    shown = render(_snapshot(), title="t", producer=None, components=[], footer="f", features=lines)
    at = shown.index(
        "  online features through the feature server (freshness: age of the newest window served)"
    )
    assert shown[at + 1] == f"    {lines[0]}"
    without = render(_snapshot(), title="t", producer=None, components=[], footer="f")
    assert not any("online features" in line for line in without)


class _FixedMonitor:
    def snapshot(self) -> Snapshot:
        return _snapshot()


def test_the_terminal_view_draws_on_the_alternate_screen_and_gives_the_terminal_back() -> None:
    out = io.StringIO()
    console = Console(
        cast(Monitor, _FixedMonitor()), title="headwater local", out=out, tty=True, footer="Ctrl-C stops"
    )
    console.tick()
    console._next = 0.0  # draw again at once: the second frame updates the same screen
    console.tick()
    console.close()
    console.close()  # once: a second close writes nothing more
    text = out.getvalue()
    assert text.startswith("\x1b[?1049h")  # entered the alternate screen
    assert text.endswith("\x1b[?25h\x1b[?1049l")  # left it, cursor shown again
    assert text.count("\x1b[?1049l") == 1
    assert text.count("headwater local  up 0:01:15") == 2
    assert "agents.events.raw.v1" in text and "Ctrl-C stops" in text


def test_plain_output_is_one_status_line_per_interval() -> None:
    out = io.StringIO()
    console = Console(cast(Monitor, _FixedMonitor()), title="t", out=out, tty=False)
    console.tick()
    console.tick()  # not yet time for the next line
    console.close()
    assert len(out.getvalue().splitlines()) == 1
    assert "\x1b" not in out.getvalue()


def test_local_status_lists_the_gate_and_the_approvers_page(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """`headwater local status` reads runtime.json: the gate's and the page's rows, the page's address up
    or closed, and where its sign-in credentials are (never the passwords)."""
    import os
    import socket

    from headwater.local import runtime
    from headwater.local.ports import HOST

    with socket.socket() as server:
        server.bind((HOST, 0))
        server.listen()
        port = server.getsockname()[1]
        me = os.getpid()  # alive: this process stands for every process of the run
        data = {
            "pid": me,
            "started_at": "2026-11-29T10:00:00+0000",
            "kafka": {"pid": me, "ports": {}},
            "flink": {},
            "approval_gate": {"pid": me, "log": "/state/logs/approval-gate.log"},
            "approvers_page": {
                "pid": me,
                "port": port,
                "url": f"https://{HOST}:{port}/",
                "log": "/state/logs/approvers-page.log",
                "credentials": "/state/approvers/credentials.txt",
                "ca": "/state/certs/ca.crt",
            },
        }
        (tmp_path / runtime.RUNTIME_FILE).write_text(json.dumps(data))
        assert runtime.status("local", tmp_path) == 0
        up = capsys.readouterr().out
    assert f"  approval gate    pid {me}  up    log /state/logs/approval-gate.log" in up
    page = next(line for line in up.splitlines() if line.startswith("  approvers' page"))
    assert f"https://{HOST}:{port}/ listening" in page and "up" in page.split()
    assert "/state/approvers/credentials.txt" in page and "trust /state/certs/ca.crt" in page
    # The page's port closed: said so.
    assert runtime.status("local", tmp_path) == 0
    assert f"https://{HOST}:{port}/ closed" in capsys.readouterr().out
