"""usage_monthly, kept by triggers, always equals what it summarises."""

from __future__ import annotations

from typing import Any

from apisupport import add_agent, insert_message, make_tenant

from e2a.core.db import migrate, single_connection
from e2a.core.ids import new_id
from e2a.core.store import usage as usage_store

TRUTH = """
    SELECT user_id, date_trunc('month', created_at AT TIME ZONE 'UTC')::date AS month,
           count(*) FILTER (WHERE direction = 'inbound') AS inbound_messages,
           sum(size_bytes) AS size_bytes
      FROM messages WHERE user_id = ANY(%(users)s) GROUP BY 1, 2"""
KEPT = """
    SELECT user_id, month, inbound_messages, size_bytes FROM usage_monthly
     WHERE user_id = ANY(%(users)s) AND (inbound_messages, size_bytes) <> (0, 0)"""


def _rows(conn: Any, sql: str, users: list[str]) -> set[tuple[Any, ...]]:
    return {tuple(r.values()) for r in conn.execute(sql, {"users": users}).fetchall()}


def _assert_kept(cfg: Any, users: list[str]) -> None:
    with single_connection(cfg) as conn:
        assert _rows(conn, KEPT, users) == _rows(conn, TRUTH, users)


def _insert(conn: Any, agent: dict[str, Any], direction: str, size: int) -> str:
    message_id = new_id("msg")
    conn.execute("""INSERT INTO messages (id, user_id, agent_id, direction, size_bytes)
                    VALUES (%s, %s, %s, %s, %s)""",
                 (message_id, agent["user_id"], agent["id"], direction, size))
    return message_id


def _outbound(cfg: Any, agent: dict[str, Any], size: int) -> str:
    with single_connection(cfg) as conn:
        return _insert(conn, agent, "outbound", size)


def test_inserts_deletes_and_edits_are_counted(cfg):
    a, b = make_tenant(cfg), make_tenant(cfg)
    users = [a.user["id"], b.user["id"]]
    first = insert_message(cfg, a.agent)
    insert_message(cfg, a.agent, subject="a longer subject line")
    insert_message(cfg, b.agent)
    out = _outbound(cfg, a.agent, 5000)
    _assert_kept(cfg, users)
    with single_connection(cfg) as conn:
        quota = usage_store.quota_of(conn, a.user["id"])
    assert quota["messages_this_month"] == 2  # outbound mail is no inbound quota
    assert quota["storage_bytes"] > 5000  # but it is stored

    with single_connection(cfg) as conn:
        conn.execute("DELETE FROM messages WHERE id = %s", (first,))
        conn.execute("UPDATE messages SET size_bytes = 7000 WHERE id = %s", (out,))
        conn.execute("UPDATE messages SET labels = '{x}' WHERE user_id = %s", (a.user["id"],))
    _assert_kept(cfg, users)


def test_an_old_message_counts_in_its_own_month(cfg):
    t = make_tenant(cfg)
    old = insert_message(cfg, t.agent)
    insert_message(cfg, t.agent)
    with single_connection(cfg) as conn:
        conn.execute("UPDATE messages SET created_at = now() - interval '45 days' WHERE id = %s",
                     (old,))
        quota = usage_store.quota_of(conn, t.user["id"])
        total = conn.execute("SELECT sum(size_bytes) AS s FROM messages WHERE user_id = %s",
                             (t.user["id"],)).fetchone()["s"]
    assert quota["messages_this_month"] == 1
    assert quota["storage_bytes"] == total
    _assert_kept(cfg, [t.user["id"]])


def test_deleting_an_agent_or_a_user_cascades_into_the_counts(cfg):
    t = make_tenant(cfg)
    other = add_agent(cfg, t)
    for _ in range(3):
        insert_message(cfg, t.agent)
        insert_message(cfg, other)
    _assert_kept(cfg, [t.user["id"]])
    with single_connection(cfg) as conn:
        conn.execute("DELETE FROM agents WHERE id = %s", (other["id"],))
        assert usage_store.quota_of(conn, t.user["id"])["messages_this_month"] == 3
    _assert_kept(cfg, [t.user["id"]])
    with single_connection(cfg) as conn:
        conn.execute("DELETE FROM users WHERE id = %s", (t.user["id"],))
        assert usage_store.quota_of(conn, t.user["id"]) is None
        left = conn.execute("SELECT count(*) AS n FROM usage_monthly WHERE user_id = %s",
                            (t.user["id"],)).fetchone()["n"]
    assert left == 0


def test_a_user_without_mail_has_zero_usage_and_the_default_limits(cfg):
    t = make_tenant(cfg)
    with single_connection(cfg) as conn:
        quota = usage_store.quota_of(conn, t.user["id"])
    assert quota == {"max_messages_month": 100000, "max_storage_bytes": 10737418240,
                     "messages_this_month": 0, "storage_bytes": 0}


def test_the_migration_counts_mail_stored_before_it(cfg):
    """Running 002 again over existing rows neither loses nor doubles a count:
    what it backfills on a database with mail is what the triggers keep."""
    t = make_tenant(cfg)
    insert_message(cfg, t.agent)
    [usage] = [m for m in migrate.available() if m.name == "002_usage.sql"]
    with single_connection(cfg) as conn:
        conn.execute("DELETE FROM usage_monthly WHERE user_id = %s", (t.user["id"],))
        conn.execute(usage.sql)  # the backfill
        conn.execute(usage.sql)  # and idempotent
    _assert_kept(cfg, [t.user["id"]])


def test_a_message_gone_in_the_transaction_that_stored_it_counts_nothing(cfg):
    """New messages are counted at commit, after a delete in the same transaction."""
    t = make_tenant(cfg)
    insert_message(cfg, t.agent)
    with single_connection(cfg) as conn:
        brief = _insert(conn, t.agent, "inbound", 700)
        resized = _insert(conn, t.agent, "inbound", 800)
        conn.execute("DELETE FROM messages WHERE id = %s", (brief,))
        conn.execute("UPDATE messages SET size_bytes = 900 WHERE id = %s", (resized,))
    _assert_kept(cfg, [t.user["id"]])


def test_one_statement_deleting_many_messages_counts_them_all(cfg):
    t = make_tenant(cfg)
    with single_connection(cfg) as conn:
        for size in range(1, 51):
            _insert(conn, t.agent, "inbound" if size % 2 else "outbound", size)
    with single_connection(cfg) as conn:
        conn.execute("DELETE FROM messages WHERE user_id = %s AND size_bytes > 10",
                     (t.user["id"],))
        quota = usage_store.quota_of(conn, t.user["id"])
    assert (quota["messages_this_month"], quota["storage_bytes"]) == (5, sum(range(1, 11)))
    _assert_kept(cfg, [t.user["id"]])
