"""The first slice, end to end through the real Postfix: SMTP in, the milter
stores, the API lists; mail for anyone else goes out to the internet untouched."""

from __future__ import annotations

import uuid

import pytest
from sandbox_harness import RunningSandbox, compose, smtp_send, wait_until

pytestmark = pytest.mark.system


def test_mail_to_an_agent_is_stored_and_listed(sandbox: RunningSandbox) -> None:
    subject = f"first slice {uuid.uuid4().hex}"
    sender = "ada@sandbox.test"
    reply = smtp_send(sandbox.smtp_port, sender, sandbox.agent_email,
                      compose(sender, sandbox.agent_email, subject, "Hello agent.\n"))
    assert reply.code == 250, reply

    # 250 comes after the commit, so the message is there at once; the poll
    # only absorbs the API's own start-up.
    listed = wait_until(
        lambda: [m for m in sandbox.messages() if m["subject"] == subject],
        timeout=10, what="the message listed by the API")
    assert len(listed) == 1
    [summary] = listed
    assert sender in summary["from"]
    assert summary["direction"] == "inbound"
    assert summary["message_id"].startswith("msg_")
    assert summary["recipient"] == sandbox.agent_email
    # Delivered to the agent, so it must not leak to the internet as well.
    assert not [c for c in sandbox.capture.messages() if subject.encode() in c.data]


def test_mail_for_someone_else_goes_out_untouched(sandbox: RunningSandbox) -> None:
    subject = f"passing through {uuid.uuid4().hex}"
    sender, rcpt = "ada@sandbox.test", "bob@elsewhere.example"
    data = compose(sender, rcpt, subject, "Not for any agent.\n")
    reply = smtp_send(sandbox.smtp_port, sender, rcpt, data)
    assert reply.code == 250, reply

    captured = sandbox.capture.wait_for(lambda c: subject.encode() in c.data, timeout=30)
    assert captured.mail_from == sender
    assert captured.rcpt_tos == [rcpt]
    # Postfix prepends its Received: line; everything we sent follows unchanged.
    head, _, body = data.partition(b"\r\n\r\n")
    assert captured.data.endswith(b"\r\n\r\n" + body)
    captured_head = captured.data.partition(b"\r\n\r\n")[0]
    assert all(line in captured_head.split(b"\r\n") for line in head.split(b"\r\n"))
    assert b"X-E2A-Auth" not in captured.data
    # And no agent got it.
    assert not [m for m in sandbox.messages() if m["subject"] == subject]
