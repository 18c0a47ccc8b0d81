"""The CRDs of the pinned operators: where they come from, and how look-ups answer."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from headwater import crds, jvm, versions


def test_strimzi_crds_are_the_pinned_charts(crd_cache: list[crds.CrdSet]) -> None:
    strimzi = crds.strimzi()

    assert strimzi.folder == crds.CHARTS / f"{versions.STRIMZI_CHART}-{versions.STRIMZI_VERSION}" / "crds"
    assert {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser", "KafkaConnect", "KafkaRebalance"} <= set(
        strimzi.crds
    )
    user = strimzi.crds["KafkaUser"]
    assert user["spec"]["group"] == "kafka.strimzi.io"
    assert [(v["name"], v["served"], v["storage"]) for v in user["spec"]["versions"]] == [("v1", True, True)]
    assert "openAPIV3Schema" in user["spec"]["versions"][0]["schema"]


def test_flink_crds_are_the_pinned_operators_own() -> None:
    flink = crds.flink_operator()

    assert flink.folder.parent.name == f"{versions.FLINK_OPERATOR_CHART}-{versions.FLINK_OPERATOR_VERSION}"
    assert {"FlinkDeployment", "FlinkSessionJob", "FlinkStateSnapshot"} <= set(flink.crds)
    assert flink.served_versions("FlinkDeployment") == [versions.FLINK_CRD_API_VERSION.split("/")[1]]
    # The pinned operator accepts the pinned Flink release without any widening of its enum.
    spec = crds.crd_schema(versions.FLINK_CRD_API_VERSION, "FlinkDeployment")["properties"]["spec"]
    assert versions.FLINK_VERSION_ENUM in spec["properties"]["flinkVersion"]["enum"]


def test_vendored_charts_match_their_upstream_checksums() -> None:
    """charts/ holds the upstream charts unmodified: every file is listed with its sha256 and matches it."""
    listed = {}
    for line in (crds.CHARTS / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name] = digest
    own = {crds.CHARTS / "SHA256SUMS", crds.CHARTS / "README.md"}
    on_disk = {
        str(p.relative_to(crds.CHARTS)): p for p in crds.CHARTS.rglob("*") if p.is_file() and p not in own
    }
    assert sorted(on_disk) == sorted(listed)
    for name, path in on_disk.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == listed[name], name


def test_documents_are_every_crd_of_the_chart_as_installed() -> None:
    docs = crds.flink_operator().documents()

    assert {d["spec"]["names"]["kind"] for d in docs} >= {"FlinkDeployment", "FlinkStateSnapshot"}
    docs[0]["spec"]["group"] = "changed.example"
    assert (
        crds.flink_operator().documents()[0]["spec"]["group"] == versions.FLINK_CRD_API_VERSION.split("/")[0]
    )


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
    assert "kafka.strimzi.io: Kafka" in text and "flink.apache.org: " in text and "FlinkDeployment" in text


def test_unserved_version_error_lists_the_served_ones() -> None:
    with pytest.raises(crds.UnservedVersionError, match=r"v1beta2.*served: kafka\.strimzi\.io/v1$"):
        crds.crd_schema("kafka.strimzi.io/v1beta2", "KafkaTopic")


def test_a_missing_chart_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crds, "CHARTS", tmp_path)

    with pytest.raises(
        crds.CrdError, match=r"no CRD folder .*strimzi-kafka-operator-.* vendored chart is missing"
    ):
        crds._load("strimzi", versions.STRIMZI_CHART, crds.STRIMZI_GROUP, versions.STRIMZI_VERSION)


def test_find_java_explains_what_it_found() -> None:
    with pytest.raises(jvm.JavaNotFoundError, match=r"needs Java 99 or newer; found: .*\(\d+\)"):
        jvm.find_java(99)


def test_prometheus_operator_crds_come_from_its_go_module() -> None:
    monitoring = crds.prometheus_operator()

    assert monitoring.folder == crds.CACHE / f"prometheus-operator-{versions.PROMETHEUS_OPERATOR_VERSION}"
    assert {"PodMonitor", "ServiceMonitor", "PrometheusRule"} <= set(monitoring.crds)
    assert monitoring.source["module"].endswith(f"@v{versions.PROMETHEUS_OPERATOR_VERSION}")
    assert monitoring.source["sum"].startswith("h1:")  # checked against the checksum database by `go`
    assert (monitoring.folder / "monitoring.coreos.com_podmonitors.yaml").is_file()
    assert monitoring.served_versions("PodMonitor") == ["v1"]
