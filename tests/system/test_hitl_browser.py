"""The magic link as a person uses it, in a real browser (headless Chromium
through chromedriver) against the sandbox: the owner's notification carries
the approve link; the page shows the held draft; pressing its one button
sends the message, which arrives at the capture server (the internet)."""

from __future__ import annotations

import base64
import uuid

import dkim
import pytest
import requests
from hitlowner import FRIEND, new_owner, notification_of, status_of, wait_held
from sandbox_harness import RunningSandbox, sandbox_resolver
from webdriver import headless_chromium

from sandbox.capture import Captured

pytestmark = pytest.mark.system

PDF = b"%PDF-1.7\n" + bytes(range(256)) * 8


def released(sandbox: RunningSandbox, subject: str) -> list[Captured]:
    return [c for c in sandbox.capture.messages()
            if c.rcpt_tos == [FRIEND] and str(c.message["Subject"]) == subject]


def test_approving_in_a_browser_sends_the_held_message(sandbox: RunningSandbox) -> None:
    owner = new_owner(sandbox)
    tag = uuid.uuid4().hex[:8]
    subject = f"Proposal {tag} <draft>"
    body = f"Dear friend,\nthe proposal {tag} is attached."
    response = requests.post(
        f"{sandbox.api_url}/api/v1/send", timeout=30,
        headers={"Authorization": f"Bearer {owner.api_key}"},
        json={"from": owner.agent, "to": [FRIEND], "subject": subject, "body": body,
              "attachments": [{"filename": f"proposal-{tag}.pdf",
                               "content_type": "application/pdf",
                               "data": base64.b64encode(PDF).decode()}]})
    assert response.status_code == 202, response.text
    message_id = response.json()["message_id"]
    wait_held(sandbox, message_id)
    text = notification_of(sandbox, owner, subject).message.get_content()
    [approve_url] = [line for line in text.splitlines()
                     if line.startswith(f"{sandbox.api_url}/api/v1/approve?token=")]

    with headless_chromium() as browser:
        browser.open(approve_url)
        assert browser.wait_for_text("#question") == "Approve and send this email?"
        assert browser.text("#from") == owner.agent
        assert browser.text("#to") == FRIEND
        assert browser.text("#subject") == subject
        assert browser.text("#body") == body
        assert f"proposal-{tag}.pdf" in browser.text("#attachments")
        assert len(browser.find_all("button")) == 1
        # Showing the page sent nothing and decided nothing.
        assert status_of(sandbox, message_id) == "pending_approval"
        assert released(sandbox, subject) == []

        browser.click("#confirm")

        assert browser.wait_for_text("#outcome") == "Approved and sent"
        assert browser.current_url().endswith("/api/v1/approve")  # the token left the URL

    arrived = sandbox.capture.wait_for(
        lambda c: c.rcpt_tos == [FRIEND] and str(c.message["Subject"]) == subject, timeout=30)
    message = arrived.message
    assert message.get_body(("plain",)).get_content().splitlines() == body.splitlines()
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == f"proposal-{tag}.pdf"
    assert attachment.get_content() == PDF
    with sandbox_resolver(sandbox):
        assert dkim.verify(arrived.data)
    assert status_of(sandbox, message_id) == "sent"
    assert len(released(sandbox, subject)) == 1
