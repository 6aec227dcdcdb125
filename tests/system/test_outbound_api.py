"""The sending API end to end through the real Postfix: send, reply,
forward and the test mail go through the submit service, the content filter
and the reinjection service to the capture server (the internet), or back
into the agent's inbox. What arrives: envelope (VERP return path, Bcc as a
recipient only), headers (From with the agent's name, Message-ID on its
domain, threading, conversation id), alternatives and attachments intact, a
DKIM signature that verifies against the sandbox's DNS. What must not
arrive: a header-injection attempt, a replayed idempotent request."""

from __future__ import annotations

import base64
import re
import uuid
from typing import Any
from urllib.parse import quote

import dkim
import pytest
from sandbox_harness import RunningSandbox, compose, sandbox_resolver, smtp_send, wait_until

from e2a.cli.sandbox.capture import Captured
from e2a.core import verp
from e2a.core.db import single_connection

pytestmark = pytest.mark.system

ELSEWHERE = "elsewhere.test"  # not ours: Postfix relays it to the capture server
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40


def marker() -> str:
    return uuid.uuid4().hex


def post(sandbox: RunningSandbox, path: str, body: dict[str, Any] | None = None,
         **headers: str) -> Any:
    return sandbox.api("POST", path, json=body, headers=headers)


def sent(response: Any) -> str:
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "sent"
    return response.json()["message_id"]


def captured(sandbox: RunningSandbox, text: str, timeout: float = 30) -> Captured:
    return sandbox.capture.wait_for(lambda c: text.encode() in c.data, timeout=timeout)


def captured_count(sandbox: RunningSandbox, text: str) -> int:
    return sum(text.encode() in c.data for c in sandbox.capture.messages())


def settle(sandbox: RunningSandbox) -> None:
    """Send a message and wait for it at the capture server: whatever was
    submitted before it has had its chance to arrive too."""
    tag = f"sentinel {marker()}"
    sent(post(sandbox, "/api/v1/send", {"from": sandbox.agent_email,
                                        "to": [f"sentinel@{ELSEWHERE}"], "subject": tag,
                                        "body": "sentinel"}))
    captured(sandbox, tag)


def agent_domain(sandbox: RunningSandbox) -> str:
    return sandbox.agent_email.rpartition("@")[2]


def verifies(sandbox: RunningSandbox, data: bytes) -> bool:
    with sandbox_resolver(sandbox):
        return dkim.verify(data)


def test_send_arrives_as_composed_signed_with_bcc_in_the_envelope_only(sandbox):
    subject = f"composed {marker()}"
    response = post(sandbox, "/api/v1/send", {
        "from": sandbox.agent_email, "to": [f"Ann <ann@{ELSEWHERE}>", f"bob@{ELSEWHERE}"],
        "cc": [f"carol@{ELSEWHERE}"], "bcc": [f"secret@{ELSEWHERE}"],
        "subject": subject, "body": "Plain words.", "html_body": "<p>Rich <b>words</b>.</p>",
        "attachments": [{"filename": "report.pdf", "content_type": "application/pdf",
                         "data": base64.b64encode(PDF).decode()}]})
    message_id = sent(response)
    got = captured(sandbox, subject)
    domain = agent_domain(sandbox)
    assert got.mail_from == verp.return_path(message_id, domain, verp.key(sandbox.box.config()))
    assert sorted(got.rcpt_tos) == sorted([f"ann@{ELSEWHERE}", f"bob@{ELSEWHERE}",
                                           f"carol@{ELSEWHERE}", f"secret@{ELSEWHERE}"])
    msg = got.message
    name = sandbox.api("GET", sandbox.agent_path()).json()["name"]
    assert msg["From"] == f"{name} <{sandbox.agent_email}>"
    assert msg["To"] == f"Ann <ann@{ELSEWHERE}>, bob@{ELSEWHERE}"
    assert msg["Cc"] == f"carol@{ELSEWHERE}"
    assert "Bcc" not in msg and b"secret@" not in got.data
    assert msg["Message-ID"] == f"<{message_id}@{domain}>"
    # Our conversation id stays on the row: the world never sees it.
    assert "X-E2A-Conversation-Id" not in msg
    assert msg.get_body(("plain",)).get_content().strip() == "Plain words."
    assert msg.get_body(("html",)).get_content().strip() == "<p>Rich <b>words</b>.</p>"
    [attached] = list(msg.iter_attachments())
    assert attached.get_filename() == "report.pdf"
    assert attached.get_payload(decode=True) == PDF
    assert verifies(sandbox, got.data)


def received_from_outside(sandbox: RunningSandbox, subject: str, **headers: str) -> dict:
    """A message from a human at ELSEWHERE to the agent, through Postfix's
    public smtpd and the milter; its inbox entry."""
    data = compose(f"alice@{ELSEWHERE}", sandbox.agent_email, subject, "Numbers are up.")
    head, body = data.split(b"\r\n\r\n", 1)
    extra = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    reply = smtp_send(sandbox.smtp_port, f"alice@{ELSEWHERE}", sandbox.agent_email,
                      head + b"\r\n" + extra.encode() + b"\r\n" + body)
    assert reply.code == 250, reply
    [listed] = wait_until(lambda: [m for m in sandbox.messages() if m["subject"] == subject],
                          what="the message in the agent's inbox")
    return listed


def message_id_header(sandbox: RunningSandbox, message_id: str) -> str:
    with single_connection(sandbox.box.config()) as conn:
        return conn.execute("SELECT email_message_id FROM messages WHERE id = %s",
                            (message_id,)).fetchone()["email_message_id"]


def test_reply_is_threaded_and_forward_quotes_the_original(sandbox):
    subject = f"question {marker()}"
    inbound = received_from_outside(sandbox, subject, References="<root@elsewhere.test>")
    parent = message_id_header(sandbox, inbound["message_id"])
    path = f"{sandbox.agent_path()}/messages/{inbound['message_id']}"

    reply_id = sent(post(sandbox, f"{path}/reply", {"body": "Thanks, noted."}))
    reply = captured(sandbox, f"Re: {subject}").message
    assert reply["To"] == f"alice@{ELSEWHERE}"
    assert reply["In-Reply-To"] == parent
    assert reply["References"].split() == ["<root@elsewhere.test>", parent]
    assert reply["Message-ID"] == f"<{reply_id}@{agent_domain(sandbox)}>"
    # The thread's conversation, or (the first message had none) a new one,
    # recorded on the row and never sent out.
    assert "X-E2A-Conversation-Id" not in reply
    with single_connection(sandbox.box.config()) as conn:
        conversation = conn.execute("SELECT conversation_id FROM messages WHERE id = %s",
                                    (reply_id,)).fetchone()["conversation_id"]
    assert conversation == (inbound["conversation_id"] or conversation)
    assert re.fullmatch(r"conv_[0-9a-f]{32}", conversation)

    sent(post(sandbox, f"{path}/forward", {"to": [f"desk@{ELSEWHERE}"], "body": "FYI"}))
    forwarded = captured(sandbox, f"Fwd: {subject}")
    assert forwarded.rcpt_tos == [f"desk@{ELSEWHERE}"]
    msg = forwarded.message
    assert "In-Reply-To" not in msg and "References" not in msg
    text = msg.get_body(("plain",)).get_content()
    assert text.startswith("FYI")
    assert "---------- Forwarded message ---------" in text
    assert f"From: Ada Sender <alice@{ELSEWHERE}>" in text
    assert "Numbers are up." in text
    assert verifies(sandbox, forwarded.data)


def test_header_injection_is_refused_and_nothing_goes_out(sandbox):
    tag = marker()
    for body in (
        {"subject": f"{tag}\r\nBcc: victim@{ELSEWHERE}"},
        {"subject": tag, "to": [f"ann@{ELSEWHERE}\r\nBcc: victim@{ELSEWHERE}"]},
        {"subject": tag, "cc": [f"Ann\n <ann@{ELSEWHERE}>"]},
        {"subject": tag, "attachments": [{"filename": "a\r\nX-Evil: 1", "data": "eA=="}]},
    ):
        response = post(sandbox, "/api/v1/send", {"from": sandbox.agent_email,
                                                  "to": [f"ann@{ELSEWHERE}"],
                                                  "body": "x", **body})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_request"
    settle(sandbox)
    assert captured_count(sandbox, tag) == 0
    with single_connection(sandbox.box.config()) as conn:
        assert conn.execute("SELECT count(*) AS n FROM messages WHERE subject LIKE %s",
                            (f"%{tag}%",)).fetchone()["n"] == 0


def test_an_idempotent_retry_sends_once(sandbox):
    subject = f"once {marker()}"
    body = {"from": sandbox.agent_email, "to": [f"ann@{ELSEWHERE}"], "subject": subject,
            "body": "only once"}
    key = str(uuid.uuid4())
    first = post(sandbox, "/api/v1/send", body, **{"Idempotency-Key": key})
    again = post(sandbox, "/api/v1/send", body, **{"Idempotency-Key": key})
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    other = post(sandbox, "/api/v1/send", {**body, "body": "changed"},
                 **{"Idempotency-Key": key})
    assert other.status_code == 422, other.text
    captured(sandbox, subject)
    settle(sandbox)
    assert captured_count(sandbox, subject) == 1


def test_the_test_mail_comes_back_into_the_agents_inbox(sandbox):
    response = post(sandbox, f"/api/v1/agents/{quote(sandbox.agent_email, safe='')}/test")
    message_id = sent(response)
    return_path = verp.return_path(message_id, agent_domain(sandbox),
                                   verp.key(sandbox.box.config()))
    [listed] = wait_until(
        lambda: [m for m in sandbox.messages() if m["subject"] == "Test email from e2a"
                 and _envelope_sender(sandbox, m["message_id"]) == return_path],
        timeout=30, what="the test mail in the agent's inbox")
    with single_connection(sandbox.box.config()) as conn:
        stored = conn.execute("SELECT entity_type, verified FROM messages WHERE id = %s",
                              (listed["message_id"],)).fetchone()
    assert (stored["entity_type"], stored["verified"]) == ("agent", True)


def _envelope_sender(sandbox: RunningSandbox, message_id: str) -> str:
    with single_connection(sandbox.box.config()) as conn:
        return conn.execute("SELECT envelope_sender FROM messages WHERE id = %s",
                            (message_id,)).fetchone()["envelope_sender"]
