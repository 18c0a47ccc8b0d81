"""The raw event contract and normalization, without Flink."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest
from flink_events import BASE_MS, contract, dead_letters_codec, event, framed, raw, record, signals_codec

from flink_apps.agent_events import logic
from flink_apps.agent_events.logic import AgentEvent, Rejected
from headwater.contracts.json_compat import json_type

CONTRACT = contract()


def rejected(value: bytes | None) -> Rejected:
    result = CONTRACT.check(record(value, offset=42, partition=3))
    assert isinstance(result, Rejected), f"expected a rejection, got {result!r}"
    return result


def accepted(value: bytes) -> AgentEvent:
    result = CONTRACT.check(record(value, offset=42, partition=3))
    assert isinstance(result, AgentEvent), f"expected a valid event, got {result!r}"
    return result


def rules(result: Rejected) -> set[tuple[str, str]]:
    return {(v.field, v.rule) for v in result.violations}


def test_valid_event_is_normalized_and_enriched() -> None:
    doc = event(
        "evt-9",
        event_type="task.failed",
        agent_type="ReTriever",
        occurred_at="2026-01-01T02:00:00.5+02:00",
        tags=["B", "a"],
        session_id="s-1",
        duration_ms=1500,
        payload={"z": 1, "a": [1, 2]},
    )
    ev = accepted(raw(doc))
    assert ev.agent_type == "retriever"
    assert ev.occurred_at_ms == BASE_MS + 500  # the +02:00 offset is converted to UTC
    assert ev.entity_id == "agent-1"  # no entity_id: the agent itself
    assert ev.tags == ("a", "b")
    assert ev.payload_json == '{"a":[1,2],"z":1}'
    assert ev.is_error and ev.event_category == "task"
    assert (ev.source_partition, ev.source_offset, ev.source_schema_id) == (3, 42, None)

    signal = signals_codec().decode(signals_codec().encode(ev.signal()))
    assert signal["event_id"] == "evt-9"
    assert signal["is_error"] is True
    assert signal["payload_bytes"] == len('{"a":[1,2],"z":1}')
    assert signal["ingest_lag_ms"] == BASE_MS - (BASE_MS + 500)
    assert signal["source"]["offset"] == 42
    assert signal["contract"] == "agents.events.raw.v1"


def test_status_error_marks_any_event_as_error_and_entity_id_is_kept() -> None:
    ev = accepted(raw(event(status="error", entity_id="ticket-7")))
    assert ev.is_error
    assert ev.entity_id == "ticket-7"
    assert not accepted(raw(event(status="ok"))).is_error


def test_confluent_framed_json_is_accepted_and_its_schema_id_kept() -> None:
    ev = accepted(framed(event("evt-framed"), schema_id=77))
    assert ev.event_id == "evt-framed"
    assert ev.source_schema_id == 77


@pytest.mark.parametrize(
    ("value", "code", "rule"),
    [
        (None, logic.EMPTY_RECORD, "required"),
        (b"", logic.EMPTY_RECORD, "required"),
        (b"\x00\x00\x01", logic.INVALID_FRAMING, "wire_format"),
        (b'{"event_id": "\xff\xfe"}', logic.INVALID_UTF8, "utf-8"),
        (b'{"event_id": "evt-1", ', logic.MALFORMED_JSON, "json"),
        (b'{"event_id": "a", "event_id": "b"}', logic.MALFORMED_JSON, "json"),
        (b'{"duration_ms": NaN}', logic.MALFORMED_JSON, "json"),
    ],
)
def test_undecodable_records_are_rejected_with_the_layer_that_failed(
    value: bytes | None, code: str, rule: str
) -> None:
    result = rejected(value)
    assert result.reason_code == code
    assert [v.rule for v in result.violations] == [rule]
    assert result.reason


def test_missing_fields_are_each_named() -> None:
    doc = event()
    del doc["agent_id"], doc["occurred_at"]
    result = rejected(raw(doc))
    assert result.reason_code == logic.SCHEMA_VIOLATION
    assert rules(result) == {("/agent_id", "required"), ("/occurred_at", "required")}
    assert "/agent_id: missing required field" in result.reason


def test_wrong_types_name_field_and_expected_type() -> None:
    result = rejected(raw(event(duration_ms="12", payload=[1], tags="a")))
    assert rules(result) == {("/duration_ms", "type"), ("/payload", "type"), ("/tags", "type")}
    messages = {v.field: v.message for v in result.violations}
    assert messages["/duration_ms"] == "must be integer, got string"


def test_a_json_value_that_is_not_an_object_is_a_type_violation() -> None:
    result = rejected(b"[1, 2]")
    assert rules(result) == {("", "type")}


def test_unknown_event_type_has_its_own_reason() -> None:
    result = rejected(raw(event(event_type="tool.exploded")))
    assert result.reason_code == logic.UNKNOWN_EVENT_TYPE
    assert rules(result) == {("/event_type", "enum")}
    assert "tool.exploded" in result.reason


def test_fields_outside_the_contract_and_limits_are_violations() -> None:
    result = rejected(raw(event(agent_id="a" * 129, colour="red", tags=["x"] * 2, duration_ms=-1)))
    assert rules(result) == {
        ("/agent_id", "maxLength"),
        ("/colour", "additionalProperties"),
        ("/tags", "uniqueItems"),
        ("/duration_ms", "minimum"),
    }
    # Values are never echoed in full: a 129-character id is not in the message.
    assert "a" * 60 not in result.reason


def test_impossible_dates_are_rejected_after_the_pattern_check() -> None:
    result = rejected(raw(event(occurred_at="2026-02-30T10:00:00Z")))
    assert result.reason_code == logic.INVALID_TIMESTAMP
    assert rules(result) == {("/occurred_at", "date-time")}
    assert rejected(raw(event(occurred_at="yesterday"))).reason_code == logic.SCHEMA_VIOLATION


def test_size_limits_come_from_the_contract() -> None:
    big_record = raw(event(payload={"blob": "x" * (CONTRACT.max_record_bytes + 1)}))
    assert rejected(big_record).reason_code == logic.OVERSIZED_RECORD

    big_payload = raw(event(payload={"blob": "x" * CONTRACT.max_payload_bytes}))
    assert len(big_payload) <= CONTRACT.max_record_bytes
    result = rejected(big_payload)
    assert result.reason_code == logic.OVERSIZED_PAYLOAD
    assert rules(result) == {("/payload", "max_payload_bytes")}


def test_dead_letter_carries_reason_position_and_original_bytes() -> None:
    value = b'{"event_id": "evt-1", "event_type": 3}'
    letter = dead_letters_codec().decode(dead_letters_codec().encode(rejected(value).dead_letter()))
    assert letter["original"] == value
    assert letter["original_size"] == len(value)
    assert (letter["source_topic"], letter["source_partition"], letter["source_offset"]) == (
        "agents.events.raw.v1",
        3,
        42,
    )
    assert letter["reason_code"] == logic.SCHEMA_VIOLATION
    assert {"field": "/event_type", "rule": "type", "message": "must be string, got integer"} in letter[
        "violations"
    ]
    assert letter["pipeline"] == "agent_events"


def test_a_defect_while_checking_becomes_a_dead_letter_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Any, record: Any) -> Any:
        raise KeyError("boom")

    monkeypatch.setattr(logic.Contract, "_check", broken)
    result = rejected(raw(event()))
    assert result.reason_code == logic.PROCESSING_ERROR
    assert "KeyError" in result.reason


def test_duplicates_share_the_dedup_key_whatever_their_position() -> None:
    first = accepted(raw(event("evt-dup", payload={"try": 1})))
    retry = CONTRACT.check(record(raw(event("evt-dup", payload={"try": 2})), offset=99))
    other = accepted(raw(event("evt-other")))
    assert isinstance(retry, AgentEvent)
    assert first.dedup_key == retry.dedup_key != other.dedup_key


def test_contract_survives_pickling_for_the_python_workers() -> None:
    copy = pickle.loads(pickle.dumps(CONTRACT))
    assert isinstance(copy.check(record(raw(event()))), AgentEvent)
    assert copy.check(record(raw(event(event_type="nope")))).reason_code == logic.UNKNOWN_EVENT_TYPE


def test_contract_without_limits_is_refused() -> None:
    schema = json.loads(json.dumps(CONTRACT.schema))
    del schema["x-headwater-limits"]
    with pytest.raises(ValueError, match="x-headwater-limits"):
        logic.Contract(schema)


def test_the_compiled_validator_accepts_exactly_what_the_reference_validator_accepts() -> None:
    """The hot path trusts the compiled validator's yes; both must agree on every kind of document."""
    c = contract()
    base = event("evt-1")
    documents = [
        base,
        {**base, "duration_ms": 12, "tags": ["a", "B"], "status": "ok", "entity_id": "e-1"},
        {**base, "duration_ms": 12.0},  # an integral number is an integer in JSON Schema
        {**base, "duration_ms": 1.5},
        {**base, "duration_ms": True},
        {**base, "duration_ms": "slow"},
        {**base, "event_type": "tool.teleported"},
        {**base, "event_id": ""},
        {**base, "event_id": "has space"},
        {**base, "agent_id": "x" * 129},
        {**base, "unknown_field": 1},
        {**base, "payload": ["not", "an", "object"]},
        {**base, "payload": {f"k{i}": i for i in range(65)}},
        {**base, "occurred_at": "yesterday"},
        {**base, "occurred_at": "2026-13-45T99:99:99Z"},  # matches the pattern; the date is checked later
        {k: v for k, v in base.items() if k != "agent_type"},
        [base],
        "text",
        None,
    ]
    for doc in documents:
        reference = not list(c.validator.iter_errors(doc))
        try:
            c.compiled(doc)
            compiled = True
        except Exception:
            compiled = False
        assert compiled == reference, (doc, compiled, reference)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "null"),
        (True, "boolean"),
        (1, "integer"),
        (1.0, "integer"),  # JSON Schema: a number with no fraction is an integer
        (1.5, "number"),
        ("1", "string"),
        ([], "array"),
        ({}, "object"),
    ],
)
def test_json_types_agree_between_the_app_and_the_platform(value: Any, expected: str) -> None:
    # The app ships without the platform package, so it has its own copy; both name types as JSON Schema does.
    assert json_type(value) == logic._json_type(value) == expected
