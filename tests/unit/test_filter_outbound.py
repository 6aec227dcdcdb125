"""The content filter as the outbound gate, on a real database and a real
DNS server: it finds or makes each message's row, DKIM-signs with the
domain's key, reinjects with the VERP return path and records Postfix's
queue id, and answers 4xx whenever any of that fails."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from typing import Any

import dkim
import pytest
from filtersupport import (
    QUEUED_AS,
    RunningFilter,
    send,
    signature_tags,
)
from mailworld import zones_served
from servicesupport import free_port, write_config

from e2a.core import accounts, config, dkimkeys, outbound, release, verp
from e2a.core.db import open_pool, single_connection
from e2a.core.ids import new_id
from e2a.core.store import agents as agent_store
from e2a.core.store import messages as message_store


@pytest.fixture(scope="module")
def agent(cfg) -> dict[str, Any]:
    with single_connection(cfg) as conn:
        accounts.seed_shared_domain(conn, cfg)
        user = accounts.create_user(conn, f"filter-{secrets.token_hex(4)}@example.net")
        return accounts.register_agent(conn, cfg, user["id"],
                                       slug=f"sender-{secrets.token_hex(4)}")


@pytest.fixture(scope="module", autouse=True)
def zones(cfg, agent, tmp_path_factory):
    """The test zones plus the shared domain's DKIM key, as its owner publishes it."""
    with single_connection(cfg) as conn:
        domain = agent_store.domain_by_name(conn, cfg.mail.shared_domain)
    with zones_served(tmp_path_factory.mktemp("zones")) as server:
        server.add_txt(dkimkeys.record_host(domain["domain"], domain["dkim_selector"]),
                       dkimkeys.public_record(domain["dkim_public_key"]))
        server.reload()
        yield server




def message(sender: str, subject: str, *, to: str = "friend@elsewhere.example",
            extra: str = "") -> bytes:
    return (f"From: Sender Bot <{sender}>\r\n"
            f"To: {to}\r\n"
            "Cc: copy@elsewhere.example\r\n"
            f"Subject: {subject}\r\n"
            f"Message-ID: <{secrets.token_hex(8)}@agents.test.example>\r\n"
            "Date: Fri, 21 Nov 2025 10:00:00 +0000\r\n"
            f"{extra}"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "\r\n"
            "Hello there,\r\n.a line with a leading dot\r\n").encode()


def api_row(cfg, agent: dict[str, Any], message_id: str, raw: bytes) -> dict[str, Any]:
    """The row the API stores before it submits (type 'send')."""
    return {
        "id": message_id, "user_id": agent["user_id"], "agent_id": agent["id"], "type": "send",
        "recipient": "friend@elsewhere.example", "sender": agent["email"],
        "envelope_sender": verp.return_path(message_id, agent["domain"], verp.key(cfg)),
        "to_recipients": ["friend@elsewhere.example"], "cc": [], "bcc": [], "reply_to": [],
        "subject": "from the api", "email_message_id": "", "in_reply_to": "",
        "references_ids": [], "conversation_id": "conv_test", "raw_message": raw,
        "size_bytes": len(raw), "status": "sent", "delivery_status": "queued",
        "queue_id": "", "dedupe_key": None, "method": "smtp",
    }


def row(cfg, message_id: str) -> dict[str, Any] | None:
    with single_connection(cfg) as conn:
        return conn.execute("SELECT * FROM messages WHERE id = %s", (message_id,)).fetchone()


def rows_by_subject(cfg, subject: str) -> list[dict[str, Any]]:
    with single_connection(cfg) as conn:
        return conn.execute("SELECT * FROM messages WHERE subject = %s ORDER BY created_at",
                            (subject,)).fetchall()


def events_of(cfg, message_id: str) -> list[dict[str, Any]]:
    with single_connection(cfg) as conn:
        return conn.execute("SELECT * FROM events WHERE message_id = %s", (message_id,)
                            ).fetchall()


def test_api_message_is_signed_reinjected_with_its_return_path_and_recorded(
        cfg, agent, running, reinjection):
    handler, _ = reinjection
    message_id = new_id("msg")
    raw = message(agent["email"], "api send")
    with single_connection(cfg) as conn:
        assert message_store.insert_outbound(conn, api_row(cfg, agent, message_id, raw))
    return_path = verp.return_path(message_id, agent["domain"], verp.key(cfg))
    with running.client() as smtp:
        smtp.docmd("XFORWARD", "NAME=localhost ADDR=127.0.0.1 IDENT=SUBMIT1")
        code, reply = send(smtp, return_path, ["friend@elsewhere.example"], raw)
    assert code == 250, reply
    assert f"queued as {QUEUED_AS}" in reply
    [got] = handler.messages
    assert got.mail_from == return_path
    assert got.rcpt_tos == ["friend@elsewhere.example"]
    # The message as submitted, our signature on top; dkimpy verifies it
    # against the key the domain publishes.
    assert got.data.startswith(b"DKIM-Signature: ")
    assert got.data.endswith(raw)
    assert dkim.verify(got.data)
    tags = signature_tags(got.data)
    assert (tags["d"], tags["s"], tags["c"]) == (agent["domain"], "e2a", "relaxed/relaxed")
    signed = tags["h"].lower().split(":")
    assert signed.count("from") == 2  # oversigned: a From added later breaks it
    assert {"to", "cc", "subject", "date", "message-id", "mime-version",
            "content-type"} <= set(signed)
    assert "IDENT=SUBMIT1" in " ".join(handler.xforward)
    stored = row(cfg, message_id)
    assert (stored["type"], stored["status"]) == ("send", "sent")  # the API's row, kept
    assert stored["delivery_status"] == "sent"
    assert stored["provider_message_id"] == QUEUED_AS


def test_the_filter_confirms_an_api_message_whose_250_the_api_never_heard(
        cfg, agent, running, reinjection):
    """The API committed its row marked ``submitting`` and lost its database
    after Postfix's 250: the filter meeting the message takes the marker
    away and writes the event, once."""
    handler, _ = reinjection
    message_id = new_id("msg")
    raw = message(agent["email"], "api lost its 250")
    with single_connection(cfg) as conn:
        assert message_store.insert_outbound(conn, {
            **api_row(cfg, agent, message_id, raw), "delivery_status": "submitting"})
    return_path = verp.return_path(message_id, agent["domain"], verp.key(cfg))
    for _ in range(2):  # and Postfix's retry after a lost 250 of ours
        with running.client() as smtp:
            smtp.docmd("XFORWARD", "NAME=localhost ADDR=127.0.0.1 IDENT=LOST250")
            assert send(smtp, return_path, ["friend@elsewhere.example"], raw)[0] == 250
    assert len(handler.messages) == 1
    stored = row(cfg, message_id)
    assert (stored["delivery_status"], stored["queue_id"]) == ("sent", "LOST250")
    assert [e["type"] for e in events_of(cfg, message_id)] == ["email.sent"]


def test_a_body_changed_after_signing_fails_verification(cfg, agent, running, reinjection):
    handler, _ = reinjection
    raw = message(agent["email"], "tamper check")
    with running.client() as smtp:
        assert send(smtp, agent["email"], ["friend@elsewhere.example"], raw)[0] == 250
    [got] = handler.messages
    assert dkim.verify(got.data)
    assert not dkim.verify(got.data.replace(b"Hello there", b"Hello thera"))


def test_smtp_mail_of_an_agent_gets_a_row_a_return_path_and_an_event(
        cfg, agent, running, reinjection):
    handler, _ = reinjection
    raw = message(agent["email"], "plain smtp send")
    rcpts = ["friend@elsewhere.example", "copy@elsewhere.example", "hidden@elsewhere.example"]
    with running.client() as smtp:
        smtp.docmd("XFORWARD", "IDENT=SMTP1")
        assert send(smtp, agent["email"], rcpts, raw)[0] == 250
    [stored] = rows_by_subject(cfg, "plain smtp send")
    [got] = handler.messages
    assert got.mail_from == verp.return_path(stored["id"], agent["domain"], verp.key(cfg))
    assert dkim.verify(got.data)
    assert stored["direction"] == "outbound"
    assert (stored["type"], stored["status"]) == ("smtp", "sent")
    assert stored["delivery_status"] == "sent"
    assert stored["provider_message_id"] == QUEUED_AS
    assert stored["agent_id"] == agent["id"]
    assert stored["sender"] == agent["email"]
    assert stored["envelope_sender"] == got.mail_from
    assert stored["to_recipients"] == ["friend@elsewhere.example"]
    assert stored["cc"] == ["copy@elsewhere.example"]
    assert stored["bcc"] == ["hidden@elsewhere.example"]  # in the envelope only
    assert stored["queue_id"] == "SMTP1"
    assert bytes(stored["raw_message"]) == raw
    [event] = events_of(cfg, stored["id"])
    assert event["type"] == "email.sent"
    assert event["data"]["to"] == ["friend@elsewhere.example"]


def test_a_lost_250_does_not_send_twice(cfg, agent, running, reinjection):
    """Postfix sends a message again when our 250 did not reach it: the row
    of the first pass says it went, so it is not reinjected again."""
    handler, _ = reinjection
    raw = message(agent["email"], "lost answer")
    for _ in range(2):
        with running.client() as smtp:
            smtp.docmd("XFORWARD", "IDENT=LOST1")
            code, reply = send(smtp, agent["email"], ["friend@elsewhere.example"], raw)
        assert code == 250, reply
        assert f"queued as {QUEUED_AS}" in reply
    assert len(handler.messages) == 1
    assert len(rows_by_subject(cfg, "lost answer")) == 1


def test_retry_after_a_failed_reinjection_finds_the_same_row(cfg, agent, running, reinjection):
    handler, _ = reinjection
    raw = message(agent["email"], "retried")
    handler.data_reply = "452 4.3.1 Insufficient system storage"
    with running.client() as smtp:
        smtp.docmd("XFORWARD", "IDENT=RETRY1")
        assert send(smtp, agent["email"], ["friend@elsewhere.example"], raw)[0] == 451
    [first] = rows_by_subject(cfg, "retried")
    assert (first["delivery_status"], first["provider_message_id"]) == ("queued", "")
    handler.data_reply = ""
    with running.client() as smtp:
        smtp.docmd("XFORWARD", "IDENT=RETRY1")
        assert send(smtp, agent["email"], ["friend@elsewhere.example"], raw)[0] == 250
    [again] = rows_by_subject(cfg, "retried")
    assert again["id"] == first["id"]
    assert again["delivery_status"] == "sent"
    [got] = handler.messages
    assert got.mail_from == verp.return_path(first["id"], agent["domain"], verp.key(cfg))


def test_a_permanent_refusal_downstream_is_a_permanent_failure(cfg, agent, running,
                                                               reinjection):
    """552 after our DKIM signature made the message too big: it will never
    be taken, so Postfix must bounce it now (5xx), not retry it for days,
    and the row says why it failed."""
    handler, _ = reinjection
    raw = message(agent["email"], "too big once signed")
    handler.data_reply = "552 5.3.4 Message size exceeds fixed limit"
    try:
        with running.client() as smtp:
            smtp.docmd("XFORWARD", "IDENT=PERM1")
            code, reply = send(smtp, agent["email"], ["friend@elsewhere.example"], raw)
    finally:
        handler.data_reply = ""
    assert code == 552, reply
    assert reply.startswith("5.3.4") and "Message size exceeds fixed limit" in reply
    [row] = rows_by_subject(cfg, "too big once signed")
    assert row["delivery_status"] == "failed"
    assert "552 5.3.4 Message size exceeds fixed limit" in row["delivery_error"]
    assert handler.messages == []


def test_foreign_from_passes_unsigned_with_its_envelope(cfg, running, reinjection, caplog):
    handler, _ = reinjection
    raw = message("someone@relay.example", "foreign author")
    with caplog.at_level(logging.INFO, logger="e2a"), running.client() as smtp:
        assert send(smtp, "someone@relay.example", ["friend@elsewhere.example"], raw)[0] == 250
    [got] = handler.messages
    assert got.data == raw
    assert got.mail_from == "someone@relay.example"
    assert rows_by_subject(cfg, "foreign author") == []
    assert any("passed on unsigned" in r.getMessage() for r in caplog.records)


def test_a_return_path_without_a_row_is_recorded_under_its_id(cfg, agent, running, reinjection):
    """The API's commit failed after Postfix took the message: it still
    leaves recorded, under the id its return path carries."""
    handler, _ = reinjection
    message_id = new_id("msg")
    return_path = verp.return_path(message_id, agent["domain"], verp.key(cfg))
    with running.client() as smtp:
        assert send(smtp, return_path, ["friend@elsewhere.example"],
                    message(agent["email"], "orphan"))[0] == 250
    stored = row(cfg, message_id)
    assert stored is not None
    assert (stored["type"], stored["delivery_status"]) == ("smtp", "sent")
    assert handler.messages[0].mail_from == return_path


def test_the_filter_waits_for_the_api_transaction(cfg, agent, running, reinjection):
    """The API commits its row only after Postfix took the message, and the
    filter may see the message first: it waits for that commit and then
    uses the API's row instead of making one."""
    handler, _ = reinjection
    message_id = new_id("msg")
    raw = message(agent["email"], "race")
    results: list[int] = []

    def postfix() -> None:
        with running.client() as smtp:
            results.append(send(smtp, verp.return_path(message_id, agent["domain"], verp.key(cfg)),
                                ["friend@elsewhere.example"], raw)[0])

    with single_connection(cfg) as api:
        message_store.insert_outbound(api, api_row(cfg, agent, message_id, raw))  # not committed
        thread = threading.Thread(target=postfix)
        thread.start()
        time.sleep(1.0)
        assert handler.messages == []  # waiting for us
        api.commit()
    thread.join(20)
    assert results == [250]
    stored = row(cfg, message_id)
    assert (stored["type"], stored["delivery_status"]) == ("send", "sent")
    assert events_of(cfg, message_id) == []  # the filter made no row, so no event


def test_the_decision_gets_the_sending_agent(cfg, agent, running, reinjection, monkeypatch):
    seen: list[outbound.Outgoing] = []

    def decide(mail: outbound.Outgoing) -> outbound.Decision:
        seen.append(mail)
        return outbound.Decision.PASS

    monkeypatch.setattr(outbound, "decide", decide)
    with running.client() as smtp:
        assert send(smtp, agent["email"], ["friend@elsewhere.example"],
                    message(agent["email"], "decided"))[0] == 250
        assert send(smtp, "someone@relay.example", ["friend@elsewhere.example"],
                    message("someone@relay.example", "nobody's"))[0] == 250
    # The agent's: asked when its row is made (held or sent) and before it leaves.
    assert [m.agent["email"] if m.agent else None for m in seen] == [
        agent["email"], agent["email"], None]


def test_database_down_is_451_and_nothing_is_passed_on(cfg, agent, tmp_path, reinjection):
    handler, port = reinjection
    dead = config.load(write_config(
        cfg, tmp_path / "dead.toml",
        database_url=f"postgresql://nobody@127.0.0.1:{free_port()}/none"), env={})
    dead_pool = open_pool(dead, name="test-filter-dead", autocommit=True)
    running = RunningFilter(dead, dead_pool, port, db_timeout=1.0)
    try:
        with running.client() as smtp:
            code, reply = send(smtp, agent["email"], ["friend@elsewhere.example"],
                               message(agent["email"], "db down"))
        assert code == 451, reply
        assert reply.startswith("4.3.0")
        assert handler.messages == []
    finally:
        running.stop()
        dead_pool.close()


# -- sender identities, remote submission, signing keys ----------------------

def test_agent_mail_from_a_remote_client_is_refused(cfg, agent, running, reinjection):
    """SASL submission or a host of mynetworks: XFORWARD names a client that
    is not this host. An agent sender there would leave unheld and unsigned."""
    handler, _ = reinjection
    for envelope, author in ((agent["email"], agent["email"]),
                             ("someone@relay.example", agent["email"].upper()),
                             ("someone@relay.example",
                              f"someone@relay.example>, <{agent['email']}")):
        with running.client() as smtp:
            smtp.docmd("XFORWARD", "ADDR=192.0.2.10 NAME=remote.example PROTO=ESMTP")
            code, reply = send(smtp, envelope, ["friend@elsewhere.example"],
                               message(author, "remote agent"))
        assert (code, reply[:5]) == (550, "5.7.1"), (envelope, author, reply)
    assert handler.messages == []
    assert rows_by_subject(cfg, "remote agent") == []


def test_a_remote_client_without_an_agent_sender_passes_untouched(cfg, running, reinjection):
    handler, _ = reinjection
    raw = message("someone@relay.example", "remote human")
    with running.client() as smtp:
        smtp.docmd("XFORWARD", "ADDR=192.0.2.10 NAME=remote.example PROTO=ESMTP")
        assert send(smtp, "someone@relay.example", ["friend@elsewhere.example"], raw)[0] == 250
    [got] = handler.messages
    assert got.data == raw


def test_any_hitl_agent_among_the_sender_identities_holds(cfg, agent, running, reinjection):
    """The envelope and the first From name a free agent; a second From or
    the Sender names one under review: held, under the reviewed agent."""
    handler, _ = reinjection
    with single_connection(cfg) as conn:
        reviewed = accounts.register_agent(conn, cfg, agent["user_id"],
                                           slug=f"reviewed-{secrets.token_hex(4)}")
        agent_store.update_agent(conn, reviewed["id"], {"hitl_enabled": True})
    for n, extra in enumerate((f"Sender: {reviewed['email']}\r\n", "")):
        author = agent["email"] if extra else f"{agent['email']}>, <{reviewed['email']}"
        with running.client() as smtp:
            assert send(smtp, agent["email"], ["friend@elsewhere.example"],
                        message(author, f"two identities {n}", extra=extra))[0] == 250
        [stored] = rows_by_subject(cfg, f"two identities {n}")
        assert (stored["status"], stored["agent_id"]) == ("pending_approval", reviewed["id"])
    assert handler.messages == []


def test_a_from_on_a_domain_the_owner_does_not_own_is_not_signed(cfg, agent, running,
                                                                 reinjection):
    handler, _ = reinjection
    with single_connection(cfg) as conn:
        other = accounts.create_user(conn, f"other-{secrets.token_hex(4)}@example.net")
        theirs = accounts.register_agent(conn, cfg, other["id"],
                                         slug=f"theirs-{secrets.token_hex(4)}")
    # Another tenant's agent on the shared domain: its key is not ours to use.
    with running.client() as smtp:
        assert send(smtp, agent["email"], ["friend@elsewhere.example"],
                    message(theirs["email"], "borrowed author"))[0] == 250
    [got] = handler.messages
    assert b"DKIM-Signature:" not in got.data
    # The filter's own copy leaves without our internal conversation header.
    with running.client() as smtp:
        assert send(smtp, agent["email"], ["friend@elsewhere.example"],
                    message(agent["email"], "own author",
                            extra="X-E2A-Conversation-Id: conv_internal\r\n"))[0] == 250
    own = handler.messages[1].data
    assert signature_tags(own)["d"] == agent["domain"]
    assert b"X-E2A-Conversation-Id" not in own
    assert row(cfg, rows_by_subject(cfg, "own author")[0]["id"])["conversation_id"] \
        == "conv_internal"


def test_the_filter_logs_in_to_the_reinjection_service(cfg, agent, running, reinjection):
    handler, _ = reinjection
    with running.client() as smtp:
        assert send(smtp, agent["email"], ["friend@elsewhere.example"],
                    message(agent["email"], "logged in"))[0] == 250
    [login] = handler.logins
    assert release.valid_login(cfg.secrets.hmac_secret, login)
