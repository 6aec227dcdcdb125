"""An owner of HITL agents in the sandbox, on a mail domain of its own that the
sandbox DNS publishes (SPF that passes nobody, a DKIM key of
tests/fixtures/keys, DMARC p=reject): only a message DKIM-signed with that
key passes DMARC for the owner's address. Their notifications go out to the
capture server like any mail for a domain that is not ours."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import quote

import dkim
import requests
from mailworld import KEYS, dkim_record
from sandbox_harness import RunningSandbox, wait_until

from e2a.cli.sandbox.capture import Captured
from e2a.core import accounts, signing_secrets
from e2a.core.db import single_connection

SELECTOR = "sel1"
KEY = "dkim1"
FRIEND = "friend@elsewhere.test"  # not ours: released mail goes to the capture server


@dataclass(frozen=True)
class Owner:
    email: str
    domain: str
    user_id: str
    api_key: str
    secret: str  # a signing secret of the owner's (agents hold it: it signs no link)
    agent: str  # an agent of theirs with HITL on


def new_owner(sandbox: RunningSandbox) -> Owner:
    tag = secrets.token_hex(4)
    domain = f"owner-{tag}.test"
    sandbox.dns.add_txt(domain, "v=spf1 -all")
    sandbox.dns.add_txt(f"{SELECTOR}._domainkey.{domain}", dkim_record(KEY))
    sandbox.dns.add_txt(f"_dmarc.{domain}", "v=DMARC1; p=reject")
    sandbox.dns.reload()
    cfg = sandbox.box.config()
    with single_connection(cfg) as conn:
        user = accounts.create_user(conn, f"boss@{domain}", "Boss")
        key = accounts.issue_key(conn, user["id"], name="hitl").key
        secret = signing_secrets.create(conn, user["id"], "links").secret
    headers = {"Authorization": f"Bearer {key}"}
    created = requests.post(f"{sandbox.api_url}/api/v1/agents", headers=headers, timeout=15,
                            json={"slug": f"held-{tag}", "agent_mode": "local"})
    assert created.status_code in (200, 201), created.text
    agent = created.json()["email"]
    updated = requests.put(f"{sandbox.api_url}/api/v1/agents/{quote(agent, safe='')}",
                           headers=headers, timeout=15,
                           json={"hitl_enabled": True, "hitl_ttl_seconds": 3600})
    assert updated.status_code == 200, updated.text
    return Owner(user["email"], domain, user["id"], key, secret, agent)


def send_held(sandbox: RunningSandbox, owner: Owner, subject: str, body: str) -> str:
    """An API send by the owner's agent: held (202); its message id."""
    response = requests.post(f"{sandbox.api_url}/api/v1/send", timeout=30,
                             headers={"Authorization": f"Bearer {owner.api_key}"},
                             json={"from": owner.agent, "to": [FRIEND], "subject": subject,
                                   "body": body})
    assert response.status_code == 202, response.text
    return response.json()["message_id"]


def notification_of(sandbox: RunningSandbox, owner: Owner, subject: str) -> Captured:
    """The owner's notification about the held message ``subject``."""
    return sandbox.capture.wait_for(
        lambda c: c.rcpt_tos == [owner.email] and subject in str(c.message["Subject"]),
        timeout=30)


def status_of(sandbox: RunningSandbox, message_id: str) -> str:
    with single_connection(sandbox.box.config()) as conn:
        row = conn.execute("SELECT status FROM messages WHERE id = %s",
                           (message_id,)).fetchone()
    assert row is not None
    return row["status"]


def wait_held(sandbox: RunningSandbox, message_id: str) -> None:
    wait_until(lambda: status_of(sandbox, message_id) == "pending_approval", timeout=30,
               what="the message held")


@dataclass(frozen=True)
class Held:
    message_id: str
    subject: str
    body: str  # never in the notification
    notification: Captured

    @property
    def reply_to(self) -> str:
        return str(self.notification.message["Reply-To"])


def held_and_notified(sandbox: RunningSandbox, owner: Owner, what: str) -> Held:
    """A message of the owner's agent, held, and the owner's notification of it."""
    subject = f"{what} {uuid.uuid4().hex[:8]}"
    body = f"the held body {uuid.uuid4().hex}"
    message_id = send_held(sandbox, owner, subject, body)
    wait_held(sandbox, message_id)
    return Held(message_id, subject, body, notification_of(sandbox, owner, subject))


def reply(owner: Owner, notification: Captured, first_line: str, *, sign: bool) -> bytes:
    """The owner's reply to ``notification`` as their mail program sends it,
    DKIM-signed by their domain when ``sign``."""
    original = notification.message
    msg = EmailMessage()
    msg["From"] = f"Boss <{owner.email}>"
    msg["To"] = str(original["Reply-To"])
    msg["Subject"] = "Re: " + str(original["Subject"])
    msg["Message-ID"] = make_msgid(domain=owner.domain)
    msg["In-Reply-To"] = str(original["Message-ID"])
    quoted = "\n".join("> " + line for line in original.get_content().splitlines())
    msg.set_content(f"{first_line}\n\nOn a weekday, e2a approvals wrote:\n{quoted}\n")
    raw = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    if not sign:
        return raw
    private = (KEYS / f"{KEY}.pem").read_bytes()
    return dkim.sign(raw, SELECTOR.encode(), owner.domain.encode(), private,
                     include_headers=[b"From", b"To", b"Subject", b"Message-ID"]) + raw
