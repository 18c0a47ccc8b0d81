"""Outbox sources and Connect clusters in the catalog: derived ACLs, stack settings, one line per problem."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from headwater.cdc import CONTRACT_CHECK, outbox_connector_config, route_contracts
from headwater.config import CATALOG_DIR, ConfigError, load_platform, load_stack_config, read_yaml
from headwater.spec import AclResource, acls_for

STACKS = ["local", "dev", "staging", "prod"]


def _catalog() -> dict[str, Any]:
    return copy.deepcopy(read_yaml(CATALOG_DIR / "catalog.yaml"))


def _config(stack: str) -> dict[str, Any]:
    return copy.deepcopy(load_stack_config(stack))


def _problems(stack: str, config: dict[str, Any], catalog: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_platform(stack, config=config, catalog=catalog)
    return info.value.problems


@pytest.mark.parametrize("stack", STACKS)
def test_the_connect_principal_gets_exactly_its_internal_topics_routes_group_and_transactional_ids(
    stack: str,
) -> None:
    platform = load_platform(stack)
    (cluster,) = platform.connect_clusters
    principal = platform.principal(cluster.name)
    routed = (
        {r.topic for s in platform.sources for r in s.routes}
        | {s.dead_letter_topic for s in platform.sources}
        | {s.heartbeat_topic for s in platform.sources}
    )
    internal = set(cluster.internal_topics)
    got = {(a.resource, a.name, a.pattern, op) for a in acls_for(principal) for op in a.operations}
    expected = {(AclResource.GROUP, cluster.name, "literal", "Read")}
    for op in ("Describe", "Write"):
        # Tasks: `<group>-<connector>-<task>`; the leader writing the config topic: `connect-cluster-<group>`.
        expected.add((AclResource.TRANSACTIONAL_ID, f"{cluster.name}-", "prefix", op))
        expected.add((AclResource.TRANSACTIONAL_ID, f"connect-cluster-{cluster.name}", "literal", op))
    for t in internal:
        expected |= {
            (AclResource.TOPIC, t, "literal", op) for op in ("Describe", "Read", "Write", "DescribeConfigs")
        }
    for t in routed:
        expected |= {(AclResource.TOPIC, t, "literal", op) for op in ("Describe", "Write")}
    assert got == expected
    # Routed topics are written, never read; nothing is granted on a prefix of topics or on the cluster.
    assert routed and not routed & {c.topic for c in principal.consumes}
    assert all(a.resource != AclResource.CLUSTER for a in acls_for(principal))


def test_internal_topics_are_compacted_and_the_config_topic_has_one_partition() -> None:
    platform = load_platform("prod")
    (cluster,) = platform.connect_clusters
    for name in cluster.internal_topics:
        assert platform.topic_config(platform.topic(name))["cleanup.policy"] == "compact"
    assert platform.topic(cluster.config_topic).partitions == 1


def test_slot_and_publication_are_named_from_the_source() -> None:
    (source,) = load_platform("local").sources
    assert source.slot_name == source.publication == "headwater_agent_actions_db"
    assert source.route("approval") == "actions.approvals.v1" and source.route("unknown") is None


def test_a_source_in_a_cluster_environment_needs_where_its_database_is() -> None:
    cfg = _config("staging")
    del cfg["sources"]
    assert _problems("staging", cfg, _catalog()) == [
        "stack staging: sources.agent-actions-db.host is required (str)"
    ]


def test_a_plaintext_database_connection_is_refused_in_prod() -> None:
    cfg = _config("prod")
    cfg["sources"]["agent-actions-db"]["sslMode"] = "disable"
    (msg,) = _problems("prod", cfg, _catalog())
    assert msg.startswith(
        "stack prod: sources.agent-actions-db.sslMode = 'disable' is not valid; allowed: require"
    )
    cfg["sources"]["agent-actions-db"]["sslMode"] = "maybe"
    (msg,) = _problems("prod", cfg, _catalog())
    assert "sslMode = 'maybe' is not valid; allowed: disable, require, verify-ca, verify-full" in msg


def test_a_slot_wal_budget_must_be_a_positive_quantity() -> None:
    cfg = _config("prod")
    cfg["sources"]["agent-actions-db"]["slotWalBudget"] = "lots"
    (msg,) = _problems("prod", cfg, _catalog())
    assert msg == (
        "stack prod: sources.agent-actions-db.slotWalBudget = 'lots' is not valid; "
        "allowed: a positive Kubernetes quantity like 500m, 2, 4Gi"
    )


def test_routes_must_name_owned_outbox_topics_with_contracts() -> None:
    catalog = _catalog()
    routes = catalog["sources"]["agent-actions-db"]["outbox"]["routes"]
    routes["signal"] = "agents.signals.v1"  # an events topic, and not the source's to write
    routes["missing"] = "actions.nowhere.v1"
    catalog["topics"]["actions.tickets.v1"]["owner"] = "ticketing"
    problems = _problems("dev", _config("dev"), catalog)
    prefix = "stack dev: catalog.sources.agent-actions-db.outbox.routes"
    assert (
        f"{prefix}.missing = 'actions.nowhere.v1' is not valid; allowed: a topic of the catalog: "
        in problems[0]
    )
    assert problems[1:] == [
        f"{prefix}.signal = 'agents.signals.v1' is not valid; allowed: a topic of kind outbox; "
        "agents.signals.v1 is kind events",
        f"{prefix}.ticket = 'actions.tickets.v1' is not valid; allowed: a topic owned by agent-platform, the "
        "source's owner (ticketing owns it)",
    ]


def test_the_dead_letter_topic_is_an_owned_deadletter_topic() -> None:
    catalog = _catalog()
    catalog["sources"]["agent-actions-db"]["deadLetterTopic"] = "actions.tickets.v1"
    assert _problems("dev", _config("dev"), catalog) == [
        "stack dev: catalog.sources.agent-actions-db.deadLetterTopic = 'actions.tickets.v1' is not valid; "
        "allowed: a topic of the catalog of kind deadletter"
    ]
    catalog["sources"]["agent-actions-db"]["deadLetterTopic"] = "agents.events.deadletter.v1"
    catalog["topics"]["agents.events.deadletter.v1"]["owner"] = "other-team"
    assert _problems("dev", _config("dev"), catalog) == [
        "stack dev: catalog.sources.agent-actions-db.deadLetterTopic = 'agents.events.deadletter.v1' is not "
        "valid; allowed: a topic owned by agent-platform, the source's owner"
    ]


def test_internal_topics_must_be_compacted_single_use_catalog_topics() -> None:
    catalog = _catalog()
    connect = catalog["connect"]["cdc-connect"]
    connect["statusTopic"] = "agents.signals.v1"
    connect["offsetTopic"] = connect["configTopic"]
    catalog["topics"]["platform.cdc_connect_configs.v1"]["partitions"] = 3
    problems = _problems("dev", _config("dev"), catalog)
    key = "stack dev: catalog.connect.cdc-connect"
    assert problems == [
        f"{key}.configTopic = 'platform.cdc_connect_configs.v1' is not valid; allowed: a topic with 1 partition "
        "(Connect orders its configs in one)",
        f"{key}.offsetTopic = 'platform.cdc_connect_configs.v1' is not valid; allowed: a topic of this cluster "
        f"alone; catalog.connect.cdc-connect.configTopic uses it already",
        f"{key}.statusTopic = 'agents.signals.v1' is not valid; allowed: a compacted topic (kind state); "
        "agents.signals.v1 is kind events",
    ]


def test_a_source_names_a_known_cluster_and_valid_database_names() -> None:
    catalog = _catalog()
    source = catalog["sources"]["agent-actions-db"]
    source["connect"] = "other-connect"
    source["database"] = "Agent-Actions"
    source["outbox"]["table"] = "outbox"
    problems = _problems("local", _config("local"), catalog)
    key = "stack local: catalog.sources.agent-actions-db"
    assert problems == [
        f"{key}.outbox.table = 'outbox' is not valid; allowed: schema.table, each a PostgreSQL name: lower-case "
        "letters, digits and '_', not starting with a digit",
        f"{key}.connect = 'other-connect' is not valid; allowed: a Connect cluster of the catalog: cdc-connect",
        f"{key}.database = 'Agent-Actions' is not valid; allowed: a PostgreSQL name: lower-case letters, digits "
        "and '_', not starting with a digit",
    ]


def test_overrides_must_name_catalog_sources_and_clusters() -> None:
    cfg = _config("dev")
    cfg["sources"]["billing-db"] = {"host": "x"}
    cfg["connect"]["other"] = {"replicas": 2}
    problems = _problems("dev", cfg, _catalog())
    assert problems == [
        "stack dev: connect.other = '(override)' is not valid; allowed: a Connect cluster of the catalog: "
        "cdc-connect",
        "stack dev: sources.billing-db = '(override)' is not valid; allowed: a source of the catalog: "
        "agent-actions-db",
    ]


def test_a_cluster_cannot_share_a_name_with_a_principal() -> None:
    catalog = _catalog()
    catalog["connect"]["agent-gateway"] = catalog["connect"].pop("cdc-connect")
    catalog["sources"]["agent-actions-db"]["connect"] = "agent-gateway"
    cfg = _config("local")
    cfg["connect"]["agent-gateway"] = cfg["connect"].pop("cdc-connect")
    problems = _problems("local", cfg, catalog)
    assert problems == [
        "stack local: catalog.connect.agent-gateway = 'agent-gateway' is not valid; allowed: a name no principal "
        "of the catalog has (the cluster is its own principal)"
    ]


def test_a_stack_that_runs_cdc_names_where_the_contract_check_jar_is_published() -> None:
    cfg = _config("staging")
    del cfg["connect"]["cdc-connect"]["contractCheck"]
    (message,) = _problems("staging", cfg, _catalog())
    assert message.startswith(
        "stack staging: connect.cdc-connect.contractCheck is required (it captures agent-actions-db): "
        "{repository: https://<Maven-layout repository with dev.headwater.connect:contract-check:"
    )


def test_the_contract_check_artifact_is_an_https_repository_and_a_sha512() -> None:
    cfg = _config("prod")
    cfg["connect"]["cdc-connect"]["contractCheck"] = {
        "repository": "http://artifacts.example.com/maven/",
        "sha512": "abc",
        "version": "9",
    }
    assert _problems("prod", cfg, _catalog()) == [
        "stack prod: connect.cdc-connect.contractCheck.repository = 'http://artifacts.example.com/maven/' is "
        "not valid; allowed: an https:// URL of a Maven-layout repository, without a trailing '/'",
        "stack prod: connect.cdc-connect.contractCheck.sha512 = 'abc' is not valid; allowed: the jar's SHA-512: "
        "128 lower-case hex digits",
        "stack prod: unknown key 'connect.cdc-connect.contractCheck.version'; allowed keys: repository, sha512",
    ]


def test_the_connector_checks_each_route_topic_against_its_catalog_contract_last() -> None:
    platform = load_platform("dev")
    (source,) = platform.sources
    config = outbox_connector_config(source, "${dir:/x", route_contracts(platform, source))
    chain = config["transforms"].split(",")
    assert chain[-1] == "contract" and config["transforms.contract.type"] == CONTRACT_CHECK
    assert config["transforms.contract.dead.letter.topic"] == source.dead_letter_topic
    routed = sorted(r.topic for r in source.routes)
    assert config["transforms.contract.topics"].split(",") == routed
    for topic in routed:
        on_disk = json.loads((CATALOG_DIR / "schemas" / f"{topic}.json").read_text())
        assert json.loads(config[f"transforms.contract.contract.{topic}"]) == on_disk
    with pytest.raises(ValueError, match=r"no contract given for the route topics actions\.tickets\.v1"):
        outbox_connector_config(source, "${dir:/x", {"actions.approvals.v1": "{}"})


def test_the_heartbeat_topic_is_an_events_topic_of_the_catalog() -> None:
    catalog = _catalog()
    catalog["sources"]["agent-actions-db"]["heartbeatTopic"] = "platform.cdc_connect_status.v1"
    assert _problems("dev", _config("dev"), catalog) == [
        "stack dev: catalog.sources.agent-actions-db.heartbeatTopic = 'platform.cdc_connect_status.v1' is not "
        "valid; allowed: a topic of the catalog of kind events (Debezium's heartbeats; nothing reads them)"
    ]


def test_heartbeats_go_to_the_catalog_topic_and_their_messages_nowhere() -> None:
    platform = load_platform("prod")
    (source,) = platform.sources
    config = outbox_connector_config(source, "${dir:/x", route_contracts(platform, source))
    chain = config["transforms"].split(",")
    assert chain[:3] == ["messages", "heartbeat", "outbox"]
    assert (
        config["transforms.heartbeat.replacement"] == source.heartbeat_topic == "platform.cdc_heartbeats.v1"
    )
    assert config["predicates.heartbeat.pattern"] == r"^__debezium\-heartbeat\.agent\-actions\-db$"
    assert config["transforms.messages.type"] == "org.apache.kafka.connect.transforms.Filter"
    assert (
        int(config["heartbeat.interval.ms"]) > 0
        and "pg_logical_emit_message(false" in config["heartbeat.action.query"]
    )
    # Not dead-lettered as an unroutable aggregate type.
    assert "platform\\.cdc_heartbeats\\.v1" in config["predicates.unrouted.pattern"]


@pytest.mark.parametrize("key", ["heartbeatTopic", "deadLetterTopic"])
def test_a_source_missing_a_topic_is_one_clear_problem(key: str) -> None:
    catalog = _catalog()
    del catalog["sources"]["agent-actions-db"][key]
    assert _problems("dev", _config("dev"), catalog) == [
        f"stack dev: catalog.sources.agent-actions-db.{key} is required (str)"
    ]
