"""Snapshot checks and the choice of what a local Flink job resumes from (files only, no process).

The metadata written here follows Flink's layout (header, then stream state handles as Flink serializes
them); the integration tests run the same checks on snapshots that real jobs wrote.
"""

from __future__ import annotations

import os
import struct
import uuid
from pathlib import Path

import pytest

from headwater.local.snapshots import (
    HEADER_MAGIC,
    DamagedSnapshotError,
    SnapshotError,
    choose,
    problem_of,
    referenced_files,
    resolve_requests,
)


def _utf(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">H", len(raw)) + raw


def _metadata(
    files: list[tuple[str, int]] = (),  # type: ignore[assignment]
    relative: list[tuple[str, int]] = (),  # type: ignore[assignment]
    inline: bytes = b"",
) -> bytes:
    """A version 6 metadata: header, checkpoint id, no master states, then the given state handles."""
    body = struct.pack(">iiqii", HEADER_MAGIC, 6, 7, 0, 1)
    if inline:  # small state kept in the metadata itself, named by the path it would have had
        body += bytes([1]) + _utf("file:/state/op-1") + struct.pack(">i", len(inline)) + inline
    for path, size in files:
        body += bytes([2]) + struct.pack(">q", size) + _utf(path)
    for name, size in relative:
        body += bytes([6]) + _utf(name) + struct.pack(">q", size)
    return body + PROPERTIES


# What Flink writes last from format 4 on: a Java-serialized object (here a class with a boolean and a
# string field, shaped like its CheckpointProperties).
PROPERTIES = (
    b"\xac\xed\x00\x05sr"
    + _utf("org.apache.flink.runtime.checkpoint.CheckpointProperties")
    + bytes(8)
    + b"\x02\x00\x02Z"
    + _utf("forced")
    + b"L"
    + _utf("name")
    + b"t"
    + _utf("Ljava/lang/String;")
    + b"xp\x01t"
    + _utf("Suspend Savepoint")
)


def _snapshot(folder: Path, mtime: int, data: bytes | None) -> Path:
    folder.mkdir(parents=True)
    if data is not None:
        (folder / "_metadata").write_bytes(data)
        os.utime(folder / "_metadata", (mtime, mtime))
    else:
        os.utime(folder, (mtime, mtime))
    return folder


def _state_file(folder: Path, name: str, size: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"x" * size)
    return path


def test_a_checkpoint_is_valid_when_its_header_and_every_file_it_names_check_out(tmp_path: Path) -> None:
    shared = _state_file(tmp_path / "job" / "shared", "sst-1", 40)
    chk = _snapshot(tmp_path / "job" / "chk-3", 1_000, _metadata(files=[(shared.as_uri(), 40)]))
    assert referenced_files((chk / "_metadata").read_bytes(), chk) == [(shared, 40)]
    assert problem_of(chk) is None

    shared.write_bytes(b"x" * 10)
    assert problem_of(chk) == f"damaged: the state file {shared} is 10 bytes, the snapshot recorded 40"
    shared.unlink()
    assert problem_of(chk) == f"damaged: the state file {shared} it refers to is missing"


def test_a_savepoint_names_its_files_relative_to_itself(tmp_path: Path) -> None:
    name = str(uuid.uuid4())
    savepoint = _snapshot(tmp_path / "savepoint-abc", 1_000, _metadata(relative=[(name, 12)]))
    _state_file(savepoint, name, 12)
    assert problem_of(savepoint) is None
    (savepoint / name).unlink()
    assert "it refers to is missing" in (problem_of(savepoint) or "")


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda data: b"", "empty (0 bytes)"),
        (lambda data: data[:5], "cut short (5 bytes"),
        (lambda data: b"PK\x03\x04" + data[4:], "magic number"),
        (lambda data: data[:4] + struct.pack(">i", 99) + data[8:], "format version 99"),
        (lambda data: data[: len(data) // 2], "cut short"),
        (lambda data: data[:200], "a state handle ends past the file"),
        (lambda data: data[:-1], "cut short"),
        (lambda data: data[:-60], "cut short"),
        (lambda data: data + b"\x00", "cut short or altered"),
    ],
)
def test_damage_is_named(tmp_path: Path, damage: object, why: str) -> None:
    shared = _state_file(tmp_path / "shared", "sst-1", 4)
    good = _metadata(files=[(shared.as_uri(), 4), (shared.as_uri(), 4)], inline=b"s" * 300)
    assert problem_of(_snapshot(tmp_path / "job" / "chk-0", 1_000, good)) is None
    chk = _snapshot(tmp_path / "job" / "chk-1", 1_000, damage(good))  # type: ignore[operator]
    problem = problem_of(chk)
    assert problem is not None and why in problem, problem


def _layout(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "checkpoints", tmp_path / "savepoints"


def test_the_newest_completed_valid_snapshot_is_chosen_and_the_choice_says_what_was_skipped(
    tmp_path: Path,
) -> None:
    checkpoints, savepoints = _layout(tmp_path)
    assert choose("app", checkpoints, savepoints).restore_from is None
    _snapshot(checkpoints / "run-a" / "chk-4", 1_000, _metadata())
    savepoint = _snapshot(savepoints / "savepoint-a", 2_000, _metadata())
    unfinished = _snapshot(checkpoints / "run-b" / "chk-1", 3_000, None)  # a crash mid-checkpoint
    choice = choose("app", checkpoints, savepoints)
    assert choice.path == savepoint
    assert [s.path for s in choice.skipped] == [unfinished]
    lines = choice.lines()
    assert lines[0].startswith(f"resuming from savepoint {savepoint}")
    assert lines[1].startswith(f"skipped checkpoint {unfinished}") and "never completed" in lines[1]


def test_a_damaged_newest_snapshot_stops_the_start_with_both_ways_on(tmp_path: Path) -> None:
    checkpoints, savepoints = _layout(tmp_path)
    older = _snapshot(checkpoints / "run-a" / "chk-4", 1_000, _metadata())
    damaged = _snapshot(savepoints / "savepoint-b", 2_000, b"")
    with pytest.raises(DamagedSnapshotError) as info:
        choose("agent-events", checkpoints, savepoints)
    message = str(info.value)
    assert f"savepoint {damaged}" in message and "empty (0 bytes)" in message
    assert "nothing was started" in message
    assert f"--restore-from agent-events={older}" in message and "written again" in message
    assert "--fresh agent-events" in message

    # Either way on is then taken as asked, and said so.
    asked = choose("agent-events", checkpoints, savepoints, restore_from=older)
    assert asked.path == older and [s.path for s in asked.skipped] == [damaged]
    assert "replayed" in asked.lines()[0]
    fresh = choose("agent-events", checkpoints, savepoints, fresh=True)
    assert fresh.path is None and "--fresh" in fresh.lines()[0]
    with pytest.raises(SnapshotError, match="empty"):
        choose("agent-events", checkpoints, savepoints, restore_from=damaged)


def test_restore_and_fresh_requests_name_their_app(tmp_path: Path) -> None:
    apps = ["agent-events", "feature-aggregator"]
    dirs = {a: tmp_path / "flink" / a for a in apps}
    snap = dirs["agent-events"] / "savepoints" / "savepoint-1"
    assert resolve_requests(apps, dirs, [str(snap)], []) == ({"agent-events": snap}, set())
    assert resolve_requests(apps, dirs, [f"feature-aggregator={snap}"], ["*"])[0] == {
        "feature-aggregator": snap
    }
    assert resolve_requests(apps, dirs, [], ["*"])[1] == set(apps)
    with pytest.raises(SnapshotError, match="not inside one app's state folder"):
        resolve_requests(apps, dirs, [str(tmp_path / "elsewhere")], [])
    with pytest.raises(SnapshotError, match="no such app; allowed: agent-events, feature-aggregator"):
        resolve_requests(apps, dirs, [], ["agent_events"])
    with pytest.raises(SnapshotError, match="both --restore-from and --fresh"):
        resolve_requests(apps, dirs, [str(snap)], ["agent-events"])
