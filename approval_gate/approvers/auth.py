"""Who may decide: approvers' passwords (scrypt hashes in a users file), signed sessions and CSRF tokens.

The users file is JSON, `{"version": 1, "users": {"<name>": "scrypt$<n>$<r>$<p>$<salt>$<hash>"}}`, written by
`python -m approval_gate.approvers.auth add` (locally: generated per state dir; on Kubernetes: a Secret the
cluster's operators create). Only hashes are stored; a password is never logged or kept. A session is a cookie
signed with the page's key (itsdangerous), carrying the person and the CSRF token every form must echo.
"""

from __future__ import annotations

import argparse
import base64
import functools
import getpass
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

# scrypt at OWASP's minimum cost (n=2^17, r=8, p=1): 128 MiB and a few hundred ms per check.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1
SCRYPT_MAXMEM = 256 * 1024 * 1024
NAME = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")
SESSION_SALT = "approvers-session"
SESSION_MAX_AGE_S = 8 * 3600
MIN_PASSWORD = 12
# Failed logins per name before a pause: slows guessing without locking a person out for long.
FAILURES_BEFORE_PAUSE = 5
PAUSE_S = 60.0
THROTTLE_NAMES = 10_000  # names with recent failures kept at most (older ones are forgotten first)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=SCRYPT_MAXMEM, dklen=32
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=SCRYPT_MAXMEM,
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


@functools.cache
def _dummy() -> str:
    """Checked when the name is unknown, so a wrong name takes as long as a wrong password."""
    return hash_password(secrets.token_urlsafe(16))


class UsersFileError(ValueError):
    """The users file is missing or malformed (the message names the file and what is wrong)."""


@dataclass(frozen=True)
class Users:
    hashes: Mapping[str, str]

    @classmethod
    def load(cls, path: Path) -> Users:
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UsersFileError(f"approvers' users file {path}: {exc}") from None
        if not isinstance(raw, dict) or raw.get("version") != 1 or not isinstance(raw.get("users"), dict):
            raise UsersFileError(
                f'approvers\' users file {path}: expected {{"version": 1, "users": {{...}}}}'
            )
        bad = [
            n for n, h in raw["users"].items() if not NAME.match(str(n)) or not str(h).startswith("scrypt$")
        ]
        if bad:
            raise UsersFileError(
                f"approvers' users file {path}: bad entries {', '.join(sorted(map(str, bad)))}; names match "
                f"{NAME.pattern} and each value is a scrypt hash (python -m approval_gate.approvers.auth add)"
            )
        if not raw["users"]:
            raise UsersFileError(f"approvers' users file {path}: no users")
        return cls(dict(raw["users"]))

    def verify(self, name: str, password: str) -> bool:
        stored = self.hashes.get(name)
        ok = check_password(password, stored if stored is not None else _dummy())
        return ok and stored is not None


def add_user(path: Path, name: str, password: str) -> None:
    """Add or replace one user in the users file (created owner-only when missing)."""
    if not NAME.match(name):
        raise ValueError(f"approver name {name!r}: allowed {NAME.pattern}")
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"password too short: at least {MIN_PASSWORD} characters")
    users: dict[str, Any] = {}
    if path.exists():
        users = dict(Users.load(path).hashes)
    users[name] = hash_password(password)
    write_owner_only(path, json.dumps({"version": 1, "users": users}, indent=2, sort_keys=True) + "\n")


def write_owner_only(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


@dataclass(frozen=True)
class Session:
    user: str
    csrf: str
    sid: str = ""  # the session's id: live in the page's process until signed out or expired


class Sessions:
    """Signed session cookies: the person, a CSRF token and a session id; expired after `max_age_s`.

    A signature alone cannot be taken back, so the page also keeps the ids of the sessions it issued and
    that are still live: signing out (`revoke`) ends one at once, and a copy of its cookie replayed later is
    refused like a forged one. The ids live in this process only, so a restart (a new pod) signs everyone
    out: the page fails closed rather than honour a cookie it can no longer check.
    """

    def __init__(self, key: bytes, max_age_s: int = SESSION_MAX_AGE_S) -> None:
        if len(key) < 32:
            raise ValueError("the session key must be at least 32 bytes")
        self.serializer = URLSafeTimedSerializer(key, salt=SESSION_SALT)
        self.max_age_s = max_age_s
        self._live: dict[str, float] = {}  # session id -> when it was issued (epoch seconds)
        self._lock = threading.Lock()

    def issue(self, user: str, now: float | None = None) -> str:
        now = time.time() if now is None else now
        sid = secrets.token_urlsafe(24)
        with self._lock:
            # Forget the expired ones, so the map holds no more than the sessions of one max age.
            self._live = {s: t for s, t in self._live.items() if now - t <= self.max_age_s}
            self._live[sid] = now
        return self.serializer.dumps({"u": user, "c": secrets.token_urlsafe(24), "s": sid})

    def read(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            raw = self.serializer.loads(cookie, max_age=self.max_age_s)
        except BadSignature:  # a bad or an expired signature (SignatureExpired is one)
            return None
        if not isinstance(raw, dict) or not all(isinstance(raw.get(k), str) for k in ("u", "c", "s")):
            return None
        with self._lock:
            if raw["s"] not in self._live:  # signed out, or issued by an earlier process
                return None
        return Session(raw["u"], raw["c"], raw["s"])

    def revoke(self, session: Session) -> None:
        """End `session`: its cookie, even a copy kept elsewhere, is refused from now on."""
        with self._lock:
            self._live.pop(session.sid, None)

    def live(self) -> int:
        with self._lock:
            return len(self._live)


def csrf_ok(session: Session, token: str | None) -> bool:
    return token is not None and hmac.compare_digest(session.csrf.encode(), token.encode())


class Throttle:
    """After `FAILURES_BEFORE_PAUSE` failed logins for a name, refuse that name for `PAUSE_S` seconds."""

    def __init__(self, failures: int = FAILURES_BEFORE_PAUSE, pause_s: float = PAUSE_S) -> None:
        self.failures, self.pause_s = failures, pause_s
        self.state: dict[str, tuple[int, float]] = {}
        self.lock = threading.Lock()

    def allowed(self, name: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self.lock:
            count, since = self.state.get(name, (0, now))
            if count >= self.failures and now - since < self.pause_s:
                return False
            if count >= self.failures:
                self.state.pop(name, None)
            return True

    def failed(self, name: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self.lock:
            if len(self.state) >= THROTTLE_NAMES:  # made-up names must not grow it without end
                self.state = {n: (c, t) for n, (c, t) in self.state.items() if now - t < self.pause_s}
            count, _ = self.state.get(name, (0, now))
            self.state[name] = (count + 1, now)

    def succeeded(self, name: str) -> None:
        with self.lock:
            self.state.pop(name, None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="approval_gate.approvers.auth", description="Manage the approvers' page users file."
    )
    sub = p.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="add or replace a user; the password is read from the terminal or stdin")
    add.add_argument("--file", type=Path, required=True)
    add.add_argument("--name", required=True)
    args = p.parse_args(argv)
    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    try:
        add_user(args.file, args.name, password)
    except (ValueError, UsersFileError) as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{args.name} added to {args.file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
