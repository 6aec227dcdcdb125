"""Each recipient's fate from Postfix's DSNs (core/outbound/delivery.py via
core/inbound/bounces.consume): golden DSNs as Postfix 3.7 wrote them in the
sandbox (tests/fixtures/mail/dsn/README), a real database."""

from __future__ import annotations

import contextlib
import secrets
import threading
from typing import Any

import pytest
from mailworld import MAIL

from e2a.core.accounts import registration as accounts
from e2a.core.db import open_pool, single_connection
from e2a.core.ids import new_id
from e2a.core.inbound import bounces
from e2a.core.mta import dsn, verp
from e2a.core.outbound import delivery
from e2a.core.store import messages as message_store
from e2a.core.store import outbound as outbound_store

DSN = MAIL / "dsn"
FRIEND = "friend-golden@elsewhere.test"
REFUSED = "bounce-golden@elsewhere.test"
GOLDEN_ENVID = "msg_0123456789abcdef0123456789abcdef"


def golden(name: str) -> bytes:
    return (DSN / f"{name}.eml").read_bytes()


def about(raw: bytes, message_id: str, *, old: str = GOLDEN_ENVID) -> bytes:
    """A golden DSN as it would come back for ``message_id`` (its ENVID)."""
    return raw.replace(old.encode(), message_id.encode())


@pytest.fixture(scope="module")
def agent(cfg) -> dict[str, Any]:
    with single_connection(cfg) as conn:
        accounts.seed_shared_domain(conn, cfg)
        user = accounts.create_user(conn, f"dsn-{secrets.token_hex(4)}@example.net")
        return accounts.register_agent(conn, cfg, user["id"],
                                       slug=f"reports-{secrets.token_hex(4)}")


@pytest.fixture(scope="module")
def pool(cfg):
    pool = open_pool(cfg, name="test-delivery", wait=True, autocommit=True)
    yield pool
    pool.close()


def sent_message(cfg, agent: dict[str, Any], to: list[str]) -> str:
    message_id = new_id("msg")
    with single_connection(cfg) as conn:
        message_store.insert_outbound(conn, {
            "id": message_id, "user_id": agent["user_id"], "agent_id": agent["id"],
            "type": "send", "recipient": to[0], "sender": agent["email"],
            "envelope_sender": verp.return_path(message_id, agent["domain"], verp.key(cfg)),
            "to_recipients": to, "cc": [], "bcc": [], "reply_to": [],
            "subject": "fates", "email_message_id": f"<{message_id}@example.net>",
            "in_reply_to": "", "references_ids": [], "conversation_id": None,
            "raw_message": b"x", "size_bytes": 1, "status": "sent",
            "delivery_status": "queued", "queue_id": "", "dedupe_key": None,
            "method": "smtp"})
        delivery.passed_on(conn, message_id, "QID1")
    return message_id


def consume(cfg, pool, agent, message_id: str, raw: bytes) -> None:
    rcpt = verp.return_path(message_id, agent["domain"], verp.key(cfg))
    assert bounces.consume(pool, raw, [rcpt], verp.key(cfg)) == [rcpt]


def state(cfg, message_id: str) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    with single_connection(cfg) as conn:
        row = conn.execute("SELECT * FROM messages WHERE id = %s", (message_id,)).fetchone()
        events = conn.execute("SELECT * FROM events WHERE message_id = %s ORDER BY created_at",
                              (message_id,)).fetchall()
        steps = conn.execute("SELECT reason_code, recipient FROM message_lifecycle "
                             "WHERE message_id = %s ORDER BY occurred_at, id",
                             (message_id,)).fetchall()
    return row, events, [f"{s['reason_code']} {s['recipient']}".strip() for s in steps]


# -- reading -----------------------------------------------------------------

def test_relayed_report_is_a_delivery_with_the_remote_reply():
    [report] = dsn.reports(golden("relayed"))
    assert (report.recipient, report.action, report.status, report.diagnostic) == (
        FRIEND, "relayed", "2.0.0", "250 2.0.0 captured")
    assert (report.outcome, report.envid, report.original_recipient) == (
        "delivered", GOLDEN_ENVID, FRIEND)
    assert report.remote_mta


def test_failure_with_a_4xx_status_is_a_transient_bounce():
    raw = golden("failed").replace(b"Status: 5.1.1", b"Status: 4.4.1")
    [report] = dsn.reports(raw)
    assert (report.outcome, report.bounce_type) == ("bounced", "transient")


def test_xtext_round_trip():
    address = "a+b=c@example.org"
    assert dsn.xtext(address) == "a+2Bb+3Dc@example.org"
    assert dsn.unxtext(dsn.xtext(address)) == address


def test_a_huge_report_is_read_within_bounds():
    block = b"Final-Recipient: rfc822; x@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
    raw = (b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"
           b"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
           b"Reporting-MTA: dns; x\r\n\r\n" + block * 5000 + b"--b--\r\n")
    assert len(dsn.reports(raw)) == dsn.MAX_REPORTS


# -- recording ---------------------------------------------------------------

def test_relayed_report_marks_the_recipient_delivered_once(cfg, agent, pool):
    message_id = sent_message(cfg, agent, [FRIEND])
    for _ in range(2):  # the same DSN twice changes nothing the second time
        consume(cfg, pool, agent, message_id, about(golden("relayed"), message_id))
    row, events, steps = state(cfg, message_id)
    assert row["delivery_status"] == "delivered"
    assert row["delivery_error"] == f"{FRIEND}: delivered: 250 2.0.0 captured"
    assert [e["type"] for e in events] == ["email.delivered"]
    assert events[0]["data"]["delivered_to"] == FRIEND
    assert events[0]["data"]["smtp_detail"] == "250 2.0.0 captured"
    assert steps == ["submission.upstream_accepted",
                     f"delivery.recipient_server_accepted {FRIEND}"]


def test_a_report_naming_another_message_changes_nothing(cfg, agent, pool):
    # Original-Envelope-Id is the id we gave Postfix: a report carrying
    # another one is not about this message, whatever return path it came to.
    message_id = sent_message(cfg, agent, [FRIEND])
    consume(cfg, pool, agent, message_id, golden("relayed"))  # ENVID of another message
    row, events, _ = state(cfg, message_id)
    assert (row["delivery_status"], events) == ("sent", [])


def test_deferred_then_delivered(cfg, agent, pool):
    message_id = sent_message(cfg, agent, ["defer-me@elsewhere.test"])
    consume(cfg, pool, agent, message_id, golden("delayed"))
    row, events, steps = state(cfg, message_id)
    assert (row["delivery_status"], events) == ("deferred", [])  # no event for a wait
    assert "defer-me@elsewhere.test: deferred: 450 4.2.0" in row["delivery_error"]
    assert steps[-1] == "delivery.temporary_delay defer-me@elsewhere.test"
    # A delay warning repeated is no new step.
    consume(cfg, pool, agent, message_id, golden("delayed"))
    assert state(cfg, message_id)[2] == steps
    relayed = golden("relayed").replace(FRIEND.encode(), b"defer-me@elsewhere.test")
    consume(cfg, pool, agent, message_id, about(relayed, message_id))
    row, events, steps = state(cfg, message_id)
    assert row["delivery_status"] == "delivered"
    assert [e["type"] for e in events] == ["email.delivered"]
    assert steps[-1] == "delivery.recipient_server_accepted defer-me@elsewhere.test"
    # A late delay warning does not take a final fate back.
    consume(cfg, pool, agent, message_id, golden("delayed"))
    assert state(cfg, message_id)[0]["delivery_status"] == "delivered"


def test_the_message_is_delivered_once_every_recipient_is(cfg, agent, pool):
    other = "friend-two@elsewhere.test"
    message_id = sent_message(cfg, agent, [FRIEND, other])
    consume(cfg, pool, agent, message_id, about(golden("relayed"), message_id))
    assert state(cfg, message_id)[0]["delivery_status"] == "sent"
    second = golden("relayed").replace(FRIEND.encode(), other.encode())
    consume(cfg, pool, agent, message_id, about(second, message_id))
    row, events, _ = state(cfg, message_id)
    assert row["delivery_status"] == "delivered"
    assert sorted(e["data"]["delivered_to"] for e in events) == sorted([FRIEND, other])


def test_one_bounced_one_delivered(cfg, agent, pool, monkeypatch):
    hard: list[delivery.HardBounce] = []
    monkeypatch.setattr(delivery, "hard_bounce_recorded", lambda conn, b: hard.append(b))
    message_id = sent_message(cfg, agent, [FRIEND, REFUSED])
    for _ in range(2):
        consume(cfg, pool, agent, message_id, about(golden("relayed"), message_id))
        consume(cfg, pool, agent, message_id, about(golden("refused"), message_id))
    row, events, steps = state(cfg, message_id)
    assert row["delivery_status"] == "bounced"
    assert f"{FRIEND}: delivered: 250 2.0.0 captured" in row["delivery_error"]
    assert f"{REFUSED}: bounced: 550 5.1.1" in row["delivery_error"]
    assert sorted(e["type"] for e in events) == ["email.bounced", "email.delivered"]
    assert [(b.recipient, b.agent_id, b.message_id) for b in hard] == [
        (REFUSED, agent["id"], message_id)]
    assert f"delivery.permanent_bounce {REFUSED}" in steps
    # Postfix's late answer to the reinjection keeps the reported fate.
    with single_connection(cfg) as conn:
        delivery.passed_on(conn, message_id, "QID1")
    assert state(cfg, message_id)[0]["delivery_status"] == "bounced"


def test_a_transient_bounce_is_no_hard_bounce(cfg, agent, pool, monkeypatch):
    hard: list[delivery.HardBounce] = []
    monkeypatch.setattr(delivery, "hard_bounce_recorded", lambda conn, b: hard.append(b))
    message_id = sent_message(cfg, agent, [REFUSED])
    expired = golden("refused").replace(b"Status: 5.1.1", b"Status: 4.4.1")
    consume(cfg, pool, agent, message_id, about(expired, message_id))
    row, events, steps = state(cfg, message_id)
    assert row["delivery_status"] == "bounced"
    assert events[0]["data"]["bounce_type"] == "transient"
    assert steps[-1] == f"delivery.transient_bounce {REFUSED}"
    assert hard == []


def test_failed_before_it_left_is_one_email_failed(cfg, agent, pool):
    message_id = sent_message(cfg, agent, [FRIEND])
    with single_connection(cfg) as conn:
        for _ in range(2):
            delivery.failed(conn, message_id, "552 5.3.4 Message size exceeds fixed limit")
    row, events, steps = state(cfg, message_id)
    assert row["delivery_status"] == "failed"
    [event] = events
    assert (event["type"], event["data"]["reason"]) == (
        "email.failed", "552 5.3.4 Message size exceeds fixed limit")
    assert steps[-1] == "submission.provider_rejected"



def test_postfixs_bounce_of_a_message_we_refused_is_no_recipients_bounce(cfg, agent, pool,
                                                                        monkeypatch):
    # The reinjection refused it for good (552, say): the filter answered the
    # 5xx, Postfix bounces the message to the return path with the
    # recipients named. Their servers never saw it: no hard bounce.
    hard: list[delivery.HardBounce] = []
    monkeypatch.setattr(delivery, "hard_bounce_recorded", lambda conn, b: hard.append(b))
    message_id = sent_message(cfg, agent, [REFUSED])
    with single_connection(cfg) as conn:
        delivery.failed(conn, message_id, "552 5.3.4 Message size exceeds fixed limit")
    consume(cfg, pool, agent, message_id, about(golden("refused"), message_id))
    row, events, _ = state(cfg, message_id)
    assert row["delivery_status"] == "failed"
    assert [e["type"] for e in events] == ["email.failed"]
    assert hard == []


def test_two_reports_on_one_message_at_once_add_up(cfg, agent, pool, monkeypatch):
    # Postfix writes one DSN per outcome; two milter connections may hand
    # them over at the same moment. Each must see the other's recipient.
    message_id = sent_message(cfg, agent, [FRIEND, REFUSED])
    both_inside = threading.Barrier(2, timeout=2)
    record = outbound_store.record_recipient

    def record_then_meet(*args: Any, **kwargs: Any) -> bool:
        changed = record(*args, **kwargs)
        with contextlib.suppress(threading.BrokenBarrierError):
            both_inside.wait()  # only ever reached together without the row lock
        return changed

    monkeypatch.setattr(outbound_store, "record_recipient", record_then_meet)
    threads = [threading.Thread(target=consume, args=(cfg, pool, agent, message_id,
                                                      about(golden(name), message_id)))
               for name in ("relayed", "refused")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    row, events, _ = state(cfg, message_id)
    assert row["delivery_status"] == "bounced"
    assert f"{FRIEND}: delivered" in row["delivery_error"]
    assert f"{REFUSED}: bounced" in row["delivery_error"]
    # (and the hard bounce's suppression, core/outbound/brakes.hard_bounced)
    assert sorted(e["type"] for e in events) == [
        "domain.suppression_added", "email.bounced", "email.delivered"]
