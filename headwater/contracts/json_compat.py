"""Offline compatibility of two JSON Schemas: does every document the writer's schema accepts pass the reader's?

That is the question a registry asks for JSON contracts: BACKWARD means the new schema (reader) accepts all
data valid under the old one (writer); FORWARD swaps the roles. The answer here is sound for the keywords
listed in `COMPARED`: when it says "compatible", it is. It can be stricter than necessary (it reports a
change it cannot prove harmless), never more lenient.

Compared, per location and only where the writer can produce the JSON type the keyword constrains:
- `type` (integer counts as a number), `enum`, `const`;
- strings: `minLength`, `maxLength`, `pattern` (must stay identical when the reader has one), `format`;
- numbers: `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum` (2019+ numeric form), `multipleOf`;
- arrays: `items` (a single schema), `minItems`, `maxItems`, `uniqueItems`;
- objects: `properties`, `required`, `additionalProperties` (boolean or schema), `minProperties`,
  `maxProperties`; a property only one side declares is judged against the other side's
  `additionalProperties` (the open content model: a writer that allows extra properties may already send
  the name a reader now constrains);
- boolean schemas (`true`, `false`), and `x-headwater-limits` (`max_*` may not shrink, `min_*` may not grow).
Annotations (`title`, `description`, `examples`, `default`, `$schema`, `$id`, other `x-*` keys, ...) are
ignored. Any other keyword (`$ref`, `allOf`, `anyOf`, `oneOf`, `not`, `if`, `patternProperties`,
`prefixItems`, `dependentRequired`, ...) must be identical on both sides at the same location; if it
differs, the change is reported as one the checker cannot prove compatible.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$anchor",
        "$comment",
        "title",
        "description",
        "examples",
        "default",
        "deprecated",
        "readOnly",
        "writeOnly",
        "contentMediaType",
        "contentEncoding",
    }
)
LIMITS_KEY = "x-headwater-limits"
STRING_KEYS = ("minLength", "maxLength", "pattern", "format")
NUMBER_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
ARRAY_KEYS = ("items", "minItems", "maxItems", "uniqueItems")
OBJECT_KEYS = ("properties", "required", "additionalProperties", "minProperties", "maxProperties")
COMPARED = frozenset(
    {"type", "enum", "const", LIMITS_KEY, *STRING_KEYS, *NUMBER_KEYS, *ARRAY_KEYS, *OBJECT_KEYS}
)
JSON_TYPES = ("null", "boolean", "object", "array", "number", "string", "integer")


@dataclass(frozen=True)
class Finding:
    """One reason the reader may reject data the writer accepts; `path` points into the data (JSON Pointer)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '/'}: {self.message}"


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def json_type(value: Any) -> str:
    """The JSON Schema type of a decoded JSON value; like JSON Schema, 1.0 is an integer."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _values(schema: Mapping[str, Any]) -> list[Any] | None:
    """The only values a schema allows, when it lists them (enum/const); None otherwise."""
    if "const" in schema:
        return [schema["const"]]
    if isinstance(schema.get("enum"), list):
        return list(schema["enum"])
    return None


def _types(schema: Mapping[str, Any]) -> set[str] | None:
    """The JSON types a schema allows (None: any); enum/const narrow it to their values' types."""
    declared = schema.get("type")
    out: set[str] | None = None
    if isinstance(declared, str):
        out = {declared}
    elif isinstance(declared, list):
        out = {str(t) for t in declared}
    values = _values(schema)
    if values is not None:
        from_values = {json_type(v) for v in values}
        out = from_values if out is None else {t for t in from_values if _covers(out, t)}
    return out


def _covers(types: set[str] | None, t: str) -> bool:
    return types is None or t in types or (t == "integer" and "number" in types)


def _can_produce(writer_types: set[str] | None, *kinds: str) -> bool:
    return writer_types is None or any(_covers(writer_types, k) or k in writer_types for k in kinds)


def _bound(schema: Mapping[str, Any], inclusive: str, exclusive: str) -> tuple[float, bool] | None:
    """(value, is_exclusive) of the tighter of an inclusive and an exclusive bound; None when unbounded."""
    found: list[tuple[float, bool]] = []
    if isinstance(schema.get(inclusive), int | float) and not isinstance(schema.get(inclusive), bool):
        found.append((float(schema[inclusive]), False))
    if isinstance(schema.get(exclusive), int | float) and not isinstance(schema.get(exclusive), bool):
        found.append((float(schema[exclusive]), True))
    if not found:
        return None
    lower = inclusive == "minimum"
    # The tighter bound: for a minimum the larger value (exclusive wins a tie), for a maximum the smaller.
    return sorted(found, key=lambda b: (b[0], b[1]) if lower else (-b[0], b[1]))[-1]


def _show_bound(b: tuple[float, bool] | None, lower: bool) -> str:
    if b is None:
        return "none"
    value = int(b[0]) if b[0].is_integer() else b[0]
    return f"{'>' if lower else '<'}{'' if b[1] else '='} {value}"


def _looser_or_equal(
    reader: tuple[float, bool] | None, writer: tuple[float, bool] | None, lower: bool
) -> bool:
    if reader is None:
        return True
    if writer is None:
        return False
    (rv, rx), (wv, wx) = reader, writer
    if rv != wv:
        return rv < wv if lower else rv > wv
    return not rx or wx


def _child(path: str, token: str) -> str:
    return f"{path}/{token.replace('~', '~0').replace('/', '~1')}"


class _Checker:
    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def add(self, path: str, message: str) -> None:
        self.findings.append(Finding(path, message))

    def check(self, reader: Any, writer: Any, path: str) -> None:
        if reader is True or (isinstance(reader, Mapping) and not reader):
            return
        if writer is False:
            return
        if reader is False:
            self.add(path, "the reader accepts nothing here (false) but the writer accepts values")
            return
        if not isinstance(reader, Mapping):
            self.add(path, f"the reader's schema is not an object or boolean: {_show(reader)}")
            return
        w: Mapping[str, Any] = writer if isinstance(writer, Mapping) else {}
        self._types(reader, w, path)
        self._values(reader, w, path)
        writer_types = _types(w)
        if _can_produce(writer_types, "string"):
            self._strings(reader, w, path)
        if _can_produce(writer_types, "number", "integer"):
            self._numbers(reader, w, path)
        if _can_produce(writer_types, "array"):
            self._arrays(reader, w, path)
        if _can_produce(writer_types, "object"):
            self._objects(reader, w, path)
        self._limits(reader, w, path)
        self._unsupported(reader, w, path)

    # --- keywords -------------------------------------------------------------------------------------

    def _types(self, r: Mapping[str, Any], w: Mapping[str, Any], path: str) -> None:
        if "type" not in r:
            return
        reader_types = _types({"type": r["type"]})
        writer_types = _types(w)
        if writer_types is None:
            self.add(
                path,
                f"type is {_show(r['type'])} for the reader but unrestricted for the writer",
            )
            return
        lost = sorted(t for t in writer_types if not _covers(reader_types, t))
        if lost:
            self.add(
                path,
                f"type {', '.join(lost)} is allowed by the writer but not by the reader "
                f"(reader type {_show(r['type'])})",
            )

    def _values(self, r: Mapping[str, Any], w: Mapping[str, Any], path: str) -> None:
        allowed = _values(r)
        if allowed is None:
            return
        keyword = "const" if "const" in r else "enum"
        written = _values(w)
        if written is None:
            self.add(path, f"the reader allows only {keyword} {_show(r[keyword])}, the writer any value")
            return
        missing = [v for v in written if not any(_same(v, a) for a in allowed)]
        if missing:
            shown = ", ".join(_show(v) for v in missing)
            self.add(path, f"value(s) {shown} allowed by the writer are no longer in the reader's {keyword}")

    def _strings(self, r: Mapping[str, Any], w: Mapping[str, Any], path: str) -> None:
        self._size(r, w, path, "minLength", "maxLength", "string length")
        if "pattern" in r and r.get("pattern") != w.get("pattern"):
            before = _show(w["pattern"]) if "pattern" in w else "none"
            self.add(
                path,
                f"pattern is {_show(r['pattern'])} for the reader but {before} for the writer "
                "(a changed or added pattern cannot be proven to accept every value the writer allows)",
            )
        if "format" in r and r.get("format") != w.get("format"):
            before = _show(w["format"]) if "format" in w else "none"
            self.add(path, f"format is {_show(r['format'])} for the reader but {before} for the writer")

    def _numbers(self, r: Mapping[str, Any], w: Mapping[str, Any], path: str) -> None:
        for lower, inclusive, exclusive in (
            (True, "minimum", "exclusiveMinimum"),
            (False, "maximum", "exclusiveMaximum"),
        ):
            rb, wb = _bound(r, inclusive, exclusive), _bound(w, inclusive, exclusive)
            if not _looser_or_equal(rb, wb, lower):
                self.add(
                    path,
                    f"{'lower' if lower else 'upper'} bound is {_show_bound(rb, lower)} for the reader but "
                    f"{_show_bound(wb, lower)} for the writer",
                )
        if "multipleOf" in r:
            rm, wm = r["multipleOf"], w.get("multipleOf")
            ok = isinstance(wm, int | float) and isinstance(rm, int | float) and rm > 0
            if ok:
                ratio = wm / rm
                ok = math.isclose(ratio, round(ratio))
            if not ok:
                self.add(path, f"multipleOf is {_show(rm)} for the reader but {_show(wm)} for the writer")

    def _size(
        self, r: Mapping[str, Any], w: Mapping[str, Any], path: str, lo: str, hi: str, what: str
    ) -> None:
        if lo in r and r[lo] > w.get(lo, 0):
            self.add(
                path,
                f"{lo} is {r[lo]} for the reader but {w.get(lo, 0)} for the writer: a smaller {what} "
                "that the writer allows is rejected",
            )
        if hi in r and (hi not in w or r[hi] < w[hi]):
            self.add(
                path,
                f"{hi} is {r[hi]} for the reader but {w.get(hi, 'unlimited')} for the writer: a larger "
                f"{what} that the writer allows is rejected",
            )

    def _arrays(self, r: Mapping[str, Any], w: Mapping[str, Any], path: str) -> None:
        self._size(r, w, path, "minItems", "maxItems", "item count")
        if r.get("uniqueItems") is True and w.get("uniqueItems") is not True:
            self.add(path, "the reader requires unique items, the writer does not")
        if "items" in r:
            if isinstance(r["items"], list) or isinstance(w.get("items"), list):
                if not _same(r["items"], w.get("items")):
                    self.add(
                        path,
                        "items (tuple form) changed: the offline checker compares only single-schema items",
                    )
                return
            self.check(r["items"], w.get("items", True), _child(path, "*"))

    def _objects(self, r: Mapping[str, Any], w: Mapping[str, Any], path: str) -> None:
        self._size(r, w, path, "minProperties", "maxProperties", "property count")
        r_props: Mapping[str, Any] = r.get("properties") or {}
        w_props: Mapping[str, Any] = w.get("properties") or {}
        r_extra = r.get("additionalProperties", True)
        w_extra = w.get("additionalProperties", True)
        for name in sorted(set(r_props) | set(w_props)):
            at = _child(path, name)
            if name in r_props and name in w_props:
                self.check(r_props[name], w_props[name], at)
            elif name in w_props:  # the reader dropped a property the writer declares
                if r_extra is False:
                    self.add(
                        at,
                        "property declared by the writer is not allowed by the reader (additionalProperties: false)",
                    )
                else:
                    self.check(r_extra, w_props[name], at)
            elif w_extra is not False:  # the reader declares a property the writer may send as an extra one
                sub = _Checker()
                sub.check(r_props[name], w_extra, at)
                if sub.findings:
                    self.add(
                        at,
                        "property is new for the reader, but the writer allows additional properties, so "
                        "existing data may already carry it with any value; close the writer "
                        "(additionalProperties: false) before adding constrained properties",
                    )
        if r_extra is not True and w_extra is not False:
            if r_extra is False:
                self.add(
                    path,
                    "the reader forbids additional properties (additionalProperties: false), the writer allows them",
                )
            else:
                self.check(r_extra, w_extra, _child(path, "*"))
        required = sorted(set(r.get("required") or []) - set(w.get("required") or []))
        for name in required:
            self.add(_child(path, name), "required by the reader but optional for the writer")

    def _limits(self, r: Mapping[str, Any], w: Mapping[str, Any], path: str) -> None:
        r_limits: Mapping[str, Any] = r.get(LIMITS_KEY) or {}
        w_limits: Mapping[str, Any] = w.get(LIMITS_KEY) or {}
        for key, value in sorted(r_limits.items()):
            before = w_limits.get(key)
            where = f"{LIMITS_KEY}.{key}"
            if key.startswith("max_") and (before is None or value < before):
                self.add(
                    path,
                    f"{where} is {value} for the reader but {before if before is not None else 'unlimited'} for the writer",
                )
            elif key.startswith("min_") and (before is None or value > before):
                self.add(
                    path,
                    f"{where} is {value} for the reader but {before if before is not None else 'none'} for the writer",
                )
            elif not key.startswith(("max_", "min_")) and not _same(value, before):
                self.add(path, f"{where} changed from {_show(before)} to {_show(value)}")

    def _unsupported(self, r: Mapping[str, Any], w: Mapping[str, Any], path: str) -> None:
        for key in sorted(set(r) | set(w)):
            if key in COMPARED or key in ANNOTATIONS or (key.startswith("x-") and key != LIMITS_KEY):
                continue
            if key in r and not _same(r.get(key), w.get(key)):
                self.add(
                    path,
                    f"keyword {key!r} differs between reader and writer; the offline checker cannot compare "
                    f"it (it compares: {', '.join(sorted(COMPARED))}): keep it unchanged or review by hand",
                )


def incompatibilities(reader: Any, writer: Any) -> list[Finding]:
    """Why data valid under `writer` may be rejected by `reader` ([] when every such document passes)."""
    checker = _Checker()
    checker.check(reader, writer, "")
    return checker.findings
