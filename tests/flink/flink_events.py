"""Test data: raw agent events and the codecs of the catalog's schemas (ids are arbitrary test values)."""

from __future__ import annotations

import json
from typing import Any

from flink_apps.agent_events.logic import AgentEvent, Contract, SourceRecord
from flink_apps.common import schemas, wire
from flink_apps.common.wire import AvroCodec

SIGNALS_ID = 101
DEAD_LETTERS_ID = 102
FEATURES_ID = 103
RAW_TOPIC = "agents.events.raw.v1"
SIGNALS_TOPIC = "agents.signals.v1"

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def contract() -> Contract:
    return Contract(schemas.for_topic("agents.events.raw.v1"))


def signals_codec() -> AvroCodec:
    return AvroCodec(schemas.for_topic("agents.signals.v1"), SIGNALS_ID)


def dead_letters_codec() -> AvroCodec:
    return AvroCodec(schemas.for_topic("agents.events.deadletter.v1"), DEAD_LETTERS_ID)


def features_codec() -> AvroCodec:
    return AvroCodec(schemas.for_topic("features.agent_activity.v1"), FEATURES_ID)


def iso(ms: int) -> str:
    """RFC 3339 UTC text of epoch millis."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event(event_id: str = "evt-1", *, at_ms: int = BASE_MS, **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": event_id,
        "event_type": "tool.called",
        "agent_id": "agent-1",
        "agent_type": "Planner",
        "occurred_at": iso(at_ms),
        "payload": {"tool": "search", "args": {"q": "weather"}},
    }
    doc.update(fields)
    return doc


def raw(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def framed(doc: Any, schema_id: int = 7) -> bytes:
    return wire.frame(schema_id, raw(doc))


def record(
    value: bytes | None, offset: int = 0, partition: int = 0, timestamp_ms: int | None = BASE_MS
) -> SourceRecord:
    return SourceRecord(RAW_TOPIC, partition, offset, timestamp_ms, value)


def signal_bytes(doc: dict[str, Any], offset: int = 0, partition: int = 0) -> bytes:
    """A signal as agent_events would write it for the raw event `doc`."""
    checked = contract().check(record(raw(doc), offset, partition))
    assert isinstance(checked, AgentEvent), checked
    return signals_codec().encode(checked.signal())
