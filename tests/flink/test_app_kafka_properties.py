"""Kafka client properties files: the only way credentials reach the apps."""

from __future__ import annotations

from pathlib import Path

import pytest

from flink_apps.common.kafka_properties import (
    parse_properties,
    read_properties_file,
    redacted,
    split_client_properties,
)

STRIMZI_SCRAM = r"""
# written by the init container
security.protocol=SASL_SSL
sasl.mechanism = SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \
    username="agent-events" password="s3cr=t:x";
ssl.truststore.location: /var/run/headwater/kafka/ca.p12
! another comment style
ssl.truststore.type PKCS12
path=C:\\kafka\\ca\u00e9
schema.registry.basic.auth.user.info=agent-events:pw
"""


def test_parses_the_java_properties_format() -> None:
    props = parse_properties(STRIMZI_SCRAM)
    assert props["security.protocol"] == "SASL_SSL"
    assert props["sasl.mechanism"] == "SCRAM-SHA-512"
    assert props["sasl.jaas.config"] == (
        'org.apache.kafka.common.security.scram.ScramLoginModule required username="agent-events" password="s3cr=t:x";'
    )
    assert props["ssl.truststore.location"] == "/var/run/headwater/kafka/ca.p12"
    assert props["ssl.truststore.type"] == "PKCS12"
    assert props["path"] == "C:\\kafka\\caé"
    assert len(props) == 7


def test_registry_keys_are_split_off_and_reserved_keys_refused() -> None:
    kafka, registry = split_client_properties(parse_properties(STRIMZI_SCRAM))
    assert registry == {"basic.auth.user.info": "agent-events:pw"}
    assert "schema.registry.basic.auth.user.info" not in kafka
    with pytest.raises(ValueError, match=r"'group\.id'"):
        split_client_properties({"group.id": "x"})


def test_redaction_hides_credentials_only() -> None:
    shown = redacted(parse_properties(STRIMZI_SCRAM))
    assert shown["sasl.jaas.config"] == "******"
    assert shown["schema.registry.basic.auth.user.info"] == "******"
    assert shown["security.protocol"] == "SASL_SSL"


def test_missing_file_error_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"nope\.properties"):
        read_properties_file(tmp_path / "nope.properties")
