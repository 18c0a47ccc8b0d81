"""The online feature store on this machine: the Feast repo from the spec, and the materializer process.

`write_repo` writes the repo description (`headwater.feature_views`) the materializer and the readers load;
`LocalMaterializer` runs `python -m feature_store.materializer` as the catalog's materializer principal
(its group and dead-letter topic from its flows), against the local broker, registry and Redis;
`LocalFeatureServer` runs `python -m feature_store.server`, agents' HTTP reads over the same Redis.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from headwater.contracts.model import CATALOG_DIR
from headwater.feature_views import materializer_flows, repo_description
from headwater.local.kafka import LocalKafka
from headwater.local.ports import HOST
from headwater.local.process import Progress, Supervised, stderr_progress
from headwater.local.provision import client_config
from headwater.local.redis import LocalRedis
from headwater.spec import Platform

REPO_FILE = "repo.json"
# Importing Feast alone takes 5-15 s of CPU on a busy 2-core machine; then the registry is applied.
START_TIMEOUT = 120.0


def feature_dir(state_dir: Path) -> Path:
    return Path(state_dir).resolve() / "feature_store"


def write_repo(platform: Platform, state_dir: Path) -> Path:
    """The repo description of `platform` under the state dir (rewritten at every start)."""
    folder = feature_dir(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / REPO_FILE
    path.write_text(json.dumps(repo_description(platform), indent=2, sort_keys=True) + "\n")
    return path


def _secret_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)
    return path


class LocalMaterializer:
    """The materializer as a supervised child process; `start()`, `stop()` (clean), `kill()` (a crash)."""

    def __init__(
        self,
        platform: Platform,
        kafka: LocalKafka,
        redis: LocalRedis,
        registry_url: str,
        registry_user_info: str,
        state_dir: Path,
        *,
        progress: Progress | None = None,
        batch_size: int = 500,
        metrics_port: int | None = None,
    ) -> None:
        self.platform = platform
        self.metrics_port = (
            metrics_port  # serve the materializer's Prometheus metrics here (None: not at all)
        )
        self.kafka = kafka
        self.redis = redis
        self.registry_url = registry_url
        self.registry_user_info = registry_user_info
        self.state_dir = Path(state_dir).resolve()
        self.flows = materializer_flows(platform)
        self.progress = progress or stderr_progress("materializer")
        self.batch_size = batch_size
        self.log_file = self.state_dir / "logs" / "feature-materializer.log"
        self._process: Supervised | None = None
        self._started_at = 0.0

    @property
    def store_dir(self) -> Path:
        return feature_dir(self.state_dir) / "feast"

    def running(self) -> bool:
        return self._process is not None and self._process.running()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    def start(self, *, wait: bool = True) -> LocalMaterializer:
        """Start the process; with `wait`, return once it has subscribed (else call `wait_ready`)."""
        repo = write_repo(self.platform, self.state_dir)
        kafka_config = _secret_file(
            self.kafka.secrets_dir / f"{self.flows.principal}.librdkafka.json",
            json.dumps(client_config(self.kafka, self.flows.principal), sort_keys=True),
        )
        catalog = Path(self.platform.catalog_dir) if self.platform.catalog_dir else CATALOG_DIR
        contract = catalog / "schemas" / f"{self.flows.deadletter_topic}.avsc"
        argv = [
            sys.executable,
            "-m",
            "feature_store.materializer",
            f"--repo={repo}",
            f"--store-dir={self.store_dir}",
            f"--redis={self.redis.host}:{self.redis.port}",
            f"--kafka-config={kafka_config}",
            f"--group={self.flows.group}",
            f"--deadletter-topic={self.flows.deadletter_topic}",
            f"--deadletter-schema={contract}",
            f"--registry-url={self.registry_url}",
            f"--batch-size={self.batch_size}",
            *([f"--metrics-port={self.metrics_port}"] if self.metrics_port is not None else []),
        ]
        env = {
            **os.environ,
            "HEADWATER_REDIS_PASSWORD": self.redis.password,
            "HEADWATER_REGISTRY_USER_INFO": self.registry_user_info,
            "PYTHONUNBUFFERED": "1",
        }
        self._process = Supervised(
            "feature-materializer", argv, self.log_file, env=env, stop_timeout=15, progress=self.progress
        )
        self.progress(f"starting the materializer ({', '.join(self.flows.topics)} -> Redis)")
        self._started_at = time.monotonic()
        self._process.start()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> float:
        """Wait until the materializer has opened the store and subscribed; the seconds since `start`."""
        assert self._process is not None, "start() first"
        self._process.wait_ready(self._started, timeout=timeout, what="the materializer to subscribe")
        took = time.monotonic() - self._started_at
        self.progress(f"materializing after {took:.1f}s (log: {self.log_file})")
        return took

    def _started(self) -> bool:
        try:
            return "materializing " in self.log_file.read_text(errors="replace").rsplit("=== ", 1)[-1]
        except OSError:
            return False

    def stop(self) -> int | None:
        if self._process is None:
            return None
        code = self._process.stop()
        self._process = None
        return code

    def kill(self) -> None:
        """SIGKILL, as a crash: no clean shutdown, nothing flushed or committed on the way out."""
        if self._process is not None:
            if self._process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._process.pid, signal.SIGKILL)
            self._process.stop()
            self._process = None

    def log_tail(self, lines: int = 40) -> str:
        return self._process.log_tail(lines) if self._process else ""


class LocalFeatureServer:
    """The feature server (`python -m feature_store.server`) as a supervised child process on a free port:
    agents' HTTP reads with provenance and freshness, over the local Redis. It keeps its own Feast registry
    (applied from the same description), as each pod does on Kubernetes."""

    def __init__(
        self,
        platform: Platform,
        redis: LocalRedis,
        state_dir: Path,
        port: int,
        *,
        progress: Progress | None = None,
    ) -> None:
        self.platform = platform
        self.redis = redis
        self.state_dir = Path(state_dir).resolve()
        self.port = port
        self.progress = progress or stderr_progress("feature-server")
        self.log_file = self.state_dir / "logs" / "feature-server.log"
        self._process: Supervised | None = None
        self._started_at = 0.0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def store_dir(self) -> Path:
        return feature_dir(self.state_dir) / "feast-server"

    def running(self) -> bool:
        return self._process is not None and self._process.running()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    def start(self, *, wait: bool = True) -> LocalFeatureServer:
        repo = write_repo(self.platform, self.state_dir)
        argv = [
            sys.executable,
            "-m",
            "feature_store.server",
            f"--repo={repo}",
            f"--store-dir={self.store_dir}",
            f"--redis={self.redis.host}:{self.redis.port}",
            f"--host={HOST}",
            f"--port={self.port}",
        ]
        env = {**os.environ, "HEADWATER_REDIS_PASSWORD": self.redis.password, "PYTHONUNBUFFERED": "1"}
        self._process = Supervised(
            "feature-server", argv, self.log_file, env=env, stop_timeout=10, progress=self.progress
        )
        self.progress(f"starting the feature server on {self.url}")
        self._started_at = time.monotonic()
        self._process.start()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> float:
        """Wait until the server answers /readyz (its store open, Redis answering); the seconds since `start`."""
        assert self._process is not None, "start() first"
        self._process.wait_ready(self._ready, timeout=timeout, what="the feature server to answer")
        took = time.monotonic() - self._started_at
        self.progress(f"serving after {took:.1f}s (log: {self.log_file})")
        return took

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as answer:
                return bool(answer.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> int | None:
        if self._process is None:
            return None
        code = self._process.stop()
        self._process = None
        return code

    def log_tail(self, lines: int = 40) -> str:
        return self._process.log_tail(lines) if self._process else ""
