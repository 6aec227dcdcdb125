"""Resolving held messages (core/outbound/approval.py) on a real database, with a real
SMTP server (aiosmtpd) standing in for Postfix's reinjection service: what
leaves, with which envelope and signature, what the row says afterwards,
and that every outcome wipes the draft."""

from __future__ import annotations

import base64
import secrets
import threading
from collections.abc import Iterator
from email import message_from_bytes, policy
from typing import Any

import dkim
import psycopg
import pytest
from apisupport import Tenant, insert_message, make_tenant
from filtersupport import QUEUED_AS, Reinjection, reinjection_service
from prometheus_client import REGISTRY
from servicesupport import write_config

from e2a.core import config
from e2a.core.accounts import dkimkeys
from e2a.core.db import open_pool, single_connection
from e2a.core.ids import new_id
from e2a.core.mta import verp
from e2a.core.outbound import approval, compose, holds
from e2a.core.outbound.compose import Attachment, ComposeError, Draft, Mailbox
from e2a.core.store import agents as agent_store
from e2a.core.store import messages as message_store

FRIEND = "friend@elsewhere.example"
REPORT = Attachment("report.csv", "text/csv", b"a,b\r\n1,2\r\n")


@pytest.fixture(scope="module")
def reinjection() -> Iterator[tuple[Reinjection, int]]:
    with reinjection_service() as service:
        yield service


@pytest.fixture(autouse=True)
def fresh(reinjection: tuple[Reinjection, int]) -> None:
    handler, _ = reinjection
    handler.messages.clear()
    handler.data_reply = ""


@pytest.fixture(scope="module")
def rcfg(cfg: config.Config, reinjection: tuple[Reinjection, int],
         tmp_path_factory: pytest.TempPathFactory) -> config.Config:
    """The test configuration, reinjecting to the stand-in."""
    _, port = reinjection
    path = tmp_path_factory.mktemp("approval") / "e2a.toml"
    return config.load(write_config(cfg, path, f'[filter]\nreinject = "127.0.0.1:{port}"\n'
                                               '[submit]\ntimeout = 5.0\n'), env={})


@pytest.fixture(scope="module")
def pool(rcfg: config.Config) -> Iterator[Any]:
    pool = open_pool(rcfg, name="test-approval", wait=True)
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def tenant(rcfg: config.Config) -> Tenant:
    return make_tenant(rcfg)


@pytest.fixture(scope="module")
def stranger(rcfg: config.Config) -> Tenant:
    return make_tenant(rcfg)


def held(cfg: config.Config, agent: dict[str, Any], *, subject: str = "Draft for review",
         text: str = "Hello, friend.", html: str = "<p>Hello, friend.</p>",
         attachments: tuple[Attachment, ...] = (REPORT,), to: tuple[str, ...] = (FRIEND,),
         bcc: tuple[str, ...] = (), in_reply_to: str = "", references: tuple[str, ...] = (),
         conversation_id: str = "") -> tuple[str, bytes]:
    """A message the API held (core/holds.hold_draft): its id and raw bytes."""
    message_id = new_id("msg")
    draft = Draft(sender=Mailbox(agent["email"], "Review Bot"),
                  to=tuple(Mailbox(a) for a in to), bcc=tuple(Mailbox(a) for a in bcc),
                  subject=subject, text=text, html=html, attachments=attachments,
                  conversation_id=conversation_id, in_reply_to=in_reply_to,
                  references=references)
    composed = compose.compose(draft, message_id=message_id, domain=agent["domain"],
                               limits=compose.SendLimits.of(cfg))
    with single_connection(cfg) as conn, conn.transaction():
        row_agent = agent_store.agent_by_email(conn, agent["email"])
        assert message_store.insert_outbound(conn, {
            "id": message_id, "user_id": agent["user_id"], "agent_id": agent["id"],
            "type": "send", "recipient": to[0], "sender": agent["email"],
            "envelope_sender": verp.return_path(message_id, agent["domain"], verp.key(cfg)),
            "to_recipients": list(to), "cc": [], "bcc": list(bcc), "subject": composed.subject,
            "email_message_id": composed.email_message_id, "in_reply_to": in_reply_to,
            "references_ids": list(references), "conversation_id": conversation_id or None,
            "raw_message": composed.raw, "size_bytes": len(composed.raw),
            "status": "pending_approval", "delivery_status": "queued", "method": "smtp",
        }) == message_id
        assert holds.hold_draft(conn, message_id, composed, row_agent).pending
    return message_id, composed.raw


def row(cfg: config.Config, message_id: str) -> dict[str, Any]:
    with single_connection(cfg) as conn:
        return conn.execute("SELECT * FROM messages WHERE id = %s", (message_id,)).fetchone()


def outcome_events(cfg: config.Config, message_id: str) -> list[dict[str, Any]]:
    """The events the resolution wrote: (type, data)."""
    with single_connection(cfg) as conn:
        return conn.execute(
            "SELECT type, data FROM events WHERE message_id = %s "
            "AND type IN ('email.approved', 'email.rejected', 'email.expired') "
            "ORDER BY created_at", (message_id,)).fetchall()


def make_due(cfg: config.Config, message_id: str, action: str) -> None:
    with single_connection(cfg) as conn:
        conn.execute("UPDATE agents SET hitl_expiration_action = %s WHERE id = "
                     "(SELECT agent_id FROM messages WHERE id = %s)", (action, message_id))
        conn.execute("UPDATE messages SET approval_expires_at = now() - interval '1 second' "
                     "WHERE id = %s", (message_id,))


def expire_all(cfg: config.Config, pool: Any) -> None:
    """Run the expiry job until nothing is due."""
    with pool.connection() as conn:
        while approval.expire_due(conn, cfg, limit=5):
            pass


def approvals_count(action: str) -> float:
    return REGISTRY.get_sample_value("e2a_approvals_total", {"action": action}) or 0.0


def verifies(cfg: config.Config, data: bytes) -> bool:
    """Whether ``data``'s DKIM signature checks out against the shared domain's key."""
    with single_connection(cfg) as conn:
        domain = agent_store.domain_by_name(conn, cfg.mail.shared_domain)
    record = dkimkeys.public_record(domain["dkim_public_key"]).encode()
    host = dkimkeys.record_host(domain["domain"], domain["dkim_selector"])

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return record if name.decode().rstrip(".") == host else b""

    return bool(dkim.verify(data, dnsfunc=dnsfunc))


def assert_wiped(found: dict[str, Any], *, raw_kept: bool) -> None:
    assert found["body_text"] is None
    assert found["body_html"] is None
    assert found["attachments"] is None
    assert (found["raw_message"] is not None) is raw_kept


# -- approve -------------------------------------------------------------------------


def test_approve_as_held_sends_the_held_bytes_signed_with_the_verp_path(
        rcfg, pool, tenant, reinjection):
    handler, _ = reinjection
    message_id, raw = held(rcfg, tenant.agent, bcc=("hidden@elsewhere.example",))
    before = approvals_count("sent")
    done = approval.approve(pool, rcfg, message_id, owner_id=tenant.user["id"],
                            reviewer_user_id=tenant.user["id"], via="api")
    assert done == approval.Resolved(message_id, "sent", False, "smtp", QUEUED_AS, "")
    [sent] = handler.messages
    assert sent.mail_from == verp.return_path(message_id, tenant.agent["domain"], verp.key(rcfg))
    assert sent.rcpt_tos == [FRIEND, "hidden@elsewhere.example"]
    assert sent.data.startswith(b"DKIM-Signature:")
    assert sent.data.endswith(raw)
    assert verifies(rcfg, sent.data)
    found = row(rcfg, message_id)
    assert found["status"] == "sent"
    assert found["provider_message_id"] == QUEUED_AS
    assert found["delivery_status"] == "sent"
    assert found["reviewed_by_user_id"] == tenant.user["id"]
    assert found["reviewed_at"] is not None
    assert found["edited"] is False
    assert_wiped(found, raw_kept=True)
    assert approvals_count("sent") == before + 1
    with single_connection(rcfg) as conn:
        steps = [r["reason_code"] for r in conn.execute(
            "SELECT reason_code FROM message_lifecycle WHERE message_id = %s "
            "ORDER BY occurred_at, id", (message_id,)).fetchall()]
    assert steps[-2:] == ["review.approved", "submission.upstream_accepted"]
    [event] = outcome_events(rcfg, message_id)
    assert event["type"] == "email.approved"
    assert event["data"]["status"] == "sent"
    assert event["data"]["edited"] is False
    assert event["data"]["to"] == [FRIEND]


def test_edits_equal_to_the_draft_are_no_edit(rcfg, pool, tenant, reinjection):
    handler, _ = reinjection
    message_id, raw = held(rcfg, tenant.agent)
    same = approval.Edits(subject="Draft for review", body_text="Hello, friend.",
                          body_html="<p>Hello, friend.</p>", to=[FRIEND.upper()], cc=[], bcc=[],
                          attachments=[REPORT])
    done = approval.approve(pool, rcfg, message_id, owner_id=tenant.user["id"],
                            reviewer_user_id=tenant.user["id"], edits=same, via="api")
    assert done.edited is False
    [sent] = handler.messages
    assert sent.data.endswith(raw)
    assert row(rcfg, message_id)["edited"] is False


def test_approve_with_edits_recomposes_keeping_the_thread(rcfg, pool, tenant, reinjection):
    handler, _ = reinjection
    message_id, _ = held(rcfg, tenant.agent, in_reply_to="<first@example.org>",
                         references=("<root@example.org>", "<first@example.org>"),
                         conversation_id="conv-42")
    before = row(rcfg, message_id)
    edits = approval.Edits(subject="Reviewed draft", body_text="Hello again, friend.",
                           to=["other@elsewhere.example"], cc=["boss@elsewhere.example"],
                           attachments=[Attachment("notes.txt", "text/plain", b"checked")])
    done = approval.approve(pool, rcfg, message_id, owner_id=tenant.user["id"],
                            reviewer_user_id=tenant.user["id"], edits=edits, via="cli")
    assert done.status == "sent" and done.edited is True
    [sent] = handler.messages
    assert sent.rcpt_tos == ["other@elsewhere.example", "boss@elsewhere.example"]
    assert verifies(rcfg, sent.data)
    msg = message_from_bytes(sent.data, policy=policy.default)
    assert msg["Subject"] == "Reviewed draft"
    assert msg["To"] == "other@elsewhere.example"
    assert msg["Cc"] == "boss@elsewhere.example"
    assert msg["Message-ID"] == before["email_message_id"]
    assert msg["In-Reply-To"] == "<first@example.org>"
    assert msg["References"] == "<root@example.org> <first@example.org>"
    # Our conversation id is internal: the row keeps it, the world never sees it.
    assert msg["X-E2A-Conversation-Id"] is None
    assert row(rcfg, message_id)["conversation_id"] == "conv-42"
    assert msg.get_body(("plain",)).get_content().strip() == "Hello again, friend."
    # Not edited: kept from the draft.
    assert msg.get_body(("html",)).get_content().strip() == "<p>Hello, friend.</p>"
    [attached] = list(msg.iter_attachments())
    assert attached.get_filename() == "notes.txt"
    assert attached.get_content() == "checked"
    found = row(rcfg, message_id)
    assert found["edited"] is True
    assert found["subject"] == "Reviewed draft"
    assert found["to_recipients"] == ["other@elsewhere.example"]
    assert found["recipient"] == "other@elsewhere.example"
    assert found["cc"] == ["boss@elsewhere.example"]
    # What left is the stored message but for our internal conversation header.
    assert bytes(found["raw_message"]).replace(
        b"X-E2A-Conversation-Id: conv-42\r\n", b"") in sent.data
    assert_wiped(found, raw_kept=True)
    [event] = outcome_events(rcfg, message_id)
    assert (event["data"]["edited"], event["data"]["subject"], event["data"]["cc"]) == \
        (True, "Reviewed draft", ["boss@elsewhere.example"])


def held_submission(cfg: config.Config, agent: dict[str, Any], raw: bytes) -> str:
    """A message an agent submitted by plain SMTP, as the content filter
    records and holds it (core/holds.hold: bodies taken from the MIME)."""
    message_id = new_id("msg")
    with single_connection(cfg) as conn, conn.transaction():
        assert message_store.insert_outbound(conn, {
            "id": message_id, "user_id": agent["user_id"], "agent_id": agent["id"],
            "type": "smtp", "recipient": FRIEND, "sender": agent["email"],
            "envelope_sender": verp.return_path(message_id, agent["domain"], verp.key(cfg)),
            "to_recipients": [FRIEND], "cc": [], "bcc": [], "subject": "From my mail client",
            "email_message_id": "<client-1234@laptop.example>",
            "in_reply_to": "<earlier@example.org>", "references_ids": ["<earlier@example.org>"],
            "conversation_id": None, "raw_message": raw, "size_bytes": len(raw),
            "status": "sent", "delivery_status": "queued", "method": "smtp",
        }) == message_id
        assert holds.hold(conn, message_id, raw,
                          agent_store.agent_by_email(conn, agent["email"])).pending
    return message_id


def test_an_edited_smtp_submission_keeps_its_own_message_id(rcfg, pool, tenant, reinjection):
    handler, _ = reinjection
    raw = (f"From: Mail Client <{tenant.agent['email']}>\r\nTo: {FRIEND}\r\n"
           "Subject: From my mail client\r\nMessage-ID: <client-1234@laptop.example>\r\n"
           "In-Reply-To: <earlier@example.org>\r\nReferences: <earlier@example.org>\r\n"
           "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
           "Content-Transfer-Encoding: 8bit\r\n\r\nGr\u00fc\u00dfe from the client.\r\n"
           ).encode()
    message_id = held_submission(rcfg, tenant.agent, raw)
    done = approval.approve(pool, rcfg, message_id, owner_id=tenant.user["id"],
                            reviewer_user_id=tenant.user["id"], via="reply",
                            edits=approval.Edits(subject="From my mail client, reviewed"))
    assert done.edited is True
    [sent] = handler.messages
    assert verifies(rcfg, sent.data)
    msg = message_from_bytes(sent.data, policy=policy.default)
    assert msg["Message-ID"] == "<client-1234@laptop.example>"
    assert msg["In-Reply-To"] == "<earlier@example.org>"
    assert msg["Subject"] == "From my mail client, reviewed"
    assert msg.get_body(("plain",)).get_content().strip() == "Gr\u00fc\u00dfe from the client."


def test_an_8bit_smtp_submission_leaves_as_held(rcfg, pool, tenant, reinjection):
    handler, _ = reinjection
    raw = (f"From: {tenant.agent['email']}\r\nTo: {FRIEND}\r\nSubject: 8bit\r\n"
           "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
           "\r\nGr\u00fc\u00dfe.\r\n").encode()
    message_id = held_submission(rcfg, tenant.agent, raw)
    approval.approve(pool, rcfg, message_id, owner_id=tenant.user["id"],
                     reviewer_user_id=tenant.user["id"], via="api")
    [sent] = handler.messages
    assert sent.data.endswith(raw)
    assert "BODY=8BITMIME" in sent.mail_options
    assert verifies(rcfg, sent.data)


def test_edits_that_break_a_rule_send_nothing(rcfg, pool, tenant, reinjection):
    handler, _ = reinjection
    message_id, _ = held(rcfg, tenant.agent)
    for bad in (approval.Edits(to=["not an address"]), approval.Edits(to=[]),
                approval.Edits(subject="two\r\nBcc: x@y.example")):
        with pytest.raises(ComposeError):
            approval.approve(pool, rcfg, message_id, owner_id=tenant.user["id"],
                             reviewer_user_id=tenant.user["id"], edits=bad, via="api")
    assert handler.messages == []
    found = row(rcfg, message_id)
    assert found["status"] == "pending_approval"
    assert found["body_text"] == "Hello, friend."


def test_a_refused_release_leaves_the_message_pending(rcfg, pool, tenant, reinjection):
    handler, _ = reinjection
    handler.data_reply = "451 4.3.0 try later, for the test"
    message_id, _ = held(rcfg, tenant.agent)
    with pytest.raises(approval.release.ReleaseError, match="451"):
        approval.approve(pool, rcfg, message_id, owner_id=tenant.user["id"],
                         reviewer_user_id=tenant.user["id"], via="api")
    found = row(rcfg, message_id)
    assert found["status"] == "pending_approval"
    assert found["attachments"] is not None
    handler.data_reply = ""
    assert approval.approve(pool, rcfg, message_id, owner_id=tenant.user["id"],
                            reviewer_user_id=tenant.user["id"], via="api").status == "sent"
    assert len(handler.messages) == 1


# -- reject, and a second resolution -----------------------------------------------------


def test_reject_with_reason_discards_everything(rcfg, pool, tenant, reinjection):
    handler, _ = reinjection
    message_id, _ = held(rcfg, tenant.agent)
    before = approvals_count("rejected")
    done = approval.reject(pool, message_id, owner_id=tenant.user["id"],
                           reviewer_user_id=tenant.user["id"], reason="wrong tone", via="link")
    assert done == approval.Resolved(message_id, "rejected", False, "", "", "wrong tone")
    found = row(rcfg, message_id)
    assert found["status"] == "rejected"
    assert found["rejection_reason"] == "wrong tone"
    assert found["reviewed_by_user_id"] == tenant.user["id"]
    assert found["reviewed_at"] is not None
    assert found["subject"] == "Draft for review"  # metadata stays
    assert_wiped(found, raw_kept=False)
    assert handler.messages == []
    assert approvals_count("rejected") == before + 1
    [event] = outcome_events(rcfg, message_id)
    assert event["type"] == "email.rejected"
    assert event["data"]["rejection_reason"] == "wrong tone"


def test_a_second_resolution_is_not_pending(rcfg, pool, tenant, reinjection):
    handler, _ = reinjection
    owner = tenant.user["id"]
    sent_id, _ = held(rcfg, tenant.agent)
    approval.approve(pool, rcfg, sent_id, owner_id=owner, reviewer_user_id=owner, via="api")
    with pytest.raises(approval.NotPending) as again:
        approval.approve(pool, rcfg, sent_id, owner_id=owner, reviewer_user_id=owner, via="link")
    assert again.value.status == "sent"
    with pytest.raises(approval.NotPending):
        approval.reject(pool, sent_id, owner_id=owner, reviewer_user_id=owner, reason="late",
                        via="api")
    rejected_id, _ = held(rcfg, tenant.agent)
    approval.reject(pool, rejected_id, owner_id=owner, reviewer_user_id=owner, reason="",
                    via="api")
    with pytest.raises(approval.NotPending) as after_reject:
        approval.approve(pool, rcfg, rejected_id, owner_id=owner, reviewer_user_id=owner,
                         via="api")
    assert after_reject.value.status == "rejected"
    assert len(handler.messages) == 1
    assert row(rcfg, sent_id)["rejection_reason"] == ""
    assert len(outcome_events(rcfg, sent_id)) == 1


def test_owner_scoping(rcfg, pool, tenant, stranger, reinjection):
    handler, _ = reinjection
    message_id, _ = held(rcfg, tenant.agent)
    foreign = stranger.user["id"]
    with pytest.raises(approval.NotFound):
        approval.approve(pool, rcfg, message_id, owner_id=foreign, reviewer_user_id=foreign,
                         via="api")
    with pytest.raises(approval.NotFound):
        approval.reject(pool, message_id, owner_id=foreign, reviewer_user_id=foreign,
                        reason="mine now", via="api")
    with pytest.raises(approval.NotFound):
        approval.approve(pool, rcfg, new_id("msg"), owner_id=None, reviewer_user_id=None,
                         via="link")
    inbound_id = insert_message(rcfg, tenant.agent)
    with pytest.raises(approval.NotFound):
        approval.reject(pool, inbound_id, owner_id=tenant.user["id"], reviewer_user_id=None,
                        reason="", via="api")
    assert handler.messages == []
    assert row(rcfg, message_id)["status"] == "pending_approval"
    # owner_id None (a verified magic link, the worker): any owner's message.
    assert approval.approve(pool, rcfg, message_id, owner_id=None,
                            reviewer_user_id=tenant.user["id"], via="link").status == "sent"


# -- expiry ------------------------------------------------------------------------------


def test_expiry_rejects_and_leaves_messages_not_yet_due(rcfg, pool, reinjection):
    handler, _ = reinjection
    own = make_tenant(rcfg)
    due_id, _ = held(rcfg, own.agent)
    later_id, _ = held(rcfg, own.agent)
    make_due(rcfg, due_id, "reject")
    before = approvals_count("expired_rejected")
    expire_all(rcfg, pool)
    found = row(rcfg, due_id)
    assert found["status"] == "expired_rejected"
    assert found["rejection_reason"] == approval.EXPIRED_REASON
    assert found["reviewed_by_user_id"] is None
    assert_wiped(found, raw_kept=False)
    assert row(rcfg, later_id)["status"] == "pending_approval"
    assert handler.messages == []
    assert approvals_count("expired_rejected") == before + 1
    [event] = outcome_events(rcfg, due_id)
    assert (event["type"], event["data"]["status"]) == ("email.expired", "expired_rejected")
    assert outcome_events(rcfg, later_id) == []


def test_expiry_approves_once(rcfg, pool, reinjection):
    handler, _ = reinjection
    own = make_tenant(rcfg)
    message_id, raw = held(rcfg, own.agent)
    make_due(rcfg, message_id, "approve")
    before = approvals_count("expired_approved")
    expire_all(rcfg, pool)
    expire_all(rcfg, pool)
    [sent] = handler.messages
    assert sent.data.endswith(raw)
    assert sent.mail_from == verp.return_path(message_id, own.agent["domain"], verp.key(rcfg))
    found = row(rcfg, message_id)
    assert found["status"] == "expired_approved"
    assert found["provider_message_id"] == QUEUED_AS
    assert found["reviewed_by_user_id"] is None
    assert_wiped(found, raw_kept=True)
    assert approvals_count("expired_approved") == before + 1
    [event] = outcome_events(rcfg, message_id)
    assert (event["type"], event["data"]["status"]) == ("email.expired", "expired_approved")
    with pytest.raises(approval.NotPending) as late:
        approval.approve(pool, rcfg, message_id, owner_id=None, reviewer_user_id=None,
                         via="link")
    assert late.value.status == "expired_approved"


def test_failed_automatic_send_ends_expired_rejected_with_the_error(rcfg, pool, reinjection):
    handler, _ = reinjection
    handler.data_reply = "554 5.7.1 refused for the test"
    own = make_tenant(rcfg)
    message_id, _ = held(rcfg, own.agent)
    make_due(rcfg, message_id, "approve")
    expire_all(rcfg, pool)
    found = row(rcfg, message_id)
    assert found["status"] == "expired_rejected"
    assert "554 5.7.1 refused for the test" in found["rejection_reason"]
    [event] = outcome_events(rcfg, message_id)
    assert event["data"]["status"] == "expired_rejected"
    assert event["data"]["rejection_reason"] == found["rejection_reason"]
    assert_wiped(found, raw_kept=False)
    assert handler.messages == []


def test_a_postfix_outage_during_expiry_retries_later_instead_of_rejecting(
        rcfg, pool, reinjection):
    """Only a permanent refusal ends an automatic approval as expired_rejected:
    a brief outage (4xx, no answer) leaves the message for the next run."""
    handler, _ = reinjection
    own = make_tenant(rcfg)
    message_id, raw = held(rcfg, own.agent)
    make_due(rcfg, message_id, "approve")
    handler.data_reply = "421 4.3.0 service not available, for the test"
    expire_all(rcfg, pool)
    found = row(rcfg, message_id)
    assert found["status"] == "pending_approval"
    assert "421" in found["delivery_error"]
    assert outcome_events(rcfg, message_id) == []
    assert found["raw_message"] is not None
    handler.data_reply = ""
    expire_all(rcfg, pool)
    assert row(rcfg, message_id)["status"] == "expired_approved"
    [sent] = handler.messages
    assert sent.data.endswith(raw)


def test_a_database_failure_after_postfixs_250_neither_sends_twice_nor_drops(
        rcfg, pool, tenant, reinjection, monkeypatch):
    handler, _ = reinjection
    message_id, _ = held(rcfg, tenant.agent)

    def lost(*args: Any, **kwargs: Any) -> None:
        raise psycopg.OperationalError("the database went away after Postfix's 250")

    with monkeypatch.context() as patch:
        patch.setattr(approval.store, "finish_sent", lost)
        with pytest.raises(psycopg.OperationalError):
            approval.approve(pool, rcfg, message_id, owner_id=tenant.user["id"],
                             reviewer_user_id=tenant.user["id"], via="api")
    assert len(handler.messages) == 1  # Postfix has it: not dropped
    found = row(rcfg, message_id)
    # The decision was committed before Postfix was asked: it is not pending,
    # so neither another approval nor the expiry sends it a second time.
    assert (found["status"], found["delivery_status"]) == ("sent", "submitting")
    with pytest.raises(approval.NotPending):
        approval.approve(pool, rcfg, message_id, owner_id=tenant.user["id"],
                         reviewer_user_id=tenant.user["id"], via="link")
    make_due(rcfg, message_id, "approve")
    expire_all(rcfg, pool)
    assert len(handler.messages) == 1


def test_a_database_failure_after_an_automatic_approval_does_not_send_twice(
        rcfg, pool, reinjection, monkeypatch):
    handler, _ = reinjection
    own = make_tenant(rcfg)
    message_id, _ = held(rcfg, own.agent)
    make_due(rcfg, message_id, "approve")

    def lost(*args: Any, **kwargs: Any) -> None:
        raise psycopg.OperationalError("the database went away after Postfix's 250")

    with monkeypatch.context() as patch:
        patch.setattr(approval.store, "finish_sent", lost)
        with pytest.raises(psycopg.OperationalError):
            expire_all(rcfg, pool)
    assert len(handler.messages) == 1
    found = row(rcfg, message_id)
    assert (found["status"], found["delivery_status"]) == ("expired_approved", "submitting")
    expire_all(rcfg, pool)  # the next run, the database back
    assert len(handler.messages) == 1


def test_expiry_skips_a_message_someone_is_resolving(rcfg, pool, reinjection):
    """SKIP LOCKED: a row an approval has locked is not the worker's; once the
    approval commits, the worker finds it no longer due."""
    handler, _ = reinjection
    own = make_tenant(rcfg)
    message_id, _ = held(rcfg, own.agent)
    make_due(rcfg, message_id, "approve")
    locked, release_lock = threading.Event(), threading.Event()

    def resolving() -> None:
        with pool.connection() as conn, conn.transaction():
            approval.store.lock(conn, message_id, None)
            locked.set()
            release_lock.wait(10)

    holder = threading.Thread(target=resolving)
    holder.start()
    try:
        assert locked.wait(10)
        expire_all(rcfg, pool)
        assert row(rcfg, message_id)["status"] == "pending_approval"
    finally:
        release_lock.set()
        holder.join(10)
    assert handler.messages == []
    expire_all(rcfg, pool)
    assert row(rcfg, message_id)["status"] == "expired_approved"


def test_stored_attachments_round_trip():
    data = secrets.token_bytes(40)
    stored = {"attachments": [holds.attachment_json("a.bin", "application/octet-stream", data)]}
    assert approval.stored_attachments(stored) == [
        Attachment("a.bin", "application/octet-stream", data)]
    assert base64.b64decode(stored["attachments"][0]["data"]) == data
