"""A real Kubernetes control plane on 127.0.0.1, for the end-to-end tests of `pulumi up`.

etcd, kube-apiserver (Pod Security admission and strict field validation built in), kube-controller-manager
(deployments, replica sets, garbage collector, namespaces, volume binding), kube-scheduler and kwok, which
plays the kubelet of one simulated node: scheduled pods are marked Running and Ready, deleted pods go away.
No container ever runs: what this proves is everything up to admission, scheduling and the controllers'
bookkeeping, not what the operators or images do.

Binaries come from `engine/build.sh` (built from Go modules, cached outside the clone). Every port is free
at start; every process runs in its own process group and is stopped (SIGTERM, then SIGKILL) on `stop()`.
"""

from __future__ import annotations

import base64
import functools
import json
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from headwater.local.process import Supervised, stderr_progress

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "headwater-e2e-admin"  # static token of user `admin` in group system:masters
FAKE_NODE = "kwok-node-0"
_progress = stderr_progress("control plane")


def toolchain_bin() -> Path:
    """The folder of the pinned toolchain's binaries, built on first use (about 30 min cold, seconds warm)."""
    out = subprocess.run(
        [str(ROOT / "engine" / "build.sh"), "--print-bin", "all"],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok, in `state`."""

    bin: Path
    state: Path
    api_port: int = field(default_factory=free_port)
    procs: list[Supervised] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def _start(self, name: str, argv: list[str]) -> Supervised:
        proc = Supervised(name, argv, self.state / f"{name}.log", stop_timeout=15, progress=_progress)
        proc.start()
        self.procs.append(proc)
        return proc

    def start(self) -> ControlPlane:
        started = time.monotonic()
        self.state.mkdir(parents=True, exist_ok=True)
        try:
            self._start_etcd_and_apiserver()
            self._write_kubeconfig()
            self._start_controllers()
        except BaseException:
            self.stop()
            raise
        _progress(f"ready in {time.monotonic() - started:.1f}s: {self.server}")
        return self

    def _start_etcd_and_apiserver(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (self.state / "sa.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        (self.state / "sa.pub").write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        (self.state / "tokens.csv").write_text(f'{TOKEN},admin,admin-uid,"system:masters"\n')
        etcd_port, peer_port = free_port(), free_port()
        etcd = self._start(
            "etcd",
            [
                str(self.bin / "etcd"),
                "--name=e2e",
                f"--data-dir={self.state / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=e2e=http://127.0.0.1:{peer_port}",
                "--listen-metrics-urls=",
                "--log-level=warn",
                "--unsafe-no-fsync",  # a throw-away store: no need to wait on the disk
            ],
        )
        etcd.wait_ready(
            lambda: _http_ok(f"http://127.0.0.1:{etcd_port}/health"), timeout=60, what="etcd health"
        )
        apiserver = self._start(
            "kube-apiserver",
            [
                str(self.bin / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--cert-dir={self.state / 'certs'}",
                f"--token-auth-file={self.state / 'tokens.csv'}",
                "--authorization-mode=Node,RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={self.state / 'sa.pub'}",
                f"--service-account-signing-key-file={self.state / 'sa.key'}",
                "--service-cluster-ip-range=10.96.0.0/24",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
            ],
        )
        apiserver.wait_ready(lambda: self._api_ok("/readyz"), timeout=180, what="kube-apiserver /readyz")

    def _write_kubeconfig(self) -> None:
        ca = base64.b64encode((self.state / "certs" / "apiserver.crt").read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "e2e", "cluster": {"server": self.server, "certificate-authority-data": ca}}
            ],
            "users": [{"name": "admin", "user": {"token": TOKEN}}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "admin"}}],
            "current-context": "e2e",
        }
        self.kubeconfig.write_text(json.dumps(config))
        self.kubeconfig.chmod(0o600)

    def _start_controllers(self) -> None:
        kubeconfig = str(self.kubeconfig)
        auth = [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
        ]
        kcm_port, scheduler_port = free_port(), free_port()
        kcm = self._start(
            "kube-controller-manager",
            [
                str(self.bin / "kube-controller-manager"),
                *auth,
                f"--secure-port={kcm_port}",
                f"--cert-dir={self.state / 'kcm-certs'}",
                f"--service-account-private-key-file={self.state / 'sa.key'}",
                f"--root-ca-file={self.state / 'certs' / 'apiserver.crt'}",
                "--use-service-account-credentials=false",
            ],
        )
        scheduler = self._start(
            "kube-scheduler",
            [str(self.bin / "kube-scheduler"), *auth, f"--secure-port={scheduler_port}"],
        )
        kwok = self._start(
            "kwok",
            [
                str(self.bin / "kwok"),
                f"--kubeconfig={kubeconfig}",
                # the released stages the toolchain copied from kwok's module (it has none of its own)
                f"--config={self.bin / 'kwok-stages.yaml'}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                f"--server-address=127.0.0.1:{free_port()}",
                "--cidr=10.0.0.1/24",
                "--node-ip=10.0.0.1",
            ],
        )
        for proc, port in ((kcm, kcm_port), (scheduler, scheduler_port)):
            probe = functools.partial(_http_ok, f"https://127.0.0.1:{port}/healthz")
            proc.wait_ready(probe, timeout=120, what=f"{proc.name} /healthz")
        self.create_fake_node()
        kwok.wait_ready(self._node_ready, timeout=60, what=f"node {FAKE_NODE} Ready (kwok)")

    def create_fake_node(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": FAKE_NODE,
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": FAKE_NODE,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            "status": {
                "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "110"},
                "capacity": {"cpu": "64", "memory": "256Gi", "pods": "110"},
            },
        }
        self.api("POST", "/api/v1/nodes", node)

    def _node_ready(self) -> bool:
        node = self.api("GET", f"/api/v1/nodes/{FAKE_NODE}")
        return any(
            c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", [])
        )

    def api(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        """One request to the API server as the admin; JSON in and out."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.server + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {TOKEN}")
        if data is not None:
            request.add_header("Content-Type", content_type)
        with urllib.request.urlopen(request, context=_insecure(), timeout=30) as response:
            text = response.read()
        try:
            return json.loads(text) if text else None
        except ValueError:
            return text.decode()  # /readyz and friends answer in plain text

    def _api_ok(self, path: str) -> bool:
        try:
            self.api("GET", path)
        except Exception:
            return False
        return True

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()


def _insecure() -> ssl.SSLContext:
    # The API server's certificate is self-signed at start; the tests talk to 127.0.0.1 only.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, context=_insecure(), timeout=5) as response:
            return bool(response.status == 200)
    except Exception:
        return False
