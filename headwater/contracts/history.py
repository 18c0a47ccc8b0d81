"""Earlier versions of a schema file from git: what an offline compatibility check compares against.

With `against=None` the baseline is *the previous revision of the file*: the newest committed content
that differs from the working tree (so an uncommitted edit is compared with HEAD, and in CI, where the
working tree is HEAD, the last change is compared with the version before it). With `against=<rev>` the
baseline is the file as it was at that revision. Transitive levels get every earlier distinct revision
reachable from the baseline, oldest first, each labelled `<commit>:<path>`.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


class GitError(RuntimeError):
    """git could not answer (not a repository, unknown revision, ...)."""


def _git(repo: Path, *args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise GitError(f"cannot run git: {exc}") from None
    if result.returncode not in ok:
        raise GitError(
            f"git {' '.join(args)} failed in {repo}: {result.stderr.strip() or result.stdout.strip()}"
        )
    return result


def repo_root(path: Path) -> Path:
    folder = path if path.is_dir() else path.parent
    return Path(_git(folder, "rev-parse", "--show-toplevel").stdout.strip())


def verify_revision(repo: Path, rev: str) -> str:
    """The commit `rev` names; GitError naming the revision otherwise."""
    result = _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", ok=(0, 1))
    if result.returncode != 0:
        raise GitError(f"--against {rev!r} is not a revision of the repository at {repo}")
    return result.stdout.strip()


@dataclass(frozen=True)
class Revision:
    label: str  # "<short commit>:<path>" (or "<rev>:<path>" for an explicit --against)
    text: str


def _show(repo: Path, commit: str, rel: str) -> str | None:
    result = _git(repo, "show", f"{commit}:{rel}", ok=(0, 128))
    return result.stdout if result.returncode == 0 else None


def _commits(repo: Path, start: str, rel: str) -> list[str]:
    """Commits that touched `rel`, newest first, reachable from `start`."""
    out = _git(repo, "log", "--format=%H", start, "--", rel).stdout.split()
    return out


def previous_revisions(path: Path, *, against: str | None = None, transitive: bool = False) -> list[Revision]:
    """Earlier revisions of the file at `path` (absolute), oldest first; [] for a file git never had."""
    path = path.resolve()
    repo = repo_root(path)
    rel = path.relative_to(repo).as_posix()
    current = path.read_text(encoding="utf-8") if path.is_file() else None
    if against is not None:
        commit = verify_revision(repo, against)
        baseline = _show(repo, commit, rel)
        if baseline is None:
            return []
        found = [Revision(f"{against}:{rel}", baseline)]
        history = _commits(repo, commit, rel)
        older = history[1:] if history and _show(repo, history[0], rel) == baseline else history
    else:
        history = (
            _commits(repo, "HEAD", rel)
            if _git(repo, "rev-parse", "--verify", "--quiet", "HEAD", ok=(0, 1)).returncode == 0
            else []
        )
        found = []
        older = []
        for i, commit in enumerate(history):
            text = _show(repo, commit, rel)
            if text is not None and text != current:
                found = [Revision(f"{commit[:12]}:{rel}", text)]
                older = history[i + 1 :]
                break
        if not found:
            return []
    if transitive:
        seen = {found[0].text}
        for commit in older:
            text = _show(repo, commit, rel)
            if text is not None and text not in seen:
                seen.add(text)
                found.append(Revision(f"{commit[:12]}:{rel}", text))
    return list(reversed(found))
