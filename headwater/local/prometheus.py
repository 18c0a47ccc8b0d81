"""A real Prometheus for the local platform: Debian's `prometheus`, a plain process in the state dir.

It listens on 127.0.0.1 only, keeps its TSDB under `<state>/prometheus/data` (a day of retention), and
loads the stack's alert rules exactly as the render ships them (`components.observability.alert_rules`).
It scrapes what runs locally, each with the exporter the Kubernetes stacks use or its stand-in:

- `kafka`: the broker's JMX exporter agent with the platform's broker rules;
- `kafka-exporter`: consumer lag (`headwater.local.lag_exporter`, Kafka Exporter's metric names);
- `flink`: each Flink job's Prometheus reporter (Flink's own, from the apache-flink wheel's plugins);
- `agent-runtime`: the console's reader, with the end-to-end latency histogram.

`query()` is the HTTP API (`/api/v1/query`): what the console shows of lag and latency comes from there.
`make local` installs the package when it is missing (`make prometheus`).
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components.observability import alert_rules
from headwater.local.ports import HOST
from headwater.local.process import Progress, Supervised, stderr_progress
from headwater.spec import Platform

DEFAULT_PORT = 9090
PORT_ENV = "HEADWATER_PROMETHEUS_PORT"
SCRAPE_INTERVAL_S = 10
START_TIMEOUT = 120.0
RULES_FILE = "headwater.rules.yaml"


class LocalPrometheusError(RuntimeError):
    """The local Prometheus cannot start or answer; the message says what to change."""


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if not found:
        raise LocalPrometheusError(
            "no `prometheus` on PATH: `make prometheus` installs Debian's package "
            "(apt-get update && apt-get install -y prometheus)"
        )
    return found


@dataclass(frozen=True)
class ScrapeJob:
    """One `scrape_configs` entry: a job name and its `host:port` targets (each may carry labels)."""

    name: str
    targets: Sequence[str]
    labels: Mapping[str, str] = field(default_factory=dict)


def prometheus_config(
    jobs: Sequence[ScrapeJob], rules_file: Path, interval_s: int = SCRAPE_INTERVAL_S
) -> dict[str, Any]:
    """prometheus.yml: short intervals (a local run lasts minutes), the stack's rules, static targets."""
    return {
        "global": {
            "scrape_interval": f"{interval_s}s",
            "evaluation_interval": f"{interval_s}s",
            # A JMX scrape reads hundreds of MBeans: seconds on a busy laptop, so the whole interval.
            "scrape_timeout": f"{interval_s}s",
        },
        "rule_files": [str(rules_file)],
        "scrape_configs": [
            {
                "job_name": job.name,
                "static_configs": [
                    {"targets": list(job.targets), **({"labels": dict(job.labels)} if job.labels else {})}
                ],
            }
            for job in jobs
        ],
    }


class LocalPrometheus:
    """Prometheus of one local platform: `start(jobs)`, `query(expr)`, `stop()`."""

    def __init__(
        self,
        platform: Platform,
        state_dir: Path,
        port: int = DEFAULT_PORT,
        *,
        progress: Progress | None = None,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.platform = platform
        self.dir = Path(state_dir).resolve() / "prometheus"
        self.port = port
        self.progress = progress or stderr_progress("prometheus")
        self.start_timeout = start_timeout
        self.config_file = self.dir / "prometheus.yml"
        self.rules_file = self.dir / RULES_FILE
        self.log_file = Path(state_dir).resolve() / "logs" / "prometheus.log"
        self.started_seconds: float | None = None
        self._process: Supervised | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    def running(self) -> bool:
        return self._process is not None and self._process.running()

    def write_config(self, jobs: Sequence[ScrapeJob]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        # The rule file the render ships in its ConfigMap and PrometheusRule.
        self.rules_file.write_text(yaml.safe_dump(alert_rules(self.platform), sort_keys=False))
        self.config_file.write_text(
            "# Written by headwater.local.prometheus at every start.\n"
            + yaml.safe_dump(prometheus_config(jobs, self.rules_file), sort_keys=False)
        )

    def start(self, jobs: Sequence[ScrapeJob]) -> LocalPrometheus:
        """Write the config, start Prometheus and return once it is ready and has loaded the rules."""
        if self.running():
            return self
        t0 = time.monotonic()
        binary = prometheus_binary()
        self.write_config(jobs)
        self._process = Supervised(
            "prometheus",
            [
                binary,
                f"--config.file={self.config_file}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                "--storage.tsdb.retention.time=1d",
                f"--web.listen-address={HOST}:{self.port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            self.log_file,
            cwd=self.dir,
            progress=self.progress,
        )
        self.progress(f"starting Prometheus on {self.url} ({len(jobs)} scrape jobs)")
        self._process.start()
        try:
            self._process.wait_ready(self._ready, timeout=self.start_timeout, what="Prometheus to be ready")
            loaded = self.rule_count()
            if loaded != sum(len(g["rules"]) for g in alert_rules(self.platform)["groups"]):
                raise LocalPrometheusError(
                    f"Prometheus loaded {loaded} rules from {self.rules_file}; see {self.log_file}"
                )
        except BaseException:
            self.stop()
            raise
        self.started_seconds = time.monotonic() - t0
        self.progress(
            f"ready in {self.started_seconds:.1f}s: {self.url} ({self.rule_count()} alert rules loaded)"
        )
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None

    # ---- HTTP API -------------------------------------------------------------------------------------------

    def _get(self, path: str, params: Mapping[str, str] | None = None, timeout: float = 10.0) -> Any:
        url = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.loads(response.read().decode())
        if body.get("status") != "success":
            raise LocalPrometheusError(f"{path}: {body.get('error', body)}")
        return body["data"]

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=3) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query: the result vector (each item has `metric` labels and `value` [ts, "v"])."""
        data = self._get("/api/v1/query", {"query": expr})
        result: list[dict[str, Any]] = data["result"]
        return result

    def rule_count(self) -> int:
        groups = self._get("/api/v1/rules")["groups"]
        return sum(len(g["rules"]) for g in groups)

    def targets(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = self._get("/api/v1/targets")["activeTargets"]
        return active

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self._get("/api/v1/alerts")["alerts"]
        return alerts
