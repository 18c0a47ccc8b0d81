"""Run one policy of the pack over one object, the way the engine (and `headwater check`) hands it over."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from pulumi_policy import PolicyCustomTimeouts, PolicyResourceOptions, ResourceValidationArgs

from components.k8s import object_key
from headwater.config import load_platform
from headwater.spec import Tier
from headwater_cli.check import engine_props, resource_of
from headwater_cli.render import render_stack
from policies.pack import build_policies
from policies.rulebook import StackFacts

Obj = dict[str, Any]
Judge = Callable[..., list[str]]


def run_policy(
    policy_name: str,
    obj: Mapping[str, Any],
    environment: str | None = "prod",
    config: Mapping[str, Any] | None = None,
    allow_load_balancer: bool = False,
) -> list[str]:
    """The messages `policy_name` reports for a rendered object (through the real `validate`)."""
    facts = StackFacts(
        stack="test",
        environment=Tier(environment) if environment else None,
        allow_load_balancer=allow_load_balancer,
    )
    (policy,) = [p for p in build_policies(facts) if p.name == policy_name]
    resource_type, props = resource_of(obj)
    args = ResourceValidationArgs(
        resource_type=resource_type,
        props=engine_props(props),
        urn=f"urn:pulumi:test::headwater::{resource_type}::x",
        name="x",
        opts=PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), []),
        provider=None,
        config=config,
    )
    messages: list[str] = []

    def report(message: str, urn: str | None = None) -> None:
        messages.append(message)

    assert policy.validate(args, report) is None  # synchronous: nothing is left to await
    return messages


@pytest.fixture
def judge() -> Judge:
    return run_policy


@functools.cache
def _rendered(stack: str) -> dict[str, Obj]:
    return {object_key(o): o for o in render_stack(load_platform(stack))}


def _fresh(stack: str, key: str) -> Obj:
    return copy.deepcopy(_rendered(stack)[key])


def _fresh_of_kind(stack: str, kind: str) -> list[Obj]:
    return [copy.deepcopy(o) for o in _rendered(stack).values() if o.get("kind") == kind]


@pytest.fixture
def obj() -> Callable[[str, str], Obj]:
    """`obj(stack, "Kind/namespace/name")`: a fresh copy of an object a shipped stack renders."""
    return _fresh


@pytest.fixture
def objs_of_kind() -> Callable[[str, str], list[Obj]]:
    """`objs_of_kind(stack, kind)`: fresh copies of every object of a kind a shipped stack renders."""
    return _fresh_of_kind
