"""Observability from the spec: alert rules, a dashboard and the lineage graph, as plain ConfigMaps.

Everything is derived from the declared flows, so a new consumer group or topic gets its lag alert, its panel
and its place in the lineage graph without anyone writing them:
- alert rules (Prometheus rule file) for consumer lag per group with thresholds from the consumed topic's
  SLA, under-replicated and offline partitions, dead letters arriving, and Flink checkpoint failures and
  restarts per app; loaded by a Prometheus that watches ConfigMaps labelled `headwater.io/prometheus-rules`;
- a Grafana dashboard (ConfigMap labelled `grafana_dashboard: "1"`, the sidecar convention) with a row per
  flow: topic in/out rates, lag per group, dead letters, checkpoint durations;
- the lineage graph (producer -> topic -> consumer group -> consumer), as JSON for catalogs and as Mermaid.

The metric names are those of the exporters the platform configures: Strimzi's Kafka Exporter
(`kafka_consumergroup_lag`, `kafka_topic_partition_current_offset`), the brokers' JMX rules in
`headwater.kafka_metrics` and Flink's Prometheus reporter (`flink_jobmanager_job_*`).

What scrapes them: PodMonitors (Prometheus Operator, `monitoring.coreos.com/v1`) for the brokers and
controllers, Kafka Exporter and Cruise Control (Strimzi's `tcp-prometheus` port) and every Flink app (its
`metrics` port, 9249), and the alert rules as a PrometheusRule too, so a Prometheus Operator picks up
everything by the label `headwater.io/prometheus: "true"`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import promql_parser
import pulumi

from components.flink_application import METRICS_PORT_NAME
from components.k8s import create_object, labels, metadata, to_yaml
from headwater import kafka_metrics, versions
from headwater.cdc import SLOT_INACTIVE, SLOT_RETAINED_BYTES, slot_wal_budget_bytes
from headwater.spec import Flow, Platform, Sla, TopicKind

RULES_KEY = "headwater.rules.yaml"
DASHBOARD_KEY = "headwater-flows.json"
# Label a Prometheus (Operator) selects the platform's PodMonitors and PrometheusRule by.
PROMETHEUS_SELECTOR = {"headwater.io/prometheus": "true"}
STRIMZI_METRICS_PORT = "tcp-prometheus"  # the name Strimzi gives the metrics port of its pods


@dataclass(frozen=True)
class LagBudget:
    """How far a consumer of a topic of this SLA may fall behind, and for how long, before someone is paged."""

    messages: int
    for_: str
    severity: str


# How long a CDC source's events may trail the commits they capture (Debezium's MilliSecondsBehindSource),
# by the strictest SLA of the topics it routes to: while they trail, PostgreSQL keeps every WAL segment since
# the slot's confirmed position.
CDC_BEHIND_BUDGETS_MS: dict[Sla, int] = {Sla.GOLD: 60_000, Sla.SILVER: 300_000, Sla.BRONZE: 900_000}
_SLA_ORDER = (Sla.GOLD, Sla.SILVER, Sla.BRONZE)
CDC_GROUP = "headwater-cdc"

LAG_BUDGETS: dict[Sla, LagBudget] = {
    Sla.GOLD: LagBudget(10_000, "5m", "critical"),
    Sla.SILVER: LagBudget(100_000, "15m", "warning"),
    Sla.BRONZE: LagBudget(1_000_000, "1h", "info"),
}


def _rule(alert: str, expr: str, for_: str, severity: str, summary: str, **extra: str) -> dict[str, Any]:
    return {
        "alert": alert,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity, **extra},
        "annotations": {"summary": summary},
    }


def alert_rules(platform: Platform) -> dict[str, Any]:
    """The Prometheus rule file of a stack (groups of alerts), derived from topics, flows and apps."""
    lag: list[dict[str, Any]] = []
    for principal in platform.principals:
        for c in principal.consumes:
            budget = LAG_BUDGETS[platform.topic(c.topic).sla]
            group = f"{c.group}.*" if c.group_pattern == "prefix" else c.group
            lag.append(
                _rule(
                    "HeadwaterConsumerLag",
                    f'sum by (consumergroup, topic) (kafka_consumergroup_lag{{consumergroup=~"{group}", '
                    f'topic="{c.topic}"}}) > {budget.messages}',
                    budget.for_,
                    budget.severity,
                    f"{principal.name} (group {c.group}) is more than {budget.messages} records behind on {c.topic}",
                    principal=principal.name,
                    owner=platform.topic(c.topic).owner,
                    # A principal may read several topics: each rule must be told apart by its labels.
                    topic=c.topic,
                )
            )
    kafka = [
        _rule(
            "HeadwaterUnderReplicatedPartitions",
            "max(kafka_server_replicamanager_underreplicatedpartitions) > 0",
            "10m",
            "warning",
            "partitions have fewer in-sync replicas than their replication factor",
        ),
        _rule(
            "HeadwaterOfflinePartitions",
            "max(kafka_controller_kafkacontroller_offlinepartitionscount) > 0",
            "1m",
            "critical",
            "partitions have no leader: producers and consumers of them are stopped",
        ),
    ]
    dead = [
        _rule(
            "HeadwaterDeadLetters",
            f'sum by (topic) (increase(kafka_topic_partition_current_offset{{topic="{t.name}"}}[10m])) > 0',
            "0m",
            "warning",
            f"records were rejected into {t.name}; read their reasons there",
            owner=t.owner,
            topic=t.name,  # one rule per dead-letter topic: an owner may have several
        )
        for t in platform.topics
        if t.kind == TopicKind.DEADLETTER
    ]
    flink = []
    for app in platform.apps:
        job = f'job_name=~"{app.name}.*"'
        flink += [
            _rule(
                "HeadwaterCheckpointsFailing",
                f"increase(flink_jobmanager_job_numberOfFailedCheckpoints{{{job}}}[15m]) > 0",
                "0m",
                "warning",
                f"{app.name}: checkpoints fail, so its exactly-once outputs stop committing",
                app=app.name,
            ),
            _rule(
                "HeadwaterJobRestarting",
                f"increase(flink_jobmanager_job_numRestarts{{{job}}}[15m]) > 3",
                "0m",
                "critical",
                f"{app.name} restarted more than 3 times in 15 minutes",
                app=app.name,
            ),
        ]
    groups = [
        {"name": "headwater-consumer-lag", "rules": lag},
        {"name": CDC_GROUP, "rules": _cdc_rules(platform)},
        {"name": "headwater-kafka", "rules": kafka},
        {"name": "headwater-dead-letters", "rules": dead},
        {"name": "headwater-flink", "rules": flink},
    ]
    return {"groups": [g for g in groups if g["rules"]]}


def _cdc_rules(platform: Platform) -> list[dict[str, Any]]:
    """Per CDC source: its connector failed (nothing reads the replication slot, so the database keeps every WAL
    segment from then on and its disk fills), or its events trail their commits beyond the SLA's budget."""
    rules = []
    for source in platform.sources:
        sla = min((platform.topic(r.topic).sla for r in source.routes), key=_SLA_ORDER.index)
        budget = LAG_BUDGETS[sla]
        behind_ms = CDC_BEHIND_BUDGETS_MS[sla]
        rules += [
            _rule(
                "HeadwaterCdcConnectorFailed",
                f'max by (connector) (kafka_connect_connector_status{{connector="{source.connector_name}", '
                'status="failed"}) > 0',
                "5m",
                "critical",
                f"{source.connector_name} failed: nothing reads replication slot {source.slot_name}, so "
                f"{source.database} keeps every WAL segment from then on; restart the task once the cause is fixed",
                source=source.name,
                owner=source.owner,
            ),
            _rule(
                "HeadwaterCdcBehind",
                'max by (name) (debezium_metrics_millisecondsbehindsource{plugin="postgres", '
                f'context="streaming", name="{source.topic_prefix}"}}) > {behind_ms}',
                budget.for_,
                budget.severity,
                f"{source.name}'s outbox events reach Kafka more than {behind_ms // 1000}s after their commits; "
                f"replication slot {source.slot_name} holds the WAL since",
                source=source.name,
                owner=source.owner,
            ),
            # Read from the database itself (the slot exporter), so they hold when Connect is gone entirely and
            # its own metrics with it.
            _rule(
                "HeadwaterCdcSlotRetainsWal",
                f'max by (slot_name) ({SLOT_RETAINED_BYTES}{{slot_name="{source.slot_name}"}}) '
                f"> {slot_wal_budget_bytes(source)}",
                "10m",
                budget.severity,
                f"replication slot {source.slot_name} holds back more than {source.endpoint.slot_wal_budget} of "
                f"{source.database}'s WAL: its consumer ({source.connector_name}) lags or is gone, and the "
                "database's disk fills until it catches up or the slot is dropped",
                source=source.name,
                owner=source.owner,
            ),
            _rule(
                "HeadwaterCdcSlotInactive",
                f'max by (slot_name) ({SLOT_INACTIVE}{{slot_name="{source.slot_name}"}}) > 0',
                "10m",
                budget.severity,
                f"nothing reads replication slot {source.slot_name} of {source.database}: the Connect cluster "
                f"or {source.connector_name} is down, and the slot keeps every WAL segment since",
                source=source.name,
                owner=source.owner,
            ),
        ]
    return rules


def _panel(title: str, expr: str, legend: str, panel_id: int, y: int, x: int) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": title,
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "targets": [{"expr": expr, "legendFormat": legend, "refId": "A"}],
    }


def dashboard(platform: Platform) -> dict[str, Any]:
    """A Grafana dashboard with one row per topic: rate in, and lag of every group that reads it."""
    panels: list[dict[str, Any]] = []
    y = 0
    for topic in platform.topics:
        readers = [(p.name, c) for p in platform.principals for c in p.consumes if c.topic == topic.name]
        panels.append(
            {
                "id": len(panels) + 1,
                "type": "row",
                "title": f"{topic.name} ({topic.sla}, {topic.owner})",
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
            }
        )
        y += 1
        panels.append(
            _panel(
                "records in / s",
                f'sum(rate(kafka_topic_partition_current_offset{{topic="{topic.name}"}}[1m]))',
                topic.name,
                len(panels) + 1,
                y,
                0,
            )
        )
        if readers:
            groups = "|".join(f"{c.group}.*" if c.group_pattern == "prefix" else c.group for _, c in readers)
            panels.append(
                _panel(
                    "consumer lag (records)",
                    f'sum by (consumergroup) (kafka_consumergroup_lag{{topic="{topic.name}", consumergroup=~"{groups}"}})',
                    "{{consumergroup}}",
                    len(panels) + 1,
                    y,
                    12,
                )
            )
        y += 8
    panels.append(
        {
            "id": len(panels) + 1,
            "type": "row",
            "title": f"brokers ({platform.kafka.cluster_name})",
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
        }
    )
    y += 1
    # The brokers' meters come per topic and broker-wide (no topic label): the broker-wide ones, not a sum of both.
    broker_panels = [
        ("bytes in / s", f'sum(rate({kafka_metrics.BYTES_IN}{{topic=""}}[1m]))', "in"),
        ("bytes out / s", f'sum(rate({kafka_metrics.BYTES_OUT}{{topic=""}}[1m]))', "out"),
        (
            "records in / s per topic",
            f'sum by (topic) (rate({kafka_metrics.MESSAGES_IN}{{topic!=""}}[1m]))',
            "{{topic}}",
        ),
        (
            "request latency p99 (ms)",
            f'max by (request) ({kafka_metrics.REQUEST_TOTAL_TIME}{{quantile="0.99", '
            'request=~"Produce|FetchConsumer|FetchFollower"})',
            "{{request}}",
        ),
    ]
    for i, (title, expr, legend) in enumerate(broker_panels):
        panels.append(_panel(title, expr, legend, len(panels) + 1, y, 12 * (i % 2)))
        if i % 2:
            y += 8
    for app in platform.apps:
        panels.append(
            _panel(
                f"{app.name}: last checkpoint duration (ms)",
                f'max(flink_jobmanager_job_lastCheckpointDuration{{job_name=~"{app.name}.*"}})',
                app.name,
                len(panels) + 1,
                y,
                0,
            )
        )
        y += 8
    return {
        "title": f"Headwater flows ({platform.stack})",
        "uid": f"headwater-flows-{platform.stack}",
        "schemaVersion": 39,
        "tags": ["headwater"],
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]},
        "panels": panels,
    }


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (what must exist for it to mean anything)."""
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def queried_metrics(platform: Platform, *, cdc: bool = True) -> set[str]:
    """Every metric name the stack's alert rules and dashboard read (without the CDC alerts' with `cdc=False`:
    where no Connect worker runs, as in `make local --no-cdc`)."""
    exprs = [
        r["expr"]
        for g in alert_rules(platform)["groups"]
        if cdc or g["name"] != CDC_GROUP
        for r in g["rules"]
    ]
    exprs += [t["expr"] for panel in dashboard(platform)["panels"] for t in panel.get("targets", [])]
    return set().union(*(metric_names(e) for e in exprs))


def _pod_monitor(
    platform: Platform, name: str, selector: dict[str, str], port: str, relabelings: list[dict[str, Any]]
) -> dict[str, Any]:
    ns = platform.namespace
    endpoint: dict[str, Any] = {"port": port, "path": "/metrics", "interval": "30s"}
    if relabelings:
        endpoint["relabelings"] = relabelings
    return {
        "apiVersion": versions.PROMETHEUS_OPERATOR_API_VERSION,
        "kind": "PodMonitor",
        "metadata": metadata(name, ns, labels("observability", extra=PROMETHEUS_SELECTOR)),
        "spec": {
            "selector": {"matchLabels": dict(sorted(selector.items()))},
            "namespaceSelector": {"matchNames": [ns]},
            "podMetricsEndpoints": [endpoint],
        },
    }


def render_pod_monitors(platform: Platform) -> list[dict[str, Any]]:
    """What scrapes the platform: brokers/controllers, Kafka Exporter, Cruise Control, Kafka Connect (its
    workers' and Debezium's metrics), every Flink app."""
    k = platform.kafka
    cluster = k.cluster_name

    def strimzi(component: str) -> dict[str, str]:
        return {"strimzi.io/cluster": cluster, "strimzi.io/component-type": component}

    pool = {
        "sourceLabels": ["__meta_kubernetes_pod_label_strimzi_io_pool_name"],
        "targetLabel": "pool",
    }
    monitors = [_pod_monitor(platform, f"{cluster}-kafka", strimzi("kafka"), STRIMZI_METRICS_PORT, [pool])]
    if k.exporter:
        monitors.append(
            _pod_monitor(
                platform, f"{cluster}-kafka-exporter", strimzi("kafka-exporter"), STRIMZI_METRICS_PORT, []
            )
        )
    if k.cruise_control is not None:
        monitors.append(
            _pod_monitor(
                platform, f"{cluster}-cruise-control", strimzi("cruise-control"), STRIMZI_METRICS_PORT, []
            )
        )
    for connect in platform.connect_clusters:
        if any(source.connect == connect.name for source in platform.sources):
            # Strimzi labels Connect pods with their KafkaConnect's name and kind (its example PodMonitor's selector).
            selector = {"strimzi.io/cluster": connect.name, "strimzi.io/kind": "KafkaConnect"}
            monitors.append(
                _pod_monitor(platform, f"{connect.name}-connect", selector, STRIMZI_METRICS_PORT, [])
            )
    for app in platform.apps:
        # The Flink app's pods (job and task managers) carry the app's labels from its pod template.
        monitors.append(
            _pod_monitor(
                platform,
                f"flink-{app.name}",
                {"app.kubernetes.io/component": "flink", "app.kubernetes.io/name": app.name},
                METRICS_PORT_NAME,
                [
                    {
                        "sourceLabels": ["__meta_kubernetes_pod_label_component"],
                        "targetLabel": "flink_component",
                    }
                ],
            )
        )
    return monitors


def render_prometheus_rule(platform: Platform) -> dict[str, Any]:
    """The alert rules as a PrometheusRule, the form a Prometheus Operator loads."""
    return {
        "apiVersion": versions.PROMETHEUS_OPERATOR_API_VERSION,
        "kind": "PrometheusRule",
        "metadata": metadata(
            "headwater-alert-rules", platform.namespace, labels("observability", extra=PROMETHEUS_SELECTOR)
        ),
        "spec": alert_rules(platform),
    }


def lineage_graph(platform: Platform) -> dict[str, Any]:
    """Nodes (principals, topics) and edges (produce, consume) of every declared flow."""
    nodes = [
        {
            "id": f"topic:{t.name}",
            "kind": "topic",
            "owner": t.owner,
            "sla": t.sla.value,
            "topicKind": t.kind.value,
        }
        for t in platform.topics
    ] + [
        {"id": f"principal:{p.name}", "kind": p.kind, "description": p.description}
        for p in platform.principals
    ]
    edges: list[dict[str, Any]] = []
    for f in platform.flows():
        principal, topic = f"principal:{f.principal}", f"topic:{f.topic}"
        if f.direction == "produce":
            edges.append({"from": principal, "to": topic, "flow": "produce", "exactlyOnce": f.exactly_once})
        else:
            edges.append({"from": topic, "to": principal, "flow": "consume", "group": f.group})
    return {"nodes": nodes, "edges": sorted(edges, key=lambda e: (e["from"], e["to"]))}


def lineage_mermaid(platform: Platform) -> str:
    """The lineage graph as a Mermaid flowchart (renders in GitHub, GitLab and most wikis)."""

    def node(name: str) -> str:
        return name.replace(".", "_").replace("-", "_")

    by_principal: dict[str, list[Flow]] = {}
    for f in platform.flows():
        by_principal.setdefault(f.principal, []).append(f)
    lines = ["flowchart LR"]
    for t in platform.topics:
        lines.append(f'  {node(t.name)}[("{t.name}")]')
    for p in platform.principals:
        lines.append(f'  {node(p.name)}["{p.name}"]')
        for f in by_principal.get(p.name, []):
            label = f.group if f.direction == "consume" else f.label
            lines.append(f"  {node(f.source)} -->|{label}| {node(f.target)}")
    return "\n".join(lines) + "\n"


def render_observability(platform: Platform) -> list[dict[str, Any]]:
    ns = platform.namespace
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(
                "headwater-alert-rules",
                ns,
                labels("observability", extra={"headwater.io/prometheus-rules": "true"}),
            ),
            "data": {RULES_KEY: to_yaml(alert_rules(platform), sort_keys=False)},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(
                "headwater-dashboard", ns, labels("observability", extra={"grafana_dashboard": "1"})
            ),
            "data": {DASHBOARD_KEY: json.dumps(dashboard(platform), sort_keys=True)},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata("headwater-lineage", ns, labels("observability")),
            "data": {
                "lineage.json": json.dumps(lineage_graph(platform), sort_keys=True),
                "lineage.mmd": lineage_mermaid(platform),
            },
        },
        render_prometheus_rule(platform),
        *render_pod_monitors(platform),
    ]


class Observability(pulumi.ComponentResource):
    """Alert rules, dashboard and lineage graph of the platform, as ConfigMaps for Prometheus and Grafana."""

    config_maps: list[pulumi.Resource]
    """The rendered ConfigMaps."""

    def __init__(self, name: str, platform: Platform, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("headwater:observability:Observability", name, None, opts)
        self.config_maps = [
            create_object(f"{name}-{o['metadata']['name']}", o, pulumi.ResourceOptions(parent=self))
            for o in render_observability(platform)
        ]
        self.register_outputs(
            {"config_maps": [o["metadata"]["name"] for o in render_observability(platform)]}
        )
