"""Delivery per consume flow: exactly-once (read committed) by default, at-least-once where the catalog says."""

from __future__ import annotations

import copy

import pytest

from components.flink_application import app_arguments
from headwater.config import CATALOG_DIR, ConfigError, load_platform, load_stack_config, read_yaml
from headwater.local.console import Topology
from headwater.spec import AT_LEAST_ONCE, EXACTLY_ONCE, isolation_level


def test_each_delivery_has_one_isolation_level_and_nothing_else_is_accepted() -> None:
    assert isolation_level(EXACTLY_ONCE) == "read_committed"
    assert isolation_level(AT_LEAST_ONCE) == "read_uncommitted"
    with pytest.raises(ValueError, match="exactly-once, at-least-once"):
        isolation_level("at-most-once")


def test_the_catalog_lets_the_agents_read_signals_at_least_once_and_everything_else_exactly_once() -> None:
    platform = load_platform("prod")
    deliveries = {(p.name, c.topic): c.delivery for p in platform.principals for c in p.consumes}
    assert deliveries.pop(("agent-runtime", "agents.signals.v1")) == AT_LEAST_ONCE
    assert set(deliveries.values()) == {EXACTLY_ONCE}
    labels = {(s, t): label for s, t, label in platform.lineage()}
    assert labels[("agents.signals.v1", "agent-runtime")] == "group agent-runtime, at-least-once"
    assert labels[("agents.signals.v1", "feature-aggregator")] == "group feature-aggregator"


def test_a_bad_delivery_fails_in_the_loader_naming_the_allowed_values() -> None:
    catalog = read_yaml(CATALOG_DIR / "catalog.yaml")
    catalog = copy.deepcopy(catalog)
    catalog["principals"]["feature-aggregator"]["consumes"][0]["delivery"] = "best-effort"
    with pytest.raises(ConfigError) as info:
        load_platform("prod", config=load_stack_config("prod"), catalog=catalog)
    (problem,) = info.value.problems
    assert "catalog.principals.feature-aggregator.consumes[0].delivery = 'best-effort'" in problem
    assert "exactly-once, at-least-once" in problem


def test_an_app_reads_its_source_with_the_isolation_its_flow_chose() -> None:
    catalog = copy.deepcopy(read_yaml(CATALOG_DIR / "catalog.yaml"))
    platform = load_platform("prod", config=load_stack_config("prod"), catalog=catalog)
    app = next(a for a in platform.apps if a.name == "feature-aggregator")
    args = app_arguments(platform, app)
    assert args[args.index("--isolation-level") + 1] == "read_committed"
    catalog["principals"]["feature-aggregator"]["consumes"][0]["delivery"] = AT_LEAST_ONCE
    platform = load_platform("prod", config=load_stack_config("prod"), catalog=catalog)
    args = app_arguments(platform, app)
    assert args[args.index("--isolation-level") + 1] == "read_uncommitted"


def test_the_console_reads_as_the_agents_do() -> None:
    topology = Topology.of(load_platform("local"))
    assert topology.reader_isolation_level(topology.signals) == "read_uncommitted"
    assert topology.reader_isolation_level(topology.features) == "read_committed"
