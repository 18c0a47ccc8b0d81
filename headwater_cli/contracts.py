"""`headwater contracts ...`: check schema changes offline, compare two files, register, list.

Exit status: 0 when everything is compatible (or registered), 1 when a change breaks a subject's
compatibility, 2 when a contract or a stack is misconfigured.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from headwater.contracts import access
from headwater.contracts.compat import check_evolution, format_incompatibilities
from headwater.contracts.history import GitError, previous_revisions
from headwater.contracts.model import (
    CATALOG_DIR,
    Compatibility,
    Contract,
    ContractError,
    SchemaType,
    load_contracts,
    parse_schema_text,
    registry_warnings,
    same_schema,
    schema_type_of,
)
from headwater.spec import Platform

PASSWORD_ENV = "HEADWATER_REGISTRY_PASSWORD"  # never an argument: command lines are visible to every user


def _platforms(stacks: Sequence[str], catalog_dir: Path) -> list[Platform]:
    from headwater.config import load_platform, read_yaml

    catalog = read_yaml(catalog_dir / "catalog.yaml")
    return [load_platform(stack, catalog=catalog, catalog_dir=catalog_dir) for stack in stacks]


@dataclass
class _Subject:
    contract: Contract
    levels: dict[Compatibility, list[str]] = field(default_factory=dict)


def _subjects(platforms: Sequence[Platform], catalog_dir: Path) -> dict[str, _Subject]:
    out: dict[str, _Subject] = {}
    for platform in platforms:
        for contract in load_contracts(platform, catalog_dir):
            entry = out.setdefault(contract.subject, _Subject(contract))
            entry.levels.setdefault(contract.compatibility, []).append(platform.stack)
    return dict(sorted(out.items()))


def _levels_text(levels: dict[Compatibility, list[str]]) -> str:
    return "; ".join(f"{level.value}: {', '.join(stacks)}" for level, stacks in sorted(levels.items()))


def check(args: argparse.Namespace) -> int:
    from headwater.config import stack_names

    catalog_dir = Path(args.catalog).resolve() if args.catalog else CATALOG_DIR
    stacks = args.stack or stack_names()
    subjects = _subjects(_platforms(stacks, catalog_dir), catalog_dir)
    baseline = f"revision {args.against}" if args.against else "the previous revision of each schema file"
    print(f"contracts check: the working tree against {baseline} (stacks: {', '.join(stacks)})")
    broken = 0
    for subject, entry in subjects.items():
        c = entry.contract
        for warning in registry_warnings(c):
            print(f"  warn  {subject}: {warning}")
        path = catalog_dir / c.path
        transitive = any(level.transitive for level in entry.levels)
        try:
            revisions = previous_revisions(path, against=args.against, transitive=transitive)
        except GitError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if not revisions:
            print(f"  new   {subject} ({c.schema_type.value}, {c.path}): no earlier revision to compare with")
            continue
        previous = []
        for rev in revisions:
            try:
                previous.append((rev.label, parse_schema_text(rev.text, c.schema_type, rev.label)))
            except ContractError as err:  # an unparsable old revision cannot constrain the new one
                print(f"  skip  {rev.label}: {'; '.join(err.problems)}")
        found = []
        for level, stacks_of_level in sorted(entry.levels.items()):
            for item in check_evolution(subject, c.schema_type, level, c.schema, previous):
                found.append(f"{item} [stacks: {', '.join(stacks_of_level)}]")
        found = list(dict.fromkeys(found))
        if found:
            broken += 1
            print(
                f"  FAIL  {subject} ({c.schema_type.value}; {_levels_text(entry.levels)}) vs {revisions[-1].label}:"
            )
            print("\n".join(f"    - {line}" for line in found))
        else:
            print(
                f"  ok    {subject} ({c.schema_type.value}; {_levels_text(entry.levels)}) vs {revisions[-1].label}"
            )
    if broken:
        print(
            f"{broken} subject(s) have incompatible changes. Make them compatible (Avro: add fields with "
            "defaults, never change a field's type; JSON Schema: only relax constraints), or publish a new "
            "topic version (<topic>.v<N+1>) with its own subject.",
            file=sys.stderr,
        )
        return 1
    return 0


def compare(args: argparse.Namespace) -> int:
    old_path, new_path = Path(args.old), Path(args.new)
    kind = SchemaType(args.type.upper()) if args.type else schema_type_of(new_path.name)
    if kind is None:
        print(
            f"error: cannot tell the schema language of {new_path}: pass --type avro or --type json",
            file=sys.stderr,
        )
        return 2
    old = parse_schema_text(old_path.read_text(encoding="utf-8"), kind, str(old_path))
    new = parse_schema_text(new_path.read_text(encoding="utf-8"), kind, str(new_path))
    level = Compatibility(args.compatibility.upper())
    subject = args.subject or new_path.name
    found = check_evolution(subject, kind, level, new, [(str(old_path), old)])
    if found:
        print(f"{new_path} is not {level.value}-compatible with {old_path}:")
        print(format_incompatibilities(found))
        return 1
    print(f"{new_path} is {level.value}-compatible with {old_path}")
    return 0


def register(args: argparse.Namespace) -> int:
    from headwater.contracts.compat import Incompatibility
    from headwater.contracts.registry import IncompatibleSchemaError, RegistryClient, RegistryError

    catalog_dir = Path(args.catalog).resolve() if args.catalog else CATALOG_DIR
    (platform,) = _platforms([args.stack], catalog_dir)
    password = os.environ.get(PASSWORD_ENV)
    client = RegistryClient(args.url, auth=(args.user, password) if password else None)
    failed = 0
    for contract in load_contracts(platform, catalog_dir):
        try:
            history = client.history(contract.subject)
            previous = [(f"version {v.version} (id {v.id})", json.loads(v.text)) for v in history]
            local: list[Incompatibility] = []
            if not any(same_schema(v.text, contract.text) for v in history):
                local = check_evolution(
                    contract.subject, contract.schema_type, contract.compatibility, contract.schema, previous
                )
            if local:
                failed += 1
                print(
                    f"refused {contract.subject}: not {contract.compatibility.value}-compatible with the registry:"
                )
                print(format_incompatibilities(local))
                continue
            client.set_compatibility(contract.subject, contract.compatibility)
            schema_id = client.register(contract.subject, contract.text, contract.schema_type)
        except IncompatibleSchemaError as exc:
            failed += 1
            print(f"refused {contract.subject}: {exc}")
            continue
        except RegistryError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(
            f"registered {contract.subject} ({contract.schema_type.value}, {contract.compatibility.value}): id {schema_id}"
        )
    return 1 if failed else 0


def list_contracts(args: argparse.Namespace) -> int:
    catalog_dir = Path(args.catalog).resolve() if args.catalog else CATALOG_DIR
    (platform,) = _platforms([args.stack], catalog_dir)
    for c in load_contracts(platform, catalog_dir):
        print(f"{c.subject}\t{c.schema_type.value}\t{c.compatibility.value}\t{c.path}")
    return 0


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Contract problems are a user's error: print them, one line each, and exit 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ContractError as err:
            lines = "\n".join(f"  - {p}" for p in err.problems)
            print(f"error: contracts are not valid:\n{lines}", file=sys.stderr)
            return 2

    return run


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], stacks: list[str]) -> None:
    """Add `contracts` and its subcommands to the `headwater` parser."""
    contracts = sub.add_parser("contracts", help="data contracts: check, compare, register, list")
    csub = contracts.add_subparsers(dest="contracts_command", required=True)
    levels = [c.value for c in Compatibility]

    p = csub.add_parser(
        "check", help="compare the working tree's schemas with git history; fail on incompatible changes"
    )
    p.add_argument(
        "--against", help="git revision to compare with (default: the previous revision of each file)"
    )
    p.add_argument(
        "--stack", action="append", choices=stacks, help="only these stacks' levels (default: all)"
    )
    p.add_argument(
        "--catalog", help="catalog folder holding catalog.yaml and schemas/ (default: the project's)"
    )
    p.set_defaults(func=_guarded(check))

    p = csub.add_parser("compare", help="is NEW compatible with OLD (two schema files)?")
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--compatibility", default="BACKWARD", type=str.upper, choices=levels)
    p.add_argument("--type", choices=["avro", "json"], help="schema language (default: from the file suffix)")
    p.add_argument("--subject", help="subject name shown in messages")
    p.set_defaults(func=_guarded(compare))

    p = csub.add_parser("register", help="register every contract of a stack in a running registry")
    p.add_argument("--url", required=True, help="registry root URL, e.g. http://127.0.0.1:8181")
    p.add_argument(
        "--user",
        default=access.PUBLISHER,
        help=f"registry user that may write (default: {access.PUBLISHER}); its password from ${PASSWORD_ENV}",
    )
    p.add_argument("--stack", default="local", choices=stacks)
    p.add_argument("--catalog", help="catalog folder (default: the project's)")
    p.set_defaults(func=_guarded(register))

    p = csub.add_parser("list", help="subjects, schema languages and compatibility levels of a stack")
    p.add_argument("--stack", default="local", choices=stacks)
    p.add_argument("--catalog", help="catalog folder (default: the project's)")
    p.set_defaults(func=_guarded(list_contracts))
