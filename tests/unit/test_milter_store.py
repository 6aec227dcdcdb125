"""The milter's end-of-data path on a real database: stored once, consumed, 451 on error."""

from __future__ import annotations

import json
import time

import Milter
import pytest
from mailworld import zones_served
from milterdriver import feed, installed
from servicesupport import write_config

from e2a.core import accounts, config
from e2a.core.db import open_pool, single_connection
from e2a.core.store import events as event_store
from e2a.core.store import messages as message_store
from e2a.core.store import websockets as ws_store
from e2a.milter.handler import InboundMilter

RAW = (b"From: Alice <alice@example.org>\r\n"
       b"To: hello@agents.test.example, friend@elsewhere.example\r\n"
       b"Subject: lunch\r\n\tplans\r\n"
       b"Message-ID: <m1@example.org>\r\n"
       b"\r\n"
       b"Shall we?\r\n")


@pytest.fixture(scope="module")
def agent(cfg):
    with single_connection(cfg) as conn:
        accounts.seed_shared_domain(conn, cfg)
        user = accounts.create_user(conn, "milter-owner@example.net")
        return accounts.register_agent(conn, cfg, user["id"], slug="hello")


@pytest.fixture(scope="module", autouse=True)
def zones(tmp_path_factory):
    # The test zones answer every lookup at once (example.org: NXDOMAIN).
    with zones_served(tmp_path_factory.mktemp("zones")) as server:
        yield server


@pytest.fixture
def milter(cfg, agent):
    with installed(cfg):
        yield


def rows(cfg, agent_id):
    with single_connection(cfg) as conn:
        return conn.execute(
            "SELECT * FROM messages WHERE agent_id = %s ORDER BY created_at", (agent_id,)
        ).fetchall()


def test_agent_only_mail_is_stored_once_and_discarded(cfg, agent, milter):
    raw = RAW.replace(b", friend@elsewhere.example", b"").replace(b"<m1@", b"<m2@")
    before = len(rows(cfg, agent["id"]))
    out = feed(raw, "alice@example.org", ["hello@agents.test.example"])
    assert out.code == Milter.DISCARD
    assert out.deleted == ["<hello@agents.test.example>"]
    stored = rows(cfg, agent["id"])
    assert len(stored) == before + 1
    row = stored[-1]
    assert row["subject"] == "lunch plans"
    assert row["sender"] == "alice@example.org"
    assert row["inbox_status"] == "unread"
    assert row["queue_id"] == "4ABCDEF"
    # The stored bytes are what the client sent, our Authentication-Results first.
    assert bytes(row["raw_message"]).endswith(raw)
    assert bytes(row["raw_message"]).startswith(b"Authentication-Results: mx.test.example;")
    assert row["auth_headers"]["X-E2A-Auth-Sender"] == "alice@example.org"
    assert row["auth_headers"]["X-E2A-Auth-Entity-Type"] == "human"


def test_retry_after_tempfail_is_not_stored_twice(cfg, agent, milter):
    raw = RAW.replace(b"<m1@", b"<m3@")
    first = feed(raw, "alice@example.org", ["hello@agents.test.example"], queue_id="Q1")
    again = feed(raw, "alice@example.org", ["hello@agents.test.example"], queue_id="Q2")
    assert first.code == again.code == Milter.DISCARD
    with single_connection(cfg) as conn:
        n = conn.execute("SELECT count(*) AS n FROM messages WHERE email_message_id = %s",
                         ("<m3@example.org>",)).fetchone()["n"]
    assert n == 1


def test_a_delivery_queues_one_event_and_notifies_once(cfg, agent, milter):
    """Row, event and both NOTIFYs go in one statement; the retry of a stored
    message writes nothing and notifies nobody."""
    raw = RAW.replace(b"<m1@", b"<m5@")
    heard: list[tuple[str, str]] = []
    with single_connection(cfg, autocommit=True) as listener:
        listener.add_notify_handler(lambda n: heard.append((n.channel, n.payload)))
        for channel in (message_store.INBOUND_CHANNEL, event_store.EVENTS_CHANNEL):
            ws_store.listen(listener, channel)
        feed(raw, "alice@example.org", ["hello@agents.test.example"], queue_id="Q5")
        feed(raw, "alice@example.org", ["hello@agents.test.example"], queue_id="Q6")
        ws_store.keepalive(listener)  # a round trip hands over what arrived
    with single_connection(cfg) as conn:
        [row] = conn.execute("SELECT id FROM messages WHERE email_message_id = %s",
                             ("<m5@example.org>",)).fetchall()
        events = conn.execute("SELECT type, agent_id, data FROM events WHERE message_id = %s",
                              (row["id"],)).fetchall()
    assert [(e["type"], e["agent_id"]) for e in events] == [("email.received", agent["id"])]
    assert events[0]["data"]["message_id"] == row["id"]
    inbound_notes = [json.loads(p) for c, p in heard if c == message_store.INBOUND_CHANNEL]
    assert inbound_notes == [{"message_id": row["id"], "agent_id": agent["id"]}]
    assert (event_store.EVENTS_CHANNEL, "") in heard


def test_mixed_recipients_keep_the_non_agent(cfg, agent, milter):
    out = feed(RAW, "alice@example.org",
               ["hello@agents.test.example", "friend@elsewhere.example"])
    assert out.code == Milter.CONTINUE
    assert out.deleted == ["<hello@agents.test.example>"]


def test_non_agent_mail_passes_untouched(cfg, agent, milter):
    out = feed(RAW, "alice@example.org", ["friend@elsewhere.example"])
    assert out.code == Milter.CONTINUE
    assert out.deleted == []


def test_database_down_answers_451(cfg, agent, milter, pg_cluster):
    pool = InboundMilter.pool
    InboundMilter.pool = open_pool(cfg, name="bad", wait=False)
    InboundMilter.pool.close()  # a closed pool fails like an unreachable database
    try:
        out = feed(RAW.replace(b"<m1@", b"<m4@"), "alice@example.org",
                   ["hello@agents.test.example"])
    finally:
        InboundMilter.pool = pool
    assert out.code == Milter.TEMPFAIL
    assert out.reply[:2] == ("451", "4.3.0")


def test_database_unreachable_answers_451_within_the_connect_timeout(cfg, agent, milter,
                                                                     tmp_path):
    """As `e2a serve milter` opens its pool: a checkout waits database.connect_timeout
    (1 s by default), so the client hears 451 in time, not after 10 s."""
    down = config.load(write_config(
        cfg, tmp_path / "down.toml",
        database_url=f"postgresql://e2a@/e2a?host={tmp_path}/nowhere&port=1"), env={})
    pool = InboundMilter.pool
    InboundMilter.pool = open_pool(down, name="down", min_size=2, autocommit=True,
                                   timeout=down.database.connect_timeout)
    try:
        started = time.monotonic()
        out = feed(RAW.replace(b"<m1@", b"<m5@"), "alice@example.org",
                   ["hello@agents.test.example"])
        took = time.monotonic() - started
    finally:
        InboundMilter.pool.close()
        InboundMilter.pool = pool
    assert out.code == Milter.TEMPFAIL
    assert down.database.connect_timeout == 1.0
    assert took < 2.0, took
