"""Rules for the online feature store: Redis keeps its password secret, persists, and speaks TLS where it matters.

Redis's settings are in its config file (the ConfigMap `redis.conf` of the feature store), its volume and
its password in the StatefulSet; both are judged. A Redis without a password answers anyone who reaches it,
one without a persistent volume loses every feature on a restart (the online store is only rebuilt by
replaying the topics), and one without TLS sends the password and every feature in clear.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from components.feature_store import COMPONENT, REDIS
from headwater.spec import Tier
from policies.rulebook import Context, Rule, dig, items, labels_of, mapping, of_kind

COMPONENT_LABEL = "app.kubernetes.io/component"
NAME_LABEL = "app.kubernetes.io/name"
CONFIG_KEY = "redis.conf"
SECRET_WORDS = ("PASSWORD", "AUTH", "SECRET", "TOKEN")


def _directives(text: str) -> dict[str, list[str]]:
    """redis.conf directives (lower-cased), each with the argument strings of every occurrence."""
    out: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition(" ")
        out.setdefault(name.lower(), []).append(rest.strip())
    return out


def _is_feature_store(props: Mapping[str, Any]) -> bool:
    return labels_of(props).get(COMPONENT_LABEL) == COMPONENT


def _redis_config(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[str]:
    if not _is_feature_store(props):
        return
    text = mapping(props.get("data")).get(CONFIG_KEY)
    if not isinstance(text, str):
        return
    name = dig(props, "metadata", "name")
    where = f"ConfigMap {name} ({CONFIG_KEY})"
    conf = _directives(text)
    if "requirepass" in conf:
        yield f"{where}: requirepass is written in the ConfigMap: keep the password in its Secret (featureStore.redis.passwordSecret)"
    elif "include" not in conf and "aclfile" not in conf:
        yield f"{where}: no password (no requirepass include or aclfile): anyone who reaches Redis reads and writes every feature"
    if conf.get("protected-mode") == ["no"]:
        yield f"{where}: protected-mode no: remove it"
    if conf.get("appendonly") != ["yes"]:
        yield f"{where}: appendonly is not yes: a restart loses every write since the last snapshot; set appendonly yes"
    if ctx.tier in (Tier.STAGING, Tier.PROD):
        if not conf.get("tls-port") or not conf.get("tls-cert-file") or not conf.get("tls-key-file"):
            yield (
                f"{where}: no TLS listener (tls-port, tls-cert-file, tls-key-file): the password and every feature "
                "cross the network in clear; set featureStore.redis.tlsSecret in the stack"
            )
        if conf.get("port", ["6379"])[-1] != "0":
            yield f"{where}: a plaintext port is open next to TLS: set port 0"


def _secret_literals(pod: Mapping[str, Any], where: str) -> Iterator[str]:
    for c in [mapping(c) for key in ("initContainers", "containers") for c in items(pod.get(key))]:
        for env in items(c.get("env")):
            env = mapping(env)
            env_name = str(env.get("name") or "")
            value = env.get("value")
            if (
                any(w in env_name.upper() for w in SECRET_WORDS)
                and isinstance(value, str)
                and "$(" not in value
            ):
                yield (
                    f"{where}: container {c.get('name')} sets {env_name} as a literal value: take it from its "
                    "Secret (valueFrom.secretKeyRef)"
                )


def _redis_workload(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[str]:
    if not _is_feature_store(props):
        return
    kind = props.get("kind") or resource_type.rsplit(":", 1)[-1]
    name = dig(props, "metadata", "name")
    pod = mapping(dig(props, "spec", "template", "spec"))
    yield from _secret_literals(pod, f"{kind} {name}")
    if labels_of(props).get(NAME_LABEL) != REDIS:
        return
    if kind != "StatefulSet":
        yield f"{kind} {name}: the online store runs as a {kind}: run it as a StatefulSet with a persistent volume claim"
        return
    claims = {dig(mapping(c), "metadata", "name") for c in items(dig(props, "spec", "volumeClaimTemplates"))}
    mounted = {
        mapping(m).get("name")
        for c in items(pod.get("containers"))
        for m in items(mapping(c).get("volumeMounts"))
    }
    if not claims & mounted:
        yield (
            f"StatefulSet {name}: no persistent volume claim is mounted: Redis's data dies with the pod; add a "
            "volumeClaimTemplate and mount it at the data directory"
        )
    secret_env = [
        e
        for c in items(pod.get("containers"))
        for e in items(mapping(c).get("env"))
        if dig(mapping(e), "valueFrom", "secretKeyRef", "name")
    ]
    if not secret_env:
        yield f"StatefulSet {name}: Redis gets no password from a Secret: set featureStore.redis.passwordSecret"


RULES: tuple[Rule, ...] = (
    Rule(
        name="feature-store-redis-config",
        description=(
            "The online store's Redis needs a password kept out of its config, persists every write (appendonly), "
            "and listens on TLS only in staging and prod."
        ),
        applies=of_kind("core", "ConfigMap"),
        check=_redis_config,
    ),
    Rule(
        name="feature-store-redis-workload",
        description=(
            "The online store runs as a StatefulSet with a persistent volume and its password from a Secret; no "
            "feature-store pod carries a secret as a literal value."
        ),
        applies=of_kind("apps", "StatefulSet", "Deployment"),
        check=_redis_workload,
    ),
)
