"""The Redis that Kubernetes runs, run here: the rendered prod `redis.conf`, the container's start command and its
probe, on Debian's redis-server (the same 7.x directives as the pinned image).

Only what a pod's filesystem and network give differently is changed: the mounted folders become temporary
ones, the port a free one, and `bind` the loopback address (a shared machine). Everything else is the rendered
text: TLS only, the password from the environment through the generated include, the append-only file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from components.feature_store import (
    REDIS_AUTH_ENV,
    REDIS_CONF_DIR,
    REDIS_DATA_DIR,
    REDIS_PORT,
    REDIS_RUN_DIR,
    REDIS_START,
    REDIS_TLS_DIR,
    _redis_ping,
    redis_config,
)
from headwater.config import load_platform
from headwater.local.certs import CertificateAuthority
from headwater.local.ports import HOST, free_port
from headwater.local.process import Supervised, stderr_progress
from headwater.local.redis import redis_binary

PASSWORD = "k8s-test-password-0123456789"


@dataclass
class Pod:
    root: Path
    port: int
    process: Supervised | None = None

    def path(self, mounted: str) -> str:
        return str(self.root / mounted.strip("/").replace("/", "_"))

    def localize(self, text: str) -> str:
        """The rendered text with the pod's mounts as folders here, a free port and the loopback address."""
        for mounted in (REDIS_TLS_DIR, REDIS_CONF_DIR, REDIS_RUN_DIR):
            text = text.replace(mounted, self.path(mounted))
        text = text.replace(f"dir {REDIS_DATA_DIR}", f"dir {self.path(REDIS_DATA_DIR)}")
        text = text.replace(f"-p {REDIS_PORT}", f"-p {self.port}")
        text = text.replace(f"tls-port {REDIS_PORT}", f"tls-port {self.port}")
        return text.replace("bind * -::*", f"bind {HOST}")

    def start(self) -> None:
        env = {**os.environ, REDIS_AUTH_ENV: PASSWORD}
        self.process = Supervised(
            "k8s-redis",
            ["sh", "-c", self.localize(REDIS_START)],
            self.root / "redis.log",
            env=env,
            cwd=self.root,
            progress=stderr_progress("k8s-redis"),
        )
        self.process.start()
        self.process.wait_ready(lambda: self.probe() == 0, timeout=30, what="the rendered probe to pass")

    def probe(self, password: str | None = PASSWORD) -> int:
        command = _redis_ping(load_platform("prod"))["exec"]["command"]
        env = {k: v for k, v in os.environ.items() if k != REDIS_AUTH_ENV}
        if password is not None:
            env[REDIS_AUTH_ENV] = password
        return subprocess.run(
            [command[0], command[1], self.localize(command[2])], env=env, capture_output=True, check=False
        ).returncode

    def kill(self) -> None:
        assert self.process is not None and self.process.pid is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.stop()

    def client(self, password: str | None = PASSWORD, tls: bool = True) -> redis.Redis:
        return redis.Redis(
            host="localhost",
            port=self.port,
            password=password,
            ssl=tls,
            ssl_ca_certs=f"{self.path(REDIS_TLS_DIR)}/ca.crt" if tls else None,
            ssl_check_hostname=tls,
            socket_timeout=5,
        )


@pytest.fixture
def pod(tmp_path: Path) -> Iterator[Pod]:
    redis_binary()  # a clear error naming `make redis` when Debian's package is missing
    p = Pod(tmp_path, free_port())
    for mounted in (REDIS_TLS_DIR, REDIS_CONF_DIR, REDIS_RUN_DIR, REDIS_DATA_DIR):
        Path(p.path(mounted)).mkdir(mode=0o700)
    # What the cluster's PKI puts in featureStore.redis.tlsSecret: tls.crt, tls.key, ca.crt.
    ca = CertificateAuthority(tmp_path / "ca", "feature-store-test-ca")
    ca.ensure()
    issued = ca.issue(tmp_path / "ca", "redis", "feature-store-redis", hosts=["localhost", HOST], server=True)
    tls = Path(p.path(REDIS_TLS_DIR))
    (tls / "tls.crt").write_bytes(issued.cert.read_bytes())
    (tls / "tls.key").write_bytes(issued.key.read_bytes())
    (tls / "ca.crt").write_bytes(ca.cert_path.read_bytes())
    conf = redis_config(load_platform("prod"))
    Path(p.path(REDIS_CONF_DIR), "redis.conf").write_text(p.localize(conf))
    try:
        yield p
    finally:
        if p.process is not None:
            p.process.stop()


def test_the_rendered_redis_is_tls_only_password_protected_and_durable(pod: Pod) -> None:
    t0 = time.monotonic()
    pod.start()
    started = time.monotonic() - t0
    client = pod.client()
    assert client.ping() is True
    client.set("feature", "value")

    # No password, a wrong one, or no TLS: refused.
    with pytest.raises(redis.exceptions.AuthenticationError):
        pod.client(password=None).get("feature")
    with pytest.raises(redis.exceptions.AuthenticationError):
        pod.client(password="wrong").ping()
    with pytest.raises(redis.exceptions.ConnectionError):
        pod.client(tls=False).ping()
    # The probe fails without the password: it proves an authenticated answer, not an open port.
    assert pod.probe(password=None) != 0 and pod.probe() == 0

    # The password is in no file but the owner-only generated include, and on no command line.
    assert PASSWORD not in Path(pod.path(REDIS_CONF_DIR), "redis.conf").read_text()
    auth = Path(pod.path(REDIS_RUN_DIR), "auth.conf")
    assert auth.stat().st_mode & 0o777 == 0o600 and PASSWORD in auth.read_text()
    assert pod.process is not None and pod.process.pid is not None
    assert PASSWORD.encode() not in Path(f"/proc/{pod.process.pid}/cmdline").read_bytes()

    # A crash keeps what was acknowledged more than a second ago (appendfsync everysec).
    time.sleep(1.5)
    pod.kill()
    pod.start()
    assert pod.client().get("feature") == b"value"
    print(f"\n[figures] rendered Redis config: TLS-only start to an authenticated probe in {started:.2f}s")


def test_feast_reads_and_writes_through_the_tls_redis_as_the_pods_do(pod: Pod, tmp_path: Path) -> None:
    """The materializer's and the feature server's path on Kubernetes (`--redis-tls --redis-ca`): Feast's
    Redis store over TLS, checking the certificate against the CA of the TLS Secret, with the password."""
    from feature_io import WINDOW_MS, features

    from feature_store.description import Description
    from feature_store.records import Source, to_row
    from feature_store.repo import Redis as Where
    from feature_store.repo import open_store
    from feature_store.serving import FeatureClient
    from headwater.feature_views import repo_description

    pod.start()
    description_file = tmp_path / "repo.json"
    description_file.write_text(json.dumps(repo_description(load_platform("prod"))))
    description = Description.load(description_file)
    where = Where("localhost", pod.port, tls=True, ca_file=f"{pod.path(REDIS_TLS_DIR)}/ca.crt")
    store = open_store(description, tmp_path / "feast", where, password=PASSWORD, apply=True)
    view = description.view("agent_activity_v1")
    now_ms = int(time.time() * 1000) // WINDOW_MS * WINDOW_MS
    record = features("tls-agent", now_ms - WINDOW_MS, 5)
    row = to_row(view, record, Source(view.topic, 2, 41, b"tls-agent", b""))
    store.write_to_online_store(view.name, inputs={k: [v] for k, v in row.items()})
    answer = FeatureClient(store, description).get("agent_activity", 1, "tls-agent")
    assert answer.values["event_count"] == 5 and answer.fresh
    assert (answer.provenance.source_partition, answer.provenance.source_offset) == (2, 41)
    # The same store with a CA that did not sign Redis's certificate is refused, not silently trusted.
    other = CertificateAuthority(tmp_path / "other-ca", "someone-else")
    other.ensure()
    doubtful = Where("localhost", pod.port, tls=True, ca_file=str(other.cert_path))
    with pytest.raises(redis.exceptions.ConnectionError, match="certificate verify failed"):
        untrusting = open_store(
            description, tmp_path / "feast-other", doubtful, password=PASSWORD, apply=True
        )
        FeatureClient(untrusting, description).get("agent_activity", 1, "tls-agent")
