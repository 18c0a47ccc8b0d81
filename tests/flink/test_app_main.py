"""The apps' entry points: options from args and environment, and the Kafka-wired job graph (built, not run)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from registry_stub import FakeRegistry

from flink_apps.agent_events import main as agent_events_main
from flink_apps.common import cli, schemas
from flink_apps.feature_aggregator import main as features_main
from headwater import jvm

SECRET = "pa55-w0rd-never-logged"


@pytest.fixture(scope="module")
def connector_jar() -> str:
    jars = sorted(jvm.fetch("flink-connectors", quiet=True).glob("flink-sql-connector-kafka-*.jar"))
    assert len(jars) == 1, jars
    return str(jars[0])


@pytest.fixture
def properties_file(tmp_path: Path) -> str:
    path = tmp_path / "client.properties"
    path.write_text(
        "security.protocol=SASL_SSL\n"
        "sasl.mechanism=SCRAM-SHA-512\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="agent-events" password="{SECRET}";\n'
    )
    return str(path)


def common_args(jar: str, properties: str) -> list[str]:
    return [
        "--bootstrap-servers=kafka-bootstrap:9093",
        f"--kafka-properties-file={properties}",
        "--transactional-id-prefix=agent-events-",
        f"--pipeline-jars={jar}",
    ]


def stream_nodes(env: Any) -> dict[str, str | None]:
    graph = env._j_stream_execution_environment.getStreamGraph(False)
    return {str(n.getOperatorName()): n.getTransformationUID() for n in graph.getStreamNodes().toArray()}


def test_options_come_from_the_environment_and_flink_extras_are_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HEADWATER_BOOTSTRAP_SERVERS", "broker:9092")
    monkeypatch.setenv("HEADWATER_DEDUP_TTL_MS", "5000")
    monkeypatch.setenv("HEADWATER_REGISTER_SCHEMAS", "true")
    args = agent_events_main.parse_args(
        [
            "--group-id=g",
            "--transactional-id-prefix=t",
            "--source-topic=a",
            "--sink-topic=b",
            "--dead-letter-topic=c",
            "-pyclientexec",
            "/usr/bin/python3",
            "--unknown-flink-option",
            "x",
        ]
    )
    assert (args.bootstrap_servers, args.dedup_ttl_ms, args.register_schemas) == ("broker:9092", 5000, True)
    assert args.transaction_timeout_ms == 900_000


def test_missing_required_option_and_bad_values_exit(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        features_main.parse_args(["--bootstrap-servers=b"])
    assert "--group-id" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        features_main.parse_args(
            [
                "--bootstrap-servers=b",
                "--group-id=g",
                "--transactional-id-prefix=t",
                "--source-topic=a",
                "--sink-topic=b",
                "--window-size-ms=0",
            ]
        )
    assert "must be a positive integer" in capsys.readouterr().err


def test_the_source_isolation_is_read_committed_unless_the_flow_chose_at_least_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = ["--bootstrap-servers=b", "--group-id=g", "--transactional-id-prefix=t", "--source-topic=a"]
    base += ["--sink-topic=b"]
    assert features_main.parse_args(base).isolation_level == "read_committed"
    chosen = features_main.parse_args([*base, "--isolation-level=read_uncommitted"])
    assert chosen.isolation_level == "read_uncommitted"
    with pytest.raises(SystemExit):
        features_main.parse_args([*base, "--isolation-level=read_dirty"])
    assert "read_committed" in capsys.readouterr().err


def test_without_schema_ids_or_registry_the_job_is_not_built(
    connector_jar: str, properties_file: str
) -> None:
    args = agent_events_main.parse_args(
        [
            *common_args(connector_jar, properties_file),
            "--group-id=g",
            "--source-topic=a",
            "--sink-topic=b",
            "--dead-letter-topic=c",
        ]
    )
    with pytest.raises(SystemExit, match="--sink-schema-id or --schema-registry-url"):
        agent_events_main.build_job(args)


def test_agent_events_job_graph(
    connector_jar: str, properties_file: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    args = agent_events_main.parse_args(
        [
            *common_args(connector_jar, properties_file),
            "--group-id=agent-events",
            "--source-topic=agents.events.raw.v1",
            "--sink-topic=agents.signals.v1",
            "--dead-letter-topic=agents.events.deadletter.v1",
            "--sink-schema-id=5",
            "--dead-letter-schema-id=6",
        ]
    )
    env = agent_events_main.build_job(args)
    nodes = stream_nodes(env)
    assert sum("Source: " in n and "kafka" in n for n in nodes) == 1
    assert sum(n.endswith(": Writer") for n in nodes) == 2  # signals and dead letters, both transactional
    assert sum(n.endswith(": Committer") for n in nodes) == 2
    stateful = [
        n for n in nodes if "Source: " in n or "Writer" in n or "Committer" in n or "Deduplicate" in n
    ]
    assert all(nodes[n] for n in stateful), {n: nodes[n] for n in stateful}
    assert sum("Deduplicate" in n for n in nodes) == 1, list(nodes)  # native dedup, not Python
    # one Python operator: the contract check; no Python between it and the sinks
    assert sum("PythonCalc" in n or ("Python" in n and "check_agent_events" in n) for n in nodes) == 1, list(
        nodes
    )
    assert env.get_checkpoint_config().is_checkpointing_enabled()
    assert SECRET not in env.get_execution_plan()
    assert SECRET not in caplog.text and "sasl.jaas.config" in caplog.text


def test_feature_aggregator_job_graph_with_ids_from_the_registry(
    connector_jar: str, properties_file: str, registry: FakeRegistry
) -> None:
    args = features_main.parse_args(
        [
            *common_args(connector_jar, properties_file),
            "--group-id=feature-aggregator",
            "--source-topic=agents.signals.v1",
            "--sink-topic=features.agent_activity.v1",
            f"--schema-registry-url={registry.url}",
            "--register-schemas",
        ]
    )
    env = features_main.build_job(args)
    assert registry.registered["agents.signals.v1-value"][1] == schemas.for_topic("agents.signals.v1")
    assert registry.registered["features.agent_activity.v1-value"][1] == schemas.for_topic(
        "features.agent_activity.v1"
    )
    nodes = stream_nodes(env)
    window = next(n for n in nodes if n.startswith("activity features per entity and window"))
    assert nodes[window] == "features-window"
    assert sum(n.endswith(": Writer") for n in nodes) == 1


def test_each_output_gets_its_own_transactional_prefix_within_the_allowed_one() -> None:
    assert cli.transactional_id_prefix("agent-events-", "dead_letters") == "agent-events-dead-letters"
    assert cli.transactional_id_prefix("fa", "features") == "fa-features"


def test_an_app_finds_each_topics_contract_by_the_topics_name(tmp_path: Path) -> None:
    assert schemas.for_topic("agents.signals.v1")["name"]
    with pytest.raises(
        FileNotFoundError, match=r"no contract for topic 'x.y.v1' in .*: expected one of x.y.v1.avsc"
    ):
        schemas.for_topic("x.y.v1")
    (tmp_path / "x.y.v1.avsc").write_text("{}")
    (tmp_path / "x.y.v1.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"more than one contract for topic 'x\.y\.v1'"):
        schemas.for_topic("x.y.v1", tmp_path)
