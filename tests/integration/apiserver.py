"""A bare Kubernetes API server for admission tests: etcd and kube-apiserver on 127.0.0.1, free ports.

Lighter than the end-to-end suite's control plane (`tests/e2e/controlplane.py`: controllers, scheduler,
kwok): only what admission needs. The binaries come from the engine toolchain (`engine/build.sh
--print-bin`, `make toolchain`). The API server runs its default admission chain, Pod Security admission
included, plus `EXTRA_ADMISSION`; a static token in group `system:masters` authenticates the tests, which
can also act as another user (impersonation) to test RBAC, and create with a server-side dry run.

    answer = apiserver.create(pod, dry_run=True)      # admission runs, nothing is stored
    assert answer.status_code == 201, answer.text

`running(tmp_dir)` starts one and stops both processes (their process groups) when the block ends, on
failure and on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from headwater.local.process import Supervised


ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "engine" / "build.sh"
BIN_ENV = "HEADWATER_ENGINE_BIN"  # a folder with etcd and kube-apiserver, instead of asking build.sh
START_TIMEOUT = 120.0
# Admission plugins on top of the defaults (PodSecurity is one of those): RBAC-checked owner references,
# as clusters that enforce them (OpenShift, hardened distributions) run.
EXTRA_ADMISSION = ("OwnerReferencesPermissionEnforcement",)


def engine_bin() -> Path:
    """The folder with the control plane binaries: $HEADWATER_ENGINE_BIN, else what build.sh prints."""
    if os.environ.get(BIN_ENV):
        return Path(os.environ[BIN_ENV])
    if not BUILD.is_file():
        raise RuntimeError(f"{BUILD} is missing: the engine toolchain builds the control plane binaries")
    done = subprocess.run(
        ["bash", str(BUILD), "--print-bin", "kube"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{BUILD} --print-bin failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


class ControlPlane:
    """etcd + kube-apiserver; `request`/`create` talk to the API as an admin (or as `as_user`)."""

    def __init__(
        self,
        bin_dir: Path,
        state_dir: Path,
        admission: Sequence[str] = EXTRA_ADMISSION,
        *,
        progress: Any = None,
    ) -> None:
        self.bin_dir = bin_dir
        self.state_dir = state_dir
        self.admission = tuple(admission)
        from headwater.local.process import stderr_progress

        self.progress = progress or stderr_progress("control-plane")
        self.token = secrets.token_urlsafe(24)
        self.port = 0
        self.ca: str | None = None  # the API server's own CA bundle, once it has written it
        self.session = requests.Session()
        self._etcd: Supervised | None = None
        self._apiserver: Supervised | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> ControlPlane:
        from headwater.local.process import Supervised

        for binary in ("etcd", "kube-apiserver"):
            if not (self.bin_dir / binary).is_file():
                raise RuntimeError(f"{self.bin_dir / binary} is missing: the engine toolchain is incomplete")
        started = time.monotonic()
        state = self.state_dir
        (state / "certs").mkdir(parents=True, exist_ok=True)
        _openssl("genrsa", "-out", str(state / "sa.key"), "2048")
        _openssl("rsa", "-in", str(state / "sa.key"), "-pubout", "-out", str(state / "sa.pub"))
        (state / "tokens.csv").write_text(f'{self.token},admin,admin-uid,"system:masters"\n')
        client, peer = free_port(), free_port()
        self._etcd = Supervised(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--name=test",
                f"--data-dir={state / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{client}",
                f"--advertise-client-urls=http://127.0.0.1:{client}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=test=http://127.0.0.1:{peer}",
                "--log-level=warn",
            ],
            state / "etcd.log",
            progress=self.progress,
            stop_timeout=10,
        )
        self._etcd.start()
        self._etcd.wait_ready(
            lambda: requests.get(f"http://127.0.0.1:{client}/health", timeout=2).ok,
            timeout=START_TIMEOUT,
            what="etcd",
        )
        self.port = free_port()
        self._apiserver = Supervised(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--cert-dir={state / 'certs'}",
                f"--token-auth-file={state / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={state / 'sa.pub'}",
                f"--service-account-signing-key-file={state / 'sa.key'}",
                "--service-cluster-ip-range=10.96.0.0/24",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                *([f"--enable-admission-plugins={','.join(self.admission)}"] if self.admission else []),
            ],
            state / "kube-apiserver.log",
            progress=self.progress,
            stop_timeout=15,
        )
        self._apiserver.start()
        self.session.headers["Authorization"] = f"Bearer {self.token}"
        self._apiserver.wait_ready(self._ready, timeout=START_TIMEOUT, what="kube-apiserver /readyz")
        self.progress(f"control plane ready on {self.url} after {time.monotonic() - started:.1f}s")
        return self

    def _ready(self) -> bool:
        # The API server makes a self-signed serving certificate (for 127.0.0.1) at start: trust exactly that.
        # It may still be writing the file (serving certificate, then its CA): use it once both are there,
        # from a copy, as connection pools keep the trust store they were first made with.
        # (Passed with every request: requests lets $REQUESTS_CA_BUNDLE override a session's `verify`.)
        if self.ca is None:
            cert = self.state_dir / "certs" / "apiserver.crt"
            text = cert.read_text() if cert.is_file() else ""
            if text.count("END CERTIFICATE") < 2:
                return False
            bundle = self.state_dir / "apiserver-ca.pem"
            bundle.write_text(text)
            self.ca = str(bundle)
        return self.session.get(f"{self.url}/readyz", timeout=2, verify=self.ca).ok

    def stop(self) -> None:
        for proc in (self._apiserver, self._etcd):
            if proc is not None:
                proc.stop()
        self._apiserver = self._etcd = None

    # --- the API -------------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        dry_run: bool = False,
        as_user: str | None = None,
    ) -> requests.Response:
        """One API call as the admin, or as `as_user` (impersonated: RBAC judges that user)."""
        headers = {"Impersonate-User": as_user} if as_user else {}
        params = {"dryRun": "All"} if dry_run else None
        return self.session.request(
            method, self.url + path, json=body, params=params, headers=headers, timeout=30, verify=self.ca
        )

    def create(
        self, obj: Mapping[str, Any], *, dry_run: bool = False, as_user: str | None = None
    ) -> requests.Response:
        """POST one object to its collection (core and named groups; namespaced or not)."""
        return self.request("POST", collection(obj), obj, dry_run=dry_run, as_user=as_user)

    def must_create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        answer = self.create(obj)
        if answer.status_code != 201:
            name = obj["metadata"]["name"]
            raise AssertionError(f"creating {obj['kind']} {name}: {answer.status_code} {answer.text}")
        created: dict[str, Any] = answer.json()
        return created


_PLURAL = {"NetworkPolicy": "networkpolicies", "Ingress": "ingresses"}


def collection(obj: Mapping[str, Any]) -> str:
    api_version, kind = str(obj["apiVersion"]), str(obj["kind"])
    plural = _PLURAL.get(kind, kind.lower() + "s")
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    namespace = obj.get("metadata", {}).get("namespace")
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"


@contextlib.contextmanager
def running(state_dir: Path) -> Iterator[ControlPlane]:
    from headwater.local.process import install_signal_handlers

    install_signal_handlers()
    plane = ControlPlane(engine_bin(), state_dir)
    try:
        plane.start()
        print(f"\n[kube-apiserver] on {plane.url}", file=sys.stderr)
        yield plane
    finally:
        plane.stop()
