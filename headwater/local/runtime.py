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
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import psutil

from headwater import jvm
from headwater.config import load_platform
from headwater.contracts.model import load_contracts
from headwater.contracts.registry import RegistryClient, RegistryError
from headwater.contracts.serde import JsonSerializer
from headwater.local.console import (
    Console,
    Monitor,
    RunSummary,
    Topology,
    format_summary,
)
from headwater.local.kafka import KafkaPorts, LocalKafka, LocalKafkaError, default_state_dir
from headwater.local.ports import HOST, listening, port_free
from headwater.local.process import ProcessError, Progress, running_processes, stderr_progress, stop_all
from headwater.local.producer import ProducerSettings, SampleProducer, shares_text
from headwater.local.provision import ProvisionError, client_config, provision
from headwater.local.registry import (
    KafkaSqlStorage,
    LocalRegistry,
    RegistryStartError,
    default_port,
)
from headwater.spec import Platform

if TYPE_CHECKING:
    from headwater.local.flink import LocalFlinkJob

RUNTIME_FILE = "runtime.json"
SUMMARY_FILE = "last-run.json"
FLINK_START_TIMEOUT = 240.0


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
    app_options: Mapping[str, str] = dataclasses.field(
        default_factory=dict
    )  # e.g. {"window-size-ms": "10000"}
    drain_timeout: float = 30.0  # after a bounded run's traffic: how long to wait for the apps to catch up
    tty: bool | None = None  # None: redraw in place when stdout is a terminal


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
    ) -> None:
        self.platform = platform
        # App options beyond the spec's (e.g. a short feature window for a demo), as HEADWATER_<OPTION>
        # variables, which the apps read for every option their arguments leave unset.
        self.app_options = {_option_env(k): v for k, v in (app_options or {}).items()}
        self.state_dir = state_dir.resolve()
        self.progress = stderr_progress("local")
        self.kafka = LocalKafka(platform, self.state_dir, kafka_ports or KafkaPorts.from_env())
        self.registry_port = default_port() if registry_port is None else registry_port
        self.registry: LocalRegistry | None = None
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
        self.kafka.ports.check_free()
        if not 0 < self.registry_port < 65536:
            raise LocalUpError(
                f"registry port = {self.registry_port!r} is not valid; allowed: a TCP port 1-65535"
            )
        if self.registry_port in dataclasses.astuple(self.kafka.ports):
            raise LocalUpError(
                f"registry port {self.registry_port} is also a Kafka port ({self.kafka.ports}); choose another "
                "with --registry-port or HEADWATER_REGISTRY_PORT"
            )
        if not port_free(self.registry_port):
            raise LocalUpError(
                f"port {self.registry_port} on {HOST} is already in use, and the schema registry needs it; "
                "set another with --registry-port or HEADWATER_REGISTRY_PORT=<port>, or stop the process "
                f"listening there (`ss -ltnp 'sport = :{self.registry_port}'`)"
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

        done = step(say, "starting the schema registry (KafkaSQL storage)")
        self.registry = LocalRegistry(
            self.state_dir / "registry",
            self.registry_port,
            kafka=KafkaSqlStorage.for_local_kafka(self.kafka),
        )
        self.registry.start()
        self.start_seconds["registry"] = done()
        self._write_runtime()

        done = step(say, "registering the catalog's contracts")
        register_contracts(self.platform, self.registry.client(), stderr_progress("contracts"))
        self.start_seconds["contracts"] = done()

        self.start_jobs()
        self._write_runtime()

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
            )
            with _environment(self.app_options):
                job.start(restore=True)
            self.jobs[app.name] = job
            self.resumed[app.name] = str(job.restored_from) if job.restored_from else None
        for name, job in self.jobs.items():
            job.wait_running(FLINK_START_TIMEOUT)
            self.start_seconds[f"flink {name}"] = time.monotonic() - started
        done()

    def stop(self) -> None:
        """Stop everything that was started, dependents first; keeps going past a failing stop."""
        say = self.progress
        for name, job in reversed(list(self.jobs.items())):
            with _reporting(say, f"stopping Flink app {name}"):
                job.stop()
        self.jobs.clear()
        if self.registry is not None:
            with _reporting(say, "stopping the schema registry"):
                self.registry.stop()
            self.registry = None
        with _reporting(say, "stopping the Kafka broker"):
            self.kafka.stop()
        with contextlib.suppress(FileNotFoundError):
            self.runtime_file.unlink()

    def dead(self) -> list[str]:
        """What should be running but is not, with where to look."""
        out = []
        if not self.kafka.running():
            out.append(f"the Kafka broker exited (log: {self.kafka.log_file})")
        if self.registry is not None and not self.registry.running():
            out.append(f"the schema registry exited (log: {self.registry.log_file})")
        for name, job in self.jobs.items():
            if not job.running():
                out.append(f"Flink app {name} exited (log: {job.log_file})")
        return out

    def components(self) -> list[str]:
        """One line per process, for the console."""
        k = self.kafka
        width = max([len("schema registry"), *(len(f"flink {name}") for name in self.jobs)]) + 2
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
        self.runtime_file.write_text(json.dumps(data, indent=2) + "\n")


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


# ---- signals ------------------------------------------------------------------------------------------------


class _Signals:
    """SIGINT/SIGTERM while starting: abort the start (KeyboardInterrupt); while running: stop in order.

    A second signal stops every process at once and ends the program.
    """

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.signum: int | None = None
        self.starting = True
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            current = signal.getsignal(sig)
            if current is signal.SIG_IGN:  # started to ignore it (nohup, background job): leave it so
                continue
            self._previous[sig] = current
            signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested.is_set():
            print("second signal: stopping every process now", file=sys.stderr, flush=True)
            stop_all()
            os._exit(128 + signum)
        self.requested.set()
        self.signum = signum
        print(
            f"\n{signal.Signals(signum).name}: stopping the local platform (again to stop at once)",
            file=sys.stderr,
            flush=True,
        )
        if self.starting:
            raise KeyboardInterrupt

    @property
    def exit_code(self) -> int:
        return 128 + self.signum if self.signum else 0


# ---- the command ----------------------------------------------------------------------------------------------


def up(options: UpOptions) -> int:
    """Run the platform; return the exit status (0: a bounded run finished, 128+N: stopped by signal N)."""
    platform = load_platform(options.stack)
    state_dir = (options.state_dir or default_state_dir(platform.stack)).resolve()
    say = stderr_progress("local")
    try:
        Topology.of(platform)  # the console's topics must exist in this stack before anything starts
        local = LocalPlatform(
            platform,
            state_dir,
            kafka_ports=options.kafka_ports,
            registry_port=options.registry_port,
            app_options=options.app_options,
        )
        local.preflight()
    except (LocalUpError, LocalKafkaError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    signals = _Signals()
    signals.install()
    producer: SampleProducer | None = None
    monitor: Monitor | None = None
    console: Console | None = None
    status = 0
    try:
        say(f"stack {platform.stack}, state in {state_dir}")
        local.start()
        assert local.registry is not None
        since_ms = int(time.time() * 1000)
        topology = Topology.of(platform)
        monitor = Monitor(
            platform,
            client_config(local.kafka, topology.reader),
            local.kafka.admin_config(),
            local.registry.url,
            since_ms=since_ms,
            triage_config=_triage_config(local.kafka, platform),
        )
        monitor.start()  # assigned first, so an interrupted start still stops its readers
        if options.producer is not None:
            producer = _producer(local, options.producer)
            say(f"sample producer as {topology.producer}: {shares_text(options.producer)}")
            producer.start()
        signals.starting = False
        if signals.requested.is_set():
            raise KeyboardInterrupt
        console = Console(
            monitor,
            title=f"headwater local · stack {platform.stack} · {state_dir}",
            producer=producer.stats.as_dict if producer is not None else None,
            components=local.components,
            footer="Ctrl-C stops everything"
            + (f" · bounded run of {options.duration:.0f}s" if options.duration else ""),
            tty=options.tty,
        )
        began = time.monotonic()
        deadline = began + options.duration if options.duration else None
        while not signals.requested.is_set():
            console.tick()
            dead = local.dead()
            if dead:
                console.close()
                print("error: " + "; ".join(dead), file=sys.stderr)
                status = 1
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            signals.requested.wait(0.1)
        console.close()
        traffic_seconds = time.monotonic() - began
        if producer is not None:
            remaining = producer.stop()
            if remaining:
                say(f"{remaining} records were still queued when the producer stopped")
            stats = producer.stats
            if stats.started_at and stats.stopped_at:
                traffic_seconds = stats.stopped_at - stats.started_at
        if options.duration and not signals.requested.is_set() and status == 0:
            _drain(monitor, options.drain_timeout, say, signals)
        snap = monitor.snapshot()
        monitor.stop()
        summary = RunSummary(
            stack=platform.stack,
            seconds=traffic_seconds,
            producer=producer.stats.as_dict() if producer is not None else None,
            totals=snap.totals,
            latency=snap.latency_run,
            dead_letter_reasons=snap.dead_letter_reasons,
            start_seconds=local.start_seconds,
            resumed=local.resumed,
            final_lags={lag.group: lag.lag for lag in snap.lags},
        )
        (state_dir / SUMMARY_FILE).write_text(json.dumps(summary.as_dict(), indent=2) + "\n")
        print(format_summary(summary), flush=True)
        if signals.requested.is_set():
            status = signals.exit_code
    except KeyboardInterrupt:
        status = signals.exit_code or 130
    except _startup_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        status = 1
    finally:
        signals.starting = False  # from here a first signal is noted; only a second cuts the stop short
        if console is not None:
            console.close()
        if producer is not None:
            with contextlib.suppress(Exception):
                producer.stop(flush_timeout=2.0)
        if monitor is not None:
            monitor.stop()
        local.stop()
        signals.restore()
        left = [f"{p.name} (pid {p.pid})" for p in running_processes()]
        say("stopped: nothing left running" if not left else f"stopped, but still running: {', '.join(left)}")
    return status


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
    )


def _triage_config(kafka: LocalKafka, platform: Platform) -> dict[str, Any] | None:
    """librdkafka settings of the principal the catalog declares as the dead letters' reader, if any."""
    triage = Topology.of(platform).triage
    return client_config(kafka, triage[0]) if triage else None


def _producer(local: LocalPlatform, settings: ProducerSettings) -> SampleProducer:
    assert local.registry is not None
    topology = Topology.of(local.platform)
    schema = next(c.schema for c in load_contracts(local.platform) if c.topic == topology.raw)
    serializer = JsonSerializer(local.registry.client(), topology.raw, schema)
    return SampleProducer(client_config(local.kafka, topology.producer), topology.raw, serializer, settings)


def _drain(monitor: Monitor, timeout: float, say: Progress, signals: _Signals) -> None:
    """After a bounded run's traffic: wait (up to `timeout`) until every watched group has caught up.

    Caught up must hold over two more rounds of offset polling: an app commits its source offsets and its
    output transaction at the same checkpoint, in no fixed order, so one round can see the first before the
    second has moved the output's end offsets.
    """
    say(f"traffic stopped; waiting up to {timeout:.0f}s for the consumer groups to catch up")
    deadline = time.monotonic() + timeout
    behind = monitor.behind()
    settled_at: int | None = None
    while time.monotonic() < deadline and not signals.requested.is_set():
        behind = monitor.behind()
        if behind:
            settled_at = None
        elif settled_at is None:
            settled_at = monitor.polls
        elif monitor.polls >= settled_at + 2:
            say("every consumer group has caught up")
            return
        signals.requested.wait(0.25)
    say(
        "not caught up in time: " + ", ".join(f"{g} lag {'-' if v is None else v}" for g, v in behind.items())
    )


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
    print(
        f"  kafka            pid {kafka.get('pid')} {'up' if _alive(kafka.get('pid')) else 'DOWN'}  "
        + "  ".join(
            f"{name} {port} {'listening' if listening(port) else 'closed'}" for name, port in ports.items()
        )
    )
    registry = data.get("registry")
    if registry:
        print(
            f"  schema registry  pid {registry.get('pid')} {'up' if _alive(registry.get('pid')) else 'DOWN'}  "
            f"{registry.get('url')} {'listening' if listening(int(registry.get('port', 0))) else 'closed'}"
        )
    for name, job in (data.get("flink") or {}).items():
        print(
            f"  flink {name:<11}pid {job.get('pid')} {'up' if _alive(job.get('pid')) else 'DOWN'}  log {job.get('log')}"
        )
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


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(text)
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError(text)
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise ValueError(text)
    return value


def _cmd_up(args: argparse.Namespace) -> int:
    overrides = {
        name: value
        for name, value in (
            ("sasl", args.kafka_sasl_port),
            ("mtls", args.kafka_mtls_port),
            ("controller", args.kafka_controller_port),
        )
        if value is not None
    }
    try:
        ports = dataclasses.replace(KafkaPorts.from_env(), **overrides)
        registry_port = args.registry_port if args.registry_port is not None else default_port()
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
    except (LocalKafkaError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app_options: dict[str, str] = {}
    if args.feature_window is not None:
        app_options["window-size-ms"] = str(int(args.feature_window * 1000))
    if args.out_of_orderness is not None:
        app_options["max-out-of-orderness-ms"] = str(int(args.out_of_orderness * 1000))
    options = UpOptions(
        stack=args.stack,
        app_options=app_options,
        state_dir=Path(args.state_dir) if args.state_dir else None,
        duration=args.duration,
        producer=settings,
        kafka_ports=ports,
        registry_port=registry_port,
        tty=False if args.plain else None,
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
        "--rate", type=_seconds, default=20.0, metavar="R", help="sample events per second (default 20)"
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
    p.add_argument("--kafka-sasl-port", type=_port, help=f"[env {KafkaPorts.ENV['sasl']}] default 9093")
    p.add_argument("--kafka-mtls-port", type=_port, help=f"[env {KafkaPorts.ENV['mtls']}] default 9094")
    p.add_argument(
        "--kafka-controller-port", type=_port, help=f"[env {KafkaPorts.ENV['controller']}] default 9095"
    )
    p.add_argument("--registry-port", type=_port, help="[env HEADWATER_REGISTRY_PORT] default 8181")
    p.set_defaults(func=_cmd_up)

    p = lsub.add_parser("status", help="what of the local platform is running, with pids and ports")
    p.add_argument("--stack", default="local", choices=stacks)
    p.add_argument("--state-dir", help="state dir of the run (default: .local/<stack>/)")
    p.set_defaults(func=_cmd_status)
