"""The approvers' page over HTTP (FastAPI, server-rendered, no script): sign in, the pending actions, decide.

Every page but the sign-in needs a session; every form that changes something carries the session's CSRF
token. Cookies are `__Host-` prefixed, HttpOnly, Secure and SameSite=Strict; responses forbid framing, scripts
and caching. A decision is sent as the page's Kafka principal with the signed-in person as `approver`, and the
page then waits (briefly) for the gate's audit record of the outcome, which it shows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from opentelemetry.trace import StatusCode

from approval_gate.approvers.auth import Sessions, Throttle, Users, csrf_ok
from approval_gate.approvers.board import Board, time_left
from approval_gate.approvers.kafka_io import DecisionRefused, decision_record
from approval_gate.tracing import PageTracer

LOG = logging.getLogger("approval_gate.approvers")
HERE = Path(__file__).resolve().parent
COOKIE = "__Host-approvers"  # the prefix makes browsers insist on Secure, Path=/ and no Domain
DECISIONS = ("approve", "reject")
# How long a decision's response waits for the gate to audit the outcome before showing "sent".
OUTCOME_WAIT_S = 10.0
MAX_REASON = 2000
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Strict-Transport-Security": "max-age=31536000",
}


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site (Sec-Fetch-Site, else Origin)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is None or origin == f"https://{request.headers.get('host', '')}"


class Backend(Protocol):
    """What the app needs of Kafka: the board (read under its lock), sending a decision, waiting for one."""

    def snapshot(self, read: Callable[[Board], Any]) -> Any: ...
    def send(self, record: Mapping[str, Any], headers: list[tuple[str, bytes]] | None = None) -> None: ...
    def wait_for(self, predicate: Callable[[Board], bool], timeout_s: float) -> bool: ...
    def ready(self) -> bool: ...
    def live(self) -> bool: ...


def create_app(
    backend: Backend,
    users: Users,
    sessions: Sessions,
    *,
    title: str = "Approvals",
    tracer: PageTracer | None = None,
) -> FastAPI:
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    throttle = Throttle()

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.method == "POST" and not same_origin(request):
            # Besides the CSRF token (which the sign-in form cannot have yet): a browser says where a form
            # comes from, and a form from another site never reaches the handlers.
            return Response("cross-site form refused", status_code=403, headers=HEADERS)
        response = await call_next(request)
        for k, v in HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, template, {"title": title, **context}, status_code=status)

    def signed_in(request: Request) -> Any:
        return sessions.read(request.cookies.get(COOKIE))

    def to_login() -> RedirectResponse:
        return RedirectResponse("/login", status_code=303)

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(status_code=200 if backend.live() else 503)

    @app.get("/readyz")
    def readyz() -> Response:
        return Response(status_code=200 if backend.ready() and backend.live() else 503)

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request) -> Response:
        return page(request, "login.html", error=None, name="")

    @app.post("/login", response_class=HTMLResponse)
    def login(request: Request, username: str = Form(""), password: str = Form("")) -> Response:
        name = username.strip().lower()
        if not throttle.allowed(name):
            LOG.warning("sign-in refused: too many failed attempts for one name")
            return page(
                request,
                "login.html",
                429,
                error="Too many failed attempts. Try again in a minute.",
                name=name,
            )
        if not users.verify(name, password):
            throttle.failed(name)
            LOG.warning("failed sign-in (%s)", "known name" if name in users.hashes else "unknown name")
            return page(request, "login.html", 401, error="Wrong name or password.", name=name)
        throttle.succeeded(name)
        LOG.info("%s signed in", name)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE,
            sessions.issue(name),
            max_age=sessions.max_age_s,
            path="/",
            secure=True,
            httponly=True,
            samesite="strict",
        )
        return response

    @app.post("/logout")
    def logout(request: Request, csrf: str = Form("")) -> Response:
        session = signed_in(request)
        if session is not None and not csrf_ok(session, csrf):
            return Response("bad form token", status_code=403)
        if session is not None:
            sessions.revoke(session)  # a copy of the cookie replayed later is refused
            LOG.info("%s signed out", session.user)
        response = to_login()
        response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
        return response

    def index(request: Request, status: int = 200, errors: Mapping[str, str] | None = None) -> Response:
        session = signed_in(request)
        if session is None:
            return to_login()
        now = datetime.now(UTC)
        pending, recent = backend.snapshot(lambda b: (b.waiting(), b.recent()))
        return page(
            request,
            "index.html",
            status,
            user=session.user,
            csrf=session.csrf,
            pending=pending,
            recent=recent,
            left={p.action_id: time_left(p.deadline, now) for p in pending},
            errors=errors or {},
            ready=backend.ready(),
            now=now,
        )

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request) -> Response:
        return index(request)

    @app.post("/actions/{action_id}/decision", response_class=HTMLResponse)
    async def decide(
        request: Request,
        action_id: str,
        decision: str = Form(""),
        reason: str = Form(""),
        csrf: str = Form(""),
    ) -> Response:
        session = signed_in(request)
        if session is None:
            return to_login()
        if not csrf_ok(session, csrf):
            return Response("bad form token: reload the page and try again", status_code=403)
        reason = reason.strip()
        problem = None
        if decision not in DECISIONS:
            problem = f"decision {decision!r}: allowed approve or reject"
        elif decision == "reject" and not reason:
            problem = "A rejection needs a reason."
        elif len(reason) > MAX_REASON:
            problem = f"The reason is {len(reason)} characters; at most {MAX_REASON}."
        elif not backend.snapshot(lambda b: action_id in b.pending):
            problem = "This action is no longer waiting for a decision."
        if problem is not None:
            return index(request, 400 if decision in DECISIONS else 422, {action_id: problem})
        record = decision_record(action_id, decision, session.user, reason or f"approved by {session.user}")
        started = time.monotonic()
        headers, span = None, None
        if tracer is not None:
            # The decision continues the action's trace from its latest audited step (waiting, escalated).
            parent = backend.snapshot(
                lambda b: b.pending[action_id].traceparent if action_id in b.pending else None
            )
            headers, span = tracer.decision(
                parent, {"action.id": action_id, "action.decision": decision, "action.approver": session.user}
            )
        try:
            await asyncio.to_thread(backend.send, record, headers)
        except (DecisionRefused, TimeoutError) as exc:
            if span is not None:
                span.set_status(StatusCode.ERROR, str(exc))
                span.end()
            return index(request, 502, {action_id: str(exc)})
        if span is not None:
            span.end()
        LOG.info("%s sent %s on %s", session.user, decision, action_id)
        await asyncio.to_thread(
            backend.wait_for,
            lambda b: action_id in b.outcomes or action_id in b.ignored,
            OUTCOME_WAIT_S,
        )
        response = RedirectResponse(f"/actions/{action_id}", status_code=303)
        response.headers["Server-Timing"] = f"gate;dur={(time.monotonic() - started) * 1000:.1f}"
        return response

    @app.get("/actions/{action_id}", response_class=HTMLResponse)
    def action(request: Request, action_id: str) -> Response:
        session = signed_in(request)
        if session is None:
            return to_login()
        outcome, ignored, pending = backend.snapshot(
            lambda b: (b.outcome(action_id), b.ignored.get(action_id), b.pending.get(action_id))
        )
        return page(
            request,
            "action.html",
            user=session.user,
            csrf=session.csrf,
            action_id=action_id,
            outcome=outcome,
            ignored=ignored,
            pending=pending,
        )

    return app
