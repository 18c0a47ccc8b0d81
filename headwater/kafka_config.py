"""Kafka settings derived from the spec once, for every realization.

The Strimzi `Kafka` resource and the local broker's `server.properties` take the same broker config
(`broker_config`); the registry Deployment, the Flink apps' pods and the local platform's client files take
the same Java client security settings per authentication type (`java_client_properties`). Each
realization adds only what is its own (listeners, paths of its key stores, how secrets reach the client).
`format_properties` writes any of them as a Java `.properties` file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from headwater.spec import Authentication, KafkaSettings

SCRAM_MECHANISM = "SCRAM-SHA-512"
SCRAM_LOGIN_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"


def broker_config(settings: KafkaSettings) -> dict[str, bool | int | str]:
    """The broker settings that follow from the spec: replication and ISR of data and internal topics,
    transactions, record size, no topic auto-creation, no unclean leader election, TLS 1.2+ only."""
    rf, isr = settings.replication_factor, settings.min_insync_replicas
    config: dict[str, bool | int | str] = {
        # Topics exist because the catalog says so, never because a client asked for one.
        "auto.create.topics.enable": False,
        "default.replication.factor": rf,
        "min.insync.replicas": isr,
        "offsets.topic.replication.factor": rf,
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": isr,
        "transaction.max.timeout.ms": settings.transaction_max_timeout_ms,
        "unclean.leader.election.enable": False,
        "message.max.bytes": settings.message_max_bytes,
        "ssl.enabled.protocols": "TLSv1.3,TLSv1.2",
    }
    # No rack-aware replica selector (RackAwareReplicaSelector) even when the cluster spans zones: it only
    # helps a consumer that sets client.rack to its own zone, and no client here can learn its zone
    # (Kubernetes does not hand node labels to pods; reading nodes would give every app a cluster-wide
    # read right it does not otherwise need).
    return dict(sorted(config.items()))


def security_protocol(authentication: Authentication) -> str:
    """TLS principals authenticate with a client certificate over SSL; SCRAM principals log in over SASL_SSL."""
    return "SSL" if authentication == Authentication.TLS else "SASL_SSL"


def librdkafka_settings(
    authentication: Authentication,
    principal: str,
    bootstrap: str,
    ca_file: str,
    cert_file: str | None = None,
    key_file: str | None = None,
) -> dict[str, str]:
    """Python (librdkafka) client settings of a principal, without its password (which the client adds from its
    secret): SASL_SSL with SCRAM, or SSL with the client certificate and key of a TLS principal."""
    out = {
        "bootstrap.servers": bootstrap,
        "security.protocol": security_protocol(authentication),
        "ssl.ca.location": ca_file,
        "ssl.endpoint.identification.algorithm": "https",
    }
    if authentication == Authentication.SCRAM:
        out |= {"sasl.mechanisms": SCRAM_MECHANISM, "sasl.username": principal}
    else:
        assert cert_file and key_file, "a TLS principal needs its certificate and key"
        out |= {"ssl.certificate.location": cert_file, "ssl.key.location": key_file}
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class KeyStore:
    """Where a Java client finds a key or trust store; `password` None: the caller adds it from a secret."""

    type: Literal["PEM", "PKCS12"]
    location: str
    password: str | None = None


def java_client_properties(
    authentication: Authentication,
    *,
    truststore: KeyStore,
    keystore: KeyStore | None = None,
    jaas_config: str | None = None,
) -> dict[str, str]:
    """Java Kafka client security settings for a principal (no bootstrap servers: the client has its own).

    Every client trusts the cluster CA (`truststore`); a `tls` principal presents its certificate
    (`keystore`, required), a `scram-sha-512` principal logs in with `jaas_config`. A secret given as None
    (a store password, the JAAS line) is left out, for realizations that add it from a mounted secret.
    """
    props = {"security.protocol": security_protocol(authentication)}
    if authentication == Authentication.TLS:
        if keystore is None:
            raise ValueError("a tls principal needs a keystore with its client certificate")
        props |= _store("keystore", keystore)
    else:
        props["sasl.mechanism"] = SCRAM_MECHANISM
        if jaas_config is not None:
            props["sasl.jaas.config"] = jaas_config
    return props | _store("truststore", truststore)


def _store(role: str, store: KeyStore) -> dict[str, str]:
    out = {f"ssl.{role}.type": store.type, f"ssl.{role}.location": store.location}
    if store.password is not None:
        out[f"ssl.{role}.password"] = store.password
    return out


def scram_jaas_config(username: str, password: str, *, shaded_prefix: str = "") -> str:
    """The `sasl.jaas.config` line of a SCRAM login (as in a Strimzi SCRAM user secret); `shaded_prefix`
    relocates the login module class for clients whose Kafka classes are shaded (Flink's Kafka connector)."""
    return f'{shaded_prefix}{SCRAM_LOGIN_MODULE} required username="{username}" password="{password}";'


_SPECIAL = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f"}
_KEY_SPECIAL = {**_SPECIAL, "=": "\\=", ":": "\\:", " ": "\\ ", "#": "\\#", "!": "\\!"}


def _escape(text: str, table: dict[str, str]) -> str:
    # Outside Latin-1 as \uXXXX: Kafka loads .properties as ISO-8859-1, and every reader accepts the escape.
    return "".join(table.get(c, c if ord(c) < 0x100 else f"\\u{ord(c):04x}") for c in text)


def format_properties(entries: Mapping[str, object]) -> str:
    """Java `.properties` text, one `key=value` per line in the given order, escaped as
    `java.util.Properties.load` reads it back; booleans as `true`/`false`."""
    lines = []
    for key, value in entries.items():
        shown = str(value).lower() if isinstance(value, bool) else str(value)
        text = _escape(shown, _SPECIAL)
        if text.startswith(" "):
            text = "\\" + text  # a leading space would be dropped as the separator's
        lines.append(f"{_escape(key, _KEY_SPECIAL)}={text}\n")
    return "".join(lines)
