"""How agents read features: through Feast's SDK, with provenance and a freshness figure per answer.

An agent pins the feature set and the version it was built against (`agent_activity`, 1): it reads the
view `agent_activity_v1` and nothing of another version, even when both are served side by side. Each
answer says which window the values describe, how old that window is now (`freshness_s`: now minus the
window's end), whether that is within the view's freshness budget, and where the row came from (feature set
and version, source topic, partition and offset, and the upstream provenance the pipeline recorded).

An unknown feature set, version or entity is an error that names what exists, never an empty answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from feast import FeatureStore
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus

from feature_store.description import PROVENANCE, Description, View


class FeatureLookupError(LookupError):
    """What was asked for does not exist; the message says what does."""


class UnknownFeatureSet(FeatureLookupError):
    pass


class UnknownVersion(FeatureLookupError):
    pass


class UnknownEntity(FeatureLookupError):
    pass


@dataclass(frozen=True)
class Provenance:
    feature_set: str
    feature_set_version: int
    source_topic: str
    source_partition: int
    source_offset: int
    upstream: dict[str, Any] | None  # what the producing pipeline recorded (its inputs' offsets), if any


@dataclass(frozen=True)
class FeatureAnswer:
    entity: str
    view: str
    values: dict[str, Any]
    window_start: datetime | None
    window_end: datetime
    freshness_s: float  # age of the window: now - window_end
    fresh: bool  # within the view's freshness budget
    provenance: Provenance


class FeatureClient:
    """Online feature reads for agents, pinned to one feature set version per call."""

    def __init__(self, store: FeatureStore, description: Description) -> None:
        self.store = store
        self.description = description

    def view(self, feature_set: str, version: int) -> View:
        versions = sorted(v.version for v in self.description.views if v.feature_set == feature_set)
        if not versions:
            known = sorted({v.feature_set for v in self.description.views})
            raise UnknownFeatureSet(f"feature set {feature_set!r} is not served; served: {', '.join(known)}")
        for v in self.description.views:
            if v.feature_set == feature_set and v.version == version:
                return v
        raise UnknownVersion(
            f"feature set {feature_set!r} has no version {version}; served versions: "
            + ", ".join(str(n) for n in versions)
        )

    def get(self, feature_set: str, version: int, entity: str) -> FeatureAnswer:
        return self.get_many(feature_set, version, [entity])[0]

    def get_many(self, feature_set: str, version: int, entities: Sequence[str]) -> list[FeatureAnswer]:
        """Answers in the order asked; UnknownEntity names every entity the view has no row for."""
        view = self.view(feature_set, version)
        names = [f.name for f in view.fields]
        response = self.store.get_online_features(
            features=[f"{view.name}:{n}" for n in names],
            entity_rows=[{view.join_key: e} for e in entities],
        )
        proto = response.proto
        columns = list(proto.metadata.feature_names.val)
        data = response.to_dict()
        end_col = columns.index(view.timestamp_field)
        now = time.time()
        missing, expired = [], []
        for i, e in enumerate(entities):
            end = data[view.timestamp_field][i]
            if proto.results[end_col].statuses[i] == FieldStatus.NOT_FOUND or end is None:
                missing.append(e)
            elif now - _aware(end).timestamp() > view.ttl_s:
                expired.append(e)  # Feast's Redis store keeps rows past the view's TTL: not served here
        if missing or expired:
            parts = []
            if missing:
                parts.append(f"{', '.join(map(repr, missing))} (never materialized)")
            if expired:
                parts.append(
                    f"{', '.join(map(repr, expired))} (window older than the view's TTL of {view.ttl_s}s)"
                )
            raise UnknownEntity(f"no {view.name} row for {view.join_key} " + "; ".join(parts))
        answers = []
        for i, entity in enumerate(entities):
            row = {n: data[n][i] for n in names}
            end = _aware(row[view.timestamp_field])
            start = row.get("window_start")
            upstream = row.get("provenance")
            age = now - end.timestamp()
            answers.append(
                FeatureAnswer(
                    entity=entity,
                    view=view.name,
                    values={n: v for n, v in row.items() if n not in PROVENANCE and n != "provenance"},
                    window_start=_aware(start) if start is not None else None,
                    window_end=end,
                    freshness_s=age,
                    fresh=age <= view.freshness_s,
                    provenance=Provenance(
                        feature_set=str(row["feature_set"]),
                        feature_set_version=int(row["feature_set_version"]),
                        source_topic=str(row["source_topic"]),
                        source_partition=int(row["source_partition"]),
                        source_offset=int(row["source_offset"]),
                        upstream=json.loads(upstream) if isinstance(upstream, str) else None,
                    ),
                )
            )
        return answers


def _aware(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    raise TypeError(f"not a timestamp: {value!r}")
