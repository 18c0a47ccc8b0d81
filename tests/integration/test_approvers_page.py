"""The approvers' page in a real headless browser (Debian's Chromium through its chromedriver), on the real
broker, the real gate process and the real page process over HTTPS.

Agents propose high-risk actions as their own principals; the gate holds them for a person. In the browser:
a wrong password is refused; approver-1 signs in (phone-sized screen), sees the pending actions with their
context and time left, approves one; a rejection without a reason is refused; approver-2 rejects one with a
reason; the rest are decided in turn. Then, read `read_committed` as the catalog's auditor: each action has
exactly one terminal audit record, the one decided, by the person who decided it, with their reason, and the
decisions topic holds each decision as its contract says. A form without the session's CSRF token, one from
another site and a request without a session are refused. Screenshots go to test-artifacts/approvers/ (paths printed).

Prints: decision latency, from the click on the page to the outcome (the gate's terminal audit record) shown
in the browser, p50/p99 over the decisions made.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import statistics
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from headwater.action_gate import action_gate, approvers_principal
from headwater.config import CATALOG_DIR
from headwater.local.approval_gate import LocalApprovalGate
from headwater.local.approvers import LocalApproversPage
from headwater.local.process import running_processes, stderr_progress

if TYPE_CHECKING:
    from conftest import Provisioned

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "approvers"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PHONE = (390, 844)
DESKTOP = (1280, 900)
EXTRA_DECISIONS = 8  # besides the two the test looks at closely: enough decisions for a p50/p99


@dataclass(frozen=True)
class Proposal:
    action_id: str
    agent: str
    body: dict[str, Any]


def proposals(run: str) -> list[Proposal]:
    """High-risk actions only: an account closing (always a person) and credit limits above the rule's."""
    out = [
        Proposal(
            f"{run}-close",
            "support-agent",
            {
                "type": "account_close",
                "target": "customer",
                "target_id": "cust-4711",
                "scope": "account",
                "summary": "Close the account: the customer asked twice in chat",
                "context": {
                    "signals": [{"event_id": "chat-981", "kind": "close_request"}],
                    "features": {"requests_7d": 2, "open_orders": 0},
                },
            },
        ),
        Proposal(
            f"{run}-limit",
            "billing-agent",
            {
                "type": "credit_limit_change",
                "target": "customer",
                "target_id": "cust-0815",
                "scope": "single-account",
                "amount": 5000,
                "currency": "EUR",
                "summary": "Raise the credit limit to 5000 after three on-time payments",
                "context": {"signals": [{"event_id": "pay-17"}], "features": {"on_time_payments": 3}},
            },
        ),
    ]
    for i in range(EXTRA_DECISIONS):
        out.append(
            Proposal(
                f"{run}-extra-{i}",
                "support-agent",
                {
                    "type": "account_close",
                    "target": "customer",
                    "scope": "account",
                    "summary": f"Close account {i}",
                },
            )
        )
    for p in out:
        p.body.update(action_id=p.action_id, proposed_at="2026-11-29T08:00:00Z")
    return out


def _spki_pin(cert_file: Path) -> str:
    """The page certificate's public key hash, which Chromium trusts for this run only (the local CA is not in
    its trust store; certificate checking stays on for everything else)."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    def start(pin: str) -> WebDriver:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in (
            "--headless=new",
            "--no-sandbox",  # the sandbox needs user namespaces, which a container as root may not have
            "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'chromium'}",
            f"--ignore-certificate-errors-spki-list={pin}",
            f"--window-size={PHONE[0]},{PHONE[1]}",
        ):
            options.add_argument(arg)
        return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))

    drivers: list[WebDriver] = []

    def make(pin: str) -> WebDriver:
        drivers.append(start(pin))
        return drivers[-1]

    yield make
    for d in drivers:
        d.quit()


def shot(driver: WebDriver, name: str, size: tuple[int, int], *, whole: bool = False) -> Path:
    """A screenshot of the screen (`whole`: of the whole page) at `size`."""
    driver.set_window_size(*size)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    if whole:
        height = int(driver.execute_script("return document.documentElement.scrollHeight"))
        driver.set_window_size(size[0], max(size[1], min(height + 140, 4000)))
    driver.save_screenshot(str(path))
    driver.set_window_size(*size)
    print(f"screenshot: {path}")
    return path


def sign_in(driver: WebDriver, url: str, name: str, password: str) -> None:
    driver.get(url + "login")
    driver.find_element(By.ID, "username").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "sign-in").click()


def visible(driver: WebDriver, by: str, what: str, timeout: float = 10) -> Any:
    """The element once the page that has it is loaded (a form's response arrives after the click returns)."""
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: d.find_element(by, what))


def card(driver: WebDriver, action_id: str) -> Any:
    return driver.find_element(By.ID, f"action-{action_id}")


def wait_for_cards(driver: WebDriver, url: str, ids: list[str], timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while True:
        driver.get(url)
        shown = {
            e.get_attribute("data-action-id") for e in driver.find_elements(By.CSS_SELECTOR, "article.card")
        }
        if set(ids) <= shown:
            return
        assert time.monotonic() < end, f"not shown as pending: {sorted(set(ids) - shown)}"
        time.sleep(0.5)


def decide(driver: WebDriver, action_id: str, decision: str, reason: str) -> tuple[str, float]:
    """Fill the reason, click the button; wait for the outcome page to show a terminal step."""
    form = card(driver, action_id)
    text = form.find_element(By.TAG_NAME, "textarea")
    text.clear()
    text.send_keys(reason)
    started = time.monotonic()
    form.find_element(By.CSS_SELECTOR, f"button[value='{decision}']").click()

    def terminal(d: WebDriver) -> str | bool:
        try:
            step = str(d.find_element(By.ID, "outcome-step").text).strip().lower()
        except NoSuchElementException:
            return False
        return step if step in ("approved", "rejected", "expired", "not applied") else False

    step = WebDriverWait(driver, 30, poll_frequency=0.02).until(terminal)
    return str(step), time.monotonic() - started


def audit_and_decisions(
    provisioned: Provisioned, ids: set[str], timeout: float = 30
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]:
    """Every audit record and every decision on `ids`, read from the beginning as the catalog's auditor
    (read_committed), once each id has a terminal audit record and a decision, plus a second to catch any
    record after that (a second terminal one would be a defect)."""
    gate = action_gate(provisioned.platform)
    auditor = gate.auditors[0]
    audit: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    decisions: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    readers = []
    for topic, into, group in (
        (gate.audit_topic, audit, auditor),
        (gate.decisions_topic, decisions, f"{auditor}-decisions"),
    ):
        conf = {"group.id": group, "isolation.level": "read_committed", "enable.auto.commit": False}
        c = Consumer(provisioned.config(auditor, **conf))
        partitions = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        readers.append((c, into))

    def drain(wait: float) -> None:
        for c, into in readers:
            for msg in c.consume(500, wait):
                error = msg.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, error
                    continue
                record = json.loads(msg.value() or b"{}")
                if record.get("action_id") in ids:
                    into[record["action_id"]].append(record)

    try:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            drain(0.2)
            if all(any(r.get("terminal") for r in audit[i]) for i in ids) and all(decisions[i] for i in ids):
                time.sleep(1.0)
                drain(0.5)
                break
    finally:
        for c, _ in readers:
            c.close()
    return audit, decisions


def _post(url: str, form: dict[str, str], cookie: str | None, ca: Path, **headers: str) -> int:
    return _send(url, form, cookie, ca, **headers)[0]


def _send(
    url: str, form: dict[str, str] | None, cookie: str | None, ca: Path, **headers: str
) -> tuple[int, str]:
    """A POST of `form` (a GET without one), redirects not followed: (status, Location)."""
    request = urllib.request.Request(
        url,
        data=urllib.parse.urlencode(form).encode() if form is not None else None,
        headers={**({"Cookie": cookie} if cookie else {}), **headers},
        method="POST" if form is not None else "GET",
    )

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(
        NoRedirect, urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=str(ca)))
    )
    try:
        with opener.open(request, timeout=10) as r:
            return int(r.status), str(r.headers.get("Location", ""))
    except urllib.error.HTTPError as exc:
        return int(exc.code), str(exc.headers.get("Location", ""))


def test_approvers_page_in_a_headless_browser(provisioned: Provisioned, tmp_path: Path, browser: Any) -> None:
    platform, kafka = provisioned.platform, provisioned.kafka
    gate_spec = action_gate(platform)
    run = f"web-{uuid.uuid4().hex[:8]}"
    planned = proposals(run)
    ids = [p.action_id for p in planned]
    gate = LocalApprovalGate(platform, kafka, tmp_path, progress=stderr_progress("approval-gate"))
    page = LocalApproversPage(platform, kafka, tmp_path, progress=stderr_progress("approvers-page"))
    try:
        gate.start()
        page.start()
        assert page.credentials_file.stat().st_mode & 0o777 == 0o600
        (first, second) = page.credentials()
        producers = {a.principal: Producer(provisioned.config(a.principal)) for a in gate_spec.agents}
        topic = {a.principal: a.proposed_topic for a in gate_spec.agents}
        for p in planned:
            producers[p.agent].produce(
                topic[p.agent], key=p.action_id.encode(), value=json.dumps(p.body).encode()
            )
        for producer in producers.values():
            assert producer.flush(30) == 0

        driver = browser(_spki_pin(page.folder / "page.crt"))
        url = page.url

        # Not signed in: the page sends people to the sign-in form. A wrong password is refused, plainly.
        driver.get(url)
        assert driver.current_url == url + "login"
        shot(driver, "01-sign-in-phone", PHONE)
        sign_in(driver, url, first.name, first.password + "x")
        assert visible(driver, By.ID, "error").text == "Wrong name or password."
        assert driver.get_cookie("__Host-approvers") is None
        shot(driver, "02-wrong-password-phone", PHONE)

        sign_in(driver, url, first.name, first.password)
        assert visible(driver, By.ID, "user").text == first.name
        cookie = driver.get_cookie("__Host-approvers")
        assert cookie is not None
        assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"

        wait_for_cards(driver, url, ids)
        shot(driver, "03-pending-phone", PHONE)
        close_card = card(driver, f"{run}-close")
        assert "Close the account: the customer asked twice in chat" in close_card.text
        assert "left" in close_card.find_element(By.CLASS_NAME, "left").text
        assert "always decided by a human" in close_card.text
        limit_card = card(driver, f"{run}-limit")
        assert "amount 5000 is above" in limit_card.text
        for d in limit_card.find_elements(By.TAG_NAME, "details"):  # the proposal and what led to it
            if d.get_attribute("open") is None:
                d.find_element(By.TAG_NAME, "summary").click()
        assert "on_time_payments" in limit_card.text and "pay-17" in limit_card.text
        driver.execute_script("arguments[0].scrollIntoView()", limit_card)
        shot(driver, "04-context-phone", PHONE)
        # The layout holds on a phone: nothing wider than the screen.
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page is {overflow} px wider than a {PHONE[0]} px screen"

        # A form without the session's CSRF token, and one without a session, change nothing.
        session_cookie = f"__Host-approvers={cookie['value']}"
        form = {"decision": "approve", "reason": "forged"}
        assert (
            _post(
                f"{url}actions/{run}-close/decision", {**form, "csrf": "forged"}, session_cookie, page.ca_file
            )
            == 403
        )
        assert _post(f"{url}actions/{run}-close/decision", form, None, page.ca_file) == 303
        # A form from another site, even with the right token and the session, is refused before the handlers.
        token = driver.find_element(By.NAME, "csrf").get_attribute("value")
        assert token
        other_site = {"Origin": "https://elsewhere.example", "Sec-Fetch-Site": "cross-site"}
        target = f"{url}actions/{run}-close/decision"
        assert _post(target, {**form, "csrf": token}, session_cookie, page.ca_file, **other_site) == 403

        latencies = []
        step, took = decide(driver, f"{run}-close", "approve", "customer confirmed by phone")
        latencies.append(took)
        assert step == "approved"
        assert driver.find_element(By.ID, "outcome-actor").text == first.name
        assert driver.find_element(By.ID, "outcome-reason").text == "customer confirmed by phone"
        shot(driver, "05-approved-phone", PHONE)

        # A rejection needs a reason: refused on the page, nothing sent.
        driver.get(url)
        limit_card = card(driver, f"{run}-limit")
        limit_card.find_element(By.CSS_SELECTOR, "button[value='reject']").click()
        error = visible(driver, By.CSS_SELECTOR, f"#action-{run}-limit .error")
        assert error.text == "A rejection needs a reason."

        # The other person rejects it, with a reason. Before signing out, the first person's session works.
        assert _send(url, None, session_cookie, page.ca_file) == (200, "")
        limit_token = card(driver, f"{run}-limit").find_element(By.NAME, "csrf").get_attribute("value")
        driver.find_element(By.ID, "logout").click()
        WebDriverWait(driver, 10).until(lambda d: d.current_url == url + "login")
        assert driver.get_cookie("__Host-approvers") is None
        # A copy of the signed-out cookie, replayed: refused like no session (the audit check below finds no
        # decision of the first person on this action).
        assert _send(url, None, session_cookie, page.ca_file) == (303, "/login")
        replayed = {"decision": "approve", "reason": "replayed", "csrf": str(limit_token)}
        target = f"{url}actions/{run}-limit/decision"
        assert _send(target, replayed, session_cookie, page.ca_file) == (303, "/login")
        sign_in(driver, url, second.name, second.password)
        assert visible(driver, By.ID, "user").text == second.name
        driver.set_window_size(*DESKTOP)
        wait_for_cards(driver, url, [f"{run}-limit"])
        shot(driver, "06-pending-desktop", DESKTOP, whole=True)
        step, took = decide(driver, f"{run}-limit", "reject", "three payments are too few for 5000")
        latencies.append(took)
        assert step == "rejected"
        assert driver.find_element(By.ID, "outcome-actor").text == second.name
        shot(driver, "07-rejected-desktop", DESKTOP)

        for i in range(EXTRA_DECISIONS):
            driver.get(url)
            verb = "approve" if i % 2 == 0 else "reject"
            step, took = decide(driver, f"{run}-extra-{i}", verb, f"batch decision {i}")
            assert step == ("approved" if verb == "approve" else "rejected")
            latencies.append(took)

        driver.get(url)
        shown = {
            e.get_attribute("data-action-id") for e in driver.find_elements(By.CSS_SELECTOR, "article.card")
        }
        assert not shown & set(ids), "decided actions still shown as pending"

        # On the audit topic: exactly one terminal record each, by the person, with their reason.
        audit, decisions = audit_and_decisions(provisioned, set(ids))
        contract = json.loads((CATALOG_DIR / "schemas" / "actions.decisions.v1.json").read_text())
        expected = {
            f"{run}-close": ("approved", first.name, "customer confirmed by phone"),
            f"{run}-limit": ("rejected", second.name, "three payments are too few for 5000"),
        }
        for i in range(EXTRA_DECISIONS):
            expected[f"{run}-extra-{i}"] = (
                "approved" if i % 2 == 0 else "rejected",
                second.name,
                f"batch decision {i}",
            )
        for action_id, (outcome, person, reason) in expected.items():
            terminal = [r for r in audit[action_id] if r.get("terminal")]
            assert len(terminal) == 1, (action_id, audit[action_id])
            assert terminal[0]["step"] == outcome
            assert terminal[0]["actor"] == f"approver:{person}"
            assert terminal[0]["reason"] == reason
            assert [r["step"] for r in audit[action_id] if r["step"] == "decided"] == ["decided"]
            assert len(decisions[action_id]) == 1, decisions[action_id]
            record = decisions[action_id][0]
            jsonschema.validate(record, contract, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
            assert record["approver"] == person and record["reason"] == reason
            assert record["decision"] == ("approve" if outcome == "approved" else "reject")
        assert approvers_principal(platform) in gate_spec.approvers

        ordered = sorted(latencies)
        p50 = statistics.median(ordered) * 1000
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1000
        print(
            f"\napprovers' page: {len(latencies)} decisions, click -> outcome shown (the gate's terminal "
            f"audit record) p50 {p50:.0f} ms, p99 {p99:.0f} ms (max of {len(latencies)})"
        )
        page_log = page.log_file.read_text()
        assert first.password not in page_log and second.password not in page_log
    finally:
        page.stop()
        gate.stop()
    assert not [p for p in running_processes() if p.name in ("approvers-page", gate_spec.principal)]
