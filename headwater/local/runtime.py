"""`headwater local up`: the whole platform of a stack on this machine, from its spec, until Ctrl-C.

In order, each step showing its progress: the Kafka broker (storage formatted on the first start),
provisioning (topics, credentials, ACLs), the schema registry with KafkaSQL storage (its state lives in
Kafka, so ids survive restarts), the catalog's contracts registered in it, then every Flink app of the
catalog as its own principal, each resumed from its latest retained checkpoint when there is one. Then the
sample producer (as `agent-gateway`) and the live console (as `agent-runtime`).

Every port is checked before anything starts. Ctrl-C or SIGTERM stops everything in reverse order and
leaves no process behind (a second signal stops the rest at once). State lives under `.local/<stack>/`
by default: broker data, certificates and secrets, registry files, Flink checkpoints and logs, so the next
start resumes where this one stopped. `<state>/runtime.json` says what is running, for `local status`;
`<state>/last-run.json` holds the figures of the last run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from components.observability import queried_metrics
from headwater import jvm
from headwater.cdc import SLOT_EXPORTER
from headwater.config import load_platform
from headwater.contracts import access
from headwater.contracts.model import load_contracts
from headwater.contracts.registry import RegistryClient, RegistryError
from headwater.contracts.serde import JsonSerializer
from headwater.feature_views import FeatureViewError, materializer_flows
from headwater.local.action_flow import LocalActionFlow
from headwater.local.cdc_flow import LocalCdc
from headwater.local.connect import LocalConnectError
from headwater.local.console import (
    Console,
    FeatureProbe,
    Monitor,
    RunSummary,
    Topology,
    format_summary,
)
from headwater.local.feature_store import LocalFeatureServer, LocalMaterializer
from headwater.local.kafka import KafkaPorts, LocalKafka, LocalKafkaError, default_state_dir
from headwater.local.lag_exporter import LagExporter, LagExporterError, lag_principal
from headwater.local.observe import PrometheusView, ReaderMetrics
from headwater.local.ports import HOST, free_port, listening, port_free
from headwater.local.postgres import LocalPostgresError
from headwater.local.process import (
    ProcessError,
    Progress,
    StopSignals,
    quiet,
    running_processes,
    stderr_progress,
)
from headwater.local.producer import ProducerSettings, SampleProducer, shares_text
from headwater.local.prometheus import DEFAULT_PORT as DEFAULT_PROMETHEUS_PORT
from headwater.local.prometheus import PORT_ENV as PROMETHEUS_PORT_ENV
from headwater.local.prometheus import LocalPrometheus, LocalPrometheusError, ScrapeJob, prometheus_binary
from headwater.local.provision import ProvisionError, client_config, provision
from headwater.local.redis import LocalRedis, LocalRedisError, redis_binary
from headwater.local.registry import PORT_ENV as REGISTRY_PORT_ENV
from headwater.local.registry import (
    KafkaSqlStorage,
    LocalRegistry,
    RegistryStartError,
    default_port,
)
from headwater.local.slot_exporter import LocalSlotExporterError
from headwater.local.snapshots import SnapshotChoice, SnapshotError, resolve_requests
from headwater.spec import Platform, TopicKind

if TYPE_CHECKING:
    from headwater.local.flink import LocalFlinkJob

RUNTIME_FILE = "runtime.json"
SUMMARY_FILE = "last-run.json"
CLIENT_LOG = "clients.log"
FLINK_START_TIMEOUT = 240.0
CRASH_STOP_GRACE = 5.0  # seconds a part gets to stop by itself once the broker has crashed


class LocalUpError(RuntimeError):
    """The local platform cannot start as asked; the message says what to change."""


@dataclass(frozen=True)
class UpOptions:
    """What `headwater local up` was asked to do."""

    stack: str = "local"
    state_dir: Path | None = None
    duration: float | None = None  # seconds of traffic, then stop; None: until Ctrl-C
    producer: ProducerSettings | None = dataclasses.field(default_factory=ProducerSettings)
    kafka_ports: KafkaPorts | None = None  # None: defaults and HEADWATER_KAFKA_*_PORT
    registry_port: int | None = None  # None: default and HEADWATER_REGISTRY_PORT
    prometheus_port: int | None = None  # None: default and HEADWATER_PROMETHEUS_PORT
    app_options: Mapping[str, str] = dataclasses.field(
        default_factory=dict
    )  # e.g. {"window-size-ms": "10000"}
    drain_timeout: float = 30.0  # after a bounded run's traffic: how long to wait for the apps to catch up
    tty: bool | None = None  # None: redraw in place when stdout is a terminal
    # How the person chose each port, for messages: {"sasl": "--kafka-sasl-port <port>", "registry": ...}
    port_settings: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # The catalog's outbox sources: PostgreSQL, Kafka Connect with Debezium and the sample outbox service.
    cdc: bool = True
    # The action path: the approval gate, sample agents proposing actions, the pending approvals on the console.
    actions: bool = True
    apps: bool = True  # the catalog's Flink apps
    restore_from: tuple[str, ...] = ()  # --restore-from values: APP=PATH or a snapshot path
    fresh: tuple[str, ...] = ()  # --fresh values: app names, "*" for every app


def step(progress: Progress, what: str) -> Callable[[], float]:
    """Announce a step; the returned function reports it done and gives its seconds."""
    progress(f"{what} ...")
    started = time.monotonic()

    def done() -> float:
        took = time.monotonic() - started
        progress(f"{what}: done in {took:.1f}s")
        return took

    return done


def register_contracts(platform: Platform, client: RegistryClient, progress: Progress) -> dict[str, int]:
    """Register every contract of the stack (idempotent: the same text keeps its id); subject -> id."""
    ids: dict[str, int] = {}
    for contract in load_contracts(platform):
        client.set_compatibility(contract.subject, contract.compatibility)
        ids[contract.subject] = client.register(contract.subject, contract.text, contract.schema_type)
        progress(
            f"{contract.subject}: {contract.schema_type.value}, {contract.compatibility.value}, id {ids[contract.subject]}"
        )
    return ids


def _pid_of(name: str) -> int | None:
    """The pid of the supervised process called `name` (the registry does not expose its own)."""
    for proc in running_processes():
        if proc.name == name:
            return proc.pid
    return None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.Error:
        return False


class LocalPlatform:
    """The processes of one stack on this machine: `start()` them in order, `stop()` them in reverse."""

    def __init__(
        self,
        platform: Platform,
        state_dir: Path,
        *,
        kafka_ports: KafkaPorts | None = None,
        registry_port: int | None = None,
        app_options: Mapping[str, str] | None = None,
        prometheus_port: int | None = None,
        port_settings: Mapping[str, str] | None = None,
        restore_from: Sequence[str] = (),
        fresh: Sequence[str] = (),
        cdc: bool = True,
        apps: bool = True,
        actions: bool = True,
    ) -> None:
        self.platform = platform
        self.run_apps = apps
        self.port_settings = dict(port_settings or {})
        self.restore_requests = tuple(restore_from)
        self.fresh_requests = tuple(fresh)
        self.snapshot_choices: dict[str, SnapshotChoice] = {}
        # App options beyond the spec's (e.g. a short feature window for a demo), as HEADWATER_<OPTION>
        # variables, which the apps read for every option their arguments leave unset.
        self.app_options = {_option_env(k): v for k, v in (app_options or {}).items()}
        self.state_dir = state_dir.resolve()
        self.progress = stderr_progress("local")
        self.kafka = LocalKafka(platform, self.state_dir, kafka_ports or KafkaPorts.from_env())
        self.registry_port = default_port() if registry_port is None else registry_port
        self.registry: LocalRegistry | None = None
        self.prometheus = LocalPrometheus(
            platform,
            self.state_dir,
            default_prometheus_port() if prometheus_port is None else prometheus_port,
            progress=stderr_progress("prometheus"),
        )
        self.cdc = LocalCdc(platform, self.kafka, self.state_dir) if cdc and platform.sources else None
        self.run_actions = actions and platform.action_gate is not None
        self.actions: LocalActionFlow | None = None
        self.lag_exporter: LagExporter | None = None
        self.reader_metrics: ReaderMetrics | None = None
        # The online feature store: Redis (a free port) and the materializer, when the catalog has feature topics.
        self.redis: LocalRedis | None = None
        self.materializer: LocalMaterializer | None = None
        self.feature_server: LocalFeatureServer | None = None
        self.jobs: dict[str, LocalFlinkJob] = {}
        self.start_seconds: dict[str, float] = {}
        self.resumed: dict[str, str | None] = {}
        self.runtime_file = self.state_dir / RUNTIME_FILE

    # ---- before anything starts ------------------------------------------------------------------------

    def preflight(self) -> None:
        """Refuse to start over a running instance or on a taken port, before any process exists."""
        running = read_runtime(self.state_dir)
        if running is not None and _alive(running.get("pid")):
            raise LocalUpError(
                f"the local platform of {self.state_dir} is already running (pid {running['pid']}); "
                "stop it with Ctrl-C in its terminal, or use another --state-dir"
            )
        from headwater.local.flink import FLINK_PYTHON

        if self.platform.apps and not FLINK_PYTHON.is_file():
            raise LocalUpError(
                f"{FLINK_PYTHON} does not exist: the Flink apps need it; run `make venv-flink`"
            )
        self.kafka.refuse_loose_secrets()
        self.kafka.ports.check_free(self.port_settings)
        if not 0 < self.registry_port < 65536:
            raise LocalUpError(
                f"registry port = {self.registry_port!r} is not valid; allowed: a TCP port 1-65535"
            )
        how = self.port_settings.get("registry") or f"{REGISTRY_PORT_ENV}=<port>"
        if self.registry_port in dataclasses.astuple(self.kafka.ports):
            raise LocalUpError(
                f"registry port {self.registry_port} is also a Kafka port ({self.kafka.ports}); choose another "
                f"with {how}"
            )
        prom = self.prometheus.port
        how_prom = (
            self.port_settings.get("prometheus") or f"--prometheus-port or {PROMETHEUS_PORT_ENV}=<port>"
        )
        if not 0 < prom < 65536:
            raise LocalUpError(f"prometheus port = {prom!r} is not valid; allowed: a TCP port 1-65535")
        if prom in (*dataclasses.astuple(self.kafka.ports), self.registry_port):
            raise LocalUpError(
                f"prometheus port {prom} is also a Kafka or registry port; choose another with {how_prom}"
            )
        if not port_free(prom):
            raise LocalUpError(
                f"port {prom} on {HOST} is already in use, and the local Prometheus needs it; choose another "
                f"with {how_prom}, or stop the process listening there "
                f"(`ss -ltnp 'sport = :{prom}'`)"
            )
        try:
            prometheus_binary()
            lag_principal(self.platform)
            if self._serves_features():
                redis_binary()
                materializer_flows(self.platform)
        except (LocalPrometheusError, LagExporterError, LocalRedisError, FeatureViewError) as exc:
            raise LocalUpError(str(exc)) from None
        if not port_free(self.registry_port):
            raise LocalUpError(
                f"port {self.registry_port} on {HOST} is already in use, and the schema registry needs it; "
                f"choose another with {how}, or stop the process listening there "
                f"(`ss -ltnp 'sport = :{self.registry_port}'`)"
            )
        self.choose_snapshots()

    def choose_snapshots(self) -> None:
        """Check each app's retained snapshots and choose what it resumes from, before anything starts.

        Raises SnapshotError (DamagedSnapshotError naming the options) when the newest one is damaged or a
        --restore-from/--fresh request cannot be honoured.
        """
        from headwater.local.flink import LocalFlinkJob

        jobs = {
            a.name: LocalFlinkJob(self.platform, a.name, self.kafka, "", self.state_dir, progress=quiet)
            for a in self.platform.apps
        }
        restore, fresh = resolve_requests(
            list(jobs), {n: j.job_dir for n, j in jobs.items()}, self.restore_requests, self.fresh_requests
        )
        for name, job in jobs.items():
            self.snapshot_choices[name] = job.choose_snapshot(
                restore_from=restore.get(name), fresh=name in fresh
            )

    # ---- start and stop --------------------------------------------------------------------------------

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        say = self.progress
        done = step(say, "starting the Kafka broker")
        self.kafka.start()
        self.start_seconds["kafka"] = done()

        done = step(say, "provisioning topics, credentials and ACLs from the spec")
        provision(self.kafka, progress=stderr_progress("provision"))
        self.start_seconds["provision"] = done()

        # Lag as Kafka Exporter exports it, read as the catalog's lag principal (Describe only).
        # Its librdkafka log lines go to the clients' log like the other platform clients'.
        self.lag_exporter = LagExporter(
            {
                **client_config(self.kafka, lag_principal(self.platform).name),
                "logger": _client_logger(self.state_dir / "logs" / CLIENT_LOG),
            },
            free_port(),
        ).start()
        self.reader_metrics = ReaderMetrics(free_port()).start()

        done = step(say, "starting the schema registry (KafkaSQL storage)")
        self.registry = LocalRegistry(
            self.state_dir / "registry",
            self.registry_port,
            kafka=KafkaSqlStorage.for_local_kafka(self.kafka),
            users=access.registry_users(self.platform),
        )
        self.registry.start()
        self.start_seconds["registry"] = done()
        self._write_runtime()

        done = step(say, "registering the catalog's contracts")
        register_contracts(self.platform, self.registry.client(), stderr_progress("contracts"))
        self.start_seconds["contracts"] = done()

        if self.cdc is not None:
            done = step(
                say, "starting CDC: PostgreSQL, Kafka Connect with Debezium, the agent-actions service"
            )
            self.cdc.start()
            self.start_seconds["cdc"] = done()

        if self.run_actions:
            done = step(
                say, "starting the approval gate, the approvers' page and the sample agents proposing actions"
            )
            self.actions = LocalActionFlow(
                self.platform,
                self.kafka,
                self.state_dir,
                client_logger=_client_logger(self.state_dir / "logs" / CLIENT_LOG),
            )
            self.actions.start()
            self.start_seconds["approval gate"] = done()

        # The materializer imports Feast while the Flink jobs start.
        self.start_feature_store()
        if self.run_apps:
            self.start_jobs()
        if self.materializer is not None:
            self.start_seconds["materializer"] = self.materializer.wait_ready()
            self._write_runtime()
        if self.feature_server is not None:
            self.start_seconds["feature server"] = self.feature_server.wait_ready()
            self._write_runtime()

        done = step(
            say, "starting Prometheus (scrapes the broker, lag, Flink jobs, the reader; loads the alerts)"
        )
        self.prometheus.start(self.scrape_jobs())
        self.start_seconds["prometheus"] = done()
        self._write_runtime()

    def scrape_jobs(self) -> list[ScrapeJob]:
        """What the local Prometheus scrapes: every exporter of this run, by the job names of the render."""
        assert self.lag_exporter is not None and self.reader_metrics is not None
        jobs = [
            ScrapeJob("kafka", [f"{HOST}:{self.kafka.ports.metrics}"]),
            ScrapeJob("kafka-exporter", [f"{HOST}:{self.lag_exporter.port}"]),
            ScrapeJob("agent-runtime", [self.reader_metrics.target]),
        ]
        for name, job in self.jobs.items():
            if job.metrics_target is not None:
                jobs.append(ScrapeJob(f"flink-{name}", [job.metrics_target], {"app": name}))
        if self.cdc is not None:
            for name, worker in self.cdc.connects.items():
                jobs.append(ScrapeJob(f"connect-{name}", [worker.metrics_target]))
            if self.cdc.slot_exporter is not None:
                jobs.append(ScrapeJob(SLOT_EXPORTER, [self.cdc.slot_exporter.metrics_target]))
        return jobs

    def _serves_features(self) -> bool:
        return any(t.kind == TopicKind.FEATURE for t in self.platform.topics)

    def start_feature_store(self) -> None:
        """Redis, then the materializer's and the feature server's processes (their Feast imports overlap the
        Flink jobs' start)."""
        if not self._serves_features():
            return
        assert self.registry is not None
        done = step(self.progress, "starting Redis (the online feature store) and the materializer")
        self.redis = LocalRedis(self.state_dir, free_port(), progress=stderr_progress("redis")).start()
        flows = materializer_flows(self.platform)
        self.materializer = LocalMaterializer(
            self.platform,
            self.kafka,
            self.redis,
            self.registry.url,
            self.registry.user_info(flows.principal),
            self.state_dir,
            progress=stderr_progress("materializer"),
        ).start(wait=False)
        self.feature_server = LocalFeatureServer(
            self.platform, self.redis, self.state_dir, free_port(), progress=stderr_progress("feature-server")
        ).start(wait=False)
        self.start_seconds["redis"] = done()

    def start_jobs(self) -> None:
        from headwater.local.flink import LocalFlinkJob

        assert self.registry is not None
        jvm.fetch("flink-connectors")  # with progress on the first run; the jobs then find it in the cache
        names = ", ".join(a.name for a in self.platform.apps)
        done = step(self.progress, f"starting the Flink apps ({names}), each as its own principal")
        started = time.monotonic()
        for app in self.platform.apps:
            job = LocalFlinkJob(
                self.platform,
                app.name,
                self.kafka,
                self.registry.url,
                self.state_dir,
                progress=stderr_progress(f"flink:{app.name}"),
                registry_user_info=self.registry.user_info(app.name),
            )
            with _environment(self.app_options):
                job.start(choice=self.snapshot_choices.get(app.name))
            self.jobs[app.name] = job
            self.resumed[app.name] = str(job.restored_from) if job.restored_from else None
        for name, job in self.jobs.items():
            job.wait_running(FLINK_START_TIMEOUT)
            self.start_seconds[f"flink {name}"] = time.monotonic() - started
        done()

    def stop(self) -> None:
        """Stop everything that was started, dependents first; keeps going past a failing stop.

        With the broker gone (it crashed), nothing can take a savepoint or flush to it: the jobs (whose
        retained checkpoints stay) and the registry (whose state lives in Kafka) get a short grace period
        and are then killed, instead of waiting on a broker that is not coming back.
        """
        say = self.progress
        broker_down = self.kafka.pid is not None and not self.kafka.running()
        grace = CRASH_STOP_GRACE if broker_down else None
        if self.prometheus.running():
            with _reporting(say, "stopping Prometheus"):
                self.prometheus.stop()
        if self.feature_server is not None:
            with _reporting(say, "stopping the feature server"):
                self.feature_server.stop()
            self.feature_server = None
        if self.materializer is not None:
            with _reporting(say, "stopping the materializer"):
                self.materializer.stop()
            self.materializer = None
        if self.redis is not None:
            with _reporting(say, "stopping Redis"):
                self.redis.stop()
            self.redis = None
        if self.actions is not None:
            with _reporting(say, "stopping the sample agents and the approval gate"):
                self.actions.stop(grace)
            self.actions = None
        for name, job in reversed(list(self.jobs.items())):
            if broker_down:
                what = f"stopping Flink app {name} (no savepoint: the broker is down; its checkpoints remain)"
            else:
                what = f"stopping Flink app {name}"
            with _reporting(say, what):
                job.stop(savepoint=not broker_down, grace=grace)
        self.jobs.clear()
        if self.cdc is not None:
            with _reporting(say, "stopping CDC (the sample service, Kafka Connect, PostgreSQL)"):
                self.cdc.stop()
        if self.registry is not None:
            with _reporting(say, "stopping the schema registry"):
                self.registry.stop(grace=grace)
            self.registry = None
        for what, server in (
            ("the lag exporter", self.lag_exporter),
            ("the reader's metrics", self.reader_metrics),
        ):
            if server is not None:
                with _reporting(say, f"stopping {what}"):
                    server.stop()
        self.lag_exporter = self.reader_metrics = None
        with _reporting(say, "stopping the Kafka broker"):
            self.kafka.stop()
        with contextlib.suppress(FileNotFoundError):
            self.runtime_file.unlink()

    def dead(self) -> list[str]:
        """What should be running but is not, how it ended and where to look."""
        out = []
        if not self.kafka.running():
            out.append(
                f"the Kafka broker {_ended(self.kafka.returncode)} (log: {_short(self.kafka.log_file)})"
            )
        if self.registry is not None and not self.registry.running():
            out.append(
                f"the schema registry {_ended(self.registry.returncode)} (log: {_short(self.registry.log_file)})"
            )
        for name, job in self.jobs.items():
            if not job.running():
                out.append(f"Flink app {name} {_ended(job.returncode)} (log: {_short(job.log_file)})")
        if self.cdc is not None:
            out += self.cdc.dead()
        if self.actions is not None:
            out += self.actions.dead()
        if self.prometheus.pid is not None and not self.prometheus.running():
            out.append(
                f"Prometheus {_ended(self.prometheus.returncode)} (log: {_short(self.prometheus.log_file)})"
            )
        if self.redis is not None and not self.redis.running():
            out.append(f"Redis {_ended(self.redis.returncode)} (log: {_short(self.redis.log_file)})")
        m = self.materializer
        if m is not None and m.pid is not None and not m.running():
            out.append(f"the feature materializer {_ended(m.returncode)} (log: {_short(m.log_file)})")
        fs = self.feature_server
        if fs is not None and fs.pid is not None and not fs.running():
            out.append(f"the feature server {_ended(fs.returncode)} (log: {_short(fs.log_file)})")
        return out

    def components(self) -> list[str]:
        """One line per process, for the console."""
        k = self.kafka
        width = max([len("schema registry"), *(len(f"flink {name}") for name in self.jobs)]) + 2
        p = self.prometheus
        lines = [
            f"{'kafka':<{width}}pid {k.pid}  SASL_SSL {k.bootstrap_sasl}  mTLS {k.bootstrap_mtls}  "
            f"(log {_short(k.log_file)})"
        ]
        if self.registry is not None:
            lines.append(
                f"{'schema registry':<{width}}pid {_pid_of('registry')}  {self.registry.url}  (log {_short(self.registry.log_file)})"
            )
        for name, job in self.jobs.items():
            lines.append(
                f"{'flink ' + name:<{width}}pid {job.pid}  checkpoint {_short(job.latest_checkpoint())}  (log {_short(job.log_file)})"
            )
        if p.running():
            lines.append(f"{'prometheus':<{width}}pid {p.pid}  {p.url}  (log {_short(p.log_file)})")
        if self.redis is not None and self.redis.running():
            r = self.redis
            lines.append(f"{'redis':<{width}}pid {r.pid}  {r.host}:{r.port}  (log {_short(r.log_file)})")
        if self.materializer is not None and self.materializer.running():
            m = self.materializer
            lines.append(
                f"{'materializer':<{width}}pid {m.pid}  {', '.join(m.flows.topics)} -> Redis  (log {_short(m.log_file)})"
            )
        if self.feature_server is not None and self.feature_server.running():
            fs = self.feature_server
            lines.append(f"{'feature server':<{width}}pid {fs.pid}  {fs.url}  (log {_short(fs.log_file)})")
        if self.cdc is not None and self.cdc.sources:
            lines += self.cdc.lines()
        if self.actions is not None:
            lines += self.actions.lines()
        return lines

    def _write_runtime(self) -> None:
        k = self.kafka
        data: dict[str, Any] = {
            "pid": os.getpid(),
            "stack": self.platform.stack,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "state_dir": str(self.state_dir),
            "kafka": {
                "pid": k.pid,
                "ports": dataclasses.asdict(k.ports),
                "bootstrap_sasl": k.bootstrap_sasl,
                "bootstrap_mtls": k.bootstrap_mtls,
                "log": str(k.log_file),
            },
            "registry": None,
            "flink": {},
        }
        if self.registry is not None:
            data["registry"] = {
                "pid": _pid_of("registry"),
                "port": self.registry.port,
                "url": self.registry.url,
                "log": str(self.registry.log_file),
            }
        for name, job in self.jobs.items():
            data["flink"][name] = {"pid": job.pid, "log": str(job.log_file)}
        if self.redis is not None and self.redis.running():
            data["redis"] = {"pid": self.redis.pid, "port": self.redis.port, "log": str(self.redis.log_file)}
        if self.materializer is not None and self.materializer.running():
            data["materializer"] = {"pid": self.materializer.pid, "log": str(self.materializer.log_file)}
        if self.feature_server is not None and self.feature_server.running():
            fs = self.feature_server
            data["feature_server"] = {"pid": fs.pid, "port": fs.port, "url": fs.url, "log": str(fs.log_file)}
        if self.actions is not None:
            gate, page = self.actions.gate, self.actions.page
            if gate.pid is not None:
                data["approval_gate"] = {"pid": gate.pid, "log": str(gate.log_file)}
            if page.port is not None and page.pid is not None:
                data["approvers_page"] = {
                    "pid": page.pid,
                    "port": page.port,
                    "url": page.url,
                    "log": str(page.log_file),
                    # Where the sign-in names and passwords are (never the passwords themselves).
                    "credentials": str(page.credentials_file),
                    "ca": str(page.ca_file),
                }
        if self.prometheus.running():
            data["prometheus"] = {
                "pid": self.prometheus.pid,
                "port": self.prometheus.port,
                "url": self.prometheus.url,
                "log": str(self.prometheus.log_file),
            }
        self.runtime_file.write_text(json.dumps(data, indent=2) + "\n")


def _ended(returncode: int | None) -> str:
    if returncode is None:
        return "exited"
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-returncode).name}"
        return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def _short(path: object) -> str:
    if path is None:
        return "none yet"
    text = str(path)
    with contextlib.suppress(ValueError):
        text = str(Path(text).relative_to(Path.cwd()))
    return text


def _option_env(option: str) -> str:
    return "HEADWATER_" + option.lstrip("-").upper().replace("-", "_")


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """`values` in os.environ while a child starts (it copies the environment), then as before."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


@contextlib.contextmanager
def _reporting(progress: Progress, what: str) -> Iterator[None]:
    progress(what)
    try:
        yield
    except Exception as exc:  # stopping the rest matters more than this one failure
        progress(f"{what} failed: {exc}")


def read_runtime(state_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((state_dir / RUNTIME_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# ---- the command ----------------------------------------------------------------------------------------------


def _announce(signum: int) -> str:
    return f"\n{signal.Signals(signum).name}: stopping the local platform (again to stop at once)"


def up(options: UpOptions) -> int:
    """Run the platform; return the exit status (0: a bounded run finished, 1: a part crashed or failed to
    start, 2: refused before anything started, 128+N: stopped by signal N)."""
    platform = load_platform(options.stack)
    state_dir = (options.state_dir or default_state_dir(platform.stack)).resolve()
    try:
        local = _prepared(platform, state_dir, options)
    except (LocalUpError, LocalKafkaError, SnapshotError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # Until the platform runs, a first signal aborts the start; from then on it is noted and the run stops
    # its parts in order; a second one stops everything at once.
    signals = StopSignals(orderly=True, announce=_announce).install()
    run = _Run(local, options, signals)
    status = 0
    try:
        run.start()
        signals.interrupting = False
        if signals.requested.is_set():
            raise KeyboardInterrupt
        run.finish(run.watch())
        status = 1 if run.crashed else 0
    except KeyboardInterrupt:
        status = 130
    except _startup_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        status = 1
    finally:
        signals.interrupting = False  # from here a first signal is noted; only a second cuts the stop short
        run.stop()
        signals.restore()
        run.report_stopped()
    # A signal that arrived at any point before here, even while traffic ended or the stop ran, is how this
    # run ended: report it, whatever the run had reached.
    if signals.signum is not None and not run.crashed:
        status = signals.exit_code
    return status


def _prepared(platform: Platform, state_dir: Path, options: UpOptions) -> LocalPlatform:
    """The local platform as asked, checked before anything starts (ports, snapshots, the console's topics)."""
    Topology.of(platform)  # the console's topics must exist in this stack before anything starts
    local = LocalPlatform(
        platform,
        state_dir,
        kafka_ports=options.kafka_ports,
        registry_port=options.registry_port,
        app_options=options.app_options,
        prometheus_port=options.prometheus_port,
        port_settings=options.port_settings,
        restore_from=options.restore_from,
        fresh=options.fresh,
        cdc=options.cdc,
        apps=options.apps,
        actions=options.actions,
    )
    local.preflight()
    return local


class _Run:
    """One run of a prepared local platform: its parts started, the clients that feed and watch it (the
    sample producer, the monitor, the Prometheus view, the feature probe, the console), the loop until a
    signal, a crash or the end of a bounded run, the summary, and the stop in order."""

    def __init__(self, local: LocalPlatform, options: UpOptions, signals: StopSignals) -> None:
        self.local = local
        self.options = options
        self.signals = signals
        self.say = stderr_progress("local")
        self.producer: SampleProducer | None = None
        self.monitor: Monitor | None = None
        self.view: PrometheusView | None = None
        self.probe: FeatureProbe | None = None
        self.console: Console | None = None
        self.crashed: list[str] = []  # what died by itself while running: the one line of cause printed last

    def start(self) -> None:
        """Start the platform's parts, then the clients that feed and watch it."""
        local = self.local
        self.say(f"stack {local.platform.stack}, state in {local.state_dir}")
        for name, choice in local.snapshot_choices.items():
            for line in choice.lines():
                stderr_progress(f"flink:{name}")(line)
        local.start()
        assert local.registry is not None
        # The platform's own clients log into a file: when a part dies they would otherwise fill the
        # terminal with one connection error per client and retry.
        clients = _client_logger(local.state_dir / "logs" / CLIENT_LOG)
        since_ms = int(time.time() * 1000)
        topology = Topology.of(local.platform)
        self.monitor = Monitor(
            local.platform,
            {**client_config(local.kafka, topology.reader), "logger": clients},
            {**local.kafka.admin_config(), "logger": clients},
            local.registry.url,
            since_ms=since_ms,
            triage_config=_triage_config(local.kafka, local.platform, clients),
            latency_histogram=local.reader_metrics.latency if local.reader_metrics is not None else None,
            registry_auth=_registry_auth(local.registry),
        )
        self.monitor.start()  # assigned first, so an interrupted start still stops its readers
        if self.options.producer is not None:
            self.producer = _producer(local, self.options.producer, clients)
            self.say(f"sample producer as {topology.producer}: {shares_text(self.options.producer)}")
            self.producer.start()
        self.view = PrometheusView(local.prometheus).start()
        if local.feature_server is not None:
            self.probe = FeatureProbe(
                local.feature_server.url, topology.features, self.monitor.latest_feature_entity
            ).start()
        self.say(f"Prometheus: {local.prometheus.url} (the console's lag and latency are read from there)")

    def watch(self) -> float:
        """The console until a signal, a crash or the end of a bounded run; the seconds of traffic."""
        assert self.monitor is not None and self.view is not None
        local, options, probe = self.local, self.options, self.probe
        console = self.console = Console(
            self.monitor,
            title=f"headwater local · stack {local.platform.stack} · {local.state_dir}",
            producer=self.producer.stats.as_dict if self.producer is not None else None,
            components=local.components,
            footer="Ctrl-C stops everything"
            + (f" · bounded run of {options.duration:.0f}s" if options.duration else ""),
            tty=options.tty,
            prometheus=self.view.figures,
            features=probe.lines if probe is not None else None,
        )
        began = time.monotonic()
        deadline = began + options.duration if options.duration else None
        # Plain output (no terminal console) gets the CDC flow, the features and the approvals as lines.
        lines = _PlainLines(plain=options.tty is False)
        cdc, actions = local.cdc, local.actions
        while not self.signals.requested.is_set():
            console.tick()
            if cdc is not None:
                lines.every(5.0, "cdc", lambda: cdc.lines()[-1])
            if probe is not None:
                lines.every(5.0, "features", lambda: "features: " + " | ".join(probe.lines()), first=5.0)
            if actions is not None:
                lines.every(5.0, "actions", lambda: actions.lines()[1])
            self.crashed = local.dead()
            if self.crashed:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            self.signals.requested.wait(0.1)
        if self.crashed:
            console.close()
            self.say(f"{self.crashed[0]}: stopping everything")
        traffic_seconds = time.monotonic() - began
        if self.producer is not None:
            # With a part down nothing more will be delivered: don't wait for it.
            remaining = self.producer.stop(flush_timeout=1.0 if self.crashed else 10.0)
            if remaining:
                self.say(f"{remaining} records were still queued when the producer stopped")
            stats = self.producer.stats
            if stats.started_at and stats.stopped_at:
                traffic_seconds = stats.stopped_at - stats.started_at
        if options.duration and options.apps and not self.signals.requested.is_set() and not self.crashed:
            # Plain output goes on while the groups catch up (lag and latency as the backlog drains); a
            # terminal console gives the screen back to the drain's messages.
            if console.tty:
                console.close()
            self.crashed = _drain(
                self.monitor,
                options.drain_timeout,
                self.say,
                self.signals,
                local.dead,
                (lambda: None) if console.tty else console.tick,
            )
        console.close()
        return traffic_seconds

    def finish(self, traffic_seconds: float) -> None:
        """The run's summary: printed, and written to the state dir for the next person to read."""
        assert self.monitor is not None and self.view is not None
        local = self.local
        if self.probe is not None:
            self.probe.stop()
        snap = self.monitor.snapshot()
        self.monitor.stop(timeout=2.0 if self.crashed else 15.0)
        self.view.stop()
        prometheus_end = _prometheus_summary(local.prometheus, self.view, cdc=local.cdc is not None)
        summary = RunSummary(
            stack=local.platform.stack,
            seconds=traffic_seconds,
            producer=self.producer.stats.as_dict() if self.producer is not None else None,
            totals=snap.totals,
            latency=snap.latency_run,
            dead_letter_reasons=snap.dead_letter_reasons,
            start_seconds=local.start_seconds,
            resumed=local.resumed,
            final_lags={lag.group: lag.lag for lag in snap.lags},
            prometheus=prometheus_end,
        )
        summary_data = summary.as_dict()
        if local.cdc is not None:
            summary_data["cdc"] = dataclasses.asdict(local.cdc.stats)
        (local.state_dir / SUMMARY_FILE).write_text(json.dumps(summary_data, indent=2) + "\n")
        print(format_summary(summary), flush=True)
        if local.cdc is not None:
            print(f"  {local.cdc.lines()[-1]}", flush=True)

    def stop(self) -> None:
        """Stop the clients, then the platform's parts in reverse order; safe after any partial start."""
        if self.console is not None:
            self.console.close()
        if self.probe is not None:
            self.probe.stop()
        if self.producer is not None:
            with contextlib.suppress(Exception):
                self.producer.stop(flush_timeout=1.0 if self.crashed else 2.0)
        if self.monitor is not None:
            self.monitor.stop(timeout=2.0 if self.crashed else 15.0)
        if self.view is not None:
            self.view.stop()
        self.local.stop()

    def report_stopped(self) -> None:
        left = [f"{p.name} (pid {p.pid})" for p in running_processes()]
        self.say(
            "stopped: nothing left running" if not left else f"stopped, but still running: {', '.join(left)}"
        )
        if self.crashed:
            print(f"error: stopped because {'; then '.join(self.crashed)}", file=sys.stderr, flush=True)


class _PlainLines:
    """Lines printed every so often when the console does not redraw a terminal (and nothing otherwise)."""

    def __init__(self, *, plain: bool) -> None:
        self.plain = plain
        self._next: dict[str, float] = {}

    def every(self, seconds: float, name: str, line: Callable[[], str], first: float = 0.0) -> None:
        if not self.plain:
            return
        now = time.monotonic()
        due = self._next.setdefault(name, now + first)
        if now >= due:
            print(line(), flush=True)
            self._next[name] = now + seconds


def _client_logger(path: Path) -> logging.Logger:
    """A logger for the platform's own Kafka clients (librdkafka's log lines) that writes only to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(f"headwater.local.clients.{path}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    if not logger.handlers:
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    return logger


def _startup_errors() -> tuple[type[Exception], ...]:
    """Failures a person fixes (a port, a log to read): printed as one message rather than a traceback."""
    from headwater.local.flink import LocalFlinkError

    return (
        LocalKafkaError,
        ProvisionError,
        RegistryStartError,
        ProcessError,
        LocalUpError,
        LocalFlinkError,
        RegistryError,
        LocalPrometheusError,
        LagExporterError,
        LocalPostgresError,
        LocalConnectError,
        LocalSlotExporterError,
    )


def default_prometheus_port() -> int:
    """The local Prometheus's port: HEADWATER_PROMETHEUS_PORT or 9090."""
    text = os.environ.get(PROMETHEUS_PORT_ENV)
    if text is None:
        return DEFAULT_PROMETHEUS_PORT
    try:
        return _port(text)
    except ValueError:
        raise LocalUpError(
            f"{PROMETHEUS_PORT_ENV} = {text!r} is not valid; allowed: a TCP port 1-65535"
        ) from None


def _prometheus_summary(
    prometheus: LocalPrometheus, view: PrometheusView, *, cdc: bool
) -> dict[str, Any] | None:
    """What Prometheus holds at the end of a run: lag, latency quantiles, alerts, and how often it scraped."""
    if not prometheus.running():
        return None
    try:
        figures = view.poll()
        scrapes = {
            r["metric"].get("job", "?"): int(float(r["value"][1]))
            for r in prometheus.query("sum by (job) (count_over_time(up[1d]))")
        }
        answered = {
            r["metric"].get("job", "?"): int(float(r["value"][1]))
            for r in prometheus.query("sum by (job) (sum_over_time(up[1d]))")
        }
        # Every series the stack's alerts and dashboard read: how many of each this run's Prometheus holds.
        series = {
            name: len(prometheus.query(f"last_over_time({name}[1d])"))
            for name in sorted(queried_metrics(prometheus.platform, cdc=cdc))
        }
    except (OSError, LocalPrometheusError, ValueError) as exc:
        return {"url": prometheus.url, "error": str(exc)}
    return {
        **figures.as_dict(),
        "scrapes": dict(sorted(scrapes.items())),
        "scrapes_answered": dict(sorted(answered.items())),
        "queried_series": series,
        "started_seconds": None
        if prometheus.started_seconds is None
        else round(prometheus.started_seconds, 2),
        "polls": view.polls,
    }


def _triage_config(kafka: LocalKafka, platform: Platform, logger: logging.Logger) -> dict[str, Any] | None:
    """librdkafka settings of the principal the catalog declares as the dead letters' reader, if any."""
    triage = Topology.of(platform).triage
    return {**client_config(kafka, triage[0]), "logger": logger} if triage else None


def _registry_auth(registry: LocalRegistry) -> Callable[[str], tuple[str, str] | None]:
    """A principal's registry credentials (it reads schemas as itself)."""
    return lambda principal: (principal, registry.password(principal))


def _producer(local: LocalPlatform, settings: ProducerSettings, logger: logging.Logger) -> SampleProducer:
    assert local.registry is not None
    topology = Topology.of(local.platform)
    schema = next(c.schema for c in load_contracts(local.platform) if c.topic == topology.raw)
    # The producer looks its schema id up as itself (a reader); the platform registered the contracts.
    serializer = JsonSerializer(local.registry.client(topology.producer), topology.raw, schema)
    config = {**client_config(local.kafka, topology.producer), "logger": logger}
    return SampleProducer(config, topology.raw, serializer, settings, state_dir=local.state_dir)


def _drain(
    monitor: Monitor,
    timeout: float,
    say: Progress,
    signals: StopSignals,
    dead: Callable[[], list[str]],
    tick: Callable[[], None] = lambda: None,
) -> list[str]:
    """After a bounded run's traffic: wait (up to `timeout`) until every watched group has caught up.

    Caught up must hold over two more rounds of offset polling: an app commits its source offsets and its
    output transaction at the same checkpoint, in no fixed order, so one round can see the first before the
    second has moved the output's end offsets. Returns what died meanwhile (empty: nothing), which ends
    the wait at once.
    """
    say(f"traffic stopped; waiting up to {timeout:.0f}s for the consumer groups to catch up")
    deadline = time.monotonic() + timeout
    behind = monitor.behind()
    settled_at: int | None = None
    while time.monotonic() < deadline and not signals.requested.is_set():
        crashed = dead()
        if crashed:
            say(f"{crashed[0]}: stopping everything")
            return crashed
        behind = monitor.behind()
        if behind:
            settled_at = None
        elif settled_at is None:
            settled_at = monitor.polls
        elif monitor.polls >= settled_at + 2:
            say("every consumer group has caught up")
            return []
        tick()
        signals.requested.wait(0.25)
    say(
        "not caught up in time: " + ", ".join(f"{g} lag {'-' if v is None else v}" for g, v in behind.items())
    )
    return []


# ---- status -------------------------------------------------------------------------------------------------


def status(stack: str, state_dir: Path | None = None) -> int:
    """Print what runs for a stack's state dir, with pids and ports; exit 0 when running, 3 when not."""
    platform = load_platform(stack)
    state = (state_dir or default_state_dir(platform.stack)).resolve()
    data = read_runtime(state)
    if data is None or not _alive(data.get("pid")):
        print(f"stack {stack}: not running (state dir {state})")
        _describe_state(state)
        return 3
    print(f"stack {stack}: running as pid {data['pid']} since {data.get('started_at')} (state dir {state})")
    kafka = data.get("kafka") or {}
    ports = kafka.get("ports") or {}
    registry = data.get("registry")
    flink = data.get("flink") or {}
    rows: list[tuple[str, Any, str]] = [
        (
            "kafka",
            kafka.get("pid"),
            "  ".join(
                f"{name} {port} {'listening' if listening(port) else 'closed'}"
                for name, port in ports.items()
            ),
        )
    ]
    if registry:
        up = "listening" if listening(int(registry.get("port", 0))) else "closed"
        rows.append(("schema registry", registry.get("pid"), f"{registry.get('url')} {up}"))
    rows += [(f"flink {name}", job.get("pid"), f"log {job.get('log')}") for name, job in flink.items()]
    prom = data.get("prometheus")
    if prom:
        up = "listening" if listening(int(prom.get("port", 0))) else "closed"
        rows.append(("prometheus", prom.get("pid"), f"{prom.get('url')} {up}"))
    gate = data.get("approval_gate")
    if gate:
        rows.append(("approval gate", gate.get("pid"), f"log {gate.get('log')}"))
    page = data.get("approvers_page")
    if page:
        up = "listening" if listening(int(page.get("port", 0))) else "closed"
        rows.append(
            (
                "approvers' page",
                page.get("pid"),
                f"{page.get('url')} {up}  sign-in names and passwords in {page.get('credentials')}; "
                f"trust {page.get('ca')}",
            )
        )
    # Columns as wide as their longest entry, two spaces apart, whatever the app names.
    name_w = max(len(name) for name, _, _ in rows)
    pid_w = max(len(f"pid {pid}") for _, pid, _ in rows)
    for name, pid, detail in rows:
        print(f"  {name:<{name_w}}  {f'pid {pid}':<{pid_w}}  {'up' if _alive(pid) else 'DOWN':<4}  {detail}")
    return 0


def _describe_state(state: Path) -> None:
    if not state.is_dir():
        print("  no state yet: `headwater local up` creates it")
        return
    broker = (state / "kafka" / "data" / "meta.properties").is_file()
    print(f"  broker data: {'kept' if broker else 'none'}")
    summary = state / SUMMARY_FILE
    if summary.is_file():
        with contextlib.suppress(OSError, ValueError):
            last = json.loads(summary.read_text())
            lat = last.get("latency_ms", {})
            print(
                f"  last run: {last.get('seconds')}s, totals {last.get('totals')}, latency p50 {lat.get('p50')} ms "
                f"p99 {lat.get('p99')} ms"
            )


# ---- command line -------------------------------------------------------------------------------------------


def _number(text: str, allowed: str, ok: Callable[[float], bool]) -> float:
    """A finite number for which `ok` holds; else an argparse error saying what is allowed."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not ok(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not valid; allowed: {allowed}")
    return value


def _seconds(text: str) -> float:
    return _number(text, "a number of seconds > 0, like 60 or 0.5", lambda v: v > 0)


def _rate(text: str) -> float:
    return _number(text, "a number of events per second > 0, like 20 or 0.5", lambda v: v > 0)


def _share(text: str) -> float:
    return _number(text, "a share from 0 to 1, like 0.05", lambda v: 0.0 <= v <= 1.0)


def _port(text: str) -> int:
    if not text.strip().isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not valid; allowed: a TCP port 1-65535")
    return int(text)


def _cmd_up(args: argparse.Namespace) -> int:
    overrides = {
        name: value
        for name, value in (
            ("sasl", args.kafka_sasl_port),
            ("mtls", args.kafka_mtls_port),
            ("controller", args.kafka_controller_port),
            ("metrics", args.kafka_metrics_port),
        )
        if value is not None
    }
    try:
        ports = dataclasses.replace(KafkaPorts.from_env(), **overrides)
        registry_port = args.registry_port if args.registry_port is not None else default_port()
        prometheus_port = (
            args.prometheus_port if args.prometheus_port is not None else default_prometheus_port()
        )
        settings = (
            None
            if args.no_producer
            else ProducerSettings(
                rate=args.rate,
                malformed_share=args.malformed_share,
                duplicate_share=args.duplicate_share,
                seed=args.seed,
            )
        )
    except (LocalKafkaError, LocalUpError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app_options: dict[str, str] = {}
    if args.feature_window is not None:
        app_options["window-size-ms"] = str(int(args.feature_window * 1000))
    if args.out_of_orderness is not None:
        app_options["max-out-of-orderness-ms"] = str(int(args.out_of_orderness * 1000))
    flags = {
        "sasl": ("--kafka-sasl-port", args.kafka_sasl_port, KafkaPorts.ENV["sasl"]),
        "mtls": ("--kafka-mtls-port", args.kafka_mtls_port, KafkaPorts.ENV["mtls"]),
        "controller": ("--kafka-controller-port", args.kafka_controller_port, KafkaPorts.ENV["controller"]),
        "registry": ("--registry-port", args.registry_port, REGISTRY_PORT_ENV),
        "prometheus": ("--prometheus-port", args.prometheus_port, PROMETHEUS_PORT_ENV),
    }
    # Name the setting the person used: the flag if given, else the environment variable if set, else both.
    port_settings = {
        name: f"{flag} <port>"
        if value is not None
        else f"{env}=<port>"
        if env in os.environ
        else f"{flag} <port> (or {env}=<port>)"
        for name, (flag, value, env) in flags.items()
    }
    options = UpOptions(
        stack=args.stack,
        app_options=app_options,
        port_settings=port_settings,
        restore_from=tuple(args.restore_from or ()),
        fresh=tuple(args.fresh or ()),
        state_dir=Path(args.state_dir) if args.state_dir else None,
        duration=args.duration,
        producer=settings,
        kafka_ports=ports,
        registry_port=registry_port,
        prometheus_port=prometheus_port,
        tty=False if args.plain else None,
        cdc=not args.no_cdc,
        apps=not args.no_apps,
        actions=not args.no_actions,
    )
    return up(options)


def _cmd_status(args: argparse.Namespace) -> int:
    return status(args.stack, Path(args.state_dir) if args.state_dir else None)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], stacks: list[str]) -> None:
    """Add `local up` and `local status` to the `headwater` parser."""
    local = sub.add_parser("local", help="the whole platform on this machine: real Kafka, registry, Flink")
    lsub = local.add_subparsers(dest="local_command", required=True)

    p = lsub.add_parser(
        "up",
        help="start broker, registry, contracts, Flink apps, a sample producer and a live console; Ctrl-C stops all",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--stack", default="local", choices=stacks)
    p.add_argument(
        "--state-dir", help="where state lives (default: .local/<stack>/); a second start resumes it"
    )
    p.add_argument(
        "--duration",
        type=_seconds,
        metavar="N",
        help="seconds of traffic, then stop everything and print a summary (default: run until Ctrl-C)",
    )
    p.add_argument(
        "--rate", type=_rate, default=20.0, metavar="R", help="sample events per second (default 20)"
    )
    p.add_argument(
        "--malformed-share", type=_share, default=0.05, help="share of malformed records (default 0.05)"
    )
    p.add_argument(
        "--duplicate-share", type=_share, default=0.03, help="share of re-sent duplicates (default 0.03)"
    )
    p.add_argument("--seed", type=int, help="random seed of the sample producer")
    p.add_argument(
        "--no-producer", action="store_true", help="start the platform without the sample producer"
    )
    p.add_argument(
        "--no-apps", action="store_true", help="start the platform without the Flink apps of the catalog"
    )
    p.add_argument(
        "--no-cdc",
        action="store_true",
        help="start the platform without the outbox sources (PostgreSQL, Kafka Connect, the sample service)",
    )
    p.add_argument(
        "--no-actions",
        action="store_true",
        help="start the platform without the approval gate and the sample agents proposing actions",
    )
    p.add_argument(
        "--feature-window",
        type=_seconds,
        metavar="S",
        help="feature window length in seconds for this run (default: the app's, 60)",
    )
    p.add_argument(
        "--out-of-orderness",
        type=_seconds,
        metavar="S",
        help="how far behind the newest event time the apps' watermarks stay, in seconds (default: the apps', 30)",
    )
    p.add_argument("--plain", action="store_true", help="plain periodic lines even on a terminal")
    p.add_argument(
        "--restore-from",
        action="append",
        metavar="[APP=]SNAPSHOT",
        help="resume APP from this retained checkpoint or savepoint instead of its newest one (what came after "
        "it is replayed); repeat per app. The start names this option when the newest snapshot is damaged",
    )
    p.add_argument(
        "--fresh",
        action="append",
        nargs="?",
        const="*",
        metavar="APP",
        help="start APP (without a value: every app) without state, leaving its retained snapshots unused",
    )
    p.add_argument("--kafka-sasl-port", type=_port, help=f"[env {KafkaPorts.ENV['sasl']}] default 9093")
    p.add_argument("--kafka-mtls-port", type=_port, help=f"[env {KafkaPorts.ENV['mtls']}] default 9094")
    p.add_argument(
        "--kafka-controller-port", type=_port, help=f"[env {KafkaPorts.ENV['controller']}] default 9095"
    )
    p.add_argument(
        "--kafka-metrics-port",
        type=_port,
        help=f"[env {KafkaPorts.ENV['metrics']}] the broker's Prometheus endpoint, default 9404",
    )
    p.add_argument("--registry-port", type=_port, help="[env HEADWATER_REGISTRY_PORT] default 8181")
    p.add_argument("--prometheus-port", type=_port, help=f"[env {PROMETHEUS_PORT_ENV}] default 9090")
    p.set_defaults(func=_cmd_up)

    p = lsub.add_parser("status", help="what of the local platform is running, with pids and ports")
    p.add_argument("--stack", default="local", choices=stacks)
    p.add_argument("--state-dir", help="state dir of the run (default: .local/<stack>/)")
    p.set_defaults(func=_cmd_status)
