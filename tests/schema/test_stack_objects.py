"""Every object every shipped stack renders validates against its upstream schema, unknown fields rejected.

Custom resources against the CRDs of the pinned operator versions (Strimzi, Flink operator) taken from Maven
Central; core objects against the Kubernetes schemas. Helm releases are not Kubernetes objects: their chart
and version are pinned (tested with the components).
"""

from __future__ import annotations

import pytest

from headwater.config import load_platform, stack_names
from headwater_cli.render import render_stack
from headwater_cli.validate import errors_only, validate_objects


@pytest.mark.parametrize("stack", stack_names())
def test_every_rendered_object_is_schema_valid(stack: str) -> None:
    objs = [o for o in render_stack(load_platform(stack)) if o["kind"] != "HelmRelease"]
    kinds = {o["kind"] for o in objs}
    assert {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser", "Namespace", "ConfigMap"} <= kinds
    assert errors_only(validate_objects(objs)) == {}


def test_a_broken_rendered_object_is_caught() -> None:
    """The check above can fail: a field Strimzi 1.x removed from `Kafka` is reported with its path."""
    objs = render_stack(load_platform("prod"))
    (kafka,) = [o for o in objs if o["kind"] == "Kafka"]
    kafka["spec"]["kafka"]["replicas"] = 3
    problems = errors_only(validate_objects([kafka]))
    assert list(problems) == ["Kafka/headwater/headwater"]
    assert any("spec.kafka" in m and "replicas" in m for m in problems["Kafka/headwater/headwater"])


def test_monitoring_objects_are_rendered_and_a_broken_one_is_caught() -> None:
    """PodMonitors are checked against the Prometheus Operator's CRD: a misspelt endpoint field is reported."""
    objs = render_stack(load_platform("prod"))
    monitors = [o for o in objs if o["kind"] == "PodMonitor"]
    assert len(monitors) >= 3 and [o for o in objs if o["kind"] == "PrometheusRule"]
    broken = monitors[0]
    broken["spec"]["podMetricsEndpoints"][0]["targetport"] = "tcp-prometheus"
    problems = errors_only(validate_objects([broken]))
    (messages,) = problems.values()
    assert any("podMetricsEndpoints" in m and "targetport" in m for m in messages)
