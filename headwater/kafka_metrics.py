"""The brokers' JMX exporter rules: one source for the Kubernetes metrics ConfigMap and the local broker's agent.

Strimzi hands the ConfigMap's text to the Prometheus JMX exporter agent in each broker and controller; the
local broker runs the same agent with the same text (`jmx_exporter_config()`), so what the alerts and
dashboards query is proven on real MBeans here before any cluster exists.

The rules are data, dumped to YAML by a YAML library: a pattern is written once as a Python raw string and
reaches the agent as exactly that regex (no hand-escaped backslashes to double by mistake). Kept small on
purpose: each rule is a metric family someone reads. Names are lowercased by the agent
(`lowercaseOutputName`); counters get `_total`.
"""

from __future__ import annotations

from typing import Any

import yaml

# Metric families the rules produce that the platform's alerts and dashboards read (asserted on a real broker).
BYTES_IN = "kafka_server_brokertopicmetrics_bytesin_total"
BYTES_OUT = "kafka_server_brokertopicmetrics_bytesout_total"
MESSAGES_IN = "kafka_server_brokertopicmetrics_messagesin_total"
UNDER_REPLICATED = "kafka_server_replicamanager_underreplicatedpartitions"
OFFLINE_PARTITIONS = "kafka_controller_kafkacontroller_offlinepartitionscount"
REQUEST_TOTAL_TIME = "kafka_network_requestmetrics_totaltimems"

JMX_RULES: tuple[dict[str, Any], ...] = (
    # Replica fetcher lag per partition.
    {
        "pattern": r"kafka.server<type=(.+), name=(.+), clientId=(.+), topic=(.+), partition=(.*)><>Value",
        "name": "kafka_server_$1_$2",
        "type": "GAUGE",
        "labels": {"clientId": "$3", "topic": "$4", "partition": "$5"},
    },
    # Throughput per topic and for the broker: BytesInPerSec, BytesOutPerSec, MessagesInPerSec, ...
    {
        "pattern": r"kafka.server<type=(.+), name=(.+)PerSec\w*, topic=(.+)><>Count",
        "name": "kafka_server_$1_$2_total",
        "type": "COUNTER",
        "labels": {"topic": "$3"},
    },
    {
        "pattern": r"kafka.server<type=(.+), name=(.+)PerSec\w*><>Count",
        "name": "kafka_server_$1_$2_total",
        "type": "COUNTER",
    },
    # Broker gauges: under-replicated partitions, ISR shrinks, partition and leader counts, ...
    {"pattern": r"kafka.server<type=(.+), name=(.+)><>Value", "name": "kafka_server_$1_$2", "type": "GAUGE"},
    # Controller health (KRaft): offline partitions, active controller, metadata errors.
    {
        "pattern": r"kafka.controller<type=(.+), name=(.+)><>Value",
        "name": "kafka_controller_$1_$2",
        "type": "GAUGE",
    },
    # Request latency percentiles (Produce, FetchConsumer, ...) as a summary-like gauge with a quantile label.
    {
        "pattern": r"kafka.network<type=(.+), name=(.+), request=(.+)><>(\d+)thPercentile",
        "name": "kafka_network_$1_$2",
        "type": "GAUGE",
        "labels": {"request": "$3", "quantile": "0.$4"},
    },
    # Partition state per partition (under min ISR, at min ISR, replica counts).
    {
        "pattern": r"kafka.cluster<type=(.+), name=(.+), topic=(.+), partition=(.*)><>Value",
        "name": "kafka_cluster_$1_$2",
        "type": "GAUGE",
        "labels": {"topic": "$3", "partition": "$4"},
    },
)


# Cruise Control's own MBeans (goal violations, balancedness, executor state), as Strimzi's example exports them.
CRUISE_CONTROL_RULES: tuple[dict[str, Any], ...] = (
    {
        "pattern": r"kafka.cruisecontrol<name=(.+)><>(\w+)",
        "name": "kafka_cruisecontrol_$1_$2",
        "type": "GAUGE",
    },
)


# The MBeans the rules read: the agent queries only these on a scrape, not every bean of the JVM (the
# per-partition `kafka.log` beans alone are thousands on a real broker, and each request type has ten
# latency histograms whose percentiles are computed at every read: only the total time is read).
JMX_OBJECT_NAMES = (
    "kafka.server:*",
    "kafka.controller:*",
    "kafka.network:type=RequestMetrics,name=TotalTimeMs,*",
    "kafka.cluster:*",
)
CRUISE_CONTROL_OBJECT_NAMES = ("kafka.cruisecontrol:*",)


def _config(rules: tuple[dict[str, Any], ...], object_names: tuple[str, ...], what: str) -> str:
    config = {
        "lowercaseOutputName": True,
        "includeObjectNames": list(object_names),
        "rules": [dict(r) for r in rules],
    }
    header = (
        f"# {what} metrics rules of the platform (headwater/kafka_metrics.py); one source for every copy.\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False, width=200)


def jmx_exporter_config() -> str:
    """The brokers' JMX exporter configuration (YAML text), for Strimzi's ConfigMap and the local broker."""
    return _config(JMX_RULES, JMX_OBJECT_NAMES, "Broker")


def cruise_control_config() -> str:
    """Cruise Control's JMX exporter configuration (YAML text), for Strimzi's ConfigMap."""
    return _config(CRUISE_CONTROL_RULES, CRUISE_CONTROL_OBJECT_NAMES, "Cruise Control")


# Kafka Connect workers: worker and task health, source-task throughput, and Debezium's streaming metrics
# (how far behind the database's log the connector is), named like Strimzi's example Connect rules.
CONNECT_RULES: tuple[dict[str, Any], ...] = (
    {
        "pattern": "kafka.connect<type=connect-worker-metrics>([^:]+):",
        "name": "kafka_connect_worker_$1",
        "type": "GAUGE",
    },
    {
        "pattern": "kafka.connect<type=connector-task-metrics, connector=(.+), task=(.+)><>status: ([a-z-]+)",
        "name": "kafka_connect_connector_status",
        "value": 1,
        "labels": {"connector": "$1", "task": "$2", "status": "$3"},
        "type": "GAUGE",
    },
    {
        "pattern": "kafka.connect<type=source-task-metrics, connector=(.+), task=(.+)><>(.+-total|.+-rate|.+-avg|.+-max):",
        "name": "kafka_connect_source_task_$3",
        "labels": {"connector": "$1", "task": "$2"},
        "type": "GAUGE",
    },
    {
        "pattern": "debezium.([^:]+)<type=connector-metrics, context=([^,]+), server=([^,]+)><>([^:]+)",
        "name": "debezium_metrics_$4",
        "labels": {"plugin": "$1", "context": "$2", "name": "$3"},
        "type": "GAUGE",
    },
)
CONNECT_OBJECT_NAMES = ("kafka.connect:*", "debezium.postgres:*")


def connect_jmx_exporter_config() -> str:
    """Kafka Connect's JMX exporter configuration (YAML text), for Strimzi's ConfigMap."""
    return _config(CONNECT_RULES, CONNECT_OBJECT_NAMES, "Kafka Connect")
