"""Rules for Flink applications (`FlinkDeployment`, flink.apache.org): state, checkpoints, HA, pinning, sizing.

Flink 2.x keys (`state.backend.type`, `execution.checkpointing.*`, `high-availability.*`). Whether an app keeps
state comes from the label `headwater.io/stateful` ("true"/"false") the renderer puts on the object; an
app without the label is judged as stateful, the safe side.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from components.kafka_topics import LABEL_PREFIX
from headwater import versions
from headwater.spec import Tier
from policies.rulebook import (
    Context,
    Rule,
    as_number,
    dig,
    image_problem,
    items,
    labels_of,
    mapping,
    of_kind,
)

GROUP = versions.FLINK_CRD_API_VERSION.split("/")[0]
STATEFUL_LABEL = f"{LABEL_PREFIX}/stateful"
MAIN_CONTAINER = "flink-main-container"

STATE_BACKEND = "state.backend.type"
INCREMENTAL = "execution.checkpointing.incremental"
MODE = "execution.checkpointing.mode"
INTERVAL = "execution.checkpointing.interval"
CHECKPOINT_DIR = "execution.checkpointing.dir"
SAVEPOINT_DIR = "execution.checkpointing.savepoint-dir"
HA_TYPE = "high-availability.type"
HA_DIR = "high-availability.storageDir"
DURABLE_SCHEMES = ("s3", "s3a", "s3p", "gs", "hdfs", "abfs", "abfss", "wasb", "wasbs", "oss")
STATEFUL_UPGRADE_MODES = ("savepoint", "last-state")
LIMIT_FACTORS = tuple(
    f"kubernetes.{role}.{res}.limit-factor"
    for role in ("jobmanager", "taskmanager")
    for res in ("cpu", "memory")
)

is_flink_deployment = of_kind(GROUP, "FlinkDeployment")


def _conf(props: Mapping[str, Any]) -> Mapping[str, Any]:
    return mapping(dig(props, "spec", "flinkConfiguration"))


def _name(props: Mapping[str, Any]) -> str:
    return str(dig(props, "metadata", "name") or "?")


def is_stateful(props: Mapping[str, Any]) -> bool:
    return str(labels_of(props).get(STATEFUL_LABEL, "true")).lower() != "false"


def _state_backend(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[str]:
    if not is_stateful(props):
        return
    conf = _conf(props)
    backend = conf.get(STATE_BACKEND)
    if str(backend).lower() != "rocksdb":
        yield (
            f"FlinkDeployment {_name(props)}: flinkConfiguration {STATE_BACKEND} is {backend!r}: set it to "
            "rocksdb, so keyed state lives on disk and not on the JVM heap"
        )
    incremental = conf.get(INCREMENTAL)
    if str(incremental).lower() != "true":
        yield (
            f"FlinkDeployment {_name(props)}: flinkConfiguration {INCREMENTAL} is {incremental!r}: set it "
            "to 'true', so each checkpoint uploads only what changed"
        )


def _exactly_once(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[str]:
    conf = _conf(props)
    mode = conf.get(MODE)
    if mode != "EXACTLY_ONCE":
        yield (
            f"FlinkDeployment {_name(props)}: flinkConfiguration {MODE} is {mode!r}: set it to EXACTLY_ONCE "
            "(the transactional Kafka sinks commit on checkpoints)"
        )
    interval = conf.get(INTERVAL)
    if interval is None or str(interval).strip() in ("", "0", "0ms", "0s"):
        yield (
            f"FlinkDeployment {_name(props)}: flinkConfiguration {INTERVAL} is {interval!r}: set a checkpoint "
            "interval (flink.checkpointInterval in the stack); without it there are no checkpoints"
        )


def _empty_dir_mounts(props: Mapping[str, Any]) -> dict[str, str]:
    """mountPath -> volume name for every emptyDir volume mounted in any of the pod templates."""
    out: dict[str, str] = {}
    for _, template in flink_pod_templates(props):
        spec = mapping(template.get("spec"))
        empty = {
            mapping(v).get("name")
            for v in items(spec.get("volumes"))
            if mapping(v).get("emptyDir") is not None
        }
        for c in items(spec.get("containers")) + items(spec.get("initContainers")):
            for m in items(mapping(c).get("volumeMounts")):
                if mapping(m).get("name") in empty and isinstance(mapping(m).get("mountPath"), str):
                    out[mapping(m)["mountPath"].rstrip("/") or "/"] = str(mapping(m)["name"])
    return out


def _storage_problem(uri: str, empty_dirs: Mapping[str, str]) -> str | None:
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    path = uri.split("://", 1)[1] if scheme == "file" else uri if not scheme else None
    if path is not None:
        local = "/" + path.lstrip("/")
        for mount, volume in empty_dirs.items():
            if local == mount or local.startswith(mount.rstrip("/") + "/"):
                return f"is on the emptyDir volume {volume!r}, which is lost with the pod"
        return "is a local (file://) path: storage of the pods themselves, not durable storage they share"
    if scheme not in DURABLE_SCHEMES:
        return f"uses the scheme {scheme}://, which is not durable storage"
    return None


def _durable_state(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[str]:
    conf = _conf(props)
    keys = [CHECKPOINT_DIR, SAVEPOINT_DIR] if is_stateful(props) else []
    if conf.get(HA_TYPE) not in (None, "", "NONE", "none"):
        keys.append(HA_DIR)
    empty_dirs = _empty_dir_mounts(props)
    for key in keys:
        uri = conf.get(key)
        if not isinstance(uri, str) or not uri.strip():
            yield (
                f"FlinkDeployment {_name(props)}: flinkConfiguration {key} is not set: point it at durable "
                "storage under flink.stateUri (s3://...)"
            )
            continue
        if ctx.tier.is_development:
            continue
        why = _storage_problem(uri.strip(), empty_dirs)
        if why:
            yield (
                f"FlinkDeployment {_name(props)}: {key} = {uri} {why}: in {ctx.tier.value} use durable "
                f"storage ({', '.join(s + '://' for s in DURABLE_SCHEMES[:3])}...; flink.stateUri in the stack)"
            )


def _high_availability(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[str]:
    if ctx.tier == Tier.LOCAL:
        return  # one machine: there is no second JobManager to fail over to
    conf = _conf(props)
    ha = conf.get(HA_TYPE)
    if str(ha).lower() != "kubernetes":
        yield (
            f"FlinkDeployment {_name(props)}: flinkConfiguration {HA_TYPE} is {ha!r}: set it to kubernetes "
            "(flink.highAvailability: true in the stack), so a JobManager restart resumes from the "
            "latest checkpoint"
        )


def _upgrade_mode(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[str]:
    job = dig(props, "spec", "job")
    if not is_stateful(props) or job is None:
        return
    mode = mapping(job).get("upgradeMode")
    if mode not in STATEFUL_UPGRADE_MODES:
        yield (
            f"FlinkDeployment {_name(props)}: spec.job.upgradeMode is {mode!r} (unset means stateless) for "
            f"a stateful app: set it to savepoint or last-state, so an upgrade keeps the state"
        )


def _pinned(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[str]:
    spec = mapping(props.get("spec"))
    version = spec.get("flinkVersion")
    if version != versions.FLINK_VERSION_ENUM:
        yield (
            f"FlinkDeployment {_name(props)}: spec.flinkVersion is {version!r}: set it to "
            f"{versions.FLINK_VERSION_ENUM} (Flink {versions.FLINK_VERSION}, headwater/versions.py)"
        )
    image = spec.get("image")
    why = image_problem(image)
    if why:
        yield (
            f"FlinkDeployment {_name(props)}: spec.image {image!r} {why}: pin a version tag or a digest "
            "(flink.images.<app> in the stack)"
        )
    seen: set[tuple[str, str]] = set()  # the JobManager and TaskManager templates share containers
    for _, template in flink_pod_templates(props):
        pod = mapping(template.get("spec"))
        for c in [mapping(c) for k in ("initContainers", "containers") for c in items(pod.get(k))]:
            ref = (str(c.get("name")), str(c.get("image")))
            if "image" in c and ref not in seen and (why := image_problem(c.get("image"))):
                seen.add(ref)
                yield (
                    f"FlinkDeployment {_name(props)}: pod template container {c.get('name')} image "
                    f"{c.get('image')!r} {why}: pin a version tag or a digest"
                )


def _resources(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[str]:
    spec = mapping(props.get("spec"))
    for role in ("jobManager", "taskManager"):
        res = mapping(dig(spec, role, "resource"))
        cpu = as_number(res.get("cpu"))
        memory = res.get("memory")
        if cpu is None or cpu <= 0 or not isinstance(memory, str) or not memory.strip():
            yield (
                f"FlinkDeployment {_name(props)}: spec.{role}.resource is {dict(res)!r}: set cpu and memory "
                "(the operator makes them the pod's requests, and limits via the limit factors)"
            )
    conf = _conf(props)
    for key in LIMIT_FACTORS:
        if key in conf:
            factor = as_number(conf.get(key))
            if factor is None or factor < 1:
                yield (
                    f"FlinkDeployment {_name(props)}: flinkConfiguration {key} = {conf.get(key)!r}: a limit "
                    "factor is a number >= 1 (limit = request x factor)"
                )
    said: set[str] = set()  # the JobManager and TaskManager templates share containers
    for _, template in flink_pod_templates(props):
        for c in items(dig(template, "spec", "containers")):
            container = mapping(c)
            declared = container.get("resources")
            if declared is None:
                continue
            missing = [k for k in ("requests", "limits") if not mapping(mapping(declared).get(k))]
            message = (
                f"FlinkDeployment {_name(props)}: pod template container {container.get('name')} sets "
                f"resources without {' and '.join(missing)}: set both requests and limits"
            )
            if missing and message not in said:
                said.add(message)
                yield message


# Keys the pinned operator (1.15.0) still reads but has deprecated, and what replaces them (from its
# AutoScalerOptions: `withDeprecatedKeys` and `@Deprecated` options). Deprecated keys go away in a later
# release, and a job config that silently loses its autoscaler bounds is not noticed until it scales badly.
DEPRECATED_KEYS: Mapping[str, str] = {
    "job.autoscaler.target.utilization": "job.autoscaler.utilization.target",
    "job.autoscaler.target.utilization.boundary": "job.autoscaler.utilization.max and job.autoscaler.utilization.min",
    "job.autoscaler.scale-up.grace-period": "job.autoscaler.scale-down.interval",
    # Before 1.5 the autoscaler read kubernetes.operator.job.autoscaler.*; 1.15 still falls back to them.
}
OLD_AUTOSCALER_PREFIX = "kubernetes.operator.job.autoscaler."


def _current_keys(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[str]:
    for key in sorted(str(k) for k in _conf(props)):
        if key in DEPRECATED_KEYS:
            yield (
                f"FlinkDeployment {_name(props)}: flinkConfiguration {key} is deprecated in Flink Kubernetes "
                f"Operator {versions.FLINK_OPERATOR_VERSION}: use {DEPRECATED_KEYS[key]}"
            )
        elif key.startswith(OLD_AUTOSCALER_PREFIX):
            new = "job.autoscaler." + key[len(OLD_AUTOSCALER_PREFIX) :]
            yield f"FlinkDeployment {_name(props)}: flinkConfiguration {key} is the pre-1.5 name: use {new}"


def _merge_template(base: Mapping[str, Any], role: Mapping[str, Any]) -> dict[str, Any]:
    """The operator's merge of spec.podTemplate with a role's template: maps merge, containers by name."""
    out: dict[str, Any] = {}
    for key in set(base) | set(role):
        b, r = base.get(key), role.get(key)
        if isinstance(b, Mapping) and isinstance(r, Mapping):
            out[key] = _merge_template(b, r)
        elif key in ("containers", "initContainers", "volumes") and (items(b) or items(r)):
            by_name: dict[str, Any] = {}
            for entry in items(b) + items(r):
                name = str(mapping(entry).get("name"))
                prev = by_name.get(name)
                by_name[name] = _merge_template(prev, mapping(entry)) if prev else dict(mapping(entry))
            out[key] = list(by_name.values())
        else:
            out[key] = r if key in role else b
    return out


def flink_pod_templates(props: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(role, effective pod template) for the JobManager and the TaskManager pods."""
    spec = mapping(props.get("spec"))
    base = mapping(spec.get("podTemplate"))
    return [
        (role, _merge_template(base, mapping(dig(spec, role, "podTemplate"))))
        for role in ("jobManager", "taskManager")
    ]


RULES: tuple[Rule, ...] = (
    Rule(
        name="flink-state-backend",
        description="Stateful Flink apps use the RocksDB state backend with incremental checkpoints.",
        applies=is_flink_deployment,
        check=_state_backend,
    ),
    Rule(
        name="flink-exactly-once",
        description="Flink apps checkpoint periodically in EXACTLY_ONCE mode.",
        applies=is_flink_deployment,
        check=_exactly_once,
    ),
    Rule(
        name="flink-durable-state",
        description="Checkpoint, savepoint and HA paths are set, and on durable storage outside local/dev.",
        applies=is_flink_deployment,
        check=_durable_state,
    ),
    Rule(
        name="flink-high-availability",
        description="Flink JobManager high availability (Kubernetes HA) is enabled outside local.",
        applies=is_flink_deployment,
        check=_high_availability,
    ),
    Rule(
        name="flink-upgrade-mode",
        description="Stateful Flink apps upgrade with savepoint or last-state, never stateless.",
        applies=is_flink_deployment,
        check=_upgrade_mode,
    ),
    Rule(
        name="flink-pinned-versions",
        description="Flink apps pin flinkVersion and their image (a version tag or digest, never latest).",
        applies=is_flink_deployment,
        check=_pinned,
    ),
    Rule(
        name="flink-current-config-keys",
        description="Flink apps use the pinned operator's current configuration keys, not deprecated ones.",
        applies=is_flink_deployment,
        check=_current_keys,
    ),
    Rule(
        name="flink-resources",
        description="JobManager and TaskManager pods have CPU and memory requests and limits.",
        applies=is_flink_deployment,
        check=_resources,
    ),
)
