"""Probes that try one Kafka operation as some client and say whether the broker allowed or denied it.

Each probe returns ALLOWED only after the operation demonstrably worked (the record was delivered, read
back, the offset committed and fetched again...) and DENIED only on the broker's authorization error for
that operation. Anything else (a timeout, another error) raises `Inconclusive`, so a broken broker or probe
fails the test instead of passing as "denied".
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from typing import Any, Literal

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

Outcome = Literal["allowed", "denied"]
ALLOWED: Outcome = "allowed"
DENIED: Outcome = "denied"
TIMEOUT = 10.0
# A group nobody has an ACL for: the read probe must not depend on a group grant, only on the topic.
PROBE_GROUP = "acl-probe.no-such-group"
AUTHZ_ERRORS = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
}


COORDINATOR_BUSY = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
}


class Inconclusive(AssertionError):
    """The probe saw neither a clear success nor an authorization denial."""


def _code(exc: KafkaException) -> int:
    err = exc.args[0]
    return int(err.code()) if isinstance(err, KafkaError) else -1


def _conf(conf: dict[str, Any], errors: list[KafkaError] | None = None) -> dict[str, Any]:
    out = {**conf, "socket.timeout.ms": 5000}
    if errors is not None:
        out["error_cb"] = errors.append
    return out


def produce(conf: dict[str, Any], topic: str, *, idempotent: bool = False) -> Outcome:
    """Produce one record; ALLOWED when it was acknowledged by the broker. An idempotent producer first asks
    the broker for a producer id (InitProducerId), which Kafka >= 3.0 grants on Write to any topic."""
    results: list[KafkaError | None] = []
    settings = {**conf, "message.timeout.ms": int(TIMEOUT * 1000), "acks": "all"}
    if idempotent:
        settings["enable.idempotence"] = True
    producer = Producer(_conf(settings))
    try:
        producer.produce(
            topic, key=b"acl-probe", value=b"acl-probe", on_delivery=lambda err, msg: results.append(err)
        )
    except KafkaException as exc:
        # The client may already hold the broker's answer for this topic (metadata it fetched while this
        # thread waited for a core) and refuse at once instead of in the delivery report: the same denial.
        if _code(exc) == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            return DENIED
        raise Inconclusive(f"produce to {topic}: {exc}") from exc
    producer.flush(TIMEOUT + 5)
    if not results:
        raise Inconclusive(f"produce to {topic}: no delivery report within {TIMEOUT}s")
    err = results[0]
    if err is None:
        return ALLOWED
    if err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
        return DENIED
    raise Inconclusive(f"produce to {topic}: {err}")


def read(conf: dict[str, Any], topic: str) -> Outcome:
    """Fetch partition 0 from the beginning (it holds a seeded record); ALLOWED when a record arrives.

    A principal without Describe on the topic is told so by the metadata and never learns where the
    partition lives; one with Describe but no Read gets the error from its fetch. Both are denials, and in
    both cases no record may arrive.
    """
    consumer = Consumer(_conf({**conf, "group.id": PROBE_GROUP, "enable.auto.commit": False}))
    try:
        meta = consumer.list_topics(topic, timeout=TIMEOUT).topics.get(topic)
        no_describe = meta is not None and meta.error is not None
        if no_describe and meta is not None and meta.error.code() != KafkaError.TOPIC_AUTHORIZATION_FAILED:
            raise Inconclusive(f"read {topic}: metadata error {meta.error}")
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + (0.5 if no_describe else TIMEOUT)
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is None:
                return ALLOWED
            if err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                return DENIED
            if err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED:
                continue  # the probe group is denied on purpose; fetching does not need it
            raise Inconclusive(f"read {topic}: {err}")
        if no_describe:
            return DENIED
        raise Inconclusive(f"read {topic}: neither a record nor an authorization error within {TIMEOUT}s")
    finally:
        consumer.close()


def commit_offset(conf: dict[str, Any], group: str, topic: str) -> Outcome:
    """Commit an offset for `group` (the OffsetCommit a consumer sends) and fetch it back; ALLOWED when it
    reads back the committed value."""
    admin = AdminClient(_conf(conf))
    offset = random.randint(1, 1_000_000)  # a stale commit cannot pass for this one
    request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, offset)])]
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            result = admin.alter_consumer_group_offsets(request, request_timeout=TIMEOUT)[group].result(
                TIMEOUT
            )
        except KafkaException as exc:
            if _code(exc) == KafkaError.GROUP_AUTHORIZATION_FAILED:
                return DENIED
            raise Inconclusive(f"commit for group {group}: {exc}") from None
        [tp] = result.topic_partitions
        if tp.error is not None and tp.error.code() in COORDINATOR_BUSY and time.monotonic() < deadline:
            time.sleep(0.2)  # the offsets topic is still being created or loaded
            continue
        if tp.error is not None and tp.error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED:
            # A principal that may Describe the group (a lag exporter) finds its coordinator and is refused
            # the commit itself, per partition.
            return DENIED
        if tp.error is not None:
            raise Inconclusive(f"commit for group {group} on {topic}: {tp.error}")
        break
    fetched = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])], request_timeout=TIMEOUT
    )[group].result(TIMEOUT)
    [back] = fetched.topic_partitions
    if back.error is not None or back.offset != offset:
        raise Inconclusive(
            f"group {group}: committed {offset} on {topic} but read back {back.offset} ({back.error})"
        )
    return ALLOWED


def transactional(conf: dict[str, Any], transactional_id: str, topic: str | None) -> Outcome:
    """Initialize a transactional producer; when allowed, also commit a transaction writing to `topic`."""
    producer = Producer(_conf({**conf, "transactional.id": transactional_id, "log_level": 0}))
    try:
        producer.init_transactions(TIMEOUT)
    except KafkaException as exc:
        if _code(exc) == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
            return DENIED
        raise Inconclusive(f"init_transactions({transactional_id}): {exc}") from None
    if topic is not None:
        producer.begin_transaction()
        producer.produce(topic, key=b"acl-probe", value=b"acl-probe-transactional")
        producer.commit_transaction(TIMEOUT)
    return ALLOWED


def visible_topics(conf: dict[str, Any]) -> set[str]:
    """The topics a client's metadata request returns (internal topics left out)."""
    producer = Producer(_conf(conf))
    md = producer.list_topics(timeout=TIMEOUT)
    return {name for name, t in md.topics.items() if not name.startswith("__") and t.error is None}


def _admin_call(run: Callable[[AdminClient], None]) -> Callable[[dict[str, Any]], Outcome]:
    def probe(conf: dict[str, Any]) -> Outcome:
        try:
            run(AdminClient(_conf(conf)))
        except _EmptyResult:
            return DENIED
        except KafkaException as exc:
            if _code(exc) in AUTHZ_ERRORS:
                return DENIED
            raise Inconclusive(f"{exc}") from None
        return ALLOWED

    return probe


class _EmptyResult(Exception):
    pass


def _some(result: list[Any]) -> None:
    # librdkafka 2.16 hands a DescribeAcls response carrying CLUSTER_AUTHORIZATION_FAILED back as an empty
    # list rather than an error (the broker logs the denial). The ACLs exist (the super user sees them), so
    # an empty answer is the denial.
    if not result:
        raise _EmptyResult


def _first(futures: dict[Any, Any]) -> None:
    for future in futures.values():
        future.result(TIMEOUT)


def admin_operations(topic: str, group: str) -> dict[str, Callable[[dict[str, Any]], Outcome]]:
    """Operations no application principal may perform, on a topic and group it does use."""
    every_acl = AclBindingFilter(
        ResourceType.ANY,
        None,  # type: ignore[arg-type]
        ResourcePatternType.ANY,
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    grant_all = AclBinding(
        ResourceType.TOPIC,
        "*",
        ResourcePatternType.LITERAL,
        "User:*",
        "*",
        AclOperation.ALL,
        AclPermissionType.ALLOW,
    )
    return {
        "create-topic": _admin_call(
            lambda a: _first(
                a.create_topics([NewTopic(f"acl-probe.created.v{uuid.uuid4().int % 1000 + 1}", 1, 1)])
            )
        ),
        "delete-topic": _admin_call(lambda a: _first(a.delete_topics([topic], request_timeout=TIMEOUT))),
        "alter-topic-config": _admin_call(
            lambda a: _first(
                a.incremental_alter_configs(
                    [
                        ConfigResource(
                            ResourceType.TOPIC,
                            topic,
                            incremental_configs=[
                                ConfigEntry(
                                    "retention.ms", "1000", incremental_operation=AlterConfigOpType.SET
                                )
                            ],
                        )
                    ]
                )
            )
        ),
        "describe-topic-config": _admin_call(
            lambda a: _first(a.describe_configs([ConfigResource(ResourceType.TOPIC, topic)]))
        ),
        "delete-records": _admin_call(
            lambda a: _first(a.delete_records([TopicPartition(topic, 0, 0)], request_timeout=TIMEOUT))
        ),
        "create-acl": _admin_call(lambda a: _first(a.create_acls([grant_all], request_timeout=TIMEOUT))),
        "describe-acls": _admin_call(
            lambda a: _some(a.describe_acls(every_acl, request_timeout=TIMEOUT).result(TIMEOUT))
        ),
        "alter-scram-credentials": _admin_call(
            lambda a: _first(
                a.alter_user_scram_credentials(
                    [
                        UserScramCredentialUpsertion(
                            "acl-probe-user",
                            ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
                            b"x" * 16,
                        )
                    ],
                    request_timeout=TIMEOUT,
                )
            )
        ),
        "delete-group": _admin_call(
            lambda a: _first(a.delete_consumer_groups([group], request_timeout=TIMEOUT))
        ),
        "alter-broker-config": _admin_call(
            lambda a: _first(
                a.incremental_alter_configs(
                    [
                        ConfigResource(
                            ResourceType.BROKER,
                            "1",
                            incremental_configs=[
                                ConfigEntry(
                                    "log.cleaner.threads", "2", incremental_operation=AlterConfigOpType.SET
                                )
                            ],
                        )
                    ]
                )
            )
        ),
    }


def connect(conf: dict[str, Any], timeout: float = 5.0) -> tuple[set[str] | None, list[KafkaError]]:
    """Try to get metadata; return (visible topics, or None when refused) and the client errors seen."""
    errors: list[KafkaError] = []
    producer = Producer(_conf({**conf, "log_level": 0}, errors))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            md = producer.list_topics(timeout=1)
            return set(md.topics), errors
        except KafkaException:
            producer.poll(0)
            if errors:
                break  # the broker refused or hung up: more attempts would only repeat that
    producer.poll(0)
    return None, errors
