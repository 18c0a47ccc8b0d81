"""A real Kafka broker on this machine, configured from the platform spec the way Strimzi configures the cluster.

One combined KRaft node (broker + controller) runs `kafka.Kafka` from the jars of `jvm/kafka/pom.xml`.
Like a Strimzi cluster with `simple` authorization, it has no plaintext listener and no anonymous access:

- `SCRAM` (SASL_SSL, SCRAM-SHA-512): the listener for `scram-sha-512` principals;
- `MTLS` (SSL, client certificate required): the listener for `tls` principals and inter-broker traffic;
- `CONTROLLER` (SSL, client certificate required): KRaft, on 127.0.0.1 only.

A client certificate `CN=<name>` maps to the principal `User:<name>`, the same name a SCRAM login gets, so
one ACL set (derived from the flows by `acls_for`) covers both. The spec's super users plus the broker's own
identity (`CN=<cluster>-kafka`) are super users; everything else needs an ACL.

All state lives under one directory (default `.local/<stack>/`): `kafka/` (config, data), `certs/` (CA and
broker certificate), `secrets/` (passwords, client certificates, client properties; owner-only) and `logs/`.
A second start reuses all of it, so topics, records and credentials survive a restart.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import psutil
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from headwater import jvm, versions
from headwater.config import ROOT
from headwater.kafka_config import SCRAM_MECHANISM, broker_config, format_properties
from headwater.kafka_metrics import jmx_exporter_config
from headwater.local.certs import CertificateAuthority, IssuedCert, write_private
from headwater.local.ports import HOST, free_ports, port_free
from headwater.local.process import ProcessError, Progress, Supervised, stderr_progress
from headwater.spec import Platform

START_TIMEOUT = 180.0


class LocalKafkaError(RuntimeError):
    """The local broker cannot be configured, started or reached; the message says what to change."""


class PortInUseError(LocalKafkaError):
    """A port the broker needs is taken by another process."""


def default_state_dir(stack: str) -> Path:
    """Where a stack's local state lives unless told otherwise: `<repo>/.local/<stack>/`."""
    return ROOT / ".local" / stack


@dataclass(frozen=True)
class KafkaPorts:
    """The broker's TCP ports on 127.0.0.1; each can be set with its environment variable."""

    sasl: int = 9093  # SCRAM-SHA-512 over TLS
    mtls: int = 9094  # TLS with client certificates
    controller: int = 9095  # KRaft controller
    metrics: int = 9404  # the JMX exporter agent's /metrics (Strimzi's metrics port)

    ENV: ClassVar[dict[str, str]] = {
        "sasl": "HEADWATER_KAFKA_SASL_PORT",
        "mtls": "HEADWATER_KAFKA_MTLS_PORT",
        "controller": "HEADWATER_KAFKA_CONTROLLER_PORT",
        "metrics": "HEADWATER_KAFKA_METRICS_PORT",
    }

    def __post_init__(self) -> None:
        values = [getattr(self, f.name) for f in fields(self)]
        for f in fields(self):
            port = getattr(self, f.name)
            if not isinstance(port, int) or not 0 < port < 65536:
                raise LocalKafkaError(
                    f"KafkaPorts.{f.name} = {port!r} is not valid; allowed: a TCP port 1-65535"
                )
        if len(set(values)) != len(values):
            raise LocalKafkaError(f"Kafka ports must differ: {self}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaPorts:
        """Default ports, overridden by HEADWATER_KAFKA_{SASL,MTLS,CONTROLLER,METRICS}_PORT."""
        env = os.environ if env is None else env
        values: dict[str, int] = {}
        for name, var in cls.ENV.items():
            if var in env:
                try:
                    values[name] = int(env[var])
                except ValueError:
                    raise LocalKafkaError(
                        f"{var} = {env[var]!r} is not valid; allowed: a TCP port 1-65535"
                    ) from None
        return cls(**values)

    @classmethod
    def free(cls) -> KafkaPorts:
        """Four ports nobody listens on right now (for tests and side-by-side stacks)."""
        sasl, mtls, controller, metrics = free_ports(4)
        return cls(sasl=sasl, mtls=mtls, controller=controller, metrics=metrics)

    def check_free(self, settings: Mapping[str, str] | None = None) -> None:
        """Raise PortInUseError naming the port and its setting when one is already taken.

        `settings` says, per port, how the person running this chooses another (a command-line flag, an
        environment variable); by default the environment variable."""
        for f in fields(self):
            port = getattr(self, f.name)
            if not port_free(port):
                how = (settings or {}).get(f.name) or f"{self.ENV[f.name]}=<port> (KafkaPorts.{f.name})"
                raise PortInUseError(
                    f"port {port} on {HOST} is already in use, and the local Kafka broker needs it for its "
                    f"{f.name} listener; choose another with {how}, or stop the process listening there "
                    f"(`ss -ltnp 'sport = :{port}'`)"
                )


def java_executable() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise LocalKafkaError("no `java` found: install a JDK 17 or newer, or set JAVA_HOME")
    return found


def _cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes as unpadded URL-safe base64, not starting with '-' (CLI-safe)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


_LOG4J2 = """\
# Written by headwater.local.kafka at every start; edit the generator, not this file.
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
# Denied requests are logged at INFO: the first place to look when a client gets an authorization error.
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = INFO
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


class LocalKafka:
    """The local single-node broker of a platform: `start()`, `stop()`, client configs for the super user.

    `state_dir` defaults to `.local/<stack>/`, `ports` to `KafkaPorts.from_env()`. Nothing happens until
    `start()`; the object can also be used as a context manager (start on enter, stop on exit).
    """

    def __init__(
        self,
        platform: Platform,
        state_dir: Path | None = None,
        ports: KafkaPorts | None = None,
        *,
        progress: Progress | None = None,
        heap: str = "1g",
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.platform = platform
        self.state_dir = (state_dir or default_state_dir(platform.stack)).resolve()
        self.ports = ports or KafkaPorts.from_env()
        self.progress = progress or stderr_progress("kafka")
        self.heap = heap
        self.start_timeout = start_timeout
        self.kafka_dir = self.state_dir / "kafka"
        self.data_dir = self.kafka_dir / "data"
        self.certs_dir = self.state_dir / "certs"
        self.secrets_dir = self.state_dir / "secrets"
        self.logs_dir = self.state_dir / "logs"
        self.server_properties = self.kafka_dir / "server.properties"
        self.log_file = self.logs_dir / "kafka.log"
        self.pid_file = self.kafka_dir / "broker.pid"
        self.endpoints_file = self.kafka_dir / "endpoints.json"
        k = platform.kafka
        self.broker_identity = f"{k.cluster_name}-kafka"
        self.ca = CertificateAuthority(self.certs_dir, f"{k.cluster_name}-cluster-ca")
        self._check_spec()
        self._process: Supervised | None = None

    # ---- facts other modules and tests read -------------------------------------------------------------

    @property
    def bootstrap_sasl(self) -> str:
        return f"{HOST}:{self.ports.sasl}"

    @property
    def bootstrap_mtls(self) -> str:
        return f"{HOST}:{self.ports.mtls}"

    @property
    def bootstrap_controller(self) -> str:
        return f"{HOST}:{self.ports.controller}"

    @property
    def metrics_url(self) -> str:
        """The broker's Prometheus endpoint (the JMX exporter agent, with the platform's broker rules)."""
        return f"http://{HOST}:{self.ports.metrics}/metrics"

    @property
    def admin_user(self) -> str:
        """The super user the local runtime administers the cluster as (the first of `kafka.superUsers`)."""
        return self.platform.kafka.super_users[0]

    @property
    def ca_file(self) -> Path:
        return self.ca.cert_path

    def password_file(self, user: str) -> Path:
        return self.secrets_dir / f"{user}.password"

    def password(self, user: str, *, create: bool = True) -> str:
        """The SCRAM password of `user`, kept owner-only in the state dir; made up on first use."""
        path = self.password_file(user)
        if path.is_file():
            return path.read_text().strip()
        if not create:
            raise LocalKafkaError(
                f"no password for {user!r} in {self.secrets_dir}: provision the platform first"
            )
        self._private_dir(self.secrets_dir)
        value = secrets.token_urlsafe(24)
        write_private(path, value.encode())
        return value

    def loose_secrets(self) -> list[str]:
        """Secrets of the state dir that others than the owner may read: one line each, with the fix.

        Refused rather than repaired (as ssh refuses a private key others can read): a mode that was
        loosened may already have let someone copy the secret, and only the person can tell whether to
        tighten it or to rotate it. Deleting a password, key or client file makes the next start issue a
        new one (and set the broker's credential to it).
        """
        candidates: list[Path] = []
        for folder, patterns in ((self.secrets_dir, ("*",)), (self.certs_dir, ("*.key", "*.keystore.pem"))):
            if folder.is_dir():
                candidates.append(folder)
                candidates += sorted(p for pattern in patterns for p in folder.glob(pattern) if p.is_file())
        lines = []
        for path in candidates:
            try:
                mode = path.stat().st_mode & 0o777
            except OSError:
                continue  # gone meanwhile
            if mode & 0o077:
                if path.is_dir():
                    lines.append(
                        f"{path} has mode {mode:04o} (others can list or enter it); allowed: 0700, owner only. "
                        f"Fix: chmod 700 {path}"
                    )
                else:
                    lines.append(
                        f"{path} has mode {mode:04o} (readable beyond its owner); allowed: 0600, owner only. "
                        f"Fix: chmod 600 {path}, or delete it to have the next start issue a new secret"
                    )
        return lines

    def refuse_loose_secrets(self) -> None:
        """Raise LocalKafkaError listing every secret whose mode lets others read it (see `loose_secrets`)."""
        lines = self.loose_secrets()
        if lines:
            raise LocalKafkaError(
                f"{len(lines)} secret(s) of {self.state_dir} can be read by others than their owner; "
                "nothing was started:\n  " + "\n  ".join(lines)
            )

    @staticmethod
    def _private_dir(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o700)
        return path

    def admin_config(self) -> dict[str, Any]:
        """librdkafka settings for the super user over SCRAM (what provisioning and tests administer with)."""
        return {
            "bootstrap.servers": self.bootstrap_sasl,
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": SCRAM_MECHANISM,
            "sasl.username": self.admin_user,
            "sasl.password": self.password(self.admin_user, create=False),
            "ssl.ca.location": str(self.ca_file),
            "ssl.endpoint.identification.algorithm": "https",
        }

    def broker_identity_config(self) -> dict[str, Any]:
        """librdkafka settings for the broker's own certificate identity (a super user) over mTLS."""
        cert = self._broker_cert()
        return {
            "bootstrap.servers": self.bootstrap_mtls,
            "security.protocol": "SSL",
            "ssl.ca.location": str(self.ca_file),
            "ssl.certificate.location": str(cert.cert),
            "ssl.key.location": str(cert.key),
            "ssl.endpoint.identification.algorithm": "https",
        }

    def admin(self) -> AdminClient:
        return AdminClient(self.admin_config())

    def running(self) -> bool:
        return self._process is not None and self._process.running()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    # ---- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> LocalKafka:
        """Prepare the state dir, start the broker and return once it answers authenticated requests."""
        if self.running():
            return self
        t0 = time.monotonic()
        self._refuse_second_instance()
        self.refuse_loose_secrets()
        self.ports.check_free()
        jars = jvm.fetch("kafka")
        classpath = ":".join(str(p) for p in sorted(jars.glob("*.jar")))
        agent = self._metrics_agent()
        self._private_dir(self.secrets_dir)
        self._private_dir(self.certs_dir)
        if self.ca.ensure():
            self.progress(f"created the local cluster CA in {self.certs_dir}")
        broker_cert = self._broker_cert()
        for user in self.platform.kafka.super_users:
            self.password(user)
        self._write_config(broker_cert)
        formatted = (self.data_dir / "meta.properties").is_file()
        if not formatted:
            self._format(classpath)
        self.progress(f"starting the broker (stack {self.platform.stack}, state {self.state_dir})")
        self._process = Supervised(
            "kafka",
            [
                java_executable(),
                "-Xms256m",
                f"-Xmx{self.heap}",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-XX:+ExitOnOutOfMemoryError",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self.kafka_dir / 'log4j2.properties'}",
                agent,
                "-cp",
                classpath,
                "kafka.Kafka",
                str(self.server_properties),
            ],
            self.log_file,
            progress=self.progress,
        )
        self._process.start()
        self.pid_file.write_text(f"{self._process.pid}\n")
        try:
            deadline = time.monotonic() + self.start_timeout
            self._process.wait_ready(
                lambda: self._answers(self.broker_identity_config()),
                timeout=self.start_timeout,
                what="the broker to answer over mTLS",
            )
            if formatted and not self._answers(self.admin_config()):
                # The password files are the truth (like Strimzi's user secrets): a super user added to the
                # spec since formatting, or a password file deleted or replaced, gets its credential (re)set.
                self._set_scram(list(self.platform.kafka.super_users))
            self._process.wait_ready(
                lambda: self._answers(self.admin_config()),
                timeout=max(10.0, deadline - time.monotonic()),
                what=f"a SCRAM login as {self.admin_user}",
            )
        except ProcessError:
            self.stop()
            # A port taken between the check and the JVM's bind kills the broker: name the port and setting.
            self.ports.check_free()
            raise
        except BaseException:
            self.stop()
            raise
        self.endpoints_file.write_text(
            json.dumps(
                {
                    "sasl": self.bootstrap_sasl,
                    "mtls": self.bootstrap_mtls,
                    "controller": self.bootstrap_controller,
                    "metrics": self.metrics_url,
                },
                indent=2,
            )
            + "\n"
        )
        self.progress(
            f"ready in {time.monotonic() - t0:.1f}s: SASL_SSL {self.bootstrap_sasl}, mTLS {self.bootstrap_mtls}, "
            f"metrics {self.metrics_url}"
        )
        return self

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 30 s); the state dir is kept."""
        if self._process is None:
            return
        if self._process.running():
            self.progress(f"stopping the broker (pid {self._process.pid})")
        self._process.stop()
        self._process = None
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- internals ---------------------------------------------------------------------------------------

    def _problem(self, key: str, value: object, allowed: str) -> LocalKafkaError:
        return LocalKafkaError(
            f"stack {self.platform.stack}: {key} = {value!r} cannot run locally; allowed: {allowed}"
        )

    def _check_spec(self) -> None:
        k = self.platform.kafka
        if k.replication_factor != 1:
            raise self._problem(
                "kafka.replicationFactor", k.replication_factor, "1 (the local broker is a single node)"
            )
        if k.min_insync_replicas != 1:
            raise self._problem(
                "kafka.minInsyncReplicas", k.min_insync_replicas, "1 (the local broker is a single node)"
            )
        if not k.super_users:
            raise self._problem(
                "kafka.superUsers", [], "at least one user: the local runtime provisions as the first"
            )
        names = {p.name for p in self.platform.principals} | set(k.super_users)
        if self.broker_identity in names:
            raise self._problem(
                "kafka.clusterName",
                k.cluster_name,
                f"a name whose broker identity {self.broker_identity!r} is no user's",
            )

    def _broker_cert(self) -> IssuedCert:
        return self.ca.issue(
            self.certs_dir, "broker", self.broker_identity, hosts=("localhost", HOST), server=True
        )

    def _refuse_second_instance(self) -> None:
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = " ".join(psutil.Process(pid).cmdline())
        except (OSError, ValueError, psutil.Error):
            return
        if "kafka.Kafka" in cmdline and str(self.server_properties) in cmdline:
            raise LocalKafkaError(
                f"a broker of this state dir ({self.state_dir}) is already running as pid {pid}; "
                f"stop it first (kill {pid}) or use another state dir"
            )

    def server_config(self, broker_cert: IssuedCert) -> dict[str, object]:
        """The broker's `server.properties`, from the spec."""
        k = self.platform.kafka
        p = self.ports
        super_users = [*k.super_users, self.broker_identity]
        return {
            "process.roles": "broker,controller",
            "node.id": 1,
            "controller.quorum.bootstrap.servers": f"{HOST}:{p.controller}",
            "controller.listener.names": "CONTROLLER",
            "listeners": f"SCRAM://{HOST}:{p.sasl},MTLS://{HOST}:{p.mtls},CONTROLLER://{HOST}:{p.controller}",
            "advertised.listeners": f"SCRAM://{HOST}:{p.sasl},MTLS://{HOST}:{p.mtls}",
            "listener.security.protocol.map": "SCRAM:SASL_SSL,MTLS:SSL,CONTROLLER:SSL",
            "inter.broker.listener.name": "MTLS",
            # TLS everywhere, from the local CA; PEM files so no keytool is needed.
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": broker_cert.keystore,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": self.ca_file,
            "ssl.endpoint.identification.algorithm": "https",
            "ssl.client.auth": "none",
            "listener.name.scram.ssl.client.auth": "none",
            "listener.name.mtls.ssl.client.auth": "required",
            "listener.name.controller.ssl.client.auth": "required",
            # CN=<name> is User:<name>, the same principal a SCRAM login as <name> gets. Any other subject
            # keeps its full DN as the name, which no ACL mentions.
            "ssl.principal.mapping.rules": "RULE:^CN=([a-zA-Z0-9._-]+)$/$1/,DEFAULT",
            "listener.name.scram.sasl.enabled.mechanisms": SCRAM_MECHANISM,
            "listener.name.scram.scram-sha-512.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            # Strimzi's `simple` authorization on KRaft: deny unless an ACL allows.
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": ";".join(f"User:{u}" for u in super_users),
            # The same broker config as the Strimzi cluster of the stack.
            **broker_config(k),
            # Kafka's 50 partitions per internal topic cost seconds on a laptop at the first group or
            # transaction; a single node gains nothing from them.
            "offsets.topic.num.partitions": 5,
            "transaction.state.log.num.partitions": 5,
            # No one else joins a local group late: don't make every consumer wait 3 s for company.
            "group.initial.rebalance.delay.ms": 0,
            "num.partitions": 1,
            "num.network.threads": 2,
            "num.io.threads": 4,
            "log.dirs": self.data_dir,
        }

    @property
    def metrics_config(self) -> Path:
        return self.kafka_dir / "metrics-config.yml"

    def _metrics_agent(self) -> str:
        """The `-javaagent:` option of the JMX exporter, on loopback, with the rules every broker runs."""
        jars = sorted(jvm.fetch("jmx-exporter").glob("jmx_prometheus_javaagent-*.jar"))
        if not jars:
            raise LocalKafkaError("the jmx-exporter artifact set holds no jmx_prometheus_javaagent jar")
        self.kafka_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_config.write_text(jmx_exporter_config())
        return f"-javaagent:{jars[0]}={HOST}:{self.ports.metrics}:{self.metrics_config}"

    def _write_config(self, broker_cert: IssuedCert) -> None:
        self.kafka_dir.mkdir(parents=True, exist_ok=True)
        header = "# Written by headwater.local.kafka from the platform spec at every start.\n"
        self.server_properties.write_text(header + format_properties(self.server_config(broker_cert)))
        (self.kafka_dir / "log4j2.properties").write_text(_LOG4J2)

    def _format(self, classpath: str) -> None:
        id_file = self.kafka_dir / "cluster.id"
        if not id_file.is_file():
            id_file.write_text(_cluster_id() + "\n")
        cluster_id = id_file.read_text().strip()
        self.progress(f"formatting the broker storage in {self.data_dir} (cluster id {cluster_id})")
        cmd = [
            java_executable(),
            f"-Dlog4j2.configurationFile={self.kafka_dir / 'log4j2.properties'}",
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            cluster_id,
            "-c",
            str(self.server_properties),
            "--release-version",
            versions.KAFKA_METADATA_VERSION,
        ]
        for user in self.platform.kafka.super_users:
            cmd += ["--add-scram", f"{SCRAM_MECHANISM}=[name={user},password={self.password(user)}]"]
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log = self.logs_dir / "kafka-format.log"
        result = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        # The command line holds passwords; the log gets only the tool's own output.
        log.write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            raise LocalKafkaError(
                f"formatting the Kafka storage failed (exit {result.returncode}); see {log}:\n"
                + "\n".join((result.stdout + result.stderr).splitlines()[-20:])
            )

    @staticmethod
    def _answers(config: Mapping[str, Any]) -> bool:
        quiet = {**config, "log_level": 0, "error_cb": lambda err: None}
        try:
            md = AdminClient(quiet).list_topics(timeout=3)
        except KafkaException:
            return False
        return bool(md.brokers)

    def _set_scram(self, users: list[str]) -> None:
        """(Re)set SCRAM credentials as the broker identity, for super users whose password file was lost."""
        self.progress(f"setting new SCRAM credentials for {', '.join(users)}")
        admin = AdminClient(self.broker_identity_config())
        upserts: list[UserScramCredentialAlteration] = [
            UserScramCredentialUpsertion(
                user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), self.password(user).encode()
            )
            for user in users
        ]
        try:
            for future in admin.alter_user_scram_credentials(upserts).values():
                future.result()
        except KafkaException as exc:
            raise LocalKafkaError(f"could not set SCRAM credentials for {', '.join(users)}: {exc}") from exc
