"""`headwater contracts check` in a temporary git repository, and `contracts compare` on two files."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from headwater.contracts.model import CATALOG_DIR as CATALOG
from headwater_cli.main import main


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository holding a copy of the catalog, committed once."""
    shutil.copytree(CATALOG, tmp_path / "catalog")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "catalog")
    return tmp_path


def _edit(repo: Path, name: str, change: Any) -> None:
    path = repo / "catalog" / "schemas" / name
    schema = json.loads(path.read_text())
    change(schema)
    path.write_text(json.dumps(schema, indent=2))


def _check(repo: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["contracts", "check", "--catalog", str(repo / "catalog"), *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _add_region(schema: dict[str, Any]) -> None:
    schema["fields"].append({"name": "region", "type": ["null", "string"], "default": None})


def test_unchanged_catalog_has_only_new_subjects(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _check(repo, capsys)
    assert code == 0
    assert "  new   agents.signals.v1-value (AVRO, schemas/agents.signals.v1.avsc)" in out


def test_a_compatible_edit_passes(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _edit(repo, "agents.signals.v1.avsc", _add_region)
    _edit(repo, "agents.events.raw.v1.json", lambda s: s["properties"].update(region={"type": "string"}))
    code, out = _check(repo, capsys)
    assert code == 0, out
    head = _git(repo, "rev-parse", "HEAD")[:12]
    assert (
        "  ok    agents.signals.v1-value (AVRO; BACKWARD: dev, local, staging; FULL_TRANSITIVE: prod) "
        f"vs {head}:catalog/schemas/agents.signals.v1.avsc"
    ) in out
    assert "  ok    agents.events.raw.v1-value (JSON; BACKWARD: dev, local, prod, staging)" in out


def test_an_incompatible_edit_fails_naming_subject_stack_and_change(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(
        repo,
        "features.agent_activity.v1.avsc",
        lambda s: s["fields"].append({"name": "score", "type": "double"}),
    )
    _edit(repo, "agents.events.raw.v1.json", lambda s: s["required"].append("tenant_id"))
    code, out = _check(repo, capsys)
    assert code == 1
    head = _git(repo, "rev-parse", "HEAD")[:12]
    assert "  FAIL  features.agent_activity.v1-value" in out
    assert (
        "features.agent_activity.v1-value (BACKWARD): the new schema cannot read records written with "
        f"{head}:catalog/schemas/features.agent_activity.v1.avsc: /score: the reader has this field without a "
        "default and the writer does not write it (give the field a default) [stacks: dev, local, staging]"
    ) in out
    assert "features.agent_activity.v1-value (FULL_TRANSITIVE): the new schema cannot read" in out
    assert (
        "agents.events.raw.v1-value (BACKWARD): the new schema cannot read records written with "
        f"{head}:catalog/schemas/agents.events.raw.v1.json: /tenant_id: required by the reader but optional "
        "for the writer [stacks: dev, local, prod, staging]"
    ) in out
    assert "2 subject(s) have incompatible changes" in out
    # --stack checks only that stack's levels; dev's BACKWARD is broken by both edits too.
    assert main(["contracts", "check", "--catalog", str(repo / "catalog"), "--stack", "dev"]) == 1


def test_ci_compares_the_last_commit_with_the_revision_before_it(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _git(repo, "rev-parse", "HEAD")[:12]
    _edit(repo, "agents.signals.v1.avsc", lambda s: s["fields"][0].update(type="long"))
    _git(repo, "commit", "-q", "-am", "break signals")
    code, out = _check(repo, capsys)  # the working tree is HEAD, as in CI
    assert code == 1
    assert f"vs {before}:catalog/schemas/agents.signals.v1.avsc" in out
    assert "/event_id: reader type: long not compatible with writer type: string" in out


def test_transitive_levels_compare_with_every_earlier_revision(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """v1 had `lag` as a long; v2 dropped it; v3 brings it back as a string with a default. BACKWARD only
    looks at v2 (fine); prod's FULL_TRANSITIVE also reads v1's records (broken)."""
    path = "agents.signals.v1.avsc"
    _edit(repo, path, lambda s: s["fields"].append({"name": "lag", "type": "long", "default": 0}))
    _git(repo, "commit", "-q", "-am", "v1: lag")
    first = _git(repo, "rev-parse", "HEAD")[:12]
    _edit(repo, path, lambda s: s["fields"].pop())
    _git(repo, "commit", "-q", "-am", "v2: no lag")
    _edit(repo, path, lambda s: s["fields"].append({"name": "lag", "type": "string", "default": ""}))
    code, out = _check(repo, capsys)
    assert code == 1
    assert (
        "agents.signals.v1-value (FULL_TRANSITIVE): the new schema cannot read records written with "
        f"{first}:catalog/schemas/agents.signals.v1.avsc: /lag: reader type: string not compatible with writer "
        "type: long [stacks: prod]"
    ) in out
    assert "(BACKWARD)" not in out
    assert main(["contracts", "check", "--catalog", str(repo / "catalog"), "--stack", "dev"]) == 0


def test_against_an_explicit_revision(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = _git(repo, "rev-parse", "HEAD")
    _edit(repo, "agents.signals.v1.avsc", _add_region)
    _git(repo, "commit", "-q", "-am", "region")
    _edit(repo, "agents.signals.v1.avsc", lambda s: s["fields"].pop(0))  # drop event_id
    code, out = _check(repo, capsys, "--against", base)
    assert code == 1
    assert f"vs {base}:catalog/schemas/agents.signals.v1.avsc" in out
    assert "consumers still using" in out and "/event_id" in out
    code, out = _check(repo, capsys, "--against", "no-such-rev")
    assert code == 2
    assert "--against 'no-such-rev' is not a revision" in out


def test_a_broken_contract_file_is_a_configuration_error(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "catalog" / "schemas" / "agents.signals.v1.avsc").write_text('{"type": "record", "name": "X"}')
    code, out = _check(repo, capsys)
    assert code == 2
    assert "agents.signals.v1.avsc: not a valid Avro schema" in out


def test_compare_two_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = tmp_path / "old.avsc"
    new = tmp_path / "new.avsc"
    old.write_text(json.dumps({"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]}))
    new.write_text(json.dumps({"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}]}))
    assert main(["contracts", "compare", str(old), str(new)]) == 0  # int -> long: readable backward
    assert f"{new} is BACKWARD-compatible with {old}" in capsys.readouterr().out
    assert main(["contracts", "compare", str(old), str(new), "--compatibility", "full"]) == 1
    out = capsys.readouterr().out
    assert f"{new} is not FULL-compatible with {old}:" in out
    assert (
        f"consumers still using {old} cannot read records written with the new schema: /a: reader type: int"
        in out
    )
