"""Alert rules, dashboard and lineage are derived from the flows; every PromQL expression parses."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace
from typing import Any

import promql_parser
import pytest
import yaml

from components.observability import (
    LAG_BUDGETS,
    alert_rules,
    dashboard,
    lineage_graph,
    lineage_mermaid,
    render_observability,
)
from headwater.config import load_platform, stack_names
from headwater.spec import Consume, Sla

STACKS = stack_names()


def _exprs(stack: str) -> list[str]:
    p = load_platform(stack)
    rules = [r["expr"] for g in alert_rules(p)["groups"] for r in g["rules"]]
    panels = [t["expr"] for panel in dashboard(p)["panels"] for t in panel.get("targets", [])]
    return rules + panels


@pytest.mark.parametrize("stack", STACKS)
def test_every_expression_is_valid_promql(stack: str) -> None:
    exprs = _exprs(stack)
    assert exprs
    for expr in exprs:
        promql_parser.parse(expr)  # raises ValueError with the position of a syntax error


def test_the_parser_rejects_a_broken_expression() -> None:
    with pytest.raises(ValueError):
        promql_parser.parse('sum by (topic (kafka_consumergroup_lag{topic="x"})')


def test_one_lag_alert_per_consumer_group_with_the_topic_sla_budget() -> None:
    p = load_platform("prod")
    lag = next(g for g in alert_rules(p)["groups"] if g["name"] == "headwater-consumer-lag")["rules"]
    consumes = [(pr.name, c) for pr in p.principals for c in pr.consumes]
    assert len(lag) == len(consumes)
    (rule,) = [r for r in lag if r["labels"]["principal"] == "agent-events"]
    gold = LAG_BUDGETS[Sla.GOLD]
    assert f"> {gold.messages}" in rule["expr"] and 'consumergroup=~"agent-events"' in rule["expr"]
    assert rule["for"] == gold.for_ and rule["labels"]["severity"] == gold.severity
    (registry,) = {
        r["expr"] for r in lag if r["labels"]["principal"] == "schema-registry" and "journal" in r["expr"]
    }
    assert 'consumergroup=~"schema-registry-.*"' in registry  # prefix groups match every generated group


def test_a_new_flow_gets_its_alert_and_its_panel() -> None:
    p = load_platform("prod")
    runtime = p.principal("agent-runtime")
    extra = replace(
        runtime, consumes=(*runtime.consumes, Consume("agents.events.deadletter.v1", "dlq-triage"))
    )
    p2 = replace(p, principals=tuple(extra if x.name == "agent-runtime" else x for x in p.principals))
    rules = [r for g in alert_rules(p2)["groups"] for r in g["rules"]]
    assert any('consumergroup=~"dlq-triage"' in r["expr"] for r in rules)
    panels = json.dumps(dashboard(p2))
    assert "dlq-triage" in panels and "dlq-triage" not in json.dumps(dashboard(p))


def test_dead_letter_topics_and_apps_are_watched() -> None:
    p = load_platform("prod")
    names = {(r["alert"], r["labels"].get("app")) for g in alert_rules(p)["groups"] for r in g["rules"]}
    assert ("HeadwaterDeadLetters", None) in names
    for app in p.apps:
        assert ("HeadwaterCheckpointsFailing", app.name) in names and (
            "HeadwaterJobRestarting",
            app.name,
        ) in names


def test_lineage_covers_every_flow() -> None:
    p = load_platform("prod")
    graph = lineage_graph(p)
    flows = sum(len(pr.produces) + len(pr.consumes) for pr in p.principals)
    assert len(graph["edges"]) == flows
    assert {
        "from": "principal:agent-events",
        "to": "topic:agents.signals.v1",
        "flow": "produce",
        "exactlyOnce": True,
    } in graph["edges"]
    text = lineage_mermaid(p)
    assert text.startswith("flowchart LR") and "agents_events_raw_v1 -->|agent-events| agent_events" in text


def test_rendered_config_maps_carry_loadable_content() -> None:
    objs = {
        o["metadata"]["name"]: o
        for o in render_observability(load_platform("staging"))
        if o["kind"] == "ConfigMap"
    }
    rules = yaml.safe_load(objs["headwater-alert-rules"]["data"]["headwater.rules.yaml"])
    assert {g["name"] for g in rules["groups"]} >= {
        "headwater-consumer-lag",
        "headwater-kafka",
        "headwater-flink",
    }
    assert objs["headwater-dashboard"]["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(objs["headwater-dashboard"]["data"]["headwater-flows.json"])["panels"]
    assert json.loads(objs["headwater-lineage"]["data"]["lineage.json"])["nodes"]


def _monitors(stack: str) -> dict[str, dict[str, Any]]:
    return {
        o["metadata"]["name"]: o
        for o in render_observability(load_platform(stack))
        if o["kind"] == "PodMonitor"
    }


@pytest.mark.parametrize("stack", STACKS)
def test_something_scrapes_the_brokers_the_exporter_and_every_flink_app(stack: str) -> None:
    p = load_platform(stack)
    monitors = _monitors(stack)
    cluster = p.kafka.cluster_name
    kafka = monitors[f"{cluster}-kafka"]["spec"]
    assert kafka["selector"]["matchLabels"] == {
        "strimzi.io/cluster": cluster,
        "strimzi.io/component-type": "kafka",  # brokers and controllers of every node pool
    }
    assert kafka["podMetricsEndpoints"][0]["port"] == "tcp-prometheus"
    assert kafka["namespaceSelector"] == {"matchNames": [p.namespace]}
    assert (f"{cluster}-kafka-exporter" in monitors) == p.kafka.exporter
    assert (f"{cluster}-cruise-control" in monitors) == (p.kafka.cruise_control is not None)
    for connect in p.connect_clusters:
        spec = monitors[f"{connect.name}-connect"]["spec"]
        assert spec["selector"]["matchLabels"] == {
            "strimzi.io/cluster": connect.name,
            "strimzi.io/kind": "KafkaConnect",
        }
        assert spec["podMetricsEndpoints"][0]["port"] == "tcp-prometheus"
    for app in p.apps:
        spec = monitors[f"flink-{app.name}"]["spec"]
        assert spec["selector"]["matchLabels"]["app.kubernetes.io/name"] == app.name
        assert spec["podMetricsEndpoints"][0]["port"] == "metrics"
    for monitor in monitors.values():
        assert monitor["metadata"]["labels"]["headwater.io/prometheus"] == "true"


def test_flink_pod_monitors_point_at_the_port_the_pod_template_names() -> None:
    from components.flink_application import PROMETHEUS_PORT, render_flink_applications

    p = load_platform("prod")
    deployments = [o for o in render_flink_applications(p) if o["kind"] == "FlinkDeployment"]
    assert deployments
    for d in deployments:
        (main,) = d["spec"]["podTemplate"]["spec"]["containers"]
        ports = {port["name"]: port["containerPort"] for port in main["ports"]}
        monitor = _monitors("prod")[f"flink-{d['metadata']['name']}"]
        assert ports[monitor["spec"]["podMetricsEndpoints"][0]["port"]] == PROMETHEUS_PORT
        assert d["spec"]["flinkConfiguration"]["metrics.reporter.prom.port"] == str(PROMETHEUS_PORT)
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert selector.items() <= d["spec"]["podTemplate"]["metadata"]["labels"].items()


def test_cruise_control_exposes_metrics_when_enabled() -> None:
    from components.kafka_cluster import render_kafka_cluster

    p = load_platform("prod")
    assert p.kafka.cruise_control
    objs = render_kafka_cluster(p.kafka, p.namespace, p.tier)
    (kafka,) = [o for o in objs if o["kind"] == "Kafka"]
    ref = kafka["spec"]["cruiseControl"]["metricsConfig"]["valueFrom"]["configMapKeyRef"]
    (cm,) = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == ref["name"]]
    assert "kafka.cruisecontrol" in cm["data"][ref["key"]]


def test_the_prometheus_rule_carries_the_same_groups_as_the_config_map() -> None:
    objs = render_observability(load_platform("prod"))
    (rule,) = [o for o in objs if o["kind"] == "PrometheusRule"]
    (cm,) = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "headwater-alert-rules"]
    assert rule["spec"] == yaml.safe_load(cm["data"]["headwater.rules.yaml"])
    assert rule["metadata"]["labels"]["headwater.io/prometheus"] == "true"


def test_the_dashboard_reads_broker_throughput_and_request_latency() -> None:
    from components.observability import queried_metrics
    from headwater import kafka_metrics

    names = queried_metrics(load_platform("prod"))
    assert {kafka_metrics.BYTES_IN, kafka_metrics.MESSAGES_IN, kafka_metrics.REQUEST_TOTAL_TIME} <= names


def test_each_cdc_source_is_watched_for_a_failed_connector_and_a_trailing_slot() -> None:
    platform = load_platform("prod")
    assert platform.sources
    rules = {
        (r["alert"], r["labels"]["source"]): r
        for g in alert_rules(platform)["groups"]
        for r in g["rules"]
        if g["name"] == "headwater-cdc"
    }
    for source in platform.sources:
        failed = rules[("HeadwaterCdcConnectorFailed", source.name)]
        assert f'connector="{source.connector_name}"' in failed["expr"]
        assert source.slot_name in failed["annotations"]["summary"]
        behind = rules[("HeadwaterCdcBehind", source.name)]
        assert f'name="{source.topic_prefix}"' in behind["expr"]  # Debezium names its metrics by topic.prefix
        assert behind["expr"].endswith("> 60000")  # the routed approvals topic is gold
        retains = rules[("HeadwaterCdcSlotRetainsWal", source.name)]
        assert f'slot_name="{source.slot_name}"' in retains["expr"]
        assert retains["expr"].endswith(f"> {1024**3}")  # slotWalBudget's default, 1Gi
        inactive = rules[("HeadwaterCdcSlotInactive", source.name)]
        assert f'headwater_cdc_slot_inactive{{slot_name="{source.slot_name}"}}' in inactive["expr"]
    assert len(rules) == 4 * len(platform.sources)


def test_a_stack_sets_how_much_wal_a_slot_may_hold_back() -> None:
    platform = load_platform("prod")
    source = platform.sources[0]
    tighter = dataclasses.replace(
        platform,
        sources=(
            dataclasses.replace(
                source, endpoint=dataclasses.replace(source.endpoint, slot_wal_budget="256Mi")
            ),
        ),
    )
    (retains,) = [
        r
        for g in alert_rules(tighter)["groups"]
        for r in g["rules"]
        if r["alert"] == "HeadwaterCdcSlotRetainsWal"
    ]
    assert retains["expr"].endswith(f"> {256 * 1024**2}")
    assert "256Mi" in retains["annotations"]["summary"]
