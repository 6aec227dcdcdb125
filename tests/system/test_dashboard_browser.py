"""The review dashboard as a person uses it, in a real browser (headless
Chromium through chromedriver) against the sandbox: ask for a sign-in link,
read it from the mail our Postfix delivered (DKIM-signed), sign in, find two
held drafts in the queue, approve one with an edited subject (it reaches the
capture server once, with the edit, DKIM-signed), reject the other with a
reason (never delivered), switch the agent's HITL off (its next send goes
out directly), turn on a scan of its outgoing mail in the protection form
(the API reads it back), and sign out (the cookie is worthless from then on).

With E2A_SCREENSHOTS=<dir> (``make screenshots``), the queue and the edit
form are saved there as PNGs on the way."""

from __future__ import annotations

import os
import re
import time
import uuid
from pathlib import Path

import dkim
import pytest
import requests
from hitlowner import FRIEND, new_owner, send_held, status_of, wait_held
from sandbox_harness import RunningSandbox, sandbox_resolver
from webdriver import Browser, headless_chromium

from e2a.core.db import single_connection
from sandbox.capture import Captured

pytestmark = pytest.mark.system

LINK = re.compile(r"(https?://\S+/dashboard/signin\?token=[A-Za-z0-9_-]+)")


def to_friend(sandbox: RunningSandbox, subject: str) -> list[Captured]:
    return [c for c in sandbox.capture.messages()
            if c.rcpt_tos == [FRIEND] and str(c.message["Subject"]) == subject]


def screenshot(browser: Browser, name: str) -> None:
    where = os.environ.get("E2A_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        (Path(where) / name).write_bytes(browser.screenshot())


def test_review_in_the_dashboard(sandbox: RunningSandbox) -> None:
    owner = new_owner(sandbox)
    tag = uuid.uuid4().hex[:8]
    first, second = f"Quarterly numbers {tag}", f"Contract renewal {tag}"
    first_id = send_held(sandbox, owner, first, "Dear friend,\nthe numbers are attached.")
    second_id = send_held(sandbox, owner, second, "Dear friend,\nwe renew on Monday.")
    wait_held(sandbox, first_id)
    wait_held(sandbox, second_id)

    with headless_chromium() as browser:
        browser.resize(1280, 900)
        browser.open(f"{sandbox.api_url}/dashboard/login")
        browser.type("#email", owner.email)
        browser.click("#send-link")
        browser.wait_until_text("#heading", "Check your mail")
        mail = sandbox.capture.wait_for(
            lambda c: c.rcpt_tos == [owner.email]
            and "sign-in" in str(c.message["Subject"]), timeout=30)
        with sandbox_resolver(sandbox):
            assert dkim.verify(mail.data)
        [link] = LINK.findall(mail.message.get_content())

        browser.open(link)
        browser.click("#signin")
        browser.wait_until_text("#heading", "Pending review")
        assert browser.text("#who") == owner.email
        queue = browser.text("#pending")
        assert first in queue and second in queue
        # The one script (times in the viewer's zone) ran: the CSP allows it.
        assert not browser.text("#pending time").endswith("UTC")
        screenshot(browser, "dashboard-pending.png")
        browser.resize(390, 844)  # a phone
        screenshot(browser, "dashboard-pending-phone.png")
        browser.resize(1280, 900)

        # Edit the first one's subject, approve it.
        browser.click(f'tr[data-id="{first_id}"] a.open')
        browser.wait_until_text("#heading", first)
        assert browser.value("#subject") == first
        browser.resize(1280, 1300)
        screenshot(browser, "dashboard-edit.png")
        edited = f"Q3 numbers, final {tag}"
        browser.type("#subject", edited)
        browser.click("#approve")
        assert browser.wait_for_text("#notice").startswith("Approved")

        arrived = sandbox.capture.wait_for(
            lambda c: c.rcpt_tos == [FRIEND] and str(c.message["Subject"]) == edited,
            timeout=30)
        with sandbox_resolver(sandbox):
            assert dkim.verify(arrived.data)
        assert arrived.message.get_body(("plain",)).get_content().splitlines() == [
            "Dear friend,", "the numbers are attached."]
        assert status_of(sandbox, first_id) == "sent"

        # Reject the second one with a reason.
        browser.click(f'tr[data-id="{second_id}"] a.open')
        browser.wait_until_text("#heading", second)
        browser.type("#reason-text", "Not before legal has read it")
        browser.click("#reject")
        assert browser.wait_for_text("#notice").startswith("Rejected")
        assert browser.find_all("#pending") == []  # the queue is empty now
        assert status_of(sandbox, second_id) == "rejected"

        # The agent's HITL off: its next send leaves at once.
        browser.open(f"{sandbox.api_url}/dashboard/agents")
        browser.click(f'#agents a[href$="{agent_id(sandbox, owner.agent)}"]')
        browser.wait_until_text("#heading", owner.agent)
        browser.click("#hitl_enabled")
        browser.click("#save-hitl")
        assert browser.wait_for_text("#notice") == "Saved."
        direct = f"Sent directly {tag}"
        response = requests.post(f"{sandbox.api_url}/api/v1/send", timeout=30,
                                 headers={"Authorization": f"Bearer {owner.api_key}"},
                                 json={"from": owner.agent, "to": [FRIEND], "subject": direct,
                                       "body": "No review this time."})
        assert response.status_code == 200, response.text
        sandbox.capture.wait_for(
            lambda c: c.rcpt_tos == [FRIEND] and str(c.message["Subject"]) == direct,
            timeout=30)

        # Protection: a scan of outgoing mail, saved through the API's own check.
        page = f"{sandbox.api_url}/dashboard/agents/{agent_id(sandbox, owner.agent)}"
        browser.open(page)
        browser.click('#outbound_sensitivity option[value="high"]')
        browser.type("#inbound_allowlist", FRIEND)
        browser.click("#save-protection")
        assert browser.wait_for_text("#notice") == "Saved."
        view = requests.get(f"{sandbox.api_url}/v1/agents/{owner.agent}/protection",
                            headers={"Authorization": f"Bearer {owner.api_key}"},
                            timeout=15).json()
        assert view["outbound"]["scan"] == {"sensitivity": "high"}
        assert view["inbound"]["gate"]["allowlist"] == [FRIEND]
        browser.open(f"{sandbox.api_url}/dashboard/agents")
        assert "scan: high out" in browser.text("#agents")

        # Sign out: the cookie the browser had no longer opens anything.
        session = browser.cookie("e2a_session")
        assert session["httpOnly"] is True and session["sameSite"] == "Strict"
        browser.click("#signout")
        browser.wait_until_text("#heading", "Sign in to e2a")
        assert browser.text("#notice") == "You are signed out."
    replay = requests.get(f"{sandbox.api_url}/dashboard/pending", timeout=15,
                          cookies={"e2a_session": session["value"]}, allow_redirects=False)
    assert replay.status_code == 303
    assert replay.headers["Location"] == "/dashboard/login?next=%2Fdashboard%2Fpending"

    # Each approved or rejected message went out once, or never.
    time.sleep(2)
    assert len(to_friend(sandbox, edited)) == 1
    assert to_friend(sandbox, first) == []
    assert to_friend(sandbox, second) == []


def agent_id(sandbox: RunningSandbox, email: str) -> str:
    with single_connection(sandbox.box.config()) as conn:
        return conn.execute("SELECT id FROM agents WHERE email = %s", (email,)).fetchone()["id"]
