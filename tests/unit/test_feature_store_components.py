"""The online feature store's Kubernetes objects: Redis, the materializer, the feature server, their network
policies and the freshness alerts, rendered from the spec; and the loader's one-line errors for its settings."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.feature_store import (
    MATERIALIZER,
    REDIS,
    SERVER,
    freshness_rules,
    materializer_kafka_settings,
    redis_config,
    render_feature_store,
)
from components.k8s import object_key
from headwater.config import ConfigError, load_platform, load_stack_config
from headwater.feature_views import FEATURE_SLAS, feature_views, materializer_flows
from headwater.spec import Sla

Obj = dict[str, Any]


def _objs(stack: str) -> dict[str, Obj]:
    return {object_key(o): o for o in render_feature_store(load_platform(stack))}


def _pod(obj: Obj) -> Obj:
    pod: Obj = obj["spec"]["template"]["spec"]
    return pod


def _env(container: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container["env"]}


def test_every_stack_renders_the_whole_feature_store() -> None:
    for stack in ("local", "dev", "staging", "prod"):
        kinds = sorted(key.split("/")[0] for key in _objs(stack))
        assert kinds == [
            "ConfigMap",
            "ConfigMap",
            "Deployment",
            "Deployment",
            "NetworkPolicy",
            "NetworkPolicy",
            "NetworkPolicy",
            "PodMonitor",
            "PrometheusRule",
            "Service",
            "Service",
            "StatefulSet",
        ], stack


def test_a_catalog_without_feature_topics_renders_nothing() -> None:
    from dataclasses import replace

    from headwater.spec import TopicKind

    p = load_platform("dev")
    bare = replace(p, topics=tuple(t for t in p.topics if t.kind != TopicKind.FEATURE))
    assert render_feature_store(bare) == []


def test_redis_in_prod_is_tls_only_persistent_non_root_and_its_password_comes_from_a_secret() -> None:
    objs = _objs("prod")
    conf = redis_config(load_platform("prod"))
    assert objs[f"ConfigMap/headwater/{REDIS}-config"]["data"]["redis.conf"] == conf
    lines = conf.splitlines()
    assert "port 0" in lines and "tls-port 6379" in lines and "appendonly yes" in lines
    assert "tls-ca-cert-file /etc/headwater/redis-tls/ca.crt" in lines
    assert not any(line.startswith("requirepass") for line in lines)
    sts = objs[f"StatefulSet/headwater/{REDIS}"]
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "encrypted-ssd"
    assert claim["spec"]["resources"]["requests"]["storage"] == "100Gi"
    pod = _pod(sts)
    (container,) = pod["containers"]
    assert container["image"] == "redis:7.2.10"
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    assert _env(container)["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"] == {
        "name": "feature-store-redis-auth",
        "key": "password",
    }
    assert "--tls" in container["readinessProbe"]["exec"]["command"][2]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 999
    assert {"name": "tls", "secret": {"secretName": "feature-store-redis-tls"}} in pod["volumes"]
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "8Gi"}


def test_dev_redis_has_no_tls_but_still_a_password_and_the_stack_storage_class() -> None:
    p = load_platform("dev")
    lines = redis_config(p).splitlines()
    assert "port 6379" in lines and not any(line.startswith("tls-") for line in lines)
    assert "include /run/redis/auth.conf" in lines
    sts = _objs("dev")[f"StatefulSet/headwater/{REDIS}"]
    assert (
        sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"]
        == p.kafka.broker_storage.storage_class
    )


def test_no_rendered_object_carries_a_secret_value() -> None:
    for stack in ("dev", "prod"):
        for key, obj in _objs(stack).items():
            if obj["kind"] not in ("Deployment", "StatefulSet"):
                continue
            for c in _pod(obj)["containers"]:
                for e in c["env"]:
                    if "PASSWORD" in e["name"] or "AUTH" in e["name"]:
                        assert "valueFrom" in e or "$(" in e["value"], (key, e)


def test_the_materializer_runs_as_its_catalog_principal_with_its_user_secret_and_the_cluster_ca() -> None:
    for stack, secret_keys in (("prod", {"user.crt", "user.key"}), ("dev", None)):
        p = load_platform(stack)
        flows = materializer_flows(p)
        deployment = _objs(stack)[f"Deployment/headwater/{MATERIALIZER}"]
        pod = _pod(deployment)
        (container,) = pod["containers"]
        args = container["args"]
        assert f"--group={flows.group}" in args and f"--deadletter-topic={flows.deadletter_topic}" in args
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["kafka-ca"]["secret"]["secretName"] == "headwater-cluster-ca-cert"
        env = _env(container)
        settings = materializer_kafka_settings(p, flows)
        if secret_keys:  # mTLS in prod: the user's certificate and key from its Strimzi secret
            assert volumes["kafka-user"]["secret"]["secretName"] == flows.principal
            assert {i["key"] for i in volumes["kafka-user"]["secret"]["items"]} == secret_keys
            assert settings["security.protocol"] == "SSL" and "sasl.username" not in settings
            assert "HEADWATER_KAFKA_SASL_PASSWORD" not in env
        else:  # SCRAM in dev: the password from the user's secret, the name in the settings file
            assert (
                settings["security.protocol"] == "SASL_SSL" and settings["sasl.username"] == flows.principal
            )
            assert (
                env["HEADWATER_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == flows.principal
            )
            assert "kafka-user" not in volumes
        assert (
            env["HEADWATER_REGISTRY_USER_INFO"]["value"]
            == f"{flows.principal}:$(HEADWATER_REGISTRY_PASSWORD)"
        )
        repo = _objs(stack)["ConfigMap/headwater/feature-store-repo"]["data"]
        assert json.loads(repo["kafka.json"]) == settings
        assert [v["name"] for v in json.loads(repo["repo.json"])["views"]] == [
            v.name for v in feature_views(p)
        ]
        assert container["readinessProbe"]["httpGet"]["port"] == "metrics"


def test_only_the_materializer_and_the_server_reach_redis_and_clients_reach_the_server() -> None:
    objs = _objs("prod")
    redis = objs[f"NetworkPolicy/headwater/{REDIS}"]["spec"]
    peers = redis["ingress"][0]["from"]
    assert [p["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for p in peers] == [
        MATERIALIZER,
        SERVER,
    ]
    assert redis["ingress"][0]["ports"] == [{"port": "redis", "protocol": "TCP"}]
    server = objs[f"NetworkPolicy/headwater/{SERVER}"]["spec"]["ingress"][0]["from"]
    assert server == [
        {"podSelector": {}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "agents"}}},
    ]
    materializer = objs[f"NetworkPolicy/headwater/{MATERIALIZER}"]["spec"]["ingress"]
    assert materializer == [{"ports": [{"port": "metrics", "protocol": "TCP"}]}]
    assert objs[f"Deployment/headwater/{SERVER}"]["spec"]["replicas"] == 3


def test_one_freshness_alert_per_view_from_its_sla() -> None:
    p = load_platform("prod")
    views = feature_views(p)
    rule = _objs("prod")["PrometheusRule/headwater/feature-store-freshness"]
    (group,) = rule["spec"]["groups"]
    assert [r["labels"]["view"] for r in group["rules"]] == [v.name for v in views]
    for r, view in zip(group["rules"], views, strict=True):
        budget = FEATURE_SLAS[Sla(view.sla)].freshness_s
        assert f"> {budget})" in r["expr"] and r["labels"]["owner"] == view.owner
    assert rule["metadata"]["labels"]["headwater.io/prometheus"] == "true"


def test_freshness_alerts_fire_under_promtool(tmp_path: Path) -> None:
    """promtool evaluates the rendered rule: a view whose windows keep up is quiet, a stalled one fires
    after its budget and the rule's `for`, and one never written fires too."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make prometheus` installs Debian's prometheus package"
    p = load_platform("prod")
    (view, *_) = feature_views(p)
    rules = freshness_rules(p, (view,))
    (rule,) = rules["groups"][0]["rules"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    metric = f'headwater_feature_window_end_seconds{{view="{view.name}"}}'
    expected = [{"exp_labels": rule["labels"], "exp_annotations": rule["annotations"]}]
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {  # windows keep up: the newest ends a minute before now, all along
                "interval": "1m",
                "input_series": [{"series": metric, "values": "-60+60x60"}],
                "alert_rule_test": [{"eval_time": "60m", "alertname": rule["alert"], "exp_alerts": []}],
            },
            {  # stalled at t=0: older than the budget after it, firing once `for` has passed too
                "interval": "1m",
                "input_series": [{"series": metric, "values": "0x60"}],
                "alert_rule_test": [
                    {"eval_time": "4m", "alertname": rule["alert"], "exp_alerts": []},
                    {"eval_time": "30m", "alertname": rule["alert"], "exp_alerts": expected},
                ],
            },
            {  # nothing written since the materializer started
                "interval": "1m",
                "input_series": [{"series": 'up{job="other"}', "values": "1x60"}],
                "alert_rule_test": [{"eval_time": "30m", "alertname": rule["alert"], "exp_alerts": expected}],
            },
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    done = subprocess.run(
        [promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert rule["expr"].count(str(FEATURE_SLAS[Sla(view.sla)].freshness_s)) == 1


def _config(stack: str, **feature_store: Any) -> dict[str, Any]:
    config = load_stack_config(stack)
    config["featureStore"] = feature_store
    return config


def _problems(stack: str, **feature_store: Any) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_platform(stack, config=_config(stack, **feature_store))
    return err.value.problems


def test_the_loader_refuses_bad_feature_store_settings_one_line_each() -> None:
    problems = _problems(
        "prod",
        image="latest",
        redis={"storage": {"size": "lots"}, "passwordSecret": "Not_A_Name", "colour": "red"},
        server={"replicas": 0, "clientNamespaces": ["Agents"]},
    )
    assert problems == [
        "stack prod: featureStore.redis.storage.size = 'lots' is not valid; allowed: a positive Kubernetes quantity like 500m, 2, 4Gi",
        "stack prod: featureStore.redis.passwordSecret = 'Not_A_Name' is not valid; allowed: a DNS label: lower-case letters, digits and '-'",
        "stack prod: featureStore.server.replicas = 0 is not valid; allowed: an integer > 0",
        "stack prod: unknown key 'featureStore.redis.colour'; allowed keys: passwordSecret, resources, storage, tlsSecret",
        "stack prod: featureStore.server.clientNamespaces = 'Agents' is not valid; allowed: a DNS label: lower-case letters, digits and '-'",
        "stack prod: featureStore.image = 'latest' is not valid; allowed: a pinned tag (not 'latest') or a digest sha256:...",
        "stack prod: featureStore.redis.tlsSecret = None is not valid; allowed: a Secret with tls.crt, tls.key and ca.crt outside local and dev: the online store's password and features never cross the network in clear",
    ]


def test_the_loader_wants_an_image_and_in_staging_a_tls_secret() -> None:
    (missing,) = _problems("dev")
    assert missing.startswith(
        "stack dev: featureStore.image = None is not valid; allowed: the feature store's image"
    )
    assert "features.agent_activity.v1" in missing
    (no_tls,) = _problems("staging", image="0.1.0")
    assert "featureStore.redis.tlsSecret = None" in no_tls
    assert load_platform("dev", config=_config("dev", image="0.1.0")).feature_store is not None


def test_the_component_args_refuse_a_spec_without_feature_store_settings() -> None:
    from dataclasses import replace

    from components.feature_store import FeatureStoreArgs

    FeatureStoreArgs(load_platform("prod"))
    with pytest.raises(ValueError, match="stack prod: no featureStore settings"):
        FeatureStoreArgs(replace(load_platform("prod"), feature_store=None))
