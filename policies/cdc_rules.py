"""Rules for CDC: Kafka Connect and its connectors capture outboxes exactly-once, over TLS, into contracted topics."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from components.kafka_topics import CONTRACT_ANNOTATION, LABEL_PREFIX
from headwater import versions
from headwater.cdc import CONTRACT_CHECK
from headwater.spec import SSL_MODES, Tier, TopicKind
from policies.rulebook import Context, Rule, dig, labels_of, mapping, of_kind

GROUP = versions.STRIMZI_API_VERSION.split("/")[0]
KIND_LABEL = f"{LABEL_PREFIX}/kind"
# Debezium's PostgreSQL default is `prefer`, which falls back to plaintext without a word.
ENCRYPTED_SSL_MODES = tuple(m for m in SSL_MODES if m != "disable")


def _config(props: Mapping[str, Any]) -> Mapping[str, Any]:
    return mapping(dig(props, "spec", "config"))


def _database_tls(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[str]:
    if ctx.tier != Tier.PROD:
        return
    name = dig(props, "metadata", "name")
    mode = _config(props).get("database.sslmode")
    if mode not in ENCRYPTED_SSL_MODES:
        yield (
            f"KafkaConnector {name}: database.sslmode is {mode!r}, so the replication login and every row may "
            f"cross the network in clear: set one of {', '.join(ENCRYPTED_SSL_MODES)} "
            "(sources.<name>.sslMode in the stack)"
        )


def _exactly_once(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[str]:
    kind = dig(props, "kind")
    name = dig(props, "metadata", "name")
    config = _config(props)
    if kind == "KafkaConnect" and config.get("exactly.once.source.support") != "enabled":
        yield (
            f"KafkaConnect {name}: spec.config exactly.once.source.support is "
            f"{config.get('exactly.once.source.support')!r}: set it to enabled, so each task's records and "
            "its source offsets commit in one transaction (no duplicate after a crash)"
        )
    if kind == "KafkaConnector" and config.get("exactly.once.support") != "required":
        yield (
            f"KafkaConnector {name}: spec.config exactly.once.support is {config.get('exactly.once.support')!r}: "
            "set it to required, so the connector refuses to run rather than run without exactly-once delivery"
        )


def _outbox_contract(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[str]:
    if labels_of(props).get(KIND_LABEL) != TopicKind.OUTBOX.value:
        return
    contract = mapping(dig(props, "metadata", "annotations")).get(CONTRACT_ANNOTATION)
    if not contract:
        topic = dig(props, "spec", "topicName") or dig(props, "metadata", "name")
        yield (
            f"outbox topic {topic} has no data contract (annotation {CONTRACT_ANNOTATION}): give it a schema "
            f"(catalog.topics.{topic}.schema), so payload changes go through the contract check"
        )


def _contract_check(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[str]:
    """The last transform checks every routed event against its topic's contract: a route added without a
    contract, or a transform after the check, would let unchecked payloads into the topic."""
    name = dig(props, "metadata", "name")
    config = _config(props)
    chain = [t.strip() for t in str(config.get("transforms", "")).split(",") if t.strip()]
    checks = [t for t in chain if config.get(f"transforms.{t}.type") == CONTRACT_CHECK]
    if not checks or chain[-1] != checks[-1]:
        yield (
            f"KafkaConnector {name}: the transform chain {chain} does not end with the contract check "
            f"({CONTRACT_CHECK}): events would reach their topics without being held to their contracts "
            "(headwater.cdc.outbox_connector_config adds it)"
        )
        return
    check = f"transforms.{checks[-1]}."
    dead_letter = config.get(check + "dead.letter.topic")
    checked = {t.strip() for t in str(config.get(check + "topics", "")).split(",") if t.strip()}
    # The routes by aggregate type: the unconditional topic routers (those under a predicate re-route what is
    # not an event: unroutable rows to the dead-letter topic, heartbeats to theirs).
    routed = {
        str(config.get(f"transforms.{t}.replacement"))
        for t in chain
        if config.get(f"transforms.{t}.type") == "org.apache.kafka.connect.transforms.RegexRouter"
        and not config.get(f"transforms.{t}.predicate")
    }
    for topic in sorted(routed - checked):
        yield (
            f"KafkaConnector {name}: events routed to {topic} are not checked: add it to {check}topics with "
            f"its contract in {check}contract.{topic}"
        )
    for topic in sorted(checked):
        if not config.get(f"{check}contract.{topic}"):
            yield f"KafkaConnector {name}: {check}contract.{topic} is missing: the JSON Schema of {topic}"
    if not dead_letter:
        yield f"KafkaConnector {name}: {check}dead.letter.topic is missing: where rejected events go"


RULES: tuple[Rule, ...] = (
    Rule(
        name="cdc-database-tls",
        description="Prod CDC connectors reach their database over TLS (database.sslmode require or stricter).",
        applies=of_kind(GROUP, "KafkaConnector"),
        check=_database_tls,
    ),
    Rule(
        name="cdc-exactly-once",
        description="Kafka Connect runs with exactly-once source support and every connector requires it.",
        applies=of_kind(GROUP, "KafkaConnect", "KafkaConnector"),
        check=_exactly_once,
    ),
    Rule(
        name="cdc-contract-check",
        description="Every CDC connector ends with the contract check, covering each topic it routes to.",
        applies=of_kind(GROUP, "KafkaConnector"),
        check=_contract_check,
    ),
    Rule(
        name="cdc-outbox-contract",
        description="Every outbox topic carries a data contract.",
        applies=of_kind(GROUP, "KafkaTopic"),
        check=_outbox_contract,
    ),
)
