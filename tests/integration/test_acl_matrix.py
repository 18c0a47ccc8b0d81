"""The ACL matrix: each principal of the local spec can do exactly what its flows grant, and nothing else.

The matrix is generated from the spec, so a new topic, flow, group or principal extends it. Expectations
are read from the declared flows themselves (who produces, consumes, in which group, transactionally),
not from `acls_for`, so a wrong derivation fails here rather than being checked against itself.

Every principal is tried over the listener of its declared authentication and, for SCRAM principals, also
over mTLS with a certificate `CN=<principal>` from the cluster CA: both must map to the same principal and
so obey the same ACLs. Runs on the scratch broker, since it writes probe records and commits offsets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from acl_probes import (
    ALLOWED,
    DENIED,
    Outcome,
    admin_operations,
    commit_offset,
    produce,
    read,
    transactional,
    visible_topics,
)
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from headwater.config import load_platform
from headwater.spec import Authentication, Consume, Principal

if TYPE_CHECKING:
    from conftest import Provisioned

PLATFORM = load_platform("local")
TOPICS = sorted(t.name for t in PLATFORM.topics)


@dataclass(frozen=True)
class Who:
    """A principal and the listener it connects through."""

    principal: Principal
    transport: str  # "scram" or "mtls"

    def __str__(self) -> str:
        return f"{self.transport}:{self.principal.name}"


def _whos() -> list[Who]:
    out = []
    for p in PLATFORM.principals:
        declared = "scram" if p.authentication == Authentication.SCRAM else "mtls"
        out.append(Who(p, declared))
        if declared == "scram":
            out.append(Who(p, "mtls"))
    return out


WHO = _whos()


# ---- what the flows grant -----------------------------------------------------------------------------------


def writes(p: Principal) -> set[str]:
    return {f.topic for f in p.produces}


def reads(p: Principal) -> set[str]:
    return {c.topic for c in p.consumes}


def monitored(p: Principal) -> set[str]:
    """Topics a lag exporter may describe (the topics of the groups it monitors), never read."""
    return {m.topic for m in p.monitors}


def group_matches(c: Consume, group: str) -> bool:
    """Whether a consumer group id falls under a consume flow's group (an exact name, or a prefix)."""
    return group.startswith(c.group) if c.group_pattern == "prefix" else group == c.group


def may_use_group(p: Principal, group: str) -> bool:
    return any(group_matches(c, group) for c in p.consumes)


def group_id(c: Consume) -> str:
    """A group id a client of this flow would use (a prefixed group gets a suffix, as its client adds one)."""
    return f"{c.group}acl-probe" if c.group_pattern == "prefix" else c.group


def may_describe_configs(p: Principal, topic: str) -> bool:
    return (p.describe_topic_configs and topic in reads(p) | writes(p)) or topic in p.verifies_configs_of


def may_use_transactional_id(p: Principal, transactional_id: str) -> bool:
    prefix = p.transactional_id_prefix
    if transactional_id in p.transactional_ids:  # named literally (Kafka Connect's leader)
        return True
    return p.transactional and prefix is not None and transactional_id.startswith(prefix)


def _outcome(allowed: bool) -> Outcome:
    return ALLOWED if allowed else DENIED


# Groups: every declared group, plus each principal's own name (the loader's default group name).
def _groups() -> list[str]:
    """Every flow's group id, each principal's own name (the loader's default group), and for a prefixed
    group its bare prefix one character short (it must not match)."""
    ids = {p.name for p in PLATFORM.principals}
    for p in PLATFORM.principals:
        for c in p.consumes:
            ids.add(group_id(c))
            if c.group_pattern == "prefix" and len(c.group) > 1:
                ids.add(c.group[:-1])
    return sorted(ids)


GROUPS = _groups()


def _transactional_ids() -> list[str]:
    ids = set()
    for p in PLATFORM.principals:
        prefix = p.transactional_id_prefix or f"{p.name}-"
        ids.add(f"{prefix}acl-probe")
        if p.transactional_id_prefix and len(p.transactional_id_prefix) > 1:
            ids.add(p.transactional_id_prefix[:-1])  # one character short: must not match the prefix ACL
        for tid in p.transactional_ids:
            ids |= {tid, f"{tid}-acl-probe"}  # a literal grant: the name itself only
    return sorted(ids)


TRANSACTIONAL_IDS = _transactional_ids()


def _case(who: Who, resource: str, expected: Outcome) -> Any:
    return pytest.param(who, resource, expected, id=f"{who}-{resource}-{expected}")


PRODUCE = [_case(w, t, _outcome(t in writes(w.principal))) for w in WHO for t in TOPICS]
# Every writer as an idempotent producer, with no ACL on the cluster resource (not needed since Kafka 3.0).
IDEMPOTENT = [_case(w, t, ALLOWED) for w in WHO for t in sorted(writes(w.principal))]
READ = [_case(w, t, _outcome(t in reads(w.principal))) for w in WHO for t in TOPICS]
GROUP = [_case(w, g, _outcome(may_use_group(w.principal, g))) for w in WHO for g in GROUPS]
TRANSACTIONAL = [
    _case(w, tid, _outcome(may_use_transactional_id(w.principal, tid)))
    for w in WHO
    for tid in TRANSACTIONAL_IDS
]
ADMIN_OPS = sorted(admin_operations("t", "g"))


def _own_topic(p: Principal) -> str:
    return sorted(reads(p) | writes(p) | monitored(p))[0]


def _admin_expected(p: Principal, operation: str) -> Outcome:
    # Reading its own topics' configs is the one administrative grant a flow can carry.
    return _outcome(operation == "describe-topic-config" and may_describe_configs(p, _own_topic(p)))


ADMIN = [_case(w, op, _admin_expected(w.principal, op)) for w in WHO for op in ADMIN_OPS]
CONSUME_FLOWS = [
    pytest.param(p, c.topic, group_id(c), id=f"{p.name}-{c.topic}-{group_id(c)}")
    for p in PLATFORM.principals
    for c in p.consumes
]


# ---- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env(scratch_provisioned: Provisioned) -> Provisioned:
    """The scratch broker, with one keyed record at the start of partition 0 of every topic (to be read),
    and its group and transaction coordinators warmed up (their internal topics are created on first use,
    which would otherwise land in the middle of one probe's time budget)."""
    producer = Producer(scratch_provisioned.admin_config())
    for topic in TOPICS:
        producer.produce(topic, key=b"seed", value=b"seed", partition=0)
    assert producer.flush(30) == 0, "could not seed the topics as the super user"
    admin = scratch_provisioned.admin_config()
    assert commit_offset(admin, "acl-matrix.warm-up", TOPICS[0]) == ALLOWED
    assert transactional(admin, "acl-matrix.warm-up", TOPICS[0]) == ALLOWED
    return scratch_provisioned


@pytest.fixture(scope="module")
def creds(env: Provisioned, tmp_path_factory: pytest.TempPathFactory) -> Callable[[Who], dict[str, Any]]:
    """Client settings for a principal over a listener. Over mTLS a SCRAM principal gets a certificate from
    the cluster CA here, since provisioning gives one only to tls principals."""
    cert_dir: Path = tmp_path_factory.mktemp("acl-matrix-certs")

    def conf(who: Who) -> dict[str, Any]:
        declared = "scram" if who.principal.authentication == Authentication.SCRAM else "mtls"
        if who.transport == declared:
            return env.config(who.principal.name)
        cert = env.kafka.ca.issue(cert_dir, who.principal.name, who.principal.name)
        return {
            "bootstrap.servers": env.kafka.bootstrap_mtls,
            "security.protocol": "SSL",
            "ssl.ca.location": str(env.kafka.ca_file),
            "ssl.certificate.location": str(cert.cert),
            "ssl.key.location": str(cert.key),
        }

    return conf


# ---- the matrix -------------------------------------------------------------------------------------------


def test_matrix_covers_every_principal_over_every_listener() -> None:
    # Guards the generation itself: an empty spec or a filter bug must not make the matrix pass vacuously.
    assert {w.principal.name for w in WHO} == {p.name for p in PLATFORM.principals} != set()
    assert {w.transport for w in WHO} == {"scram", "mtls"}
    for cases in (PRODUCE, READ, GROUP, TRANSACTIONAL):
        expected = {c.values[2] for c in cases}
        assert expected == {ALLOWED, DENIED}


@pytest.mark.parametrize("who", WHO, ids=str)
def test_metadata_shows_exactly_the_topics_of_its_flows(
    who: Who, creds: Callable[[Who], dict[str, Any]]
) -> None:
    assert visible_topics(creds(who)) == reads(who.principal) | writes(who.principal) | monitored(
        who.principal
    )


@pytest.mark.parametrize(("who", "topic", "expected"), PRODUCE)
def test_produce(who: Who, topic: str, expected: Outcome, creds: Callable[[Who], dict[str, Any]]) -> None:
    assert produce(creds(who), topic) == expected


@pytest.mark.parametrize(("who", "topic", "expected"), IDEMPOTENT)
def test_idempotent_produce_without_a_cluster_acl(
    who: Who, topic: str, expected: Outcome, creds: Callable[[Who], dict[str, Any]]
) -> None:
    assert produce(creds(who), topic, idempotent=True) == expected


def test_no_principal_holds_an_acl_on_the_cluster(env: Provisioned) -> None:
    """The flows grant topics, groups and transactional ids; IdempotentWrite on the cluster is gone."""
    admin = AdminClient(env.admin_config())
    every = AclBindingFilter(
        ResourceType.ANY,
        None,  # type: ignore[arg-type]
        ResourcePatternType.ANY,
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    bindings = admin.describe_acls(every, request_timeout=10).result(15)
    principals = {f"User:{p.name}" for p in PLATFORM.principals}
    assert {b.principal for b in bindings} & principals, "the broker holds no ACL of the spec's principals"
    on_cluster = [b for b in bindings if b.restype == ResourceType.BROKER and b.principal in principals]
    assert on_cluster == []


@pytest.mark.parametrize(("who", "topic", "expected"), READ)
def test_read(who: Who, topic: str, expected: Outcome, creds: Callable[[Who], dict[str, Any]]) -> None:
    assert read(creds(who), topic) == expected


@pytest.mark.parametrize(("who", "group", "expected"), GROUP)
def test_commit_offsets_in_group(
    who: Who, group: str, expected: Outcome, creds: Callable[[Who], dict[str, Any]]
) -> None:
    p = who.principal
    # Commit on a topic the principal may read, so that only the group decides; the group's own topic
    # when the group is granted.
    own = sorted(c.topic for c in p.consumes if group_matches(c, group)) or sorted(reads(p)) or TOPICS
    assert commit_offset(creds(who), group, own[0]) == expected


@pytest.mark.parametrize(("who", "transactional_id", "expected"), TRANSACTIONAL)
def test_transactional_id(
    who: Who, transactional_id: str, expected: Outcome, creds: Callable[[Who], dict[str, Any]]
) -> None:
    # When allowed, a whole transaction is committed to one of the principal's transactional topics.
    topics = sorted(f.topic for f in who.principal.produces if f.transactional)
    topic = topics[0] if expected == ALLOWED and topics else None
    assert transactional(creds(who), transactional_id, topic) == expected


@pytest.mark.parametrize(("who", "operation", "expected"), ADMIN)
def test_administration(
    who: Who, operation: str, expected: Outcome, creds: Callable[[Who], dict[str, Any]]
) -> None:
    """Administrative operations on the principal's own topic and group: all denied, except reading the
    topic's configs when the flows say the principal checks them."""
    p = who.principal
    group = sorted(group_id(c) for c in p.consumes)[0] if p.consumes else p.name
    assert admin_operations(_own_topic(p), group)[operation](creds(who)) == expected


@pytest.mark.parametrize("operation", ["describe-acls", "describe-topic-config"])
def test_administration_probes_see_the_super_user_allowed(operation: str, env: Provisioned) -> None:
    # The control for the denials above: the same probe, as the super user, is allowed (so "denied" is not
    # just what a broken probe returns). Only the non-destructive operations: the rest would damage the broker.
    assert admin_operations(TOPICS[0], GROUPS[0])[operation](env.admin_config()) == ALLOWED


@pytest.mark.parametrize(("principal", "topic", "group"), CONSUME_FLOWS)
def test_consume_flow_as_a_group_member(
    principal: Principal, topic: str, group: str, env: Provisioned
) -> None:
    """The way the apps consume: join the group, receive the records, commit, and find the commit."""
    consumer = Consumer(
        env.config(
            principal.name,
            **{"group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest"},
        )
    )
    try:
        consumer.subscribe([topic])
        got = None
        for _ in range(150):
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            error = msg.error()
            assert error is None or error.code() == KafkaError._PARTITION_EOF, error
            if error is None:
                got = msg
                break
        assert got is not None, f"{principal.name} received nothing from {topic} in group {group}"
        consumer.commit(message=got, asynchronous=False)
        partition, offset = got.partition(), got.offset()
        assert partition is not None and offset is not None
        [committed] = consumer.committed([TopicPartition(topic, partition)], timeout=10)
        assert committed.offset == offset + 1
    finally:
        consumer.close()
