"""Contracts against a real Apicurio Registry: registration, evolution, refusal, the Pulumi provider, serde."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from headwater.config import load_platform
from headwater.contracts import json_compat
from headwater.contracts.model import (
    REGISTRY_JSON_SCHEMA_DRAFT,
    Compatibility,
    Contract,
    SchemaType,
    load_contracts,
    registered_text,
)
from headwater.contracts.provider import SubjectSchemaProvider
from headwater.contracts.registry import IncompatibleSchemaError, RegistryClient
from headwater.contracts.serde import (
    AvroDeserializer,
    AvroSerializer,
    ContractViolation,
    JsonDeserializer,
    JsonSerializer,
    unframe,
)
from headwater.local.registry import LocalRegistry
from headwater_cli.main import main


def _contracts(stack: str) -> dict[str, Contract]:
    return {c.topic: c for c in load_contracts(load_platform(stack))}


def outs(result: Any) -> dict[str, Any]:
    """The outputs of a dynamic provider's result (always set by this provider)."""
    assert result.outs is not None
    return dict(result.outs)


def _props(
    registry: LocalRegistry, subject: str, schema: dict[str, Any], kind: SchemaType, level: Compatibility
) -> dict[str, Any]:
    return {
        "registry_url": registry.url,
        "subject": subject,
        "schema": registered_text(schema),
        "schema_type": kind.value,
        "compatibility": level.value,
        "verify_tls": True,
        "username": "contracts-publisher",
        "password": registry.password(),
    }


def _signal_record() -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "event_type": "tool.called",
        "event_category": "tool",
        "is_error": False,
        "agent_id": "agent-7",
        "agent_type": "planner",
        "entity_id": "ticket-42",
        "tenant_id": None,
        "session_id": "s-1",
        "trace_id": None,
        "parent_event_id": None,
        "status": "ok",
        "duration_ms": 12,
        "tags": ["a", "b"],
        "occurred_at": 1_764_000_000_000,
        "payload_json": '{"tool":"search"}',
        "payload_bytes": 17,
        "ingest_lag_ms": 5,
        "source": {
            "topic": "agents.events.raw.v1",
            "partition": 2,
            "offset": 99,
            "timestamp": None,
            "schema_id": None,
        },
        "contract": "agents.events.raw.v1",
    }


def _raw_event() -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "event_type": "tool.called",
        "agent_id": "agent-7",
        "agent_type": "planner",
        "occurred_at": "2026-11-26T10:00:00Z",
        "payload": {"tool": "search"},
    }


def test_every_catalog_contract_registers_with_its_stack_level(
    registry: LocalRegistry,
    client: RegistryClient,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HEADWATER_REGISTRY_PASSWORD", registry.password())
    assert main(["contracts", "register", "--url", registry.url, "--stack", "prod"]) == 0
    out = capsys.readouterr().out
    contracts = load_contracts(load_platform("prod"))
    assert {c.subject for c in contracts} <= set(client.subjects())
    for c in contracts:
        assert f"registered {c.subject} ({c.schema_type.value}, {c.compatibility.value}): id " in out
        assert client.get_compatibility(c.subject) == c.compatibility
        found = client.lookup(c.subject, c.text, c.schema_type)
        assert found is not None and found.version == 1
        kind, text = client.schema_by_id(found.id)
        assert (kind, json.loads(text)) == (c.schema_type, c.schema)
    levels = {c.topic: c.compatibility for c in contracts}
    assert levels["agents.signals.v1"] == Compatibility.FULL_TRANSITIVE
    assert levels["agents.events.raw.v1"] == Compatibility.BACKWARD
    # Registering the same contracts again changes nothing: same ids, still one version each.
    assert main(["contracts", "register", "--url", registry.url, "--stack", "prod"]) == 0
    assert all(client.versions(c.subject) == [1] for c in contracts)


def test_a_compatible_evolution_is_accepted(
    registry: LocalRegistry, client: RegistryClient, fresh_subject: str
) -> None:
    signals = _contracts("prod")["agents.signals.v1"]
    level = Compatibility.FULL_TRANSITIVE
    provider = SubjectSchemaProvider()
    v1 = provider.create(_props(registry, fresh_subject, dict(signals.schema), SchemaType.AVRO, level))
    evolved = copy.deepcopy(dict(signals.schema))
    evolved["fields"].append({"name": "region", "type": ["null", "string"], "default": None})
    news = _props(registry, fresh_subject, evolved, SchemaType.AVRO, level)
    assert provider.check(outs(v1), news).failures == []
    assert provider.diff(fresh_subject, outs(v1), news).changes is True
    v2 = provider.update(fresh_subject, outs(v1), news)
    assert (outs(v1)["version"], outs(v2)["version"]) == (1, 2)
    assert outs(v2)["schema_id"] != outs(v1)["schema_id"]
    assert client.get_compatibility(fresh_subject) == level
    read = provider.read(fresh_subject, outs(v2))
    assert outs(read)["schema"] == news["schema"] and outs(read)["schema_id"] == outs(v2)["schema_id"]


def test_an_incompatible_change_is_refused_with_the_message_users_see(
    registry: LocalRegistry, client: RegistryClient, fresh_subject: str
) -> None:
    signals = _contracts("prod")["agents.signals.v1"]
    level = Compatibility.FULL_TRANSITIVE
    provider = SubjectSchemaProvider()
    v1 = provider.create(_props(registry, fresh_subject, dict(signals.schema), SchemaType.AVRO, level))
    broken = copy.deepcopy(dict(signals.schema))
    broken["fields"][0]["type"] = "long"  # event_id: string -> long
    news = _props(registry, fresh_subject, broken, SchemaType.AVRO, level)

    # What `pulumi preview` prints: the subject, the level, the version it breaks with, where and why.
    (failure,) = provider.check(outs(v1), news).failures
    assert failure.property == "schema"
    assert failure.reason.startswith(
        f"subject {fresh_subject}: the new schema is not FULL_TRANSITIVE-compatible with the 1 version(s) "
        f"the registry at {registry.url} holds:"
    )
    assert (
        f"{fresh_subject} (FULL_TRANSITIVE): the new schema cannot read records written with version 1 "
        f"(id {outs(v1)['schema_id']}): /event_id: reader type: long not compatible with writer type: string"
    ) in failure.reason
    assert "consumers still using version 1" in failure.reason
    assert f"{fresh_subject} (FULL_TRANSITIVE): the registry says: /fields/0/type:" in failure.reason

    # And the registry itself refuses it, with its reasons.
    with pytest.raises(IncompatibleSchemaError) as refused:
        client.register(fresh_subject, news["schema"], SchemaType.AVRO)
    assert refused.value.subject == fresh_subject
    assert any("/fields/0/type" in cause for cause in refused.value.causes)
    assert client.versions(fresh_subject) == [1]


def test_a_level_change_is_judged_at_the_new_level(registry: LocalRegistry, fresh_subject: str) -> None:
    """Tightening BACKWARD to FULL in the same deploy: a field added without a default now breaks."""
    schema = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "string"}]}
    provider = SubjectSchemaProvider()
    v1 = provider.create(_props(registry, fresh_subject, schema, SchemaType.AVRO, Compatibility.BACKWARD))
    removed = {"type": "record", "name": "R", "fields": []}  # backward-compatible, not forward
    assert (
        provider.check(
            outs(v1), _props(registry, fresh_subject, removed, SchemaType.AVRO, Compatibility.BACKWARD)
        ).failures
        == []
    )
    (failure,) = provider.check(
        outs(v1), _props(registry, fresh_subject, removed, SchemaType.AVRO, Compatibility.FULL)
    ).failures
    assert "consumers still using version 1" in failure.reason and "/a:" in failure.reason


def test_preview_without_a_reachable_registry_compares_with_the_deployed_schema() -> None:
    old = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "string"}]}
    new = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]}
    base = {
        "registry_url": "http://127.0.0.1:9",
        "subject": "t-value",
        "schema_type": "AVRO",
        "compatibility": "BACKWARD",
    }
    olds = {**base, "schema": registered_text(old)}
    provider = SubjectSchemaProvider()
    (failure,) = provider.check(olds, {**base, "schema": registered_text(new)}).failures
    assert "the last deployed schema in the Pulumi state" in failure.reason
    assert "/a: reader type: int not compatible with writer type: string" in failure.reason
    assert provider.check(olds, olds).failures == []


def test_json_contract_evolution_agrees_with_the_registry(client: RegistryClient, fresh_subject: str) -> None:
    """The offline JSON Schema checker and Apicurio's rule give the same verdict on typical edits."""
    raw = copy.deepcopy(dict(_contracts("local")["agents.events.raw.v1"].schema))
    raw["$schema"] = REGISTRY_JSON_SCHEMA_DRAFT  # drafts 2019+ cannot be compared by the registry
    client.set_compatibility(fresh_subject, Compatibility.BACKWARD)
    client.register(fresh_subject, registered_text(raw), SchemaType.JSON)

    def edited(change: Any) -> dict[str, Any]:
        schema = copy.deepcopy(raw)
        change(schema)
        return schema

    edits = {
        "optional property added": (lambda s: s["properties"].update(region={"type": "string"}), True),
        "property made required": (lambda s: s["required"].append("tenant_id"), False),
        "property removed": (lambda s: s["properties"].pop("tags"), False),
        "maxLength shrunk": (lambda s: s["properties"]["agent_id"].update(maxLength=64), False),
        "maxLength grown": (lambda s: s["properties"]["agent_id"].update(maxLength=256), True),
        "enum value removed": (lambda s: s["properties"]["event_type"]["enum"].remove("agent.error"), False),
        "enum value added": (lambda s: s["properties"]["event_type"]["enum"].append("agent.paused"), True),
        "type narrowed": (lambda s: s["properties"]["duration_ms"].update(type="string"), False),
        "type widened": (lambda s: s["properties"]["tenant_id"].update(type=["string", "null"]), True),
        "pattern changed": (lambda s: s["properties"]["agent_id"].update(pattern="^[a-z]+$"), False),
        "maximum lowered": (lambda s: s["properties"]["duration_ms"].update(maximum=1000), False),
        "format changed": (lambda s: s["properties"]["occurred_at"].update(format="date"), False),
    }
    for name, (change, expected) in edits.items():
        new = edited(change)
        registry_says = client.is_compatible(fresh_subject, registered_text(new), SchemaType.JSON)
        offline_says = not json_compat.incompatibilities(new, raw)
        assert (name, registry_says, offline_says) == (name, expected, expected)


def test_records_round_trip_with_the_registry_ids(client: RegistryClient, fresh_subject: str) -> None:
    topic = fresh_subject.removesuffix("-value")
    signals = dict(_contracts("local")["agents.signals.v1"].schema)
    producer = AvroSerializer(client, topic, signals, register=True)
    data = producer(_signal_record())
    schema_id, _ = unframe(data)
    assert data[0] == 0 and schema_id == producer.schema_id
    assert client.lookup(fresh_subject, registered_text(signals), SchemaType.AVRO).id == schema_id  # type: ignore[union-attr]
    assert AvroDeserializer(client)(data) == _signal_record()

    # A consumer on the next version reads the old record, with the new field's default.
    evolved = copy.deepcopy(signals)
    evolved["fields"].append({"name": "region", "type": "string", "default": "unknown"})
    AvroSerializer(client, topic, evolved, register=True)(_signal_record() | {"region": "eu"})
    assert AvroDeserializer(client, evolved)(data) == _signal_record() | {"region": "unknown"}

    with pytest.raises(ContractViolation):
        producer({**_signal_record(), "payload_bytes": "seventeen"})


def test_json_records_are_checked_against_their_contract(client: RegistryClient, fresh_subject: str) -> None:
    topic = fresh_subject.removesuffix("-value")
    raw = dict(_contracts("local")["agents.events.raw.v1"].schema)
    producer = JsonSerializer(client, topic, raw, register=True)
    data = producer(_raw_event())
    assert unframe(data)[0] == producer.schema_id
    assert JsonDeserializer(raw, subject=fresh_subject)(data) == _raw_event()
    assert JsonDeserializer(raw)(json.dumps(_raw_event()).encode()) == _raw_event()  # unframed raw input

    bad = {**_raw_event(), "event_type": "agent.exploded", "agent_id": ""}
    bad.pop("payload")
    with pytest.raises(ContractViolation) as broken:
        producer(bad)
    # The facts a dead letter carries: which field, which rule.
    assert [(v.field, v.rule) for v in broken.value.violations] == [
        ("", "required"),
        ("/agent_id", "minLength"),
        ("/agent_id", "pattern"),
        ("/event_type", "enum"),
    ]
