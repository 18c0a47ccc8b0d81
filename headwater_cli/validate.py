"""Strict validation of rendered Kubernetes objects, as the API server would judge them.

- Custom resources of the pinned operators (Strimzi, the Flink operator) are checked against the upstream
  CRD's openAPIV3Schema (`headwater.crds`), turned into JSON Schema with unknown fields rejected: every
  object node that lists `properties` (or none) and neither sets `x-kubernetes-preserve-unknown-fields`
  nor `additionalProperties` gets `additionalProperties: false`, which is what strict field validation
  makes of fields that pruning would drop. Only served apiVersions are accepted. `metadata` is checked
  for the types of name, namespace, labels and annotations.
- Everything else is checked with the strict schemas that `kubernetes-validate` ships for one Kubernetes
  release.

Messages start with the field path (`spec.kafka.replicas: unknown field ...`). CEL rules
(`x-kubernetes-validations`) are not evaluated.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import jsonschema
import kubernetes_validate.utils
import referencing
import referencing.jsonschema

from components.k8s import object_key
from headwater import crds, versions
from headwater.contracts.json_compat import json_type

# The Kubernetes release whose schemas core objects are checked against (Strimzi 1.2.0 needs >= 1.30).
KUBERNETES_SCHEMA_VERSION = versions.KUBERNETES_SCHEMA_VERSION

_MAX_LISTED = 15
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_METADATA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "namespace": {"type": "string", "minLength": 1},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
    },
    # Server-side apply needs a name (generateName does not work with apply).
    "required": ["name"],
    # The rest of ObjectMeta (ownerReferences, finalizers, ...) is not this validator's business.
    "additionalProperties": True,
}


# --- CRD schema -> JSON Schema ----------------------------------------------------------------------------


def _python_pattern(pattern: str) -> str:
    """A CRD's Go (RE2) pattern as Python's `re` reads it the same way.

    RE2 takes inline flags anywhere (`^(?i)(abort|warn)?$`, as the Prometheus Operator writes); Python only
    at the very start, so a flag group right after the anchor moves in front of it.
    """
    return re.sub(r"^\^\(\?([a-zA-Z]+)\)", r"(?\1)^", pattern)


def _convert(node: Any, structural: bool = True) -> Any:
    """One openAPIV3Schema node as Draft 7 JSON Schema.

    `structural` is false inside oneOf/anyOf/allOf/not: those branches only add checks on fields that the
    surrounding node declares (Strimzi writes `oneOf: [{properties: {value: {}}, required: [value]}, ...]`),
    so they must not be closed.
    """
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("description", "example", "x-kubernetes-validations", "nullable"):
            continue
        if key == "properties":
            out[key] = {name: _convert(sub, True) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = _convert(value, structural and key != "not")
        elif key in ("oneOf", "anyOf", "allOf"):
            out[key] = [_convert(sub, False) for sub in value]
        elif key == "pattern" and isinstance(value, str):
            out[key] = _python_pattern(value)
        else:
            out[key] = value
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
    is_object = out.get("type") == "object" or "properties" in out
    if structural and is_object and not preserve and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if node.get("nullable"):
        return {"anyOf": [{"type": "null"}, out]}
    return out


def _strict_crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    schema = crds.crd_schema(api_version, kind)
    properties = schema.setdefault("properties", {})
    # The API server owns these three whatever the CRD says (Strimzi's declare them, fabric8's leave
    # apiVersion and kind out, and metadata is only `type: object` in both).
    properties["apiVersion"] = {"type": "string"}
    properties["kind"] = {"type": "string"}
    properties["metadata"] = _METADATA_SCHEMA
    converted: dict[str, Any] = _convert(schema)
    converted["required"] = sorted({*converted.get("required", []), "apiVersion", "kind", "metadata"})
    return converted


@functools.cache
def _crd_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    schema = _strict_crd_schema(api_version, kind)
    validator_class = jsonschema.validators.Draft7Validator
    validator_class.check_schema(schema)
    return validator_class(schema)


# --- Core Kubernetes schemas (kubernetes-validate) --------------------------------------------------------


class _NoCoreSchema(LookupError):
    pass


@functools.cache
def _core_schema_dir() -> importlib.resources.abc.Traversable:
    wanted = kubernetes_validate.utils.major_minor(KUBERNETES_SCHEMA_VERSION)
    available = [v for v in kubernetes_validate.utils.all_versions() if v.startswith(wanted + ".")]
    if not available:
        raise RuntimeError(
            f"kubernetes-validate {kubernetes_validate.__version__} has no schemas for Kubernetes {wanted}; "
            f"it has {', '.join(kubernetes_validate.utils.all_versions())}"
        )
    root = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    return root / f"v{available[-1]}-local-strict"


@functools.cache
def _core_registry() -> referencing.Registry[Any]:
    definitions = json.loads((_core_schema_dir() / "_definitions.json").read_text())
    resource = referencing.Resource.from_contents(
        definitions, default_specification=referencing.jsonschema.DRAFT202012
    )
    return resource @ referencing.Registry()


@functools.cache
def _core_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    # Same file naming as kubernetes-validate: rbac.authorization.k8s.io/v1 Role -> role-rbac-v1.json.
    group, _, version = api_version.rpartition("/")
    prefix = f"{group.split('.')[0]}-" if group else ""
    schema_file = _core_schema_dir() / f"{kind.lower()}-{prefix}{version}.json"
    if not schema_file.is_file():
        raise _NoCoreSchema(api_version, kind)
    schema = json.loads(schema_file.read_text())
    return jsonschema.validators.Draft202012Validator(schema, registry=_core_registry())


# --- Messages ----------------------------------------------------------------------------------------------


def _path(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(root)"


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _listing(names: Iterable[str]) -> str:
    names = sorted(names)
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f", ... ({len(names) - _MAX_LISTED} more)" if len(names) > _MAX_LISTED else "")


def _messages(error: jsonschema.ValidationError) -> list[str]:
    at = list(error.absolute_path)
    where = _path(at)
    instance = error.instance
    schema = error.schema if isinstance(error.schema, dict) else {}
    match error.validator:
        case "additionalProperties" if isinstance(instance, dict):
            declared = schema.get("properties", {})
            unknown = sorted(k for k in instance if k not in declared)
            allowed = f"allowed here: {_listing(declared)}" if declared else "no fields are allowed here"
            return [f"{_path([*at, name])}: unknown field ({allowed})" for name in unknown]
        case "required" if isinstance(instance, dict):
            return [
                f"{_path([*at, name])}: required field is missing"
                for name in cast(list[str], error.validator_value)
                if name not in instance
            ]
        case "type":
            expected = error.validator_value
            expected_text = " or ".join(expected) if isinstance(expected, list) else expected
            return [f"{where}: expected {expected_text}, got {json_type(instance)} {_short(instance)}"]
        case "enum":
            return [f"{where}: {_short(instance)} is not one of {_short(error.validator_value)}"]
        case "anyOf" | "oneOf":
            branches = [b for b in cast(list[Any], error.validator_value) if isinstance(b, dict)]
            types = [b.get("type") for b in branches]
            actual = json_type(instance)
            fits = actual in types or (actual == "integer" and "number" in types)
            if types and all(isinstance(t, str) for t in types) and not fits:
                allowed_types = " or ".join(str(t) for t in types)
                return [f"{where}: expected {allowed_types}, got {json_type(instance)} {_short(instance)}"]
            required = [b.get("required") for b in branches]
            if error.validator == "oneOf" and all(required):
                forms = " | ".join("+".join(r) for r in required if r)
                return [f"{where}: set exactly one of: {forms}"]
            deepest = jsonschema.exceptions.best_match(error.context) if error.context else None
            reason = f" ({_messages(deepest)[0]})" if deepest is not None and _messages(deepest) else ""
            return [f"{where}: does not match any allowed form{reason}"]
        case _:
            return [f"{where}: {error.message}"]


def _run(validator: jsonschema.protocols.Validator, obj: Mapping[str, Any]) -> list[str]:
    found = [message for error in validator.iter_errors(obj) for message in _messages(error)]
    # Each message starts with its path, so sorting groups them by field; repeats are dropped.
    return sorted(set(found))


# --- Public API --------------------------------------------------------------------------------------------


def _is_custom(api_version: str) -> bool:
    return "/" in api_version and api_version.split("/")[0] in crds.custom_groups()


def validate_object(obj: Mapping[str, Any]) -> list[str]:
    """Everything wrong with one rendered object, each message starting with the field path; [] if valid."""
    if not isinstance(obj, Mapping):
        return [f"(root): expected a mapping, got {json_type(obj)}"]
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    problems = [
        f"{field}: required string is missing or not a string"
        for field, value in (("apiVersion", api_version), ("kind", kind))
        if not isinstance(value, str) or not value
    ]
    if problems:
        return problems
    assert isinstance(api_version, str) and isinstance(kind, str)
    if _is_custom(api_version):
        try:
            validator = _crd_validator(api_version, kind)
        except crds.UnservedVersionError as error:
            return [f"apiVersion: {error}"]
        except crds.UnknownKindError as error:
            return [f"kind: {error}"]
        return _run(validator, obj)
    try:
        validator = _core_validator(api_version, kind)
    except _NoCoreSchema:
        return [
            f"kind: no schema for {api_version} {kind}: not a Kubernetes {KUBERNETES_SCHEMA_VERSION} kind "
            f"and not a custom resource of the pinned operators ({', '.join(crds.custom_groups())})"
        ]
    return _run(validator, obj)


def validate_objects(objs: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """`validate_object` for each object, keyed by `object_key`; every object gets an entry ([] if valid).

    Two objects with the same key are reported too: the second would overwrite the first in the cluster.
    """
    results: dict[str, list[str]] = {}
    for obj in objs:
        key = object_key(obj) if isinstance(obj, Mapping) else f"?/{len(results)}"
        messages = validate_object(obj)
        if key in results:
            messages = [
                "(root): duplicate object: another object has the same kind, namespace and name",
                *messages,
            ]
            results[key] = [*results[key], *messages]
        else:
            results[key] = messages
    return results


def errors_only(results: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """The entries of `validate_objects` that have problems."""
    return {key: list(messages) for key, messages in results.items() if messages}
