"""What one outbound message costs PostgreSQL on the mail side, counted on
the wire (tests/statementlog.py): the content filter's pass, the milter's
look at the reinjected copy, and the milter's consumption of the success
DSN Postfix sends back for it. Each figure is pinned: a statement more is
a round trip more for every message an agent sends."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import Milter
import pytest
from filtersupport import QUEUED_AS, RunningFilter, send
from mailworld import MAIL
from milterdriver import feed, installed
from statementlog import StatementLog

from e2a.core.accounts import registration as accounts
from e2a.core.db import single_connection
from e2a.core.ids import new_id
from e2a.core.mta import verp
from e2a.core.store import messages as message_store
from e2a.milter.handler import InboundMilter

RECIPIENT = "friend@elsewhere.example"


@pytest.fixture(scope="module")
def agent(cfg) -> dict[str, Any]:
    with single_connection(cfg) as conn:
        accounts.seed_shared_domain(conn, cfg)
        user = accounts.create_user(conn, f"count-{secrets.token_hex(4)}@example.net")
        return accounts.register_agent(conn, cfg, user["id"],
                                       slug=f"counted-{secrets.token_hex(4)}")


@pytest.fixture
def counted(pool) -> StatementLog:
    return StatementLog(pool)


@pytest.fixture
def counted_filter(cfg, counted, reinjection) -> Iterator[RunningFilter]:
    f = RunningFilter(cfg, counted, reinjection[1])  # type: ignore[arg-type]
    yield f
    f.stop()


@pytest.fixture
def counted_milter(cfg, counted) -> Iterator[StatementLog]:
    with installed(cfg):
        real = InboundMilter.pool
        InboundMilter.pool = counted  # type: ignore[assignment]
        try:
            yield counted
        finally:
            InboundMilter.pool = real


def message(sender: str, subject: str) -> bytes:
    return (f"From: Counted Bot <{sender}>\r\n"
            f"To: {RECIPIENT}\r\n"
            f"Subject: {subject}\r\n"
            f"Message-ID: <{secrets.token_hex(8)}@agents.test.example>\r\n"
            "Date: Fri, 21 Nov 2025 10:00:00 +0000\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "\r\n"
            "Hello there.\r\n").encode()


def api_message(cfg, agent: dict[str, Any], subject: str) -> tuple[str, bytes]:
    """A message as the API records it before submitting it: its row, its raw bytes."""
    message_id = new_id("msg")
    raw = message(agent["email"], subject)
    with single_connection(cfg) as conn:
        assert message_store.insert_outbound(conn, {
            "id": message_id, "user_id": agent["user_id"], "agent_id": agent["id"],
            "type": "send", "recipient": RECIPIENT, "sender": agent["email"],
            "envelope_sender": verp.return_path(message_id, agent["domain"], verp.key(cfg)),
            "to_recipients": [RECIPIENT], "cc": [], "bcc": [], "reply_to": [],
            "subject": subject, "email_message_id": "", "in_reply_to": "",
            "references_ids": [], "conversation_id": "conv_count", "raw_message": raw,
            "size_bytes": len(raw), "status": "sent", "delivery_status": "queued",
            "queue_id": "", "dedupe_key": None, "method": "smtp"})
    return message_id, raw


def sent_through_filter(cfg, agent: dict[str, Any], running: RunningFilter,
                        subject: str) -> str:
    message_id, raw = api_message(cfg, agent, subject)
    with running.client() as smtp:
        smtp.docmd("XFORWARD", "NAME=localhost ADDR=127.0.0.1 IDENT=COUNT1")
        code, reply = send(smtp, verp.return_path(message_id, agent["domain"], verp.key(cfg)),
                           [RECIPIENT], raw)
    assert code == 250, reply
    return message_id


def success_dsn(message_id: str) -> bytes:
    """Postfix's success report (the golden one) about ``message_id`` to RECIPIENT."""
    return ((MAIL / "dsn" / "relayed.eml").read_bytes()
            .replace(b"msg_0123456789abcdef0123456789abcdef", message_id.encode())
            .replace(b"friend-golden@elsewhere.test", RECIPIENT.encode()))


def delivery_of(cfg, message_id: str) -> tuple[str, list[str], list[str]]:
    with single_connection(cfg) as conn:
        status = conn.execute("SELECT delivery_status FROM messages WHERE id = %s",
                              (message_id,)).fetchone()["delivery_status"]
        steps = [r["reason_code"] for r in conn.execute(
            "SELECT reason_code FROM message_lifecycle WHERE message_id = %s "
            "ORDER BY occurred_at, id", (message_id,))]
        events = [r["type"] for r in conn.execute(
            "SELECT type FROM events WHERE message_id = %s ORDER BY created_at, id",
            (message_id,))]
    return status, steps, events


def test_the_filter_passes_an_api_message_on_in_few_statements(
        cfg, agent, counted, counted_filter, reinjection):
    sent_through_filter(cfg, agent, counted_filter, "warm")  # prepared statements, pool
    counted.clear()
    message_id = sent_through_filter(cfg, agent, counted_filter, "counted api send")
    assert len(reinjection[0].messages) == 2
    # Its agent (read once) and row, no transaction (the API confirmed it
    # already: nothing to write), the suppressions, the signing key with the
    # right to use it, and the queue id with its lifecycle step.
    assert len(counted) == 5, counted.listing()
    assert delivery_of(cfg, message_id)[:2] == ("sent", ["submission.upstream_accepted"])


def test_the_filter_passes_an_agents_smtp_message_on_in_few_statements(
        cfg, agent, counted, counted_filter, reinjection):
    for subject in ("warm smtp", "counted smtp send"):
        counted.clear()
        with counted_filter.client() as smtp:
            smtp.docmd("XFORWARD", "NAME=localhost ADDR=127.0.0.1 IDENT=COUNT2")
            code, reply = send(smtp, agent["email"], [RECIPIENT], message(agent["email"],
                                                                          subject))
        assert code == 250, reply
    assert QUEUED_AS in reply
    # Its agent looked up, its row and event (with the workers' NOTIFY) in
    # one transaction, the suppressions, the brakes' count in its own, the
    # signing key, the queue id with its lifecycle step.
    assert len(counted) == 11, counted.listing()


def test_the_milter_looks_at_a_reinjected_message_in_one_statement(
        cfg, agent, counted_milter):
    message_id, raw = api_message(cfg, agent, "reinjected")
    return_path = verp.return_path(message_id, agent["domain"], verp.key(cfg))
    for _ in range(2):
        counted_milter.clear()
        out = feed(raw, return_path, [RECIPIENT], daemon_name=cfg.milter.own_daemon_name)
        assert out.code == Milter.CONTINUE
    # Its recipients looked up; no agent among them: whose it is matters to nobody.
    assert len(counted_milter) == 1, counted_milter.listing()


def test_the_milter_records_a_success_dsn_in_few_statements(cfg, agent, counted_milter):
    for n in range(2):
        message_id, _ = api_message(cfg, agent, f"reported {n}")
        return_path = verp.return_path(message_id, agent["domain"], verp.key(cfg))
        counted_milter.clear()
        out = feed(success_dsn(message_id), "", [return_path], client_ip="",
                   daemon_name="bounce")
        assert out.code == Milter.DISCARD
    assert delivery_of(cfg, message_id) == (
        "delivered", ["delivery.recipient_server_accepted"], ["email.delivered"])
    # The message's row locked, its recipient recorded and read back, its
    # fate with lifecycle step, event and NOTIFY: one transaction; no agent
    # looked up (the DSN has no recipient left).
    assert len(counted_milter) == 5, counted_milter.listing()


def test_no_statement_of_an_agents_message_is_converted_afresh(
        cfg, agent, monkeypatch, counted_filter, reinjection):
    """psycopg keeps a query's conversion (placeholders, parameter order)
    only for queries of at most 4096 characters: a longer one is parsed
    again on every call, for every message."""
    import psycopg._queries as queries
    afresh: list[str] = []
    convert = queries._query2pg_nocache

    def recorded(query: bytes, encoding: str) -> Any:
        afresh.append(query[:60].decode())
        return convert(query, encoding)

    monkeypatch.setattr(queries, "_query2pg_nocache", recorded)
    with counted_filter.client() as smtp:
        code, reply = send(smtp, agent["email"], [RECIPIENT],
                           message(agent["email"], "converted once"))
    assert code == 250, reply
    sent_through_filter(cfg, agent, counted_filter, "converted once too")
    assert afresh == []
