"""CDC rules: each passes what the shipped stacks render and fails a changed object, saying what to set."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from headwater.config import stack_names

Obj = dict[str, Any]
Get = Callable[[str, str], Obj]
Judge = Callable[..., list[str]]

CONNECT = "KafkaConnect/headwater/cdc-connect"
CONNECTOR = "KafkaConnector/headwater/agent-actions-db-outbox"
OUTBOX_TOPIC = "KafkaTopic/headwater/actions.approvals.v1"


@pytest.mark.parametrize("stack", stack_names())
def test_every_shipped_stack_passes_the_cdc_rules(
    stack: str, objs_of_kind: Callable[[str, str], list[Obj]], judge: Judge
) -> None:
    tier = {"local": "local", "dev": "dev", "staging": "staging", "prod": "prod"}[stack]
    judged = 0
    for kind, rules in (
        ("KafkaConnect", ["cdc-exactly-once"]),
        ("KafkaConnector", ["cdc-exactly-once", "cdc-database-tls", "cdc-contract-check"]),
        ("KafkaTopic", ["cdc-outbox-contract"]),
    ):
        for o in objs_of_kind(stack, kind):
            for rule in rules:
                assert judge(rule, o, tier) == [], (rule, o["metadata"]["name"])
                judged += 1
    assert judged > 3


def test_a_plaintext_database_connection_fails_in_prod_only(obj: Get, judge: Judge) -> None:
    connector = obj("prod", CONNECTOR)
    connector["spec"]["config"]["database.sslmode"] = "disable"
    (message,) = judge("cdc-database-tls", connector, "prod")
    assert "KafkaConnector agent-actions-db-outbox: database.sslmode is 'disable'" in message
    assert "set one of require, verify-ca, verify-full" in message
    del connector["spec"]["config"]["database.sslmode"]  # Debezium's default, prefer, may fall back to clear
    assert "database.sslmode is None" in judge("cdc-database-tls", connector, "prod")[0]
    assert judge("cdc-database-tls", connector, "dev") == []


def test_connect_without_exactly_once_source_support_fails(obj: Get, judge: Judge) -> None:
    connect = obj("dev", CONNECT)
    connect["spec"]["config"]["exactly.once.source.support"] = "preparing"
    (message,) = judge("cdc-exactly-once", connect, "dev")
    assert "KafkaConnect cdc-connect: spec.config exactly.once.source.support is 'preparing'" in message
    assert "set it to enabled" in message


def test_a_connector_that_does_not_require_exactly_once_fails(obj: Get, judge: Judge) -> None:
    connector = obj("local", CONNECTOR)
    del connector["spec"]["config"]["exactly.once.support"]
    (message,) = judge("cdc-exactly-once", connector, "local")
    assert "spec.config exactly.once.support is None: set it to required" in message


def test_an_outbox_topic_without_a_contract_fails(obj: Get, judge: Judge) -> None:
    topic = obj("prod", OUTBOX_TOPIC)
    assert topic["metadata"]["annotations"]["headwater.io/contract"] == "schemas/actions.approvals.v1.json"
    del topic["metadata"]["annotations"]["headwater.io/contract"]
    (message,) = judge("cdc-outbox-contract", topic, "prod")
    assert message.startswith("outbox topic actions.approvals.v1 has no data contract")
    # Other kinds are not outbox topics: a journal has no contract and passes.
    assert (
        judge("cdc-outbox-contract", obj("prod", "KafkaTopic/headwater/platform.registry-journal.v1")) == []
    )


def test_a_connector_without_the_contract_check_last_fails(obj: Get, judge: Judge) -> None:
    connector = obj("prod", CONNECTOR)
    config = connector["spec"]["config"]
    chain = config["transforms"].split(",")
    assert chain[-1] == "contract"
    config["transforms"] = ",".join(chain[:-1])
    (message,) = judge("cdc-contract-check", connector, "prod")
    assert "does not end with the contract check (dev.headwater.connect.ContractCheck)" in message
    config["transforms"] = ",".join([*chain[:-1], "contract", "route_0"])  # a route after the check
    assert "does not end with the contract check" in judge("cdc-contract-check", connector, "prod")[0]


def test_a_routed_topic_the_check_does_not_cover_fails(obj: Get, judge: Judge) -> None:
    connector = obj("dev", CONNECTOR)
    config = connector["spec"]["config"]
    config["transforms.contract.topics"] = "actions.approvals.v1"
    config["transforms.contract.contract.actions.approvals.v1"] = ""
    assert judge("cdc-contract-check", connector, "dev") == [
        "KafkaConnector agent-actions-db-outbox: events routed to actions.tickets.v1 are not checked: add it to "
        "transforms.contract.topics with its contract in transforms.contract.contract.actions.tickets.v1",
        "KafkaConnector agent-actions-db-outbox: transforms.contract.contract.actions.approvals.v1 is missing: "
        "the JSON Schema of actions.approvals.v1",
    ]
    del config["transforms.contract.dead.letter.topic"]
    assert (
        "KafkaConnector agent-actions-db-outbox: transforms.contract.dead.letter.topic is missing: where "
        "rejected events go"
    ) in judge("cdc-contract-check", connector, "dev")
