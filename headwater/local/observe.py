"""The local platform's view through Prometheus: what the reader exports, and what the console reads back.

- `ReaderMetrics`: the console's reader (the agents' view, as `agent-runtime`) exports the end-to-end latency
  of every signal it sees as a histogram on its own `/metrics`, which the local Prometheus scrapes;
- `PrometheusView`: polls the local Prometheus's HTTP API in a background thread for consumer lag (Kafka
  Exporter's `kafka_consumergroup_lag`), end-to-end latency quantiles (from the histogram), the alerts
  firing and the scrape targets that are up. The console shows these, so what a person sees locally is
  what the alerts and dashboards of a real cluster would see.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Histogram, start_http_server

from headwater.local.ports import HOST

LATENCY_METRIC = "headwater_end_to_end_latency_seconds"
# Around the checkpoint interval that bounds exactly-once visibility (seconds).
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 30.0, 60.0)
QUANTILES = (0.5, 0.95, 0.99)
LAG_QUERY = "sum by (consumergroup, topic) (kafka_consumergroup_lag)"
LATENCY_WINDOW = "1m"


def latency_query(q: float) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({LATENCY_METRIC}_bucket[{LATENCY_WINDOW}])))"


class ReaderMetrics:
    """The reader's `/metrics` on 127.0.0.1:`port`: `latency` is the histogram to observe into."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            LATENCY_METRIC,
            "Raw event produced -> its signal visible to a read_committed consumer of the agents",
            ["topic"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def target(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> ReaderMetrics:
        self._server, self._thread = start_http_server(self.port, HOST, self.registry)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None


class PrometheusApi(Protocol):
    @property
    def url(self) -> str: ...

    def query(self, expr: str) -> list[dict[str, Any]]: ...

    def alerts(self) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class PromLag:
    group: str
    topic: str
    lag: float


@dataclass(frozen=True)
class PromFigures:
    """What the local Prometheus said at one moment (None/empty while it has nothing yet)."""

    url: str
    lags: tuple[PromLag, ...] = ()
    latency_s: Mapping[float, float | None] = field(default_factory=dict)  # quantile -> seconds
    firing: tuple[str, ...] = ()
    targets_up: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # job -> (up, total)
    error: str | None = None
    age_s: float | None = None  # seconds since the last successful poll

    def latency_text(self) -> str:
        if not any(v is not None for v in self.latency_s.values()):
            return "no samples yet"
        return "  ".join(
            f"p{round(q * 100)} {'-' if v is None else f'{v:.2f}s'}"
            for q, v in sorted(self.latency_s.items())
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "lag": {f"{x.group} {x.topic}": x.lag for x in self.lags},
            "latency_s": {f"p{round(q * 100)}": v for q, v in sorted(self.latency_s.items())},
            "firing": list(self.firing),
            "targets_up": {job: list(v) for job, v in self.targets_up.items()},
        }


def _number(text: str) -> float | None:
    value = float(text)
    return None if math.isnan(value) or math.isinf(value) else value


def read_figures(api: PrometheusApi) -> PromFigures:
    """One round of queries against the Prometheus HTTP API."""
    lags = tuple(
        sorted(
            (
                PromLag(
                    r["metric"].get("consumergroup", "?"), r["metric"].get("topic", "?"), float(r["value"][1])
                )
                for r in api.query(LAG_QUERY)
            ),
            key=lambda x: (x.group, x.topic),
        )
    )
    latency: dict[float, float | None] = {}
    for q in QUANTILES:
        result = api.query(latency_query(q))
        latency[q] = _number(result[0]["value"][1]) if result else None
    up: dict[str, tuple[int, int]] = {}
    for r in api.query("up"):
        job = r["metric"].get("job", "?")
        ok, total = up.get(job, (0, 0))
        up[job] = (ok + (1 if r["value"][1] == "1" else 0), total + 1)
    firing = tuple(sorted({a["labels"]["alertname"] for a in api.alerts() if a.get("state") == "firing"}))
    return PromFigures(api.url, lags, latency, firing, dict(sorted(up.items())), None, 0.0)


class PrometheusView:
    """Polls `api` every `interval` seconds in a daemon thread until `stop()`; `figures()` is the latest."""

    def __init__(self, api: PrometheusApi, interval: float = 2.0) -> None:
        self.api = api
        self.interval = interval
        self.polls = 0
        self._figures = PromFigures(api.url)
        self._at: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> PrometheusView:
        self._thread = threading.Thread(target=self._run, name="prometheus-view", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None

    def poll(self) -> PromFigures:
        try:
            figures = read_figures(self.api)
        except Exception as exc:  # shown on the console; the next round tries again
            with self._lock:
                self._figures = PromFigures(
                    self.api.url,
                    self._figures.lags,
                    self._figures.latency_s,
                    self._figures.firing,
                    self._figures.targets_up,
                    f"{type(exc).__name__}: {exc}",
                )
                return self._figures
        with self._lock:
            self._figures = figures
            self._at = time.monotonic()
            self.polls += 1
            return figures

    def figures(self) -> PromFigures:
        with self._lock:
            f = self._figures
            age = None if self._at is None else time.monotonic() - self._at
        return PromFigures(f.url, f.lags, f.latency_s, f.firing, f.targets_up, f.error, age)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self.poll()
            self._stop.wait(self.interval)
