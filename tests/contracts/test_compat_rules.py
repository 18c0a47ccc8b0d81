"""The offline compatibility rules: JSON Schema constructs one by one, Avro via the official checker, levels."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from headwater.contracts.compat import avro_findings, check_evolution
from headwater.contracts.json_compat import incompatibilities
from headwater.contracts.model import Compatibility, SchemaType

OBJ: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id"],
    "properties": {
        "id": {"type": "string", "minLength": 1, "maxLength": 10, "pattern": "^[a-z]+$"},
        "kind": {"type": "string", "enum": ["a", "b"]},
        "n": {"type": "integer", "minimum": 0, "maximum": 100},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
    },
}


def _with(path: list[str], value: Any, base: dict[str, Any] = OBJ) -> dict[str, Any]:
    """A copy of `base` with the key at `path` set (or removed, for value None)."""
    import copy

    out = copy.deepcopy(base)
    node = out
    for key in path[:-1]:
        node = node[key]
    if value is None:
        node.pop(path[-1])
    else:
        node[path[-1]] = value
    return out


# (new schema, is it BACKWARD-compatible with OBJ, the path a finding names)
JSON_CASES: dict[str, tuple[dict[str, Any], bool, str]] = {
    "identical": (OBJ, True, ""),
    "optional property added (closed writer)": (_with(["properties", "x"], {"type": "string"}), True, ""),
    "property removed (closed reader)": (_with(["properties", "kind"], None), False, "/kind"),
    "property required": (_with(["required"], ["id", "n"]), False, "/n"),
    "requirement dropped": (_with(["required"], []), True, ""),
    "type narrowed": (_with(["properties", "n", "type"], "string"), False, "/n"),
    "integer widened to number": (_with(["properties", "n", "type"], "number"), True, ""),
    "null allowed": (_with(["properties", "id", "type"], ["string", "null"]), True, ""),
    "enum value added": (_with(["properties", "kind", "enum"], ["a", "b", "c"]), True, ""),
    "enum value removed": (_with(["properties", "kind", "enum"], ["a"]), False, "/kind"),
    "enum dropped": (_with(["properties", "kind", "enum"], None), True, ""),
    "maxLength grown": (_with(["properties", "id", "maxLength"], 20), True, ""),
    "maxLength shrunk": (_with(["properties", "id", "maxLength"], 5), False, "/id"),
    "minLength grown": (_with(["properties", "id", "minLength"], 2), False, "/id"),
    "pattern changed": (_with(["properties", "id", "pattern"], "^[a-z0-9]+$"), False, "/id"),
    "pattern dropped": (_with(["properties", "id", "pattern"], None), True, ""),
    "format added": (_with(["properties", "id", "format"], "email"), False, "/id"),
    "maximum raised": (_with(["properties", "n", "maximum"], 1000), True, ""),
    "exclusive maximum at the same bound": (_with(["properties", "n", "exclusiveMaximum"], 100), False, "/n"),
    "minimum raised": (_with(["properties", "n", "minimum"], 1), False, "/n"),
    "maxItems shrunk": (_with(["properties", "tags", "maxItems"], 2), False, "/tags"),
    "uniqueItems added": (_with(["properties", "tags", "uniqueItems"], True), False, "/tags"),
    "items narrowed": (_with(["properties", "tags", "items", "maxLength"], 3), False, "/tags/*"),
    "additionalProperties opened": (_with(["additionalProperties"], True), True, ""),
    "description changed": (_with(["description"], "new words"), True, ""),
    "unsupported keyword added": (_with(["properties", "id", "not"], {"const": "x"}), False, "/id"),
}


@pytest.mark.parametrize("name", sorted(JSON_CASES))
def test_json_schema_rule(name: str) -> None:
    new, compatible, path = JSON_CASES[name]
    found = incompatibilities(new, OBJ)
    assert (not found) is compatible, found
    if not compatible:
        assert path in {f.path for f in found}, found


def test_an_open_writer_cannot_gain_constrained_properties() -> None:
    """Under an open content model, old data may already carry the new property with any value."""
    writer = {"type": "object", "properties": {"a": {"type": "string"}}}
    reader = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}}
    (finding,) = incompatibilities(reader, writer)
    assert finding.path == "/b" and "allows additional properties" in finding.message
    assert (
        incompatibilities(reader | {"additionalProperties": True}, writer | {"additionalProperties": False})
        == []
    )


def test_headwater_limits_may_only_relax() -> None:
    base = {"type": "object", "x-headwater-limits": {"max_record_bytes": 100, "min_fields": 1}}
    assert (
        incompatibilities({**base, "x-headwater-limits": {"max_record_bytes": 200, "min_fields": 0}}, base)
        == []
    )
    found = incompatibilities({**base, "x-headwater-limits": {"max_record_bytes": 50, "min_fields": 1}}, base)
    assert [f.message for f in found] == [
        "x-headwater-limits.max_record_bytes is 50 for the reader but 100 for the writer"
    ]


def test_compatible_verdicts_hold_for_sample_documents() -> None:
    """Soundness spot check: a document valid for the old schema stays valid for every 'compatible' new one."""
    samples = [
        {"id": "abc"},
        {"id": "abcdefghij", "kind": "b", "n": 100, "tags": ["x", "y", "z", "w", "v"]},
        {"id": "q", "n": 0, "tags": []},
    ]
    for sample in samples:
        jsonschema.validate(sample, OBJ)
    for name, (new, compatible, _) in JSON_CASES.items():
        if compatible:
            for sample in samples:
                assert jsonschema.Draft202012Validator(new).is_valid(sample), (name, sample)


RECORD = {"type": "record", "name": "R", "namespace": "t", "fields": [{"name": "a", "type": "string"}]}


def _fields(*fields: dict[str, Any]) -> dict[str, Any]:
    return {**RECORD, "fields": [*RECORD["fields"], *fields]}


def test_avro_findings_name_the_field() -> None:
    assert avro_findings(_fields({"name": "b", "type": "int", "default": 0}), RECORD) == []
    (missing,) = avro_findings(_fields({"name": "b", "type": "int"}), RECORD)
    assert missing.path == "/b" and "without a default" in missing.message
    nested_old = _fields(
        {"name": "s", "type": {"type": "record", "name": "S", "fields": [{"name": "x", "type": "int"}]}}
    )
    nested_new = _fields(
        {"name": "s", "type": {"type": "record", "name": "S", "fields": [{"name": "x", "type": "string"}]}}
    )
    (deep,) = avro_findings(nested_new, nested_old)
    assert deep.path == "/s/x" and deep.message == "reader type: string not compatible with writer type: int"
    renamed = {**RECORD, "name": "Other"}
    assert (
        "record is named t.Other for the reader but t.R for the writer"
        in avro_findings(renamed, RECORD)[0].message
    )
    union_old = _fields({"name": "u", "type": ["null", "string"], "default": None})
    union_new = _fields({"name": "u", "type": ["null", "int"], "default": None})
    assert "the writer may write string here" in avro_findings(union_new, union_old)[0].message


def test_levels() -> None:
    v1 = RECORD
    v2 = _fields({"name": "b", "type": "int", "default": 0})
    no_default = _fields({"name": "b", "type": "int"})
    dropped = {**RECORD, "fields": []}
    history = [("v1", v1)]

    def broken(
        level: Compatibility, new: dict[str, Any], previous: list[tuple[str, Any]] = history
    ) -> set[bool]:
        return {i.new_reads_old for i in check_evolution("s", SchemaType.AVRO, level, new, previous)}

    assert broken(Compatibility.BACKWARD, v2) == set()
    assert broken(Compatibility.BACKWARD, no_default) == {True}
    assert broken(Compatibility.FORWARD, no_default) == set()  # old readers ignore the new field
    assert broken(Compatibility.BACKWARD, dropped) == set()
    assert broken(Compatibility.FORWARD, dropped) == {False}  # old readers need `a`, which has no default
    assert broken(Compatibility.FULL, dropped) == {False}
    assert broken(Compatibility.NONE, dropped) == set()
    # Transitive: v3 is fine with v2 but not with v1.
    three = [("v1", _fields({"name": "b", "type": "long", "default": 0})), ("v2", RECORD)]
    v3 = _fields({"name": "b", "type": "string", "default": ""})
    assert broken(Compatibility.BACKWARD, v3, three) == set()
    (item,) = check_evolution("s", SchemaType.AVRO, Compatibility.BACKWARD_TRANSITIVE, v3, three)
    assert (item.against, item.path) == ("v1", "/b")
    assert str(item) == (
        "s (BACKWARD_TRANSITIVE): the new schema cannot read records written with v1: /b: "
        "reader type: string not compatible with writer type: long"
    )
