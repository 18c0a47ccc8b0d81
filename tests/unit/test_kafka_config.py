"""Kafka settings derived once from the spec: the Strimzi cluster and the local broker get the same broker
config; the registry, the Flink apps and the local client files get the same client security per
authentication type."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from components import flink_application as fa
from components.kafka_cluster import render_kafka_cluster
from components.schema_registry import kafka_client_settings
from headwater.config import load_platform
from headwater.contracts import kafkasql
from headwater.kafka_config import (
    KeyStore,
    broker_config,
    format_properties,
    java_client_properties,
    scram_jaas_config,
)
from headwater.local.certs import IssuedCert
from headwater.local.kafka import KafkaPorts, LocalKafka
from headwater.local.provision import java_client_properties as local_java_client_properties
from headwater.spec import Authentication, Platform

PLATFORM = load_platform("local")
# The registry's principal, storage topics and group prefix, as the catalog names them.
STORE = kafkasql.storage(load_platform("local"))


def with_authentication(platform: Platform, name: str, authentication: Authentication) -> Platform:
    principals = tuple(
        dataclasses.replace(p, authentication=authentication) if p.name == name else p
        for p in platform.principals
    )
    return dataclasses.replace(platform, principals=principals)


def kafka_resource(platform: Platform) -> dict[str, object]:
    (kafka,) = (
        o
        for o in render_kafka_cluster(platform.kafka, platform.namespace, platform.tier)
        if o["kind"] == "Kafka"
    )
    return kafka


@pytest.mark.parametrize("stack", ["local", "dev", "prod"])
def test_the_strimzi_cluster_takes_the_derived_broker_config(stack: str) -> None:
    platform = load_platform(stack)
    config = kafka_resource(platform)["spec"]["kafka"]["config"]  # type: ignore[index]
    assert config == broker_config(platform.kafka)
    assert "replica.selector.class" not in config  # no client sets client.rack (see broker_config)


def test_the_local_broker_runs_the_clusters_broker_config(tmp_path: Path) -> None:
    # The local broker used to miss what only the Strimzi cluster set (no unclean leader election, TLS 1.2+).
    kafka = LocalKafka(PLATFORM, tmp_path, KafkaPorts(sasl=19093, mtls=19094, controller=19095))
    cert = IssuedCert("broker", tmp_path / "b.crt", tmp_path / "b.key", tmp_path / "b.pem", created=False)
    server = kafka.server_config(cert)
    cluster = kafka_resource(PLATFORM)["spec"]["kafka"]["config"]  # type: ignore[index]
    assert {key: server.get(key) for key in cluster} == cluster
    text = format_properties(server)
    assert "unclean.leader.election.enable=false\n" in text
    assert "auto.create.topics.enable=false\n" in text
    assert "ssl.enabled.protocols=TLSv1.3,TLSv1.2\n" in text


def test_client_properties_per_authentication() -> None:
    trust = KeyStore("PEM", "/ca.crt")
    keys = KeyStore("PKCS12", "/user.p12", "pw")
    assert java_client_properties(Authentication.TLS, truststore=trust, keystore=keys) == {
        "security.protocol": "SSL",
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": "/user.p12",
        "ssl.keystore.password": "pw",
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": "/ca.crt",
    }
    assert java_client_properties(Authentication.SCRAM, truststore=trust, keystore=keys, jaas_config="J") == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.jaas.config": "J",
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": "/ca.crt",
    }
    with pytest.raises(ValueError, match="tls principal needs a keystore"):
        java_client_properties(Authentication.TLS, truststore=trust)
    assert scram_jaas_config("a", "p", shaded_prefix="x.") == (
        'x.org.apache.kafka.common.security.scram.ScramLoginModule required username="a" password="p";'
    )


def _keys(props: dict[str, str]) -> set[str]:
    return set(props)


@pytest.mark.parametrize("authentication", list(Authentication))
def test_every_realization_gives_a_principal_the_same_client_settings(
    authentication: Authentication, tmp_path: Path
) -> None:
    # The registry's pod, a Flink app's pod and the local client file differ only in where stores live.
    platform = with_authentication(PLATFORM, STORE.principal.name, authentication)
    principal = platform.principal(STORE.principal.name)
    registry, _ = kafka_client_settings(platform)
    template = fa.properties_template(platform, principal)
    flink = dict(line.split("=", 1) for line in template.splitlines() if not line.startswith("#"))
    kafka = LocalKafka(platform, tmp_path, KafkaPorts(sasl=19093, mtls=19094, controller=19095))
    kafka.secrets_dir.mkdir(parents=True)
    kafka.password_file(principal.name).write_text("pw\n")
    local = local_java_client_properties(kafka, principal)
    protocol = {"tls": "SSL", "scram-sha-512": "SASL_SSL"}[authentication.value]
    for props in (registry, flink, local):
        assert props["security.protocol"] == protocol
    secrets = {"ssl.keystore.password", "ssl.truststore.password", "sasl.jaas.config"}
    assert _keys(registry) - secrets == _keys(flink) - secrets == _keys(local) - secrets


def test_properties_are_written_the_way_java_reads_them() -> None:
    # One writer for the broker, the client files and the registry; keys with separators are escaped too.
    text = format_properties(
        {
            "a:b": "x",
            "k=v": "y",
            "with space": " lead",
            "#not-a-comment": "c:\\dir\nnext",
            "flag": True,
            "n": 5,
            "név": "ű",
        }
    )
    assert text.splitlines() == [
        "a\\:b=x",
        "k\\=v=y",
        "with\\ space=\\ lead",
        "\\#not-a-comment=c:\\\\dir\\nnext",
        "flag=true",
        "n=5",
        "név=\\u0171",
    ]
