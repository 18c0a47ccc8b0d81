"""The PyFlink apps on this machine: each app a real Flink job on its own local MiniCluster, as its principal.

    job = LocalFlinkJob(platform, "agent-events", kafka, registry.url, state_dir)
    job.start()              # resumes from the newest completed snapshot, checked (headwater.local.snapshots)
    job.wait_running(120)    # until the job runs and has completed its first checkpoint
    job.kill()               # SIGKILL of the whole process tree: a crash, for failure tests
    job.stop()               # stop with a savepoint, or SIGTERM if that fails

Each job is `.venv-flink/bin/python -m <app.module>` (the module from the spec) supervised by
`headwater.local.process`: its own process group (the Python driver, the JVM running the MiniCluster and
the Python workers it starts), a log file under `<state>/logs/`, stopped at exit and on Ctrl-C.

Its arguments are those the Kubernetes deployment gets (`components.flink_application.app_arguments`:
topics, group and transactional-id prefix from the principal's flows), pointed at the local broker and
registry: the principal's listener and its `.flink.properties` (the JAAS login class shaded inside the
Flink Kafka connector). The Flink settings the operator would set come as `--flink-conf`, from the same
derivation (`headwater.flink_conf`): RocksDB with incremental checkpoints under
`<state>/flink/<app>/checkpoints`, retained on cancellation, exactly once, the checkpoint interval of the
stack, the Python execution mode and bundles; plus `execution.state-recovery.path` when a retained
checkpoint or savepoint exists, so a second start carries on where the first one stopped. Python operators
run in worker processes that the MiniCluster starts, as task managers do on Kubernetes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from headwater import flink_conf, jvm
from headwater.config import ROOT
from headwater.kafka_config import format_properties
from headwater.local.certs import write_private
from headwater.local.kafka import LocalKafka
from headwater.local.ports import HOST, free_port
from headwater.local.process import Progress, Supervised, stderr_progress
from headwater.local.provision import bootstrap_servers, properties_file
from headwater.local.snapshots import SnapshotChoice
from headwater.local.snapshots import choose as choose_snapshot
from headwater.spec import App, Platform

FLINK_PYTHON = ROOT / ".venv-flink" / "bin" / "python"
START_TIMEOUT = 180.0
STOP_TIMEOUT = 60.0
# Flink's own logs of this many earlier starts are kept next to the current one (`<name>.log.1` the newest).
LOGS_KEPT = 5
KILL_TIMEOUT = 15.0


class LocalFlinkError(RuntimeError):
    """A local Flink job cannot be configured, started, reached or stopped; the message says why."""


def _replace_values(args: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """`args` with the value after each flag in `values` replaced; every flag must occur once."""
    out = list(args)
    for flag, value in values.items():
        positions = [i for i, a in enumerate(out) if a == flag]
        if len(positions) != 1 or positions[0] + 1 >= len(out):
            raise LocalFlinkError(f"expected {flag} exactly once, with a value, in the app arguments {out}")
        out[positions[0] + 1] = value
    return out


def keep_previous_logs(folder: Path, kept: int = LOGS_KEPT) -> None:
    """Move each `<name>.log` in `folder` to `<name>.log.1` (and older ones one further, dropping those past
    `kept`): Flink starts every run with a fresh file of the same name, and the log of a run that was killed
    is the one needed to find out why."""
    for log in folder.glob("*.log"):
        oldest = log.with_name(f"{log.name}.{kept}")
        oldest.unlink(missing_ok=True)
        for n in range(kept - 1, 0, -1):
            older = log.with_name(f"{log.name}.{n}")
            if older.exists():
                older.rename(log.with_name(f"{log.name}.{n + 1}"))
        log.rename(log.with_name(f"{log.name}.1"))


def completed_snapshots(folder: Path) -> list[Path]:
    """Completed checkpoints (`<job>/chk-N/`) and savepoints (`savepoint-*/`) under `folder`, oldest first.

    A snapshot is complete once its `_metadata` file exists: Flink writes it last, and on a local file
    system into a temporary file that it renames, so a crash leaves no half-written one. Ordered by that
    file's modification time, since checkpoint numbers restart with each job that starts without state.
    """
    if not folder.is_dir():
        return []
    found = [
        m
        for pattern in ("*/chk-*/_metadata", "savepoint-*/_metadata")
        for m in folder.glob(pattern)
        if m.is_file() and m.stat().st_size > 0
    ]
    return [m.parent for m in sorted(found, key=lambda m: (m.stat().st_mtime_ns, str(m)))]


class LocalFlinkJob:
    """One app of the spec as a local Flink job.

    `restart_attempts`: how often Flink restarts the job after a task failure before giving up (and the
    process exits); 0 gives up at once, which tests want. `flink_conf` adds or overrides Flink settings.
    """

    def __init__(
        self,
        platform: Platform,
        app_name: str,
        kafka: LocalKafka,
        registry_url: str,
        state_dir: Path,
        progress: Progress | None = None,
        *,
        restart_attempts: int = 3,
        flink_conf: Mapping[str, str] | None = None,
        python: Path | None = None,
        registry_user_info: str | None = None,
    ) -> None:
        self.platform = platform
        self.app = self._app(platform, app_name)
        self.kafka = kafka
        self.registry_url = registry_url
        # `user:password` at the schema registry (the app reads schemas as itself), or None: anonymous.
        self.registry_user_info = registry_user_info
        self.state_dir = Path(state_dir).resolve()
        self.progress = progress or stderr_progress(f"flink:{app_name}")
        if restart_attempts < 0:
            raise LocalFlinkError(f"restart_attempts = {restart_attempts}; allowed: 0 or more")
        self.restart_attempts = restart_attempts
        self.extra_conf = dict(flink_conf or {})
        self.python = python or FLINK_PYTHON
        self.job_dir = self.state_dir / "flink" / self.app.name
        self.checkpoint_dir = self.job_dir / "checkpoints"
        self.savepoint_dir = self.job_dir / "savepoints"
        self.tmp_dir = self.job_dir / "tmp"
        self.log_file = self.state_dir / "logs" / f"flink-{self.app.name}.log"
        # The JVM's own log (job and checkpoint events), which PyFlink would write into its package folder.
        self.flink_log_dir = self.state_dir / "logs" / f"flink-{self.app.name}"
        self.rest_port: int | None = None
        self.metrics_port: int | None = None
        self.restored_from: Path | None = None
        self.snapshot_choice: SnapshotChoice | None = None
        self.job_id: str | None = None
        self.started_at: float | None = None
        self._process: Supervised | None = None

    @staticmethod
    def _app(platform: Platform, name: str) -> App:
        for app in platform.apps:
            if app.name == name:
                return app
        known = ", ".join(a.name for a in platform.apps) or "none"
        raise LocalFlinkError(f"stack {platform.stack} has no app {name!r}; its apps: {known}")

    # --- state --------------------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    def running(self) -> bool:
        return self._process is not None and self._process.running()

    def latest_checkpoint(self) -> Path | None:
        """The newest retained checkpoint or savepoint of this app (its folder), if any."""
        snapshots = completed_snapshots(self.checkpoint_dir) + completed_snapshots(self.savepoint_dir)
        if not snapshots:
            return None
        return max(snapshots, key=lambda p: ((p / "_metadata").stat().st_mtime_ns, str(p)))

    def log_tail(self, lines: int = 40) -> str:
        return self._process.log_tail(lines) if self._process else ""

    @property
    def metrics_target(self) -> str | None:
        """`host:port` of the job's Prometheus reporter, once started."""
        return f"{HOST}:{self.metrics_port}" if self.metrics_port is not None else None

    # --- configuration ------------------------------------------------------------------------------------

    def flink_settings(self, restore_from: Path | None) -> dict[str, str]:
        """The --flink-conf settings of a run (what the operator's flinkConfiguration says on Kubernetes)."""
        flink = self.platform.flink
        conf = {
            # Checkpointing, state backend, Python execution mode, bundles: as the FlinkDeployment says.
            **flink_conf.app_flink_conf(flink, self.checkpoint_dir.as_uri(), self.savepoint_dir.as_uri()),
            "parallelism.default": str(flink.parallelism),
            # The MiniCluster's REST API, on a port of our own: job state, checkpoints, stop with savepoint.
            "rest.address": HOST,
            "rest.bind-address": HOST,
            "rest.port": str(self.rest_port),
            "rest.bind-port": str(self.rest_port),
            # Working files (RocksDB instances, spilled buffers) next to the app's state, not in /tmp.
            "io.tmp.dirs": str(self.tmp_dir),
        }
        if self.restart_attempts == 0:
            conf["restart-strategy.type"] = "none"
        else:
            conf["restart-strategy.type"] = "fixed-delay"
            conf["restart-strategy.fixed-delay.attempts"] = str(self.restart_attempts)
            conf["restart-strategy.fixed-delay.delay"] = "2 s"
        if self.metrics_port is not None:
            # Flink's own reporter from the wheel's plugins/ folder, as on Kubernetes (it has no bind-address
            # setting: it listens on every interface, on a free port).
            conf.update(flink_conf.prometheus_reporter_conf(self.metrics_port))
        if restore_from is not None:
            conf["execution.state-recovery.path"] = restore_from.as_uri()
        conf.update(self.extra_conf)
        return conf

    def arguments(self, restore_from: Path | None) -> list[str]:
        """The app's arguments: those of its Kubernetes deployment, pointed at the local services."""
        from components.flink_application import app_arguments

        props = properties_file(self.kafka, self.app.name, flink=True)
        if not props.is_file():
            raise LocalFlinkError(
                f"{props} does not exist: provision the local broker before starting {self.app.name}"
            )
        if self.registry_user_info is not None:
            # The principal's Flink properties plus its registry credentials, as the init container
            # assembles them on Kubernetes (`schema.registry.*` keys go to the app's registry client).
            text = props.read_text().rstrip("\n") + "\n"
            text += format_properties({"schema.registry.basic.auth.user.info": self.registry_user_info})
            props = self.job_dir / "client.properties"
            write_private(props, text.encode())
        args = _replace_values(
            app_arguments(self.platform, self.app, self.registry_url),
            {
                "--bootstrap-servers": bootstrap_servers(self.kafka, self.app.name),
                "--kafka-properties-file": str(props),
            },
        )
        jars = sorted(jvm.fetch("flink-connectors", quiet=True).glob("*.jar"))
        if not jars:
            raise LocalFlinkError("the flink-connectors artifact set holds no jar")
        # The apps' native functions (flink/functions), as the image has them in Flink's lib/.
        jars.append(jvm.build("flink-functions", quiet=True))
        args += ["--pipeline-jars", ",".join(str(j) for j in jars)]
        for key, value in self.flink_settings(restore_from).items():
            args += ["--flink-conf", f"{key}={value}"]
        return args

    def command(self, restore_from: Path | None) -> list[str]:
        return [str(self.python), "-m", self.app.module, *self.arguments(restore_from)]

    # --- life cycle ---------------------------------------------------------------------------------------

    def choose_snapshot(self, *, restore_from: Path | None = None, fresh: bool = False) -> SnapshotChoice:
        """What a start resumes from: the newest completed snapshot, checked (see headwater.local.snapshots).

        Raises DamagedSnapshotError when the newest completed one is damaged."""
        return choose_snapshot(
            self.app.name, self.checkpoint_dir, self.savepoint_dir, restore_from=restore_from, fresh=fresh
        )

    def start(self, restore: bool = True, *, choice: SnapshotChoice | None = None) -> LocalFlinkJob:
        """Start the job; with `restore`, from its newest completed snapshot when one exists (checked before
        use: a damaged one raises DamagedSnapshotError), or from what `choice` says."""
        if self.running():
            raise LocalFlinkError(f"{self.app.name} is already running (pid {self.pid})")
        if self._process is not None:  # it exited by itself: reap it and what it left in its group
            self.stop()
        if not self.python.is_file():
            raise LocalFlinkError(f"{self.python} does not exist: run `make venv-flink` first")
        if choice is None:
            choice = self.choose_snapshot(fresh=not restore)
            for line in choice.lines():
                self.progress(line)
        self.snapshot_choice = choice
        self.restored_from = choice.path
        self.rest_port = free_port()
        self.metrics_port = free_port()
        self.job_id = None
        shutil.rmtree(self.tmp_dir, ignore_errors=True)  # a killed run leaves its working files behind
        for folder in (self.checkpoint_dir, self.savepoint_dir, self.tmp_dir, self.flink_log_dir):
            folder.mkdir(parents=True, exist_ok=True)
        keep_previous_logs(self.flink_log_dir)
        argv = self.command(self.restored_from)
        how = f"from {self.restored_from}" if self.restored_from else "without state"
        self.progress(
            f"starting {self.app.module} as {self.app.name} ({how}; logs {self.log_file}, {self.flink_log_dir})"
        )
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "FLINK_LOG_DIR": str(self.flink_log_dir),
            # Python operators in worker processes started by the MiniCluster, as on a cluster.
            **flink_conf.PYTHON_WORKER_ENV,
        }
        env.pop("HEADWATER_FLINK_CONF", None)  # settings come from the arguments only
        lib = self._lib_dir()
        # PyFlink replaces FLINK_LIB_DIR with the wheel's own unless FLINK_HOME is set: both, then.
        env["FLINK_HOME"] = str(self._pyflink_home())
        env["FLINK_LIB_DIR"] = str(lib)
        self._process = Supervised(
            f"flink:{self.app.name}",
            argv,
            self.log_file,
            env=env,
            cwd=ROOT,
            stop_timeout=STOP_TIMEOUT,
            progress=self.progress,
        )
        self.started_at = time.monotonic()
        self._process.start()
        return self

    def _pyflink_home(self) -> Path:
        """The apache-flink wheel's Flink home (lib/, opt/, plugins/) in the environment of `self.python`."""
        # The environment's own folder first (its python is usually a symlink to a shared interpreter).
        found = sorted(self.python.parent.parent.glob("lib/python*/site-packages/pyflink"))
        if not found:
            found = sorted(self.python.resolve().parent.parent.glob("lib/python*/site-packages/pyflink"))
        if not found:
            raise LocalFlinkError(f"no pyflink package next to {self.python}: run `make venv-flink`")
        return found[0]

    def _lib_dir(self) -> Path:
        """The wheel's `lib/` jars plus Flink's Prometheus reporter, as the MiniCluster's classpath.

        The local MiniCluster finds metric reporters on its classpath only (it does not load the wheel's
        `plugins/`), so the reporter jar the wheel ships under `plugins/metrics-prometheus/` joins the lib
        jars here, by symlink: the same jar the Flink image loads as a plugin.
        """
        home = self._pyflink_home()
        reporter = sorted((home / "plugins" / "metrics-prometheus").glob("flink-metrics-prometheus-*.jar"))
        if not reporter:
            raise LocalFlinkError(f"{home}/plugins/metrics-prometheus has no flink-metrics-prometheus jar")
        lib = self.job_dir / "lib"
        shutil.rmtree(lib, ignore_errors=True)
        lib.mkdir(parents=True)
        for jar in [*sorted((home / "lib").glob("*.jar")), reporter[0]]:
            (lib / jar.name).symlink_to(jar)
        return lib

    def _rest(self, path: str, body: Mapping[str, Any] | None = None, timeout: float = 5.0) -> Any:
        if self.rest_port is None:
            raise LocalFlinkError(f"{self.app.name} has not been started")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://{HOST}:{self.rest_port}{path}", data=data, method="GET" if body is None else "POST"
        )
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"{}")

    def job_state(self) -> str | None:
        """The job's state from the MiniCluster's REST API (RUNNING, RESTARTING, ...), None while unknown."""
        try:
            jobs = self._rest("/jobs/overview").get("jobs", [])
        except (OSError, ValueError):
            return None
        if not jobs:
            return None
        newest = max(jobs, key=lambda j: j.get("start-time", 0))
        self.job_id = str(newest["jid"])
        return str(newest["state"])

    def completed_checkpoints(self) -> int:
        """How many checkpoints this run has completed (0 while unknown)."""
        if self.job_id is None and self.job_state() is None:
            return 0
        try:
            counts = self._rest(f"/jobs/{self.job_id}/checkpoints").get("counts", {})
        except (OSError, ValueError):
            return 0
        return int(counts.get("completed", 0))

    def wait_running(self, timeout: float = START_TIMEOUT, *, checkpoint: bool = True) -> float:
        """Wait until the job is RUNNING and (with `checkpoint`) has completed its first checkpoint, which
        means its Kafka source and transactional sinks are up; returns the seconds since `start`.

        Raises ProcessError when the process exits first, or when `timeout` passes (the job is stopped).
        """
        process = self._require_process()

        def ready() -> bool:
            if self.job_state() != "RUNNING":
                return False
            return not checkpoint or self.completed_checkpoints() >= 1

        what = "the first completed checkpoint" if checkpoint else "the job to be RUNNING"
        process.wait_ready(ready, timeout=timeout, what=what, interval=0.25, report_every=10.0)
        elapsed = time.monotonic() - (self.started_at or time.monotonic())
        self.progress(f"job {self.job_id} running, {what} after {elapsed:.1f}s since start")
        return elapsed

    def kill(self) -> None:
        """SIGKILL every process of the job at once (the driver, the JVM, the Python workers): a crash.

        Returns once none of them is left."""
        process = self._require_process()
        pid = process.pid
        assert pid is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + KILL_TIMEOUT
        while process.running():
            if time.monotonic() > deadline:
                raise LocalFlinkError(
                    f"{self.app.name} (pid {pid}) still runs {KILL_TIMEOUT:.0f}s after SIGKILL"
                )
            time.sleep(0.05)
        process.stop()  # reaps it and forgets it
        self._process = None
        self._wait_group_gone(pid)
        self.progress(f"killed pid {pid} and its process group (SIGKILL)")

    def _wait_group_gone(self, pgid: int) -> None:
        """Wait until no process of the group is left (the JVM takes a moment to die after SIGKILL)."""
        deadline = time.monotonic() + KILL_TIMEOUT
        while True:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            except PermissionError:  # the group id belongs to someone else's processes by now
                return
            if time.monotonic() > deadline:
                raise LocalFlinkError(
                    f"processes of {self.app.name}'s group {pgid} are still alive {KILL_TIMEOUT:.0f}s after SIGKILL"
                )
            time.sleep(0.05)

    def stop(self, *, savepoint: bool = True, grace: float | None = None) -> int | None:
        """Stop the job with a savepoint (so the next start resumes from it), then the process.

        If the savepoint cannot be taken (or `savepoint` is False), the process is stopped with SIGTERM,
        and SIGKILL after `grace` seconds (default STOP_TIMEOUT); the retained checkpoints remain. Returns
        the process's exit status (None if it was not started).
        """
        process = self._process
        if process is None:
            return None
        if savepoint and process.running() and self.job_state() == "RUNNING":
            try:
                location = self._stop_with_savepoint()
                self.progress(f"stopped with savepoint {location}")
            except (OSError, ValueError, LocalFlinkError) as exc:
                self.progress(f"no savepoint ({exc}); stopping the process")
        pid = process.pid
        status = process.stop(grace)
        self._process = None
        if pid is not None:
            self._wait_group_gone(pid)
        return status

    def _stop_with_savepoint(self, timeout: float = STOP_TIMEOUT) -> str:
        process = self._require_process()
        before = set(completed_snapshots(self.savepoint_dir))
        answer = self._rest(
            f"/jobs/{self.job_id}/stop",
            {"drain": False, "targetDirectory": self.savepoint_dir.as_uri()},
        )
        trigger = answer.get("request-id")
        if not trigger:
            raise LocalFlinkError(f"the REST API answered {answer!r} to stop-with-savepoint")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status = self._rest(f"/jobs/{self.job_id}/savepoints/{trigger}")
            except (OSError, ValueError):
                status = None  # the MiniCluster shuts down (and its REST API with it) once the job finished
            if status is not None and status.get("status", {}).get("id") == "COMPLETED":
                operation = status.get("operation", {})
                if "location" not in operation:
                    cause = operation.get("failure-cause", {}).get("stack-trace", "")
                    raise LocalFlinkError(
                        f"savepoint failed: {cause.splitlines()[0] if cause else operation}"
                    )
                self._wait_exit(process, 30.0)
                return str(operation["location"])
            if status is None or not process.running():
                new = [p for p in completed_snapshots(self.savepoint_dir) if p not in before]
                if new:
                    self._wait_exit(process, 30.0)
                    return new[-1].as_uri()
                if not process.running():
                    raise LocalFlinkError("the job ended without writing a savepoint")
            time.sleep(0.5)
        raise LocalFlinkError(f"no savepoint within {timeout:.0f}s")

    @staticmethod
    def _wait_exit(process: Supervised, timeout: float) -> None:
        """The driver returns from execute() once the job has finished: give it time to exit by itself."""
        end = time.monotonic() + timeout
        while process.running() and time.monotonic() < end:
            time.sleep(0.2)

    def _require_process(self) -> Supervised:
        if self._process is None:
            raise LocalFlinkError(f"{self.app.name} is not running: start() it first")
        return self._process
