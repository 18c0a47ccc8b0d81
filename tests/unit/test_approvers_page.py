"""The approvers' page's pure parts: the board built from the audit records the real gate logic writes, the
description the platform derives for it, passwords, sessions and CSRF tokens."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from approval_gate.approvers.auth import (
    THROTTLE_NAMES,
    Sessions,
    Throttle,
    Users,
    UsersFileError,
    add_user,
    check_password,
    csrf_ok,
    hash_password,
)
from approval_gate.approvers.board import Board, time_left
from approval_gate.approvers.kafka_io import PageDescription, contract_check, decision_record
from approval_gate.logic import Description, Gate, Out, Source
from approval_gate.main import validators
from headwater.action_gate import approvers_description, gate_description
from headwater.config import load_platform

T0 = 1_800_000_000_000
PLATFORM = load_platform("local")
GATE = Description.from_dict(gate_description(PLATFORM))
PAGE = PageDescription.from_dict(approvers_description(PLATFORM))


def _feed(board: Board, outs: list[Out]) -> None:
    for o in outs:
        if o.topic == GATE.audit_topic and o.value is not None:
            board.apply(json.loads(json.dumps(o.value)))  # as read from the topic


def _propose(gate: Gate, agent: str, body: dict[str, Any], now: int, offset: int) -> list[Out]:
    topic = next(a.proposed for a in GATE.agents if a.principal == agent)
    return gate.on_proposal(
        Source(topic, 0, offset), body["action_id"].encode(), json.dumps(body).encode(), now
    )


def _decide(
    gate: Gate, action_id: str, decision: str, who: str, reason: str, now: int, offset: int
) -> list[Out]:
    record = decision_record(action_id, decision, who, reason)
    return gate.on_decision(
        Source(GATE.decisions_topic, 0, offset), action_id.encode(), json.dumps(record).encode(), now
    )


def _body(action_id: str, action_type: str, **fields: Any) -> dict[str, Any]:
    return {
        "action_id": action_id,
        "type": action_type,
        "target": "customer",
        "scope": "account",
        "summary": f"{action_type} please",
        "proposed_at": "2026-11-29T04:00:00Z",
        **fields,
    }


def test_the_board_shows_what_the_gate_holds_and_drops_what_it_decided() -> None:
    gate, board = Gate(GATE, validators(GATE)), Board()
    context = {"signals": [{"event_id": "chat-1"}], "features": {"requests_7d": 2}}
    _feed(board, _propose(gate, "support-agent", _body("a-close", "account_close", context=context), T0, 1))
    _feed(
        board, _propose(gate, "support-agent", _body("a-note", "account_note"), T0, 2)
    )  # on a customer: rule
    _feed(
        board, _propose(gate, "support-agent", _body("a-refund", "refund", amount=80, target="order"), T0, 3)
    )
    assert [p.action_id for p in board.waiting()] == ["a-refund", "a-close"]  # the nearest deadline first
    close = board.pending["a-close"]
    assert close.agent == "support-agent" and close.action_type == "account_close"
    assert "always decided by a human" in close.reasons
    assert close.signals == ["event_id=chat-1"] and close.features == [("requests_7d", "2")]
    assert ("target", "customer") in close.fields and close.summary == "account_close please"
    assert close.deadline == datetime.fromtimestamp(T0 / 1000, UTC) + timedelta(hours=4)
    assert board.outcome("a-note") is not None and board.outcome("a-note").decider is None  # type: ignore[union-attr]

    # The refund's SLA passes: escalated, a new deadline, still pending.
    refund_sla = GATE.policies["refund"].approval_sla_ms
    _feed(board, gate.on_tick(T0 + refund_sla + 1))
    assert board.pending["a-refund"].status == "escalated"
    assert board.pending["a-refund"].escalate_to == "support-leads"

    _feed(board, _decide(gate, "a-close", "approve", "ada", "checked with the customer", T0 + 10, 4))
    assert "a-close" not in board.pending
    outcome = board.outcome("a-close")
    assert outcome is not None and outcome.step == "approved" and outcome.decider == "ada"
    assert outcome.reason == "checked with the customer"
    assert [o.action_id for o in board.recent()] == ["a-close"]

    # A second decision is ignored by the gate; the board keeps why, and the outcome stands.
    _feed(board, _decide(gate, "a-close", "reject", "grace", "no", T0 + 20, 5))
    assert board.outcome("a-close") == outcome
    assert "already approved" in board.ignored["a-close"].reason


def test_time_left_reads_like_a_person_would_say_it() -> None:
    now = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
    assert time_left(now + timedelta(hours=2, minutes=3, seconds=9), now) == "2 h 3 min left"
    assert time_left(now + timedelta(minutes=14, seconds=5), now) == "14 min 5 s left"
    assert time_left(now + timedelta(seconds=9), now) == "9 s left"
    assert time_left(now - timedelta(seconds=1), now) == "overdue"
    assert time_left(None, now) == "no deadline"


def test_the_page_description_comes_from_the_catalog() -> None:
    gate = PLATFORM.action_gate
    assert gate is not None
    assert PAGE.principal == gate.approvers[0] and PAGE.group == gate.approvers[0]
    assert PAGE.audit_topic == gate.audit_topic and PAGE.decisions_topic == gate.decisions_topic
    # The approvers' principal may read the audit trail in its group and write decisions: flows, not ACLs by hand.
    consumes, produces = gate.flows()[PAGE.principal]
    assert {(c.topic, c.group) for c in consumes} == {(gate.audit_topic, PAGE.group)}
    assert {p.topic for p in produces} == {gate.decisions_topic}
    assert set(PAGE.policies) == {p.action_type for p in gate.policies}
    with pytest.raises(ValueError, match="version 2; allowed: 1"):
        PageDescription.from_dict({**approvers_description(PLATFORM), "version": 2})


def test_decisions_are_checked_against_their_contract_before_sending() -> None:
    check = contract_check(PAGE.decision_contract)
    good = decision_record("a-1", "approve", "ada", "fine")
    assert check(good) is None
    assert check({**good, "reason": ""}) == "reason: '' should be non-empty"
    assert "is not one of" in str(check({**good, "decision": "maybe"}))
    assert "Additional properties" in str(check({**good, "extra": 1}))


def test_passwords_are_scrypt_hashes_checked_in_constant_time(tmp_path: Path) -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("scrypt$131072$8$1$") and "correct" not in stored
    assert check_password("correct horse battery", stored)
    assert not check_password("correct horse batterx", stored)
    assert not check_password("anything", "scrypt$broken")
    assert hash_password("same password") != hash_password("same password")  # salted

    users_file = tmp_path / "users.json"
    add_user(users_file, "ada", "a long enough password")
    assert users_file.stat().st_mode & 0o777 == 0o600
    users = Users.load(users_file)
    assert users.verify("ada", "a long enough password")
    assert not users.verify("ada", "a long enough passwore")
    assert not users.verify("nobody", "a long enough password")
    with pytest.raises(ValueError, match="at least 12 characters"):
        add_user(users_file, "bob", "short")
    with pytest.raises(ValueError, match="approver name 'Bad Name'"):
        add_user(users_file, "Bad Name", "a long enough password")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "Expecting value"),
        ('{"version": 2, "users": {}}', 'expected {"version": 1'),
        ('{"version": 1, "users": {}}', "no users"),
        ('{"version": 1, "users": {"ada": "plain text"}}', "bad entries ada"),
    ],
)
def test_a_bad_users_file_is_refused_with_what_is_wrong(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "users.json"
    path.write_text(content)
    with pytest.raises(UsersFileError, match=message) as info:
        Users.load(path)
    assert str(path) in str(info.value)


def test_sessions_are_signed_and_expire_and_carry_the_csrf_token() -> None:
    sessions = Sessions(b"k" * 32)
    cookie = sessions.issue("ada")
    session = sessions.read(cookie)
    assert session is not None and session.user == "ada"
    assert csrf_ok(session, session.csrf) and not csrf_ok(session, "forged") and not csrf_ok(session, None)
    assert sessions.read(cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")) is None  # tampered
    assert Sessions(b"x" * 32).read(cookie) is None  # another key
    assert sessions.read(None) is None and sessions.read("") is None
    expired = Sessions(b"k" * 32, max_age_s=-1)
    assert expired.read(cookie) is None
    assert sessions.issue("ada") != cookie  # a new CSRF token per session
    with pytest.raises(ValueError, match="at least 32 bytes"):
        Sessions(b"short")


def test_a_signed_out_session_s_cookie_is_refused_when_replayed() -> None:
    sessions = Sessions(b"k" * 32)
    kept, other = sessions.issue("ada"), sessions.issue("ada")
    session = sessions.read(kept)
    assert session is not None and sessions.live() == 2
    sessions.revoke(session)
    assert sessions.read(kept) is None  # the same signed bytes, no longer honoured
    assert sessions.read(other) is not None  # ada's other session (another browser) goes on
    # A cookie signed with the right key that this process never issued (an earlier process did) is refused.
    assert Sessions(b"k" * 32).read(other) is None
    # Expired sessions are forgotten as new ones are issued: the map stays bounded.
    short = Sessions(b"k" * 32, max_age_s=60)
    short.issue("ada", now=1000.0)
    short.issue("bob", now=1030.0)
    short.issue("eve", now=1090.0)
    assert short.live() == 2


def test_failed_sign_ins_pause_that_name_for_a_while() -> None:
    throttle = Throttle(failures=3, pause_s=60)
    now = time.monotonic()
    for _ in range(3):
        assert throttle.allowed("ada", now)
        throttle.failed("ada", now)
    assert not throttle.allowed("ada", now + 1)
    assert throttle.allowed("grace", now + 1)  # others are not held up
    assert throttle.allowed("ada", now + 61)
    throttle.failed("grace", now)
    throttle.succeeded("grace")
    assert throttle.state.get("grace") is None
    # Made-up names do not grow the table without end: old failures are forgotten when it is full.
    for i in range(THROTTLE_NAMES + 5):
        throttle.failed(f"guess-{i}", now + (0 if i < THROTTLE_NAMES else 120))
    assert len(throttle.state) < THROTTLE_NAMES
