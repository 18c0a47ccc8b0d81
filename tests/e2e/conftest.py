"""End-to-end fixtures: the pinned toolchain (built once, cached outside the clone), a control plane on
127.0.0.1 that the tests start themselves, a real schema registry for the contracts, and stacks of this
project driven by the real Pulumi CLI. Everything started here is stopped at the end of the session."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from controlplane import ControlPlane, toolchain_bin
from figures import FIGURES, figure

from headwater import crds
from headwater.config import load_platform
from headwater.local.registry import LocalRegistry

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in FIGURES:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def toolchain() -> Path:
    started = time.monotonic()
    folder = toolchain_bin()
    figure("toolchain ready (built or cached)", f"{time.monotonic() - started:.1f}s: {folder}")
    return folder


@pytest.fixture(scope="session")
def control_plane(toolchain: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(toolchain, tmp_path_factory.mktemp("control-plane"))
    plane.start()
    try:
        # A cluster the platform deploys to runs a monitoring stack (the Prometheus Operator), which owns the
        # PodMonitor and PrometheusRule CRDs; the platform creates objects of those kinds but not the kinds.
        for crd in crds.prometheus_operator().crds.values():
            plane.api("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        # ... and storage for claims of the stack's storage class (a provisioner would create it): one volume
        # for the feature store's Redis, bound by the real volume controller, so its StatefulSet gets ready.
        storage = load_platform("dev").feature_store
        assert storage is not None
        plane.api(
            "POST",
            "/api/v1/persistentvolumes",
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": "e2e-volume-0"},
                "spec": {
                    "capacity": {"storage": storage.redis_storage.size},
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": storage.redis_storage.storage_class,
                    "persistentVolumeReclaimPolicy": "Retain",
                    "hostPath": {"path": "/var/lib/headwater-e2e/volume-0"},
                },
            },
        )
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A real Apicurio registry (in memory) that `pulumi up` registers the contracts in."""
    with LocalRegistry(tmp_path_factory.mktemp("registry"), port=0) as reg:
        yield reg


class OperatorStand:
    """Plays the operators' part for the one thing `pulumi up` waits on them for: the status they write.

    Strimzi marks a `Kafka` Ready once its brokers run; the Flink operator marks a `FlinkDeployment` STABLE.
    No operator runs here, so this writes those statuses (after `kafka_delay` seconds for Kafka, to show that
    the platform's dependents wait for it) and nothing else.
    """

    def __init__(self, plane: ControlPlane, kafka_delay: float = 8.0) -> None:
        self.plane = plane
        self.kafka_delay = kafka_delay
        self.kafka_ready_at: dict[str, float] = {}
        self.flink_stable: set[str] = set()
        self._seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="operator-stand", daemon=True)

    def __enter__(self) -> OperatorStand:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self._tick()
            except Exception as error:  # the API may be busy; try again next tick
                print(f"[operator-stand] {error}", flush=True)

    def _tick(self) -> None:
        now = time.time()
        kafkas = self.plane.api("GET", "/apis/kafka.strimzi.io/v1/kafkas")["items"]
        for kafka in kafkas:
            key = f"{kafka['metadata']['namespace']}/{kafka['metadata']['name']}"
            first = self._seen.setdefault(key, now)
            ready = any(c.get("type") == "Ready" for c in (kafka.get("status") or {}).get("conditions", []))
            if not ready and now - first >= self.kafka_delay:
                self._patch_status(
                    f"/apis/kafka.strimzi.io/v1/namespaces/{kafka['metadata']['namespace']}/kafkas/"
                    f"{kafka['metadata']['name']}/status",
                    {
                        "observedGeneration": kafka["metadata"]["generation"],
                        "conditions": [
                            {
                                "type": "Ready",
                                "status": "True",
                                "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                            }
                        ],
                    },
                )
                self.kafka_ready_at[key] = time.time()
        deployments = self.plane.api("GET", "/apis/flink.apache.org/v1beta1/flinkdeployments")["items"]
        for dep in deployments:
            meta = dep["metadata"]
            status = dep.get("status") or {}
            if (
                status.get("lifecycleState") == "STABLE"
                and status.get("observedGeneration") == meta["generation"]
            ):
                continue
            self._patch_status(
                f"/apis/flink.apache.org/v1beta1/namespaces/{meta['namespace']}/flinkdeployments/{meta['name']}/status",
                {
                    "lifecycleState": "STABLE",
                    "observedGeneration": meta["generation"],
                    "jobStatus": {"state": "RUNNING"},
                },
            )
            self.flink_stable.add(f"{meta['namespace']}/{meta['name']}")

    def _patch_status(self, path: str, status: dict[str, Any]) -> None:
        self.plane.api("PATCH", path, {"status": status}, content_type="application/merge-patch+json")
