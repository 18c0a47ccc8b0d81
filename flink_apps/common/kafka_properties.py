"""Kafka client properties from a Java `.properties` file (how Strimzi secrets are usually mounted).

Security settings (SASL JAAS config, keystore passwords) only ever travel through this file, never through
command-line arguments, so they stay out of process listings and job logs.
"""

from __future__ import annotations

import re
from pathlib import Path

# Set by the app itself (from its own arguments or by what exactly-once needs); a file may not override them.
RESERVED_KEYS = frozenset(
    {
        "bootstrap.servers",
        "group.id",
        "transactional.id",
        "enable.auto.commit",
        "isolation.level",
        "key.serializer",
        "value.serializer",
        "key.deserializer",
        "value.deserializer",
    }
)
# Keys for the schema-registry client, kept out of the Kafka clients' configuration.
REGISTRY_PREFIX = "schema.registry."
# Values of keys that look like these are masked whenever configuration is shown.
_SENSITIVE = re.compile(r"password|secret|jaas|token|credentials|user\.info|\.key$", re.IGNORECASE)

_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def parse_properties(text: str) -> dict[str, str]:
    """Parse the `java.util.Properties` text format: `#`/`!` comments, `=`, `:` or blank separators,
    backslash line continuations and escapes (including `\\uXXXX`)."""
    props: dict[str, str] = {}
    pending: list[str] = []
    for raw_line in text.splitlines():
        line = raw_line.lstrip(" \t\f")
        if not pending and (not line or line[0] in "#!"):
            continue
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:  # an odd number of trailing backslashes continues the line
            pending.append(line[:-1])
            continue
        pending.append(line)
        key, value = _split("".join(pending))
        props[key] = value
        pending = []
    if pending:
        key, value = _split("".join(pending))
        props[key] = value
    return props


def _split(line: str) -> tuple[str, str]:
    key_chars: list[str] = []
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line):
            key_chars.append(line[i : i + 2])
            i += 2
            continue
        if ch in "=: \t\f":
            break
        key_chars.append(ch)
        i += 1
    rest = line[i:].lstrip(" \t\f")
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(" \t\f")
    return _unescape("".join(key_chars)), _unescape(rest)


def _unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\" or i + 1 == len(text):
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[i + 2 : i + 6]):
            out.append(chr(int(text[i + 2 : i + 6], 16)))
            i += 6
            continue
        out.append(_ESCAPES.get(nxt, nxt))
        i += 2
    return "".join(out)


def read_properties_file(path: str | Path) -> dict[str, str]:
    """Read a properties file; a missing or unreadable file is an error that names the path only."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read the Kafka properties file {file}: {exc.strerror}") from None
    return parse_properties(text)


def split_client_properties(props: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(Kafka client properties, schema-registry client properties without their prefix).

    Raises ValueError when the file tries to set a property the app owns.
    """
    kafka: dict[str, str] = {}
    registry: dict[str, str] = {}
    for key, value in props.items():
        if key.startswith(REGISTRY_PREFIX):
            registry[key[len(REGISTRY_PREFIX) :]] = value
        elif key in RESERVED_KEYS:
            raise ValueError(
                f"the Kafka properties file may not set {key!r}: the app sets it from its own options "
                f"(reserved: {', '.join(sorted(RESERVED_KEYS))})"
            )
        else:
            kafka[key] = value
    return kafka, registry


def is_sensitive(key: str) -> bool:
    return bool(_SENSITIVE.search(key))


def redacted(props: dict[str, str]) -> dict[str, str]:
    """A copy safe to log: values of sensitive-looking keys replaced."""
    return {k: ("******" if is_sensitive(k) else v) for k, v in props.items()}
