"""The Headwater policy pack: every rule, as CrossGuard policies for one stack's environment.

`pack_arguments(facts)` is everything `PolicyPack(...)` is given (building the pack itself starts a gRPC
server, so only `policies/__main__.py` does that); `headwater check` builds the same policies with
`build_policies` and calls their `validate`.

Enforcement levels: each rule defaults to advisory in local/dev and mandatory in staging/prod, for the
environment of the stack being previewed. `policies/config/<environment>.json`, when present, is applied
as the pack's initial config for that environment (Pulumi's policy-config format, e.g.
`{"flink-high-availability": "advisory", "strimzi-topic-durability": {"enforcementLevel": "mandatory"}}`);
a file given with `pulumi preview --policy-pack-config` (or `headwater check --policy-config`) wins over it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pulumi_policy import EnforcementLevel, ResourceValidationPolicy

from policies import approvers_rules, cdc_rules, feature_store_rules, flink_rules, k8s_rules, strimzi_rules
from policies.rulebook import (
    PolicyConfig,
    PolicyConfigError,
    Rule,
    StackFacts,
    parse_policy_config,
    to_policy,
)

PACK_NAME = "headwater"
CONFIG_DIR = Path(__file__).resolve().parent / "config"

RULES: tuple[Rule, ...] = (
    *strimzi_rules.RULES,
    *cdc_rules.RULES,
    *flink_rules.RULES,
    *k8s_rules.RULES,
    *feature_store_rules.RULES,
    *approvers_rules.RULES,
)


def build_policies(facts: StackFacts) -> list[ResourceValidationPolicy]:
    return [to_policy(rule, facts) for rule in RULES]


def read_policy_config(path: Path) -> PolicyConfig:
    """A policy-config JSON file, validated against the rules (PolicyConfigError names every problem)."""
    try:
        raw = json.loads(path.read_text())
    except OSError as err:
        raise PolicyConfigError(str(path), [f"cannot read: {err.strerror}"]) from err
    except ValueError as err:
        raise PolicyConfigError(str(path), [f"not valid JSON: {err}"]) from err
    return parse_policy_config(raw, RULES, str(path))


def environment_config(facts: StackFacts, config_dir: Path = CONFIG_DIR) -> PolicyConfig:
    """The checked-in policy config of the stack's environment, or nothing when there is none."""
    path = config_dir / f"{facts.tier.value}.json"
    return read_policy_config(path) if path.is_file() else {}


def pack_arguments(facts: StackFacts, config_dir: Path = CONFIG_DIR) -> dict[str, Any]:
    """Keyword arguments of `PolicyPack` for a stack (all checks, no server)."""
    initial = environment_config(facts, config_dir)
    return {
        "name": PACK_NAME,
        "description": (
            "Headwater platform rules: Strimzi security and topic durability, Flink state and "
            f"checkpoints, pinned images, restricted pods (judged as {facts.tier.value})."
        ),
        "policies": build_policies(facts),
        "enforcement_level": EnforcementLevel.ADVISORY,  # every policy sets its own level
        "initial_config": initial or None,
    }
