"""The operators' CustomResourceDefinitions, installed and upgraded by the platform rather than by Helm.

Helm installs a chart's `crds/` once and never upgrades or deletes them, so an operator upgrade would run
against stale CRDs. Here the pinned charts' own CRD files (`charts/`, see `headwater.crds`) become
`CustomResourceDefinition` objects the platform owns: `pulumi up` of a new operator version updates them, and
Pulumi knows the kinds before the first custom resource is planned (a preview on an empty cluster works).
The Helm releases are installed with `skipCrds`.
"""

from __future__ import annotations

from typing import Any

import pulumi

from components.k8s import create_object
from headwater import crds


def as_stored(value: Any) -> Any:
    """A CRD document as the API server stores it: without the zero values its Go types omit.

    The charts write `priority: 0` on printer columns and `properties: {}` on some schemas; the server drops
    both (`omitempty`), so applied as shipped they would show as a change on every `pulumi preview`. Dropping
    them changes no meaning: an absent priority is 0, an absent property list is an empty one.
    """
    if isinstance(value, dict):
        schema_node = isinstance(value.get("type"), str)  # not a `properties` map with a field named "type"
        return {
            k: as_stored(v)
            for k, v in value.items()
            if not (k == "priority" and v == 0) and not (schema_node and k == "properties" and v == {})
        }
    if isinstance(value, list):
        return [as_stored(v) for v in value]
    return value


def render_strimzi_crds() -> list[dict[str, Any]]:
    """Strimzi's CRDs of the pinned release, as shipped in its chart (as the API server stores them)."""
    return [as_stored(doc) for doc in crds.strimzi().documents()]


def render_flink_operator_crds() -> list[dict[str, Any]]:
    """The Flink Kubernetes Operator's CRDs of the pinned release, as shipped in its chart (as stored)."""
    return [as_stored(doc) for doc in crds.flink_operator().documents()]


class OperatorCrds(pulumi.ComponentResource):
    """One operator's CRDs; pass the component in `depends_on` of its release and custom resources."""

    names: pulumi.Output[list[str]]
    """Names of the installed CustomResourceDefinitions."""

    def __init__(
        self, name: str, definitions: list[dict[str, Any]], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("headwater:operators:OperatorCrds", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        for doc in definitions:
            create_object(f"{name}-{doc['metadata']['name']}", doc, child)
        self.names = pulumi.Output.from_input(sorted(d["metadata"]["name"] for d in definitions))
        self.register_outputs({"names": self.names})
