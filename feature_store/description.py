"""The repo description as the feature store reads it: plain dataclasses, no Feast import (cheap to load).

`headwater.feature_views` writes it from the catalog (`repo.json`); every view has its name (feature set and
version), entity, fields with their type names, TTL and freshness budget, and the topic that feeds it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The description's type names; nested values travel as JSON text ("Json").
TYPE_NAMES = frozenset(
    {"String", "Int32", "Int64", "Float32", "Float64", "Bool", "Bytes", "UnixTimestamp", "Json"}
)
# Fields the materializer adds to every row: which feature set wrote it and where it was read.
PROVENANCE = ("feature_set", "feature_set_version", "source_topic", "source_partition", "source_offset")


@dataclass(frozen=True)
class ViewField:
    name: str
    dtype: str


@dataclass(frozen=True)
class View:
    """One feature view of the description (see headwater.feature_views.FeatureView)."""

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
    fields: tuple[ViewField, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> View:
        fields = tuple(ViewField(str(f["name"]), str(f["dtype"])) for f in data["fields"])
        unknown = sorted({f.dtype for f in fields} - TYPE_NAMES)
        if unknown:
            raise ValueError(f"view {data['name']!r}: field types {unknown}; allowed: {sorted(TYPE_NAMES)}")
        return cls(
            name=str(data["name"]),
            feature_set=str(data["feature_set"]),
            version=int(data["version"]),
            topic=str(data["topic"]),
            entity=str(data["entity"]),
            join_key=str(data["join_key"]),
            owner=str(data["owner"]),
            sla=str(data["sla"]),
            ttl_s=int(data["ttl_s"]),
            freshness_s=int(data["freshness_s"]),
            timestamp_field=str(data["timestamp_field"]),
            fields=fields,
        )

    def dtype(self, name: str) -> str:
        for f in self.fields:
            if f.name == name:
                return f.dtype
        raise KeyError(name)

    @property
    def push_source(self) -> str:
        return f"{self.name}_push"


@dataclass(frozen=True)
class Description:
    project: str
    views: tuple[View, ...]

    @classmethod
    def load(cls, path: Path) -> Description:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(str(data["project"]), tuple(View.from_json(v) for v in data["views"]))

    def view(self, name: str) -> View:
        for v in self.views:
            if v.name == name:
                return v
        raise KeyError(name)

    def view_for_topic(self, topic: str) -> View:
        for v in self.views:
            if v.topic == topic:
                return v
        raise KeyError(topic)
