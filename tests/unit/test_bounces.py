"""Bounces: Postfix's own DSNs (tests/fixtures/mail/dsn/) read, and the
message they report on marked bounced, through core.bounces and through the
milter, on a real database."""

from __future__ import annotations

import secrets
from typing import Any

import Milter
import pytest
from mailworld import MAIL, zones_served
from milterdriver import feed, installed

from e2a.core.accounts import registration as accounts
from e2a.core.db import open_pool, single_connection
from e2a.core.ids import new_id
from e2a.core.inbound import bounces
from e2a.core.mta import dsn, verp
from e2a.core.outbound import delivery
from e2a.core.store import messages as message_store
from e2a.core.store import outbound as outbound_store

DSN = MAIL / "dsn"


def golden(name: str) -> bytes:
    return (DSN / f"{name}.eml").read_bytes()


# -- reading DSNs -------------------------------------------------------------

def test_failed_report():
    [report] = dsn.reports(golden("failed"))
    assert (report.recipient, report.action, report.status, report.diagnostic,
            report.original_recipient, report.remote_mta) == (
        "bounce-me@elsewhere.test", "failed", "5.1.1",
        "550 5.1.1 <bounce-me@elsewhere.test>: Recipient address rejected: "
        "the sandbox bounces it", "bounce-me@elsewhere.test", "127.0.0.1")
    assert (report.outcome, report.bounce_type) == ("bounced", "permanent")


def test_partial_failure_reports_each_refused_recipient_only():
    reports = dsn.reports(golden("partial"))
    assert [(r.recipient, r.action) for r in reports] == [
        ("bounce-me@elsewhere.test", "failed"), ("bounce-me@other.test", "failed")]


def test_delay_warning_is_delayed_not_failed():
    [report] = dsn.reports(golden("delayed"))
    assert (report.recipient, report.action, report.status) == (
        "defer-me@elsewhere.test", "delayed", "4.2.0")
    assert (report.outcome, report.bounce_type) == ("deferred", "")


@pytest.mark.parametrize("raw", [
    b"From: someone@example.org\r\nSubject: Out of office\r\n\r\nBack Monday.\r\n",
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n"
    b"--x\r\nContent-Type: text/plain\r\n\r\nno status part\r\n--x--\r\n",
    b"Content-Type: multipart/report; boundary=\r\n\r\n\xff\xfe garbage",
    b"",
])
def test_what_is_no_dsn_has_no_reports(raw):
    assert dsn.reports(raw) == []


def test_detail_is_bounded():
    many = [{"recipient": f"r{i}@example.org", "status": "bounced", "dsn_status": "5.1.1",
             "action": "failed", "diagnostic": "550 " + "x" * 80} for i in range(50)]
    text = delivery.detail(many)
    assert len(text) == delivery.MAX_DETAIL
    assert text.endswith("...")


# -- recording them -----------------------------------------------------------

@pytest.fixture(scope="module")
def agent(cfg) -> dict[str, Any]:
    with single_connection(cfg) as conn:
        accounts.seed_shared_domain(conn, cfg)
        user = accounts.create_user(conn, f"bounce-{secrets.token_hex(4)}@example.net")
        return accounts.register_agent(conn, cfg, user["id"],
                                       slug=f"bounced-{secrets.token_hex(4)}")


@pytest.fixture(scope="module")
def pool(cfg):
    pool = open_pool(cfg, name="test-bounces", wait=True, autocommit=True)
    yield pool
    pool.close()


def sent_message(cfg, agent: dict[str, Any]) -> str:
    """An outbound message that left: what a bounce comes back for."""
    message_id = new_id("msg")
    with single_connection(cfg) as conn:
        message_store.insert_outbound(conn, {
            "id": message_id, "user_id": agent["user_id"], "agent_id": agent["id"],
            "type": "send", "recipient": "bounce-me@elsewhere.test", "sender": agent["email"],
            "envelope_sender": verp.return_path(message_id, agent["domain"], verp.key(cfg)),
            "to_recipients": ["bounce-me@elsewhere.test"], "cc": [], "bcc": [], "reply_to": [],
            "subject": "will bounce", "email_message_id": "", "in_reply_to": "",
            "references_ids": [], "conversation_id": "conv_bounce", "raw_message": b"x",
            "size_bytes": 1, "status": "sent", "delivery_status": "queued", "queue_id": "",
            "dedupe_key": None, "method": "smtp"})
        outbound_store.record_passed_on(conn, message_id, "QID1")
    return message_id


def state(cfg, message_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with single_connection(cfg) as conn:
        row = conn.execute("SELECT * FROM messages WHERE id = %s", (message_id,)).fetchone()
        events = conn.execute("SELECT * FROM events WHERE message_id = %s AND type = %s",
                              (message_id, "email.bounced")).fetchall()
    return row, events


def test_failed_dsn_marks_the_message_bounced_once(cfg, agent, pool):
    message_id = sent_message(cfg, agent)
    rcpt = verp.return_path(message_id, agent["domain"], verp.key(cfg))
    for _ in range(2):  # a DSN delivered twice is recorded once
        assert bounces.consume(pool, golden("failed"), [rcpt], verp.key(cfg)) == [rcpt]
    row, events = state(cfg, message_id)
    assert row["delivery_status"] == "bounced"
    assert row["delivery_error"] == (
        "bounce-me@elsewhere.test: bounced: 550 5.1.1 <bounce-me@elsewhere.test>: "
        "Recipient address rejected: the sandbox bounces it")
    assert row["provider_message_id"] == "QID1"  # the bounce keeps what was sent
    [event] = events
    assert event["user_id"] == agent["user_id"]
    assert event["agent_id"] == agent["id"]
    assert event["conversation_id"] == "conv_bounce"
    assert event["data"]["recipients"] == ["bounce-me@elsewhere.test"]
    assert event["data"]["status"] == "5.1.1"
    assert event["data"]["delivery_error"] == row["delivery_error"]
    assert (event["data"]["delivered_to"], event["data"]["bounce_type"]) == (
        "bounce-me@elsewhere.test", "permanent")


def test_only_reports_for_the_messages_own_recipients_count(cfg, agent, pool):
    # Anyone who learnt a return path could otherwise mark a message bounced
    # with a DSN about some address it was never sent to.
    message_id = sent_message(cfg, agent)
    rcpt = verp.return_path(message_id, agent["domain"], verp.key(cfg))
    stranger = golden("failed").replace(b"rfc822; bounce-me@elsewhere.test",
                                     b"rfc822; someone@unrelated.test")
    assert bounces.consume(pool, stranger, [rcpt], verp.key(cfg)) == [rcpt]
    row, events = state(cfg, message_id)
    assert (row["delivery_status"], events) == ("sent", [])
    # A report naming one of its recipients among others counts for that one only.
    assert bounces.consume(pool, golden("partial"), [rcpt], verp.key(cfg)) == [rcpt]
    row, events = state(cfg, message_id)
    assert row["delivery_status"] == "bounced"
    assert [e["data"]["recipients"] for e in events] == [["bounce-me@elsewhere.test"]]
    assert "other.test" not in row["delivery_error"]


def test_a_return_path_without_our_mac_is_consumed_and_marks_nothing(cfg, agent, pool):
    message_id = sent_message(cfg, agent)
    for rcpt in (f"bounces+{message_id}@{agent['domain']}",
                 f"bounces+{message_id}-{'0' * 16}@{agent['domain']}"):
        assert bounces.consume(pool, golden("failed"), [rcpt], verp.key(cfg)) == [rcpt]
    row, events = state(cfg, message_id)
    assert (row["delivery_status"], events) == ("sent", [])


def test_sent_after_bounced_stays_bounced(cfg, agent, pool):
    message_id = sent_message(cfg, agent)
    rcpt = verp.return_path(message_id, agent["domain"], verp.key(cfg))
    bounces.consume(pool, golden("failed"), [rcpt], verp.key(cfg))
    with single_connection(cfg) as conn:
        outbound_store.record_passed_on(conn, message_id, "QID2")
    assert state(cfg, message_id)[0]["delivery_status"] == "bounced"


def test_delay_warning_of_another_recipient_changes_nothing(cfg, agent, pool):
    message_id = sent_message(cfg, agent)
    rcpt = verp.return_path(message_id, agent["domain"], verp.key(cfg))
    assert bounces.consume(pool, golden("delayed"), [rcpt], verp.key(cfg)) == [rcpt]
    row, events = state(cfg, message_id)
    assert (row["delivery_status"], row["delivery_error"], events) == ("sent", "", [])


def test_unknown_message_is_consumed_never_bounced_back(cfg, agent, pool):
    rcpt = verp.return_path(new_id("msg"), agent["domain"], verp.key(cfg))
    assert bounces.consume(pool, golden("failed"), [rcpt], verp.key(cfg)) == [rcpt]


def test_return_path_on_another_domain_than_the_agents_is_not_its_bounce(cfg, agent, pool):
    """Someone who saw a message id cannot mark it bounced from a domain of
    another tenant: the return path names the agent's own domain."""
    message_id = sent_message(cfg, agent)
    other = f"d{secrets.token_hex(4)}.example.net"
    with single_connection(cfg) as conn:
        conn.execute("""INSERT INTO domains (id, user_id, domain, verification_token, verified)
                        VALUES (%s, %s, %s, 'token', true)""",
                     (new_id("dom"), agent["user_id"], other))
    rcpt = verp.return_path(message_id, other, verp.key(cfg))
    assert bounces.consume(pool, golden("failed"), [rcpt], verp.key(cfg)) == [rcpt]
    assert state(cfg, message_id)[0]["delivery_status"] == "sent"


def test_return_path_on_a_foreign_domain_is_left_alone(cfg, agent, pool):
    message_id = sent_message(cfg, agent)
    rcpt = verp.return_path(message_id, "elsewhere.example", verp.key(cfg))
    assert bounces.consume(pool, golden("failed"), [rcpt, "someone@example.org"],
                           verp.key(cfg)) == []
    assert state(cfg, message_id)[0]["delivery_status"] == "sent"


# -- through the milter -------------------------------------------------------

@pytest.fixture(scope="module")
def zones(tmp_path_factory):
    with zones_served(tmp_path_factory.mktemp("zones")) as server:
        yield server


@pytest.fixture
def milter(cfg, zones):
    with installed(cfg):
        yield


def test_milter_consumes_a_dsn_and_discards_it(cfg, agent, milter):
    message_id = sent_message(cfg, agent)
    rcpt = verp.return_path(message_id, agent["domain"], verp.key(cfg))
    out = feed(golden("failed"), "", [rcpt], client_ip="192.0.2.25", helo="mx.elsewhere.test")
    assert out.code == Milter.DISCARD
    assert out.deleted == [f"<{rcpt}>"]
    row, events = state(cfg, message_id)
    assert row["delivery_status"] == "bounced"
    assert len(events) == 1


def test_milter_consumes_the_return_path_and_passes_the_rest_on(cfg, agent, milter):
    message_id = sent_message(cfg, agent)
    rcpt = verp.return_path(message_id, agent["domain"], verp.key(cfg))
    out = feed(golden("failed"), "", [rcpt, "someone@elsewhere.example"])
    assert out.code == Milter.CONTINUE
    assert out.deleted == [f"<{rcpt}>"]
    assert state(cfg, message_id)[0]["delivery_status"] == "bounced"


def test_milter_stores_for_an_agent_and_consumes_a_return_path_in_one_message(
        cfg, agent, milter):
    message_id = sent_message(cfg, agent)
    rcpt = verp.return_path(message_id, agent["domain"], verp.key(cfg))
    out = feed(golden("failed"), "", [agent["email"], rcpt])
    assert out.code == Milter.DISCARD
    assert sorted(out.deleted) == sorted([f"<{agent['email']}>", f"<{rcpt}>"])
    with single_connection(cfg) as conn:
        inbound = conn.execute(
            "SELECT count(*) AS n FROM messages WHERE agent_id = %s AND direction = 'inbound'",
            (agent["id"],)).fetchone()["n"]
    assert inbound == 1


def test_milter_tempfails_a_dsn_when_the_database_fails(cfg, agent, milter, monkeypatch):
    message_id = sent_message(cfg, agent)
    rcpt = verp.return_path(message_id, agent["domain"], verp.key(cfg))

    def broken(*args: Any, **kwargs: Any) -> bool:
        raise RuntimeError("database gone")

    monkeypatch.setattr(outbound_store, "record_recipient", broken)
    out = feed(golden("failed"), "", [rcpt])
    assert out.code == Milter.TEMPFAIL
    assert out.deleted == []
    assert state(cfg, message_id)[0]["delivery_status"] == "sent"
