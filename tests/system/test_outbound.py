"""Outbound mail end to end through the real Postfix: the API (or a plain
SMTP client) submits, Postfix hands the message to our content filter, the
filter signs and reinjects it, and it reaches the capture server (the
internet) DKIM-signed with a VERP return path, or another agent on this
host through the milter. Reports: Postfix's bounce daemon writes a DSN to
the return path for each recipient (a success when the capture server took
it, a failure when it refused bounce-me@...), and the milter turns it into
the recipient's fate and its event."""

from __future__ import annotations

import re
import secrets
import uuid
from typing import Any

import dkim
import pytest
from filtersupport import signature_tags
from sandbox_harness import RunningSandbox, sandbox_resolver, smtp_send, wait_until

from e2a.core.db import single_connection
from e2a.core.mta import verp
from sandbox.capture import Captured

pytestmark = pytest.mark.system


def row(sandbox: RunningSandbox, message_id: str) -> dict[str, Any] | None:
    with single_connection(sandbox.box.config()) as conn:
        return conn.execute("SELECT * FROM messages WHERE id = %s", (message_id,)).fetchone()


def send(sandbox: RunningSandbox, **body: Any) -> str:
    response = sandbox.api("POST", "/api/v1/send",
                           json={"from": sandbox.agent_email, "body": "Hello from an agent.",
                                 **body})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "sent"
    return response.json()["message_id"]


def captured_with(sandbox: RunningSandbox, subject: str) -> Captured:
    return sandbox.capture.wait_for(lambda c: subject.encode() in c.data, timeout=30)


def received_ids(data: bytes) -> list[str]:
    """Postfix's queue ids in the Received lines of a delivered message."""
    head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
    # ESMTPA: the reinjection service knows our filter by its XCLIENT login.
    return re.findall(r"with E?SMTPA? id ([0-9A-Z]+)", head.replace("\r\n", ""))


def test_api_send_leaves_signed_with_its_return_path_and_is_recorded(sandbox):
    subject = f"outbound {uuid.uuid4().hex}"
    message_id = send(sandbox, to=["friend@elsewhere.test"], subject=subject)
    captured = captured_with(sandbox, subject)
    domain = sandbox.agent_email.rpartition("@")[2]
    assert captured.mail_from == verp.return_path(message_id, domain,
                                                  verp.key(sandbox.box.config()))
    assert captured.rcpt_tos == ["friend@elsewhere.test"]
    assert captured.data.startswith(b"Received: ")  # Postfix's own, on top of ours
    tags = signature_tags(captured.data)
    assert (tags["d"], tags["s"], tags["c"]) == (domain, "e2a", "relaxed/relaxed")
    with sandbox_resolver(sandbox):
        assert dkim.verify(captured.data)
    # Postfix's success report to the return path: the capture server took it.
    stored = wait_until(lambda: (r := row(sandbox, message_id))
                        and r["delivery_status"] == "delivered" and r,
                        what="the message recorded as delivered")
    assert stored["delivery_error"] == "friend@elsewhere.test: delivered: 250 2.0.0 captured"
    # The queue id the filter recorded is the one the message left Postfix under.
    assert stored["provider_message_id"]
    assert received_ids(captured.data)[0] == stored["provider_message_id"]


def test_plain_smtp_from_an_agent_is_recorded_signed_and_given_a_return_path(sandbox):
    subject = f"sendmail-style {uuid.uuid4().hex}"
    agent = sandbox.agent_email
    data = (f"From: Hello <{agent}>\r\nTo: friend@elsewhere.test\r\nSubject: {subject}\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            "Sent without the API.\r\n").encode()
    reply = smtp_send(sandbox.box.ports.submit, agent, "friend@elsewhere.test", data)
    assert reply.code == 250, reply
    captured = captured_with(sandbox, subject)
    message_id = verp.parse(captured.mail_from, verp.key(sandbox.box.config()))
    assert message_id
    with sandbox_resolver(sandbox):
        assert dkim.verify(captured.data)
    stored = wait_until(lambda: (r := row(sandbox, message_id))
                        and r["delivery_status"] == "delivered" and r,
                        what="the filter's row recorded as delivered")
    assert (stored["type"], stored["direction"], stored["sender"]) == ("smtp", "outbound", agent)
    assert stored["subject"] == subject


def test_a_refused_recipient_bounces_back_and_marks_the_message(sandbox):
    subject = f"will bounce {uuid.uuid4().hex}"
    message_id = send(sandbox, to=["bounce-me@elsewhere.test"], subject=subject)
    stored = wait_until(lambda: (r := row(sandbox, message_id))
                        and r["delivery_status"] == "bounced" and r,
                        timeout=30, what="the message marked bounced")
    assert "bounce-me@elsewhere.test" in stored["delivery_error"]
    assert "550 5.1.1" in stored["delivery_error"]
    events = sandbox.api("GET", "/api/v1/events", params={"type": "email.bounced"})
    assert events.status_code == 200, events.text
    [event] = [e for e in events.json()["events"] if e["message_id"] == message_id]
    assert event["data"]["delivery_error"] == stored["delivery_error"]
    # The milter consumed the DSN: it never went out to the internet.
    return_path = verp.return_path(message_id, sandbox.agent_email.rpartition("@")[2],
                                   verp.key(sandbox.box.config()))
    assert not [c for c in sandbox.capture.messages() if return_path in c.rcpt_tos]
    sandbox.postfix.wait_for_log(r"milter-discard", timeout=10)


def test_agent_to_agent_is_verified_agent_mail_in_the_senders_conversation(sandbox):
    created = sandbox.api("POST", "/api/v1/agents",
                          json={"slug": f"peer-{secrets.token_hex(4)}", "agent_mode": "local"})
    assert created.status_code in (200, 201), created.text
    peer = created.json()["email"]
    subject = f"agent to agent {uuid.uuid4().hex}"
    conversation = f"conv_{uuid.uuid4().hex}"
    message_id = send(sandbox, to=[peer], subject=subject, conversation_id=conversation)
    [listed] = wait_until(lambda: [m for m in sandbox.messages(peer) if m["subject"] == subject],
                          timeout=30, what="the message in the other agent's inbox")
    assert listed["conversation_id"] == conversation
    with single_connection(sandbox.box.config()) as conn:
        stored = conn.execute("SELECT * FROM messages WHERE id = %s",
                              (listed["message_id"],)).fetchone()
    assert stored["entity_type"] == "agent"
    assert (stored["spf"], stored["dkim"], stored["dmarc"]) == ("pass", "pass", "pass")
    assert stored["verified"] is True
    assert stored["auth_headers"]["X-E2A-Auth-Entity-Type"] == "agent"
    assert stored["auth_headers"]["X-E2A-Auth-Verified"] == "true"
    assert stored["envelope_sender"] == verp.return_path(
        message_id, sandbox.agent_email.rpartition("@")[2], verp.key(sandbox.box.config()))
    # Delivered here, so it did not go out as well.
    assert not [c for c in sandbox.capture.messages() if subject.encode() in c.data]
    sent = wait_until(lambda: (r := row(sandbox, message_id))
                      and r["delivery_status"] == "sent" and r,
                      what="the sender's copy recorded as sent")
    assert sent["provider_message_id"]
