"""The local broker's life: restarts keep everything, provisioning follows the spec, errors say what to do.

Uses the scratch broker (it is restarted and re-provisioned from changed specs here) and, for the errors
raised before any process starts, no broker at all.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from acl_probes import ALLOWED, DENIED, connect, produce, read, visible_topics
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from headwater.config import CATALOG_DIR, load_platform, load_stack_config, read_yaml
from headwater.local import (
    KafkaPorts,
    LocalKafka,
    LocalKafkaError,
    PortInUseError,
    client_config,
    properties_file,
    provision,
)
from headwater.local.process import quiet
from headwater.spec import Platform

if TYPE_CHECKING:
    from conftest import Provisioned

PROBE_TOPIC = "probe.lifecycle.v1"


def _fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


PROBE_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "lifecycle probe",
    "type": "object",
    "required": ["id"],
    "properties": {"id": {"type": "string"}},
}


def _variant(catalog_dir: Path, **extra: Any) -> Platform:
    """The local platform with extra catalog entries (topics, principals) merged in.

    The catalog is copied to `catalog_dir` with a contract for the probe topic, as every events topic needs one.
    """
    if not catalog_dir.exists():
        shutil.copytree(CATALOG_DIR, catalog_dir)
        (catalog_dir / "schemas" / f"{PROBE_TOPIC}.json").write_text(json.dumps(PROBE_SCHEMA))
    catalog = copy.deepcopy(read_yaml(catalog_dir / "catalog.yaml"))
    for section, entries in extra.items():
        catalog.setdefault(section, {}).update(entries)
    return load_platform("local", catalog=catalog, catalog_dir=catalog_dir)


def _same_broker(platform: Platform, kafka: LocalKafka) -> LocalKafka:
    """A handle on the running broker for another spec (provisioning needs no process of its own)."""
    return LocalKafka(platform, kafka.state_dir, kafka.ports, progress=quiet)


def _topic_config(admin_conf: dict[str, Any], topic: str) -> dict[str, str]:
    admin = AdminClient(admin_conf)
    [entries] = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)]).values()
    return {k: v.value for k, v in entries.result(30).items()}


# ---- provisioning -------------------------------------------------------------------------------------------


def test_first_provisioning_created_the_spec_and_a_second_changes_nothing(
    scratch_provisioned: Provisioned,
) -> None:
    first = scratch_provisioned.report
    platform = scratch_provisioned.platform
    assert first.counts["topics created"] == len(platform.topics)
    assert first.counts["SCRAM credentials set"] == sum(
        p.authentication.value == "scram-sha-512" for p in platform.principals
    )
    again = provision(scratch_provisioned.kafka, progress=quiet)
    assert not again.changed, again.changes
    for t in platform.topics:
        config = _topic_config(scratch_provisioned.admin_config(), t.name)
        assert {k: config[k] for k in platform.topic_config(t)} == platform.topic_config(t)


def _probe_topic(partitions: int) -> dict[str, Any]:
    return {
        "description": "lifecycle probe",
        "owner": "data-platform",
        "sla": "bronze",
        "kind": "events",
        "partitions": partitions,
        "key": "id",
        "retention": "1d",
        "schema": f"schemas/{PROBE_TOPIC}.json",
    }


PROBE_PRINCIPALS = {
    "probe-writer": {"kind": "service", "produces": [{"topic": PROBE_TOPIC}]},
    "probe-reader": {
        "kind": "service",
        "authentication": "tls",
        "consumes": [{"topic": PROBE_TOPIC, "group": "probe-reader"}],
    },
}


def test_provisioning_follows_the_spec_as_it_grows_and_shrinks(
    scratch_provisioned: Provisioned, tmp_path: Path
) -> None:
    kafka = scratch_provisioned.kafka
    grown = _variant(tmp_path / "catalog", topics={PROBE_TOPIC: _probe_topic(2)}, principals=PROBE_PRINCIPALS)
    try:
        messages: list[str] = []
        report = provision(_same_broker(grown, kafka), progress=messages.append)
        assert report.counts["topics created"] == 1
        assert report.counts["SCRAM credentials set"] == 1
        assert report.counts["client certificates issued"] == 1
        # writer: Describe+Write; reader: Describe+Read, group Read; the lag exporter: Describe on the new
        # flow's topic and group
        assert report.counts["ACLs added"] == 7

        writer, reader = (
            client_config(kafka, grown.principal("probe-writer")),
            client_config(kafka, grown.principal("probe-reader")),
        )
        assert reader["bootstrap.servers"] == kafka.bootstrap_mtls  # a tls principal connects over mTLS
        kept_reader = dict(reader)  # a copy of its certificate, to try it after its files are removed
        for key in ("ssl.certificate.location", "ssl.key.location"):
            kept_reader[key] = str(shutil.copy(reader[key], tmp_path))
        assert produce(writer, PROBE_TOPIC) == ALLOWED
        seed = Producer(scratch_provisioned.admin_config())
        seed.produce(PROBE_TOPIC, key=b"seed", value=b"seed", partition=0)  # the read probe reads partition 0
        assert seed.flush(30) == 0
        assert read(reader, PROBE_TOPIC) == ALLOWED
        assert produce(reader, PROBE_TOPIC) == DENIED

        secrets = [
            kafka.password_file("probe-writer").read_text(),
            kafka.password(kafka.admin_user, create=False),
        ]
        assert not any(s in m for s in secrets for m in messages), "a password was printed"

        # Drift on the broker is put back; partitions grow with the spec.
        admin = AdminClient(scratch_provisioned.admin_config())
        drift = ConfigEntry("retention.ms", "1234", incremental_operation=AlterConfigOpType.SET)
        for f in admin.incremental_alter_configs(
            [ConfigResource(ResourceType.TOPIC, PROBE_TOPIC, incremental_configs=[drift])]
        ).values():
            f.result(30)
        wider = _variant(
            tmp_path / "catalog", topics={PROBE_TOPIC: _probe_topic(3)}, principals=PROBE_PRINCIPALS
        )
        report = provision(_same_broker(wider, kafka), progress=quiet)
        assert set(report.counts) == {"partitions added", "topic configs set"}, report.changes
        assert _topic_config(scratch_provisioned.admin_config(), PROBE_TOPIC)["retention.ms"] == str(
            86_400_000
        )
        assert len(admin.list_topics(PROBE_TOPIC, timeout=10).topics[PROBE_TOPIC].partitions) == 3

        # Back to the real spec: the probe principals lose their ACLs, credentials and files; the topic stays.
        report = provision(kafka, progress=quiet)
        assert report.counts["ACLs removed"] == 7 and report.counts["SCRAM credentials deleted"] == 1
        assert (
            not properties_file(kafka, "probe-writer").exists()
            and not kafka.password_file("probe-writer").exists()
        )
        topics, errors = connect(writer)
        assert topics is None and KafkaError._AUTHENTICATION in {e.code() for e in errors}
        assert visible_topics(kept_reader) == set()  # its certificate still authenticates, but grants nothing
        assert PROBE_TOPIC in admin.list_topics(timeout=10).topics
        warned = provision(_same_broker(grown, kafka), progress=quiet).warnings  # spec says 2, topic has 3
        assert any(PROBE_TOPIC in w and "cannot remove partitions" in w for w in warned)
    finally:
        provision(kafka, progress=quiet)


def test_a_principal_switching_to_tls_loses_its_password(scratch_provisioned: Provisioned) -> None:
    kafka = scratch_provisioned.kafka
    old = client_config(kafka, "agent-gateway")
    switched = load_platform(
        "local",
        config={**load_stack_config("local"), "principals": {"agent-gateway": {"authentication": "tls"}}},
    )
    try:
        report = provision(_same_broker(switched, kafka), progress=quiet)
        assert (
            report.counts["SCRAM credentials deleted"] == 1
            and report.counts["client certificates issued"] == 1
        )
        topics, errors = connect(old)
        assert topics is None and KafkaError._AUTHENTICATION in {e.code() for e in errors}
        assert (
            produce(client_config(_same_broker(switched, kafka), "agent-gateway"), "agents.events.raw.v1")
            == ALLOWED
        )
        assert "ssl.keystore.type=PEM" in properties_file(kafka, "agent-gateway").read_text()
    finally:
        provision(kafka, progress=quiet)
    assert produce(client_config(kafka, "agent-gateway"), "agents.events.raw.v1") == ALLOWED


# ---- restart ------------------------------------------------------------------------------------------------


def test_restart_keeps_records_credentials_and_certificates(scratch_provisioned: Provisioned) -> None:
    kafka = scratch_provisioned.kafka
    admin_conf = scratch_provisioned.admin_config()
    admin = AdminClient(admin_conf)
    topic = "probe.restart.v1"
    if topic not in admin.list_topics(timeout=10).topics:
        [f] = admin.create_topics([NewTopic(topic, 1, 1)]).values()
        f.result(30)
    marker = uuid.uuid4().hex.encode()
    producer = Producer(admin_conf)
    producer.produce(topic, key=b"k", value=marker)
    assert producer.flush(30) == 0
    certs = {p: _fingerprint(p) for p in (kafka.ca_file, kafka.ca.key_path, kafka.certs_dir / "broker.crt")}
    passwords = {
        p.name: kafka.password(p.name, create=False) for p in scratch_provisioned.platform.principals
    }
    pid = kafka.pid
    assert pid is not None

    kafka.stop()
    assert not _alive(pid), "the broker outlived stop()"
    assert not kafka.pid_file.exists()
    started = time.monotonic()
    kafka.start()
    warm = time.monotonic() - started
    print(f"warm restart of the broker: {warm:.1f}s")

    assert {p: _fingerprint(p) for p in certs} == certs
    assert {
        p.name: kafka.password(p.name, create=False) for p in scratch_provisioned.platform.principals
    } == passwords
    consumer = Consumer({**admin_conf, "group.id": "probe.restart", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    values = []
    deadline = time.monotonic() + 20
    while marker not in values and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            values.append(msg.value())
    consumer.close()
    assert marker in values, "a record written before the restart is gone"
    for p in scratch_provisioned.platform.principals:
        expected = (
            {c.topic for c in p.consumes} | {f.topic for f in p.produces} | {m.topic for m in p.monitors}
        )
        assert visible_topics(scratch_provisioned.config(p.name)) == expected
    assert not provision(kafka, progress=quiet).changed


def test_a_lost_super_user_password_is_replaced_at_start(scratch_provisioned: Provisioned) -> None:
    kafka = scratch_provisioned.kafka
    old = kafka.admin_config()
    kafka.stop()
    kafka.password_file(kafka.admin_user).unlink()
    kafka.start()
    new = kafka.admin_config()
    assert new["sasl.password"] != old["sasl.password"]
    assert connect(new)[0] is not None
    topics, errors = connect(old)
    assert topics is None and KafkaError._AUTHENTICATION in {e.code() for e in errors}
    assert not provision(kafka, progress=quiet).changed


def test_a_second_broker_on_the_same_state_dir_is_refused(scratch_provisioned: Provisioned) -> None:
    kafka = scratch_provisioned.kafka
    other = LocalKafka(kafka.platform, kafka.state_dir, KafkaPorts.free(), progress=quiet)
    with pytest.raises(LocalKafkaError, match=rf"already running as pid {kafka.pid}"):
        other.start()
    assert not other.running()


# ---- errors before anything starts --------------------------------------------------------------------------


def test_a_busy_port_is_named_with_the_setting_to_change(local_platform: Platform, tmp_path: Path) -> None:
    free = KafkaPorts.free()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        kafka = LocalKafka(
            local_platform,
            tmp_path,
            KafkaPorts(sasl=free.sasl, mtls=port, controller=free.controller, metrics=free.metrics),
            progress=quiet,
        )
        with pytest.raises(PortInUseError) as err:
            kafka.start()
    message = str(err.value)
    assert f"port {port}" in message and "HEADWATER_KAFKA_MTLS_PORT" in message and "mtls" in message
    assert not kafka.running() and not (tmp_path / "kafka" / "data").exists()


def test_ports_come_from_the_environment() -> None:
    ports = KafkaPorts.from_env(
        {"HEADWATER_KAFKA_SASL_PORT": "19093", "HEADWATER_KAFKA_CONTROLLER_PORT": "19095"}
    )
    assert (ports.sasl, ports.mtls, ports.controller) == (19093, KafkaPorts().mtls, 19095)
    with pytest.raises(LocalKafkaError, match="HEADWATER_KAFKA_MTLS_PORT = 'x'"):
        KafkaPorts.from_env({"HEADWATER_KAFKA_MTLS_PORT": "x"})
    with pytest.raises(LocalKafkaError, match="must differ"):
        KafkaPorts(sasl=9000, mtls=9000, controller=9001)


def test_a_spec_that_needs_more_than_one_node_is_explained(tmp_path: Path) -> None:
    config = copy.deepcopy(load_stack_config("local"))
    config["kafka"].update(brokers=3, replicationFactor=3, minInsyncReplicas=2)
    with pytest.raises(
        LocalKafkaError, match=r"stack local: kafka.replicationFactor = 3 cannot run locally; allowed: 1"
    ):
        LocalKafka(load_platform("local", config=config), tmp_path, progress=quiet)
    assert os.listdir(tmp_path) == []
