"""The conversation list reads only the newest messages, not the whole
mailbox (core/store/messages.conversation_summaries): on a real database,
every page it gives equals the page of the plain definition (group every
message by conversation, order by the latest), with ties in time, trashed
members, bounds and cursors, and pages small enough that the first window of
rows holds too few conversations."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from apisupport import insert_message, make_tenant

from e2a.core.db import single_connection
from e2a.core.store import messages as message_store

T0 = datetime(2026, 5, 1, tzinfo=UTC)

# The definition, as the store computed it before: every member grouped.
DEFINITION = """
    SELECT conversation_id, max(created_at) AS last_message_at FROM messages
     WHERE agent_id = %(agent_id)s AND conversation_id IS NOT NULL
       AND conversation_id <> '' AND deleted_at IS NULL
     GROUP BY conversation_id
    HAVING (%(since)s::timestamptz IS NULL OR max(created_at) >= %(since)s)
       AND (%(until)s::timestamptz IS NULL OR max(created_at) < %(until)s)
       AND (%(after_at)s::timestamptz IS NULL
            OR (max(created_at), conversation_id) < (%(after_at)s, %(after_id)s))
     ORDER BY last_message_at DESC, conversation_id DESC
     LIMIT %(limit)s"""


@pytest.fixture(scope="module")
def mailbox(cfg) -> dict[str, Any]:
    """300 messages over 40 conversations (and none), 30 distinct times so
    that many share one, a tenth trashed; one conversation one big burst."""
    rng = random.Random(18)
    agent = make_tenant(cfg).agent
    rows = []
    for n in range(300):
        conversation = rng.choice([None, "", *[f"conv_{c:02}" for c in range(40)]])
        if n >= 250:
            conversation = "conv_burst"  # the newest 50 rows: one conversation
        when = T0 + timedelta(minutes=rng.randrange(30) if n < 250 else 40 + n % 3)
        rows.append((insert_message(cfg, agent, conversation_id=conversation), when,
                     rng.random() < 0.1))
    with single_connection(cfg) as conn:
        for message_id, when, trashed in rows:
            conn.execute("UPDATE messages SET created_at = %s, deleted_at = CASE WHEN %s "
                         "THEN now() END WHERE id = %s", (when, trashed, message_id))
    return agent


def expected(cfg, agent, *, limit, since=None, until=None, after=None) -> list[tuple]:
    with single_connection(cfg) as conn:
        return [(r["conversation_id"], r["last_message_at"]) for r in conn.execute(
            DEFINITION, {"agent_id": agent["id"], "limit": limit, "since": since,
                         "until": until, "after_at": after and after[0],
                         "after_id": after and after[1]}).fetchall()]


def page(cfg, agent, **bounds) -> list[tuple]:
    with single_connection(cfg) as conn:
        return [(r["conversation_id"], r["last_message_at"])
                for r in message_store.conversation_summaries(conn, agent["id"], **bounds)]


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 100])
def test_every_page_followed_by_its_cursor_is_the_definitions(cfg, mailbox, limit):
    after = None
    seen = 0
    while True:
        got = page(cfg, mailbox, limit=limit, after=after)
        assert got == expected(cfg, mailbox, limit=limit, after=after)
        seen += len(got)
        if len(got) < limit:
            break
        after = (got[-1][1], got[-1][0])
    assert seen == len(expected(cfg, mailbox, limit=1000)) == 41  # 40 and the burst


@pytest.mark.parametrize("since,until", [
    (T0 + timedelta(minutes=10), None),
    (None, T0 + timedelta(minutes=20)),
    (T0 + timedelta(minutes=5), T0 + timedelta(minutes=25)),
    (T0 + timedelta(minutes=29), T0 + timedelta(minutes=30)),
    (T0 + timedelta(hours=5), None),
])
@pytest.mark.parametrize("limit", [1, 4, 100])
def test_bounds_on_the_latest_message_are_the_definitions(cfg, mailbox, since, until, limit):
    assert page(cfg, mailbox, limit=limit, since=since, until=until) == expected(
        cfg, mailbox, limit=limit, since=since, until=until)


def test_a_conversation_that_ends_past_a_bound_is_left_out(cfg, mailbox):
    """Rows of a conversation inside the window do not bring it in when its
    latest message is past ``until``: the burst has none before 40 min."""
    got = page(cfg, mailbox, limit=100, until=T0 + timedelta(minutes=41))
    assert "conv_burst" not in {c for c, _ in got}
    assert got == expected(cfg, mailbox, limit=100, until=T0 + timedelta(minutes=41))


def test_one_conversation_asked_for(cfg, mailbox):
    with single_connection(cfg) as conn:
        [row] = message_store.conversation_summaries(conn, mailbox["id"],
                                                     conversation_id="conv_burst", limit=10)
    assert row["conversation_id"] == "conv_burst" and "scanned" not in row
    assert row["message_count"] == row["inbound_count"] > 0


def rows_read(conn) -> int:
    """Rows of the messages table this transaction read, by scan or index."""
    row = conn.execute(
        "SELECT coalesce(sum(seq_tup_read + coalesce(idx_tup_fetch, 0)), 0) AS n"
        "  FROM pg_stat_xact_user_tables WHERE relname = 'messages'").fetchone()
    return int(row["n"])


def test_the_first_page_reads_the_newest_messages_not_the_mailbox(cfg, mailbox):
    """The newest conversation holds the 50 newest rows; a page of one reads
    those (the page's aggregates read them anyway), not all 300."""
    with single_connection(cfg) as conn, conn.transaction():
        # The plans of a big mailbox: on 300 rows a sequential scan is cheaper.
        conn.execute("SET LOCAL enable_seqscan = off")
        before = rows_read(conn)
        [row] = message_store.conversation_summaries(conn, mailbox["id"], limit=1)
        read = rows_read(conn) - before
    assert row["conversation_id"] == "conv_burst"
    assert read < 200, read
