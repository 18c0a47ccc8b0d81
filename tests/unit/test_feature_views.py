"""Feature views derived from the catalog, the materializer's identity from its flows, and the pure record
handling of the materializer (decode, row, dead letter): no broker, no Redis."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import struct
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import pytest

from feature_store.description import Description, View
from feature_store.records import BadRecord, Source, dead_letter, decode, to_row
from headwater.config import load_platform
from headwater.contracts.model import CATALOG_DIR
from headwater.feature_views import (
    FEATURE_SLAS,
    FeatureViewError,
    feature_views,
    materializer_flows,
    repo_description,
)
from headwater.spec import AclResource, Platform, Sla, TopicKind, acls_for

TOPIC = "features.agent_activity.v1"


@pytest.fixture(scope="module")
def platform() -> Platform:
    return load_platform("local")


def _contract() -> dict[str, Any]:
    return dict(json.loads((CATALOG_DIR / "schemas" / f"{TOPIC}.avsc").read_text()))


def _with_contract(platform: Platform, tmp_path: Path, schema: dict[str, Any], **topic: Any) -> Platform:
    shutil.copytree(CATALOG_DIR / "schemas", tmp_path / "schemas")
    (tmp_path / "schemas" / f"{TOPIC}.avsc").write_text(json.dumps(schema))
    topics = tuple(dataclasses.replace(t, **topic) if t.name == TOPIC else t for t in platform.topics)
    return dataclasses.replace(platform, topics=topics, catalog_dir=str(tmp_path))


def test_every_feature_topic_becomes_a_versioned_view(platform: Platform) -> None:
    feature_topics = [t for t in platform.topics if t.kind == TopicKind.FEATURE]
    views = feature_views(platform)
    assert [v.topic for v in views] == [t.name for t in feature_topics]
    (view,) = views
    assert (view.name, view.feature_set, view.version) == ("agent_activity_v1", "agent_activity", 1)
    assert view.entity == view.join_key == platform.topic(TOPIC).key
    contract = [f["name"] for f in _contract()["fields"]]
    # Every contract field but the key, then the row's provenance.
    assert list(view.field_names) == [n for n in contract if n != "entity_id"] + [
        "feature_set",
        "feature_set_version",
        "source_topic",
        "source_partition",
        "source_offset",
    ]
    types = {f.name: f.dtype for f in view.fields}
    assert types["window_end"] == types["first_seen_at"] == "UnixTimestamp"
    assert types["event_counts"] == types["provenance"] == "Json"  # map and record: JSON text
    assert types["avg_duration_ms"] == "Float64"  # ["null", "double"]
    assert (types["event_count"], types["distinct_agents"], types["last_event_type"]) == (
        "Int64",
        "Int32",
        "String",
    )
    assert view.timestamp_field == "window_end"


def test_ttl_and_freshness_follow_the_sla(platform: Platform, tmp_path: Path) -> None:
    gold = feature_views(platform)[0]
    bronze = feature_views(_with_contract(platform, tmp_path, _contract(), sla=Sla.BRONZE))[0]
    assert gold.sla == "gold" and bronze.sla == "bronze"
    assert gold.freshness_s < bronze.freshness_s and gold.ttl_s < bronze.ttl_s
    for s in FEATURE_SLAS.values():
        assert s.freshness_s < s.ttl_s  # a stalled feed pages someone before agents lose their features


def test_a_contract_that_cannot_be_served_is_refused_with_every_problem(
    platform: Platform, tmp_path: Path
) -> None:
    schema = _contract()
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "window_end"]
    schema["fields"].append({"name": "source_offset", "type": "long"})
    schema["fields"].append({"name": "either", "type": ["string", "long"]})
    with pytest.raises(FeatureViewError) as err:
        feature_views(_with_contract(platform, tmp_path, schema))
    assert err.value.problems == [
        f'catalog.topics.{TOPIC}.schema: field \'either\' has type ["string", "long"]; allowed: Avro primitives, '
        "timestamps, maps, arrays, records, or one of them or null",
        f"catalog.topics.{TOPIC}.schema: a feature topic's records need a timestamp field 'window_end' "
        "(the window they describe)",
        f"catalog.topics.{TOPIC}.schema: field 'source_offset' is reserved for the row's provenance; rename it",
    ]


def test_the_repo_description_loads_into_the_feast_side(platform: Platform, tmp_path: Path) -> None:
    path = tmp_path / "repo.json"
    path.write_text(json.dumps(repo_description(platform)))
    description = Description.load(path)
    assert description.project == "headwater_local"
    assert [v.name for v in description.views] == [v.name for v in feature_views(platform)]
    assert description.view_for_topic(TOPIC).ttl_s == feature_views(platform)[0].ttl_s


def test_the_materializer_is_read_from_the_flows_and_gets_least_privilege(platform: Platform) -> None:
    flows = materializer_flows(platform)
    principal = platform.principal(flows.principal)
    assert flows.topics == (TOPIC,)
    assert platform.topic(flows.deadletter_topic).kind == TopicKind.DEADLETTER
    acls = {(a.resource, a.name): a.operations for a in acls_for(principal)}
    assert acls == {
        (AclResource.TOPIC, TOPIC): ("Describe", "Read"),
        (AclResource.GROUP, flows.group): ("Read",),
        (AclResource.TOPIC, flows.deadletter_topic): ("Describe", "Write"),
    }


def test_no_materializer_in_the_catalog_is_one_clear_line(platform: Platform) -> None:
    flows = materializer_flows(platform)
    without = dataclasses.replace(
        platform, principals=tuple(p for p in platform.principals if p.name != flows.principal)
    )
    with pytest.raises(FeatureViewError, match=r"0 principals consume every feature topic"):
        materializer_flows(without)


# ---- the materializer's record handling ---------------------------------------------------------------------


def _view(platform: Platform) -> View:
    return View.from_json(feature_views(platform)[0].to_json())


def _record(entity: str = "e1", start: int = 1_790_000_000_000, version: int = 1) -> dict[str, Any]:
    return {
        "entity_id": entity,
        "window_start": start,
        "window_end": start + 60_000,
        "event_count": 3,
        "event_counts": {"tool.called": 3},
        "category_counts": {"tool": 3},
        "error_count": 1,
        "error_rate": 1 / 3,
        "events_per_minute": 3.0,
        "errors_per_minute": 1.0,
        "distinct_agents": 1,
        "distinct_sessions": 2,
        "avg_duration_ms": None,
        "max_duration_ms": None,
        "first_seen_at": start,
        "last_seen_at": start + 5,
        "last_event_type": "tool.called",
        "provenance": {
            "feature_set": "agent_activity",
            "feature_set_version": version,
            "pipeline": "feature_aggregator",
            "source_topic": "agents.signals.v1",
            "source_partitions": [{"partition": 0, "min_offset": 1, "max_offset": 3, "record_count": 3}],
        },
    }


def _framed(record: dict[str, Any], schema_id: int = 7) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(_contract()), record)
    return struct.pack(">bI", 0, schema_id) + buf.getvalue()


def _schemas(schema_id: int) -> dict[str, Any]:
    if schema_id != 7:
        raise LookupError(f"schema id {schema_id} is unknown to the registry")
    return _contract()


def test_a_record_becomes_a_row_with_its_provenance(platform: Platform) -> None:
    value = _framed(_record())
    schema_id, record = decode(value, _schemas)
    row = to_row(_view(platform), record, Source(TOPIC, 4, 1234, b"e1", value), schema_id)
    assert row["entity_id"] == "e1" and row["event_count"] == 3
    assert row["window_end"] == datetime.fromtimestamp(1_790_000_060, tz=UTC)
    assert json.loads(row["event_counts"]) == {"tool.called": 3}
    assert json.loads(row["provenance"])["source_partitions"][0]["max_offset"] == 3
    assert (row["feature_set"], row["feature_set_version"]) == ("agent_activity", 1)
    assert (row["source_topic"], row["source_partition"], row["source_offset"]) == (TOPIC, 4, 1234)


@pytest.mark.parametrize(
    ("value", "key", "code"),
    [
        (None, b"e1", "tombstone"),
        (b'{"json": true}', b"e1", "invalid_framing"),
        (_framed(_record(), schema_id=9), b"e1", "unknown_schema"),
        (struct.pack(">bI", 0, 7) + b"\x01", b"e1", "undecodable"),
        (_framed(_record()), b"someone-else", "key_mismatch"),
        (_framed(_record(version=2)), b"e1", "version_mismatch"),
        (_framed({**_record(), "window_end": _record()["window_start"]}), b"e1", "invalid_window"),
    ],
)
def test_records_the_store_must_not_take_say_why(
    platform: Platform, value: bytes | None, key: bytes, code: str
) -> None:
    source = Source(TOPIC, 0, 42, key, value, 1_790_000_000_000)
    with pytest.raises(BadRecord) as err:
        schema_id, record = decode(value, _schemas)
        to_row(_view(platform), record, source, schema_id)
    assert err.value.code == code and err.value.reason
    letter = dead_letter(source, err.value, f"{TOPIC}-value", "feature-materializer")
    contract = json.loads((CATALOG_DIR / "schemas" / "features.deadletter.v1.avsc").read_text())
    assert fastavro.validation.validate(letter, fastavro.parse_schema(contract))
    assert (letter["reason_code"], letter["source_offset"], letter["original"]) == (code, 42, value)


def test_the_feature_store_reads_the_fields_the_spec_adds() -> None:
    # feature_store ships on its own and cannot import the spec: the provenance fields and type names are
    # repeated there, and this keeps both sides equal.
    from feature_store.description import PROVENANCE, TYPE_NAMES
    from headwater.feature_views import JSON_TEXT, PROVENANCE_FIELDS

    assert tuple(name for name, _ in PROVENANCE_FIELDS) == PROVENANCE
    assert {t for _, t in PROVENANCE_FIELDS} | {JSON_TEXT} <= TYPE_NAMES
    from headwater.feature_views import _AVRO_PRIMITIVES

    assert set(_AVRO_PRIMITIVES.values()) | {"UnixTimestamp"} <= TYPE_NAMES
