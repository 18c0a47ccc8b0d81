"""Is a schema change allowed under a subject's compatibility level? The same answer offline and at deploy.

Avro pairs are judged by the official `avro.compatibility.ReaderWriterCompatibilityChecker`; its result
merges every problem into unordered sets, so a small walker re-asks it field by field to say *where* each
problem is. JSON Schema pairs are judged by `headwater.contracts.json_compat` (its limits are listed there).

Levels (Confluent's semantics, which Apicurio's compatibility rule follows):
- BACKWARD: the new schema reads data written with the latest earlier version; FORWARD: readers of the
  latest earlier version read data written with the new one; FULL: both.
- *_TRANSITIVE: the same against every earlier version, not only the latest. NONE: anything goes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from headwater.contracts import json_compat
from headwater.contracts.json_compat import Finding
from headwater.contracts.model import Compatibility, SchemaType


@dataclass(frozen=True)
class Incompatibility:
    """One breaking change: which subject, under which level, against which earlier version, and where."""

    subject: str
    level: Compatibility
    against: str  # "version 3 (id 7)", "HEAD~1:catalog/schemas/x.avsc", ...
    new_reads_old: bool  # True: the new schema cannot read old data; False: old readers cannot read new data
    path: str
    message: str

    @property
    def direction(self) -> str:
        if self.new_reads_old:
            return f"the new schema cannot read records written with {self.against}"
        return f"consumers still using {self.against} cannot read records written with the new schema"

    def __str__(self) -> str:
        return f"{self.subject} ({self.level.value}): {self.direction}: {self.path or '/'}: {self.message}"


# --- Avro --------------------------------------------------------------------------------------------------


def _avro(schema: Mapping[str, Any]) -> Any:
    import avro.schema

    return avro.schema.parse(json.dumps(schema))


def _describe_avro(schema: Any) -> str:
    from avro.schema import NamedSchema

    return f"{schema.type} {schema.fullname}" if isinstance(schema, NamedSchema) else str(schema.type)


def _explain_avro(reader: Any, writer: Any, path: str) -> Iterator[Finding]:
    from avro.compatibility import (
        ReaderWriterCompatibilityChecker,
        SchemaCompatibilityType,
        lookup_writer_field,
        schema_name_equals,
    )
    from avro.compatibility import SchemaType as T

    def compatible(r: Any, w: Any) -> bool:
        result = ReaderWriterCompatibilityChecker().get_compatibility(r, w)
        return bool(result.compatibility is SchemaCompatibilityType.compatible)

    if compatible(reader, writer):
        return
    here = path or "/"
    if reader.type == T.RECORD and writer.type == T.RECORD:
        if not schema_name_equals(reader, writer):
            yield Finding(
                here,
                f"record is named {reader.fullname} for the reader but {writer.fullname} for the writer "
                "(keep the name, or list the old one in the reader's aliases)",
            )
        for field in reader.fields:
            at = f"{path}/{field.name}"
            written = lookup_writer_field(writer_schema=writer, reader_field=field)
            if written is None:
                if not field.has_default:
                    yield Finding(
                        at,
                        "the reader has this field without a default and the writer does not write it "
                        "(give the field a default)",
                    )
                continue
            yield from _explain_avro(field.type, written.type, at)
        return
    if reader.type == writer.type and reader.type in (T.ARRAY, T.MAP):
        attr = "items" if reader.type == T.ARRAY else "values"
        yield from _explain_avro(getattr(reader, attr), getattr(writer, attr), f"{path}/*")
        return
    if reader.type == T.UNION or writer.type == T.UNION:
        reader_branches = list(reader.schemas) if reader.type == T.UNION else [reader]
        writer_branches = list(writer.schemas) if writer.type == T.UNION else [writer]
        for branch in writer_branches:
            if any(compatible(r, branch) for r in reader_branches):
                continue
            same = [
                r
                for r in reader_branches
                if r.type == branch.type and getattr(r, "fullname", None) == getattr(branch, "fullname", None)
            ]
            if same and branch.type in (T.RECORD, T.ARRAY, T.MAP):
                yield from _explain_avro(same[0], branch, path)
            else:
                readable = ", ".join(_describe_avro(r) for r in reader_branches)
                yield Finding(
                    here,
                    f"the writer may write {_describe_avro(branch)} here, which the reader ({readable}) cannot read",
                )
        return
    result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
    yield Finding(here, "; ".join(sorted(result.messages)) or "incompatible")


def avro_findings(reader: Mapping[str, Any], writer: Mapping[str, Any]) -> list[Finding]:
    """Why records written with `writer` cannot be read with `reader` ([] when they can)."""
    from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

    r, w = _avro(reader), _avro(writer)
    result = ReaderWriterCompatibilityChecker().get_compatibility(r, w)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    found = list(dict.fromkeys(_explain_avro(r, w, "")))
    if not found:  # the walker should always explain; never hide the official verdict if it cannot
        where = ", ".join(sorted(result.locations))
        found = [Finding("/", f"{'; '.join(sorted(result.messages))} (at {where})")]
    return found


# --- Both languages ------------------------------------------------------------------------------------------


def findings(schema_type: SchemaType, reader: Mapping[str, Any], writer: Mapping[str, Any]) -> list[Finding]:
    """Why data written with `writer` may not be readable (Avro) or valid (JSON Schema) for `reader`."""
    if schema_type == SchemaType.AVRO:
        return avro_findings(reader, writer)
    return json_compat.incompatibilities(reader, writer)


def check_evolution(
    subject: str,
    schema_type: SchemaType,
    level: Compatibility,
    new: Mapping[str, Any],
    previous: Sequence[tuple[str, Mapping[str, Any]]],
) -> list[Incompatibility]:
    """Every incompatibility of `new` with the earlier versions `previous` ((label, schema), oldest first)."""
    if level == Compatibility.NONE or not previous:
        return []
    against = previous if level.transitive else previous[-1:]
    out: list[Incompatibility] = []
    for label, old in reversed(against):  # the latest version first: that is what people compare with
        if level.backward:
            out += [
                Incompatibility(subject, level, label, True, f.path, f.message)
                for f in findings(schema_type, new, old)
            ]
        if level.forward:
            out += [
                Incompatibility(subject, level, label, False, f.path, f.message)
                for f in findings(schema_type, old, new)
            ]
    return out


def format_incompatibilities(items: Sequence[Incompatibility]) -> str:
    """One line per breaking change, plus what to do about it."""
    lines = [f"  - {i}" for i in items]
    return "\n".join(
        [
            *lines,
            "  Make the change compatible (Avro: add fields with defaults, never change a field's type; "
            "JSON Schema: only relax constraints), or publish a new topic version (<topic>.v<N+1>) "
            "with its own subject.",
        ]
    )
