"""Contracts as the catalog declares them: one per non-journal topic, subject names, levels, clear errors."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from headwater.config import CATALOG_DIR, ConfigError, load_platform, read_yaml
from headwater.contracts.model import (
    Compatibility,
    SchemaType,
    exempt,
    load_contracts,
    registry_warnings,
)

STACKS = ["local", "dev", "staging", "prod"]


def _catalog() -> dict[str, Any]:
    return copy.deepcopy(read_yaml(CATALOG_DIR / "catalog.yaml"))


@pytest.mark.parametrize("stack", STACKS)
def test_every_topic_but_exempt_ones_has_a_parsable_contract(stack: str) -> None:
    platform = load_platform(stack)
    contracts = {c.topic: c for c in load_contracts(platform)}
    for topic in platform.topics:
        if exempt(platform, topic):
            assert topic.name not in contracts
        else:
            assert contracts[topic.name].subject == f"{topic.name}-value"
    kinds = {t: c.schema_type for t, c in contracts.items()}
    # JSON Schema for what services write as JSON (raw events, outbox payloads, the action path, whose records
    # carry an agent's free-form proposal verbatim to approvers and auditors), Avro for what the platform writes.
    json_topics = {"agents.events.raw.v1"} | {r.topic for s in platform.sources for r in s.routes}
    json_topics |= platform.action_gate.topics if platform.action_gate else frozenset()
    assert {kinds[t] for t in json_topics} == {SchemaType.JSON}
    assert {kinds[t] for t in kinds if t not in json_topics} == {SchemaType.AVRO}


@pytest.mark.parametrize("stack", STACKS)
def test_outbox_topics_need_a_contract_though_connect_writes_them(stack: str) -> None:
    platform = load_platform(stack)
    routed = [platform.topic(r.topic) for s in platform.sources for r in s.routes]
    assert routed and not any(exempt(platform, t) for t in routed)
    catalog = _catalog()
    catalog["topics"]["actions.tickets.v1"].pop("schema")
    with pytest.raises(ConfigError) as err:
        load_platform(stack, catalog=catalog)
    assert err.value.problems == [
        f"stack {stack}: catalog.sources.agent-actions-db.outbox.routes.ticket = 'actions.tickets.v1' is not "
        "valid; allowed: a topic with a data contract (catalog.topics.actions.tickets.v1.schema)"
    ]


def test_compatibility_is_backward_unless_the_stack_or_catalog_says_otherwise() -> None:
    prod = {c.topic: c.compatibility for c in load_contracts(load_platform("prod"))}
    dev = {c.topic: c.compatibility for c in load_contracts(load_platform("dev"))}
    assert prod["agents.signals.v1"] == prod["features.agent_activity.v1"] == Compatibility.FULL_TRANSITIVE
    assert prod["agents.events.raw.v1"] == Compatibility.BACKWARD
    assert set(dev.values()) == {Compatibility.BACKWARD}
    catalog = _catalog()
    catalog["topics"]["agents.events.deadletter.v1"]["compatibility"] = "forward"
    local = {c.topic: c.compatibility for c in load_contracts(load_platform("local", catalog=catalog))}
    assert local["agents.events.deadletter.v1"] == Compatibility.FORWARD


def test_problems_are_reported_together_with_key_value_and_what_is_allowed(tmp_path: Path) -> None:
    catalog = _catalog()
    topics = catalog["topics"]
    topics["agents.signals.v1"]["compatibility"] = "SIDEWAYS"
    topics["features.agent_activity.v1"].pop("schema")
    topics["agents.events.deadletter.v1"]["schema"] = "schemas/deadletter.proto"
    (tmp_path / "schemas").mkdir()
    gate = catalog["actionGate"]
    action_topics = [gate[role] for role in ("decisions", "audit", "state")]
    action_topics += [agent[role] for agent in gate["agents"].values() for role in ("proposed", "approved")]
    for name in (
        "agents.events.raw.v1.json",
        "agents.signals.v1.avsc",
        "features.deadletter.v1.avsc",
        "actions.approvals.v1.json",
        "actions.tickets.v1.json",
        *(f"{topic}.json" for topic in action_topics),
    ):
        (tmp_path / "schemas" / name).write_text((CATALOG_DIR / "schemas" / name).read_text())
    # The config loader reports contract problems with every other problem of the stack, before anything is built.
    with pytest.raises(ConfigError) as err:
        load_platform("local", catalog=catalog, catalog_dir=tmp_path)
    assert err.value.problems == [
        "stack local: catalog.topics.agents.events.deadletter.v1.schema = 'schemas/deadletter.proto': allowed: a path "
        "ending in .avsc or .json (Avro or JSON Schema)",
        "stack local: topics.agents.signals.v1.compatibility = 'SIDEWAYS' is not valid; allowed: NONE, "
        "BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE",
        f"stack local: catalog.topics.features.agent_activity.v1.schema is missing: every feature topic needs a data "
        f"contract (an .avsc or .json file under {tmp_path / 'schemas'}); only journal topics and topics that only platform services write are exempt",
    ]


def test_a_missing_or_invalid_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "agents.events.raw.v1.json").write_text('{"type": "object", "required": "id"}')
    with pytest.raises(ConfigError) as err:
        load_platform("local", catalog_dir=tmp_path, catalog=read_yaml(CATALOG_DIR / "catalog.yaml"))
    text = "\n".join(err.value.problems)
    assert (
        f"{tmp_path / 'schemas' / 'agents.events.raw.v1.json'}: not a valid JSON Schema at required:" in text
    )
    assert f"cannot read {tmp_path / 'schemas' / 'agents.signals.v1.avsc'}" in text


def test_dead_letters_carry_the_contract_violation() -> None:
    (dlq,) = [c for c in load_contracts(load_platform("local")) if c.topic == "agents.events.deadletter.v1"]
    fields = {f["name"]: f["type"] for f in dlq.schema["fields"]}
    assert fields["reason_code"] == fields["reason"] == fields["contract"] == "string"
    violation = fields["violations"]["items"]
    assert [f["name"] for f in violation["fields"]] == ["field", "rule", "message"]
    assert {"source_topic", "source_partition", "source_offset", "original"} <= set(fields)


def test_registry_warnings_flag_json_schema_drafts_the_registry_cannot_compare() -> None:
    (raw,) = [c for c in load_contracts(load_platform("local")) if c.topic == "agents.events.raw.v1"]
    draft7 = copy.deepcopy(dict(raw.schema)) | {"$schema": "http://json-schema.org/draft-07/schema#"}
    assert registry_warnings(replace(raw, schema=draft7)) == []
    newer = copy.deepcopy(dict(raw.schema)) | {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    (warning,) = registry_warnings(replace(raw, schema=newer))
    assert "only understands JSON Schema drafts 4 to 7" in warning


def test_a_contract_is_named_after_its_topic() -> None:
    # The apps find a topic's contract by the topic's name, so a file named otherwise is refused.
    catalog = copy.deepcopy(read_yaml(CATALOG_DIR / "catalog.yaml"))
    catalog["topics"]["agents.signals.v1"]["schema"] = "schemas/signals.avsc"
    with pytest.raises(ConfigError) as err:  # reported by the config loader with the stack's other problems
        load_platform("local", catalog=catalog)
    assert err.value.problems == [
        "stack local: catalog.topics.agents.signals.v1.schema = 'schemas/signals.avsc': allowed: "
        "schemas/agents.signals.v1.avsc or schemas/agents.signals.v1.json"
    ]
