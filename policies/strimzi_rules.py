"""Rules for Strimzi resources: API version, listener security, authorization, ACLs and topics."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from components.kafka_topics import LABEL_PREFIX
from headwater import versions
from headwater.spec import (
    K8S_NAME,
    PROD_MIN_ISR,
    PROD_MIN_REPLICATION,
    TOPIC_NAME,
    TOPIC_NAME_RULE,
    Sla,
    Tier,
    TopicKind,
)
from policies.rulebook import (
    Context,
    ResourceType,
    Rule,
    as_int,
    dig,
    is_true,
    items,
    labels_of,
    mapping,
    of_kind,
)

GROUP = versions.STRIMZI_API_VERSION.split("/")[0]
SERVED_VERSION = versions.STRIMZI_API_VERSION.split("/")[1]
AUTHENTICATION_TYPES = ("tls", "scram-sha-512", "custom")
AUTHORIZATION_TYPES = ("simple", "custom")
OWNER_LABEL = f"{LABEL_PREFIX}/owner"
SLA_LABEL = f"{LABEL_PREFIX}/sla"
KIND_LABEL = f"{LABEL_PREFIX}/kind"


def _api_version(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[str]:
    t = ResourceType.parse(resource_type)
    if t is not None and t.version != SERVED_VERSION:
        yield (
            f"apiVersion {t.group}/{t.version} is not served by Strimzi {versions.STRIMZI_VERSION}: "
            f"use {versions.STRIMZI_API_VERSION} (the only served version since Strimzi 1.0)"
        )


def _listeners(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[str]:
    listeners = items(dig(props, "spec", "kafka", "listeners"))
    if not listeners:
        yield "spec.kafka.listeners is empty: declare a TLS listener with authentication"
    for i, raw in enumerate(listeners):
        listener = mapping(raw)
        where = (
            f"spec.kafka.listeners[{i}] ({listener.get('name', '?')}, port {as_int(listener.get('port'))})"
        )
        auth = dig(listener, "authentication", "type")
        if auth not in AUTHENTICATION_TYPES:
            yield (
                f"{where} has no authentication: set authentication.type to one of "
                f"{', '.join(AUTHENTICATION_TYPES)} (kafka.authentication in the stack)"
            )
        if not is_true(listener.get("tls")) and not ctx.tier.is_development:
            yield (
                f"{where} is plaintext (tls: false) in a {ctx.tier.value} environment: set tls: true; "
                "plaintext listeners are allowed only in local and dev (kafka.plaintextListener: false)"
            )


def _authorization(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[str]:
    kafka = mapping(dig(props, "spec", "kafka"))
    authz = dig(kafka, "authorization", "type")
    if authz not in AUTHORIZATION_TYPES:
        yield (
            f"spec.kafka.authorization.type is {authz!r}: set it to simple so every KafkaUser is limited "
            "to its ACLs (allowed: simple, custom)"
        )
    if is_true(dig(kafka, "config", "allow.everyone.if.no.acl.found")):
        yield (
            "spec.kafka.config allow.everyone.if.no.acl.found is true: remove it (or set false) so a "
            "resource without ACLs is closed, not open to every principal"
        )


_EVERYTHING = ("*", "")


def _acls(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[str]:
    user = dig(props, "metadata", "name")
    for i, raw in enumerate(items(dig(props, "spec", "authorization", "acls"))):
        acl = mapping(raw)
        if acl.get("type", "allow") != "allow":
            continue  # a deny rule on everything takes rights away; it is not what this rule is about
        resource = mapping(acl.get("resource"))
        rtype = resource.get("type")
        name = resource.get("name")
        pattern = resource.get("patternType", "literal")
        ops = [str(o) for o in items(acl.get("operations"))]
        if acl.get("operation") is not None:
            ops.append(str(acl.get("operation")))
        where = f"spec.authorization.acls[{i}] of KafkaUser {user}"
        if rtype in ("topic", "group", "transactionalId"):
            if (pattern == "literal" and name == "*") or (pattern == "prefix" and name in _EVERYTHING):
                shown = f"name {name!r} with patternType {pattern}"
                yield (
                    f"{where} allows {', '.join(ops) or 'operations'} on every {rtype} ({shown}): name the "
                    f"{rtype}s the principal's flows use (ACLs are derived from consumes/produces in "
                    "catalog/catalog.yaml)"
                )
            elif name is None:
                yield f"{where} has no resource.name for a {rtype}: name the {rtype} the flow uses"
        if "All" in ops:
            yield (
                f"{where} grants the All operation on {rtype} {name or ''}".rstrip()
                + ": list only the operations the flows need (Describe, Read, Write, DescribeConfigs)"
            )


def _config(props: Mapping[str, Any]) -> Mapping[str, Any]:
    return mapping(dig(props, "spec", "config"))


def _topic_durability(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[str]:
    if ctx.tier not in (Tier.STAGING, Tier.PROD):
        return
    t = ResourceType.parse(resource_type)
    if t is not None and t.kind == "Kafka":
        yield from _cluster_durability(props, ctx)
        return
    topic = dig(props, "spec", "topicName") or dig(props, "metadata", "name")
    rf = as_int(dig(props, "spec", "replicas"))
    isr = as_int(_config(props).get("min.insync.replicas"))
    prod = ctx.tier == Tier.PROD
    if rf is None:
        yield (
            f"topic {topic}: spec.replicas is not set (the broker default would apply): set it "
            f"(kafka.replicationFactor in the stack){f' to at least {PROD_MIN_REPLICATION}' if prod else ''}"
        )
    elif prod and rf < PROD_MIN_REPLICATION:
        yield (
            f"topic {topic}: spec.replicas = {rf}: a prod topic needs a replication factor of at least "
            f"{PROD_MIN_REPLICATION} (kafka.replicationFactor in the stack)"
        )
    if isr is None:
        yield (
            f"topic {topic}: spec.config min.insync.replicas is not set: set it "
            f"(kafka.minInsyncReplicas in the stack){f' to at least {PROD_MIN_ISR}' if prod else ''}"
        )
    elif prod and isr < PROD_MIN_ISR:
        yield (
            f"topic {topic}: min.insync.replicas = {isr}: a prod topic needs at least {PROD_MIN_ISR} "
            "(kafka.minInsyncReplicas in the stack)"
        )
    if rf is not None and isr is not None and rf <= isr:
        yield (
            f"topic {topic}: replicas ({rf}) must be greater than min.insync.replicas ({isr}), so "
            "producers with acks=all keep writing while one broker is down"
        )


_CLUSTER_MINIMA = (
    ("default.replication.factor", PROD_MIN_REPLICATION),
    ("offsets.topic.replication.factor", PROD_MIN_REPLICATION),
    ("transaction.state.log.replication.factor", PROD_MIN_REPLICATION),
    ("min.insync.replicas", PROD_MIN_ISR),
    ("transaction.state.log.min.isr", PROD_MIN_ISR),
)


def _cluster_durability(props: Mapping[str, Any], ctx: Context) -> Iterator[str]:
    config = mapping(dig(props, "spec", "kafka", "config"))
    if ctx.tier == Tier.PROD:
        for key, minimum in _CLUSTER_MINIMA:
            value = as_int(config.get(key))
            if value is None or value < minimum:
                yield (
                    f"spec.kafka.config {key} = {config.get(key)!r}: set it to at least {minimum} in prod "
                    "(kafka.replicationFactor / kafka.minInsyncReplicas in the stack)"
                )
    rf = as_int(config.get("default.replication.factor"))
    isr = as_int(config.get("min.insync.replicas"))
    if rf is not None and isr is not None and rf <= isr:
        yield (
            f"spec.kafka.config default.replication.factor ({rf}) must be greater than "
            f"min.insync.replicas ({isr}), so one broker can be down without stopping acks=all producers"
        )


def _topic_convention(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[str]:
    name = dig(props, "spec", "topicName") or dig(props, "metadata", "name")
    if not isinstance(name, str) or not TOPIC_NAME.match(name):
        yield f"topic name {name!r} does not follow the convention {TOPIC_NAME_RULE}"
    labels = labels_of(props)
    owner = labels.get(OWNER_LABEL)
    if not isinstance(owner, str) or not K8S_NAME.match(owner):
        yield (
            f"topic {name}: label {OWNER_LABEL} is {owner!r}: set it to the owning team (a DNS label, "
            "the topic's owner in catalog/catalog.yaml)"
        )
    sla = labels.get(SLA_LABEL)
    if sla not in {s.value for s in Sla}:
        yield (
            f"topic {name}: label {SLA_LABEL} is {sla!r}: set it to one of "
            f"{', '.join(s.value for s in Sla)} (the topic's sla in catalog/catalog.yaml)"
        )
    kind = labels.get(KIND_LABEL)
    if kind not in {k.value for k in TopicKind}:
        yield (
            f"topic {name}: label {KIND_LABEL} is {kind!r}: set it to one of "
            f"{', '.join(k.value for k in TopicKind)} (the topic's kind in catalog/catalog.yaml)"
        )


def _topic_cleanup(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[str]:
    kind = labels_of(props).get(KIND_LABEL)
    if kind not in {k.value for k in TopicKind}:
        return  # the convention rule reports a missing or unknown kind
    name = dig(props, "spec", "topicName") or dig(props, "metadata", "name")
    config = _config(props)
    policy = config.get("cleanup.policy")
    if TopicKind(kind).compacted and policy != "compact":
        yield (
            f"{kind} topic {name}: cleanup.policy is {policy!r}: set it to compact, so the latest value "
            "per key is kept for as long as the key lives"
        )
    if TopicKind(kind).kept_forever:
        what = {
            TopicKind.JOURNAL.value: "the journal is the registry's storage",
            TopicKind.AUDIT.value: "an audit trail is never trimmed",
        }[kind]
        if policy != "delete":
            yield (
                f"{kind} topic {name}: cleanup.policy is {policy!r}: set it to delete (compaction would "
                f"drop history; {what})"
            )
        retention = as_int(config.get("retention.ms"))
        if retention != -1:
            yield (
                f"{kind} topic {name}: retention.ms is {config.get('retention.ms')!r}: set it to -1 "
                f"(retention: forever), {what}"
            )
        size = config.get("retention.bytes")
        if size is not None and as_int(size) != -1:
            yield f"{kind} topic {name}: retention.bytes is {size!r}: remove it or set -1 (no size limit)"


RULES: tuple[Rule, ...] = (
    Rule(
        name="strimzi-api-version",
        description=f"Strimzi resources use {versions.STRIMZI_API_VERSION}, the only version Strimzi serves.",
        applies=of_kind(GROUP),
        check=_api_version,
    ),
    Rule(
        name="strimzi-listener-security",
        description="Every Kafka listener uses TLS and authenticates clients (plaintext only in local/dev).",
        applies=of_kind(GROUP, "Kafka"),
        check=_listeners,
    ),
    Rule(
        name="strimzi-authorization",
        description="Kafka authorization is enabled, so principals only get what their ACLs allow.",
        applies=of_kind(GROUP, "Kafka"),
        check=_authorization,
    ),
    Rule(
        name="strimzi-acl-least-privilege",
        description="No KafkaUser is allowed every topic/group/transactional id, or the All operation.",
        applies=of_kind(GROUP, "KafkaUser"),
        check=_acls,
    ),
    Rule(
        name="strimzi-topic-durability",
        description="Prod topics: replication factor >= 3, min.insync.replicas >= 2, and RF > min ISR.",
        applies=of_kind(GROUP, "KafkaTopic", "Kafka"),
        check=_topic_durability,
    ),
    Rule(
        name="strimzi-topic-convention",
        description="Topics follow the naming convention and carry owner, SLA and kind labels.",
        applies=of_kind(GROUP, "KafkaTopic"),
        check=_topic_convention,
    ),
    Rule(
        name="strimzi-topic-cleanup",
        description="Feature and state topics are compacted; the registry journal and audit topics are delete, kept forever.",
        applies=of_kind(GROUP, "KafkaTopic"),
        check=_topic_cleanup,
    ),
)
