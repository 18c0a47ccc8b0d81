"""Feast's objects from the repo description, and the store that reads and writes them.

The description (`repo.json`, written by the platform from the catalog with
`headwater.feature_views.repo_description`) lists every feature view: name (feature set and version),
entity, fields, TTL, freshness budget. Nothing here is written by hand per view.

Each view is fed by a push source (streaming writes from the materializer); Feast wants a batch source
behind it, which is a file path nobody reads: the online store is the only store.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from feast import Entity, FeatureStore, FeatureView, Field, FileSource, PushSource, RepoConfig, ValueType
from feast.infra.online_stores.redis import RedisOnlineStoreConfig
from feast.repo_config import RegistryConfig
from feast.types import (
    Bool,
    Bytes,
    FeastType,
    Float32,
    Float64,
    Int32,
    Int64,
    String,
    UnixTimestamp,
)

# The description's type names -> Feast's. Nested values travel as JSON text (the description says "Json").
FEAST_TYPES: dict[str, FeastType] = {
    "String": String,
    "Int32": Int32,
    "Int64": Int64,
    "Float32": Float32,
    "Float64": Float64,
    "Bool": Bool,
    "Bytes": Bytes,
    "UnixTimestamp": UnixTimestamp,
    "Json": String,
}
REDIS_PASSWORD_ENV = "HEADWATER_REDIS_PASSWORD"


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
        unknown = sorted({f.dtype for f in fields} - set(FEAST_TYPES))
        if unknown:
            raise ValueError(f"view {data['name']!r}: field types {unknown}; allowed: {sorted(FEAST_TYPES)}")
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


@dataclass(frozen=True)
class Redis:
    """Where the online store is: host, port, TLS; the password comes from the environment, never a file
    the store's config is written to."""

    host: str
    port: int
    tls: bool = False
    ca_file: str | None = None

    def connection_string(self, password: str | None) -> str:
        parts = [f"{self.host}:{self.port}"]
        if password:
            parts.append(f"password={password}")
        if self.tls:
            parts.append("ssl=true")
            if self.ca_file:
                parts.append(f"ssl_ca_certs={self.ca_file}")
        return ",".join(parts)


def feast_objects(description: Description, offline_dir: Path) -> list[Any]:
    """Entities, push sources and feature views of every view in the description."""
    objects: list[Any] = []
    entities: dict[str, Entity] = {}
    for view in description.views:
        entity = entities.get(view.entity)
        if entity is None:
            entity = Entity(name=view.entity, join_keys=[view.join_key], value_type=ValueType.STRING)
            entities[view.entity] = entity
            objects.append(entity)
        batch = FileSource(
            name=f"{view.name}_batch",
            path=str(offline_dir / f"{view.name}.parquet"),
            timestamp_field=view.timestamp_field,
        )
        push = PushSource(name=view.push_source, batch_source=batch)
        tags = {
            "feature_set": view.feature_set,
            "version": str(view.version),
            "topic": view.topic,
            "sla": view.sla,
            "freshness_s": str(view.freshness_s),
        }
        objects.append(push)
        objects.append(
            FeatureView(
                name=view.name,
                entities=[entity],
                ttl=timedelta(seconds=view.ttl_s),
                schema=[Field(name=f.name, dtype=FEAST_TYPES[f.dtype]) for f in view.fields],
                source=push,
                online=True,
                owner=view.owner,
                tags=tags,
                description=f"feature set {view.feature_set} version {view.version}, from {view.topic}",
            )
        )
    return objects


def repo_config(
    description: Description, registry_path: Path, redis: Redis, password: str | None = None
) -> RepoConfig:
    if password is None:
        password = os.environ.get(REDIS_PASSWORD_ENV)
    return RepoConfig(
        project=description.project,
        provider="local",
        registry=RegistryConfig(path=str(registry_path), cache_ttl_seconds=60),
        online_store=RedisOnlineStoreConfig(connection_string=redis.connection_string(password)),
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
    )


def open_store(
    description: Description,
    state_dir: Path,
    redis: Redis,
    *,
    password: str | None = None,
    apply: bool = False,
) -> FeatureStore:
    """The Feast store of `description` with its file registry under `state_dir`; `apply=True` (the
    materializer, at start) registers the views first, which is idempotent."""
    state_dir.mkdir(parents=True, exist_ok=True)
    config = repo_config(description, state_dir / "registry.db", redis, password)
    store = FeatureStore(config=config, repo_path=str(state_dir))
    if apply:
        store.apply(feast_objects(description, state_dir / "offline"))
    return store
