"""Flink rules on the FlinkDeployments the stacks render: one passing and failing case each, with messages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from headwater.config import stack_names

Obj = dict[str, Any]
Get = Callable[[str, str], Obj]
Judge = Callable[..., list[str]]

APP = "FlinkDeployment/headwater/agent-events"
FLINK_RULES = (
    "flink-state-backend",
    "flink-exactly-once",
    "flink-durable-state",
    "flink-high-availability",
    "flink-upgrade-mode",
    "flink-pinned-versions",
    "flink-current-config-keys",
    "flink-resources",
)


def _conf(o: Obj) -> dict[str, str]:
    conf: dict[str, str] = o["spec"]["flinkConfiguration"]
    return conf


def _stateless(o: Obj) -> Obj:
    o["metadata"]["labels"]["headwater.io/stateful"] = "false"
    return o


@pytest.mark.parametrize("stack", stack_names())
def test_shipped_apps_pass_every_flink_rule(
    stack: str, objs_of_kind: Callable[[str, str], list[Obj]], judge: Judge
) -> None:
    apps = objs_of_kind(stack, "FlinkDeployment")
    assert len(apps) == 2
    for app in apps:
        for rule in FLINK_RULES:
            assert judge(rule, app, environment=stack) == [], (stack, rule)


# --- flink-state-backend -----------------------------------------------------------------------------


def test_hashmap_backend_fails(obj: Get, judge: Judge) -> None:
    app = obj("prod", APP)
    _conf(app)["state.backend.type"] = "hashmap"
    (message,) = judge("flink-state-backend", app)
    assert "state.backend.type is 'hashmap': set it to rocksdb" in message


def test_full_checkpoints_fail(obj: Get, judge: Judge) -> None:
    app = obj("prod", APP)
    del _conf(app)["execution.checkpointing.incremental"]
    (message,) = judge("flink-state-backend", app)
    assert "execution.checkpointing.incremental is None: set it to 'true'" in message


def test_stateless_app_needs_no_rocksdb(obj: Get, judge: Judge) -> None:
    app = _stateless(obj("prod", APP))
    _conf(app)["state.backend.type"] = "hashmap"
    assert judge("flink-state-backend", app) == []


# --- flink-exactly-once ------------------------------------------------------------------------------


def test_at_least_once_fails(obj: Get, judge: Judge) -> None:
    app = obj("prod", APP)
    _conf(app)["execution.checkpointing.mode"] = "AT_LEAST_ONCE"
    (message,) = judge("flink-exactly-once", app)
    assert "execution.checkpointing.mode is 'AT_LEAST_ONCE': set it to EXACTLY_ONCE" in message


def test_no_checkpoint_interval_fails(obj: Get, judge: Judge) -> None:
    app = obj("prod", APP)
    del _conf(app)["execution.checkpointing.interval"]
    (message,) = judge("flink-exactly-once", app)
    assert "execution.checkpointing.interval is None: set a checkpoint interval" in message


# --- flink-durable-state -----------------------------------------------------------------------------


def test_file_checkpoints_fail_in_prod_and_pass_in_dev(obj: Get, judge: Judge) -> None:
    app = obj("prod", APP)
    _conf(app)["execution.checkpointing.dir"] = "file:///flink/checkpoints"
    (message,) = judge("flink-durable-state", app)
    assert message.startswith(
        "FlinkDeployment agent-events: execution.checkpointing.dir = file:///flink/checkpoints is a "
        "local (file://) path"
    )
    assert "in prod use durable storage (s3://" in message and "flink.stateUri" in message
    assert judge("flink-durable-state", app, environment="dev") == []


def test_path_on_an_empty_dir_volume_is_named(obj: Get, judge: Judge) -> None:
    app = obj("prod", APP)
    pod = app["spec"]["podTemplate"]["spec"]
    pod["volumes"].append({"name": "scratch", "emptyDir": {}})
    pod["containers"][0]["volumeMounts"].append({"name": "scratch", "mountPath": "/scratch"})
    _conf(app)["execution.checkpointing.savepoint-dir"] = "/scratch/savepoints"
    (message,) = judge("flink-durable-state", app, environment="staging")
    assert "savepoint-dir = /scratch/savepoints is on the emptyDir volume 'scratch'" in message


def test_unset_savepoint_dir_fails_everywhere(obj: Get, judge: Judge) -> None:
    app = obj("dev", APP)
    del _conf(app)["execution.checkpointing.savepoint-dir"]
    (message,) = judge("flink-durable-state", app, environment="dev")
    assert "execution.checkpointing.savepoint-dir is not set: point it at durable storage" in message


def test_other_durable_schemes_pass_and_odd_ones_fail(obj: Get, judge: Judge) -> None:
    app = obj("prod", APP)
    _conf(app)["execution.checkpointing.dir"] = "gs://bucket/checkpoints"
    assert judge("flink-durable-state", app) == []
    _conf(app)["execution.checkpointing.dir"] = "ftp://host/checkpoints"
    (message,) = judge("flink-durable-state", app)
    assert "uses the scheme ftp://, which is not durable storage" in message


# --- flink-high-availability -------------------------------------------------------------------------


def test_missing_ha_fails_in_prod_not_in_local(obj: Get, judge: Judge) -> None:
    app = obj("prod", APP)
    del _conf(app)["high-availability.type"]
    del _conf(app)["high-availability.storageDir"]
    (message,) = judge("flink-high-availability", app)
    assert "high-availability.type is None: set it to kubernetes (flink.highAvailability: true" in message
    assert judge("flink-high-availability", app, environment="local") == []


# --- flink-upgrade-mode ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["stateless", None])
def test_stateful_app_upgrading_stateless_fails(mode: str | None, obj: Get, judge: Judge) -> None:
    app = obj("prod", APP)
    if mode is None:
        del app["spec"]["job"]["upgradeMode"]
    else:
        app["spec"]["job"]["upgradeMode"] = mode
    (message,) = judge("flink-upgrade-mode", app)
    assert f"spec.job.upgradeMode is {mode!r} (unset means stateless) for a stateful app" in message
    assert "set it to savepoint or last-state" in message


def test_stateless_app_may_upgrade_stateless(obj: Get, judge: Judge) -> None:
    app = _stateless(obj("prod", APP))
    app["spec"]["job"]["upgradeMode"] = "stateless"
    assert judge("flink-upgrade-mode", app) == []


# --- flink-pinned-versions ---------------------------------------------------------------------------


def test_unpinned_flink_version_fails(obj: Get, judge: Judge) -> None:
    app = obj("prod", APP)
    app["spec"]["flinkVersion"] = "v1_20"
    (message,) = judge("flink-pinned-versions", app)
    assert "spec.flinkVersion is 'v1_20': set it to v2_2 (Flink 2.2.1" in message


@pytest.mark.parametrize(
    ("image", "why"),
    [
        ("registry.example.com/headwater/agent-events:latest", "uses the latest tag"),
        ("registry.example.com:5000/headwater/agent-events", "has no tag (it means latest)"),
    ],
)
def test_unpinned_image_fails(image: str, why: str, obj: Get, judge: Judge) -> None:
    app = obj("prod", APP)
    app["spec"]["image"] = image
    (message,) = judge("flink-pinned-versions", app)
    assert f"spec.image {image!r} {why}: pin a version tag or a digest" in message


def test_digest_image_passes(obj: Get, judge: Judge) -> None:
    app = obj("prod", APP)
    app["spec"]["image"] = "registry.example.com/headwater/agent-events@sha256:" + "a" * 64
    assert judge("flink-pinned-versions", app) == []


def test_unpinned_init_container_image_fails_once(obj: Get, judge: Judge) -> None:
    app = obj("prod", APP)
    app["spec"]["podTemplate"]["spec"]["initContainers"][0]["image"] = "busybox"
    (message,) = judge("flink-pinned-versions", app)
    assert "pod template container kafka-client-config image 'busybox' has no tag" in message


# --- flink-resources ---------------------------------------------------------------------------------


def test_missing_taskmanager_resources_fail(obj: Get, judge: Judge) -> None:
    app = obj("prod", APP)
    del app["spec"]["taskManager"]["resource"]
    (message,) = judge("flink-resources", app)
    assert "spec.taskManager.resource is {}: set cpu and memory" in message


def test_limit_factor_below_one_fails(obj: Get, judge: Judge) -> None:
    app = obj("prod", APP)
    _conf(app)["kubernetes.taskmanager.memory.limit-factor"] = "0.5"
    (message,) = judge("flink-resources", app)
    assert "kubernetes.taskmanager.memory.limit-factor = '0.5': a limit factor is a number >= 1" in message


def test_container_resources_need_requests_and_limits(obj: Get, judge: Judge) -> None:
    app = obj("prod", APP)
    app["spec"]["podTemplate"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "1"}}
    (message,) = judge("flink-resources", app)
    assert "container flink-main-container sets resources without limits" in message


# --- flink-current-config-keys -----------------------------------------------------------------------


def test_prod_autoscaler_uses_the_current_keys(obj: Get, judge: Judge) -> None:
    app = obj("prod", APP)
    assert _conf(app)["job.autoscaler.enabled"] == "true"  # the passing case is a real autoscaler config
    assert judge("flink-current-config-keys", app) == []


@pytest.mark.parametrize(
    ("key", "replacement"),
    [
        ("job.autoscaler.target.utilization", "use job.autoscaler.utilization.target"),
        ("job.autoscaler.target.utilization.boundary", "job.autoscaler.utilization.max and"),
        ("kubernetes.operator.job.autoscaler.enabled", "pre-1.5 name: use job.autoscaler.enabled"),
    ],
)
def test_deprecated_keys_fail(obj: Get, judge: Judge, key: str, replacement: str) -> None:
    app = obj("prod", APP)
    _conf(app)[key] = "0.7"
    (message,) = judge("flink-current-config-keys", app)
    assert key in message and replacement in message
