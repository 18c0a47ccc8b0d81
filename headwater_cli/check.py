"""`headwater check --stack <name>`: the policy pack, offline, against every object a stack renders.

No cluster and no Pulumi CLI: each rendered object is turned into the (type token, inputs) pair that
`components.k8s.create_object` / `create_release` register with Pulumi, the inputs take the same trip the
engine gives them on the way to a policy pack (a protobuf Struct: numbers become floats, maps and lists
read-only proxies), and the pack's own `ResourceValidationPolicy.validate` judges them. Levels and policy
config resolve as under `pulumi preview --policy-pack policies [--policy-pack-config FILE]`.

Exit codes: 0 clean or advisory findings only, 1 mandatory violations, 2 configuration error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import json_format, struct_pb2
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.proxy import unknown_checking_proxy

from components.k8s import HelmRelease, object_key, release_inputs
from headwater.config import ConfigError, load_platform
from headwater.spec import Platform
from headwater_cli.render import render_stack
from policies import pack
from policies.rulebook import (
    PolicyConfig,
    PolicyConfigError,
    StackFacts,
    merge_policy_config,
    policy_properties,
    resolve_level,
)

HELM_RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"
PROJECT = "headwater"


def resource_of(obj: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The Pulumi type token and inputs of a rendered object, as `create_object`/`create_release` make them."""
    if obj.get("kind") == "HelmRelease":
        # pulumi-kubernetes' Release always sends `compat`
        return HELM_RELEASE_TYPE, release_inputs(HelmRelease.from_dict(obj)) | {"compat": "true"}
    api_version, kind = str(obj["apiVersion"]), str(obj["kind"])
    # pulumi-kubernetes names core types `core/v1`; every other group, built-in or custom, by its apiVersion.
    token = f"kubernetes:{'core/v1' if api_version == 'v1' else api_version}:{kind}"
    return token, {"apiVersion": api_version, "kind": kind} | {
        k: v for k, v in obj.items() if k not in ("apiVersion", "kind")
    }


def engine_props(props: Mapping[str, Any]) -> Mapping[str, Any]:
    """Inputs as a policy receives them from the engine (Struct round trip, unknown-checking proxies)."""
    struct = struct_pb2.Struct()
    struct.update(dict(props))
    return unknown_checking_proxy(deserialize_properties(json_format.MessageToDict(struct)))


_NO_OPTIONS = PolicyResourceOptions(
    protect=False,
    ignore_changes=[],
    delete_before_replace=None,
    aliases=[],
    custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
    additional_secret_outputs=[],
)


@dataclass(frozen=True)
class Finding:
    resource: str  # Kind/namespace/name of the rendered object
    resource_type: str
    policy: str
    level: EnforcementLevel
    message: str

    @property
    def sort_key(self) -> tuple[str, str]:
        """By object, then policy; a policy's messages stay in the order it reported them."""
        return self.resource, self.policy


@dataclass
class Report:
    stack: str
    environment: str
    objects: int
    policies: int
    findings: list[Finding]

    @property
    def mandatory(self) -> list[Finding]:
        return [f for f in self.findings if f.level == EnforcementLevel.MANDATORY]

    @property
    def advisory(self) -> list[Finding]:
        return [f for f in self.findings if f.level == EnforcementLevel.ADVISORY]

    @property
    def exit_code(self) -> int:
        return 1 if self.mandatory else 0

    def format(self) -> str:
        lines: list[str] = []
        current = None
        for f in sorted(self.findings, key=lambda f: f.sort_key):
            if f.resource != current:
                current = f.resource
                lines.append(f"{f.resource}  ({f.resource_type})")
            lines.append(f"  [{f.level.value}] {f.policy}: {f.message}")
        touched = len({f.resource for f in self.findings})
        lines.append(
            f"stack {self.stack} ({self.environment}): {self.objects} objects, {self.policies} policies: "
            f"{len(self.mandatory)} mandatory and {len(self.advisory)} advisory violation(s)"
            + (f" in {touched} object(s)" if touched else "")
        )
        return "\n".join(lines)


def check_objects(
    objs: Sequence[Mapping[str, Any]],
    facts: StackFacts,
    policy_config: PolicyConfig | None = None,
) -> Report:
    """Run every policy of the pack over rendered objects, the way the engine would for this stack."""
    config = policy_config or {}
    policies = pack.build_policies(facts)
    findings: list[Finding] = []
    stack = facts.stack or "?"
    for obj in objs:
        key = object_key(obj)
        resource_type, props = resource_of(obj)
        engine_view = engine_props(props)
        for policy in policies:
            level = resolve_level(policy, config)
            if level == EnforcementLevel.DISABLED:
                continue
            args = ResourceValidationArgs(
                resource_type=resource_type,
                props=engine_view,
                urn=f"urn:pulumi:{stack}::{PROJECT}::{resource_type}::{key}",
                name=key,
                opts=_NO_OPTIONS,
                provider=None,
                config=policy_properties(policy.name, config),
            )
            findings += [
                Finding(key, resource_type, policy.name, level, m) for m in _violations(policy, args)
            ]
    return Report(
        stack, facts.tier.value, len(objs), len(policies), sorted(findings, key=lambda f: f.sort_key)
    )


def _violations(policy: ResourceValidationPolicy, args: ResourceValidationArgs) -> list[str]:
    messages: list[str] = []

    def report(message: str, urn: str | None = None) -> None:
        messages.append(message)

    policy.validate(args, report)
    return messages


def facts_of(platform: Platform) -> StackFacts:
    """What `pulumi preview` would hand the pack from this stack's config."""
    return StackFacts(
        stack=platform.stack,
        environment=platform.tier,
        allow_load_balancer=platform.allow_load_balancer,
    )


def check_stack(
    stack: str,
    policy_config_file: Path | None = None,
    config_dir: Path = pack.CONFIG_DIR,
    platform: Platform | None = None,
) -> Report:
    """Load, render and judge one stack; ConfigError for a bad stack or policy config (exit code 2)."""
    platform = platform or load_platform(stack)
    facts = facts_of(platform)
    try:
        config = pack.environment_config(facts, config_dir)
        if policy_config_file is not None:
            config = merge_policy_config(config, pack.read_policy_config(policy_config_file))
    except PolicyConfigError as err:
        raise ConfigError(stack, [f"policy config {err.source}: {p}" for p in err.problems]) from err
    return check_objects(render_stack(platform), facts, config)
