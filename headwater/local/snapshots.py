"""Which retained snapshot a local Flink job resumes from: checked before use, chosen out loud.

A snapshot is a retained checkpoint (`<checkpoints>/<job id>/chk-N/`) or a savepoint
(`<savepoints>/savepoint-*/`). Flink writes its `_metadata` last, through a recoverable writer that renames
a finished temporary file (a crash leaves no half-written one), so:

- a folder without `_metadata` never completed (a crash or an abort mid-checkpoint): skipping it is safe,
  its outputs were never committed;
- a `_metadata` that exists but cannot be read (empty, cut short, not Flink's format, or naming state
  files that are gone) is damage. That snapshot *did* complete, and its transactions may have committed:
  resuming from an older one replays what came after it and writes those outputs again. So the newest
  completed snapshot being damaged stops the start, naming the explicit ways on: `--restore-from` an older
  snapshot (accepting the replay) or `--fresh` (no state). Nothing falls back silently.

The check is structural and cheap (no JVM): the header (Flink's metadata magic number and a format version
this Flink reads); every state file the metadata refers to (absolute file handles of checkpoints,
relative handles of self-contained savepoints) present with the size the metadata gives it; every inline
state handle whole; and, from format 4 on, the checkpoint properties Flink writes last (a Java-serialized
object) readable to the very last byte, which a file cut short anywhere fails.
"""

from __future__ import annotations

import re
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlparse

METADATA = "_metadata"
# org.apache.flink.runtime.checkpoint.Checkpoints.HEADER_MAGIC_NUMBER
HEADER_MAGIC = 0x4960672D
# Formats Flink 2.2 reads: MetadataV1Serializer .. MetadataV6Serializer.
READABLE_VERSIONS = range(1, 7)
# Stream state handle type bytes of MetadataV2V3SerializerBase.
_BYTES_HANDLE = 1  # byte 1, UTF name (the path it would have had), int length, the bytes
_FILE_HANDLE = 2  # byte 2, long size, UTF absolute path
_RELATIVE_HANDLE = 6  # byte 6, UTF path relative to the snapshot folder, long size
_SEGMENT_HANDLE = 15  # byte 15, long start, long size, int scope, UTF path, UTF logical file id
# Relative handles of savepoints are random UUIDs, written as a Java UTF string (2-byte length 36).
_RELATIVE = re.compile(rb"\x06\x00\x24([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")


class SnapshotError(RuntimeError):
    """A snapshot cannot be used as asked; the message says which and what to do instead."""


@dataclass(frozen=True)
class Snapshot:
    """One snapshot folder of an app and what is wrong with it (`problem` None: usable)."""

    path: Path
    kind: str  # "checkpoint" or "savepoint"
    written_ns: int  # when its _metadata was written (the folder's time while it has none)
    problem: str | None

    @property
    def complete(self) -> bool:
        return (self.path / METADATA).exists()

    @property
    def valid(self) -> bool:
        return self.problem is None

    def written(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.written_ns / 1e9))

    def describe(self) -> str:
        return f"{self.kind} {self.path} ({self.written()})"


def _utf_at(data: bytes, at: int) -> tuple[str, int]:
    """A Java `writeUTF` string at `at`: (text, offset after it). Raises ValueError past the end."""
    if at + 2 > len(data):
        raise ValueError("cut short")
    (length,) = struct.unpack_from(">H", data, at)
    end = at + 2 + length
    if end > len(data):
        raise ValueError("cut short")
    return data[at + 2 : end].decode("utf-8", errors="replace"), end


def _file_path(uri: str) -> Path:
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme in ("file", "") else Path("/nonexistent") / uri


def referenced_files(data: bytes, folder: Path) -> list[tuple[Path, int]]:
    """The state files a `_metadata` refers to, with the size it gives each.

    Found by their serialized handles: a `file:` path preceded by its handle type byte and size, or a
    savepoint's relative UUID name followed by its size.
    """
    found: list[tuple[Path, int]] = []
    for match in re.finditer(rb"file:/", data):
        at = match.start() - 2  # the UTF length prefix
        try:
            text, _ = _utf_at(data, at)
        except ValueError:
            continue
        if at - 9 >= 0 and data[at - 9] == _FILE_HANDLE:
            (size,) = struct.unpack_from(">q", data, at - 8)
            found.append((_file_path(text), size))
        elif at - 21 >= 0 and data[at - 21] == _SEGMENT_HANDLE:
            found.append((_file_path(text), -1))  # a segment of a shared file: its size is not the file's
    for match in _RELATIVE.finditer(data):
        end = match.end()
        if end + 8 <= len(data):
            (size,) = struct.unpack_from(">q", data, end)
            found.append((folder / match.group(1).decode(), size))
    return found


class _JavaStream:
    """Just enough of the Java object serialization grammar to walk one object to its end.

    Flink closes a format 4+ `_metadata` with its CheckpointProperties written by an ObjectOutputStream: a
    small graph of classes with primitive, string, enum and object fields. Walking it tells whether the file
    ends exactly where that object does.
    """

    MAGIC = b"\xac\xed\x00\x05"
    _PRIMITIVE: ClassVar[dict[bytes, int]] = {
        b"B": 1,
        b"C": 2,
        b"D": 8,
        b"F": 4,
        b"I": 4,
        b"J": 8,
        b"S": 2,
        b"Z": 1,
    }

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0
        self.handles: list[Any] = []

    def _take(self, n: int) -> bytes:
        if n < 0 or self.at + n > len(self.data):
            raise ValueError("cut short")
        out = self.data[self.at : self.at + n]
        self.at += n
        return out

    def _u(self, fmt: str) -> int:
        return int(struct.unpack(fmt, self._take(struct.calcsize(fmt)))[0])

    def _utf(self) -> str:
        return self._take(self._u(">H")).decode("utf-8", errors="replace")

    def read_stream(self) -> None:
        if self._take(4) != self.MAGIC:
            raise ValueError("not a Java serialization stream")
        self.content()

    def content(self) -> Any:
        tag = self._take(1)[0]
        if tag == 0x70:  # TC_NULL
            return None
        if tag == 0x71:  # TC_REFERENCE
            index = self._u(">i") - 0x7E0000
            if not 0 <= index < len(self.handles):
                raise ValueError("bad back reference")
            return self.handles[index]
        if tag in (0x74, 0x7C):  # TC_STRING, TC_LONGSTRING
            text = self._utf() if tag == 0x74 else self._take(self._u(">q")).decode(errors="replace")
            self.handles.append(text)
            return text
        if tag == 0x72:  # TC_CLASSDESC
            return self._class_desc()
        if tag == 0x7E:  # TC_ENUM: its class, then the constant's name
            self.content()
            self.handles.append("enum")
            return self.content()
        if tag == 0x73:  # TC_OBJECT
            desc = self.content()
            self.handles.append("object")
            self._class_data(desc)
            return "object"
        if tag == 0x75:  # TC_ARRAY
            desc = self.content()
            self.handles.append("array")
            kind = str(desc["name"])[1:2].encode() if isinstance(desc, dict) else b"L"
            for _ in range(self._u(">i")):
                self._value(kind)
            return "array"
        if tag in (0x77, 0x7A):  # TC_BLOCKDATA, TC_BLOCKDATALONG
            self._take(self._take(1)[0] if tag == 0x77 else self._u(">i"))
            return "block"
        raise ValueError(f"unexpected tag {tag:#04x}")

    def _class_desc(self) -> dict[str, Any]:
        desc: dict[str, Any] = {"name": self._utf()}
        self._take(8)  # serialVersionUID
        self.handles.append(desc)
        desc["flags"] = self._take(1)[0]
        fields = []
        for _ in range(self._u(">H")):
            code = self._take(1)
            self._utf()  # the field's name
            if code in (b"L", b"["):
                self.content()  # the field's class name
            fields.append(code)
        desc["fields"] = fields
        self._annotation()
        desc["super"] = self.content()
        return desc

    def _annotation(self) -> None:
        while self.data[self.at : self.at + 1] != b"\x78":  # up to TC_ENDBLOCKDATA
            self.content()
        self._take(1)

    def _value(self, code: bytes) -> None:
        if code in self._PRIMITIVE:
            self._take(self._PRIMITIVE[code])
        else:
            self.content()

    def _class_data(self, desc: Any) -> None:
        chain = []
        while isinstance(desc, dict):
            chain.append(desc)
            desc = desc.get("super")
        for cls in reversed(chain):
            if cls["flags"] & 0x04:  # SC_EXTERNALIZABLE: block data up to the end marker
                self._annotation()
                continue
            for code in cls["fields"]:
                self._value(code)
            if cls["flags"] & 0x01:  # SC_WRITE_METHOD: custom data follows, up to the end marker
                self._annotation()


def _properties_end_the_file(data: bytes) -> bool:
    """Whether the last Java-serialized object (the checkpoint properties) is whole and ends the file."""
    start = data.rfind(_JavaStream.MAGIC)
    if start < 0:
        return False
    stream = _JavaStream(data[start:])
    try:
        stream.read_stream()
    except (ValueError, struct.error, IndexError, KeyError, TypeError):
        return False
    return stream.at == len(stream.data)


def _inline_handles_whole(data: bytes) -> bool:
    """Every inline (byte stream) state handle's bytes lie within the file: its name is the path it would
    have had as a file, followed by the length of its data."""
    for match in re.finditer(rb"file:/", data):
        at = match.start() - 2
        if at - 1 < 0 or data[at - 1] != _BYTES_HANDLE:
            continue
        try:
            _, end = _utf_at(data, at)
        except ValueError:
            return False
        if end + 4 > len(data):
            return False
        (length,) = struct.unpack_from(">i", data, end)
        if length < 0 or end + 4 + length > len(data):
            return False
    return True


def problem_of(folder: Path) -> str | None:
    """Why `folder` cannot be restored from, or None when it passes the structural check."""
    metadata = folder / METADATA
    if not metadata.is_file():
        return "incomplete: no _metadata (the snapshot never completed)"
    try:
        data = metadata.read_bytes()
    except OSError as exc:
        return f"_metadata cannot be read: {exc.strerror or exc}"
    if not data:
        return "damaged: _metadata is empty (0 bytes)"
    if len(data) < 8:
        return f"damaged: _metadata is cut short ({len(data)} bytes, not even its header)"
    magic, version = struct.unpack_from(">ii", data)
    if magic & 0xFFFFFFFF != HEADER_MAGIC:
        return f"damaged: _metadata does not start with Flink's metadata magic number (found {magic & 0xFFFFFFFF:#010x})"
    if version not in READABLE_VERSIONS:
        return (
            f"damaged: _metadata has format version {version}, which this Flink does not read (it reads 1-6)"
        )
    if len(data) < 8 + 8 + 4 + 4:  # checkpoint id, master states, operator states
        return f"damaged: _metadata is cut short ({len(data)} bytes)"
    for path, size in referenced_files(data, folder):
        try:
            actual = path.stat().st_size
        except OSError:
            return f"damaged: the state file {path} it refers to is missing"
        if size >= 0 and actual != size:
            return f"damaged: the state file {path} is {actual} bytes, the snapshot recorded {size}"
    if not _inline_handles_whole(data):
        return f"damaged: _metadata is cut short ({len(data)} bytes: a state handle ends past the file)"
    if version >= 4 and not _properties_end_the_file(data):
        return (
            f"damaged: _metadata is cut short or altered ({len(data)} bytes: the checkpoint properties "
            "Flink writes last do not end the file)"
        )
    return None


def snapshots(checkpoint_dir: Path, savepoint_dir: Path) -> list[Snapshot]:
    """Every snapshot folder (complete or not) of an app, newest first."""
    folders = [("checkpoint", p) for p in checkpoint_dir.glob("*/chk-*") if p.is_dir()] + [
        ("savepoint", p) for p in savepoint_dir.glob("savepoint-*") if p.is_dir()
    ]
    out = []
    for kind, folder in folders:
        metadata = folder / METADATA
        try:
            written = (metadata if metadata.exists() else folder).stat().st_mtime_ns
        except OSError:
            continue  # deleted while listing (Flink subsumes old checkpoints)
        out.append(Snapshot(folder, kind, written, problem_of(folder)))
    return sorted(out, key=lambda s: (s.written_ns, str(s.path)), reverse=True)


@dataclass(frozen=True)
class SnapshotChoice:
    """What an app starts from and why: `restore_from` None means without state."""

    app: str
    restore_from: Snapshot | None
    reason: str
    skipped: tuple[Snapshot, ...] = ()

    @property
    def path(self) -> Path | None:
        return self.restore_from.path if self.restore_from else None

    def lines(self) -> list[str]:
        if self.restore_from is None:
            head = f"starting without state ({self.reason})"
        else:
            head = f"resuming from {self.restore_from.describe()}: {self.reason}"
        return [head] + [f"skipped {s.describe()}: {s.problem}" for s in self.skipped]


class DamagedSnapshotError(SnapshotError):
    """The newest completed snapshot of an app is damaged: the start stops and names the ways on."""

    def __init__(self, app: str, damaged: Snapshot, older: Snapshot | None) -> None:
        self.app = app
        self.damaged = damaged
        self.older = older
        options = []
        if older is not None:
            options.append(
                f"  --restore-from {app}={older.path}\n"
                f"      resume from the newest valid older {older.kind} (written {older.written()}); it replays what "
                f"{app} read after it, and outputs written since then are written again"
            )
        options.append(
            f"  --fresh {app}\n"
            f"      start {app} without state: it reads on from its consumer group's committed offsets but "
            "forgets its state (seen event ids, open windows)"
        )
        super().__init__(
            f"Flink app {app}: the newest snapshot, {damaged.describe()}, is {damaged.problem}. "
            f"Resuming from an older one would replay data, so nothing was started. Choose one:\n"
            + "\n".join(options)
        )


def choose(
    app: str,
    checkpoint_dir: Path,
    savepoint_dir: Path,
    *,
    restore_from: Path | None = None,
    fresh: bool = False,
) -> SnapshotChoice:
    """The snapshot `app` resumes from.

    By default the newest completed snapshot, which must be valid (else DamagedSnapshotError); newer
    incomplete ones are skipped and listed. `restore_from` takes that snapshot instead (it must pass the
    check); `fresh` starts without state.
    """
    every = snapshots(checkpoint_dir, savepoint_dir)
    if fresh:
        return SnapshotChoice(app, None, f"--fresh: {len(every)} retained snapshot(s) left unused")
    if restore_from is not None:
        folder = restore_from.parent if restore_from.name == METADATA else restore_from
        folder = folder.resolve()
        problem = problem_of(folder)
        if problem is not None:
            raise SnapshotError(f"--restore-from {app}={folder}: {problem}")
        chosen = next((s for s in every if s.path.resolve() == folder), None)
        if chosen is None:
            stamp = (folder / METADATA).stat().st_mtime_ns
            chosen = Snapshot(folder, "snapshot", stamp, None)
        newer = tuple(s for s in every if s.written_ns > chosen.written_ns)
        return SnapshotChoice(
            app, chosen, "as asked with --restore-from; what came after it is replayed", newer
        )
    skipped: list[Snapshot] = []
    for snap in every:
        if not snap.complete:
            skipped.append(snap)
            continue
        if snap.valid:
            return SnapshotChoice(
                app, snap, "the newest completed snapshot, checked before use", tuple(skipped)
            )
        older = next((s for s in every if s.written_ns < snap.written_ns and s.complete and s.valid), None)
        raise DamagedSnapshotError(app, snap, older)
    return SnapshotChoice(app, None, "no completed snapshot retained", tuple(skipped))


def resolve_requests(
    apps: Sequence[str],
    app_dirs: dict[str, Path],
    restore_from: Sequence[str],
    fresh: Sequence[str],
) -> tuple[dict[str, Path], set[str]]:
    """`--restore-from` and `--fresh` values -> ({app: snapshot}, {apps to start fresh}).

    `--restore-from` is `APP=PATH`, or a PATH inside one app's state folder; `--fresh` is an app name, or
    `*` (the flag without a value) for every app not given --restore-from.
    """
    chosen: dict[str, Path] = {}
    for value in restore_from:
        app, sep, raw = value.partition("=")
        if sep and app in apps:
            path = Path(raw).expanduser().resolve()
        else:
            path = Path(value).expanduser().resolve()
            owners = [a for a in apps if path.is_relative_to(app_dirs[a].resolve())]
            if len(owners) != 1:
                raise SnapshotError(
                    f"--restore-from {value}: not inside one app's state folder; allowed: APP=PATH with APP "
                    f"one of {', '.join(apps)}, or a snapshot under {', '.join(str(app_dirs[a]) for a in apps)}"
                )
            app = owners[0]
        if app in chosen:
            raise SnapshotError(f"--restore-from names {app} twice; allowed: one snapshot per app")
        chosen[app] = path
    fresh_apps: set[str] = set()
    for value in fresh:
        if value == "*":  # every app, except those given a snapshot to resume from
            fresh_apps.update(a for a in apps if a not in chosen)
        elif value in apps:
            fresh_apps.add(value)
        else:
            raise SnapshotError(
                f"--fresh {value}: no such app; allowed: {', '.join(apps)}, or no value for all"
            )
    both = sorted(set(chosen) & fresh_apps)
    if both:
        raise SnapshotError(
            f"{', '.join(both)}: both --restore-from and --fresh given; allowed: one of them per app"
        )
    return chosen, fresh_apps
