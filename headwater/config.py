"""Load and validate a stack: the shared catalog plus `stacks/Pulumi.<stack>.yaml`.

Validation collects every problem before anything is built, one message each, naming the stack, the key,
the value and what is allowed. `ConfigError` carries the list; the CLI and the Pulumi program print it and
stop before any resource exists.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlparse

import yaml

from headwater import versions
from headwater.contracts.kafkasql import registry_problems
from headwater.contracts.model import ContractError, load_contracts
from headwater.spec import (
    AT_LEAST_ONCE,
    DELIVERIES,
    EXACTLY_ONCE,
    EXPIRY_ACTIONS,
    K8S_NAME,
    SHA512_HEX,
    SSL_MODES,
    TOPIC_NAME,
    TOPIC_NAME_RULE,
    ActionGate,
    App,
    Authentication,
    ConnectCluster,
    Consume,
    CruiseControl,
    DatabaseEndpoint,
    FeatureStoreSettings,
    FlinkSettings,
    GateAgent,
    GateSettings,
    KafkaSettings,
    OutboxRoute,
    Platform,
    PluginArtifact,
    Principal,
    Produce,
    Quotas,
    RegistrySettings,
    RegistryStorage,
    Resources,
    RiskPolicy,
    S3Credentials,
    SecretValue,
    Sla,
    Source,
    SpanExport,
    Storage,
    Tier,
    Topic,
    TopicKind,
    app_flows,
    connect_principal,
)

ROOT = Path(__file__).resolve().parent.parent
CATALOG_DIR = ROOT / "catalog"
STACKS_DIR = ROOT / "stacks"
NAMESPACE = "headwater"  # Pulumi config namespace: keys are `headwater:<key>`

T = TypeVar("T")
_MISSING = object()
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d)$")
_DURATION_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


class ConfigError(Exception):
    """A stack's configuration is wrong; `problems` has one readable line per problem."""

    def __init__(self, stack: str, problems: list[str]) -> None:
        self.stack = stack
        self.problems = problems
        super().__init__(
            f"stack {stack!r} has {len(problems)} configuration problem(s):\n  " + "\n  ".join(problems)
        )


class _Problems:
    def __init__(self, stack: str) -> None:
        self.stack = stack
        self.items: list[str] = []
        self.malformed = 0  # values missing or of the wrong type: rules comparing values must not run on them

    def add(self, key: str, value: Any, allowed: str) -> None:
        self.items.append(f"stack {self.stack}: {key} = {value!r} is not valid; allowed: {allowed}")


@dataclass
class _Section:
    """A mapping read with type checks; every key read is remembered so leftovers are reported as unknown."""

    problems: _Problems
    path: str
    data: Mapping[str, Any]
    # Where a key's value came from when not from `path` (a stack override merged over the catalog).
    origins: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.seen: set[str] = set()

    def _key(self, key: str) -> str:
        path = self.origins.get(key, self.path)
        return f"{path}.{key}" if path else key

    def path_of(self, key: str) -> str:
        """The full key a person finds `key` under in the files (catalog or stack override)."""
        return self._key(key)

    def get(
        self,
        key: str,
        kind: type[T],
        default: Any = _MISSING,
        *,
        check: Callable[[T], str | None] | None = None,
    ) -> T:
        self.seen.add(key)
        if key not in self.data:
            if default is _MISSING:
                self.problems.malformed += 1
                self.problems.items.append(
                    f"stack {self.problems.stack}: {self._key(key)} is required ({kind.__name__})"
                )
            return cast(T, default)
        value = self.data[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            self.problems.malformed += 1
            self.problems.add(self._key(key), value, f"a {kind.__name__}")
            # Go on with a neutral value so every other problem is still reported in this run.
            return cast(T, default) if default is not _MISSING else kind()
        if check is not None and (why := check(value)) is not None:
            self.problems.add(self._key(key), value, why)
        return cast(T, value)

    def choice(self, key: str, enum: type[Any], default: Any = _MISSING) -> Any:
        allowed = [e.value for e in enum]
        raw = self.get(key, str, default.value if isinstance(default, enum) else default)
        if raw is _MISSING or raw is None:
            return raw
        if raw not in allowed:
            self.problems.add(self._key(key), raw, ", ".join(allowed))
            return enum(allowed[0])
        return enum(raw)

    def section(self, key: str, required: bool = False) -> _Section:
        raw = self.get(key, dict, _MISSING if required else {})
        return _Section(self.problems, self._key(key), raw if isinstance(raw, dict) else {})

    def done(self, allowed: Iterable[str] | None = None) -> None:
        known = set(allowed) if allowed is not None else self.seen
        for key in sorted(set(self.data) - known, key=str):
            self.problems.items.append(
                f"stack {self.problems.stack}: unknown key {self._key(str(key))!r}; allowed keys: {', '.join(sorted(known))}"
            )


def parse_duration_ms(value: str | int) -> int:
    """'7d' -> 604800000; 'forever' or -1 -> -1 (infinite)."""
    if value == "forever" or value == -1:
        return -1
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    m = _DURATION.match(str(value))
    if not m or int(m.group(1)) <= 0:
        raise ValueError(value)
    return int(m.group(1)) * _DURATION_MS[m.group(2)]


def _duration(sec: _Section, key: str, default: Any = _MISSING) -> int:
    raw: Any = sec.get(key, object, default)
    if raw is _MISSING:
        return 0
    try:
        return parse_duration_ms(raw)
    except ValueError:
        sec.problems.add(sec._key(key), raw, "a duration like 500ms, 30s, 15m, 12h, 7d, or 'forever'")
        return 0


# The operator charts a local folder must hold (`<chart>-<version>/Chart.yaml`), like `charts/` in this project.
OPERATOR_CHARTS = (
    (versions.STRIMZI_CHART, versions.STRIMZI_VERSION),
    (versions.FLINK_OPERATOR_CHART, versions.FLINK_OPERATOR_VERSION),
)


def _charts_folder(value: str) -> str | None:
    folder = Path(value) if Path(value).is_absolute() else ROOT / value
    missing = [f"{c}-{v}" for c, v in OPERATOR_CHARTS if not (folder / f"{c}-{v}" / "Chart.yaml").is_file()]
    if not missing:
        return None
    return (
        f"a folder (absolute, or relative to {ROOT}) holding the pinned charts as <chart>-<version>/; "
        f"{folder} lacks {', '.join(missing)}"
    )


def _quantity(value: str) -> str | None:
    """A Kubernetes quantity as the API server reads it (the Kubernetes client's parser), and positive."""
    # imported here: the client is big, and the apps' environment (which reads this module's neighbours) lacks it
    from kubernetes.utils import parse_quantity

    try:
        ok = parse_quantity(value) > 0
    except ValueError:
        ok = False
    return None if ok else "a positive Kubernetes quantity like 500m, 2, 4Gi"


def _positive(value: int) -> str | None:
    return None if value > 0 else "an integer > 0"


def _non_negative(value: int) -> str | None:
    return None if value >= 0 else "an integer >= 0"


def _k8s_name(value: str) -> str | None:
    return (
        None
        if K8S_NAME.match(value) and len(value) <= 63
        else "a DNS label: lower-case letters, digits and '-'"
    )


def _resources(sec: _Section) -> Resources:
    req = sec.section("requests", required=True)
    lim = sec.section("limits", required=True)
    res = Resources(
        cpu_request=req.get("cpu", str, "1", check=_quantity),
        memory_request=req.get("memory", str, "1Gi", check=_quantity),
        cpu_limit=lim.get("cpu", str, "1", check=_quantity),
        memory_limit=lim.get("memory", str, "1Gi", check=_quantity),
    )
    for s in (req, lim):
        s.done(["cpu", "memory"])
    sec.done()
    return res


def _storage(sec: _Section) -> Storage:
    st = Storage(
        size=sec.get("size", str, check=_quantity),
        volumes=sec.get("volumes", int, 1, check=_positive),
        storage_class=sec.get("class", str, None),
        delete_claim=sec.get("deleteClaim", bool, False),
    )
    sec.done()
    return st


def read_yaml(path: Path, stack: str | None = None) -> dict[str, Any]:
    """A YAML file whose top level is a mapping; anything else is a ConfigError naming the file and place."""
    who = f"stack {stack}: " if stack else ""
    try:
        with path.open() as fh:
            data = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            stack or path.stem, [f"{who}{path} is not valid YAML{where}: {problem}; allowed: a YAML mapping"]
        ) from None
    except OSError as exc:
        raise ConfigError(
            stack or path.stem, [f"{who}{path} cannot be read: {exc.strerror or exc}"]
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            stack or path.stem,
            [f"{who}{path}: the top level is a {type(data).__name__}; allowed: a mapping (key: value)"],
        )
    return data


def stack_names(stacks_dir: Path = STACKS_DIR) -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in stacks_dir.glob("Pulumi.*.yaml"))


def load_stack_config(stack: str, stacks_dir: Path = STACKS_DIR) -> dict[str, Any]:
    """The `headwater:*` keys of a stack file, without the namespace; other namespaces are left alone."""
    path = stacks_dir / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        known = ", ".join(stack_names(stacks_dir)) or "none"
        raise ConfigError(stack, [f"stack {stack}: no file {path}; known stacks: {known}"])
    raw = read_yaml(path, stack).get("config") or {}
    if not isinstance(raw, dict):
        raise ConfigError(
            stack,
            [
                f"stack {stack}: config = {_brief(raw)} is not valid; allowed: a mapping of "
                f"`{NAMESPACE}:<key>: value` settings ({path})"
            ],
        )
    return {
        k.split(":", 1)[1]: v for k, v in raw.items() if isinstance(k, str) and k.startswith(f"{NAMESPACE}:")
    }


def _brief(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _catalog_dir(stack: str, value: Any) -> Path:
    """The folder of `catalog.yaml` and its `schemas/`: `headwater:catalog` (relative to the project root)."""
    if value is None:
        return CATALOG_DIR
    folder = Path(str(value)) if Path(str(value)).is_absolute() else ROOT / str(value)
    if not isinstance(value, str) or not (folder / "catalog.yaml").is_file():
        raise ConfigError(
            stack,
            [
                f"stack {stack}: catalog = {value!r} is not valid; allowed: a folder holding catalog.yaml and its "
                f"schemas/ (absolute, or relative to {ROOT})"
            ],
        )
    return folder


SECURE = "secure"  # a stack file's encrypted value: `key: {secure: v1:...}`


def _encrypted_paths(value: Any, path: str) -> list[str]:
    if isinstance(value, dict):
        if set(value) == {SECURE}:
            return [path]
        return [p for k, v in value.items() for p in _encrypted_paths(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _encrypted_paths(v, f"{path}[{i}]")]
    return []


def refuse_encrypted(stack: str, config: Mapping[str, Any]) -> None:
    """Offline tools read the stack file and cannot decrypt its Pulumi secrets: say so, naming each one."""
    found = [p for key, value in config.items() for p in _encrypted_paths(value, key)]
    if found:
        raise ConfigError(
            stack,
            [
                f"stack {stack}: {path} is a Pulumi secret (secure: ...) that the offline tools cannot decrypt; "
                "allowed: run `pulumi preview`/`pulumi up`, which decrypt it, or render from decrypted values "
                f"(`pulumi config --show-secrets --json -s {stack}`)"
                for path in found
            ],
        )


def decode_pulumi_config(values: Mapping[str, str]) -> dict[str, Any]:
    """The `headwater:*` values Pulumi hands a program (strings; objects and lists as JSON), decoded.

    Gives the same mapping `load_stack_config` reads from the stack file, whether a value came from the file,
    `pulumi config set [--path] [--secret]`, `-c key=value` or a Pulumi ESC environment.
    """
    out: dict[str, Any] = {}
    for full_key, raw in values.items():
        namespace, _, key = full_key.partition(":")
        if namespace != NAMESPACE or not key:
            continue
        try:
            out[key] = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            out[key] = raw  # a plain string (`pulumi config set environment dev`)
    return out


def load_platform(
    stack: str,
    config: Mapping[str, Any] | None = None,
    catalog: Mapping[str, Any] | None = None,
    secret_keys: Iterable[str] = (),
    catalog_dir: Path | None = None,
) -> Platform:
    """Build the validated platform spec of `stack` (or raise ConfigError listing every problem).

    `secret_keys`: the top-level keys Pulumi marks secret (`headwater:flink` after `pulumi config set --secret
    --path flink.s3Credentials.secretKey ...`); credentials are only accepted from those.
    """
    secret_keys = frozenset(k.split(":", 1)[-1] for k in secret_keys)
    problems = _Problems(stack)
    config, catalog, catalog_dir = _inputs(problems, config, catalog, catalog_dir)
    platform = _platform(problems, config, catalog, catalog_dir, "flink" in secret_keys)
    _check_assembled(problems, platform)
    if problems.items:
        raise ConfigError(stack, problems.items)
    return platform


def _inputs(
    problems: _Problems,
    config: Mapping[str, Any] | None,
    catalog: Mapping[str, Any] | None,
    catalog_dir: Path | None,
) -> tuple[Mapping[str, Any], Mapping[str, Any], Path]:
    """The stack's settings, the catalog and its folder: read from the files unless given."""
    stack = problems.stack
    if config is None:
        config = load_stack_config(stack)
        refuse_encrypted(stack, config)
    if not isinstance(config, Mapping):
        problems.add("config", _brief(config), f"a mapping of `{NAMESPACE}:<key>: value` settings")
        config = {}
    if catalog_dir is None:
        catalog_dir = _catalog_dir(stack, config.get("catalog"))
    if catalog is None:
        catalog = read_yaml(catalog_dir / "catalog.yaml")
    if not isinstance(catalog, Mapping):
        problems.add("catalog", _brief(catalog), "a mapping with topics, principals and apps")
        catalog = {}
    return config, catalog, catalog_dir


@dataclass(frozen=True)
class _Declared:
    """What the catalog declares, with the stack's overrides merged in."""

    topics: tuple[Topic, ...]
    gate: ActionGate | None
    principals: tuple[Principal, ...]
    clusters: tuple[ConnectCluster, ...]
    sources: tuple[Source, ...]
    apps: tuple[App, ...]


def _declared(cat: _Section, cfg: _Section, tier: Tier, kafka: KafkaSettings) -> _Declared:
    """The catalog's topics, action path, principals, Connect clusters (each also a principal), sources and apps,
    each read with what it refers to already read."""
    topics = _topics(cat, cfg.section("topics"), kafka)
    gate = _action_gate(cat, topics)
    principals = _principals(cat, cfg.section("principals"), kafka, {t.name for t in topics}, gate)
    clusters = _connect_clusters(cat, cfg.section("connect"), topics, {p.name for p in principals})
    sources = _sources(cat, cfg.section("sources"), tier, topics, clusters)
    _contract_checks(cat.problems, clusters, sources)
    # A source missing a topic is already a problem reported above: derive the principals from the others.
    complete = tuple(
        s for s in sources if isinstance(s.dead_letter_topic, str) and isinstance(s.heartbeat_topic, str)
    )
    principals += tuple(connect_principal(c, complete, kafka.authentication) for c in clusters)
    apps = _apps(cat, {p.name for p in principals})
    return _Declared(topics, gate, principals, clusters, sources, apps)


def _platform(
    problems: _Problems,
    config: Mapping[str, Any],
    catalog: Mapping[str, Any],
    catalog_dir: Path,
    flink_secret: bool,
) -> Platform:
    """Every setting of the stack and the catalog, read and checked in one pass (ConfigError if any is wrong),
    assembled into the platform spec."""
    cfg = _Section(problems, "", config)
    cat = _Section(problems, "catalog", catalog)
    tier = cfg.choice("environment", Tier)
    namespace = cfg.get("namespace", str, "headwater", check=_k8s_name)
    watched = tuple(cfg.get("watchedNamespaces", list, [namespace]))
    allow_lb = cfg.get("allowLoadBalancer", bool, False)
    charts = cfg.get("operatorCharts", str, None, check=_charts_folder)
    cfg.seen.add("catalog")  # read by _inputs
    kafka = _kafka(cfg.section("kafka", required=True), tier)
    watched = _strings(cfg, "watchedNamespaces", watched)
    declared = _declared(cat, cfg, tier, kafka)
    flink = _flink(cfg.section("flink", required=True), [a.name for a in declared.apps], flink_secret)
    registry = _registry(cfg.section("registry"))
    feature_store = _feature_store(cfg.section("featureStore"), tier, kafka, declared.topics)
    gate_settings = _gate_settings(cfg.section("actionGate"), declared.gate, tier)
    cfg.done()
    cat.done()
    _cross_checks(problems, tier, kafka, declared.topics, declared.principals)
    if problems.items:
        raise ConfigError(problems.stack, problems.items)
    return Platform(
        stack=problems.stack,
        tier=tier,
        namespace=namespace,
        kafka=kafka,
        topics=declared.topics,
        principals=declared.principals,
        apps=declared.apps,
        flink=flink,
        registry=registry,
        watched_namespaces=watched,
        allow_load_balancer=allow_lb,
        operator_charts=charts,
        catalog_dir=str(catalog_dir),
        connect_clusters=declared.clusters,
        sources=declared.sources,
        feature_store=feature_store,
        action_gate=declared.gate,
        gate_settings=gate_settings,
    )


def _check_assembled(problems: _Problems, platform: Platform) -> None:
    """Rules over the assembled spec: the same functions the components call, so a stack either fails here,
    before anything is built, or not at all."""
    for key, value, allowed in platform.flink.storage_problems():
        problems.add(key, value, allowed)
    for app in platform.apps:
        try:
            app_flows(platform, app)
        except ValueError as why:
            problems.add(f"catalog.principals.{app.name}", "its flows", f"flows a Flink app can run ({why})")
    problems.items.extend(registry_problems(platform))
    try:
        load_contracts(platform)
    except ContractError as err:
        prefix = f"stack {problems.stack}: "
        problems.items.extend(p if p.startswith(prefix) else prefix + p for p in err.problems)


def _strings(sec: _Section, key: str, values: Iterable[Any]) -> tuple[str, ...]:
    """A list setting whose items must be strings: each other item is a problem of its own."""
    out = []
    for i, value in enumerate(values):
        if isinstance(value, str):
            out.append(value)
        else:
            sec.problems.malformed += 1
            sec.problems.add(f"{sec.path_of(key)}[{i}]", value, "a string")
    return tuple(out)


def _kafka(sec: _Section, tier: Tier) -> KafkaSettings:
    before = sec.problems.malformed
    racks = sec.get("racks", list, [])
    settings = KafkaSettings(
        cluster_name=sec.get("clusterName", str, "headwater", check=_k8s_name),
        brokers=sec.get("brokers", int, check=_positive),
        controllers=sec.get("controllers", int, 0, check=_non_negative),
        replication_factor=sec.get("replicationFactor", int, check=_positive),
        min_insync_replicas=sec.get("minInsyncReplicas", int, check=_positive),
        authentication=sec.choice("authentication", Authentication),
        plaintext_listener=sec.get("plaintextListener", bool, False),
        racks=_strings(sec, "racks", racks),
        rack_topology_key=sec.get("rackTopologyKey", str, "topology.kubernetes.io/zone"),
        broker_storage=_storage(sec.section("storage", required=True)),
        controller_storage=_storage(sec.section("controllerStorage", required=True)),
        broker_resources=_resources(sec.section("resources", required=True)),
        controller_resources=_resources(sec.section("controllerResources", required=True)),
        super_users=_strings(sec, "superUsers", sec.get("superUsers", list, [])),
        transaction_max_timeout_ms=_duration(sec, "transactionMaxTimeout", "15m"),
        message_max_bytes=sec.get("messageMaxBytes", int, 1_048_588, check=_positive),
        exporter=sec.get("kafkaExporter", bool, True),
        cruise_control=_cruise_control(sec),
    )
    sec.done()
    if sec.problems.malformed > before:
        return settings  # the rules below compare values that are already known to be malformed
    for key, value, allowed in settings.problems(tier):
        sec.problems.add(f"kafka.{key}", value, allowed)
    return settings


# Cruise Control defaults: a small JVM, and network capacities of a 1 Gbit/s node (override per stack with
# what the brokers' nodes really have, so the network goals balance against real limits).
CRUISE_CONTROL_RESOURCES = Resources("200m", "768Mi", "1", "768Mi")
CRUISE_CONTROL_NETWORK = "120MiB/s"


def _cruise_control(kafka: _Section) -> CruiseControl | None:
    """`cruiseControl: true` (defaults), false/absent (none), or a mapping with resources and capacities."""
    kafka.seen.add("cruiseControl")
    raw = kafka.data.get("cruiseControl", False)
    if raw is False:
        return None
    if raw is not True and not isinstance(raw, dict):
        kafka.problems.malformed += 1
        kafka.problems.add(
            "kafka.cruiseControl",
            raw,
            "true, false, or a mapping with resources, inboundNetwork and outboundNetwork",
        )
        return None
    sec = _Section(kafka.problems, "kafka.cruiseControl", raw if isinstance(raw, dict) else {})
    cc = CruiseControl(
        resources=_resources(sec.section("resources"))
        if "resources" in sec.data
        else CRUISE_CONTROL_RESOURCES,
        inbound_network=sec.get("inboundNetwork", str, CRUISE_CONTROL_NETWORK),
        outbound_network=sec.get("outboundNetwork", str, CRUISE_CONTROL_NETWORK),
    )
    sec.seen.add("resources")
    sec.done()
    return cc


def _topics(cat: _Section, overrides: _Section, kafka: KafkaSettings) -> tuple[Topic, ...]:
    p = cat.problems
    raw_topics = cat.get("topics", dict, {})
    topics: list[Topic] = []
    for name, body in sorted(raw_topics.items()):
        key = f"catalog.topics.{name}"
        if not TOPIC_NAME.match(str(name)):
            p.add(f"catalog.topics.{name}", name, TOPIC_NAME_RULE)
            continue
        if not isinstance(body, dict):
            p.add(key, body, "a mapping of topic settings")
            continue
        over = overrides.get(name, dict, {}) if name in overrides.data else {}
        merged = {**body, **over}
        sec = _Section(p, key, merged, {k: f"topics.{name}" for k in over})
        kind = sec.choice("kind", TopicKind)
        cfg_raw = sec.get("config", dict, {})
        topic = Topic(
            name=name,
            owner=sec.get("owner", str, check=_k8s_name),
            sla=sec.choice("sla", Sla),
            kind=kind,
            partitions=sec.get("partitions", int, check=_positive),
            retention_ms=_duration(sec, "retention", "7d"),
            key=sec.get("key", str),
            description=sec.get("description", str, ""),
            schema=sec.get("schema", str, None),
            compatibility=sec.get("compatibility", str, None),
            config=tuple(sorted((str(k), str(v)) for k, v in cfg_raw.items())),
        )
        sec.done()
        if kind == TopicKind.JOURNAL and topic.retention_ms != -1:
            p.add(
                sec.path_of("retention"),
                merged.get("retention"),
                "'forever' for a journal topic (its data is the registry's state)",
            )
        if kind == TopicKind.AUDIT and topic.retention_ms != -1:
            p.add(
                sec.path_of("retention"),
                merged.get("retention"),
                "'forever' for an audit topic (an audit trail is never trimmed)",
            )
        for reserved in ("cleanup.policy", "min.insync.replicas"):
            if reserved in cfg_raw:
                p.add(
                    f"{sec.path_of('config')}.{reserved}",
                    cfg_raw[reserved],
                    "not set per topic: it follows the kind and the environment",
                )
        topics.append(topic)
    for name in sorted(set(overrides.data) - set(raw_topics), key=str):
        if not TOPIC_NAME.match(str(name)):
            p.add(f"topics.{name}", name, f"{TOPIC_NAME_RULE} (an override names a topic of the catalog)")
        else:
            p.add(f"topics.{name}", "(override)", f"a topic of the catalog: {', '.join(sorted(raw_topics))}")
    overrides.seen.update(overrides.data)
    return tuple(topics)


def _consumes(sec: _Section, key: str, name: str) -> list[Consume]:
    out = []
    for i, c in enumerate(sec.get("consumes", list, [])):
        cs = _Section(sec.problems, f"{sec.path_of('consumes')}[{i}]", c if isinstance(c, dict) else {})
        pattern = cs.get(
            "groupPattern",
            str,
            "literal",
            check=lambda v: None if v in ("literal", "prefix") else "literal, prefix",
        )
        delivery = cs.get(
            "delivery",
            str,
            EXACTLY_ONCE,
            check=lambda v: None if v in DELIVERIES else ", ".join(DELIVERIES),
        )
        out.append(
            Consume(
                topic=cs.get("topic", str),
                group=cs.get("group", str, name),
                group_pattern="prefix" if pattern == "prefix" else "literal",
                delivery="at-least-once" if delivery == AT_LEAST_ONCE else "exactly-once",
            )
        )
        cs.done()
    return out


def _produces(sec: _Section, key: str) -> list[Produce]:
    out = []
    for i, f in enumerate(sec.get("produces", list, [])):
        ps = _Section(sec.problems, f"{sec.path_of('produces')}[{i}]", f if isinstance(f, dict) else {})
        out.append(Produce(topic=ps.get("topic", str), transactional=ps.get("transactional", bool, False)))
        ps.done()
    return out


def _quotas(sec: _Section) -> Quotas:
    q = sec.section("quotas")
    quotas = Quotas(
        producer_byte_rate=q.get("producerByteRate", int, None, check=_positive),
        consumer_byte_rate=q.get("consumerByteRate", int, None, check=_positive),
        request_percentage=q.get("requestPercentage", int, None, check=_positive),
    )
    q.done()
    return quotas


def _principal(sec: _Section, key: str, name: str, kafka: KafkaSettings) -> Principal:
    """One principal from its catalog entry merged with the stack's override."""
    kind: Any = sec.get(
        "kind",
        str,
        check=lambda v: None if v in ("app", "service", "platform") else "app, service, platform",
    )
    consumes = _consumes(sec, key, name)
    produces = _produces(sec, key)
    quotas = _quotas(sec)
    registry_storage = None
    if "registryStorage" in sec.data:
        rs = sec.section("registryStorage")
        registry_storage = RegistryStorage(
            journal=rs.get("journal", str),
            snapshots=rs.get("snapshots", str),
            events=rs.get("events", str),
            group_prefix=rs.get("groupPrefix", str),
        )
        rs.done()
    principal = Principal(
        name=name,
        kind=kind,
        description=sec.get("description", str, ""),
        authentication=sec.choice("authentication", Authentication, kafka.authentication),
        consumes=tuple(consumes),
        produces=tuple(produces),
        transactional_id_prefix=sec.get(
            "transactionalIdPrefix", str, f"{name}-" if any(x.transactional for x in produces) else None
        ),
        quotas=quotas,
        describe_topic_configs=sec.get("describeTopicConfigs", bool, False),
        registry_storage=registry_storage,
    )
    sec.done()
    return principal


def _check_flows(
    problems: _Problems, path_of: Callable[[str], str], principal: Principal, topic_names: set[str]
) -> None:
    """Flows name catalog topics; a transactional-id prefix is the principal's own. `path_of` gives the key
    a setting is written under (the catalog's, or the stack override's)."""
    allowed = f"a topic of the catalog: {', '.join(sorted(topic_names))}"
    for i, c in enumerate(principal.consumes):
        if c.topic not in topic_names:
            problems.add(f"{path_of('consumes')}[{i}].topic", c.topic, allowed)
    for i, f in enumerate(principal.produces):
        if f.topic not in topic_names:
            problems.add(f"{path_of('produces')}[{i}].topic", f.topic, allowed)
    if principal.transactional_id_prefix is not None and principal.transactional_id_prefix in ("", "*"):
        problems.add(
            path_of("transactionalIdPrefix"),
            principal.transactional_id_prefix,
            "a non-empty prefix owned by this principal",
        )


def _principals(
    cat: _Section,
    overrides: _Section,
    kafka: KafkaSettings,
    topic_names: set[str],
    gate: ActionGate | None = None,
) -> tuple[Principal, ...]:
    p = cat.problems
    raw = cat.get("principals", dict, {})
    out: list[Principal] = []
    monitoring: set[str] = set()
    for name, body in sorted(raw.items()):
        key = f"catalog.principals.{name}"
        if not K8S_NAME.match(str(name)):
            p.add(key, name, "a DNS label: lower-case letters, digits and '-'")
            continue
        if not isinstance(body, dict):
            p.add(key, body, "a mapping")
            continue
        over = overrides.get(name, dict, {}) if name in overrides.data else {}
        sec = _Section(p, key, {**body, **over}, {k: f"principals.{name}" for k in over})
        if sec.get("monitorsConsumerGroups", bool, False):
            monitoring.add(name)
        principal = _principal(sec, key, name, kafka)
        _check_flows(p, sec.path_of, principal, topic_names)
        if gate is not None:
            principal = _with_gate_flows(p, sec.path_of, principal, gate)
        out.append(principal)
    for name in sorted(set(overrides.data) - set(raw), key=str):
        if not K8S_NAME.match(str(name)):
            p.add(
                f"principals.{name}",
                name,
                "a DNS label: lower-case letters, digits and '-' (an override names a principal of the catalog)",
            )
        else:
            p.add(f"principals.{name}", "(override)", f"a principal of the catalog: {', '.join(sorted(raw))}")
    overrides.seen.update(overrides.data)
    # Lag exporters monitor every consume flow the catalog declares (the stack's, after overrides).
    flows = tuple(sorted({c for x in out for c in x.consumes}, key=lambda c: (str(c.group), str(c.topic))))
    return tuple(dataclasses.replace(x, monitors=flows) if x.name in monitoring else x for x in out)


def _with_gate_flows(
    problems: _Problems, path_of: Callable[[str], str], principal: Principal, gate: ActionGate
) -> Principal:
    """The principal with its flows on the action path's topics, which only catalog.actionGate declares."""
    for i, c in enumerate(principal.consumes):
        if c.topic in gate.topics:
            problems.add(
                f"{path_of('consumes')}[{i}].topic",
                c.topic,
                "a topic outside the action path; flows on its topics follow from the roles in catalog.actionGate",
            )
    for i, f in enumerate(principal.produces):
        if f.topic in gate.topics:
            problems.add(
                f"{path_of('produces')}[{i}].topic",
                f.topic,
                "a topic outside the action path; flows on its topics follow from the roles in catalog.actionGate",
            )
    consumes, produces = gate.flows().get(principal.name, ((), ()))
    if not consumes and not produces:
        return principal
    merged = dataclasses.replace(
        principal, consumes=principal.consumes + consumes, produces=principal.produces + produces
    )
    if merged.transactional and merged.transactional_id_prefix is None:
        merged = dataclasses.replace(merged, transactional_id_prefix=f"{principal.name}-")
    return merged


_ACTION_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_ACTION_WORD = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


def _words(sec: _Section, key: str) -> tuple[str, ...]:
    """A list of lower-case words (targets, scopes, action types); each other item is a problem of its own."""
    out = []
    for i, value in enumerate(sec.get(key, list, [])):
        if isinstance(value, str) and _ACTION_WORD.match(value):
            out.append(value)
        else:
            sec.problems.add(
                f"{sec.path_of(key)}[{i}]", value, "a lower-case word (letters, digits, '_' and '-')"
            )
    return tuple(out)


def _risk_policy(sec: _Section, action_type: str) -> RiskPolicy:
    p = sec.problems
    always_human = sec.get("alwaysHuman", bool, False)
    auto = sec.section("autoApprove")
    max_amount = auto.get(
        "maxAmount", float, None, check=lambda v: None if v >= 0 else "an amount >= 0 (a number)"
    )
    targets = _words(auto, "targets")
    scopes = _words(auto, "scopes")
    auto.done(["maxAmount", "targets", "scopes"])
    on_expiry = sec.get(
        "onExpiry", str, check=lambda v: None if v in EXPIRY_ACTIONS else ", ".join(EXPIRY_ACTIONS)
    )
    escalate = on_expiry == "escalate"
    escalate_to = sec.get("escalateTo", str, _MISSING if escalate else None)
    escalation = _duration(sec, "escalationSla", _MISSING if escalate else None) if escalate else None
    policy = RiskPolicy(
        action_type=action_type,
        description=sec.get("description", str, ""),
        always_human=always_human,
        max_amount=float(max_amount) if max_amount is not None else None,
        targets=targets,
        scopes=scopes,
        approval_sla_ms=_duration(sec, "approvalSla"),
        on_expiry="escalate" if escalate else "reject",
        escalate_to=escalate_to,
        escalation_sla_ms=escalation,
    )
    if not escalate:
        for key in ("escalateTo", "escalationSla"):
            if key in sec.data:
                p.add(sec.path_of(key), sec.data[key], "only with onExpiry: escalate")
                sec.seen.add(key)
    sec.done()
    has_rule = max_amount is not None or bool(targets) or bool(scopes)
    if always_human and auto.data:
        p.add(
            sec.path_of("autoApprove"),
            dict(auto.data),
            "no autoApprove on an alwaysHuman action type (a human decides every one)",
        )
    elif not always_human and not has_rule:
        p.add(
            sec.path_of("autoApprove"),
            dict(auto.data) or None,
            "at least one of maxAmount, targets, scopes (else every action of the type would be approved "
            "by rule), or alwaysHuman: true",
        )
    if policy.approval_sla_ms == -1:
        p.add(sec.path_of("approvalSla"), sec.data.get("approvalSla"), "a finite duration like 15m or 4h")
    return policy


GATE_RESOURCES = Resources("100m", "128Mi", "500m", "256Mi")


def _gate_settings(sec: _Section, gate: ActionGate | None, tier: Tier) -> GateSettings | None:
    """The stack's `actionGate`: the gate's image (required when the catalog declares an actionGate), its
    size, and where the gate's and the page's spans go (`tracing`, optional)."""
    if gate is None:
        if sec.data:
            sec.problems.add("actionGate", dict(sec.data), "nothing: the catalog declares no actionGate")
            sec.seen.update(sec.data)
        return None
    settings = GateSettings(
        image_registry=sec.get("imageRegistry", str, ""),
        image=sec.get(
            "image",
            str,
            check=lambda v: (
                None if v not in ("", "latest") else "a pinned tag (not 'latest') or a digest sha256:..."
            ),
        ),
        resources=_resources(sec.section("resources")) if "resources" in sec.data else GATE_RESOURCES,
        tracing=_span_export(sec.section("tracing"), tier) if "tracing" in sec.data else None,
    )
    sec.seen.update(("resources", "tracing"))
    sec.done()
    return settings


_OTLP_ENDPOINT = re.compile(r"^(https?)://([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?):([0-9]{1,5})$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$")
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$"
)


def _span_export(sec: _Section, tier: Tier) -> SpanExport:
    """`actionGate.tracing`: an OTLP/HTTP endpoint (TLS in staging and prod) and the collector it reaches."""

    def endpoint_ok(value: str) -> str | None:
        m = _OTLP_ENDPOINT.match(value)
        if m is None or not 0 < int(m.group(4)) < 65536:
            return (
                "an OTLP/HTTP endpoint scheme://host:port with an explicit port and no path or credentials, "
                "like https://otel-collector.observability.svc:4318"
            )
        if m.group(1) == "http" and tier in (Tier.STAGING, Tier.PROD):
            return f"an https:// endpoint in a {tier} stack (spans carry action ids and approvers' names)"
        return None

    def name_ok(value: str) -> str | None:
        ok = K8S_NAME.match(value) and len(value) <= 63
        return None if ok else "a Kubernetes name (up to 63 lowercase letters, digits and '-')"

    endpoint = sec.get("otlpEndpoint", str, check=endpoint_ok)
    namespace = sec.get("collectorNamespace", str, check=name_ok)
    raw_labels = sec.get(
        "collectorPodLabels",
        dict,
        check=lambda v: (
            None if v else "the labels of the collector's pods (its NetworkPolicy peer), not empty"
        ),
    )
    labels: list[tuple[str, str]] = []
    for key, value in sorted(
        (raw_labels if isinstance(raw_labels, dict) else {}).items(), key=lambda kv: str(kv[0])
    ):
        if not isinstance(key, str) or not _LABEL_KEY.match(key):
            sec.problems.add(f"{sec.path_of('collectorPodLabels')}.{key}", key, "a Kubernetes label key")
        elif not isinstance(value, str) or not _LABEL_VALUE.match(value):
            sec.problems.add(
                f"{sec.path_of('collectorPodLabels')}.{key}", value, "a Kubernetes label value (a string)"
            )
        else:
            labels.append((key, value))
    ca_secret = sec.get("caSecret", str, None, check=name_ok)
    if ca_secret is not None and isinstance(endpoint, str) and endpoint.startswith("http://"):
        sec.problems.add(
            sec.path_of("caSecret"), ca_secret, "nothing with an http:// endpoint (no TLS to verify)"
        )
    sec.done()
    return SpanExport(
        otlp_endpoint=endpoint if isinstance(endpoint, str) else "",
        collector_namespace=namespace if isinstance(namespace, str) else "",
        collector_labels=tuple(labels),
        ca_secret=ca_secret,
    )


class _GateRefs:
    """What the action path's settings refer to, checked as they are read: principals of the catalog, and
    topics of the right kind with a contract, each in one role only."""

    def __init__(self, cat: _Section, topics: tuple[Topic, ...]) -> None:
        self.problems = cat.problems
        self.topics = {t.name: t for t in topics}
        raw = cat.data.get("principals")
        self.principals = sorted(raw) if isinstance(raw, dict) else []
        self.used: dict[str, str] = {}

    def principal(self, where: str, value: Any) -> str:
        if value is _MISSING:
            return ""  # reported as required
        if value not in self.principals:
            self.problems.add(where, value, f"a principal of the catalog: {', '.join(self.principals)}")
        return str(value)

    def topic(self, where: str, value: Any, kind: TopicKind) -> str:
        if value is _MISSING:
            return ""  # reported as required
        p = self.problems
        t = self.topics.get(value) if isinstance(value, str) else None
        if t is None:
            p.add(where, value, f"a topic of the catalog: {', '.join(sorted(self.topics))}")
        elif t.kind != kind:
            p.add(where, value, f"a topic of kind {kind} ({value} is kind {t.kind})")
        elif not t.schema:
            p.add(where, value, f"a topic with a data contract (catalog.topics.{value}.schema)")
        if isinstance(value, str) and value in self.used:
            p.add(where, value, f"a topic of one role; {self.used[value]} uses it already")
        self.used[str(value)] = where
        return str(value)


def _action_gate(cat: _Section, topics: tuple[Topic, ...]) -> ActionGate | None:
    """The action path (catalog `actionGate`): roles, topics and risk policies, checked before any flow."""
    if "actionGate" not in cat.data:
        return None
    sec = cat.section("actionGate")
    refs = _GateRefs(cat, topics)
    gate_principal = refs.principal(sec.path_of("principal"), sec.get("principal", str))
    decisions = refs.topic(sec.path_of("decisions"), sec.get("decisions", str), TopicKind.EVENTS)
    audit = refs.topic(sec.path_of("audit"), sec.get("audit", str), TopicKind.AUDIT)
    state = refs.topic(sec.path_of("state"), sec.get("state", str), TopicKind.STATE)
    policies = _risk_policies(sec.section("riskPolicies", required=True))
    agents = _gate_agents(sec.section("agents", required=True), refs, sorted(x.action_type for x in policies))
    approvers = tuple(
        refs.principal(f"{sec.path_of('approvers')}[{i}]", v)
        for i, v in enumerate(sec.get("approvers", list, []))
    )
    auditors = tuple(
        refs.principal(f"{sec.path_of('auditors')}[{i}]", v)
        for i, v in enumerate(sec.get("auditors", list, []))
    )
    sec.done()
    if not approvers:
        sec.problems.add(sec.path_of("approvers"), [], "at least one approver principal")
    _one_role_each(
        sec,
        gate_principal,
        {"agents": [a.principal for a in agents], "approvers": approvers, "auditors": auditors},
    )
    return ActionGate(
        principal=gate_principal,
        decisions_topic=decisions,
        audit_topic=audit,
        state_topic=state,
        agents=tuple(agents),
        approvers=approvers,
        auditors=auditors,
        policies=tuple(policies),
    )


def _risk_policies(sec: _Section) -> list[RiskPolicy]:
    """`actionGate.riskPolicies`: one policy per action type, at least one."""
    p = sec.problems
    policies = []
    for action_type, body in sorted(sec.data.items(), key=lambda kv: str(kv[0])):
        where = sec.path_of(str(action_type))
        sec.seen.add(action_type)
        if not isinstance(action_type, str) or not _ACTION_TYPE.match(action_type):
            p.add(where, action_type, "an action type: lower-case letters, digits and '_'")
            continue
        if not isinstance(body, dict):
            p.add(where, body, "a mapping: alwaysHuman, autoApprove, approvalSla, onExpiry, ...")
            continue
        policies.append(_risk_policy(_Section(p, where, body), action_type))
    if not sec.data:
        p.add(sec.path, {}, "a risk policy for at least one action type")
    return policies


def _gate_agents(sec: _Section, refs: _GateRefs, types: list[str]) -> list[GateAgent]:
    """`actionGate.agents`: each agent's proposed and approved topics and the action types it may propose."""
    p = sec.problems
    agents = []
    for name, body in sorted(sec.data.items(), key=lambda kv: str(kv[0])):
        where = sec.path_of(str(name))
        sec.seen.add(name)
        refs.principal(where, name)
        a = _Section(p, where, body if isinstance(body, dict) else {})
        action_types = _words(a, "actionTypes")
        for i, action_type in enumerate(action_types):
            if action_type not in types:
                p.add(
                    f"{a.path_of('actionTypes')}[{i}]",
                    action_type,
                    f"a type of riskPolicies: {', '.join(types)}",
                )
        agents.append(
            GateAgent(
                principal=str(name),
                proposed_topic=refs.topic(a.path_of("proposed"), a.get("proposed", str), TopicKind.EVENTS),
                approved_topic=refs.topic(a.path_of("approved"), a.get("approved", str), TopicKind.EVENTS),
                action_types=action_types,
            )
        )
        a.done()
    if not sec.data:
        p.add(sec.path, {}, "at least one agent: its proposed and approved topics")
    return agents


def _one_role_each(sec: _Section, gate: str, roles_of: Mapping[str, Sequence[str]]) -> None:
    """One role per principal: an agent that could also decide (or a gate that could propose) would approve
    itself."""
    roles: dict[str, str] = {gate: "principal"}
    for role, names in roles_of.items():
        for name in names:
            if name in roles:
                sec.problems.add(
                    f"{sec.path_of(role)}", name, f"a principal of one role; it is already in {roles[name]}"
                )
            roles.setdefault(name, role)


_PG_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_PG_NAME_RULE = "a PostgreSQL name: lower-case letters, digits and '_', not starting with a digit"
_AGGREGATE_TYPE = re.compile(r"^[a-z][a-z0-9_-]*$")
# Local databases run on this machine: Debian's server on 127.0.0.1, whose port the runtime picks.
LOCAL_DB_HOST = "127.0.0.1"
LOCAL_DB_PORT = 5432
DEFAULT_SLOT_WAL_BUDGET = "1Gi"  # WAL a slot may hold back before HeadwaterCdcSlotRetainsWal fires


def _pg_name(value: str) -> str | None:
    return None if _PG_NAME.match(value) else _PG_NAME_RULE


def _table(value: str) -> str | None:
    parts = value.split(".")
    ok = len(parts) == 2 and all(_PG_NAME.match(x) for x in parts)
    return None if ok else f"schema.table, each {_PG_NAME_RULE}"


def _connect_clusters(
    cat: _Section, overrides: _Section, topics: tuple[Topic, ...], principal_names: set[str]
) -> tuple[ConnectCluster, ...]:
    """Kafka Connect clusters (catalog `connect`, sized by the stack's `connect`); each is also a principal."""
    p = cat.problems
    by_name = {t.name: t for t in topics}
    raw = cat.get("connect", dict, {})
    out: list[ConnectCluster] = []
    used: dict[str, str] = {}
    for name, body in sorted(raw.items()):
        key = f"catalog.connect.{name}"
        if not isinstance(name, str) or _k8s_name(name):
            p.add(key, name, "a DNS label: lower-case letters, digits and '-'")
            continue
        over = overrides.get(name, dict, {}) if name in overrides.data else {}
        sec = _Section(
            p, key, {**(body if isinstance(body, dict) else {}), **over}, {k: f"connect.{name}" for k in over}
        )
        cluster = _connect_cluster(sec, name)
        if name in principal_names:
            p.add(key, name, "a name no principal of the catalog has (the cluster is its own principal)")
        _check_internal_topics(sec, cluster, by_name, used)
        out.append(cluster)
    for name in sorted(set(overrides.data) - set(raw), key=str):
        p.add(
            f"connect.{name}",
            "(override)",
            f"a Connect cluster of the catalog: {', '.join(sorted(raw)) or 'none'}",
        )
    overrides.seen.update(overrides.data)
    return tuple(out)


def _connect_cluster(sec: _Section, name: str) -> ConnectCluster:
    """One Connect cluster from its catalog entry merged with the stack's override."""
    cluster = ConnectCluster(
        name=name,
        description=sec.get("description", str, ""),
        config_topic=sec.get("configTopic", str),
        offset_topic=sec.get("offsetTopic", str),
        status_topic=sec.get("statusTopic", str),
        replicas=sec.get("replicas", int, 1, check=_positive),
        resources=_resources(sec.section("resources")) if "resources" in sec.data else None,
        image=sec.get("image", str, None),
        contract_check=(
            _plugin_artifact(sec.section("contractCheck")) if "contractCheck" in sec.data else None
        ),
    )
    sec.seen.add("resources")
    sec.done()
    return cluster


def _check_internal_topics(
    sec: _Section, cluster: ConnectCluster, by_name: Mapping[str, Topic], used: dict[str, str]
) -> None:
    """Connect's config, offset and status topics are compacted catalog topics (the config topic has one
    partition), each used by one cluster in one role (`used`: topic -> where it is used, filled as read)."""
    p = sec.problems
    for role, topic in (
        ("configTopic", cluster.config_topic),
        ("offsetTopic", cluster.offset_topic),
        ("statusTopic", cluster.status_topic),
    ):
        if not isinstance(topic, str):
            continue
        t = by_name.get(topic)
        if t is None:
            p.add(sec.path_of(role), topic, f"a topic of the catalog: {', '.join(sorted(by_name))}")
        elif not (isinstance(t.kind, TopicKind) and t.compacted):
            p.add(sec.path_of(role), topic, f"a compacted topic (kind state); {topic} is kind {t.kind}")
        elif role == "configTopic" and t.partitions != 1:
            p.add(sec.path_of(role), topic, "a topic with 1 partition (Connect orders its configs in one)")
        if topic in used:
            p.add(sec.path_of(role), topic, f"a topic of this cluster alone; {used[topic]} uses it already")
        used[topic] = f"{sec.path}.{role}"


def _https_url(value: str) -> str | None:
    parsed = urlparse(value)
    if parsed.scheme == "https" and parsed.netloc and not value.endswith("/"):
        return None
    return "an https:// URL of a Maven-layout repository, without a trailing '/'"


def _plugin_artifact(sec: _Section) -> PluginArtifact:
    artifact = PluginArtifact(
        repository=sec.get("repository", str, check=_https_url),
        sha512=sec.get(
            "sha512",
            str,
            check=lambda v: None if SHA512_HEX.match(v) else "the jar's SHA-512: 128 lower-case hex digits",
        ),
    )
    sec.done()
    return artifact


def _contract_checks(
    problems: _Problems, clusters: tuple[ConnectCluster, ...], sources: tuple[Source, ...]
) -> None:
    """A Connect cluster that captures a source checks every event against its contract, so its image needs the
    contract-check jar: where the platform team published it is per stack."""
    for cluster in clusters:
        captured = sorted(s.name for s in sources if s.connect == cluster.name)
        if captured and cluster.contract_check is None:
            problems.items.append(
                f"stack {problems.stack}: connect.{cluster.name}.contractCheck is required (it captures "
                f"{', '.join(captured)}): {{repository: https://<Maven-layout repository with "
                f"dev.headwater.connect:contract-check:{versions.CONTRACT_CHECK_VERSION}>, sha512: <the jar's SHA-512>}}"
            )


def _endpoint(sec: _Section, tier: Tier, name: str) -> DatabaseEndpoint:
    local = tier == Tier.LOCAL
    endpoint = DatabaseEndpoint(
        host=sec.get("host", str, LOCAL_DB_HOST if local else _MISSING),
        port=sec.get(
            "port", int, LOCAL_DB_PORT, check=lambda v: None if 0 < v < 65536 else "a TCP port 1-65535"
        ),
        ssl_mode=sec.get(
            "sslMode",
            str,
            "disable" if local else "verify-full",
            check=lambda v: None if v in SSL_MODES else ", ".join(SSL_MODES),
        ),
        credentials_secret=sec.get("credentialsSecret", str, f"{name}-cdc", check=_k8s_name),
        slot_wal_budget=sec.get("slotWalBudget", str, DEFAULT_SLOT_WAL_BUDGET, check=_quantity),
    )
    if tier == Tier.PROD and endpoint.ssl_mode in ("disable",):
        sec.problems.add(
            sec.path_of("sslMode"),
            endpoint.ssl_mode,
            "require, verify-ca or verify-full in prod: the replication login and every row cross the network",
        )
    return endpoint


def _sources(
    cat: _Section,
    overrides: _Section,
    tier: Tier,
    topics: tuple[Topic, ...],
    clusters: tuple[ConnectCluster, ...],
) -> tuple[Source, ...]:
    """Databases whose outbox is captured (catalog `sources`), reached as the stack's `sources` says."""
    p = cat.problems
    by_name = {t.name: t for t in topics}
    cluster_names = sorted(c.name for c in clusters)
    raw = cat.get("sources", dict, {})
    out: list[Source] = []
    routed_by: dict[str, str] = {}
    for name, body in sorted(raw.items()):
        key = f"catalog.sources.{name}"
        if not isinstance(name, str) or _k8s_name(name):
            p.add(key, name, "a DNS label: lower-case letters, digits and '-'")
            continue
        sec = _Section(p, key, body if isinstance(body, dict) else {})
        source = _source(sec, overrides, tier, name, cluster_names)
        _check_source_topics(sec, source, by_name)
        for route in source.routes:
            _check_route(sec, route, source, by_name, routed_by)
        out.append(source)
    for name in sorted(set(overrides.data) - set(raw), key=str):
        p.add(f"sources.{name}", "(override)", f"a source of the catalog: {', '.join(sorted(raw)) or 'none'}")
    overrides.seen.update(overrides.data)
    return tuple(out)


def _source(sec: _Section, overrides: _Section, tier: Tier, name: str, cluster_names: list[str]) -> Source:
    """One source from its catalog entry, with its database endpoint from the stack's `sources.<name>`."""
    outbox = sec.section("outbox", required=True)
    routes_raw = outbox.get("routes", dict, {})
    routes = tuple(OutboxRoute(str(k), str(v)) for k, v in sorted(routes_raw.items()))
    table = outbox.get("table", str, "public.outbox", check=_table)
    outbox.done()
    over = (
        overrides.section(name) if name in overrides.data else _Section(sec.problems, f"sources.{name}", {})
    )
    source = Source(
        name=name,
        description=sec.get("description", str, ""),
        owner=sec.get("owner", str, check=_k8s_name),
        service=sec.get("service", str, check=_k8s_name),
        connect=sec.get(
            "connect",
            str,
            check=lambda v: (
                None
                if v in cluster_names
                else f"a Connect cluster of the catalog: {', '.join(cluster_names) or 'none'}"
            ),
        ),
        database=sec.get("database", str, check=_pg_name),
        outbox_table=table,
        routes=routes,
        dead_letter_topic=sec.get("deadLetterTopic", str),
        heartbeat_topic=sec.get("heartbeatTopic", str),
        endpoint=_endpoint(over, tier, name),
    )
    sec.done()
    over.done()
    if not routes:
        sec.problems.add(f"{sec.path}.outbox.routes", routes_raw, "at least one aggregate type: topic")
    return source


def _check_source_topics(sec: _Section, source: Source, by_name: Mapping[str, Topic]) -> None:
    """The source's dead-letter topic is a deadletter topic its owner owns; its heartbeat topic an events one."""
    p = sec.problems
    dlq = by_name.get(source.dead_letter_topic) if isinstance(source.dead_letter_topic, str) else None
    if isinstance(source.dead_letter_topic, str) and (dlq is None or dlq.kind != TopicKind.DEADLETTER):
        p.add(
            sec.path_of("deadLetterTopic"),
            source.dead_letter_topic,
            "a topic of the catalog of kind deadletter",
        )
    elif dlq is not None and dlq.owner != source.owner:
        p.add(
            sec.path_of("deadLetterTopic"),
            dlq.name,
            f"a topic owned by {source.owner}, the source's owner",
        )
    beat = by_name.get(source.heartbeat_topic) if isinstance(source.heartbeat_topic, str) else None
    if isinstance(source.heartbeat_topic, str) and (beat is None or beat.kind != TopicKind.EVENTS):
        p.add(
            sec.path_of("heartbeatTopic"),
            source.heartbeat_topic,
            "a topic of the catalog of kind events (Debezium's heartbeats; nothing reads them)",
        )


def _check_route(
    sec: _Section,
    route: OutboxRoute,
    source: Source,
    by_name: Mapping[str, Topic],
    routed_by: dict[str, str],
) -> None:
    """An outbox route names an outbox topic of the catalog with a contract, owned by the source's owner and
    written by this source alone (`routed_by`: topic -> the source that routes to it, filled as routes are read)."""
    p = sec.problems
    where = f"{sec.path}.outbox.routes.{route.aggregate_type}"
    if not _AGGREGATE_TYPE.match(route.aggregate_type):
        p.add(where, route.aggregate_type, "an aggregate type: lower-case letters, digits, '_' and '-'")
    t = by_name.get(route.topic)
    if t is None:
        p.add(where, route.topic, f"a topic of the catalog: {', '.join(sorted(by_name))}")
        return
    if t.kind != TopicKind.OUTBOX:
        p.add(where, route.topic, f"a topic of kind outbox; {route.topic} is kind {t.kind}")
    if not t.schema:
        p.add(where, route.topic, f"a topic with a data contract (catalog.topics.{route.topic}.schema)")
    if t.owner != source.owner:
        p.add(
            where,
            route.topic,
            f"a topic owned by {source.owner}, the source's owner ({t.owner} owns it)",
        )
    if route.topic in routed_by:
        p.add(
            where,
            route.topic,
            f"a topic one source writes; {routed_by[route.topic]} routes to it already",
        )
    routed_by[route.topic] = sec.path


def _apps(cat: _Section, principal_names: set[str]) -> tuple[App, ...]:
    p = cat.problems
    out: list[App] = []
    for name, body in sorted(cat.get("apps", dict, {}).items()):
        key = f"catalog.apps.{name}"
        sec = _Section(p, key, body if isinstance(body, dict) else {})
        args = sec.get("args", dict, {})
        app = App(
            name=name,
            module=sec.get("module", str),
            stateful=sec.get("stateful", bool, True),
            description=sec.get("description", str, ""),
            args=tuple((str(k), str(v)) for k, v in args.items()),
        )
        sec.done()
        if name not in principal_names:
            p.add(
                key,
                name,
                f"an app needs a principal of the same name; principals: {', '.join(sorted(principal_names))}",
            )
        out.append(app)
    return tuple(out)


def _s3_credentials(sec: _Section, secret: bool) -> S3Credentials | None:
    if "s3Credentials" not in sec.data:
        return None
    creds = sec.section("s3Credentials")
    access, key = creds.get("accessKey", str), creds.get("secretKey", str)
    creds.done()
    if not secret:
        sec.problems.add(
            "flink.s3Credentials",
            "(plain value)",
            "a Pulumi secret: `pulumi config set --secret --path flink.s3Credentials.secretKey ...` "
            "(and accessKey); never plain text in a stack file",
        )
    if not sec.data.get("s3CredentialsSecret"):
        sec.problems.add(
            "flink.s3Credentials", "(set)", "only with flink.s3CredentialsSecret, the secret to create"
        )
    return S3Credentials(SecretValue(str(access)), SecretValue(str(key)))


def _flink(sec: _Section, app_names: list[str], secret: bool = False) -> FlinkSettings:
    images = sec.get("images", dict, {})
    settings = FlinkSettings(
        image_registry=sec.get("imageRegistry", str, ""),
        parallelism=sec.get("parallelism", int, 1, check=_positive),
        checkpoint_interval_ms=_duration(sec, "checkpointInterval", "30s"),
        state_uri=sec.get("stateUri", str),
        s3_endpoint=sec.get("s3Endpoint", str, None),
        s3_credentials_secret=sec.get("s3CredentialsSecret", str, None),
        deploy_minio=sec.get("deployMinio", bool, False),
        ha=sec.get("highAvailability", bool, True),
        savepoint_interval=sec.get("periodicSavepointInterval", str, None),
        autoscaler=sec.get("autoscaler", bool, False),
        jobmanager=_resources(sec.section("jobManagerResources", required=True)),
        taskmanager=_resources(sec.section("taskManagerResources", required=True)),
        task_slots=sec.get("taskSlots", int, 1, check=_positive),
        images=tuple(sorted((str(k), str(v)) for k, v in images.items())),
        app_args=tuple(
            sorted(
                (str(app), tuple((str(k), str(v)) for k, v in opts.items()) if isinstance(opts, dict) else ())
                for app, opts in sec.get("appArgs", dict, {}).items()
            )
        ),
        service_account_annotations=tuple(
            sorted((str(k), str(v)) for k, v in sec.get("serviceAccountAnnotations", dict, {}).items())
        ),
        s3_credentials=_s3_credentials(sec, secret),
    )
    sec.done()
    for app in app_names:
        if app not in images:
            sec.problems.add(f"flink.images.{app}", None, "an image tag or digest (sha256:...) for every app")
    for app, opts in sec.data.get("appArgs", {}).items() if isinstance(sec.data.get("appArgs"), dict) else ():
        if app not in app_names:
            sec.problems.add(f"flink.appArgs.{app}", opts, f"an app of the catalog: {', '.join(app_names)}")
        elif not isinstance(opts, dict) or not all(re.match(r"^[a-z][a-z0-9-]*$", str(k)) for k in opts):
            sec.problems.add(
                f"flink.appArgs.{app}", opts, "a mapping of option names (like window-size-ms) to values"
            )
    for app, ref in images.items():
        if app not in app_names:
            sec.problems.add(f"flink.images.{app}", ref, f"an app of the catalog: {', '.join(app_names)}")
        elif ref in ("", "latest") or not isinstance(ref, str):
            sec.problems.add(f"flink.images.{app}", ref, "a pinned tag (not 'latest') or a digest sha256:...")
    return settings


def _registry(sec: _Section) -> RegistrySettings:
    settings = RegistrySettings(
        replicas=sec.get("replicas", int, 1, check=_positive),
        resources=_resources(sec.section("resources"))
        if "resources" in sec.data
        else Resources("250m", "512Mi", "1", "1Gi"),
        host=sec.get("host", str, None),
        tls_secret=sec.get("tlsSecret", str, None),
        ingress_class=sec.get("ingressClass", str, None),
        ingress_namespace=sec.get("ingressNamespace", str, "ingress-nginx", check=_k8s_name),
    )
    sec.seen.add("resources")
    sec.done()
    return settings


def _feature_store(
    sec: _Section, tier: Tier, kafka: KafkaSettings, topics: tuple[Topic, ...]
) -> FeatureStoreSettings:
    """`featureStore`: sizes and secrets of the online store, the materializer and the feature server."""
    redis = sec.section("redis")
    materializer = sec.section("materializer")
    server = sec.section("server")
    storage = redis.section("storage")
    settings = FeatureStoreSettings(
        image=sec.get("image", str, None),
        redis_storage=Storage(
            size=storage.get("size", str, "10Gi", check=_quantity),
            volumes=1,
            # The stack's storage class (the brokers') unless the store names its own.
            storage_class=storage.get("class", str, kafka.broker_storage.storage_class),
            delete_claim=False,
        ),
        redis_resources=_resources(redis.section("resources"))
        if "resources" in redis.data
        else Resources("250m", "512Mi", "1", "1Gi"),
        redis_password_secret=redis.get("passwordSecret", str, "feature-store-redis-auth", check=_k8s_name),
        redis_tls_secret=redis.get("tlsSecret", str, None, check=_k8s_name),
        materializer_resources=_resources(materializer.section("resources"))
        if "resources" in materializer.data
        else Resources("250m", "512Mi", "1", "1Gi"),
        server_replicas=server.get("replicas", int, 1, check=_positive),
        server_resources=_resources(server.section("resources"))
        if "resources" in server.data
        else Resources("250m", "512Mi", "1", "1Gi"),
        server_client_namespaces=_strings(
            server, "clientNamespaces", server.get("clientNamespaces", list, [])
        ),
    )
    storage.done(["size", "class"])
    for s, keys in (
        (redis, ["storage", "resources", "passwordSecret", "tlsSecret"]),
        (materializer, ["resources"]),
        (server, ["replicas", "resources", "clientNamespaces"]),
    ):
        s.done(keys)
    sec.done(["image", "redis", "materializer", "server"])
    _check_feature_store(
        sec.problems, settings, tier, sorted(t.name for t in topics if t.kind == TopicKind.FEATURE)
    )
    return settings


def _check_feature_store(
    problems: _Problems, settings: FeatureStoreSettings, tier: Tier, features: list[str]
) -> None:
    """The server's client namespaces are DNS labels; the image is pinned, and required when the catalog has
    feature topics; outside local and dev the online store has TLS and a storage class."""
    for ns in settings.server_client_namespaces:
        if (why := _k8s_name(ns)) is not None:
            problems.add("featureStore.server.clientNamespaces", ns, why)
    if features and settings.image is None:
        problems.add(
            "featureStore.image",
            None,
            f"the feature store's image tag or digest (the catalog has feature topics: {', '.join(features)})",
        )
    elif settings.image is not None and settings.image in ("", "latest"):
        problems.add(
            "featureStore.image", settings.image, "a pinned tag (not 'latest') or a digest sha256:..."
        )
    if features and tier in (Tier.STAGING, Tier.PROD) and not settings.redis_tls_secret:
        problems.add(
            "featureStore.redis.tlsSecret",
            None,
            "a Secret with tls.crt, tls.key and ca.crt outside local and dev: the online store's password and "
            "features never cross the network in clear",
        )
    if features and tier in (Tier.STAGING, Tier.PROD) and not settings.redis_storage.storage_class:
        problems.add(
            "featureStore.redis.storage.class",
            None,
            "a storage class (or kafka.storage.class) outside local and dev: the online store persists",
        )


def _cross_checks(
    p: _Problems,
    tier: Tier,
    kafka: KafkaSettings,
    topics: tuple[Topic, ...],
    principals: tuple[Principal, ...],
) -> None:
    names = {pr.name for pr in principals}
    for su in kafka.super_users:
        if su in names:
            p.add(
                "kafka.superUsers",
                su,
                "platform operators only; an application principal gets ACLs from its flows",
            )
    groups: dict[str, str] = {}
    for pr in principals:
        for c in pr.consumes:
            owner = groups.setdefault(c.group, pr.name)
            if owner != pr.name:
                p.add(
                    f"catalog.principals.{pr.name}.consumes.group",
                    c.group,
                    f"a group not already used by {owner}",
                )
    for t in topics:
        if not isinstance(t.partitions, int) or not isinstance(kafka.brokers, int) or t.partitions < 1:
            continue
        if (
            tier == Tier.PROD
            and t.sla == Sla.GOLD
            and t.kind != TopicKind.JOURNAL
            and t.partitions < kafka.brokers
        ):
            p.add(
                f"catalog.topics.{t.name}.partitions",
                t.partitions,
                f"at least the broker count ({kafka.brokers}) for a gold topic in prod",
            )


def format_problems(err: ConfigError) -> str:
    return f"error: stack {err.stack!r} is not valid ({len(err.problems)} problem(s)):\n" + "\n".join(
        f"  - {line}" for line in err.problems
    )
