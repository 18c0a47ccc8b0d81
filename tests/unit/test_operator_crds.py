"""The operators' CRDs as the platform applies them: the charts' files, minus what the API server omits."""

from __future__ import annotations

from typing import Any

from components.operator_crds import as_stored, render_flink_operator_crds, render_strimzi_crds
from headwater import crds


def _omitted_zero_values(value: Any, path: str = "") -> list[str]:
    """Zero values the API server would drop on store, so that the next preview would show them as a change."""
    found: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if (k == "priority" and v == 0) or (
                k == "properties" and v == {} and isinstance(value.get("type"), str)
            ):
                found.append(f"{path}.{k}")
            found += _omitted_zero_values(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _omitted_zero_values(v, f"{path}[{i}]")
    return found


def test_the_charts_carry_values_the_api_server_omits() -> None:
    """The reason for `as_stored`: applied as shipped, these would differ from what the server keeps."""
    shipped = crds.strimzi().documents() + crds.flink_operator().documents()
    assert _omitted_zero_values(shipped)


def test_applied_crds_hold_nothing_the_api_server_would_drop() -> None:
    applied = render_strimzi_crds() + render_flink_operator_crds()
    assert _omitted_zero_values(applied) == []
    assert len(applied) == len(crds.strimzi().documents()) + len(crds.flink_operator().documents())


def test_dropping_zero_values_keeps_everything_else() -> None:
    column = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp", "priority": 0}
    schema = {
        "type": "object",
        "properties": {
            "status": {"type": "object", "properties": {}},
            # fields that happen to be called "properties", "type" or "priority" stay
            "properties": {"type": "object", "additionalProperties": {"type": "string"}},
            "priority": {"type": "integer"},
        },
    }
    assert as_stored({"columns": [column, {**column, "priority": 1}], "schema": schema}) == {
        "columns": [{k: v for k, v in column.items() if k != "priority"}, {**column, "priority": 1}],
        "schema": {
            "type": "object",
            "properties": {
                "status": {"type": "object"},
                "properties": {"type": "object", "additionalProperties": {"type": "string"}},
                "priority": {"type": "integer"},
            },
        },
    }
