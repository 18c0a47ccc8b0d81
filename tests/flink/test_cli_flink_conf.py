"""--flink-conf: local runs set the state backend, checkpoint dir and recovery path the operator sets on Kubernetes."""

from __future__ import annotations

import pytest

from flink_apps.agent_events.main import parse_args
from flink_apps.common import cli

BASE = [
    "--bootstrap-servers=localhost:9092",
    "--group-id=g",
    "--transactional-id-prefix=agent-events-",
    "--source-topic=a.b.v1",
    "--sink-topic=a.c.v1",
    "--dead-letter-topic=a.d.v1",
]


def test_settings_from_args_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWATER_FLINK_CONF", "state.backend.type=hashmap\nparallelism.default = 2\n")
    args = parse_args([*BASE, "--flink-conf", "state.backend.type=rocksdb", "--flink-conf=a.b=c=d"])
    assert cli.flink_settings(args) == {
        "state.backend.type": "rocksdb",
        "parallelism.default": "2",
        "a.b": "c=d",
    }


def test_malformed_setting_names_the_expected_form() -> None:
    args = parse_args([*BASE, "--flink-conf", "rocksdb"])
    with pytest.raises(SystemExit, match="expected KEY=VALUE"):
        cli.flink_settings(args)
