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


@pytest.mark.parametrize("zone", ["zone-a", "zone-1", "az1", "rack-b", "example-zone"])
def test_placeholder_zones_are_refused(zone: str) -> None:
    """A required node affinity on made-up zone names keeps every Kafka pod Pending on a real cluster."""
    cfg = _prod()
    cfg["kafka"]["racks"] = ["us-east-1a", "us-east-1b", zone]
    (msg,) = _problems("prod", cfg)
    assert msg.startswith(
        f"stack prod: kafka.racks = {zone!r} is not valid; allowed: the cluster's real zone"
    )
    assert "topology.kubernetes.io/zone label values" in msg


def test_prod_needs_three_distinct_zones() -> None:
    cfg = _prod()
    cfg["kafka"]["racks"] = ["us-east-1a", "us-east-1b", "us-east-1b"]
    problems = _problems("prod", cfg)
    assert problems == [
        "stack prod: kafka.racks = ['us-east-1a', 'us-east-1b', 'us-east-1b'] is not valid; allowed: each zone once"
    ]
    cfg["kafka"]["racks"] = ["us-east-1a", "us-east-1b"]
    (msg,) = _problems("prod", cfg)
    assert "kafka.racks = ['us-east-1a', 'us-east-1b']" in msg and "at least 3 zones in prod" in msg
    del cfg["kafka"]["racks"]
    (msg,) = _problems("prod", cfg)
    assert "kafka.racks = []" in msg


def test_zone_must_be_a_label_value() -> None:
    cfg = _prod()
    cfg["kafka"]["racks"] = ["us-east-1a", "us-east-1b", "us east 1c"]
    (msg,) = _problems("prod", cfg)
    assert "kafka.racks = 'us east 1c'" in msg and "as the nodes' zone label carries it" in msg


def test_shipped_multi_zone_stacks_name_real_zones() -> None:
    for stack in ("staging", "prod"):
        racks = load_platform(stack).kafka.racks
        assert len(racks) == 3 and not any(r.startswith("zone-") for r in racks), stack


def test_cruise_control_settings_are_validated() -> None:
    cfg = _prod()
    cfg["kafka"]["cruiseControl"] = {"inboundNetwork": "10Gbps", "outboundNetwork": "0MiB/s", "goals": []}
    problems = _problems("prod", cfg)
    assert any(
        "kafka.cruiseControl.inboundNetwork = '10Gbps'" in p and "like 125MiB/s" in p for p in problems
    )
    assert any("kafka.cruiseControl.outboundNetwork = '0MiB/s'" in p for p in problems)
    assert any("unknown key 'kafka.cruiseControl.goals'" in p for p in problems)
    assert len(problems) == 3
    cfg["kafka"]["cruiseControl"] = "yes"
    (msg,) = _problems("prod", cfg)
    assert "kafka.cruiseControl = 'yes'" in msg and "true, false, or a mapping" in msg


def test_cruise_control_true_takes_the_defaults() -> None:
    cfg = copy.deepcopy(load_stack_config("staging"))
    cfg["kafka"]["cruiseControl"] = True
    cc = load_platform("staging", config=cfg).kafka.cruise_control
    assert cc is not None and cc.inbound_network == cc.outbound_network == "120MiB/s"
    assert cc.resources.memory_limit == "768Mi"
    assert load_platform("staging").kafka.cruise_control is None


# ---- a stack file that is not YAML, or not shaped like a stack ------------------------------------------


def _run_with_stack_file(
    tmp_path: Any, monkeypatch: Any, capsys: pytest.CaptureFixture[str], text: str
) -> tuple[int, str]:
    import headwater.config as config

    stacks = tmp_path / "stacks"
    stacks.mkdir(exist_ok=True)
    (stacks / "Pulumi.prod.yaml").write_text(text)
    monkeypatch.setattr(config, "STACKS_DIR", stacks)
    monkeypatch.setattr(config.load_stack_config, "__defaults__", (stacks,))
    code = main(["render", "--stack", "prod", "--out", str(tmp_path / "out")])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("config:\n  headwater:kafka: {brokers: 3\n", "is not valid YAML at line 3, column 1"),
        ("config:\n  headwater:kafka:\n  - brokers: 3\n   - x\n", "is not valid YAML at line 4"),
        ("- config\n- headwater\n", "the top level is a list; allowed: a mapping"),
        ("config:\n  - headwater:kafka\n", "config = ['headwater:kafka'] is not valid; allowed: a mapping"),
        ("config: 7\n", "config = 7 is not valid; allowed: a mapping"),
    ],
)
def test_a_stack_file_that_is_not_a_stack_is_one_line_not_a_traceback(
    tmp_path: Any, monkeypatch: Any, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    code, err = _run_with_stack_file(tmp_path, monkeypatch, capsys, text)
    assert code == 2
    assert "Traceback" not in err
    (problem,) = [line for line in err.splitlines() if line.startswith("  - ")]
    assert problem.startswith("  - stack prod: ") and "Pulumi.prod.yaml" in problem and expected in problem


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Any:
    yield prefix
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in children:
        yield from _paths(value, (*prefix, key))


def _with(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    out = copy.deepcopy(node)
    target = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return out


@pytest.mark.parametrize("where", ["stack", "catalog"])
def test_any_setting_of_the_wrong_shape_is_a_problem_line_never_a_crash(where: str) -> None:
    """Every value of the local stack and the catalog, replaced in turn by values of other shapes."""
    config, catalog = load_stack_config("local"), _catalog()
    base = config if where == "stack" else catalog
    tried = 0
    for path in _paths(base):
        for wrong in ([1], "x", 5, None, {"a": 1}, [{"x": 1}]):
            changed = _with(base, path, wrong)
            try:
                load_platform(
                    "local",
                    config=changed if where == "stack" else config,
                    catalog=changed if where == "catalog" else catalog,
                )
            except ConfigError as err:
                assert err.problems and all(isinstance(p, str) and p for p in err.problems)
            tried += 1
    assert tried > 300


# ---- overrides are reported where they are written -------------------------------------------------------


def test_a_bad_flow_in_a_stack_override_is_reported_under_the_override() -> None:
    cfg = _prod()
    cfg.setdefault("principals", {})["agent-gateway"] = {"produces": [{"topic": "agents.nowhere.v1"}]}
    (msg,) = _problems("prod", cfg)
    assert msg.startswith("stack prod: principals.agent-gateway.produces[0].topic = 'agents.nowhere.v1'")
    assert "catalog.principals" not in msg


def test_an_override_of_a_badly_named_topic_breaks_the_naming_rule() -> None:
    cfg = _prod()
    cfg["topics"] = {"Agents.Events.Raw.v1": {"partitions": 12}}
    (msg,) = _problems("prod", cfg)
    assert msg.startswith("stack prod: topics.Agents.Events.Raw.v1 = 'Agents.Events.Raw.v1' is not valid")
    assert "<domain>.<dataset>.v<N>: lower-case words" in msg


def test_the_catalog_names_the_registry_and_its_storage_once() -> None:
    """The registry's principal, topics and group prefix come from the catalog's `registryStorage:`."""
    catalog = copy.deepcopy(_catalog())
    del catalog["principals"]["schema-registry"]["registryStorage"]
    (msg,) = _problems("prod", _prod(), catalog)
    assert "0 principals declare registryStorage (none)" in msg and "exactly one" in msg

    catalog = copy.deepcopy(_catalog())
    catalog["principals"]["lag-exporter"]["registryStorage"] = catalog["principals"]["schema-registry"][
        "registryStorage"
    ]
    (msg,) = _problems("prod", _prod(), catalog)
    assert "2 principals declare registryStorage (lag-exporter, schema-registry)" in msg

    catalog = copy.deepcopy(_catalog())
    catalog["principals"]["schema-registry"]["registryStorage"]["journal"] = 7
    problems = _problems("prod", _prod(), catalog)
    assert any("catalog.principals.schema-registry.registryStorage.journal" in p for p in problems), problems


def test_the_gate_s_span_export_is_checked_one_line_per_problem() -> None:
    cfg = _prod()
    cfg["actionGate"]["tracing"] = {
        "otlpEndpoint": "http://otel-collector.observability.svc:4318",  # plain HTTP in prod
        "collectorNamespace": "Observability",
        "collectorPodLabels": {"app.kubernetes.io/name": "bad value!"},
        "caSecret": "otel-collector-ca",
        "headers": "x",
    }
    problems = _problems("prod", cfg)
    assert len(problems) == 5, problems
    joined = "\n".join(problems)
    assert (
        "stack prod: actionGate.tracing.otlpEndpoint = 'http://otel-collector.observability.svc:4318' is not valid; "
        "allowed: an https:// endpoint in a prod stack" in joined
    )
    assert (
        "actionGate.tracing.collectorNamespace = 'Observability' is not valid; allowed: a Kubernetes name"
        in joined
    )
    assert (
        "actionGate.tracing.collectorPodLabels.app.kubernetes.io/name = 'bad value!' is not valid; "
        "allowed: a Kubernetes label value" in joined
    )
    assert (
        "actionGate.tracing.caSecret = 'otel-collector-ca' is not valid; allowed: nothing with an http://"
        in joined
    )
    assert "unknown key 'actionGate.tracing.headers'" in joined


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://otel-collector.observability.svc",  # no port: the NetworkPolicy needs one
        "https://otel-collector:4318/v1/traces",  # a path: the exporter adds its own
        "https://user:secret@otel-collector:4318",  # credentials never in plain config
        "grpc://otel-collector:4317",
        "https://otel-collector:70000",
    ],
)
def test_an_otlp_endpoint_is_an_http_url_with_a_port_and_nothing_else(endpoint: str) -> None:
    cfg = _prod()
    cfg["actionGate"]["tracing"]["otlpEndpoint"] = endpoint
    (msg,) = _problems("prod", cfg)
    assert (
        f"actionGate.tracing.otlpEndpoint = {endpoint!r} is not valid; allowed: an OTLP/HTTP endpoint" in msg
    )


def test_the_gate_s_span_export_needs_where_the_collector_is() -> None:
    cfg = _prod()
    cfg["actionGate"]["tracing"] = {"otlpEndpoint": "https://otel-collector.observability.svc:4318"}
    problems = _problems("prod", cfg)
    assert problems == [
        "stack prod: actionGate.tracing.collectorNamespace is required (str)",
        "stack prod: actionGate.tracing.collectorPodLabels is required (dict)",
    ]
