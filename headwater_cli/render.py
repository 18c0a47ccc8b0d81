"""Offline render: every Kubernetes object (and pinned Helm release) a stack would create, as plain dicts.

The Pulumi components create exactly these objects (they call the same renderers), so a render is what a
`pulumi up` of the stack applies — reviewable, diffable, usable for GitOps — without a cluster or the CLI.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components.approval_gate import render_approval_gate
from components.approvers_page import render_approvers_page
from components.checkpoint_storage import render_checkpoint_storage
from components.feature_store import render_feature_store
from components.flink_application import render_flink_applications
from components.flink_operator import render_flink_operator
from components.k8s import namespace, object_key, sorted_objects, to_yaml
from components.kafka_cluster import OPERATOR_NAMESPACE, render_kafka_cluster, render_strimzi_operator
from components.kafka_connect import render_cdc
from components.kafka_topics import render_topics
from components.kafka_users import render_users
from components.observability import render_observability
from components.operator_crds import render_flink_operator_crds, render_strimzi_crds
from components.schema_registry import render_schema_registry
from components.slot_exporter import render_slot_exporters
from headwater.spec import Platform

Renderer = Callable[[Platform], list[dict[str, Any]]]


def _core(platform: Platform) -> list[dict[str, Any]]:
    return [namespace(platform.namespace, "platform"), namespace(OPERATOR_NAMESPACE, "operators")]


def _kafka(platform: Platform) -> list[dict[str, Any]]:
    return [
        *render_strimzi_crds(),
        render_strimzi_operator(platform.watched_namespaces, platform.operator_charts).to_dict(),
        *render_kafka_cluster(platform.kafka, platform.namespace, platform.tier),
        *render_topics(platform),
        *render_users(platform),
    ]


def _flink(platform: Platform) -> list[dict[str, Any]]:
    return [
        *render_flink_operator_crds(),
        render_flink_operator(platform.watched_namespaces, charts_folder=platform.operator_charts).to_dict(),
        *render_checkpoint_storage(platform),
        *render_flink_applications(platform),
    ]


# Each resource family contributes its renderer here, in dependency order.
RENDERERS: list[Renderer] = [
    _core,
    _kafka,
    render_schema_registry,
    render_cdc,
    render_slot_exporters,
    _flink,
    render_feature_store,
    render_approval_gate,
    render_approvers_page,
    render_observability,
]


def render_stack(platform: Platform) -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = []
    for renderer in RENDERERS:
        objs.extend(renderer(platform))
    keys = [object_key(o) for o in objs]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise ValueError(f"two renderers produced the same object(s): {dupes}")
    return sorted_objects(objs)


def dump(obj: dict[str, Any]) -> str:
    return to_yaml(obj)


def file_name(obj: dict[str, Any]) -> str:
    return object_key(obj).replace("/", "_") + ".yaml"


def write_rendered(objs: list[dict[str, Any]], out: Path) -> list[Path]:
    """One YAML file per object (stale files from an earlier render are removed)."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.yaml"):
        old.unlink()
    paths = []
    for obj in objs:
        path = out / file_name(obj)
        path.write_text(dump(obj))
        paths.append(path)
    print(f"wrote {len(paths)} objects to {out}", file=sys.stderr)
    return paths
