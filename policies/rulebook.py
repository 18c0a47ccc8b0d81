"""The shape of a rule, the environment it judges for, and the bridge to Pulumi CrossGuard policies.

A `Rule` is plain Python: it says which resource types it looks at and turns one resource's inputs
(`props`, as the Pulumi engine hands them to a policy: `apiVersion`/`kind`/`metadata`/`spec` for a custom
resource, the release arguments for a Helm release) into messages that say what to change. `to_policy`
wraps a rule as a `ResourceValidationPolicy`; `pulumi preview --policy-pack policies` and
`headwater check` both call that policy's `validate`, so a rule is one piece of code judged one way.

The environment decides thresholds (plaintext listeners are fine in dev, RF 3 is needed in prod) and the
default enforcement level (advisory in local/dev, mandatory in staging/prod). It is taken, first match wins,
from the policy's config property `environment`, then the stack's own `headwater:environment` (Pulumi
hands stack config to a policy pack in `PULUMI_CONFIG`), and when neither is known the rules judge as prod.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from headwater.spec import Tier

CONFIG_NAMESPACE = "headwater"  # stack config keys are `headwater:<key>`
STRICTEST = Tier.PROD  # what an unknown environment is judged as

DEFAULT_LEVELS: Mapping[Tier, EnforcementLevel] = {
    Tier.LOCAL: EnforcementLevel.ADVISORY,
    Tier.DEV: EnforcementLevel.ADVISORY,
    Tier.STAGING: EnforcementLevel.MANDATORY,
    Tier.PROD: EnforcementLevel.MANDATORY,
}

ENVIRONMENT_PROPERTY = "environment"
ALLOW_LOAD_BALANCER_PROPERTY = "allowLoadBalancer"
POD_SECURITY_PROPERTY = "podSecurityStandard"
POD_SECURITY_LEVELS = ("privileged", "baseline", "restricted")
# What the platform's namespaces enforce (`components.k8s.namespace`): the level operators must create pods for.
PLATFORM_POD_SECURITY = "restricted"
ENVIRONMENT_SCHEMA: Mapping[str, Any] = {
    "type": "string",
    "enum": [t.value for t in Tier],
    "description": "Judge resources as this environment (default: the stack's headwater:environment).",
}


@dataclass(frozen=True)
class Context:
    """What a rule needs to know about the environment the resource is deployed to."""

    tier: Tier
    allow_load_balancer: bool = False
    pod_security_standard: str = PLATFORM_POD_SECURITY  # enforced in the namespaces operators create pods in


@dataclass(frozen=True)
class StackFacts:
    """What is known about the stack before any policy config: its environment and its allowances."""

    stack: str | None = None
    environment: Tier | None = None
    allow_load_balancer: bool = False

    @property
    def tier(self) -> Tier:
        return self.environment or STRICTEST

    def context(self, policy_config: Mapping[str, Any]) -> Context:
        """The context a rule judges in: policy config properties win over the stack's own config."""
        env = policy_config.get(ENVIRONMENT_PROPERTY)
        allow = policy_config.get(ALLOW_LOAD_BALANCER_PROPERTY)
        level = policy_config.get(POD_SECURITY_PROPERTY)
        return Context(
            tier=Tier(env) if env in {t.value for t in Tier} else self.tier,
            allow_load_balancer=allow if isinstance(allow, bool) else self.allow_load_balancer,
            pod_security_standard=level if level in POD_SECURITY_LEVELS else PLATFORM_POD_SECURITY,
        )

    @classmethod
    def from_stack_config(cls, stack: str | None, config: Mapping[str, Any]) -> StackFacts:
        """From the stack config as Pulumi passes it (`headwater:environment` etc., values often strings)."""
        env = config.get(f"{CONFIG_NAMESPACE}:environment")
        allow = config.get(f"{CONFIG_NAMESPACE}:allowLoadBalancer")
        return cls(
            stack=stack,
            environment=Tier(env) if env in {t.value for t in Tier} else None,
            allow_load_balancer=allow is True or (isinstance(allow, str) and allow.lower() == "true"),
        )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> StackFacts:
        """Inside `pulumi preview/up`: the engine starts the pack with PULUMI_STACK and PULUMI_CONFIG set."""
        env = os.environ if environ is None else environ
        try:
            config = json.loads(env.get("PULUMI_CONFIG") or "{}")
        except ValueError:
            config = {}
        return cls.from_stack_config(env.get("PULUMI_STACK"), config if isinstance(config, dict) else {})


Check = Callable[[str, Mapping[str, Any], Context], Iterable[str]]


@dataclass(frozen=True)
class ResourceType:
    """A Pulumi type token `kubernetes:<group>/<version>:<Kind>` split up (`core` for the core group)."""

    group: str
    version: str
    kind: str

    @classmethod
    def parse(cls, token: str) -> ResourceType | None:
        parts = token.split(":")
        if len(parts) != 3 or parts[0] != "kubernetes" or "/" not in parts[1]:
            return None
        group, version = parts[1].rsplit("/", 1)
        return cls(group, version, parts[2])


def of_kind(group: str, *kinds: str) -> Callable[[str], bool]:
    """Matches resources of these kinds in `group`, whatever the version (the version is a rule of its own)."""

    def match(token: str) -> bool:
        t = ResourceType.parse(token)
        return t is not None and t.group == group and (not kinds or t.kind in kinds)

    return match


@dataclass(frozen=True)
class Rule:
    """One policy: what it looks at, what it checks, and how strictly per environment."""

    name: str
    description: str
    applies: Callable[[str], bool]
    check: Check
    levels: Mapping[Tier, EnforcementLevel] = field(default_factory=lambda: dict(DEFAULT_LEVELS))
    config_properties: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def level(self, tier: Tier) -> EnforcementLevel:
        return self.levels[tier]

    def evaluate(self, resource_type: str, props: Mapping[str, Any], ctx: Context) -> list[str]:
        if not self.applies(resource_type):
            return []
        return list(self.check(resource_type, props, ctx))

    def config_schema(self) -> PolicyConfigSchema:
        return PolicyConfigSchema(
            properties={ENVIRONMENT_PROPERTY: dict(ENVIRONMENT_SCHEMA)}
            | {k: dict(v) for k, v in self.config_properties.items()}
        )


def to_policy(rule: Rule, facts: StackFacts) -> ResourceValidationPolicy:
    """The CrossGuard policy of a rule, with the default enforcement level of the stack's environment."""

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        ctx = facts.context(args.get_config())
        for message in rule.evaluate(args.resource_type, args.props, ctx):
            report_violation(message, None)

    return ResourceValidationPolicy(
        name=rule.name,
        description=rule.description,
        validate=validate,
        enforcement_level=rule.level(facts.tier),
        config_schema=rule.config_schema(),
    )


# --- Policy config (the `--policy-pack-config` JSON format) --------------------------------------------


class PolicyConfigError(ValueError):
    """A policy config file is not valid; `problems` has one readable line per problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


PolicyConfig = dict[str, EnforcementLevel | dict[str, Any]]


def parse_policy_config(raw: Any, rules: Sequence[Rule], source: str) -> PolicyConfig:
    """Validate Pulumi's policy-config format against the rules' schemas.

    `{"all": "mandatory", "<policy>": "advisory" | {"enforcementLevel": ..., "environment": ...}}`; levels
    come back as `EnforcementLevel`s (what `PolicyPack(initial_config=...)` expects).
    """
    by_name = {r.name: r for r in rules}
    levels = [lvl.value for lvl in EnforcementLevel if lvl != EnforcementLevel.REMEDIATE]
    problems: list[str] = []
    out: PolicyConfig = {}
    if not isinstance(raw, dict):
        raise PolicyConfigError(source, [f"expected a JSON object, got {type(raw).__name__}"])

    def level(key: str, value: Any) -> EnforcementLevel | None:
        if value in levels:
            return EnforcementLevel(value)
        problems.append(f"{key}: enforcement level {value!r} is not valid; allowed: {', '.join(levels)}")
        return None

    for key, value in raw.items():
        if key != "all" and key not in by_name:
            problems.append(f"unknown policy {key!r}; policies: all, {', '.join(sorted(by_name))}")
            continue
        if isinstance(value, str):
            if (lvl := level(key, value)) is not None:
                out[key] = lvl
            continue
        if not isinstance(value, dict):
            problems.append(f"{key}: expected an enforcement level or an object, got {value!r}")
            continue
        if key == "all":
            extra = sorted(set(value) - {"enforcementLevel"})
            if extra:
                problems.append(f"all: only enforcementLevel can be set for every policy, not {extra}")
            if "enforcementLevel" in value and (lvl := level(key, value["enforcementLevel"])) is not None:
                out[key] = lvl
            continue
        schema = by_name[key].config_schema().properties
        entry: dict[str, Any] = {}
        for prop, pval in value.items():
            if prop == "enforcementLevel":
                if (lvl := level(key, pval)) is not None:
                    entry[prop] = lvl
            elif prop not in schema:
                problems.append(
                    f"{key}: unknown property {prop!r}; allowed: enforcementLevel, {', '.join(schema)}"
                )
            elif (why := _schema_problem(schema[prop], pval)) is not None:
                problems.append(f"{key}.{prop} = {pval!r} is not valid; allowed: {why}")
            else:
                entry[prop] = pval
        out[key] = entry
    if problems:
        raise PolicyConfigError(source, problems)
    return out


def _schema_problem(schema: Mapping[str, Any], value: Any) -> str | None:
    if "enum" in schema:
        return None if value in schema["enum"] else ", ".join(schema["enum"])
    if schema.get("type") == "boolean":
        return None if isinstance(value, bool) else "true or false"
    return None


def merge_policy_config(base: PolicyConfig, override: PolicyConfig) -> PolicyConfig:
    """Later config wins per policy (the engine's order: pack initial config, then the user's file)."""
    return {**base, **override}


def resolve_level(policy: ResourceValidationPolicy, config: PolicyConfig) -> EnforcementLevel:
    """A policy's effective level, as the engine decides it: its own entry, then `all`, then its default."""
    entry = config.get(policy.name)
    if isinstance(entry, EnforcementLevel):
        return entry
    own = entry.get("enforcementLevel") if isinstance(entry, dict) else None
    if isinstance(own, EnforcementLevel):
        return own
    everything = config.get("all")
    if isinstance(everything, EnforcementLevel):
        return everything
    return policy.enforcement_level or EnforcementLevel.ADVISORY


def policy_properties(name: str, config: PolicyConfig) -> dict[str, Any]:
    """The config properties a policy's `validate` sees through `args.get_config()`."""
    entry = config.get(name)
    if not isinstance(entry, dict):
        return {}
    return {k: v for k, v in entry.items() if k != "enforcementLevel"}


# --- Reading resource inputs -------------------------------------------------------------------------
# The engine hands props over as protobuf Struct values: numbers are floats, lists and maps are read-only
# proxies (Sequence/Mapping, not list/dict). These helpers accept both that and plain rendered dicts.


def mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def items(value: Any) -> list[Any]:
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    return []


def dig(value: Any, *path: str) -> Any:
    """`dig(props, "spec", "kafka", "listeners")`, None where a level is missing."""
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def as_int(value: Any) -> int | None:
    """3, 3.0 and "3" are 3; anything else (None, "x", 2.5, True) is None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def is_true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def labels_of(props: Mapping[str, Any]) -> Mapping[str, Any]:
    return mapping(dig(props, "metadata", "labels"))


def image_problem(ref: Any) -> str | None:
    """Why an image reference is not pinned, or None when it names a fixed tag or a digest."""
    if not isinstance(ref, str) or not ref.strip():
        return "is empty"
    if "@sha256:" in ref:
        return None
    last = ref.rsplit("/", 1)[-1]  # a registry host may carry a port: only the last segment has the tag
    if ":" not in last:
        return "has no tag (it means latest)"
    tag = last.rsplit(":", 1)[1]
    if not tag or tag == "latest":
        return "uses the latest tag"
    return None


def tag_problem(tag: Any) -> str | None:
    if not isinstance(tag, str) or not tag.strip():
        return "is empty"
    return "is latest" if tag.strip() == "latest" else None


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """Every (path, key, value) below `value`, depth first, for maps and lists."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            p = f"{path}.{k}" if path else str(k)
            yield p, k, v
            yield from walk(v, p)
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        for i, v in enumerate(value):
            p = f"{path}[{i}]"
            yield p, i, v
            yield from walk(v, p)
