"""Feast's objects from the repo description, and the store that reads and writes them.

The description (`repo.json`, written by the platform from the catalog with
`headwater.feature_views.repo_description`) lists every feature view: name (feature set and version),
entity, fields, TTL, freshness budget. Nothing here is written by hand per view.

Each view is fed by a push source (streaming writes from the materializer); Feast wants a batch source
behind it, which is a file path nobody reads: the online store is the only store.
"""

from __future__ import annotations

import os
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

from feature_store.description import TYPE_NAMES, Description

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
assert set(FEAST_TYPES) == TYPE_NAMES
REDIS_PASSWORD_ENV = "HEADWATER_REDIS_PASSWORD"


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
