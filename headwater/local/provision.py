"""Create on the local broker what Strimzi's topic and user operators create from the custom resources.

From the platform spec: every topic with its partitions and configs (`platform.topic_config`), a credential
per principal (a SCRAM-SHA-512 password, or a client certificate `CN=<name>` from the local CA) and exactly
the ACLs of `acls_for(principal)`. Like the operators it reconciles rather than appends: a second run
changes nothing, ACLs a principal should no longer have are removed, and a principal dropped from the spec
loses its credential and ACLs. Topics are never deleted (the topic operator's default of keeping data), and
partitions are only ever added.

For each principal it writes the client settings the apps use, owner-only, under `<state>/secrets/`:
`<name>.properties` (Java clients, like the `sasl.jaas.config` of Strimzi's user secret) and
`<name>.flink.properties` (the same for `flink-sql-connector-kafka`, whose Kafka classes are relocated, so
its JAAS login module has another class name). `client_config()` gives the librdkafka equivalent.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from headwater import kafka_config
from headwater.kafka_config import SCRAM_MECHANISM, format_properties
from headwater.local.certs import write_private
from headwater.local.kafka import LocalKafka
from headwater.local.process import Progress, stderr_progress
from headwater.spec import Acl, AclResource, Authentication, Principal, Quotas, acls_for

SCRAM_ITERATIONS = 4096
TIMEOUT = 30.0
FLINK_SHADED_PREFIX = "org.apache.flink.kafka.shaded."
_MANAGED_FILE = "provisioned.json"

T = TypeVar("T")


class ProvisionError(RuntimeError):
    """The broker refused part of the provisioning; the message names the object and the broker's answer."""


@dataclass
class ProvisionReport:
    """What a provisioning run changed, one readable line per change (empty: already as the spec says)."""

    changes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def add(self, kind: str, line: str) -> None:
        self.counts[kind] += 1
        self.changes.append(line)

    def summary(self) -> str:
        if not self.changed:
            return "everything already matches the spec"
        return ", ".join(f"{kind}: {n}" for kind, n in sorted(self.counts.items()))


# ---- client settings ---------------------------------------------------------------------------------------


def _principal(kafka: LocalKafka, principal: Principal | str) -> Principal:
    return principal if isinstance(principal, Principal) else kafka.platform.principal(principal)


def client_cert_stem(kafka: LocalKafka, name: str) -> Path:
    return kafka.secrets_dir / name


def client_config(kafka: LocalKafka, principal: Principal | str) -> dict[str, Any]:
    """librdkafka (confluent-kafka) settings for `principal`, for Python producers, consumers and tests."""
    p = _principal(kafka, principal)
    common = {"ssl.ca.location": str(kafka.ca_file), "ssl.endpoint.identification.algorithm": "https"}
    if p.authentication == Authentication.SCRAM:
        return {
            "bootstrap.servers": kafka.bootstrap_sasl,
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": SCRAM_MECHANISM,
            "sasl.username": p.name,
            "sasl.password": kafka.password(p.name, create=False),
            **common,
        }
    stem = client_cert_stem(kafka, p.name)
    return {
        "bootstrap.servers": kafka.bootstrap_mtls,
        "security.protocol": "SSL",
        "ssl.certificate.location": f"{stem}.crt",
        "ssl.key.location": f"{stem}.key",
        **common,
    }


def bootstrap_servers(kafka: LocalKafka, principal: Principal | str) -> str:
    """The listener a principal connects to: SCRAM principals on SASL_SSL, tls principals on mTLS."""
    p = _principal(kafka, principal)
    return kafka.bootstrap_sasl if p.authentication == Authentication.SCRAM else kafka.bootstrap_mtls


def java_client_properties(
    kafka: LocalKafka, principal: Principal | str, *, shaded_prefix: str = ""
) -> dict[str, str]:
    """Java Kafka client security settings for `principal` (like a Strimzi user secret: no bootstrap servers,
    which the app gets from its own options; see `bootstrap_servers`). `shaded_prefix` relocates the JAAS
    login module class for a client whose Kafka classes are shaded."""
    p = _principal(kafka, principal)
    jaas = None
    if p.authentication == Authentication.SCRAM:
        password = kafka.password(p.name, create=False)
        jaas = kafka_config.scram_jaas_config(p.name, password, shaded_prefix=shaded_prefix)
    return kafka_config.java_client_properties(
        p.authentication,
        truststore=kafka_config.KeyStore("PEM", str(kafka.ca_file)),
        keystore=kafka_config.KeyStore("PEM", f"{client_cert_stem(kafka, p.name)}.keystore.pem"),
        jaas_config=jaas,
    )


def properties_file(kafka: LocalKafka, principal: Principal | str, *, flink: bool = False) -> Path:
    """The client properties file of a principal: what a Flink app reads via `--kafka-properties-file`."""
    name = principal.name if isinstance(principal, Principal) else principal
    return kafka.secrets_dir / (f"{name}.flink.properties" if flink else f"{name}.properties")


# ---- provisioning -----------------------------------------------------------------------------------------


def _wait(futures: dict[Any, Any], what: Callable[[Any], str]) -> dict[Any, Any]:
    results: dict[Any, Any] = {}
    errors = []
    for key, future in futures.items():
        try:
            results[key] = future.result(timeout=TIMEOUT)
        except KafkaException as exc:
            errors.append(f"{what(key)}: {exc.args[0]}")
    if errors:
        raise ProvisionError("the broker refused:\n  " + "\n  ".join(errors))
    return results


def _one(future: Any, what: str) -> Any:
    try:
        return future.result(timeout=TIMEOUT)
    except KafkaException as exc:
        raise ProvisionError(f"{what}: {exc.args[0]}") from exc


_RESOURCE = {
    AclResource.TOPIC: ResourceType.TOPIC,
    AclResource.GROUP: ResourceType.GROUP,
    AclResource.TRANSACTIONAL_ID: ResourceType.TRANSACTIONAL_ID,
    AclResource.CLUSTER: ResourceType.BROKER,  # librdkafka's name for Kafka's CLUSTER resource type (4)
}
_PATTERN = {"literal": ResourcePatternType.LITERAL, "prefix": ResourcePatternType.PREFIXED}


def acl_operation(name: str) -> AclOperation:
    """'IdempotentWrite' -> AclOperation.IDEMPOTENT_WRITE (the spec spells operations like Strimzi does)."""
    return AclOperation[re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()]


def acl_bindings(principal: Principal, acls: Iterable[Acl] | None = None) -> set[AclBinding]:
    """The Kafka ACL bindings of a principal: one ALLOW binding per operation of each derived rule."""
    return {
        AclBinding(
            _RESOURCE[acl.resource],
            acl.name,
            _PATTERN[acl.pattern],
            f"User:{principal.name}",
            "*",
            acl_operation(op),
            AclPermissionType.ALLOW,
        )
        for acl in (acls_for(principal) if acls is None else acls)
        for op in acl.operations
    }


def _describe(b: AclBinding) -> str:
    pattern = "prefix " if b.resource_pattern_type == ResourcePatternType.PREFIXED else ""
    kind = "cluster" if b.restype == ResourceType.BROKER else _enum_name(b.restype).lower()
    return f"{b.principal} {_enum_name(b.permission_type)} {_enum_name(b.operation)} on {kind} {pattern}{b.name!r}"


def _enum_name(value: object) -> str:
    return str(getattr(value, "name", value))


def _exact_filter(b: AclBinding) -> AclBindingFilter:
    return AclBindingFilter(
        b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type
    )


def provision(kafka: LocalKafka, *, progress: Progress | None = None) -> ProvisionReport:
    """Make the running broker match the spec of `kafka.platform`; return what changed."""
    say = progress or stderr_progress("provision")
    report = ProvisionReport()
    admin = kafka.admin()
    _topics(kafka, admin, report)
    previously = _read_managed(kafka)
    current = {p.name for p in kafka.platform.principals}
    _credentials(kafka, admin, report, stale=previously - current)
    _acls(kafka, admin, report, managed=previously | current)
    for p in kafka.platform.principals:
        _write_client_files(kafka, p, report)
    for name in sorted(previously - current):
        for path in kafka.secrets_dir.glob(f"{name}.*"):
            path.unlink()
        report.add("principals removed", f"removed the local client files of {name} (no longer in the spec)")
    write_private(kafka.secrets_dir / _MANAGED_FILE, (json.dumps(sorted(current), indent=2) + "\n").encode())
    with_quotas = [p.name for p in kafka.platform.principals if p.quotas != Quotas()]
    if with_quotas:
        report.warnings.append(
            f"quotas of {', '.join(with_quotas)} are not applied locally (confluent-kafka has no client-quota API)"
        )
    for line in report.warnings:
        say(f"warning: {line}")
    if len(report.changes) <= 12:  # a few changes are worth reading; a first run is summarized
        for line in report.changes:
            say(line)
    say(f"provisioned {len(kafka.platform.topics)} topics and {len(current)} principals: {report.summary()}")
    return report


def _read_managed(kafka: LocalKafka) -> set[str]:
    try:
        return set(json.loads((kafka.secrets_dir / _MANAGED_FILE).read_text()))
    except (OSError, ValueError):
        return set()


def _topics(kafka: LocalKafka, admin: AdminClient, report: ProvisionReport) -> None:
    platform = kafka.platform
    metadata = admin.list_topics(timeout=TIMEOUT)
    existing = metadata.topics
    new = [
        NewTopic(t.name, t.partitions, platform.kafka.replication_factor, config=platform.topic_config(t))
        for t in platform.topics
        if t.name not in existing
    ]
    if new:
        _wait(admin.create_topics(new, request_timeout=TIMEOUT), lambda name: f"create topic {name}")
        for nt in new:
            report.add("topics created", f"created topic {nt.topic} ({nt.num_partitions} partitions)")

    grow = []
    for t in platform.topics:
        if t.name not in existing:
            continue
        have = len(existing[t.name].partitions)
        if have < t.partitions:
            grow.append(NewPartitions(t.name, t.partitions))
            report.add("partitions added", f"topic {t.name}: partitions {have} -> {t.partitions}")
        elif have > t.partitions:
            report.warnings.append(
                f"topic {t.name} has {have} partitions but the spec says {t.partitions}; Kafka cannot remove "
                "partitions, so the topic keeps them (delete the topic or the state dir to shrink it)"
            )
    if grow:
        _wait(
            admin.create_partitions(grow, request_timeout=TIMEOUT), lambda name: f"add partitions to {name}"
        )

    present = [t for t in platform.topics if t.name in existing]
    if not present:
        return
    described = _wait(
        admin.describe_configs(
            [ConfigResource(ResourceType.TOPIC, t.name) for t in present], request_timeout=TIMEOUT
        ),
        lambda res: f"describe configs of topic {res.name}",
    )
    by_name = {res.name: entries for res, entries in described.items()}
    alters = []
    for t in present:
        current = {name: entry.value for name, entry in by_name[t.name].items()}
        want = platform.topic_config(t)
        diff = {k: v for k, v in want.items() if current.get(k) != v}
        if diff:
            entries = [
                ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                for k, v in sorted(diff.items())
            ]
            alters.append(ConfigResource(ResourceType.TOPIC, t.name, incremental_configs=entries))
            for k, v in sorted(diff.items()):
                report.add("topic configs set", f"topic {t.name}: {k} {current.get(k)!r} -> {v!r}")
    if alters:
        _wait(
            admin.incremental_alter_configs(alters, request_timeout=TIMEOUT),
            lambda res: f"alter configs of topic {res.name}",
        )


def _credentials(kafka: LocalKafka, admin: AdminClient, report: ProvisionReport, *, stale: set[str]) -> None:
    described = _one(
        admin.describe_user_scram_credentials(request_timeout=TIMEOUT), "describe SCRAM credentials"
    )
    has_scram = {user for user, desc in described.items() if desc.scram_credential_infos}
    super_users = set(kafka.platform.kafka.super_users)
    upserts: list[UserScramCredentialUpsertion] = []
    deletions: list[UserScramCredentialDeletion] = []
    for p in kafka.platform.principals:
        if p.authentication == Authentication.SCRAM:
            fresh = not kafka.password_file(p.name).is_file()
            password = kafka.password(p.name)
            if fresh or p.name not in has_scram:
                info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
                upserts.append(UserScramCredentialUpsertion(p.name, info, password.encode()))
                report.add("SCRAM credentials set", f"set the SCRAM-SHA-512 credential of {p.name}")
            for suffix in (".crt", ".key", ".keystore.pem"):
                path = kafka.secrets_dir / f"{p.name}{suffix}"
                if path.is_file():  # switched from tls to scram: the old certificate goes
                    path.unlink()
        else:
            cert = kafka.ca.issue(kafka.secrets_dir, p.name, p.name)
            if cert.created:
                report.add("client certificates issued", f"issued the client certificate CN={p.name}")
            if p.name in has_scram:  # switched from scram to tls: the password no longer logs in
                deletions.append(UserScramCredentialDeletion(p.name, ScramMechanism.SCRAM_SHA_512))
                kafka.password_file(p.name).unlink(missing_ok=True)
                report.add(
                    "SCRAM credentials deleted",
                    f"deleted the SCRAM credential of {p.name} (it authenticates with tls now)",
                )
    for name in sorted(stale - super_users):
        if name in has_scram:
            deletions.append(UserScramCredentialDeletion(name, ScramMechanism.SCRAM_SHA_512))
            report.add(
                "SCRAM credentials deleted", f"deleted the SCRAM credential of {name} (no longer in the spec)"
            )
    changes: list[UserScramCredentialAlteration] = [*upserts, *deletions]
    if changes:
        _wait(
            admin.alter_user_scram_credentials(changes, request_timeout=TIMEOUT),
            lambda user: f"SCRAM credential of {user}",
        )


def _acls(kafka: LocalKafka, admin: AdminClient, report: ProvisionReport, *, managed: set[str]) -> None:
    want: set[AclBinding] = set()
    for p in kafka.platform.principals:
        want |= acl_bindings(p)
    every = AclBindingFilter(
        ResourceType.ANY,
        None,  # type: ignore[arg-type]  # None matches any name, principal and host
        ResourcePatternType.ANY,
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    have = set(_one(admin.describe_acls(every, request_timeout=TIMEOUT), "describe ACLs"))
    managed_principals = {f"User:{name}" for name in managed}
    extra = sorted((b for b in have - want if b.principal in managed_principals), key=_describe)
    missing = sorted(want - have, key=_describe)
    if extra:
        _wait(
            admin.delete_acls([_exact_filter(b) for b in extra], request_timeout=TIMEOUT),
            lambda f: f"delete ACL {_describe(f)}",
        )
        for b in extra:
            report.add("ACLs removed", f"removed ACL {_describe(b)}")
    if missing:
        _wait(admin.create_acls(missing, request_timeout=TIMEOUT), lambda b: f"create ACL {_describe(b)}")
        for b in missing:
            report.add("ACLs added", f"added ACL {_describe(b)}")


def _write_client_files(kafka: LocalKafka, p: Principal, report: ProvisionReport) -> None:
    header = f"# Kafka client settings of {p.name} on the local stack {kafka.platform.stack}; written by provisioning.\n"
    variants = {
        properties_file(kafka, p): java_client_properties(kafka, p),
        properties_file(kafka, p, flink=True): java_client_properties(
            kafka, p, shaded_prefix=FLINK_SHADED_PREFIX
        ),
    }
    for path, props in variants.items():
        text = (header + format_properties(props)).encode()
        if not path.is_file() or path.read_bytes() != text:
            write_private(path, text)
            report.add("client files written", f"wrote {path}")
