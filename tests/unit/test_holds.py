"""Holding an agent's outbound mail for approval (HITL), on a real database:
the one decision, the bodies and attachments taken from the MIME, the
deadline from the agent's TTL, idempotent holds; the content filter holding
instead of passing on (and leaving mail that did not come from this host
alone); the API answering 202 pending_approval, replays included."""

from __future__ import annotations

import base64
import logging
import secrets
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from apisupport import make_tenant
from filtersupport import send
from sendsupport import SEND, events_for, named_agent, received, reply_path, selftest_path
from submitsupport import sending_client

from e2a.core.accounts import registration as accounts
from e2a.core.db import single_connection
from e2a.core.ids import new_id
from e2a.core.mta import verp
from e2a.core.outbound import compose, holds
from e2a.core.outbound import decision as outbound
from e2a.core.runtime import metrics
from e2a.core.store import agents as agent_store
from e2a.core.store import messages as message_store

PDF = b"%PDF-1.7\n\x00\x01\x02\xff binary bytes"
TTL = 3600


# -- the decision --------------------------------------------------------------------


def _outgoing(agent: dict[str, Any] | None) -> outbound.Candidate:
    return outbound.Candidate("a@agents.test.example", ["b@example.org"], b"x", agent=agent)


def test_decide_holds_only_an_agent_with_hitl() -> None:
    assert outbound.decide(_outgoing({"hitl_enabled": True})) is outbound.Decision.HOLD
    assert outbound.decide(_outgoing({"hitl_enabled": False})) is outbound.Decision.PASS
    assert outbound.decide(_outgoing(None)) is outbound.Decision.PASS


@pytest.mark.parametrize("status", ["pending_approval", "rejected", "expired_rejected"])
def test_decide_keeps_a_message_held_once_whatever_the_agent_says_now(status) -> None:
    mail = outbound.Candidate("a@agents.test.example", ["b@example.org"], b"x",
                             agent={"hitl_enabled": False}, status=status)
    assert outbound.decide(mail) is outbound.Decision.HOLD


# -- what is kept of a message --------------------------------------------------------


def rich_message() -> bytes:
    msg = EmailMessage()
    msg["From"] = "bot@agents.test.example"
    msg["To"] = "friend@example.org"
    msg["Subject"] = "report"
    msg.set_content("Numbers are up, caf\u00e9.\n")
    msg.add_alternative("<p>Numbers are <b>up</b>.</p>\n", subtype="html")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="report.pdf")
    inner = EmailMessage()
    inner["Subject"] = "the original"
    inner.set_content("forwarded text\n")
    msg.add_attachment(inner)
    return msg.as_bytes()


def test_extract_takes_bodies_and_every_attachment_byte_for_byte() -> None:
    content = holds.extract(rich_message())
    assert content.body_text == "Numbers are up, caf\u00e9.\n"
    assert content.body_html == "<p>Numbers are <b>up</b>.</p>\n"
    pdf, attached_message = content.attachments
    assert (pdf["filename"], pdf["content_type"]) == ("report.pdf", "application/pdf")
    assert base64.b64decode(pdf["data"]) == PDF
    # An attached message stays one attachment, whole.
    assert attached_message["content_type"] == "message/rfc822"
    assert b"Subject: the original" in base64.b64decode(attached_message["data"])
    assert b"forwarded text" in base64.b64decode(attached_message["data"])
    assert "Numbers" not in repr(content)  # bodies never reach a log line


def test_extract_plain_message_and_an_unknown_charset() -> None:
    plain = holds.extract(b"Subject: hi\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
                          b"just text\r\n")
    assert (plain.body_text, plain.body_html, plain.attachments) == ("just text\n", "", [])
    odd = holds.extract(b"Subject: hi\r\nContent-Type: text/plain; charset=x-nonsense\r\n\r\n"
                        b"still readable\r\n")
    assert "still readable" in odd.body_text
    only_html = holds.extract(b"Subject: hi\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n")
    assert (only_html.body_text, only_html.body_html) == ("", "<p>hi</p>\n")


def test_a_held_body_keeps_no_nul_and_no_undecodable_bytes() -> None:
    # PostgreSQL's text columns refuse NUL: kept in the body, the filter
    # would answer 4xx for this message forever.
    raw = (b"From: bot@agents.example.com\r\nTo: a@elsewhere.test\r\n"
           b"Subject: junk\r\nContent-Type: text/plain\r\n\r\nbefore\x00after \xff\r\n")
    content = holds.extract(raw)
    assert content.body_text == "beforeafter \ufffd\n"


# -- holding rows ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def hitl_agent(cfg) -> dict[str, Any]:
    with single_connection(cfg) as conn:
        accounts.seed_shared_domain(conn, cfg)
        user = accounts.create_user(conn, f"hold-{secrets.token_hex(4)}@example.net")
        agent = accounts.register_agent(conn, cfg, user["id"],
                                        slug=f"held-{secrets.token_hex(4)}")
        agent_store.update_agent(conn, agent["id"], {"hitl_enabled": True,
                                                     "hitl_ttl_seconds": TTL})
        found = agent_store.agent_by_email(conn, agent["email"])
    assert found is not None and found["hitl_enabled"]
    return found


def outbound_row(cfg, agent: dict[str, Any], raw: bytes, **fields: Any) -> dict[str, Any]:
    message_id = new_id("msg")
    return {
        "id": message_id, "user_id": agent["user_id"], "agent_id": agent["id"], "type": "smtp",
        "recipient": "friend@example.org", "sender": agent["email"],
        "envelope_sender": verp.return_path(message_id, agent["domain"], verp.key(cfg)),
        "to_recipients": ["friend@example.org"], "cc": [], "bcc": [], "subject": "report",
        "email_message_id": "", "in_reply_to": "", "references_ids": [],
        "conversation_id": None, "raw_message": raw, "size_bytes": len(raw), "status": "sent",
        "delivery_status": "queued", "method": "smtp", **fields,
    }


def stored(cfg, message_id: str) -> dict[str, Any]:
    with single_connection(cfg) as conn:
        return conn.execute("SELECT * FROM messages WHERE id = %s", (message_id,)).fetchone()


def insert(cfg, row: dict[str, Any]) -> str:
    with single_connection(cfg) as conn:
        assert message_store.insert_outbound(conn, row) == row["id"]
    return row["id"]


def test_hold_keeps_the_message_its_content_and_a_deadline_from_the_ttl(cfg, hitl_agent):
    raw = rich_message()
    message_id = insert(cfg, outbound_row(cfg, hitl_agent, b"as first recorded"))
    before = datetime.now(UTC)
    with single_connection(cfg) as conn:
        held = holds.hold(conn, message_id, raw, hitl_agent)
    after = datetime.now(UTC)
    assert held.pending and held.message_id == message_id
    assert before + timedelta(seconds=TTL) - timedelta(seconds=1) <= held.approval_expires_at
    assert held.approval_expires_at <= after + timedelta(seconds=TTL) + timedelta(seconds=1)
    row = stored(cfg, message_id)
    assert row["status"] == "pending_approval"
    assert row["approval_expires_at"] == held.approval_expires_at
    assert bytes(row["raw_message"]) == raw  # what release will send
    assert row["body_text"] == "Numbers are up, caf\u00e9.\n"
    assert row["body_html"] == "<p>Numbers are <b>up</b>.</p>\n"
    assert [a["filename"] for a in row["attachments"]] == ["report.pdf", ""]
    assert base64.b64decode(row["attachments"][0]["data"]) == PDF
    assert row["notified_at"] is None  # the owner is still to be told
    assert row["provider_message_id"] in ("", None)  # nothing left


def test_holding_again_changes_nothing(cfg, hitl_agent):
    raw = rich_message()
    message_id = insert(cfg, outbound_row(cfg, hitl_agent, raw))
    with single_connection(cfg) as conn:
        first = holds.hold(conn, message_id, raw, hitl_agent)
    # The owner shortened the TTL meanwhile: a deadline once set stays.
    with single_connection(cfg) as conn:
        second = holds.hold(conn, message_id, raw, {**hitl_agent, "hitl_ttl_seconds": 5})
    assert second == first
    assert stored(cfg, message_id)["approval_expires_at"] == first.approval_expires_at


def test_the_api_draft_is_held_with_its_own_bodies_and_the_filter_keeps_them(cfg, hitl_agent):
    message_id = new_id("msg")
    draft = compose.Draft(
        sender=compose.Mailbox(hitl_agent["email"]), to=(compose.Mailbox("a@example.org"),),
        subject="draft", text="the draft's text", html="<p>the draft</p>",
        attachments=(compose.Attachment("a.pdf", "application/pdf", PDF),))
    composed = compose.compose(draft, message_id=message_id, domain=hitl_agent["domain"],
                               limits=compose.SendLimits.of(cfg))
    with single_connection(cfg) as conn:
        assert message_store.insert_outbound(conn, outbound_row(
            cfg, hitl_agent, composed.raw, id=message_id, status="pending_approval"))
        at_api = holds.hold_draft(conn, message_id, composed, hitl_agent)
    assert at_api.pending
    received_by_filter = b"Received: from localhost\r\n" + composed.raw
    with single_connection(cfg) as conn:
        at_filter = holds.hold(conn, message_id, received_by_filter, hitl_agent)
    assert at_filter == at_api
    row = stored(cfg, message_id)
    assert (row["body_text"], row["body_html"]) == ("the draft's text", "<p>the draft</p>")
    assert row["attachments"] == [{"filename": "a.pdf", "content_type": "application/pdf",
                                   "data": base64.b64encode(PDF).decode()}]
    # The draft the reviewer reads is what leaves, not Postfix's copy of it.
    assert bytes(row["raw_message"]) == composed.raw


@pytest.mark.parametrize("fields", [{"status": "rejected"},
                                    {"status": "sent", "provider_message_id": "4ABC"},
                                    {"status": "expired_approved", "provider_message_id": "5D"}])
def test_a_message_decided_on_is_not_held_again(cfg, hitl_agent, fields):
    raw = rich_message()
    message_id = insert(cfg, outbound_row(cfg, hitl_agent, b"as decided", **fields))
    if "provider_message_id" in fields:
        with single_connection(cfg) as conn:
            conn.execute("UPDATE messages SET provider_message_id = %s WHERE id = %s",
                         (fields["provider_message_id"], message_id))
    with single_connection(cfg) as conn:
        held = holds.hold(conn, message_id, raw, hitl_agent)
    assert not held.pending and held.status == fields["status"]
    row = stored(cfg, message_id)
    assert row["status"] == fields["status"]
    assert bytes(row["raw_message"]) == b"as decided"
    assert row["body_text"] is None and row["approval_expires_at"] is None


def test_a_held_message_keeps_the_content_it_was_held_with(cfg, hitl_agent):
    # What the reviewer reads is what leaves: no second submission for the
    # same row changes the held bytes, bodies or attachments.
    raw = rich_message()
    message_id = insert(cfg, outbound_row(cfg, hitl_agent, raw))
    with single_connection(cfg) as conn:
        first = holds.hold(conn, message_id, raw, hitl_agent)
    swapped = plain(hitl_agent["email"], "swapped after review")
    with single_connection(cfg) as conn:
        second = holds.hold(conn, message_id, swapped, hitl_agent)
    assert second == first
    row = stored(cfg, message_id)
    assert bytes(row["raw_message"]) == raw
    assert row["body_text"] == "Numbers are up, caf\u00e9.\n"


def test_holding_no_such_message_fails(cfg, hitl_agent):
    with single_connection(cfg) as conn, pytest.raises(LookupError):
        holds.hold(conn, new_id("msg"), rich_message(), hitl_agent)


# -- the content filter ----------------------------------------------------------------




def plain(sender: str, subject: str) -> bytes:
    return (f"From: Bot <{sender}>\r\nTo: friend@example.org\r\nSubject: {subject}\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            "Please hold me.\r\n").encode()


def rows_by_subject(cfg, subject: str) -> list[dict[str, Any]]:
    with single_connection(cfg) as conn:
        return conn.execute("SELECT * FROM messages WHERE subject = %s", (subject,)).fetchall()


def test_the_filter_holds_an_hitl_agents_mail_and_passes_nothing_on(
        cfg, hitl_agent, running, reinjection, caplog):
    handler, _ = reinjection
    raw = plain(hitl_agent["email"], "hold at the filter")
    holds_before = metrics.holds._value.get()
    held_before = metrics.outbound_messages.labels(status=metrics.HELD)._value.get()
    with caplog.at_level(logging.INFO, logger="e2a"):
        for _ in range(2):  # the second pass: Postfix retrying after a lost 250
            with running.client() as smtp:
                smtp.docmd("XFORWARD", "NAME=localhost ADDR=127.0.0.1 IDENT=HOLD1")
                code, reply = send(smtp, hitl_agent["email"], ["friend@example.org"], raw)
            assert code == 250, reply
            assert "held for approval" in reply
    assert handler.messages == []  # nothing reinjected
    [row] = rows_by_subject(cfg, "hold at the filter")
    assert (row["status"], row["type"]) == ("pending_approval", "smtp")
    assert row["body_text"] == "Please hold me.\n"
    assert bytes(row["raw_message"]) == raw
    assert row["approval_expires_at"] is not None
    # Not announced as sent: it has not left.
    assert [e["type"] for e in events_for(cfg, row["id"])] == ["email.pending_approval"]
    assert metrics.holds._value.get() == holds_before + 2
    assert metrics.outbound_messages.labels(status=metrics.HELD)._value.get() == held_before + 2
    held_lines = [r for r in caplog.records if r.getMessage() == "held for approval"]
    assert held_lines and held_lines[0].message_id == row["id"]
    assert all("Please hold me" not in r.getMessage() for r in caplog.records)


def test_a_return_path_we_did_not_sign_never_reaches_a_held_message(
        cfg, hitl_agent, running, reinjection):
    """Anyone on the host can submit with ``bounces+<id>@`` of a held message
    (sendmail -f): without the MAC only we make, it is a message of its own."""
    handler, _ = reinjection
    raw = plain(hitl_agent["email"], "held, then forged")
    with running.client() as smtp:
        smtp.docmd("XFORWARD", "NAME=localhost ADDR=127.0.0.1 IDENT=FORGE1")
        assert send(smtp, hitl_agent["email"], ["friend@example.org"], raw)[0] == 250
    [held] = rows_by_subject(cfg, "held, then forged")
    forged = plain(hitl_agent["email"], "the swapped content")
    for return_path in (f"bounces+{held['id']}@{hitl_agent['domain']}",
                        f"bounces+{held['id']}-{'0' * 16}@{hitl_agent['domain']}"):
        with running.client() as smtp:
            smtp.docmd("XFORWARD", "NAME=localhost ADDR=127.0.0.1 IDENT=FORGE2")
            code, reply = send(smtp, return_path, ["friend@example.org"], forged)
        assert code == 250, reply
        assert held["id"] not in reply
    row = stored(cfg, held["id"])
    assert bytes(row["raw_message"]) == raw
    assert row["status"] == "pending_approval"
    assert handler.messages == []


def test_mail_from_elsewhere_naming_an_agent_is_refused(
        cfg, hitl_agent, running, reinjection):
    """The internet's mail meets the filter too (main.cf content_filter), and
    so does a remote submission: one naming an agent as its sender would
    leave unheld and unsigned in the agent's name, so it is refused (5.7.1),
    never held, signed or recorded as the agent's."""
    handler, _ = reinjection
    raw = plain(hitl_agent["email"], "spoofed from outside")
    with running.client() as smtp:
        smtp.docmd("XFORWARD", "NAME=mx.evil.example ADDR=203.0.113.9 SOURCE=REMOTE")
        code, reply = send(smtp, hitl_agent["email"], ["someone@example.org"], raw)
    assert (code, reply[:5]) == (550, "5.7.1")
    assert handler.messages == []
    assert rows_by_subject(cfg, "spoofed from outside") == []


# -- the API ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(cfg, postfix, tmp_path_factory):
    with sending_client(cfg, postfix, tmp_path_factory.mktemp("send")) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def tenant(cfg):
    return make_tenant(cfg)


@pytest.fixture(scope="module")
def api_agent(cfg, tenant) -> dict[str, Any]:
    agent = named_agent(cfg, tenant)
    with single_connection(cfg) as conn:
        agent_store.update_agent(conn, agent["id"], {"hitl_enabled": True,
                                                     "hitl_ttl_seconds": TTL})
    return agent


def assert_held(result: Any) -> str:
    assert result.status_code == 202, result.text
    assert set(result.json) == {"message_id", "status", "method", "approval_expires_at"}
    assert result.json["status"] == "pending_approval"
    assert result.json["method"] == "smtp"
    expires = datetime.fromisoformat(result.json["approval_expires_at"].replace("Z", "+00:00"))
    assert abs(expires - datetime.now(UTC) - timedelta(seconds=TTL)) < timedelta(seconds=60)
    return result.json["message_id"]


def test_api_send_answers_202_and_still_submits_to_postfix(cfg, client, tenant, api_agent,
                                                           postfix):
    postfix.reset()
    body = {"from": api_agent["email"], "to": ["alice@example.org"], "subject": "held send",
            "body": "Numbers are up.", "html_body": "<p>up</p>",
            "attachments": [{"filename": "r.pdf", "content_type": "application/pdf",
                             "data": base64.b64encode(PDF).decode()}]}
    headers = {**tenant.auth, "Idempotency-Key": f"hold-{secrets.token_hex(4)}"}
    result = client.simulate_post(SEND, json=body, headers=headers)
    message_id = assert_held(result)
    # The hold is the filter's to enforce: Postfix's submit service got it.
    got = postfix.only()
    assert verp.parse(got.mail_from, verp.key(cfg)) == message_id
    row = stored(cfg, message_id)
    assert row["status"] == "pending_approval"
    assert (row["body_text"], row["body_html"]) == ("Numbers are up.", "<p>up</p>")
    assert base64.b64decode(row["attachments"][0]["data"]) == PDF
    assert row["approval_expires_at"].isoformat().startswith(
        result.json["approval_expires_at"][:19])
    assert [e["type"] for e in events_for(cfg, message_id)] == ["email.pending_approval"]
    # The same request again: the same 202, nothing submitted twice.
    again = client.simulate_post(SEND, json=body, headers=headers)
    assert (again.status_code, again.json) == (202, result.json)
    assert len(postfix.received) == 1


def test_reply_and_test_mail_are_held_alike(cfg, client, tenant, api_agent, postfix):
    inbound_id = received(cfg, api_agent)
    reply = client.simulate_post(reply_path(api_agent["email"], inbound_id),
                                 json={"body": "Thanks"}, headers=tenant.auth)
    assert stored(cfg, assert_held(reply))["type"] == "reply"
    selftest = client.simulate_post(selftest_path(api_agent["email"]), headers=tenant.auth)
    assert stored(cfg, assert_held(selftest))["type"] == "test"


@pytest.mark.parametrize("status", ["pending_approval", "rejected"])
def test_an_api_message_held_or_rejected_never_passes_once_hitl_is_off(
        cfg, running, reinjection, status):
    """HITL turned off (or the message rejected) while the held message was
    still in Postfix's queue: the filter does not send it."""
    handler, _ = reinjection
    with single_connection(cfg) as conn:
        user = accounts.create_user(conn, f"off-{secrets.token_hex(4)}@example.net")
        agent = accounts.register_agent(conn, cfg, user["id"], slug=f"off-{secrets.token_hex(4)}")
    raw = plain(agent["email"], f"held then hitl off {status}")
    message_id = insert(cfg, outbound_row(cfg, agent, raw, type="send", status=status))
    with running.client() as smtp:
        smtp.docmd("XFORWARD", "NAME=localhost ADDR=127.0.0.1 IDENT=OFF1")
        code, reply = send(smtp, verp.return_path(message_id, agent["domain"], verp.key(cfg)),
                           ["friend@example.org"], raw)
    assert code == 250 and "held for approval" in reply, reply
    assert handler.messages == []
    assert stored(cfg, message_id)["status"] == status
