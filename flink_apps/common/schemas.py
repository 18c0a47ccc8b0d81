"""Finding the catalog's schema files (`catalog/schemas/` in the repository, package data in the image)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SCHEMA_DIR_ENV = "HEADWATER_SCHEMA_DIR"
_PACKAGED = Path(__file__).resolve().parent.parent / "_schemas"
_REPOSITORY = Path(__file__).resolve().parents[2] / "catalog" / "schemas"

# The catalog names every topic's contract `schemas/<topic>.avsc` (Avro) or `.json` (JSON Schema), a rule
# its loader enforces, so an app finds the contract of each topic its options name.
SUFFIXES = (".avsc", ".json")


def schema_dir(override: str | None = None) -> Path:
    """The folder holding the schema files: `override`, else $HEADWATER_SCHEMA_DIR, else the packaged or
    repository copy."""
    chosen = override or os.environ.get(SCHEMA_DIR_ENV)
    if chosen:
        path = Path(chosen)
        if not path.is_dir():
            raise FileNotFoundError(
                f"schema folder {path} (from --schema-dir or ${SCHEMA_DIR_ENV}) does not exist"
            )
        return path
    for candidate in (_PACKAGED, _REPOSITORY):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"no schema folder: set ${SCHEMA_DIR_ENV} or --schema-dir (looked in {_PACKAGED}, {_REPOSITORY})"
    )


def load(name: str, folder: Path | None = None) -> dict[str, Any]:
    """Parse the schema file `name` (a JSON Schema or an Avro .avsc; both are JSON)."""
    path = (folder or schema_dir()) / name
    try:
        with path.open(encoding="utf-8") as fh:
            value = json.load(fh)
    except FileNotFoundError:
        raise FileNotFoundError(f"schema file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"schema file {path} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"schema file {path} must hold a JSON object, found {type(value).__name__}")
    return value


def for_topic(topic: str, folder: Path | None = None) -> dict[str, Any]:
    """The data contract of `topic`: `<topic>.avsc` or `<topic>.json` in the schema folder."""
    folder = folder or schema_dir()
    found = [folder / f"{topic}{suffix}" for suffix in SUFFIXES if (folder / f"{topic}{suffix}").is_file()]
    if len(found) != 1:
        names = " or ".join(f"{topic}{suffix}" for suffix in SUFFIXES)
        what = "no" if not found else "more than one"
        raise FileNotFoundError(f"{what} contract for topic {topic!r} in {folder}: expected one of {names}")
    return load(found[0].name, folder)
