"""The one module that frames and encodes every record."""

from __future__ import annotations

import pytest
from flink_events import signals_codec

from flink_apps.common import schemas, wire
from flink_apps.common.wire import AvroCodec, WireFormatError


def test_frame_roundtrip_and_header_layout() -> None:
    data = wire.frame(258, b"body")
    assert data[:5] == b"\x00\x00\x00\x01\x02"
    assert wire.unframe(data) == (258, b"body")
    assert wire.split_optional_frame(b'{"a":1}') == (None, b'{"a":1}')


@pytest.mark.parametrize("data", [b"", b"\x00\x00\x00", b"\x01\x00\x00\x00\x01{}"])
def test_bad_frames_are_errors(data: bytes) -> None:
    with pytest.raises(WireFormatError):
        wire.unframe(data)


def test_schema_id_must_fit_four_bytes() -> None:
    with pytest.raises(ValueError):
        wire.frame(2**32, b"")


def test_canonical_json_is_stable() -> None:
    assert wire.canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'


def test_codec_rejects_foreign_schema_ids_without_a_registry() -> None:
    codec = signals_codec()
    other = AvroCodec(schemas.for_topic("agents.signals.v1"), codec.schema_id + 1)
    with pytest.raises(WireFormatError, match="no schema registry"):
        codec.decode(other.encode(_minimal_signal()))


def test_codec_resolves_an_evolved_writer_schema_via_lookup() -> None:
    reader = schemas.for_topic("agents.signals.v1")
    writer = dict(reader, fields=[*reader["fields"], {"name": "region", "type": "string", "default": "eu"}])
    written = AvroCodec(writer, 900).encode({**_minimal_signal(), "region": "us"})
    lookups: list[int] = []

    def lookup(schema_id: int) -> dict[str, object]:
        lookups.append(schema_id)
        return writer

    codec = AvroCodec(reader, 5, writer_schemas=lookup)
    decoded = codec.decode(written)
    assert decoded["event_id"] == "e" and "region" not in decoded
    codec.decode(written)
    assert lookups == [900]  # cached


def test_truncated_avro_body_is_a_wire_format_error() -> None:
    codec = signals_codec()
    with pytest.raises(WireFormatError):
        codec.decode(codec.encode(_minimal_signal())[:12])


def _minimal_signal() -> dict[str, object]:
    return {
        "event_id": "e",
        "event_type": "tool.called",
        "event_category": "tool",
        "is_error": False,
        "agent_id": "a",
        "agent_type": "planner",
        "entity_id": "a",
        "occurred_at": 0,
        "payload_json": "{}",
        "payload_bytes": 2,
        "source": {"topic": "t", "partition": 0, "offset": 0},
        "contract": "agents.events.raw.v1",
    }
