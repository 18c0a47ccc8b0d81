"""Every byte-level encoding the apps read or write, in one place.

Confluent wire format: magic byte 0, the schema id as a 4-byte big-endian unsigned int, then the body
(Avro binary for the outputs; JSON for raw agent events, which may also come unframed).
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable, Mapping
from typing import Any

import fastavro

MAGIC_BYTE = 0
HEADER = struct.Struct(">bI")
HEADER_SIZE = HEADER.size  # 5


class WireFormatError(ValueError):
    """The bytes are not a well-formed Confluent wire-format frame."""


def frame(schema_id: int, body: bytes) -> bytes:
    """Prefix `body` with the wire-format header for `schema_id`."""
    if not 0 <= schema_id <= 0xFFFFFFFF:
        raise ValueError(f"schema id must fit in 4 unsigned bytes, got {schema_id}")
    return HEADER.pack(MAGIC_BYTE, schema_id) + body


def is_framed(data: bytes) -> bool:
    """True when `data` starts with the magic byte (JSON text never does, so raw events can be told apart)."""
    return len(data) > 0 and data[0] == MAGIC_BYTE


def unframe(data: bytes) -> tuple[int, bytes]:
    """Split a frame into (schema id, body)."""
    if len(data) < HEADER_SIZE:
        raise WireFormatError(f"frame has {len(data)} bytes, the header alone needs {HEADER_SIZE}")
    magic, schema_id = HEADER.unpack_from(data)
    if magic != MAGIC_BYTE:
        raise WireFormatError(f"first byte is {magic}, the wire format's magic byte is {MAGIC_BYTE}")
    return schema_id, data[HEADER_SIZE:]


def split_optional_frame(data: bytes) -> tuple[int | None, bytes]:
    """For inputs that may or may not be framed: (schema id or None, body)."""
    if is_framed(data):
        return unframe(data)
    return None, data


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys: equal values always give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class AvroCodec:
    """Avro binary in the wire format, for one schema and the id the registry gave it.

    Decoding accepts frames of other schema ids when `writer_schemas` can supply the writer's schema
    (resolved against this codec's schema, as Avro schema evolution requires).
    """

    def __init__(
        self,
        schema: Mapping[str, Any],
        schema_id: int,
        writer_schemas: Callable[[int], Mapping[str, Any]] | None = None,
    ) -> None:
        self.schema_id = schema_id
        self.definition: dict[str, Any] = dict(schema)  # the schema as given (native encoders take it)
        self.full_name = f"{schema.get('namespace', '')}.{schema.get('name', '')}".lstrip(".")
        self._schema = fastavro.parse_schema(dict(schema))
        self._writer_schemas = writer_schemas
        self._writers: dict[int, Any] = {schema_id: self._schema}

    def encode(self, record: Mapping[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(HEADER.pack(MAGIC_BYTE, self.schema_id))
        fastavro.schemaless_writer(buf, self._schema, dict(record))
        return buf.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        schema_id, body = unframe(data)
        writer = self._writer_for(schema_id)
        reader = None if writer is self._schema else self._schema
        try:
            record = fastavro.schemaless_reader(io.BytesIO(body), writer, reader)
        except Exception as exc:  # fastavro raises several types for truncated or corrupt bodies
            raise WireFormatError(f"Avro body of schema id {schema_id} does not decode: {exc}") from exc
        if not isinstance(record, dict):
            raise WireFormatError(f"Avro body of schema id {schema_id} is not a record")
        return record

    def _writer_for(self, schema_id: int) -> Any:
        if schema_id not in self._writers:
            if self._writer_schemas is None:
                raise WireFormatError(
                    f"schema id {schema_id} is not {self.full_name}'s id {self.schema_id} "
                    "and no schema registry is configured to look it up"
                )
            self._writers[schema_id] = fastavro.parse_schema(dict(self._writer_schemas(schema_id)))
        return self._writers[schema_id]
