"""Producer and consumer helpers for the Confluent wire format, with ids from the registry.

A framed value is the magic byte 0, the schema id as a 4-byte big-endian unsigned int, then the body:
Avro binary for the curated topics, UTF-8 JSON for raw events. Ids come from the registry's
Confluent-compatible API (`RegistryClient`), so a record produced here is read by any Confluent-format
consumer (and the Flink apps) and vice versa.

Avro values use the schema's physical types: a `timestamp-millis` field is an int of epoch milliseconds,
as the apps write it (logical types do not change the bytes, only how the official `avro` library would
convert them). The JSON serializer refuses a record that breaks its contract and says which field and
which rule, the same facts a dead letter carries.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from headwater.contracts.model import SchemaType, registered_text, subject_name
from headwater.contracts.registry import RegistryClient

MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")
HEADER_SIZE = _HEADER.size


class WireFormatError(ValueError):
    """The bytes are not a Confluent wire-format frame, or their body does not decode."""


@dataclass(frozen=True)
class Violation:
    """One way a record breaks its contract: JSON Pointer of the field, the rule, a readable message."""

    field: str
    rule: str
    message: str


class ContractViolation(ValueError):
    """A record does not satisfy its topic's contract."""

    def __init__(self, subject: str, violations: list[Violation]) -> None:
        self.subject = subject
        self.violations = violations
        shown = "; ".join(f"{v.field or '/'}: {v.rule}: {v.message}" for v in violations[:5])
        more = f" (+{len(violations) - 5} more)" if len(violations) > 5 else ""
        super().__init__(f"record breaks the contract of {subject}: {shown}{more}")


def frame(schema_id: int, body: bytes) -> bytes:
    if not 0 <= schema_id <= 0xFFFFFFFF:
        raise ValueError(f"a schema id fits in 4 unsigned bytes; got {schema_id}")
    return _HEADER.pack(MAGIC_BYTE, schema_id) + body


def unframe(data: bytes) -> tuple[int, bytes]:
    """(schema id, body) of a framed value."""
    if len(data) < HEADER_SIZE:
        raise WireFormatError(f"a framed value has at least {HEADER_SIZE} bytes; got {len(data)}")
    magic, schema_id = _HEADER.unpack_from(data)
    if magic != MAGIC_BYTE:
        raise WireFormatError(f"first byte is {magic}; the wire format's magic byte is {MAGIC_BYTE}")
    return schema_id, data[HEADER_SIZE:]


def _physical(schema: Any) -> Any:
    """The schema without logical-type annotations (same bytes; ints stay ints)."""
    if isinstance(schema, Mapping):
        return {k: _physical(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_physical(s) for s in schema]
    return schema


def _parse_avro(schema: Mapping[str, Any]) -> Any:
    import avro.schema

    return avro.schema.parse(json.dumps(_physical(schema)))


def decode_avro(schema: Mapping[str, Any], data: bytes) -> dict[str, Any]:
    """A framed Avro value read with a schema known beforehand (the catalog's), whatever id it was framed
    with: for tools that read a record written from that very schema, without a registry."""
    import avro.io

    _, body = unframe(data)
    reader = avro.io.DatumReader(_parse_avro(schema))
    try:
        record = reader.read(avro.io.BinaryDecoder(io.BytesIO(body)))
    except Exception as exc:  # the avro library raises several types for truncated or corrupt bodies
        raise WireFormatError(f"Avro body does not decode with the catalog's schema: {exc}") from exc
    if not isinstance(record, dict):
        raise WireFormatError("Avro body is not a record")
    return record


class _Registered:
    """The id of one schema under one subject, looked up (or registered) on first use."""

    def __init__(
        self,
        client: RegistryClient,
        subject: str,
        schema: Mapping[str, Any],
        kind: SchemaType,
        register: bool,
    ) -> None:
        self.client = client
        self.subject = subject
        self.text = registered_text(schema)
        self.kind = kind
        self.register = register
        self._id: int | None = None

    @property
    def schema_id(self) -> int:
        if self._id is None:
            if self.register:
                self._id = self.client.register(self.subject, self.text, self.kind)
            else:
                found = self.client.lookup(self.subject, self.text, self.kind)
                if found is None:
                    raise LookupError(
                        f"this schema is not registered under subject {self.subject} at {self.client.root}: "
                        "register the contracts first (pulumi up, or `headwater contracts register`)"
                    )
                self._id = found.id
        return self._id


class AvroSerializer:
    """Record dict -> framed Avro, for the topic's value subject (`<topic>-value`)."""

    def __init__(
        self, client: RegistryClient, topic: str, schema: Mapping[str, Any], *, register: bool = False
    ) -> None:
        import avro.io

        self.subject = subject_name(topic)
        self._id = _Registered(client, self.subject, schema, SchemaType.AVRO, register)
        self._writer = avro.io.DatumWriter(_parse_avro(schema))

    @property
    def schema_id(self) -> int:
        return self._id.schema_id

    def __call__(self, record: Mapping[str, Any]) -> bytes:
        import avro.errors
        import avro.io

        buf = io.BytesIO()
        try:
            self._writer.write(dict(record), avro.io.BinaryEncoder(buf))
        except avro.errors.AvroTypeException as exc:
            raise ContractViolation(self.subject, [Violation("", "avro", str(exc))]) from None
        return frame(self.schema_id, buf.getvalue())


class AvroDeserializer:
    """Framed Avro -> record dict. The writer's schema comes from the registry by id; with a `reader_schema`
    records are resolved to it (Avro schema evolution), otherwise returned as written."""

    def __init__(self, client: RegistryClient, reader_schema: Mapping[str, Any] | None = None) -> None:
        self.client = client
        self._reader = _parse_avro(reader_schema) if reader_schema is not None else None
        self._readers: dict[int, Any] = {}

    def writer_schema(self, schema_id: int) -> dict[str, Any]:
        kind, text = self.client.schema_by_id(schema_id)
        if kind != SchemaType.AVRO:
            raise WireFormatError(f"schema id {schema_id} is a {kind.value} schema, not Avro")
        value = json.loads(text)
        assert isinstance(value, dict)
        return value

    def __call__(self, data: bytes) -> dict[str, Any]:
        import avro.io

        schema_id, body = unframe(data)
        if schema_id not in self._readers:
            writer = _parse_avro(self.writer_schema(schema_id))
            self._readers[schema_id] = avro.io.DatumReader(writer, self._reader or writer)
        try:
            record = self._readers[schema_id].read(avro.io.BinaryDecoder(io.BytesIO(body)))
        except Exception as exc:  # the avro library raises several types for truncated or corrupt bodies
            raise WireFormatError(f"Avro body of schema id {schema_id} does not decode: {exc}") from exc
        if not isinstance(record, dict):
            raise WireFormatError(f"Avro body of schema id {schema_id} is not a record")
        return record


def violations(schema: Mapping[str, Any], record: Any) -> list[Violation]:
    """Every way `record` breaks a JSON Schema contract, sorted by field ([] when it conforms)."""
    import jsonschema

    cls = jsonschema.validators.validator_for(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    found = [
        Violation(
            "".join(f"/{p}" for p in error.absolute_path),
            str(error.validator),
            error.message,
        )
        for error in validator.iter_errors(record)
    ]
    return sorted(found, key=lambda v: (v.field, v.rule, v.message))


class JsonSerializer:
    """Record dict -> framed UTF-8 JSON, validated against the topic's JSON Schema contract first."""

    def __init__(
        self, client: RegistryClient, topic: str, schema: Mapping[str, Any], *, register: bool = False
    ) -> None:
        self.subject = subject_name(topic)
        self.schema = schema
        self._id = _Registered(client, self.subject, schema, SchemaType.JSON, register)

    @property
    def schema_id(self) -> int:
        return self._id.schema_id

    def __call__(self, record: Mapping[str, Any]) -> bytes:
        problems = violations(self.schema, record)
        if problems:
            raise ContractViolation(self.subject, problems)
        body = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
        return frame(self.schema_id, body)


class JsonDeserializer:
    """Framed (or bare) UTF-8 JSON -> value; with a `schema`, a value that breaks it raises ContractViolation."""

    def __init__(self, schema: Mapping[str, Any] | None = None, *, subject: str = "") -> None:
        self.schema = schema
        self.subject = subject

    def __call__(self, data: bytes) -> Any:
        body = unframe(data)[1] if data[:1] == bytes([MAGIC_BYTE]) else data
        try:
            value = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise WireFormatError(f"JSON body does not decode: {exc}") from None
        if self.schema is not None:
            problems = violations(self.schema, value)
            if problems:
                raise ContractViolation(self.subject or "(contract)", problems)
        return value
