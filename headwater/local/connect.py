"""A real Kafka Connect worker on this machine, with Debezium's PostgreSQL connector, as its catalog principal.

Apache Kafka's Connect runtime (`jvm/connect/pom.xml`, the broker's version) runs `ConnectDistributed` as a
plain JVM process: one worker of the catalog's Connect cluster (its group, its three internal topics), with the
settings every realization shares (`headwater.cdc.worker_config`: exactly-once source support on). It logs in
to the local broker as the cluster's principal, whose ACLs the provisioning derived from the flows, and loads
Debezium from the same plugin archive Strimzi's build downloads (`jvm/debezium-postgres/pom.xml`), checked
against the pinned SHA-512 before it is unpacked, and our contract-check transform from its jar, built from
`connect/contract-check` (`headwater.jvm.build`), which ends each outbox connector's transform chain.

The worker's properties hold its Kafka login, so they live owner-only under `<state>/secrets/`. Database
credentials never enter a connector's config: it names them through Kafka's `DirectoryConfigProvider`
(`${dir:<folder>:password}`), the local counterpart of the Kubernetes Secret the cluster's connector reads.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import tarfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

from headwater import jvm, versions
from headwater.cdc import (
    CONTRACT_CHECK,
    CONTRACT_CHECK_PLUGIN,
    POSTGRES_CONNECTOR,
    outbox_connector_config,
    worker_config,
)
from headwater.kafka_config import format_properties
from headwater.kafka_metrics import connect_jmx_exporter_config
from headwater.local.certs import write_private
from headwater.local.kafka import LocalKafka, java_executable
from headwater.local.ports import HOST, free_port
from headwater.local.process import Progress, Supervised, stderr_progress
from headwater.local.provision import bootstrap_servers, java_client_properties
from headwater.spec import ConnectCluster, Source

START_TIMEOUT = 180.0
DIRECTORY_PROVIDER = "org.apache.kafka.common.config.provider.DirectoryConfigProvider"
# Each client the worker makes logs in the same way: its own (group, internal topics), the tasks' producers,
# and the admin client that fences zombie tasks under exactly-once.
CLIENT_PREFIXES = ("", "producer.", "consumer.", "admin.")

_LOG4J2 = """\
# Written by headwater.local.connect at every start; edit the generator, not this file.
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.reflections.name = org.reflections
logger.reflections.level = ERROR
"""


class LocalConnectError(RuntimeError):
    """The local Connect worker cannot be set up, started or driven; the message says what to change."""


def debezium_plugin(dest: Path) -> Path:
    """Debezium's PostgreSQL plugin unpacked under `dest`, from the archive checked against the pinned SHA-512."""
    archives = sorted(jvm.fetch("debezium-postgres").glob("debezium-connector-postgres-*-plugin.tar.gz"))
    if len(archives) != 1:
        raise LocalConnectError(f"expected one Debezium PostgreSQL plugin archive, found {archives}")
    archive = archives[0]
    digest = hashlib.sha512(archive.read_bytes()).hexdigest()
    if digest != versions.DEBEZIUM_POSTGRES_PLUGIN_SHA512:
        raise LocalConnectError(
            f"{archive} has SHA-512 {digest}; allowed: the pinned {versions.DEBEZIUM_POSTGRES_PLUGIN_SHA512} "
            "(headwater/versions.py); delete the file to fetch it again"
        )
    stamp = dest / ".sha512"
    if stamp.is_file() and stamp.read_text() == digest:
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    stamp.write_text(digest)
    return dest


def contract_check_plugin(dest: Path) -> Path:
    """The contract-check jar (built from connect/contract-check, tests included) alone in `dest`."""
    jar = jvm.build(CONTRACT_CHECK_PLUGIN)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copyfile(jar, dest / jar.name)
    return dest


class LocalConnect:
    """One Kafka Connect worker of a catalog Connect cluster, against the local broker."""

    def __init__(
        self,
        kafka: LocalKafka,
        cluster: ConnectCluster,
        *,
        state_dir: Path | None = None,
        rest_port: int | None = None,
        heap: str = "512m",
        progress: Progress | None = None,
    ) -> None:
        self.kafka = kafka
        self.cluster = cluster
        self.state_dir = state_dir or kafka.state_dir
        self.root = self.state_dir / "connect" / cluster.name
        self.log_file = self.state_dir / "logs" / f"connect-{cluster.name}.log"
        self.properties = kafka.secrets_dir / f"{cluster.name}.worker.properties"
        self.rest_port = rest_port or free_port()
        # The JMX exporter agent with the rules of the KafkaConnect's metrics ConfigMap (Connect's and
        # Debezium's metrics, which the CDC alerts read), on loopback.
        self.metrics_port = free_port()
        self.metrics_config = self.root / "metrics-config.yml"
        self.heap = heap
        self.progress = progress or stderr_progress("connect")
        self._process: Supervised | None = None
        self._session = requests.Session()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.rest_port}"

    @property
    def metrics_target(self) -> str:
        return f"{HOST}:{self.metrics_port}"

    def _jmx_agent(self) -> str:
        jars = sorted(jvm.fetch("jmx-exporter").glob("jmx_prometheus_javaagent-*.jar"))
        if not jars:
            raise LocalConnectError("the jmx-exporter artifact set holds no jmx_prometheus_javaagent jar")
        self.metrics_config.write_text(connect_jmx_exporter_config())
        return f"-javaagent:{jars[0]}={HOST}:{self.metrics_port}:{self.metrics_config}"

    def worker_properties(self, plugin_path: Path) -> dict[str, str]:
        security = java_client_properties(self.kafka, self.cluster.name)
        props = {
            "bootstrap.servers": bootstrap_servers(self.kafka, self.cluster.name),
            "group.id": self.cluster.group,
            "config.storage.topic": self.cluster.config_topic,
            "offset.storage.topic": self.cluster.offset_topic,
            "status.storage.topic": self.cluster.status_topic,
            "listeners": f"http://{HOST}:{self.rest_port}",
            "rest.advertised.host.name": HOST,
            "rest.advertised.port": str(self.rest_port),
            "plugin.path": str(plugin_path),
            # Debezium and Connect's own plugins carry ServiceLoader manifests: no classpath scan at start.
            "plugin.discovery": "service_load",
            "config.providers": "dir",
            "config.providers.dir.class": DIRECTORY_PROVIDER,
            # One local worker: a restarted worker takes its tasks back at once instead of after the default
            # five-minute wait for the lost member to return.
            "scheduled.rebalance.max.delay.ms": "0",
            **worker_config(self.cluster),
        }
        for prefix in CLIENT_PREFIXES:
            props |= {f"{prefix}{k}": v for k, v in security.items()}
        return dict(sorted(props.items()))

    def start(self) -> LocalConnect:
        if self.running():
            return self
        classpath = jvm.classpath("connect")
        plugins = self.root / "plugins"
        debezium_plugin(plugins / "debezium-postgres")
        contract_check_plugin(plugins / CONTRACT_CHECK_PLUGIN)
        self.kafka.secrets_dir.mkdir(parents=True, exist_ok=True)
        write_private(self.properties, format_properties(self.worker_properties(plugins)).encode())
        log4j = self.root / "log4j2.properties"
        log4j.write_text(_LOG4J2)
        agent = self._jmx_agent()
        self.progress(f"starting Kafka Connect {self.cluster.name} (REST {self.url}, state {self.root})")
        self._process = Supervised(
            f"connect-{self.cluster.name}",
            [
                java_executable(),
                "-Xms128m",
                f"-Xmx{self.heap}",
                "-XX:+UseG1GC",
                "-XX:+ExitOnOutOfMemoryError",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={log4j}",
                agent,
                "-cp",
                classpath,
                "org.apache.kafka.connect.cli.ConnectDistributed",
                str(self.properties),
            ],
            self.log_file,
            progress=self.progress,
            stop_timeout=30.0,
        )
        self._process.start()
        self._process.wait_ready(
            self._ready,
            timeout=START_TIMEOUT,
            what="the Connect REST API with Debezium and the contract check loaded",
        )
        return self

    def _ready(self) -> bool:
        plugins = self._session.get(f"{self.url}/connector-plugins", timeout=5)
        if not plugins.ok:
            return False
        classes = {p.get("class", "") for p in plugins.json()}
        if POSTGRES_CONNECTOR not in classes:
            return False
        # Transforms are listed only with connectorsOnly=false.
        every = self._session.get(f"{self.url}/connector-plugins?connectorsOnly=false", timeout=5)
        return every.ok and CONTRACT_CHECK in {p.get("class", "") for p in every.json()}

    def running(self) -> bool:
        return self._process is not None and self._process.running()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def kill(self) -> None:
        """SIGKILL the worker (a crash: no shutdown hook, no flush), for fault tests."""
        if self._process is not None and self._process.pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.stop(timeout=5)
            self._process = None

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None

    def __enter__(self) -> LocalConnect:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- connectors --------------------------------------------------------------------------------------------

    def put_outbox_connector(
        self, source: Source, credentials_dir: Path, contracts: Mapping[str, str]
    ) -> dict[str, str]:
        """Create (or update) the source's outbox connector; its credentials are named, never sent.

        `contracts`: each route topic's JSON Schema (`headwater.cdc.route_contracts`), which the connector's
        contract check holds each event to."""
        config = outbox_connector_config(source, f"${{dir:{credentials_dir}", contracts)
        resp = self._session.put(
            f"{self.url}/connectors/{source.connector_name}/config", json=config, timeout=60
        )
        if not resp.ok:
            raise LocalConnectError(
                f"Connect refused the connector {source.connector_name} (HTTP {resp.status_code}): {resp.text}"
            )
        return config

    def status(self, connector: str) -> dict[str, Any]:
        resp = self._session.get(f"{self.url}/connectors/{connector}/status", timeout=10)
        if resp.status_code == 404:
            return {}
        resp.raise_for_status()
        return dict(resp.json())

    def wait_running(self, connector: str, timeout: float = 120.0) -> None:
        """Until the connector and all its tasks are RUNNING; a FAILED task fails at once with its trace."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                last = self.status(connector)
            tasks = last.get("tasks", [])
            for task in tasks:
                if task.get("state") == "FAILED":
                    raise LocalConnectError(
                        f"{connector} task {task.get('id')} failed:\n{task.get('trace', '')}"
                    )
            if (
                last.get("connector", {}).get("state") == "RUNNING"
                and tasks
                and all(t.get("state") == "RUNNING" for t in tasks)
            ):
                return
            if self._process is not None and not self._process.running():
                raise LocalConnectError(f"the Connect worker exited; last lines:\n{self._process.log_tail()}")
            time.sleep(0.5)
        raise LocalConnectError(f"{connector} is not RUNNING after {timeout:.0f}s: {last}")
