"""HITL holds every outbound path, end to end through the sandbox's Postfix.

An agent with HITL on sends by the API, by plain SMTP into the public smtpd
(from this host, an allowed client) and by sendmail (pickup): each time the
content filter stores the message as pending_approval with its body, Postfix's
queue lets go of it, and the capture server (the internet) never sees it. A
positive control shows the wait was long enough: the same path, used right
after by an agent without HITL, delivers. With HITL off the same three paths
deliver, DKIM-signed (so they too went through the filter).

Captured mail is matched by a token in the body and the envelope recipient,
never by subject: the owner's notification names the subject and recipients.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from filtersupport import signature_tags
from sandbox_harness import RunningSandbox, compose, smtp_send, wait_until

from e2a.cli.sandbox.capture import Captured
from e2a.core.db import single_connection

pytestmark = pytest.mark.system

# Long enough for a message to cross Postfix twice on this loaded 2-core machine.
ARRIVAL_TIMEOUT = 60.0


class Mail:
    """One message of a test: a unique recipient and a token only its body carries."""

    def __init__(self, sender: str) -> None:
        tag = secrets.token_hex(6)
        self.sender = sender
        self.rcpt = f"hitl-{tag}@elsewhere.test"
        self.token = f"body-token-{tag}"
        self.subject = f"hitl {tag}"

    def raw(self) -> bytes:
        return compose(self.sender, self.rcpt, self.subject, f"Hello. {self.token}\n")

    def seen_in(self, captured: Captured) -> bool:
        return self.rcpt in captured.rcpt_tos or self.token.encode() in captured.data


def by_api(sandbox: RunningSandbox, mail: Mail) -> str:
    response = sandbox.api("POST", "/api/v1/send", json={
        "from": mail.sender, "to": [mail.rcpt], "subject": mail.subject,
        "body": f"Hello. {mail.token}"})
    assert response.status_code in (200, 202), response.text
    return response.json()["status"]


def by_smtp(sandbox: RunningSandbox, mail: Mail) -> str:
    # The public smtpd, from 127.0.0.1: a client Postfix lets relay.
    reply = smtp_send(sandbox.smtp_port, mail.sender, mail.rcpt, mail.raw())
    assert reply.code == 250, reply
    return ""


def by_sendmail(sandbox: RunningSandbox, mail: Mail) -> str:
    done = subprocess.run(
        ["/usr/sbin/sendmail", "-C", str(sandbox.postfix.etc), "-f", mail.sender, "-i", "--",
         mail.rcpt], input=mail.raw(), capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return ""


PATHS: dict[str, Callable[[RunningSandbox, Mail], str]] = {
    "api": by_api, "smtp": by_smtp, "sendmail": by_sendmail}


def row_of(sandbox: RunningSandbox, mail: Mail) -> dict[str, Any] | None:
    with single_connection(sandbox.box.config()) as conn:
        return conn.execute(
            "SELECT * FROM messages WHERE direction = 'outbound' AND recipient = %s",
            (mail.rcpt,)).fetchone()


def arrived(sandbox: RunningSandbox, mail: Mail) -> Captured:
    return sandbox.capture.wait_for(mail.seen_in, timeout=ARRIVAL_TIMEOUT)


def queued_for(sandbox: RunningSandbox, mail: Mail) -> bool:
    return any(r.get("address") == mail.rcpt
               for queued in sandbox.postfix.queue()
               for r in queued.get("recipients", []))  # type: ignore[union-attr]


@pytest.mark.parametrize("path", PATHS)
def test_held_mail_never_reaches_the_internet(sandbox, held_agent, free_agent, path):
    send = PATHS[path]
    held = Mail(held_agent["email"])
    status = send(sandbox, held)
    if path == "api":
        assert status == "pending_approval"
    # The filter handled it: stored as pending with its body, nothing queued.
    # (Mail by SMTP is recorded pending first, its body kept by the hold
    # right after: the wait is for both.)
    row = wait_until(lambda: (r := row_of(sandbox, held)) and
                     r["status"] == "pending_approval" and r["raw_message"] and
                     r["body_text"] and r,
                     timeout=ARRIVAL_TIMEOUT, what=f"{path}: the held row with its body")
    assert held.token in row["body_text"]
    assert row["approval_expires_at"] is not None
    assert row["agent_id"] == held_agent["id"]
    assert row["provider_message_id"] in ("", None)
    wait_until(lambda: not queued_for(sandbox, held), timeout=ARRIVAL_TIMEOUT,
               what=f"{path}: Postfix's queue let go of the held message")
    # The same path, right after, without HITL (the sentinel): it arrives,
    # so the held one, out of the queue before it was sent, had its chance.
    control = Mail(free_agent["email"])
    send(sandbox, control)
    arrived(sandbox, control)
    assert not [c for c in sandbox.capture.messages() if held.seen_in(c)]
    assert not queued_for(sandbox, held)
    final = row_of(sandbox, held)
    assert final is not None and final["status"] == "pending_approval"


@pytest.mark.parametrize("path", PATHS)
def test_without_hitl_every_path_delivers_signed(sandbox, free_agent, path):
    mail = Mail(free_agent["email"])
    status = PATHS[path](sandbox, mail)
    if path == "api":
        assert status == "sent"
    captured = arrived(sandbox, mail)
    # Signed: the filter passed it on, whichever way it was submitted.
    assert signature_tags(captured.data)["d"] == free_agent["domain"]
    row = wait_until(lambda: (r := row_of(sandbox, mail)) and r["provider_message_id"] and r,
                     timeout=ARRIVAL_TIMEOUT, what=f"{path}: the row recorded as passed on")
    assert row["status"] == "sent"
    assert row["body_text"] is None  # bodies are kept only while held


@pytest.mark.parametrize("path", ["smtp", "sendmail"])
def test_held_mail_to_another_agent_reaches_it_only_after_approval(
        sandbox, held_agent, free_agent, path):
    # Agent recipients are stored by the milter, which Postfix runs before
    # the queue: without care the recipient agent would have it at once.
    mail = Mail(held_agent["email"])
    mail.rcpt = free_agent["email"]
    PATHS[path](sandbox, mail)

    def held_row() -> dict[str, Any] | None:
        # By subject: the recipient agent is the same in every run.
        with single_connection(sandbox.box.config()) as conn:
            return conn.execute(
                "SELECT * FROM messages WHERE direction = 'outbound' AND subject = %s "
                "AND status = 'pending_approval'", (mail.subject,)).fetchone()

    row = wait_until(held_row, timeout=ARRIVAL_TIMEOUT, what=f"{path}: the held row")

    def inbound_copies() -> list[dict[str, Any]]:
        with single_connection(sandbox.box.config()) as conn:
            return conn.execute(
                "SELECT entity_type FROM messages WHERE direction = 'inbound' "
                "AND agent_id = %s AND subject = %s", (free_agent["id"], mail.subject)).fetchall()

    wait_until(lambda: not queued_for(sandbox, mail), timeout=ARRIVAL_TIMEOUT,
               what=f"{path}: Postfix's queue let go of the held message")
    assert inbound_copies() == []
    approved = sandbox.api("POST", f"/api/v1/messages/{row['id']}/approve", json={})
    assert approved.status_code == 200, approved.text
    copies = wait_until(inbound_copies, timeout=ARRIVAL_TIMEOUT,
                        what=f"{path}: the recipient agent's copy after approval")
    # Once, and as an agent's mail: it came back through our reinjection.
    assert copies == [{"entity_type": "agent"}]


@pytest.mark.parametrize("forged_mac", [False, True])
def test_a_held_message_cannot_be_swapped_by_a_submission_with_its_return_path(
        sandbox, held_agent, forged_mac):
    # Anyone on the host can `sendmail -f bounces+<id>@...` naming a held
    # message: without the MAC only the server makes, that mail is a message
    # of its own (held in turn), and the held bytes stay what was reviewed.
    held = Mail(held_agent["email"])
    assert by_api(sandbox, held) == "pending_approval"
    row = wait_until(lambda: (r := row_of(sandbox, held)) and
                     r["status"] == "pending_approval" and r["raw_message"] and r,
                     timeout=ARRIVAL_TIMEOUT, what="the held row")
    before = bytes(row["raw_message"])
    mac = f"-{'0' * 16}" if forged_mac else ""
    return_path = f"bounces+{row['id']}{mac}@{held_agent['domain']}"
    swap = Mail(held_agent["email"])
    swap.rcpt = held.rcpt  # the same envelope, other content
    done = subprocess.run(
        ["/usr/sbin/sendmail", "-C", str(sandbox.postfix.etc), "-f", return_path, "-i", "--",
         held.rcpt], input=swap.raw(), capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")

    def swap_row() -> dict[str, Any] | None:
        with single_connection(sandbox.box.config()) as conn:
            return conn.execute(
                "SELECT * FROM messages WHERE direction = 'outbound' AND id <> %s"
                " AND body_text LIKE %s", (row["id"], f"%{swap.token}%")).fetchone()

    other = wait_until(swap_row, timeout=ARRIVAL_TIMEOUT, what="the swap's own row")
    assert other["status"] == "pending_approval"
    with single_connection(sandbox.box.config()) as conn:
        after = conn.execute("SELECT raw_message, body_text, status FROM messages"
                             " WHERE id = %s", (row["id"],)).fetchone()
    assert bytes(after["raw_message"]) == before
    assert held.token in after["body_text"] and swap.token not in after["body_text"]
    assert after["status"] == "pending_approval"
