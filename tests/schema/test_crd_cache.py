"""The CRD cache: what it holds, how it answers look-ups, and that it is keyed by version."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from headwater import crds, versions


def test_strimzi_crds_are_generated_for_the_pinned_release(crd_cache: list[crds.CrdSet]) -> None:
    strimzi = crds.strimzi()

    assert strimzi.folder == crds.CACHE / f"strimzi-{versions.STRIMZI_VERSION}"
    assert {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser", "KafkaConnect", "KafkaRebalance"} <= set(
        strimzi.crds
    )
    generated = yaml.safe_load((strimzi.folder / "kafkauser.yaml").read_text())
    assert generated["kind"] == "CustomResourceDefinition"
    assert generated["spec"]["group"] == "kafka.strimzi.io"
    assert [(v["name"], v["served"], v["storage"]) for v in generated["spec"]["versions"]] == [
        ("v1", True, True)
    ]
    assert "openAPIV3Schema" in generated["spec"]["versions"][0]["schema"]


def test_flink_crds_come_from_the_operator_api_jar() -> None:
    flink = crds.flink_operator()

    assert flink.folder == crds.CACHE / f"flink-operator-{versions.FLINK_OPERATOR_VERSION}"
    assert {"FlinkDeployment", "FlinkSessionJob", "FlinkStateSnapshot"} <= set(flink.crds)
    assert (flink.folder / "flinkdeployments.flink.apache.org-v1.yml").is_file()
    assert flink.served_versions("FlinkDeployment") == [versions.FLINK_CRD_API_VERSION.split("/")[1]]


def test_crd_schema_is_the_served_versions_open_api_schema() -> None:
    kafka = crds.crd_schema(versions.STRIMZI_API_VERSION, "Kafka")["properties"]["spec"]["properties"][
        "kafka"
    ]

    # Strimzi 1.x: brokers live in node pools, so Kafka has listeners but no replicas or storage.
    assert "listeners" in kafka["properties"]
    assert "replicas" not in kafka["properties"]
    assert "storage" not in kafka["properties"]
    acl = crds.crd_schema(versions.STRIMZI_API_VERSION, "KafkaUser")["properties"]["spec"]["properties"][
        "authorization"
    ]["properties"]["acls"]["items"]
    assert acl["properties"]["operations"]["type"] == "array"
    assert "operation" not in acl["properties"]


def test_unknown_kind_error_names_it_and_lists_known_kinds() -> None:
    with pytest.raises(crds.UnknownKindError) as raised:
        crds.crd_schema("kafka.strimzi.io/v1", "KafkaCluster")

    text = str(raised.value)
    assert "kafka.strimzi.io/v1 KafkaCluster" in text
    assert "KafkaNodePool" in text and "KafkaTopic" in text


def test_unknown_group_error_lists_every_known_group() -> None:
    with pytest.raises(crds.UnknownKindError) as raised:
        crds.crd_schema("registry.apicur.io/v1", "ApicurioRegistry3")

    text = str(raised.value)
    assert "registry.apicur.io/v1 ApicurioRegistry3" in text
    assert "kafka.strimzi.io: Kafka" in text and "flink.apache.org: FlinkDeployment" in text


def test_unserved_version_error_lists_the_served_ones() -> None:
    with pytest.raises(crds.UnservedVersionError, match=r"v1beta2.*served: kafka\.strimzi\.io/v1$"):
        crds.crd_schema("kafka.strimzi.io/v1beta2", "KafkaTopic")


def test_cached_sets_load_from_disk_without_regenerating(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any) -> None:
        raise AssertionError("a cached set was rebuilt")

    monkeypatch.setattr(crds, "_build", refuse)
    crds.strimzi.cache_clear()
    crds.flink_operator.cache_clear()
    try:
        started = time.perf_counter()
        assert "Kafka" in crds.strimzi().crds
        assert "FlinkDeployment" in crds.flink_operator().crds
        assert time.perf_counter() - started < 5
    finally:
        crds.strimzi.cache_clear()
        crds.flink_operator.cache_clear()


def test_cache_folder_is_keyed_by_version_and_rebuilt_on_a_new_stamp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(crds, "CACHE", tmp_path)
    calls: list[Path] = []

    def produce(out: Path) -> dict[str, Any]:
        calls.append(out)
        crd = {"kind": "CustomResourceDefinition", "spec": {"names": {"kind": "Demo"}, "versions": []}}
        (out / "demo.yaml").write_text(yaml.safe_dump(crd))
        return {"call": len(calls)}

    first = crds._load("demo", "demo.example", "1.0", "stamp-a", produce)
    again = crds._load("demo", "demo.example", "1.0", "stamp-a", produce)
    bumped = crds._load("demo", "demo.example", "2.0", "stamp-b", produce)

    assert len(calls) == 2
    assert first.folder == again.folder == tmp_path / "demo-1.0"
    assert bumped.folder == tmp_path / "demo-2.0"
    assert again.source == {"call": 1} and bumped.source == {"call": 2}
    assert list(first.crds) == ["Demo"]


def test_failed_build_leaves_no_half_written_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crds, "CACHE", tmp_path)

    def broken(out: Path) -> dict[str, Any]:
        (out / "partial.yaml").write_text("kind: CustomResourceDefinition\n")
        raise crds.CrdError("generator failed")

    with pytest.raises(crds.CrdError, match="generator failed"):
        crds._load("demo", "demo.example", "1.0", "stamp", broken)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_find_java_explains_what_it_found() -> None:
    with pytest.raises(crds.CrdError, match=r"needs Java 99 or newer; found: .*\(\d+\)"):
        crds.find_java(99)


def test_prometheus_operator_crds_come_from_its_go_module() -> None:
    monitoring = crds.prometheus_operator()

    assert monitoring.folder == crds.CACHE / f"prometheus-operator-{versions.PROMETHEUS_OPERATOR_VERSION}"
    assert {"PodMonitor", "ServiceMonitor", "PrometheusRule"} <= set(monitoring.crds)
    assert monitoring.source["module"].endswith(f"@v{versions.PROMETHEUS_OPERATOR_VERSION}")
    assert monitoring.source["sum"].startswith("h1:")  # checked against the checksum database by `go`
    assert (monitoring.folder / "monitoring.coreos.com_podmonitors.yaml").is_file()
    assert monitoring.served_versions("PodMonitor") == ["v1"]
