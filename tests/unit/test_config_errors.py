"""Bad configuration fails before anything is built, one message per problem, naming stack, key, value, allowed."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from headwater.config import CATALOG_DIR, ConfigError, load_platform, load_stack_config, read_yaml
from headwater_cli.main import main


def _problems(stack: str, config: dict[str, Any], catalog: dict[str, Any] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_platform(stack, config=config, catalog=catalog)
    assert info.value.stack == stack
    return info.value.problems


def _prod() -> dict[str, Any]:
    return copy.deepcopy(load_stack_config("prod"))


def _catalog() -> dict[str, Any]:
    return read_yaml(CATALOG_DIR / "catalog.yaml")


def test_unknown_key_names_the_allowed_keys() -> None:
    cfg = _prod()
    cfg["kafka"]["replicas"] = 3
    (msg,) = _problems("prod", cfg)
    assert "stack prod: unknown key 'kafka.replicas'" in msg
    assert "brokers" in msg and "replicationFactor" in msg


def test_unknown_top_level_key() -> None:
    cfg = _prod()
    cfg["kafak"] = {}
    (msg,) = _problems("prod", cfg)
    assert "unknown key 'kafak'" in msg and "kafka" in msg


def test_flow_to_a_topic_not_in_the_catalog() -> None:
    catalog = _catalog()
    catalog["principals"]["agent-gateway"]["produces"].append({"topic": "agents.nowhere.v1"})
    (msg,) = _problems("prod", _prod(), catalog)
    assert "catalog.principals.agent-gateway.produces[1].topic = 'agents.nowhere.v1'" in msg
    assert "agents.events.raw.v1" in msg  # lists what is allowed


def test_replication_factor_below_min_isr() -> None:
    cfg = _prod()
    cfg["kafka"]["minInsyncReplicas"] = 4
    problems = _problems("prod", cfg)
    assert any(
        "kafka.minInsyncReplicas = 4" in p and "at most kafka.replicationFactor (3)" in p for p in problems
    )


def test_prod_needs_three_brokers() -> None:
    cfg = _prod()
    cfg["kafka"].update(brokers=2, replicationFactor=2, minInsyncReplicas=1)
    problems = _problems("prod", cfg)
    assert "stack prod: kafka.brokers = 2 is not valid; allowed: at least 3 in prod" in problems


def test_plaintext_listener_outside_local_and_dev() -> None:
    cfg = _prod()
    cfg["kafka"]["plaintextListener"] = True
    (msg,) = _problems("prod", cfg)
    assert msg == (
        "stack prod: kafka.plaintextListener = True is not valid; allowed: false outside local and dev: every listener uses TLS"
    )
    dev = copy.deepcopy(load_stack_config("dev"))
    dev["kafka"]["plaintextListener"] = True
    assert load_platform("dev", config=dev).kafka.plaintext_listener


def test_bad_topic_name() -> None:
    catalog = _catalog()
    catalog["topics"]["AgentEvents"] = catalog["topics"].pop("agents.events.raw.v1")
    problems = _problems("prod", _prod(), catalog)
    assert any(
        "catalog.topics.AgentEvents = 'AgentEvents'" in p and "<domain>.<dataset>.v<N>" in p for p in problems
    )


def test_wrong_type_and_bad_enum() -> None:
    cfg = _prod()
    cfg["kafka"]["brokers"] = "six"
    cfg["kafka"]["authentication"] = "plain"
    problems = _problems("prod", cfg)
    assert any("kafka.brokers = 'six'" in p and "a int" in p for p in problems)
    assert any("kafka.authentication = 'plain'" in p and "tls, scram-sha-512" in p for p in problems)


def test_every_problem_is_reported_at_once() -> None:
    cfg = _prod()
    cfg["kafka"]["plaintextListener"] = True
    cfg["kafka"]["bogus"] = 1
    cfg["flink"]["images"]["agent-events"] = "latest"
    assert len(_problems("prod", cfg)) == 3


def test_cli_prints_problems_without_a_traceback(
    tmp_path: Any, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    import headwater.config as config

    stacks = tmp_path / "stacks"
    stacks.mkdir()
    text = (config.STACKS_DIR / "Pulumi.prod.yaml").read_text().replace("plaintextListener", "x")
    text = text.replace("    brokers: 6", "    brokers: 6\n    plaintextListener: true")
    (stacks / "Pulumi.prod.yaml").write_text(text)
    monkeypatch.setattr(config, "STACKS_DIR", stacks)
    monkeypatch.setattr(config.load_stack_config, "__defaults__", (stacks,))
    code = main(["render", "--stack", "prod", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert "kafka.plaintextListener = True" in err
    assert not (tmp_path / "out").exists()


def test_unknown_stack_lists_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        load_stack_config("qa")
    assert "known stacks: dev, local, prod, staging" in info.value.problems[0]


def test_app_args_name_a_catalog_app() -> None:
    cfg = copy.deepcopy(load_stack_config("local"))
    cfg["flink"]["appArgs"]["feature-agg"] = {"window-size-ms": 1}
    (msg,) = _problems("local", cfg)
    assert "flink.appArgs.feature-agg" in msg and "agent-events, feature-aggregator" in msg
