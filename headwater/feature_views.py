"""Online feature views, derived from the catalog: one per `feature` topic, never written by hand.

Each feature topic `<domain>.<feature_set>.v<N>` becomes a feature view named `<feature_set>_v<N>`: the
feature-set version is part of the view's identity, so two versions are served side by side and an agent
pins the one it was built against. Its entity is the topic's key, its fields come from the topic's data
contract (Avro), its TTL and freshness budget from the topic's SLA. Every view also carries the provenance
of each stored row (feature set and version, the record's source topic, partition and offset), which the
materializer writes and the serving side returns.

This is the one derivation the realizations share: the local platform writes it as the Feast repo's
description, the Kubernetes components read it for the materializer, the feature server and the freshness
alerts. It is plain data (no Feast import): Feast's objects are built from it by `feature_store.repo`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from headwater.contracts.model import load_contracts
from headwater.spec import Platform, Sla, Topic, TopicKind


@dataclass(frozen=True)
class FeatureSla:
    """What a topic's SLA means for its feature view.

    `freshness_s`: the newest window served may be this old before the freshness alert fires.
    `ttl_s`: a row older than this is no longer served as a value (Feast's TTL); well above the freshness
    budget, so a stalled pipeline pages someone long before agents lose their features.
    """

    freshness_s: int
    ttl_s: int


FEATURE_SLAS: dict[Sla, FeatureSla] = {
    Sla.GOLD: FeatureSla(freshness_s=5 * 60, ttl_s=6 * 3600),
    Sla.SILVER: FeatureSla(freshness_s=30 * 60, ttl_s=24 * 3600),
    Sla.BRONZE: FeatureSla(freshness_s=6 * 3600, ttl_s=7 * 24 * 3600),
}

# The contract field that says which window a row describes; its end is the row's event time.
WINDOW_START = "window_start"
WINDOW_END = "window_end"
# Fields the materializer adds to every row: where the row was read and which feature set wrote it.
PROVENANCE_FIELDS: tuple[tuple[str, str], ...] = (
    ("feature_set", "String"),
    ("feature_set_version", "Int32"),
    ("source_topic", "String"),
    ("source_partition", "Int32"),
    ("source_offset", "Int64"),
)

_AVRO_PRIMITIVES = {
    "string": "String",
    "int": "Int32",
    "long": "Int64",
    "float": "Float32",
    "double": "Float64",
    "boolean": "Bool",
    "bytes": "Bytes",
}
# Nested values (maps, arrays, records) are served as their canonical JSON text: every client can read it,
# and Feast's online value types have no nested map of maps.
JSON_TEXT = "Json"


@dataclass(frozen=True)
class FeatureField:
    name: str
    dtype: (
        str  # a Feast type name (String, Int32, Int64, Float32, Float64, Bool, Bytes, UnixTimestamp) or Json
    )


@dataclass(frozen=True)
class FeatureView:
    """One online feature view: what Feast registers and what the materializer writes."""

    name: str
    feature_set: str
    version: int
    topic: str
    entity: str
    join_key: str
    owner: str
    sla: str
    ttl_s: int
    freshness_s: int
    timestamp_field: str
    fields: tuple[FeatureField, ...]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


class FeatureViewError(ValueError):
    """A feature topic that cannot become a feature view; one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def view_name(topic: Topic) -> str:
    """`features.agent_activity.v1` -> `agent_activity_v1`."""
    return f"{feature_set_of(topic)}_v{topic.version}"


def feature_set_of(topic: Topic) -> str:
    """The feature set a topic carries: its name between the domain and the version, dots as underscores."""
    return "_".join(topic.name.split(".")[1:-1])


def _field_type(schema: Any) -> str | None:
    """The Feast type of an Avro field type; None for what cannot be served."""
    if isinstance(schema, list):
        branches = [b for b in schema if b != "null"]
        return _field_type(branches[0]) if len(branches) == 1 else None
    if isinstance(schema, str):
        return _AVRO_PRIMITIVES.get(schema)
    if isinstance(schema, Mapping):
        if schema.get("logicalType") in ("timestamp-millis", "timestamp-micros"):
            return "UnixTimestamp"
        if schema.get("type") in ("map", "array", "record"):
            return JSON_TEXT
        return _field_type(schema.get("type"))
    return None


def _view(topic: Topic, schema: Mapping[str, Any]) -> tuple[FeatureView | None, list[str]]:
    key = f"catalog.topics.{topic.name}"
    if schema.get("type") != "record":
        return None, [f"{key}.schema: a feature topic's contract must be an Avro record"]
    problems: list[str] = []
    fields: list[FeatureField] = []
    names: set[str] = set()
    for f in schema.get("fields", []):
        name = str(f["name"])
        names.add(name)
        if name == topic.key:
            continue
        dtype = _field_type(f["type"])
        if dtype is None:
            problems.append(
                f"{key}.schema: field {name!r} has type {json.dumps(f['type'])}; allowed: Avro primitives, "
                "timestamps, maps, arrays, records, or one of them or null"
            )
            continue
        fields.append(FeatureField(name, dtype))
    if topic.key not in names:
        problems.append(
            f"{key}.key = {topic.key!r}: the contract has no such field; allowed: {sorted(names)}"
        )
    for needed in (WINDOW_START, WINDOW_END):
        if {f.name: f.dtype for f in fields}.get(needed) != "UnixTimestamp":
            problems.append(
                f"{key}.schema: a feature topic's records need a timestamp field {needed!r} "
                "(the window they describe)"
            )
    for name, _ in PROVENANCE_FIELDS:
        if name in names:
            problems.append(f"{key}.schema: field {name!r} is reserved for the row's provenance; rename it")
    if problems:
        return None, problems
    fsla = FEATURE_SLAS[topic.sla]
    return (
        FeatureView(
            name=view_name(topic),
            feature_set=feature_set_of(topic),
            version=topic.version,
            topic=topic.name,
            entity=topic.key,
            join_key=topic.key,
            owner=topic.owner,
            sla=topic.sla.value,
            ttl_s=fsla.ttl_s,
            freshness_s=fsla.freshness_s,
            timestamp_field=WINDOW_END,
            fields=(*fields, *(FeatureField(n, t) for n, t in PROVENANCE_FIELDS)),
        ),
        [],
    )


def feature_views(platform: Platform, catalog_dir: Path | None = None) -> tuple[FeatureView, ...]:
    """The feature view of every feature topic of `platform`, sorted by name.

    Raises FeatureViewError (every problem at once) for a feature topic whose contract cannot be served.
    """
    contracts = {c.topic: c for c in load_contracts(platform, catalog_dir)}
    views: list[FeatureView] = []
    problems: list[str] = []
    for topic in platform.topics:
        if topic.kind != TopicKind.FEATURE:
            continue
        contract = contracts.get(topic.name)
        if contract is None:
            problems.append(f"catalog.topics.{topic.name}.schema: a feature topic needs an Avro contract")
            continue
        view, found = _view(topic, contract.schema)
        problems.extend(found)
        if view is not None:
            views.append(view)
    if problems:
        raise FeatureViewError(problems)
    return tuple(sorted(views, key=lambda v: v.name))


def repo_description(platform: Platform, catalog_dir: Path | None = None) -> dict[str, Any]:
    """The Feast repo of a stack as plain data: project name and every view (what `feature_store` reads)."""
    return {
        "project": project_name(platform),
        "views": [v.to_json() for v in feature_views(platform, catalog_dir)],
    }


def project_name(platform: Platform) -> str:
    """Feast's project of a stack (letters, digits and underscores only)."""
    return f"headwater_{platform.stack}".replace("-", "_")


__all__ = [
    "FEATURE_SLAS",
    "FeatureField",
    "FeatureSla",
    "FeatureView",
    "FeatureViewError",
    "feature_views",
    "project_name",
    "repo_description",
    "view_name",
]


@dataclass(frozen=True)
class MaterializerFlows:
    """The materializer's identity, read from the catalog's flows: its principal, its consumer group and
    the dead-letter topic it writes."""

    principal: str
    group: str
    deadletter_topic: str
    topics: tuple[str, ...]


def materializer_flows(platform: Platform) -> MaterializerFlows:
    """The principal that consumes every feature topic and produces a dead-letter topic (exactly one)."""
    features = {t.name for t in platform.topics if t.kind == TopicKind.FEATURE}
    deadletters = {t.name for t in platform.topics if t.kind == TopicKind.DEADLETTER}
    found = []
    for p in platform.principals:
        consumed = {c.topic for c in p.consumes}
        produced = [f.topic for f in p.produces if f.topic in deadletters]
        if features and features <= consumed and len(produced) == 1 and len(p.produces) == 1:
            found.append((p, produced[0]))
    if len(found) != 1:
        raise FeatureViewError(
            [
                f"catalog.principals: {len(found)} principals consume every feature topic "
                f"({', '.join(sorted(features))}) and produce only a dead-letter topic; allowed: exactly one "
                "(the materializer)"
            ]
        )
    principal, deadletter = found[0]
    groups = sorted({c.group for c in principal.consumes if c.topic in features})
    if len(groups) != 1:
        raise FeatureViewError(
            [
                f"catalog.principals.{principal.name}.consumes: groups {groups}; allowed: one group for every feature topic"
            ]
        )
    return MaterializerFlows(principal.name, groups[0], deadletter, tuple(sorted(features)))
