"""Apicurio Registry's KafkaSQL storage: the topics, consumer groups and permissions it really uses.

Observed in Apicurio Registry 3.3.3 (its `KafkaSqlConfiguration`, `KafkaSqlRegistryStorage.initialize`
and `KafkaAdminUtil`, and against a broker with ACLs and `allow.everyone.if.no.acl.found=false`):
- three topics, all verified at start with DescribeConfigs (`cleanup.policy` must not be compact;
  journal and snapshots must keep data forever): the journal (read from the beginning, written),
  the snapshots topic (read at every start, written when a snapshot is taken) and the events topic
  (every artifact change is published to it, synchronously, so Write is needed);
- a consumer group per consumer and per start, named `<group-prefix><random UUID>` (the group id cannot
  be set): Read on a *prefixed* group resource; offsets are auto-committed;
- a plain idempotent producer (acks=all), not a transactional one: Write on the topics suffices;
- topics are created only when `apicurio.kafkasql.topic.auto-create` is true (it is set false here: the
  topics come from the catalog, like every topic), so no Create permission.

The catalog names all of it: the registry's principal carries `registryStorage:` (its journal, snapshots and
events topics and its consumer groups' prefix). `storage` finds them; `required_acls` lists what they need; `ungranted` compares it with what the principal's declared flows
grant. `storage_properties` renders the `apicurio.*` settings the Kubernetes component and the local runtime
share.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from headwater.spec import Acl, AclResource, Platform, Principal, RegistryStorage, Tier, acls_for

# Kafka's implied operations: Read, Write, Delete and Alter imply Describe; AlterConfigs implies DescribeConfigs.
_IMPLIES = {
    "Describe": {"Read", "Write", "Delete", "Alter", "All"},
    "DescribeConfigs": {"AlterConfigs", "All"},
}


class StorageError(ValueError):
    """The catalog does not say (or says twice) which principal is the registry and where it keeps its state."""


@dataclass(frozen=True)
class Storage:
    """The registry's principal, its storage topics and its consumer groups' prefix, as the catalog declares."""

    principal: Principal
    topics: RegistryStorage

    @property
    def group_prefix(self) -> str:
        return self.topics.group_prefix


def storage(platform: Platform) -> Storage:
    """The KafkaSQL storage the catalog declares (the one principal with `registryStorage:`)."""
    marked = [p for p in platform.principals if p.registry_storage is not None]
    if len(marked) != 1:
        raise StorageError(
            f"catalog.principals: {len(marked)} principals declare registryStorage "
            f"({', '.join(p.name for p in marked) or 'none'}); allowed: exactly one, the schema registry's, "
            "naming its journal, snapshots and events topics"
        )
    (principal,) = marked
    assert principal.registry_storage is not None
    return Storage(principal, principal.registry_storage)


@dataclass(frozen=True)
class Need:
    """One permission KafkaSQL storage uses, and why."""

    resource: AclResource
    name: str
    pattern: str  # "literal" or "prefix"
    operation: str
    why: str

    def __str__(self) -> str:
        return f"{self.operation} on {self.resource.value} {self.name!r} ({self.pattern})"


def required_acls(topics: RegistryStorage) -> list[Need]:
    group_prefix = topics.group_prefix
    topic = AclResource.TOPIC
    verify = "verified at every start (Admin describeConfigs)"
    return [
        Need(topic, topics.journal, "literal", "Read", "the journal is replayed from the beginning at start"),
        Need(topic, topics.journal, "literal", "Write", "every change is written to the journal"),
        Need(topic, topics.journal, "literal", "DescribeConfigs", verify),
        Need(topic, topics.snapshots, "literal", "Read", "the latest snapshot is looked for at every start"),
        Need(
            topic, topics.snapshots, "literal", "Write", "snapshots (POST /apis/registry/v3/admin/snapshots)"
        ),
        Need(topic, topics.snapshots, "literal", "DescribeConfigs", verify),
        Need(topic, topics.events, "literal", "Write", "every artifact change is published as an event"),
        Need(topic, topics.events, "literal", "DescribeConfigs", verify),
        Need(
            AclResource.GROUP,
            group_prefix,
            "prefix",
            "Read",
            f"each consumer joins its own group {group_prefix}<uuid> (new at every start)",
        ),
    ]


def covers(granted: Iterable[Acl], need: Need) -> bool:
    """Does some granted rule allow `need` (same resource type; literal name, or a prefix of it)?"""
    wanted = {need.operation, *_IMPLIES.get(need.operation, set())}
    for acl in granted:
        if acl.resource != need.resource or not wanted & set(acl.operations):
            continue
        if acl.pattern == "literal" and need.pattern == "literal" and acl.name in (need.name, "*"):
            return True
        if acl.pattern == "prefix" and need.name.startswith(acl.name):
            return True
    return False


def ungranted(platform: Platform) -> list[str]:
    """What KafkaSQL storage needs that the catalog does not provide: missing topics and permissions that the
    registry principal's declared flows do not grant. [] means the registry can start."""
    try:
        store = storage(platform)
    except StorageError as err:
        return [str(err)]
    topics, principal = store.topics, store.principal
    problems: list[str] = []
    names = {t.name for t in platform.topics}
    for role, name, kind in (
        ("journal", topics.journal, "kind journal: delete, kept forever"),
        ("snapshots", topics.snapshots, "kind journal: delete, kept forever"),
        ("events", topics.events, "kind events: delete, any retention"),
    ):
        if name not in names:
            problems.append(
                f"catalog.topics: no topic {name!r}: Apicurio's KafkaSQL storage needs its {role} topic ({kind})"
            )
    granted = acls_for(principal)
    for need in required_acls(topics):
        if not covers(granted, need):
            problems.append(
                f"catalog.principals.{principal.name}: its flows do not grant {need}, which KafkaSQL storage "
                f"needs: {need.why}"
            )
    return problems


def storage_properties(bootstrap: str, client: Mapping[str, str], topics: RegistryStorage) -> dict[str, str]:
    """The `apicurio.*` settings for KafkaSQL storage; `client` are Kafka client settings (security.protocol,
    sasl.*, ssl.*), applied to Apicurio's producer, consumers and admin client alike."""
    props = {
        "apicurio.storage.kind": "kafkasql",
        "apicurio.kafkasql.bootstrap.servers": bootstrap,
        "apicurio.kafkasql.topic": topics.journal,
        "apicurio.kafkasql.snapshots.topic": topics.snapshots,
        "apicurio.events.kafka.topic": topics.events,
        "apicurio.kafkasql.topic.auto-create": "false",
        "apicurio.kafkasql.consumer.group-prefix": topics.group_prefix,
        # Apicurio turns host name verification off unless told otherwise; the broker certificates name
        # their hosts (Strimzi's and the local CA's), so keep it on.
        "apicurio.kafka.common.ssl.endpoint.identification.algorithm": "https",
    }
    for key, value in client.items():
        if key == "bootstrap.servers":
            continue
        props[f"apicurio.kafka.common.{key}"] = value
    return dict(sorted(props.items()))


def registry_problems(platform: Platform) -> list[str]:
    """What makes the stack's registry settings unusable: (key, value, what is allowed) as readable lines."""
    s = platform.registry
    out: list[str] = []

    def bad(key: str, value: object, allowed: str) -> None:
        out.append(f"stack {platform.stack}: {key} = {value!r} is not valid; allowed: {allowed}")

    try:
        principal = storage(platform).principal
    except StorageError as err:
        return [*out, f"stack {platform.stack}: {err}"]
    if principal.authentication != platform.kafka.authentication:
        bad(
            f"catalog.principals.{principal.name}.authentication",
            principal.authentication.value,
            f"{platform.kafka.authentication.value}, the authentication of the cluster's TLS listener",
        )
    if platform.tier == Tier.PROD and s.replicas < 2:
        bad("registry.replicas", s.replicas, "at least 2 in prod (the registry serves every producer)")
    if s.host and not s.tls_secret and not platform.tier.is_development:
        bad("registry.tlsSecret", None, "a TLS secret for registry.host outside local and dev")
    for key, value in (("registry.tlsSecret", s.tls_secret), ("registry.ingressClass", s.ingress_class)):
        if value and not s.host:
            bad(key, value, "only together with registry.host (the Ingress it configures)")
    return out
