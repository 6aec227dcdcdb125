"""Owner notifications of held messages: real PostgreSQL, a real SMTP server
standing in for Postfix's reinjection service."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from apisupport import Tenant, make_tenant
from filtersupport import reinjection_service

from e2a.core import config
from e2a.core.accounts import signing_secrets
from e2a.core.crypto import serverkeys as keys
from e2a.core.crypto import tokens
from e2a.core.db import single_connection
from e2a.core.ids import new_id
from e2a.core.outbound import notification, replyaddress
from e2a.core.store import messages as message_store

BODY = "The secret plan is in the attachment"


@pytest.fixture
def reinject() -> Iterator[Any]:
    with reinjection_service() as (service, port):
        yield service, port


@pytest.fixture
def notify_cfg(cfg: config.Config, reinject: Any) -> config.Config:
    return config.load(cfg.source, env={"E2A_FILTER_REINJECT": f"127.0.0.1:{reinject[1]}"})


@pytest.fixture
def tenant(cfg: config.Config) -> Tenant:
    return make_tenant(cfg)


def hold(cfg: config.Config, tenant: Tenant, *, subject: str = "Quarterly numbers",
         status: str = "pending_approval", expires: str = "1 hour") -> str:
    """A held outbound message as the filter leaves it (the store has no
    function that writes the hold's columns on their own: plain SQL)."""
    message_id = new_id("msg")
    raw = f"From: {tenant.agent['email']}\r\nSubject: {subject}\r\n\r\n{BODY}\r\n".encode()
    with single_connection(cfg) as conn:
        message_store.insert_outbound(conn, {
            "id": message_id, "user_id": tenant.user["id"], "agent_id": tenant.agent["id"],
            "type": "send", "recipient": "", "sender": tenant.agent["email"],
            "envelope_sender": "", "to_recipients": ["bob@example.org", "carol@example.org"],
            "cc": ["dave@example.org"], "bcc": ["eve@example.org"], "subject": subject,
            "email_message_id": f"<{message_id}@agents.test.example>", "in_reply_to": "",
            "references_ids": [], "conversation_id": None, "raw_message": raw,
            "size_bytes": len(raw), "status": status, "delivery_status": "queued",
            "method": "api"})
        conn.execute(f"""UPDATE messages SET body_text = %s,
                                approval_expires_at = now() + interval '{expires}'
                          WHERE id = %s""", (BODY, message_id))
    return message_id


def row(cfg: config.Config, message_id: str) -> dict[str, Any]:
    with single_connection(cfg) as conn:
        return conn.execute("SELECT * FROM messages WHERE id = %s", (message_id,)).fetchone()


def run_job(cfg: config.Config) -> int:
    """The job until it has nothing more to do (other tests' held messages
    share the database); how many it handled."""
    total = 0
    with single_connection(cfg, autocommit=True) as conn:
        while done := notification.notify_owners(cfg, conn):
            total += done
    return total


def mine(service: Any, tenant: Tenant) -> list[Any]:
    return [m for m in service.messages if m.rcpt_tos == [tenant.user["email"]]]


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def test_one_notification_per_held_message_without_the_body(
        notify_cfg: config.Config, tenant: Tenant, reinject: Any) -> None:
    service, _ = reinject
    message_id = hold(notify_cfg, tenant)
    assert run_job(notify_cfg) >= 1
    [sent] = mine(service, tenant)
    assert sent.mail_from == "<>"  # a notification that cannot be delivered bounces to nobody
    assert BODY.encode() not in sent.data
    msg = message_from_bytes(sent.data, policy=policy.default)
    assert msg["To"] == tenant.user["email"]
    assert msg["From"].addresses[0].addr_spec == notify_cfg.hitl.notify_from
    assert msg["Subject"] == "Approval needed: Quarterly numbers"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert "d=agents.test.example" in str(msg["DKIM-Signature"])
    text = msg.get_content()
    for shown in (tenant.agent["email"], "bob@example.org, carol@example.org",
                  "dave@example.org", "eve@example.org", "Quarterly numbers"):
        assert shown in text
    stored = row(notify_cfg, message_id)
    expires = stored["approval_expires_at"]
    assert expires.strftime("%Y-%m-%dT%H:%M:%SZ") in text
    assert stored["notified_at"] is not None

    base = notify_cfg.http.public_url.rstrip("/")
    urls = [line for line in text.splitlines() if line.startswith(base)]
    approve, reject, review, dashboard = urls
    assert approve.startswith(f"{base}/api/v1/approve?token=")
    assert reject.startswith(f"{base}/api/v1/reject?token=")
    assert review == f"{base}/api/v1/messages/{message_id}"
    # The draft in the dashboard, to edit before approving (a sign-in away).
    assert dashboard == f"{base}/dashboard/pending/{message_id}"
    # The owner's magic-link key signs, never the deployment secret itself.
    key = keys.for_owner(notify_cfg, keys.MAGIC_LINK, tenant.user["id"])
    for url, action in ((approve, "approve"), (reject, "reject")):
        link = tokens.verify_magic_link(key, token_of(url))
        with pytest.raises(tokens.TokenError):
            tokens.verify_magic_link(notify_cfg.secrets.hmac_secret.encode(), token_of(url))
        assert (link.message_id, link.action) == (message_id, action)
        assert link.expires_at == int(expires.timestamp()) + 600

    reply_to = replyaddress.parse(str(msg["Reply-To"]))
    assert reply_to is not None and reply_to.message_id == message_id
    assert reply_to.domain == notify_cfg.hitl.reply_domain
    assert replyaddress.verify(
        reply_to, keys.for_owner(notify_cfg, keys.REPLY_ADDRESS, tenant.user["id"]))

    assert run_job(notify_cfg) == 0  # once only
    assert len(mine(service, tenant)) == 1


def test_links_are_never_signed_with_a_secret_agents_hold(
        notify_cfg: config.Config, tenant: Tenant, reinject: Any) -> None:
    service, _ = reinject
    with single_connection(notify_cfg) as conn:
        newest = signing_secrets.create(conn, tenant.user["id"], "new").secret
    message_id = hold(notify_cfg, tenant)
    run_job(notify_cfg)
    [sent] = mine(service, tenant)
    msg = message_from_bytes(sent.data, policy=policy.default)
    approve = next(line for line in msg.get_content().splitlines()
                   if "/api/v1/approve?token=" in line)
    key = keys.for_owner(notify_cfg, keys.MAGIC_LINK, tenant.user["id"])
    assert tokens.verify_magic_link(key, token_of(approve)).message_id == message_id
    with pytest.raises(tokens.TokenError):
        tokens.verify_magic_link(newest.encode(), token_of(approve))
    reply_to = replyaddress.parse(str(msg["Reply-To"]))
    assert reply_to is not None and not replyaddress.verify(reply_to, newest.encode())


def test_nothing_marked_when_postfix_does_not_take_it(
        notify_cfg: config.Config, tenant: Tenant, reinject: Any) -> None:
    service, _ = reinject
    message_id = hold(notify_cfg, tenant)
    service.data_reply = "451 4.3.0 try again later"
    try:
        run_job(notify_cfg)
    finally:
        service.data_reply = ""
    assert row(notify_cfg, message_id)["notified_at"] is None
    assert mine(service, tenant) == []
    run_job(notify_cfg)
    assert len(mine(service, tenant)) == 1
    assert row(notify_cfg, message_id)["notified_at"] is not None


def test_only_messages_still_held_are_notified(
        notify_cfg: config.Config, tenant: Tenant, reinject: Any) -> None:
    service, _ = reinject
    expired = hold(notify_cfg, tenant, expires="-1 minute")
    sent = hold(notify_cfg, tenant, status="sent")
    run_job(notify_cfg)
    assert mine(service, tenant) == []
    assert row(notify_cfg, expired)["notified_at"] is None
    assert row(notify_cfg, sent)["notified_at"] is None


def test_a_message_another_worker_is_notifying_is_skipped(
        notify_cfg: config.Config, tenant: Tenant, reinject: Any) -> None:
    service, _ = reinject
    first = hold(notify_cfg, tenant, subject="first " + secrets.token_hex(3))
    second = hold(notify_cfg, tenant, subject="second " + secrets.token_hex(3))
    # The other worker has claimed the first (it is older) and not committed.
    with single_connection(notify_cfg) as other, other.transaction():
        claimed = other.execute(
            "SELECT id FROM messages WHERE id = %s FOR UPDATE", (first,)).fetchone()
        assert claimed is not None
        run_job(notify_cfg)
        subjects = [str(message_from_bytes(m.data, policy=policy.default)["Subject"])
                    for m in mine(service, tenant)]
        assert subjects == [f"Approval needed: {row(notify_cfg, second)['subject']}"]
    assert row(notify_cfg, first)["notified_at"] is None


def test_render_says_what_happens_at_expiry(notify_cfg: config.Config) -> None:
    held = {"id": new_id("msg"), "user_id": "usr_test", "subject": "",
            "to_recipients": ["a@example.org"], "cc": [],
            "bcc": [], "agent_email": "bot@agents.test.example",
            "hitl_expiration_action": "approve", "owner_email": "o@example.org",
            "approval_expires_at": datetime.now(UTC) + timedelta(hours=1)}
    msg = message_from_bytes(notification.render(notify_cfg, held),
                             policy=policy.default)
    assert msg["Subject"] == "Approval needed: (no subject)"
    assert "it is sent anyway" in msg.get_content()
    assert "Cc:" not in msg.get_content()


def test_one_that_cannot_be_written_does_not_hold_up_the_others(
        notify_cfg: config.Config, reinject: Any) -> None:
    service, _ = reinject
    broken, fine = make_tenant(notify_cfg), make_tenant(notify_cfg)
    with single_connection(notify_cfg) as conn:
        # No header can carry this address (the store takes it as it is).
        conn.execute("UPDATE users SET email = %s WHERE id = %s",
                     (f"x\r\nBcc: {broken.user['email']}", broken.user["id"]))
    skipped = hold(notify_cfg, broken)
    notified = hold(notify_cfg, fine)
    run_job(notify_cfg)
    assert len(mine(service, fine)) == 1
    assert row(notify_cfg, notified)["notified_at"] is not None
    assert row(notify_cfg, skipped)["notified_at"] is not None  # passed over for good
    assert not [m for m in service.messages if broken.user["email"] in str(m.rcpt_tos)]


def test_a_looping_agent_cannot_flood_its_owner(
        notify_cfg: config.Config, tenant: Tenant, reinject: Any) -> None:
    """At most hitl.notify_per_hour (default 10) mails per owner in any hour;
    what is held meanwhile waits and is summed up in the next mail."""
    service, _ = reinject
    per_hour = 10
    held = []
    for n in range(per_hour + 5):
        held.append(hold(notify_cfg, tenant, subject=f"loop {n}"))
        run_job(notify_cfg)
    assert len(mine(service, tenant)) == per_hour
    waiting = held[per_hour:]
    assert all(row(notify_cfg, m)["notified_at"] is None for m in waiting)
    # An hour later the window has room again: one mail names every one waiting.
    with single_connection(notify_cfg) as conn:
        conn.execute("UPDATE owner_notifications SET sent_at = sent_at - interval '1 hour'"
                     " WHERE user_id = %s", (tenant.user["id"],))
    run_job(notify_cfg)
    sent = mine(service, tenant)
    assert len(sent) == per_hour + 1
    digest = message_from_bytes(sent[-1].data, policy=policy.default)
    assert digest["Subject"] == f"Approval needed: {len(waiting)} messages of your agents"
    assert digest["Reply-To"] is None  # a reply acts on one message: the links do here
    text = digest.get_content()
    for message_id, n in zip(waiting, range(per_hour, per_hour + 5), strict=True):
        assert f"loop {n}" in text
        assert f"/api/v1/messages/{message_id}" in text
    assert text.count("/api/v1/approve?token=") == len(waiting)
    assert BODY not in text
    assert all(row(notify_cfg, m)["notified_at"] is not None for m in waiting)
