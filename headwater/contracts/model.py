"""Data contracts from the catalog: one registry subject per topic value, its schema file and compatibility.

The catalog's `schema:` key (a path relative to `catalog/`) names a topic's contract. The file's extension
says its kind: `.avsc` is Avro (the curated topics), `.json` is JSON Schema (raw JSON ingestion).

Exempt: journal topics, and topics that only platform services write (every producer is a principal of
kind `platform`). They carry a platform service's own format (Apicurio's KafkaSQL journal, snapshots and
change events), which no app reads or writes and which the service's version pins, so a contract in the
registry would only describe the registry to itself. Every other topic must have a contract.

The text registered for a contract is the file's JSON with sorted keys (`registered_text`): the same
normalisation the apps use when they look their schema's id up, so both sides name the same content.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from headwater.spec import Platform, Topic, TopicKind

CATALOG_DIR = Path(__file__).resolve().parent.parent.parent / "catalog"


class SchemaType(StrEnum):
    """The registry's name for a schema language (Confluent's `schemaType`)."""

    AVRO = "AVRO"
    JSON = "JSON"


SCHEMA_TYPES_BY_SUFFIX = {".avsc": SchemaType.AVRO, ".json": SchemaType.JSON}


class Compatibility(StrEnum):
    """Compatibility levels of a subject, as the Confluent API (and Apicurio's ccompat API) name them."""

    NONE = "NONE"
    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"

    @property
    def transitive(self) -> bool:
        return self.value.endswith("_TRANSITIVE")

    @property
    def backward(self) -> bool:
        """New readers must read data written with earlier schemas."""
        return self.value.startswith(("BACKWARD", "FULL"))

    @property
    def forward(self) -> bool:
        """Earlier readers must read data written with the new schema."""
        return self.value.startswith(("FORWARD", "FULL"))


DEFAULT_COMPATIBILITY = Compatibility.BACKWARD
COMPATIBILITY_CHOICES = ", ".join(c.value for c in Compatibility)


class ContractError(ValueError):
    """A contract is missing, unreadable or misconfigured; `problems` has one readable line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


# `$schema` values that Apicurio Registry 3.3.3's JSON Schema compatibility rule can evaluate. With a
# 2019-09 or 2020-12 meta-schema it answers HTTP 500 "could not determine version" to every compatibility
# check, so no second version of the subject can ever be registered (the first one registers fine).
REGISTRY_JSON_SCHEMA_DRAFTS = re.compile(r"^https?://json-schema\.org/(draft-0[4-7]/)?schema#?$")
REGISTRY_JSON_SCHEMA_DRAFT = "http://json-schema.org/draft-07/schema#"


def subject_name(topic: str) -> str:
    """The registry subject of a topic's record values (Confluent's TopicNameStrategy)."""
    return f"{topic}-value"


def exempt(platform: Platform, topic: Topic) -> bool:
    """Journal topics, and topics only platform services write, carry the service's own format: no contract.

    Outbox topics never are: Connect (a platform service) writes them, but what it writes is the owning
    service's events, and their payload changes go through the contract check like every other.
    """
    if topic.kind == TopicKind.JOURNAL:
        return True
    if topic.kind == TopicKind.OUTBOX:
        return False
    producers = [p for p in platform.principals if any(f.topic == topic.name for f in p.produces)]
    return bool(producers) and all(p.kind == "platform" for p in producers)


def registered_text(schema: Mapping[str, Any]) -> str:
    """The exact text registered for a schema: its JSON with sorted keys (what the apps look up by)."""
    return json.dumps(schema, sort_keys=True)


def same_schema(a: str, b: str) -> bool:
    """Do two schema texts hold the same JSON? (The registry may hand back Avro re-serialized.)"""
    try:
        return bool(json.loads(a) == json.loads(b))
    except json.JSONDecodeError:
        return a == b


@dataclass(frozen=True)
class Contract:
    """A topic's data contract in one stack: subject, schema language, schema text and compatibility."""

    topic: str
    subject: str
    schema_type: SchemaType
    compatibility: Compatibility
    path: str  # relative to the catalog folder, as the catalog writes it
    schema: Mapping[str, Any]

    @property
    def text(self) -> str:
        return registered_text(self.schema)


def registry_warnings(contract: Contract) -> list[str]:
    """What the registry cannot do with this contract even though it is valid (one line each)."""
    declared = contract.schema.get("$schema") if contract.schema_type == SchemaType.JSON else None
    if declared is not None and not REGISTRY_JSON_SCHEMA_DRAFTS.match(str(declared)):
        return [
            f"catalog/{contract.path}: $schema {declared!r}: Apicurio Registry's compatibility rule only "
            f"understands JSON Schema drafts 4 to 7, so every later version of {contract.subject} would be "
            f"refused (HTTP 500 'could not determine version'); declare {REGISTRY_JSON_SCHEMA_DRAFT!r} "
            "(the draft-07 keywords cover what the contracts use)"
        ]
    return []


def _compatibility(platform: Platform, topic: Topic, problems: list[str]) -> Compatibility:
    if topic.compatibility is None:
        return DEFAULT_COMPATIBILITY
    try:
        return Compatibility(topic.compatibility.upper())
    except ValueError:
        problems.append(
            f"stack {platform.stack}: topics.{topic.name}.compatibility = {topic.compatibility!r} is not valid; "
            f"allowed: {COMPATIBILITY_CHOICES}"
        )
        return DEFAULT_COMPATIBILITY


def schema_type_of(path: str) -> SchemaType | None:
    return SCHEMA_TYPES_BY_SUFFIX.get(Path(path).suffix)


def parse_schema_text(text: str, schema_type: SchemaType, where: str) -> dict[str, Any]:
    """Parse and check a schema file's text; raises ContractError naming `where` and what is wrong."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ContractError([f"{where}: not valid JSON: {exc}"]) from None
    if not isinstance(value, dict):
        raise ContractError([f"{where}: a schema must be a JSON object, found {type(value).__name__}"])
    if schema_type == SchemaType.AVRO:
        import avro.errors
        import avro.schema

        try:
            avro.schema.parse(json.dumps(value))
        except (avro.errors.AvroException, ValueError, TypeError) as exc:
            raise ContractError([f"{where}: not a valid Avro schema: {exc}"]) from None
    else:
        import jsonschema

        try:
            jsonschema.validators.validator_for(value).check_schema(value)
        except jsonschema.SchemaError as exc:
            at = "/".join(str(p) for p in exc.absolute_path) or "(root)"
            raise ContractError([f"{where}: not a valid JSON Schema at {at}: {exc.message}"]) from None
    return value


def load_contracts(platform: Platform, catalog_dir: Path | None = None) -> list[Contract]:
    """The contract of every non-journal topic of `platform`; ContractError lists every problem at once.

    Schema files are read relative to `catalog_dir`, by default the folder the platform's catalog came from.
    """
    if catalog_dir is None:
        catalog_dir = Path(platform.catalog_dir) if platform.catalog_dir else CATALOG_DIR
    problems: list[str] = []
    out: list[Contract] = []
    for topic in platform.topics:
        if exempt(platform, topic):
            continue
        key = f"catalog.topics.{topic.name}.schema"
        if not topic.schema:
            problems.append(
                f"{key} is missing: every {topic.kind.value} topic needs a data contract "
                f"(an .avsc or .json file under {catalog_dir / 'schemas'}); only journal topics and topics that only platform services write are exempt"
            )
            continue
        schema_type = schema_type_of(topic.schema)
        if schema_type is None:
            problems.append(
                f"{key} = {topic.schema!r}: allowed: a path ending in "
                f"{' or '.join(SCHEMA_TYPES_BY_SUFFIX)} (Avro or JSON Schema)"
            )
            continue
        expected = [f"schemas/{topic.name}{suffix}" for suffix in SCHEMA_TYPES_BY_SUFFIX]
        if topic.schema not in expected:
            # The apps find a topic's contract by the topic's name (flink_apps.common.schemas.for_topic).
            problems.append(f"{key} = {topic.schema!r}: allowed: {' or '.join(expected)}")
            continue
        path = catalog_dir / topic.schema
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            problems.append(f"{key} = {topic.schema!r}: cannot read {path}: {exc.strerror or exc}")
            continue
        level = _compatibility(platform, topic, problems)
        try:
            schema = parse_schema_text(text, schema_type, str(path))
        except ContractError as err:
            problems.extend(err.problems)
            continue
        out.append(
            Contract(
                topic=topic.name,
                subject=subject_name(topic.name),
                schema_type=schema_type,
                compatibility=level,
                path=topic.schema,
                schema=schema,
            )
        )
    if problems:
        raise ContractError(problems)
    return out
