"""Images are pinned by digest wherever one is known (headwater.versions.IMAGE_DIGESTS), else by version tag."""

from __future__ import annotations

from typing import Any

import pytest

from components.k8s import object_key
from headwater import versions
from headwater.config import load_platform
from headwater_cli.render import render_stack

D1, D2, D3, D4, D5 = (f"sha256:{str(i) * 64}" for i in range(1, 6))
KNOWN = {
    f"quay.io/strimzi/operator:{versions.STRIMZI_VERSION}": D1,
    f"quay.io/strimzi/kafka:{versions.STRIMZI_VERSION}-kafka-{versions.KAFKA_VERSION}": D2,
    f"apache/flink-kubernetes-operator:{versions.FLINK_OPERATOR_VERSION}": D3,
    f"quay.io/apicurio/apicurio-registry:{versions.APICURIO_REGISTRY_VERSION}": D4,
    "quay.io/minio/minio:RELEASE.2025-04-22T22-12-26Z": D5,
}


def _render(stack: str) -> dict[str, dict[str, Any]]:
    return {object_key(o): o for o in render_stack(load_platform(stack))}


def test_known_digests_pin_every_platform_image(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(versions, "IMAGE_DIGESTS", KNOWN)
    objs = _render("dev")
    strimzi = objs["HelmRelease/headwater-system/strimzi-cluster-operator"]["values"]
    assert strimzi["image"] == {"digest": D1}
    for key in ("topicOperator", "userOperator", "kafkaInit"):
        assert strimzi[key] == {"image": {"digest": D1}}
    for key in ("kafka", "kafkaExporter", "cruiseControl"):
        assert strimzi[key] == {"image": {"digest": D2}}
    flink = objs["HelmRelease/headwater-system/flink-kubernetes-operator"]["values"]["image"]
    assert flink["digest"] == D3 and flink["tag"] == versions.FLINK_OPERATOR_VERSION
    registry = objs["Deployment/headwater/schema-registry"]["spec"]["template"]["spec"]["containers"][0]
    assert (
        registry["image"] == f"quay.io/apicurio/apicurio-registry:{versions.APICURIO_REGISTRY_VERSION}@{D4}"
    )
    minio = objs["Deployment/headwater/minio"]["spec"]["template"]["spec"]["containers"][0]
    assert minio["image"].endswith(f"@{D5}")


def test_without_a_known_digest_images_keep_their_version_tags() -> None:
    assert versions.IMAGE_DIGESTS == {}  # none could be read from a registry where this is built
    objs = _render("dev")
    strimzi = objs["HelmRelease/headwater-system/strimzi-cluster-operator"]["values"]
    assert "image" not in strimzi and strimzi["defaultImageTag"] == versions.STRIMZI_VERSION
    registry = objs["Deployment/headwater/schema-registry"]["spec"]["template"]["spec"]["containers"][0]
    assert "@" not in registry["image"]


def test_a_malformed_digest_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    ref = f"quay.io/apicurio/apicurio-registry:{versions.APICURIO_REGISTRY_VERSION}"
    monkeypatch.setattr(versions, "IMAGE_DIGESTS", {ref: "sha256:abc"})
    with pytest.raises(ValueError, match="is not valid; allowed: sha256:<64 hex digits>"):
        _render("dev")
