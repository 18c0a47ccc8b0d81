"""CDC derivations every realization calls: the Connect worker's settings and each source's outbox connector.

The Kubernetes realization puts these in a `KafkaConnect` and a `KafkaConnector` per source; the local one in a
worker properties file and a connector created over Connect's REST API. Both call the functions here, so the
exactly-once settings, the slot, the publication and the routing cannot drift apart.

Credentials never appear in a config: the connector names them through a Connect config provider
(`${<provider>:<path>:<key>}`), which each realization points at its own secret store (a Kubernetes Secret through
Strimzi's `KubernetesSecretConfigProvider`, an owner-only folder through Kafka's `DirectoryConfigProvider`).
"""

from __future__ import annotations

import re

import yaml

from headwater.spec import SLOT_PREFIX, ConnectCluster, Source

POSTGRES_CONNECTOR = "io.debezium.connector.postgresql.PostgresConnector"
EVENT_ROUTER = "io.debezium.transforms.outbox.EventRouter"
REGEX_ROUTER = "org.apache.kafka.connect.transforms.RegexRouter"
INSERT_HEADER = "org.apache.kafka.connect.transforms.InsertHeader"
TOPIC_NAME_MATCHES = "org.apache.kafka.connect.transforms.predicates.TopicNameMatches"
STRING_CONVERTER = "org.apache.kafka.connect.storage.StringConverter"

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
DEAD_LETTER_REASON_HEADER = "headwater.deadletter.reason"
UNROUTED_REASON = "aggregate type has no route in the catalog"


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


def outbox_connector_config(source: Source, secret_ref: str) -> dict[str, str]:
    """Debezium's PostgreSQL connector for `source`'s outbox, exactly-once, routed by aggregate type.

    `secret_ref` is the config-provider reference of the credentials (`${secrets:ns/name` or `${dir:/path`):
    the user is `<ref>:username}`, the password `<ref>:password}`.

    Each committed INSERT into the outbox becomes one event: key the aggregate id, value the payload (JSON
    text), headers the event id (`id`), its type and aggregate type. Deletes are not events, so the service
    may delete outbox rows in the same transaction that wrote them, keeping the table empty by design. A row
    whose aggregate type has no route goes to the source's dead-letter topic with the reason in a header,
    and the rows behind it still flow.
    """
    ep = source.endpoint
    routes = {r.aggregate_type: r.topic for r in source.routes}
    known = "|".join(_regex_literal(a) for a in sorted(routes))
    transforms = ["outbox", "unrouted_reason", "unrouted"] + [f"route_{i}" for i in range(len(routes))]
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
        "transforms.unrouted.type": REGEX_ROUTER,
        "transforms.unrouted.regex": ".*",
        "transforms.unrouted.replacement": source.dead_letter_topic,
        "transforms.unrouted.predicate": "unrouted",
        "predicates": "unrouted",
        "predicates.unrouted.type": TOPIC_NAME_MATCHES,
        "predicates.unrouted.pattern": f"^(?!({known})$).*$",
    }
    for i, (aggregate_type, topic) in enumerate(sorted(routes.items())):
        cfg[f"transforms.route_{i}.type"] = REGEX_ROUTER
        cfg[f"transforms.route_{i}.regex"] = f"^{_regex_literal(aggregate_type)}$"
        cfg[f"transforms.route_{i}.replacement"] = topic
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
