"""Feature records -> online rows, and what is wrong with the ones that cannot be stored. No I/O here.

A feature topic carries Avro records in the Confluent wire format (magic byte 0, 4-byte schema id, body),
keyed by the entity id. A row for the online store is the record's fields (nested values as canonical JSON
text, timestamps as aware datetimes) plus its provenance: the feature set and version of the view, and the
topic, partition and offset it was read from.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import fastavro

from feature_store.description import PROVENANCE, View

HEADER = struct.Struct(">bI")


class BadRecord(ValueError):
    """A record the online store must not take; `code` is the dead letter's reason code."""

    def __init__(self, code: str, reason: str, schema_id: int | None = None) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.schema_id = schema_id


@dataclass(frozen=True)
class Source:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None


def decode(
    value: bytes | None, writer_schema: Callable[[int], Mapping[str, Any]]
) -> tuple[int, dict[str, Any]]:
    """(schema id, record) of a framed Avro value; BadRecord says why not."""
    if value is None:
        raise BadRecord(
            "tombstone",
            "a null value (compaction tombstone): the online store keeps the last window until its TTL",
        )
    if len(value) < HEADER.size or value[0] != 0:
        raise BadRecord(
            "invalid_framing", f"{len(value)} bytes without the wire format's magic byte and schema id"
        )
    _, schema_id = HEADER.unpack_from(value)
    try:
        schema = writer_schema(schema_id)
    except LookupError as exc:
        raise BadRecord("unknown_schema", str(exc), schema_id) from None
    try:
        record = fastavro.schemaless_reader(
            io.BytesIO(value[HEADER.size :]), fastavro.parse_schema(dict(schema))
        )
    except Exception as exc:
        raise BadRecord(
            "undecodable", f"Avro body does not decode with schema id {schema_id}: {exc}", schema_id
        ) from None
    if not isinstance(record, dict):
        raise BadRecord("undecodable", f"schema id {schema_id} is not a record schema", schema_id)
    return schema_id, record


def _millis(value: Any) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, int):
        return value
    raise TypeError(f"not a timestamp: {value!r}")


def _utc(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def to_row(
    view: View, record: Mapping[str, Any], source: Source, schema_id: int | None = None
) -> dict[str, Any]:
    """The online row of `record` for `view`, with its provenance; BadRecord for one that does not fit."""

    def bad(code: str, reason: str) -> BadRecord:
        return BadRecord(code, reason, schema_id)

    entity = record.get(view.join_key)
    if not isinstance(entity, str) or not entity:
        raise bad("missing_entity", f"field {view.join_key!r} is {entity!r}; allowed: a non-empty string")
    if source.key is not None and source.key != entity.encode():
        raise bad(
            "key_mismatch",
            f"record key {source.key!r} is not the record's {view.join_key} {entity!r} (the topic is keyed by it)",
        )
    provenance = record.get("provenance")
    if isinstance(provenance, Mapping):
        fs, version = provenance.get("feature_set"), provenance.get("feature_set_version")
        if fs is not None and fs != view.feature_set:
            raise bad("feature_set_mismatch", f"feature set {fs!r} on the topic of {view.feature_set!r}")
        if version is not None and version != view.version:
            raise bad(
                "version_mismatch",
                f"feature set version {version} on {view.topic}, which serves version {view.version} only",
            )
    row: dict[str, Any] = {view.join_key: entity}
    for f in view.fields:
        if f.name in PROVENANCE:
            continue
        value = record.get(f.name)
        if value is None:
            row[f.name] = None
        elif f.dtype == "UnixTimestamp":
            try:
                row[f.name] = _utc(_millis(value))
            except TypeError as exc:
                raise bad("invalid_field", f"{f.name}: {exc}") from None
        elif f.dtype == "Json":
            row[f.name] = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
        else:
            row[f.name] = value
    start, end = row.get("window_start"), row.get(view.timestamp_field)
    if not isinstance(end, datetime):
        raise bad("invalid_window", f"{view.timestamp_field} is missing")
    if isinstance(start, datetime) and start >= end:
        raise bad("invalid_window", f"window [{start.isoformat()}, {end.isoformat()}) is empty")
    row.update(
        feature_set=view.feature_set,
        feature_set_version=view.version,
        source_topic=source.topic,
        source_partition=source.partition,
        source_offset=source.offset,
    )
    return row


def dead_letter(source: Source, error: BadRecord, contract: str, pipeline: str) -> dict[str, Any]:
    """The dead-letter record (features.deadletter contract) for a record the store refused."""
    return {
        "reason_code": error.code,
        "reason": error.reason,
        "violations": [],
        "source_topic": source.topic,
        "source_partition": source.partition,
        "source_offset": source.offset,
        "source_timestamp": source.timestamp_ms,
        "source_schema_id": error.schema_id,
        "original": source.value,
        "original_size": len(source.value or b""),
        "contract": contract,
        "pipeline": pipeline,
    }


def encode(schema: Mapping[str, Any], schema_id: int, record: Mapping[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(dict(schema)), dict(record))
    return HEADER.pack(0, schema_id) + buf.getvalue()
