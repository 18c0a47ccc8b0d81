"""Test support for programs built from these components: Pulumi mocks that record every resource.

    mocks = RecordingMocks.install()
    @pulumi_test
    def build(): return HeadwaterPlatform("headwater", load_platform("prod")).bootstrap
    build()                                   # returns once every registration reached the mocks
    mocks.of_type("kubernetes:kafka.strimzi.io/v1:KafkaUser")

Without `@pulumi_test` (`pulumi.runtime.test` with its type) an `apply` never runs and a test passes without
checking anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

import pulumi

P = ParamSpec("P")
R = TypeVar("R")


def pulumi_test(fn: Callable[P, R]) -> Callable[P, R]:
    """`pulumi.runtime.test`, which has no type hints: waits for every output before the test returns."""
    return cast(Callable[P, R], pulumi.runtime.test(fn))  # type: ignore[no-untyped-call]


class _DependencyMonitor(pulumi.runtime.mocks.MockMonitor):
    """The mock monitor, also noting what each registration waits for (the URNs of its dependencies)."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.recorder = mocks

    def RegisterResource(self, request: Any) -> Any:  # the gRPC method's name
        self.recorder.dependencies[request.name] = sorted(request.dependencies)
        return super().RegisterResource(request)  # type: ignore[no-untyped-call]  # Pulumi's mock is untyped


class RecordingMocks(pulumi.runtime.Mocks):
    """Mocks that echo inputs back as outputs and keep every registered resource and its dependencies."""

    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []  # what the program creates
        self.reads: list[pulumi.runtime.MockResourceArgs] = []  # existing resources it only reads (`.get`)
        self.dependencies: dict[str, list[str]] = {}  # resource name -> URNs it explicitly depends on
        # State that reads of existing resources return: (type token, id) -> properties.
        self.existing: dict[tuple[str, str], dict[str, Any]] = {}

    @classmethod
    def install(cls, project: str = "headwater", stack: str = "test") -> RecordingMocks:
        mocks = cls()
        pulumi.runtime.set_mocks(
            mocks, project=project, stack=stack, preview=False, monitor=_DependencyMonitor(mocks)
        )
        return mocks

    def depends_on(self, name: str, other: str) -> bool:
        """Whether resource `name` waits for the resource named `other` (directly)."""
        return any(urn.rsplit("::", 1)[-1] == other for urn in self.dependencies.get(name, []))

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        if args.resource_id and not args.custom:  # a read of an existing resource (ReadResource)
            self.reads.append(args)
            return args.resource_id, dict(self.existing.get((args.typ, args.resource_id), {}))
        self.resources.append(args)
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None

    def of_type(self, token: str) -> list[pulumi.runtime.MockResourceArgs]:
        return [r for r in self.resources if r.typ == token]

    def named(self, name: str) -> pulumi.runtime.MockResourceArgs:
        (found,) = [r for r in self.resources if r.name == name]
        return found
