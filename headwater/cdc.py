"""CDC derivations every realization calls: the Connect worker's settings and each source's outbox connector.

The Kubernetes realization puts these in a `KafkaConnect` and a `KafkaConnector` per source; the local one in a
worker properties file and a connector created over Connect's REST API. Both call the functions here, so the
exactly-once settings, the slot, the publication and the routing cannot drift apart.

Credentials never appear in a config: the connector names them through a Connect config provider
(`${<provider>:<path>:<key>}`), which each realization points at its own secret store (a Kubernetes Secret through
Strimzi's `KubernetesSecretConfigProvider`, an owner-only folder through Kafka's `DirectoryConfigProvider`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import yaml

from headwater.contracts.model import SchemaType, load_contracts, registered_text
from headwater.spec import SLOT_PREFIX, ConnectCluster, Platform, Source

POSTGRES_CONNECTOR = "io.debezium.connector.postgresql.PostgresConnector"
EVENT_ROUTER = "io.debezium.transforms.outbox.EventRouter"
REGEX_ROUTER = "org.apache.kafka.connect.transforms.RegexRouter"
INSERT_HEADER = "org.apache.kafka.connect.transforms.InsertHeader"
TOPIC_NAME_MATCHES = "org.apache.kafka.connect.transforms.predicates.TopicNameMatches"
STRING_CONVERTER = "org.apache.kafka.connect.storage.StringConverter"
FILTER = "org.apache.kafka.connect.transforms.Filter"
# Heartbeats: only the outbox is published, so a database busy elsewhere streams nothing to the connector, and
# without them the slot would keep every WAL segment written since the last outbox event. Every interval the
# connector writes a logical decoding message (no table, no row; non-transactional, so it reaches the slot at
# once) and then a heartbeat record at the position it has read; writing that record to Kafka is what lets
# Connect commit the position and Debezium confirm it to the slot. The messages themselves are dropped.
HEARTBEAT_INTERVAL_MS = 10_000
HEARTBEAT_MESSAGE_PREFIX = "headwater-heartbeat"
HEARTBEAT_TOPIC_PREFIX = "__debezium-heartbeat"
# Our transform (connect/contract-check): each routed event against its topic's contract, violations dead-lettered.
CONTRACT_CHECK = "dev.headwater.connect.ContractCheck"
CONTRACT_CHECK_PLUGIN = "contract-check"
CONTRACT_CHECK_TRANSFORM = "contract"

# The outbox table's columns (Debezium's outbox event router defaults): the row's id is the event id.
OUTBOX_COLUMNS = {
    "id": "uuid PRIMARY KEY",
    "aggregatetype": "text NOT NULL",
    "aggregateid": "text NOT NULL",
    "type": "text NOT NULL",
    "payload": "jsonb NOT NULL",  # malformed JSON cannot even be committed
}
# Headers each event carries (besides `id`, the event id, which the router adds itself).
EVENT_TYPE_HEADER = "eventType"
AGGREGATE_TYPE_HEADER = "aggregateType"
# A dead-lettered outbox row is written as it was, with these headers (the names ContractCheck.java uses, and
# the fields of the platform's other dead letters: reason_code, reason, field/rule of the violations, source_*).
DEAD_LETTER_PREFIX = "headwater.deadletter."
DEAD_LETTER_REASON_HEADER = DEAD_LETTER_PREFIX + "reason"
DEAD_LETTER_REASON_CODE_HEADER = DEAD_LETTER_PREFIX + "reason_code"
DEAD_LETTER_FIELD_HEADER = (
    DEAD_LETTER_PREFIX + "field"
)  # JSON Pointer of the first violation ("" for the whole)
DEAD_LETTER_RULE_HEADER = DEAD_LETTER_PREFIX + "rule"  # the contract's keyword it broke (required, type, ...)
DEAD_LETTER_VIOLATIONS_HEADER = DEAD_LETTER_PREFIX + "violations"  # JSON list of {field, rule, message}
DEAD_LETTER_SOURCE_TOPIC_HEADER = DEAD_LETTER_PREFIX + "source_topic"  # the topic the row was routed to
DEAD_LETTER_SOURCE_LSN_HEADER = DEAD_LETTER_PREFIX + "source_lsn"  # the row's position in the database's WAL
DEAD_LETTER_AGGREGATE_ID_HEADER = DEAD_LETTER_PREFIX + "aggregate_id"
DEAD_LETTER_CONTRACT_HEADER = DEAD_LETTER_PREFIX + "contract"  # the contract's $id
DEAD_LETTER_PIPELINE_HEADER = DEAD_LETTER_PREFIX + "pipeline"  # the connector that rejected it
UNROUTED_REASON = "aggregate type has no route in the catalog"
UNROUTED_CODE = "unrouted"
MALFORMED_JSON_CODE = "malformed_json"
SCHEMA_VIOLATION_CODE = "schema_violation"


def worker_config(cluster: ConnectCluster) -> dict[str, str]:
    """Worker settings besides the group, the internal topics, bootstrap and security (set by each realization).

    Exactly-once source support: every task's records and its source offsets are committed in one Kafka
    transaction, and the leader fences zombie tasks before new ones start. Topics are never created by the
    worker (the catalog provisions them), and internal topics use the cluster's default replication.
    """
    return {
        "exactly.once.source.support": "enabled",
        "topic.creation.enable": "false",
        "config.storage.replication.factor": "-1",
        "offset.storage.replication.factor": "-1",
        "status.storage.replication.factor": "-1",
        "key.converter": STRING_CONVERTER,
        "value.converter": STRING_CONVERTER,
        # Connect reads its internal topics with read_committed under exactly-once; its own producers are
        # idempotent; a record larger than the broker's limit fails the task instead of being dropped.
        "producer.enable.idempotence": "true",
    }


def _regex_literal(text: str) -> str:
    return re.escape(text)


def route_contracts(platform: Platform, source: Source, catalog_dir: Path | None = None) -> dict[str, str]:
    """The JSON Schema text of each of `source`'s route topics (as registered), read from the catalog.

    The loader makes every route topic an outbox topic with a JSON Schema contract; an Avro contract here
    would be a catalog the loader let through, so it fails loudly.
    """
    routed = {r.topic for r in source.routes}
    found = {c.topic: c for c in load_contracts(platform, catalog_dir) if c.topic in routed}
    out: dict[str, str] = {}
    for topic in sorted(routed):
        contract = found.get(topic)
        if contract is None or contract.schema_type != SchemaType.JSON:
            raise ValueError(f"outbox topic {topic} of source {source.name} has no JSON Schema contract")
        out[topic] = registered_text(contract.schema)
    return out


def contract_check_config(source: Source, contracts: Mapping[str, str]) -> dict[str, str]:
    """The contract-check transform's settings (without the `transforms.<name>.` prefix), from the catalog."""
    missing = sorted({r.topic for r in source.routes} - set(contracts))
    if missing:
        raise ValueError(f"no contract given for the route topics {', '.join(missing)} of {source.name}")
    cfg = {
        "type": CONTRACT_CHECK,
        "dead.letter.topic": source.dead_letter_topic,
        "topics": ",".join(sorted(contracts)),
        "pipeline": source.connector_name,
    }
    for topic, text in sorted(contracts.items()):
        # Compact: the text travels in the connector's config (Connect's config topic, the KafkaConnector).
        cfg[f"contract.{topic}"] = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    return cfg


def outbox_connector_config(source: Source, secret_ref: str, contracts: Mapping[str, str]) -> dict[str, str]:
    """Debezium's PostgreSQL connector for `source`'s outbox, exactly-once, routed by aggregate type, each event
    checked against its topic's contract.

    `secret_ref` is the config-provider reference of the credentials (`${secrets:ns/name` or `${dir:/path`):
    the user is `<ref>:username}`, the password `<ref>:password}`. `contracts` maps each route topic to its
    JSON Schema text (`route_contracts`).

    Each committed INSERT into the outbox becomes one event: key the aggregate id, value the payload (JSON
    text), headers the event id (`id`), its type and aggregate type. Deletes are not events, so the service
    may delete outbox rows in the same transaction that wrote them, keeping the table empty by design. A row
    whose aggregate type has no route goes to the source's dead-letter topic with the reason in a header;
    so does, last in the chain, an event whose payload breaks its topic's contract (not JSON, a missing field, a
    wrong type...), with the reason code, the field (JSON Pointer), the rule, the topic it was meant for and its
    LSN in headers. Either way the rows behind it still flow. (Connect's own dead-letter queue exists only for
    sink connectors, so a source connector's check is a transform.) Heartbeats go to the source's heartbeat
    topic (see HEARTBEAT_INTERVAL_MS).
    """
    ep = source.endpoint
    routes = {r.aggregate_type: r.topic for r in source.routes}
    # Neither an aggregate type nor the heartbeat topic: an unroutable row.
    known = "|".join(_regex_literal(a) for a in [*sorted(routes), source.heartbeat_topic])
    transforms = (
        ["messages", "heartbeat", "outbox", "unrouted_reason", "unrouted_code", "unrouted"]
        + [f"route_{i}" for i in range(len(routes))]
        + [CONTRACT_CHECK_TRANSFORM]
    )
    cfg: dict[str, str] = {
        "connector.class": POSTGRES_CONNECTOR,
        "tasks.max": "1",
        "plugin.name": "pgoutput",
        "database.hostname": ep.host,
        "database.port": str(ep.port),
        "database.dbname": source.database,
        "database.user": f"{secret_ref}:username}}",
        "database.password": f"{secret_ref}:password}}",
        "database.sslmode": ep.ssl_mode,
        "topic.prefix": source.topic_prefix,
        "slot.name": source.slot_name,
        "publication.name": source.publication,
        # The database owner creates the publication of exactly the outbox table (locally `prepare_source`): the
        # replication login needs no ownership of any table.
        "publication.autocreate.mode": "disabled",
        "table.include.list": source.outbox_table,
        # Only what is committed from now on: outbox rows are events, not state to snapshot.
        "snapshot.mode": "no_data",
        "tombstones.on.delete": "false",
        "exactly.once.support": "required",
        "transaction.boundary": "poll",
        "errors.tolerance": "none",
        "heartbeat.interval.ms": str(HEARTBEAT_INTERVAL_MS),
        "heartbeat.action.query": (
            f"SELECT pg_logical_emit_message(false, '{HEARTBEAT_MESSAGE_PREFIX}', now()::text)"
        ),
        "topic.heartbeat.prefix": HEARTBEAT_TOPIC_PREFIX,
        "message.prefix.include.list": _regex_literal(HEARTBEAT_MESSAGE_PREFIX),
        "transforms.messages.type": FILTER,
        "transforms.messages.predicate": "messages",
        "predicates.messages.type": TOPIC_NAME_MATCHES,
        "predicates.messages.pattern": f"^{_regex_literal(source.topic_prefix + '.message')}$",
        "transforms.heartbeat.type": REGEX_ROUTER,
        "transforms.heartbeat.regex": ".*",
        "transforms.heartbeat.replacement": source.heartbeat_topic,
        "transforms.heartbeat.predicate": "heartbeat",
        "predicates.heartbeat.type": TOPIC_NAME_MATCHES,
        "predicates.heartbeat.pattern": (
            f"^{_regex_literal(HEARTBEAT_TOPIC_PREFIX + '.' + source.topic_prefix)}$"
        ),
        "key.converter": STRING_CONVERTER,
        "value.converter": STRING_CONVERTER,
        "transforms": ",".join(transforms),
        "transforms.outbox.type": EVENT_ROUTER,
        "transforms.outbox.route.by.field": "aggregatetype",
        "transforms.outbox.route.topic.replacement": "${routedByValue}",
        "transforms.outbox.table.field.event.key": "aggregateid",
        "transforms.outbox.table.fields.additional.placement": (
            f"type:header:{EVENT_TYPE_HEADER},aggregatetype:header:{AGGREGATE_TYPE_HEADER}"
        ),
        "transforms.unrouted_reason.type": INSERT_HEADER,
        "transforms.unrouted_reason.header": DEAD_LETTER_REASON_HEADER,
        "transforms.unrouted_reason.value.literal": UNROUTED_REASON,
        "transforms.unrouted_reason.predicate": "unrouted",
        "transforms.unrouted_code.type": INSERT_HEADER,
        "transforms.unrouted_code.header": DEAD_LETTER_REASON_CODE_HEADER,
        "transforms.unrouted_code.value.literal": UNROUTED_CODE,
        "transforms.unrouted_code.predicate": "unrouted",
        "transforms.unrouted.type": REGEX_ROUTER,
        "transforms.unrouted.regex": ".*",
        "transforms.unrouted.replacement": source.dead_letter_topic,
        "transforms.unrouted.predicate": "unrouted",
        "predicates": "heartbeat,messages,unrouted",
        "predicates.unrouted.type": TOPIC_NAME_MATCHES,
        "predicates.unrouted.pattern": f"^(?!({known})$).*$",
    }
    for i, (aggregate_type, topic) in enumerate(sorted(routes.items())):
        cfg[f"transforms.route_{i}.type"] = REGEX_ROUTER
        cfg[f"transforms.route_{i}.regex"] = f"^{_regex_literal(aggregate_type)}$"
        cfg[f"transforms.route_{i}.replacement"] = topic
    for key, value in contract_check_config(source, contracts).items():
        cfg[f"transforms.{CONTRACT_CHECK_TRANSFORM}.{key}"] = value
    return dict(sorted(cfg.items()))


def outbox_table_ddl(source: Source) -> str:
    """The outbox table as the connector expects it (the service's migrations own it; tests and `make local`
    create it from here)."""
    cols = ",\n  ".join(f"{name} {kind}" for name, kind in OUTBOX_COLUMNS.items())
    return f"CREATE TABLE IF NOT EXISTS {source.outbox_table} (\n  {cols}\n)"


# ---- the replication slots' metrics ---------------------------------------------------------------------------
# A slot keeps every WAL segment from its restart position on, for as long as its consumer lags or is gone; the
# database's disk is what fills. The Prometheus PostgreSQL exporter runs this query against each source
# (locally Debian's `prometheus-postgres-exporter`, on Kubernetes the same exporter's image), which gives
# `headwater_cdc_slot_retained_bytes`, `..._lag_bytes` and `..._inactive` per slot the platform created.
SLOT_EXPORTER = (
    "cdc-slot-exporter"  # the exporter's name: its Deployment and PodMonitor, the local scrape job
)
SLOT_METRICS = "headwater_cdc_slot"
SLOT_RETAINED_BYTES = f"{SLOT_METRICS}_retained_bytes"
SLOT_INACTIVE = f"{SLOT_METRICS}_inactive"
SLOT_QUERY = (
    "SELECT slot_name, (NOT active)::int AS inactive, "
    "pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained_bytes, "
    "pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint AS lag_bytes "
    f"FROM pg_replication_slots WHERE slot_type = 'logical' AND left(slot_name, {len(SLOT_PREFIX)}) = "
    f"'{SLOT_PREFIX}'"
)


def slot_exporter_queries() -> str:
    """The exporter's query file (`--extend.query-path`): the platform's logical slots, one series each."""
    body = {
        SLOT_METRICS: {
            "query": SLOT_QUERY,
            "metrics": [
                {"slot_name": {"usage": "LABEL", "description": "The logical replication slot"}},
                {"inactive": {"usage": "GAUGE", "description": "1 while no consumer reads the slot"}},
                {
                    "retained_bytes": {
                        "usage": "GAUGE",
                        "description": "WAL bytes the database keeps for the slot (from its restart_lsn)",
                    }
                },
                {
                    "lag_bytes": {
                        "usage": "GAUGE",
                        "description": "WAL bytes the slot's consumer has not confirmed yet",
                    }
                },
            ],
        }
    }
    return yaml.safe_dump(body, sort_keys=True)


def slot_exporter_args(listen: str, query_path: str) -> list[str]:
    """The exporter's options besides its connection: only the slot query (no default or settings metrics,
    which would need a superuser-like role)."""
    return [
        f"--web.listen-address={listen}",
        f"--extend.query-path={query_path}",
        "--disable-default-metrics",
        "--disable-settings-metrics",
        "--no-collector.bgwriter",
        "--no-collector.database",
    ]


def slot_wal_budget_bytes(source: Source) -> int:
    """The source's `slotWalBudget` in bytes."""
    from kubernetes.utils import parse_quantity  # the client is big; only the realizations need this

    return int(parse_quantity(source.endpoint.slot_wal_budget))
