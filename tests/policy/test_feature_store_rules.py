"""Feature store rules: each passes what the shipped stacks render and fails a weakened object, saying what to set."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from headwater.config import stack_names

Obj = dict[str, Any]
Get = Callable[[str, str], Obj]
Judge = Callable[..., list[str]]

CONFIG = "ConfigMap/headwater/feature-store-redis-config"
REDIS = "StatefulSet/headwater/feature-store-redis"
MATERIALIZER = "Deployment/headwater/feature-materializer"


def _conf(obj: Obj) -> str:
    text: str = obj["data"]["redis.conf"]
    return text


def _without(obj: Obj, prefix: str) -> Obj:
    obj["data"]["redis.conf"] = "\n".join(
        line for line in _conf(obj).splitlines() if not line.startswith(prefix)
    )
    return obj


@pytest.mark.parametrize("stack", stack_names())
def test_every_shipped_stack_passes_the_feature_store_rules(stack: str, obj: Get, judge: Judge) -> None:
    for key, rule in (
        (CONFIG, "feature-store-redis-config"),
        (REDIS, "feature-store-redis-workload"),
        (MATERIALIZER, "feature-store-redis-workload"),
        ("Deployment/headwater/feature-server", "feature-store-redis-workload"),
    ):
        assert judge(rule, obj(stack, key), stack) == [], (rule, key)


def test_redis_without_tls_fails_in_staging_and_prod_only(obj: Get, judge: Judge) -> None:
    config = _without(obj("prod", CONFIG), "tls-")
    (message,) = judge("feature-store-redis-config", config, "prod")
    assert message.startswith("ConfigMap feature-store-redis-config (redis.conf): no TLS listener")
    assert "set featureStore.redis.tlsSecret" in message
    assert judge("feature-store-redis-config", config, "dev") == []
    # TLS next to an open plaintext port is no better.
    plain = obj("staging", CONFIG)
    plain["data"]["redis.conf"] = _conf(plain).replace("port 0", "port 6379")
    (message,) = judge("feature-store-redis-config", plain, "staging")
    assert "a plaintext port is open next to TLS: set port 0" in message
    # dev renders no TLS at all, and passes as dev.
    assert judge("feature-store-redis-config", obj("dev", CONFIG), "dev") == []
    assert "no TLS listener" in judge("feature-store-redis-config", obj("dev", CONFIG), "prod")[0]


def test_redis_without_a_password_or_with_it_in_the_config_fails_everywhere(obj: Get, judge: Judge) -> None:
    open_redis = _without(obj("dev", CONFIG), "include")
    (message,) = judge("feature-store-redis-config", open_redis, "dev")
    assert "no password" in message and "anyone who reaches Redis" in message
    written = obj("dev", CONFIG)
    written["data"]["redis.conf"] = _conf(written) + 'requirepass "hunter2"\n'
    (message,) = judge("feature-store-redis-config", written, "local")
    assert "requirepass is written in the ConfigMap" in message


def test_redis_without_persistence_fails(obj: Get, judge: Judge) -> None:
    config = obj("prod", CONFIG)
    config["data"]["redis.conf"] = _conf(config).replace("appendonly yes", "appendonly no")
    (message,) = judge("feature-store-redis-config", config, "prod")
    assert "appendonly is not yes" in message
    sts = obj("prod", REDIS)
    sts["spec"].pop("volumeClaimTemplates")
    (message,) = judge("feature-store-redis-workload", sts, "prod")
    assert message.startswith("StatefulSet feature-store-redis: no persistent volume claim is mounted")


def test_a_password_as_a_literal_value_fails(obj: Get, judge: Judge) -> None:
    sts = obj("prod", REDIS)
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    container["env"] = [{"name": "REDISCLI_AUTH", "value": "hunter2"}]
    messages = judge("feature-store-redis-workload", sts, "dev")
    assert messages == [
        "StatefulSet feature-store-redis: container redis sets REDISCLI_AUTH as a literal value: take it from "
        "its Secret (valueFrom.secretKeyRef)",
        "StatefulSet feature-store-redis: Redis gets no password from a Secret: set featureStore.redis.passwordSecret",
    ]
    materializer = obj("dev", MATERIALIZER)
    (container,) = materializer["spec"]["template"]["spec"]["containers"]
    container["env"].append({"name": "HEADWATER_KAFKA_SASL_PASSWORD", "value": "hunter2"})
    (message,) = judge("feature-store-redis-workload", materializer, "dev")
    assert "sets HEADWATER_KAFKA_SASL_PASSWORD as a literal value" in message
