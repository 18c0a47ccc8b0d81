"""The platform spec: what exists, per environment. Pure Python, no Pulumi, no Flink.

Every realization reads this model: `components/` turn it into Kubernetes objects, `headwater.local` into
local processes, `policies/` judge what the components render, and the lineage view draws its flows.
Access control is *derived* from the declared flows (`acls_for`), never written a second time.

Instances are built and validated by `headwater.config.load_platform`; the dataclasses here only hold
facts and answer questions about them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal
from urllib.parse import urlparse

TOPIC_NAME = re.compile(r"^[a-z][a-z0-9-]*\.[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)*\.v[1-9][0-9]*$")
TOPIC_NAME_RULE = "<domain>.<dataset>.v<N>: lower-case words joined by dots, ending in a version like .v1"
K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

# Prod durability, checked on the spec by the loader and on the rendered objects by the policy pack.
PROD_MIN_BROKERS = 3
PROD_MIN_REPLICATION = 3
PROD_MIN_ISR = 2
PROD_MIN_ZONES = 3


class Tier(StrEnum):
    """How production-like an environment is; rules get stricter from local to prod."""

    LOCAL = "local"
    DEV = "dev"
    STAGING = "staging"
    PROD = "prod"

    @property
    def is_development(self) -> bool:
        return self in (Tier.LOCAL, Tier.DEV)


class TopicKind(StrEnum):
    """What a topic carries; decides its cleanup policy and who may depend on it."""

    EVENTS = "events"  # immutable facts, time-retained
    STATE = "state"  # latest value per key, compacted
    FEATURE = "feature"  # feature-store feed, compacted
    DEADLETTER = "deadletter"  # rejected records with the reason, time-retained
    OUTBOX = "outbox"  # a service's transactional outbox relay / CDC stream
    JOURNAL = "journal"  # a platform service's own log (registry storage): delete, infinite retention
    AUDIT = "audit"  # an append-only audit trail: delete, infinite retention, no Delete/Alter for anyone

    @property
    def kept_forever(self) -> bool:
        return self in (TopicKind.JOURNAL, TopicKind.AUDIT)

    @property
    def compacted(self) -> bool:
        return self in (TopicKind.STATE, TopicKind.FEATURE)


class Sla(StrEnum):
    """Service level of a topic's data, carried as a label for alerting and ownership."""

    GOLD = "gold"
    SILVER = "silver"
    BRONZE = "bronze"


class Authentication(StrEnum):
    TLS = "tls"
    SCRAM = "scram-sha-512"


class AclResource(StrEnum):
    TOPIC = "topic"
    GROUP = "group"
    TRANSACTIONAL_ID = "transactionalId"
    CLUSTER = "cluster"


AclPattern = Literal["literal", "prefix"]


@dataclass(frozen=True, order=True)
class Acl:
    """One allow rule for a principal: operations on a resource (Strimzi's `simple` authorization)."""

    resource: AclResource
    name: str
    pattern: AclPattern
    operations: tuple[str, ...]


@dataclass(frozen=True)
class Topic:
    name: str
    owner: str
    sla: Sla
    kind: TopicKind
    partitions: int
    retention_ms: int  # -1: keep forever
    key: str  # the field records are keyed (partitioned) by
    description: str
    schema: str | None  # path of the data contract, relative to catalog/
    compatibility: str | None  # registry compatibility override for this topic's subject
    config: tuple[tuple[str, str], ...] = ()  # extra Kafka topic configs, sorted

    @property
    def domain(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def version(self) -> int:
        return int(self.name.rsplit(".v", 1)[1])

    @property
    def compacted(self) -> bool:
        return self.kind.compacted

    @property
    def resource_name(self) -> str:
        """Kubernetes name of the KafkaTopic (dots are legal, but underscores are not)."""
        return self.name.replace("_", "-")


# What a consume flow is promised (`delivery:` in the catalog). Exactly-once output of a transactional writer
# becomes visible when its transaction commits (the writer's checkpoint); an at-least-once reader sees each
# record as soon as it is written, and after a writer's restart may see a record again (an aborted copy and
# its replay): it must act idempotently, keyed by the record's id. Latency against repeats, chosen per flow.
EXACTLY_ONCE = "exactly-once"
AT_LEAST_ONCE = "at-least-once"
DELIVERIES = (EXACTLY_ONCE, AT_LEAST_ONCE)
Delivery = Literal["exactly-once", "at-least-once"]


def isolation_level(delivery: str) -> str:
    """The Kafka consumer's `isolation.level` for a consume flow's delivery: the one place that decides it."""
    if delivery == EXACTLY_ONCE:
        return "read_committed"
    if delivery == AT_LEAST_ONCE:
        return "read_uncommitted"
    raise ValueError(f"delivery {delivery!r} is not one of {', '.join(DELIVERIES)}")


@dataclass(frozen=True)
class Consume:
    topic: str
    group: str
    # "prefix" for clients that name their group `<group><suffix>` themselves (e.g. one group per start).
    group_pattern: AclPattern = "literal"
    delivery: Delivery = "exactly-once"

    @property
    def isolation_level(self) -> str:
        return isolation_level(self.delivery)


@dataclass(frozen=True)
class Produce:
    topic: str
    transactional: bool = False


@dataclass(frozen=True)
class Flow:
    """One edge of the lineage: a principal producing to a topic, or a topic consumed by a principal."""

    principal: str
    topic: str
    direction: Literal["produce", "consume"]
    exactly_once: bool = False  # a transactional producer
    group: str | None = None  # the consumer group of a consume
    delivery: str = EXACTLY_ONCE  # of a consume: what its reader is promised (see `isolation_level`)

    @property
    def source(self) -> str:
        return self.principal if self.direction == "produce" else self.topic

    @property
    def target(self) -> str:
        return self.topic if self.direction == "produce" else self.principal

    @property
    def label(self) -> str:
        if self.direction == "consume":
            return f"group {self.group}" + ("" if self.delivery == EXACTLY_ONCE else f", {self.delivery}")
        return "exactly-once" if self.exactly_once else "produce"


@dataclass(frozen=True)
class Quotas:
    producer_byte_rate: int | None = None
    consumer_byte_rate: int | None = None
    request_percentage: int | None = None


@dataclass(frozen=True)
class RegistryStorage:
    """Where a KafkaSQL schema registry keeps its state (the catalog names it): its topics by role, and the
    prefix of the consumer groups it names itself (`<prefix><uuid>`, a new one at every start)."""

    journal: str
    snapshots: str
    events: str
    group_prefix: str


@dataclass(frozen=True)
class Principal:
    """An application or service that talks to Kafka under its own identity."""

    name: str
    kind: Literal["app", "service", "platform"]
    description: str
    authentication: Authentication
    consumes: tuple[Consume, ...] = ()
    produces: tuple[Produce, ...] = ()
    transactional_id_prefix: str | None = None
    quotas: Quotas = field(default_factory=Quotas)
    # Clients that verify their topics' configs at start (a registry's storage) need DescribeConfigs on them.
    describe_topic_configs: bool = False
    # Consumer-lag exporters read the committed offsets of these groups and the end offsets of their topics
    # (Describe on both, no Read): the loader fills it with every consume flow of the catalog when the
    # principal says `monitorsConsumerGroups: true`, so it is never typed twice.
    monitors: tuple[Consume, ...] = ()
    # The schema registry's principal names the topics of its KafkaSQL storage (`registryStorage:`).
    registry_storage: RegistryStorage | None = None
    # Topics whose configs the client checks at start, beyond `describe_topic_configs` (a Connect worker checks
    # that its internal topics are compacted, and nothing else).
    verifies_configs_of: tuple[str, ...] = ()
    # Transactional ids the client names without the principal's prefix (Connect's leader writes its config topic
    # as `connect-cluster-<group>`): each granted literally.
    transactional_ids: tuple[str, ...] = ()

    @property
    def transactional(self) -> bool:
        return any(p.transactional for p in self.produces)


def acls_for(principal: Principal) -> tuple[Acl, ...]:
    """The least privilege that the principal's declared flows need, and nothing more.

    consume: Describe+Read on the topic and Read on its consumer group (literal, or a prefix when the client
    names its groups itself); produce: Describe+Write on the topic; a transactional producer also gets
    Describe+Write on its transactional-id prefix (no IdempotentWrite on the cluster: since Kafka 3.0 an
    idempotent or transactional producer needs only Write on its topics and transactional id); a principal that
    verifies its topics' configs gets DescribeConfigs on the topics of its flows; a lag exporter gets
    Describe on every group it monitors and on that group's topic. Rules on the same resource
    are merged, and the result is sorted for stable output.
    """
    ops: dict[tuple[AclResource, str, AclPattern], set[str]] = {}

    def grant(resource: AclResource, name: str, pattern: AclPattern, *operations: str) -> None:
        ops.setdefault((resource, name, pattern), set()).update(operations)

    for c in principal.consumes:
        grant(AclResource.TOPIC, c.topic, "literal", "Describe", "Read")
        grant(AclResource.GROUP, c.group, c.group_pattern, "Read")
    for p in principal.produces:
        grant(AclResource.TOPIC, p.topic, "literal", "Describe", "Write")
    for m in principal.monitors:
        grant(AclResource.TOPIC, m.topic, "literal", "Describe")
        grant(AclResource.GROUP, m.group, m.group_pattern, "Describe")
    if principal.describe_topic_configs:
        for topic in {c.topic for c in principal.consumes} | {p.topic for p in principal.produces}:
            grant(AclResource.TOPIC, topic, "literal", "DescribeConfigs")
    for topic in principal.verifies_configs_of:
        grant(AclResource.TOPIC, topic, "literal", "DescribeConfigs")
    for tid in principal.transactional_ids:
        grant(AclResource.TRANSACTIONAL_ID, tid, "literal", "Describe", "Write")
    if principal.transactional:
        assert principal.transactional_id_prefix, "validated by the loader"
        grant(AclResource.TRANSACTIONAL_ID, principal.transactional_id_prefix, "prefix", "Describe", "Write")
    return tuple(sorted(Acl(r, n, p, tuple(sorted(o))) for (r, n, p), o in ops.items()))


@dataclass(frozen=True)
class Resources:
    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str

    def k8s(self) -> dict[str, dict[str, str]]:
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }


@dataclass(frozen=True)
class Storage:
    size: str
    volumes: int
    storage_class: str | None
    delete_claim: bool


# Zone names that only stand in for real ones: a required node affinity on them keeps every pod Pending.
PLACEHOLDER_ZONE = re.compile(
    r"^(zone|rack|az|dc)[-_]?[a-z0-9]$|example|changeme|placeholder|todo", re.IGNORECASE
)
LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
# Strimzi's brokerCapacity network quantity: an integer, a byte unit, per second (1.2.0 CRD pattern).
NETWORK_RATE = re.compile(r"^[0-9]+([KMG]i?)?B/s$")


@dataclass(frozen=True)
class CruiseControl:
    """Cruise Control: its pod's resources and the brokers' capacities that its goals balance against.

    Strimzi drops the network goals (capacity and distribution) when `inbound_network` / `outbound_network`
    are not set, and derives the CPU capacity from the brokers' resource requests and disk from their storage.
    """

    resources: Resources
    inbound_network: str  # per broker, e.g. 125MiB/s
    outbound_network: str

    def problems(self) -> list[tuple[str, object, str]]:
        out: list[tuple[str, object, str]] = []
        for key, value in (
            ("inboundNetwork", self.inbound_network),
            ("outboundNetwork", self.outbound_network),
        ):
            if not NETWORK_RATE.match(value) or not int(re.sub(r"\D.*", "", value) or "0"):
                out.append(
                    (
                        f"cruiseControl.{key}",
                        value,
                        "a broker's network capacity per second, above 0, like 125MiB/s, 500MB/s or 1GiB/s",
                    )
                )
        return out


@dataclass(frozen=True)
class KafkaSettings:
    """Cluster sizing and security for one environment."""

    cluster_name: str
    brokers: int
    controllers: int  # 0: brokers also act as KRaft controllers (combined nodes)
    replication_factor: int
    min_insync_replicas: int
    authentication: Authentication
    plaintext_listener: bool
    racks: tuple[str, ...]  # the cluster's real zone names (node label values); empty: no rack awareness
    rack_topology_key: str
    broker_storage: Storage
    controller_storage: Storage
    broker_resources: Resources
    controller_resources: Resources
    super_users: tuple[str, ...]
    transaction_max_timeout_ms: int
    message_max_bytes: int
    exporter: bool
    cruise_control: CruiseControl | None  # None: no Cruise Control

    @property
    def combined(self) -> bool:
        return self.controllers == 0

    def problems(self, tier: Tier) -> list[tuple[str, object, str]]:
        """(key, value, what is allowed) for each rule these settings break in an environment of `tier`."""
        out: list[tuple[str, object, str]] = []
        if self.controllers in (1, 2) or (self.controllers and self.controllers % 2 == 0):
            out.append(
                (
                    "controllers",
                    self.controllers,
                    "0 (combined broker+controller nodes), 3 or 5 (an odd KRaft quorum)",
                )
            )
        if self.replication_factor > self.brokers:
            out.append(
                ("replicationFactor", self.replication_factor, f"at most kafka.brokers ({self.brokers})")
            )
        if self.min_insync_replicas > self.replication_factor:
            out.append(
                (
                    "minInsyncReplicas",
                    self.min_insync_replicas,
                    f"at most kafka.replicationFactor ({self.replication_factor})",
                )
            )
        if tier == Tier.PROD:
            if self.brokers < PROD_MIN_BROKERS:
                out.append(("brokers", self.brokers, f"at least {PROD_MIN_BROKERS} in prod"))
            if self.replication_factor < PROD_MIN_REPLICATION:
                out.append(
                    ("replicationFactor", self.replication_factor, f"at least {PROD_MIN_REPLICATION} in prod")
                )
            if self.min_insync_replicas < PROD_MIN_ISR:
                out.append(
                    ("minInsyncReplicas", self.min_insync_replicas, f"at least {PROD_MIN_ISR} in prod")
                )
            if self.combined:
                out.append(("controllers", 0, "3 or 5 dedicated controllers in prod"))
            if len(self.racks) < PROD_MIN_ZONES:
                out.append(
                    (
                        "racks",
                        list(self.racks),
                        f"at least {PROD_MIN_ZONES} zones in prod, so each replica is in its own zone",
                    )
                )
        for zone in self.racks:
            if not LABEL_VALUE.match(zone):
                out.append(
                    ("racks", zone, "a zone name as the nodes' zone label carries it, like us-east-1a")
                )
            elif PLACEHOLDER_ZONE.search(zone):
                out.append(
                    (
                        "racks",
                        zone,
                        f"the cluster's real zone names (the nodes' {self.rack_topology_key} label values, "
                        "like us-east-1a or europe-west1-b), not a placeholder",
                    )
                )
        if len(set(self.racks)) != len(self.racks):
            out.append(("racks", list(self.racks), "each zone once"))
        if self.cruise_control is not None:
            out += self.cruise_control.problems()
        if tier in (Tier.STAGING, Tier.PROD) and self.replication_factor <= self.min_insync_replicas:
            out.append(
                (
                    "replicationFactor",
                    self.replication_factor,
                    f"greater than kafka.minInsyncReplicas ({self.min_insync_replicas}), so one broker can be down",
                )
            )
        if self.plaintext_listener and not tier.is_development:
            out.append(("plaintextListener", True, "false outside local and dev: every listener uses TLS"))
        return out


@dataclass(frozen=True)
class SecretValue:
    """A credential from the stack's secret configuration: never printed, logged or written by a renderer's repr."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "SecretValue(***)"

    __str__ = __repr__


@dataclass(frozen=True)
class S3Credentials:
    """Access keys the platform stores in `FlinkSettings.s3_credentials_secret` (from secret config)."""

    access_key: SecretValue
    secret_key: SecretValue


# URI schemes of S3 state (Flink's S3 filesystem plugins answer to all three).
S3_SCHEMES = ("s3", "s3a", "s3p")


@dataclass(frozen=True)
class FlinkSettings:
    """How the environment runs Flink apps: sizing, state and checkpoint storage, images."""

    image_registry: str
    parallelism: int
    checkpoint_interval_ms: int
    state_uri: str  # base URI for checkpoints, savepoints and HA (s3://bucket/prefix, file:///...)
    s3_endpoint: str | None  # S3-compatible endpoint (in-cluster MinIO in dev)
    s3_credentials_secret: str | None  # secret with access keys; None: workload identity
    deploy_minio: bool
    ha: bool
    savepoint_interval: str | None
    autoscaler: bool
    jobmanager: Resources
    taskmanager: Resources
    task_slots: int
    images: tuple[tuple[str, str], ...]  # app name -> tag or digest ("sha256:...")
    # Annotations on each app's ServiceAccount, e.g. the cloud role that workload identity maps it to
    # (eks.amazonaws.com/role-arn, iam.gke.io/gcp-service-account): how apps reach S3 without a key secret.
    service_account_annotations: tuple[tuple[str, str], ...] = ()
    # Per-environment app options (e.g. shorter feature windows locally), after the catalog's own `args`.
    app_args: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    # When set, the platform creates `s3_credentials_secret` from these (secret config); else it must exist.
    s3_credentials: S3Credentials | None = None

    @property
    def state_scheme(self) -> str:
        return urlparse(self.state_uri).scheme

    @property
    def is_s3(self) -> bool:
        return self.state_scheme in S3_SCHEMES

    @property
    def bucket(self) -> str:
        """The bucket of an S3 state URI (`s3://bucket/prefix` -> `bucket`)."""
        return urlparse(self.state_uri).netloc

    def storage_problems(self) -> list[tuple[str, object, str]]:
        """(key, value, allowed) for each thing wrong with where state lives; the loader reports them."""
        out: list[tuple[str, object, str]] = []
        if self.state_scheme not in (*S3_SCHEMES, "file"):
            out.append(("flink.stateUri", self.state_uri, "s3://bucket[/prefix] or file:///path"))
        elif self.is_s3 and not self.bucket:
            out.append(
                ("flink.stateUri", self.state_uri, "an S3 URI that names its bucket (s3://bucket/...)")
            )
        if self.deploy_minio:
            if not self.is_s3:
                out.append(
                    ("flink.deployMinio", True, "only with an s3:// flink.stateUri (the MinIO bucket)")
                )
            if not self.s3_credentials_secret:
                out.append(
                    (
                        "flink.deployMinio",
                        True,
                        "only with flink.s3CredentialsSecret (MinIO's root credentials)",
                    )
                )
            if not self.s3_endpoint:
                out.append(
                    (
                        "flink.deployMinio",
                        True,
                        "only with flink.s3Endpoint (http://minio.<namespace>.svc:9000)",
                    )
                )
        return out

    def image_ref(self, app: str) -> str:
        ref = dict(self.images)[app]
        sep = "@" if ref.startswith("sha256:") else ":"
        repo = f"{self.image_registry}/{app}" if self.image_registry else app
        return f"{repo}{sep}{ref}"


@dataclass(frozen=True)
class App:
    """A packaged PyFlink application; its Kafka identity is the principal of the same name."""

    name: str
    module: str
    stateful: bool
    description: str
    args: tuple[tuple[str, str], ...]  # app arguments (topic roles etc.), in order


@dataclass(frozen=True)
class RegistrySettings:
    replicas: int
    resources: Resources
    host: str | None  # ingress host; None: cluster-internal only
    tls_secret: str | None
    ingress_class: str | None
    ingress_namespace: str = (
        "ingress-nginx"  # where the ingress controller runs (allowed in by NetworkPolicy)
    )


@dataclass(frozen=True)
class FeatureStoreSettings:
    """The online feature store on Kubernetes: Redis (password, TLS, a persistent volume), the materializer
    and the feature server, all from the image `<flink.imageRegistry>/feature-store:<image>`."""

    image: str | None  # tag or digest of the feature store's image; None: no feature topic in the catalog
    redis_storage: Storage
    redis_resources: Resources
    redis_password_secret: str  # a Secret with key `password`, created before `pulumi up`
    redis_tls_secret: (
        str | None
    )  # a Secret with tls.crt, tls.key and ca.crt; None: Redis without TLS (local, dev)
    materializer_resources: Resources
    server_replicas: int
    server_resources: Resources
    server_client_namespaces: tuple[str, ...] = ()  # namespaces (besides the platform's) whose pods may read


# Debezium's PostgreSQL `database.sslmode` values, weakest first; `disable` sends credentials and rows in clear.
SSL_MODES = ("disable", "require", "verify-ca", "verify-full")


SHA512_HEX = re.compile(r"^[0-9a-f]{128}$")


@dataclass(frozen=True)
class PluginArtifact:
    """Where the platform team publishes one of our own Connect plugins: a Maven-layout repository (the jar is
    `<repository>/<group path>/<artifact>/<version>/<artifact>-<version>.jar`) and the jar's SHA-512, which the
    image build checks."""

    repository: str
    sha512: str


@dataclass(frozen=True)
class ConnectCluster:
    """A Kafka Connect cluster capturing the sources' outboxes; its name is its principal and its group id.

    Its three internal topics are catalog topics like any other (compacted `state` topics): the loader derives
    the principal's flows from them and from the routes of the sources it captures, so its ACLs are never typed.
    """

    name: str
    description: str
    config_topic: str
    offset_topic: str
    status_topic: str
    replicas: int = 1
    resources: Resources | None = None
    image: str | None = None  # where the operator pushes the image it builds (registry/repo:tag); None: local
    # The contract-check transform's published jar (stack `connect.<name>.contractCheck`); the loader requires it
    # of a cluster that captures a source. Locally the worker loads the jar built from connect/contract-check.
    contract_check: PluginArtifact | None = None

    @property
    def group(self) -> str:
        return self.name

    @property
    def internal_topics(self) -> tuple[str, str, str]:
        return (self.config_topic, self.offset_topic, self.status_topic)

    @property
    def transactional_id_prefix(self) -> str:
        """The tasks' transactional ids under exactly-once: `<group>-<connector>-<task>`."""
        return f"{self.group}-"

    @property
    def leader_transactional_id(self) -> str:
        """The transactional id the leader writes the config topic with (Kafka Connect's own naming)."""
        return f"connect-cluster-{self.group}"


@dataclass(frozen=True)
class OutboxRoute:
    """Outbox rows of one aggregate type go to one topic (Debezium's outbox event router)."""

    aggregate_type: str
    topic: str


SLOT_PREFIX = "headwater_"  # every replication slot the platform creates starts with it


@dataclass(frozen=True)
class DatabaseEndpoint:
    """Where a source database is reached in one environment, and how (stack settings)."""

    host: str
    port: int
    ssl_mode: str
    credentials_secret: str  # a Secret with keys `username` and `password` (the replication login)
    # How much WAL the source's replication slot may hold back before an alert (a Kubernetes quantity).
    slot_wal_budget: str = "1Gi"


@dataclass(frozen=True)
class Source:
    """A service's PostgreSQL database whose transactional outbox is captured by CDC into catalog topics."""

    name: str  # a DNS label: the KafkaConnector, the replication slot and the publication derive from it
    description: str
    owner: str  # the team that owns the service, its database and the routed topics
    service: str  # the service writing business rows and outbox rows in one transaction
    connect: str  # the ConnectCluster capturing it
    database: str
    outbox_table: str  # schema.table
    routes: tuple[OutboxRoute, ...]
    dead_letter_topic: str  # rows the router cannot route, with the reason in a header
    heartbeat_topic: str  # Debezium's heartbeats, which let the slot advance while the outbox is quiet
    endpoint: DatabaseEndpoint

    @property
    def slot_name(self) -> str:
        """The logical replication slot (PostgreSQL names: lower-case letters, digits, underscores)."""
        return SLOT_PREFIX + self.name.replace("-", "_")

    @property
    def publication(self) -> str:
        return self.slot_name

    @property
    def topic_prefix(self) -> str:
        """Debezium's `topic.prefix`: names the connector's offsets and its unrouted change topics."""
        return self.name

    @property
    def connector_name(self) -> str:
        return f"{self.name}-outbox"

    def route(self, aggregate_type: str) -> str | None:
        return next((r.topic for r in self.routes if r.aggregate_type == aggregate_type), None)


def connect_principal(
    cluster: ConnectCluster, sources: tuple[Source, ...], authentication: Authentication
) -> Principal:
    """The Connect cluster's principal, derived from its internal topics and the routes of its sources.

    Workers join the group and read and write the internal topics (the leader writes the config topic in a
    transaction under `connect-cluster-<group>`); tasks write the routed topics in transactions under
    `<group>-<connector>-<task>` (exactly-once source support), and each source's dead-letter and heartbeat
    topics in the same transactions.
    """
    mine = [s for s in sources if s.connect == cluster.name]
    routed = sorted(
        {r.topic for s in mine for r in s.routes}
        | {s.dead_letter_topic for s in mine}
        | {s.heartbeat_topic for s in mine}
    )
    return Principal(
        name=cluster.name,
        kind="platform",
        description=cluster.description,
        authentication=authentication,
        consumes=tuple(Consume(t, cluster.group) for t in cluster.internal_topics),
        produces=tuple(Produce(t, transactional=True) for t in (*cluster.internal_topics, *routed)),
        transactional_id_prefix=cluster.transactional_id_prefix,
        verifies_configs_of=cluster.internal_topics,
        transactional_ids=(cluster.leader_transactional_id,),
    )


EXPIRY_ACTIONS = ("reject", "escalate")


@dataclass(frozen=True)
class RiskPolicy:
    """How risky one action type is: when the gate approves it by rule, and how long a human may take.

    Approved by rule only if not `always_human` and every declared condition holds: `max_amount` (an action
    without an amount fails it), `targets`, `scopes` (empty: any). Else it waits for an approver until
    `approval_sla_ms`; then `on_expiry`: "reject", or "escalate" (to `escalate_to`, for `escalation_sla_ms`
    more) and then reject.
    """

    action_type: str
    description: str
    always_human: bool
    max_amount: float | None
    targets: tuple[str, ...]
    scopes: tuple[str, ...]
    approval_sla_ms: int
    on_expiry: Literal["reject", "escalate"]
    escalate_to: str | None = None
    escalation_sla_ms: int | None = None


@dataclass(frozen=True)
class GateAgent:
    """An agent on the action path: it writes only its proposed topic and reads only its approved topic."""

    principal: str
    proposed_topic: str
    approved_topic: str
    action_types: tuple[str, ...]

    @property
    def group(self) -> str:
        return f"{self.principal}-approved"


@dataclass(frozen=True)
class ActionGate:
    """The action path (catalog `actionGate`): the gate's principal and topics by role, the agents, approvers
    and auditors, and a risk policy per action type. Every flow on its topics is derived from this."""

    principal: str
    decisions_topic: str
    audit_topic: str
    state_topic: str
    agents: tuple[GateAgent, ...]
    approvers: tuple[str, ...]
    auditors: tuple[str, ...]
    policies: tuple[RiskPolicy, ...]

    @property
    def group(self) -> str:
        return self.principal

    @property
    def transactional_id(self) -> str:
        """The gate runs as one instance with this id: a restarted gate fences the one it replaces."""
        return f"{self.principal}-0"

    @property
    def topics(self) -> frozenset[str]:
        return frozenset(
            {self.decisions_topic, self.audit_topic, self.state_topic}
            | {a.proposed_topic for a in self.agents}
            | {a.approved_topic for a in self.agents}
        )

    def policy(self, action_type: str) -> RiskPolicy | None:
        return next((p for p in self.policies if p.action_type == action_type), None)

    def flows(self) -> dict[str, tuple[tuple[Consume, ...], tuple[Produce, ...]]]:
        """principal -> (consumes, produces) on the action path's topics: the only flows that touch them."""
        out: dict[str, tuple[tuple[Consume, ...], tuple[Produce, ...]]] = {}

        def add(name: str, consumes: tuple[Consume, ...] = (), produces: tuple[Produce, ...] = ()) -> None:
            c, p = out.get(name, ((), ()))
            out[name] = (c + consumes, p + produces)

        gate_reads = (*(a.proposed_topic for a in self.agents), self.decisions_topic, self.state_topic)
        gate_writes = (*(a.approved_topic for a in self.agents), self.audit_topic, self.state_topic)
        add(
            self.principal,
            tuple(Consume(t, self.group) for t in gate_reads),
            tuple(Produce(t, transactional=True) for t in gate_writes),
        )
        for a in self.agents:
            add(a.principal, (Consume(a.approved_topic, a.group),), (Produce(a.proposed_topic),))
        for name in self.approvers:
            add(name, (Consume(self.audit_topic, name),), (Produce(self.decisions_topic),))
        for name in self.auditors:
            add(name, (Consume(self.audit_topic, name), Consume(self.decisions_topic, f"{name}-decisions")))
        return out


@dataclass(frozen=True)
class SpanExport:
    """Where the action path's pods send their spans (stack `headwater:actionGate.tracing`): an OpenTelemetry
    collector's OTLP/HTTP endpoint, and the collector's pods, which their NetworkPolicy lets them reach."""

    otlp_endpoint: str  # scheme://host:port, OTLP over HTTP (the exporter adds /v1/traces)
    collector_namespace: str
    collector_labels: tuple[tuple[str, str], ...]  # the collector pods' labels
    ca_secret: str | None = None  # a Secret whose `ca.crt` verifies an https endpoint (else the image's CAs)

    @property
    def port(self) -> int:
        return int(self.otlp_endpoint.rsplit(":", 1)[1])


@dataclass(frozen=True)
class GateSettings:
    """How an environment runs the approval gate (stack `headwater:actionGate`): its image and size, and
    where its and the approvers' page's spans go (none: kept in the pods)."""

    image_registry: str
    image: str  # a tag or a digest (sha256:...)
    resources: Resources
    tracing: SpanExport | None = None

    def image_ref(self, name: str) -> str:
        sep = "@" if self.image.startswith("sha256:") else ":"
        repo = f"{self.image_registry}/{name}" if self.image_registry else name
        return f"{repo}{sep}{self.image}"


@dataclass(frozen=True)
class Platform:
    """Everything one stack creates."""

    stack: str
    tier: Tier
    namespace: str
    kafka: KafkaSettings
    topics: tuple[Topic, ...]
    principals: tuple[Principal, ...]
    apps: tuple[App, ...]
    flink: FlinkSettings
    registry: RegistrySettings
    watched_namespaces: tuple[str, ...] = ()
    allow_load_balancer: bool = False
    operator_charts: str | None = None
    """Folder holding the operators' charts as `<chart>-<version>/`; None: their upstream repositories."""
    catalog_dir: str | None = None
    """Folder of the catalog this spec was read from (its contracts live under `schemas/`); None: the project's."""
    connect_clusters: tuple[ConnectCluster, ...] = ()
    sources: tuple[Source, ...] = ()
    feature_store: FeatureStoreSettings | None = None
    """None: a spec built without the loader (tests); the loader always sets it."""
    action_gate: ActionGate | None = None
    gate_settings: GateSettings | None = None

    def connect_cluster(self, name: str) -> ConnectCluster:
        for c in self.connect_clusters:
            if c.name == name:
                return c
        raise KeyError(name)

    def topic(self, name: str) -> Topic:
        for t in self.topics:
            if t.name == name:
                return t
        raise KeyError(name)

    def principal(self, name: str) -> Principal:
        for p in self.principals:
            if p.name == name:
                return p
        raise KeyError(name)

    def app_args(self, app: App) -> tuple[tuple[str, str], ...]:
        """The app's options: the catalog's `args`, then this environment's (which win on the same key)."""
        merged = dict(app.args)
        merged.update(dict(dict(self.flink.app_args).get(app.name, ())))
        return tuple(merged.items())

    def acls(self) -> dict[str, tuple[Acl, ...]]:
        return {p.name: acls_for(p) for p in self.principals}

    def topic_config(self, topic: Topic) -> dict[str, str]:
        """The Kafka configs of a topic in this environment (cleanup, retention, ISR, extras)."""
        cfg: dict[str, str] = {
            "cleanup.policy": "compact" if topic.compacted else "delete",
            "min.insync.replicas": str(self.kafka.min_insync_replicas),
        }
        if topic.compacted:
            cfg["min.compaction.lag.ms"] = "60000"
        else:
            cfg["retention.ms"] = str(topic.retention_ms)
        cfg.update(dict(topic.config))
        return dict(sorted(cfg.items()))

    def flows(self) -> tuple[Flow, ...]:
        """Every declared flow, principal by principal (its produces, then its consumes): the one derivation
        that the lineage text, the lineage graph and its Mermaid drawing are views of."""
        out: list[Flow] = []
        for p in self.principals:
            out += [Flow(p.name, f.topic, "produce", exactly_once=f.transactional) for f in p.produces]
            out += [Flow(p.name, c.topic, "consume", group=c.group, delivery=c.delivery) for c in p.consumes]
        return tuple(out)

    def lineage(self) -> list[tuple[str, str, str]]:
        """Edges (source, target, label) from producers through topics to consumers."""
        return sorted((f.source, f.target, f.label) for f in self.flows())


@dataclass(frozen=True)
class AppFlows:
    """The Kafka side of one app, read from its principal's declared flows."""

    sources: tuple[str, ...]
    group_id: str
    isolation_level: str  # of its source, from the consume flow's delivery
    sinks: tuple[str, ...]
    dead_letters: tuple[str, ...]
    transactional_id_prefix: str | None


def app_flows(platform: Platform, app: App) -> AppFlows:
    """Sources, sinks and dead-letter topics of `app`, from the principal of the same name.

    Raises ValueError for flows a Flink app cannot run (the config loader reports it for every app first).
    """
    principal = platform.principal(app.name)
    groups = sorted({c.group for c in principal.consumes})
    if not principal.consumes:
        raise ValueError(f"app {app.name!r}: its principal consumes no topic; a Flink app needs a source")
    if len(groups) != 1:
        raise ValueError(
            f"app {app.name!r}: its consumed topics use several groups {groups}; a Flink app has one"
        )
    kinds = {t.name: t.kind for t in platform.topics}
    sinks = tuple(p.topic for p in principal.produces if kinds[p.topic] != TopicKind.DEADLETTER)
    dead = tuple(p.topic for p in principal.produces if kinds[p.topic] == TopicKind.DEADLETTER)
    # The apps take one --source-topic, one --sink-topic and at most one --dead-letter-topic.
    for role, topics, most in (
        ("consumed", principal.consumes, 1),
        ("sink", sinks, 1),
        ("dead-letter", dead, 1),
    ):
        if len(topics) > most:
            raise ValueError(f"app {app.name!r}: {len(topics)} {role} topics; a Flink app here takes one")
    if not sinks:
        raise ValueError(f"app {app.name!r}: its principal produces no (non-dead-letter) topic to sink into")
    return AppFlows(
        sources=tuple(c.topic for c in principal.consumes),
        group_id=groups[0],
        isolation_level=principal.consumes[0].isolation_level,
        sinks=sinks,
        dead_letters=dead,
        transactional_id_prefix=principal.transactional_id_prefix if principal.transactional else None,
    )
