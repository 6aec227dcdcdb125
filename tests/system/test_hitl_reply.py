"""Approve by reply through the real Postfix, policy service and milter: the
owner answers "approve" to the notification with a DKIM-signed reply (a
DMARC-aligned pass) and the held message goes out; the same reply with the
owner's address forged in From does nothing. Either way the reply itself
is consumed: not stored, not passed on."""

from __future__ import annotations

import uuid

import pytest
from hitlowner import FRIEND, held_and_notified, new_owner, reply, status_of
from sandbox_harness import RunningSandbox, compose, smtp_send

from e2a.core.db import single_connection

pytestmark = pytest.mark.system


def _copies(sandbox: RunningSandbox, text: str) -> int:
    return sum(text.encode() in c.data for c in sandbox.capture.messages())


def _stored_replies(sandbox: RunningSandbox, subject: str) -> int:
    with single_connection(sandbox.box.config()) as conn:
        return conn.execute("SELECT count(*) AS n FROM messages WHERE subject = %s",
                            ("Re: Approval needed: " + subject,)).fetchone()["n"]


def test_signed_reply_from_the_owner_approves(sandbox: RunningSandbox) -> None:
    owner = new_owner(sandbox)
    held = held_and_notified(sandbox, owner, "Offer")
    note, message_id, reply_to = held.notification, held.message_id, held.reply_to

    # SPF fails (the owner's domain lists nobody): only the signature passes DMARC.
    answer = smtp_send(sandbox.smtp_port, owner.email, reply_to,
                       reply(owner, note, "Approve", sign=True))
    assert answer.code == 250, answer
    # The milter acted before Postfix said 250.
    assert status_of(sandbox, message_id) == "sent"
    released = sandbox.capture.wait_for(lambda c: held.body.encode() in c.data, timeout=30)
    assert released.rcpt_tos == [FRIEND]
    with single_connection(sandbox.box.config()) as conn:
        row = conn.execute("SELECT reviewed_by_user_id FROM messages WHERE id = %s",
                           (message_id,)).fetchone()
    assert row["reviewed_by_user_id"] == owner.user_id
    assert _stored_replies(sandbox, held.subject) == 0
    assert not [c for c in sandbox.capture.messages() if reply_to in c.rcpt_tos]


def test_spoofed_reply_does_nothing(sandbox: RunningSandbox) -> None:
    owner = new_owner(sandbox)
    held = held_and_notified(sandbox, owner, "Transfer")
    note, message_id, reply_to = held.notification, held.message_id, held.reply_to

    # The owner's address in From, sent by someone else: no signature, and
    # the envelope sender's own SPF pass is not aligned with the From domain.
    forged = reply(owner, note, "approve", sign=False)
    answer = smtp_send(sandbox.smtp_port, "mallory@sandbox.test", reply_to, forged)
    assert answer.code == 250, answer
    # The owner's signed "reject" with its first line changed on the way to
    # "approve": the signature no longer verifies.
    tampered = reply(owner, note, "reject", sign=True).replace(b"\r\n\r\nreject\r\n",
                                                                b"\r\n\r\napprove\r\n", 1)
    assert b"\r\n\r\napprove\r\n" in tampered
    answer = smtp_send(sandbox.smtp_port, owner.email, reply_to, tampered)
    assert answer.code == 250, answer
    assert status_of(sandbox, message_id) == "pending_approval"
    # Refused for the reason under test, twice (not for a bad address, say).
    refusals = [line for line in sandbox.box.logfile("milter").read_text().splitlines()
                if f"message_id={message_id}" in line and "DKIM pass aligned" in line]
    assert len(refusals) == 2, refusals
    assert status_of(sandbox, message_id) == "pending_approval"
    # The sentinel: mail for the internet through the same smtpd after the
    # replies. Once it is out, a release or a reply passed on would be too.
    marker = f"sentinel {uuid.uuid4().hex}"
    sent = smtp_send(sandbox.smtp_port, "ada@sandbox.test", FRIEND,
                     compose("ada@sandbox.test", FRIEND, marker, marker + "\n"))
    assert sent.code == 250, sent
    sandbox.capture.wait_for(lambda c: marker.encode() in c.data, timeout=30)
    assert status_of(sandbox, message_id) == "pending_approval"
    assert _copies(sandbox, held.body) == 0
    assert _stored_replies(sandbox, held.subject) == 0
    assert not [c for c in sandbox.capture.messages() if reply_to in c.rcpt_tos]
