"""Validation, normalization and enrichment of raw agent events. Pure Python: no Flink here.

`Contract.check(record)` turns one raw Kafka record into either an `AgentEvent` (valid) or a `Rejected`
(why, where from, and the original bytes). It never raises on bad input: every failure is a value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import fastjsonschema
from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError

from flink_apps.common import wire

CONTRACT = "agents.events.raw.v1"
PIPELINE = "agent_events"
ERROR_EVENT_TYPES = frozenset({"agent.error", "task.failed", "tool.failed", "llm.failed"})

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_REASON_VIOLATIONS = 5
_PREVIEW = 48


# Reason codes, from the outermost layer inwards.
EMPTY_RECORD = "empty_record"
OVERSIZED_RECORD = "oversized_record"
INVALID_FRAMING = "invalid_framing"
INVALID_UTF8 = "invalid_utf8"
MALFORMED_JSON = "malformed_json"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
SCHEMA_VIOLATION = "schema_violation"
INVALID_TIMESTAMP = "invalid_timestamp"
OVERSIZED_PAYLOAD = "oversized_payload"
# A defect in this code, not in the record; dead-lettered so one record cannot stop the pipeline.
PROCESSING_ERROR = "processing_error"


@dataclass(frozen=True)
class SourceRecord:
    """One record as read from Kafka: its position and value bytes (None for a tombstone)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    value: bytes | None

    @property
    def position(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True)
class Violation:
    field: str  # JSON Pointer into the record; "" for the record as a whole
    rule: str  # the contract rule (JSON Schema keyword or limit name)
    message: str


@dataclass(frozen=True)
class Rejected:
    """A record that broke the contract."""

    source: SourceRecord
    reason_code: str
    violations: tuple[Violation, ...]
    schema_id: int | None = None

    @property
    def reason(self) -> str:
        shown = [f"{v.field or '(record)'}: {v.message}" for v in self.violations[:_MAX_REASON_VIOLATIONS]]
        hidden = len(self.violations) - len(shown)
        return "; ".join(shown) + (f"; and {hidden} more" if hidden > 0 else "")

    def dead_letter(self) -> dict[str, Any]:
        """The record for agents.events.deadletter.v1."""
        value = self.source.value
        return {
            "reason_code": self.reason_code,
            "reason": self.reason,
            "violations": [{"field": v.field, "rule": v.rule, "message": v.message} for v in self.violations],
            "source_topic": self.source.topic,
            "source_partition": self.source.partition,
            "source_offset": self.source.offset,
            "source_timestamp": self.source.timestamp_ms,
            "source_schema_id": self.schema_id,
            "original": value,
            "original_size": 0 if value is None else len(value),
            "contract": CONTRACT,
            "pipeline": PIPELINE,
        }


@dataclass(frozen=True)
class AgentEvent:
    """A valid event, normalized: lower-cased agent type and tags, UTC epoch millis, canonical payload."""

    event_id: str
    event_type: str
    agent_id: str
    agent_type: str
    entity_id: str
    occurred_at_ms: int
    payload_json: str
    source_topic: str
    source_partition: int
    source_offset: int
    source_timestamp_ms: int | None
    source_schema_id: int | None = None
    tenant_id: str | None = None
    session_id: str | None = None
    trace_id: str | None = None
    parent_event_id: str | None = None
    status: str | None = None
    duration_ms: int | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def event_category(self) -> str:
        return self.event_type.split(".", 1)[0]

    @property
    def is_error(self) -> bool:
        return self.event_type in ERROR_EVENT_TYPES or self.status == "error"

    @property
    def dedup_key(self) -> str:
        """Producers reuse an event's id when they retry, so the id alone identifies a duplicate."""
        return self.event_id

    def signal(self) -> dict[str, Any]:
        """The record for agents.signals.v1."""
        lag = None if self.source_timestamp_ms is None else self.source_timestamp_ms - self.occurred_at_ms
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "event_category": self.event_category,
            "is_error": self.is_error,
            "agent_id": self.agent_id,
            "agent_type": self.agent_type,
            "entity_id": self.entity_id,
            "tenant_id": self.tenant_id,
            "session_id": self.session_id,
            "trace_id": self.trace_id,
            "parent_event_id": self.parent_event_id,
            "status": self.status,
            "duration_ms": self.duration_ms,
            "tags": list(self.tags),
            "occurred_at": self.occurred_at_ms,
            "payload_json": self.payload_json,
            "payload_bytes": len(self.payload_json.encode("utf-8")),
            "ingest_lag_ms": lag,
            "source": {
                "topic": self.source_topic,
                "partition": self.source_partition,
                "offset": self.source_offset,
                "timestamp": self.source_timestamp_ms,
                "schema_id": self.source_schema_id,
            },
            "contract": CONTRACT,
        }


class Contract:
    """The raw event contract (a JSON Schema with `x-headwater-limits`), applied to raw records.

    Draft 7: the newest draft the schema registry's compatibility rules understand, so the same file is
    enforced here, registered there, and evolved under the registry's checks.
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        self._configure(schema)

    def _configure(self, schema: dict[str, Any]) -> None:
        Draft7Validator.check_schema(schema)
        limits = schema.get("x-headwater-limits")
        if not isinstance(limits, dict) or not all(
            isinstance(limits.get(k), int) and limits[k] > 0
            for k in ("max_record_bytes", "max_payload_bytes")
        ):
            raise ValueError(
                "the event contract needs x-headwater-limits with positive integers max_record_bytes "
                f"and max_payload_bytes, found {limits!r}"
            )
        self.schema = schema
        self.max_record_bytes: int = limits["max_record_bytes"]
        self.max_payload_bytes: int = limits["max_payload_bytes"]
        self._validator: Draft7Validator | None = None
        self._compiled: Any = None

    # Flink ships functions to its Python workers pickled; the compiled validator is rebuilt there.
    def __getstate__(self) -> dict[str, Any]:
        return {"schema": self.schema}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._configure(state["schema"])

    @property
    def validator(self) -> Draft7Validator:
        if self._validator is None:
            self._validator = Draft7Validator(self.schema)
        return self._validator

    @property
    def compiled(self) -> Any:
        """The contract compiled to Python code: about 15x faster than `validator`, but it stops at the first
        error. Formats and defaults stay off, as in `validator`, so both accept exactly the same documents."""
        if self._compiled is None:
            self._compiled = fastjsonschema.compile(self.schema, use_default=False, use_formats=False)
        return self._compiled

    def check(self, record: SourceRecord) -> AgentEvent | Rejected:
        """Validate and normalize one raw record; never raises."""
        try:
            return self._check(record)
        except Exception as exc:
            return _reject(
                record, PROCESSING_ERROR, "", "internal", f"{type(exc).__name__}: {_preview(str(exc))}"
            )

    def _check(self, record: SourceRecord) -> AgentEvent | Rejected:
        value = record.value
        if not value:
            what = "null (a tombstone)" if value is None else "empty"
            return _reject(record, EMPTY_RECORD, "", "required", f"record value is {what}")
        if len(value) > self.max_record_bytes:
            return _reject(
                record,
                OVERSIZED_RECORD,
                "",
                "max_record_bytes",
                f"record is {len(value)} bytes, the limit is {self.max_record_bytes}",
            )
        try:
            schema_id, body = wire.split_optional_frame(value)
        except wire.WireFormatError as exc:
            return _reject(record, INVALID_FRAMING, "", "wire_format", str(exc))
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return _reject(record, INVALID_UTF8, "", "utf-8", f"byte {exc.start}: {exc.reason}", schema_id)
        try:
            document = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)
        except (json.JSONDecodeError, _AmbiguousJson) as exc:
            message = (
                f"line {exc.lineno} column {exc.colno}: {exc.msg}"
                if isinstance(exc, json.JSONDecodeError)
                else str(exc)
            )
            return _reject(record, MALFORMED_JSON, "", "json", message, schema_id)

        violations = self._schema_violations(document)
        if violations:
            on_type = {v.rule for v in violations if v.field == "/event_type"}
            unknown_type = on_type == {"enum"}  # a string, just not a known one
            code = UNKNOWN_EVENT_TYPE if unknown_type else SCHEMA_VIOLATION
            return Rejected(record, code, tuple(violations), schema_id)

        try:
            occurred = datetime.fromisoformat(document["occurred_at"].upper())
        except ValueError as exc:
            return _reject(
                record,
                INVALID_TIMESTAMP,
                "/occurred_at",
                "date-time",
                f"not a valid date-time: {exc}",
                schema_id,
            )
        payload_json = wire.canonical_json(document["payload"])
        payload_size = len(payload_json.encode("utf-8"))
        if payload_size > self.max_payload_bytes:
            return _reject(
                record,
                OVERSIZED_PAYLOAD,
                "/payload",
                "max_payload_bytes",
                f"payload is {payload_size} bytes as compact JSON, the limit is {self.max_payload_bytes}",
                schema_id,
            )
        return AgentEvent(
            event_id=document["event_id"],
            event_type=document["event_type"],
            agent_id=document["agent_id"],
            agent_type=document["agent_type"].lower(),
            entity_id=document.get("entity_id", document["agent_id"]),
            occurred_at_ms=(occurred.astimezone(UTC) - EPOCH) // timedelta(milliseconds=1),
            payload_json=payload_json,
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            source_timestamp_ms=record.timestamp_ms,
            source_schema_id=schema_id,
            tenant_id=document.get("tenant_id"),
            session_id=document.get("session_id"),
            trace_id=document.get("trace_id"),
            parent_event_id=document.get("parent_event_id"),
            status=document.get("status"),
            duration_ms=document.get("duration_ms"),
            tags=tuple(sorted({t.lower() for t in document.get("tags", ())})),
        )

    def _schema_violations(self, document: Any) -> list[Violation]:
        # Hot path: valid documents pass the compiled validator only; a reject is explained in full (every
        # field and rule) by the reference validator, which also has the last word.
        try:
            self.compiled(document)
            return []
        except fastjsonschema.JsonSchemaException:
            pass
        found: dict[tuple[str, str], Violation] = {}
        for error in self.validator.iter_errors(document):
            for violation in _explain(error):
                found.setdefault((violation.field, violation.rule), violation)
        return sorted(found.values(), key=lambda v: (v.field, v.rule))


def _reject(
    record: SourceRecord, code: str, field: str, rule: str, message: str, schema_id: int | None = None
) -> Rejected:
    return Rejected(record, code, (Violation(field, rule, message),), schema_id)


class _AmbiguousJson(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _AmbiguousJson(f"duplicate key {_preview(key)}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise _AmbiguousJson(f"{name} is not valid JSON")


def _pointer(path: Any) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _json_type(value: Any) -> str:
    # The app ships without the platform package; `headwater.contracts.json_compat.json_type` is the same
    # function (a unit test holds them equal). Like JSON Schema, 1.0 is an integer.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _PREVIEW else text[: _PREVIEW - 3] + "..."


def _explain(error: ValidationError) -> list[Violation]:
    """Say which field broke which rule, without echoing (possibly huge or sensitive) values in full."""
    where = _pointer(error.absolute_path)
    rule = str(error.validator)
    limit = error.validator_value
    instance = error.instance
    if rule == "required" and isinstance(instance, dict):
        return [
            Violation(f"{where}/{name}", rule, "missing required field")
            for name in limit
            if name not in instance
        ]
    if rule == "additionalProperties" and isinstance(instance, dict):
        known = error.schema.get("properties", {})
        return [
            Violation(f"{where}/{name}", rule, "field is not in the contract")
            for name in instance
            if name not in known
        ]
    if rule == "type":
        expected = limit if isinstance(limit, str) else " or ".join(limit)
        message = f"must be {expected}, got {_json_type(instance)}"
    elif rule == "enum":
        if where == "/event_type":
            message = f"unknown event type {_preview(instance)}"
        else:
            message = f"{_preview(instance)} is not one of {', '.join(map(str, limit))}"
    elif rule in ("maxLength", "maxItems", "maxProperties"):
        message = f"size {len(instance)} exceeds {rule} {limit}"
    elif rule in ("minLength", "minItems", "minProperties"):
        message = f"size {len(instance)} is below {rule} {limit}"
    elif rule in ("maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum"):
        message = f"{_preview(instance)} violates {rule} {limit}"
    elif rule == "pattern":
        message = f"does not match {limit}"
    elif rule == "uniqueItems":
        message = "items are not unique"
    else:
        message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
    return [Violation(where, rule, message)]
