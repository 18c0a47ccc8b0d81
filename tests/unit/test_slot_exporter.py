"""The replication slots' exporter on Kubernetes: one per CDC source, reading only the platform's slot query."""

from __future__ import annotations

import dataclasses
from typing import Any

import yaml

from components.slot_exporter import exporter_image, exporter_name, render_slot_exporters
from headwater import versions
from headwater.cdc import SLOT_QUERY, slot_exporter_queries
from headwater.config import load_platform
from headwater.spec import SLOT_PREFIX


def _by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def test_each_source_gets_an_exporter_with_its_login_from_its_secret() -> None:
    platform = load_platform("prod")
    objs = render_slot_exporters(platform)
    (deployment,) = _by_kind(objs, "Deployment")
    source = platform.sources[0]
    assert deployment["metadata"]["name"] == exporter_name(source)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == exporter_image()
    assert container["image"].endswith(f":v{versions.POSTGRES_EXPORTER_VERSION}")
    env = {e["name"]: e for e in container["env"]}
    ep = source.endpoint
    assert env["DATA_SOURCE_URI"]["value"] == f"{ep.host}:{ep.port}/{source.database}?sslmode=verify-full"
    for name, key in (("DATA_SOURCE_USER", "username"), ("DATA_SOURCE_PASS", "password")):
        assert env[name] == {
            "name": name,
            "valueFrom": {"secretKeyRef": {"name": ep.credentials_secret, "key": key}},
        }
    assert "--disable-default-metrics" in container["args"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False


def test_the_query_file_reads_only_the_platforms_logical_slots() -> None:
    platform = load_platform("dev")
    (config_map,) = _by_kind(render_slot_exporters(platform), "ConfigMap")
    queries = yaml.safe_load(config_map["data"]["queries.yaml"])
    assert config_map["data"]["queries.yaml"] == slot_exporter_queries()
    (query,) = queries.values()
    assert query["query"] == SLOT_QUERY
    assert f"'{SLOT_PREFIX}'" in SLOT_QUERY and "slot_type = 'logical'" in SLOT_QUERY
    columns = [next(iter(m)) for m in query["metrics"]]
    assert columns == ["slot_name", "inactive", "retained_bytes", "lag_bytes"]
    assert all(s.slot_name.startswith(SLOT_PREFIX) for s in platform.sources)


def test_prometheus_scrapes_each_exporter_and_nothing_else_reaches_it() -> None:
    platform = load_platform("staging")
    objs = render_slot_exporters(platform)
    (monitor,) = _by_kind(objs, "PodMonitor")
    (policy,) = _by_kind(objs, "NetworkPolicy")
    (deployment,) = _by_kind(objs, "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert monitor["spec"]["selector"]["matchLabels"] == selector
    assert policy["spec"]["podSelector"]["matchLabels"] == selector
    assert policy["spec"]["ingress"] == [{"ports": [{"port": "metrics", "protocol": "TCP"}]}]


def test_no_sources_no_exporter() -> None:
    platform = load_platform("dev")
    assert render_slot_exporters(dataclasses.replace(platform, sources=())) == []
