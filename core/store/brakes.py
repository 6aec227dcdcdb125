"""Loop and abuse brakes: per-agent overrides and the kill switch
(agent_brakes), and their counters (rate_limits buckets ``brake-*``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from e2a.core.store.ratelimits import UPSERT

Row = dict[str, Any]

HOUR, DAY = 3600, 86400

# The counters' upsert of core/store/ratelimits.py: fixed windows on the
# database's clock, shared by every host.
_COUNT = UPSERT

# A conversation is between agents when another agent of this deployment is
# among the recipients: only then is a turn on it counted.
_BETWEEN_AGENTS = """WHERE %(conversation)s::text <> '' AND EXISTS (
                         SELECT 1 FROM agents WHERE email = ANY(%(recipients)s)
                            AND deleted_at IS NULL AND id <> %(agent)s)"""


# The recipients of this send the agent never sent to before.
_NEW = """SELECT r FROM unnest(%(recipients)s::text[]) AS r
           WHERE NOT EXISTS (SELECT 1 FROM agent_recipients
                              WHERE agent_id = %(agent)s AND address = r)"""
# The new-recipient limit in force: the agent's override, else the default.
_NEW_LIMIT = """coalesce((SELECT (overrides->>'new_recipients_per_hour')::int
                            FROM agent_brakes WHERE agent_id = %(agent)s),
                         %(new_limit)s)"""


def _squeezed(sql: str) -> str:
    """``sql`` with its layout's whitespace squeezed (it holds no literal
    with two spaces in a row): psycopg parses a query once and caches it
    only up to 4096 characters (MAX_CACHED_STATEMENT_LENGTH); indented, the
    brakes' count was over that and parsed anew on every send."""
    return " ".join(sql.split())


# count_send's statement, built once.
_RECIPIENTS = f"""
             fresh AS ({_NEW}),
             n AS ({_COUNT.format(n=3, condition="WHERE EXISTS (SELECT 1 FROM fresh)")
                   .replace("%(cost3)s", "(SELECT count(*) FROM fresh)")}),
             known AS (INSERT INTO agent_recipients (agent_id, address)
                       SELECT %(agent)s, r FROM fresh
                        WHERE {_NEW_LIMIT} = 0 OR (SELECT hits FROM n) <= {_NEW_LIMIT}
                       ON CONFLICT DO NOTHING)"""
_COUNT_SEND = _squeezed(
    f"""WITH h AS ({_COUNT.format(n=0, condition="")}),
             d AS ({_COUNT.format(n=1, condition="")}),
             t AS ({_COUNT.format(n=2, condition=_BETWEEN_AGENTS)}),{_RECIPIENTS}
        SELECT (SELECT hits FROM h) AS hour, (SELECT retry_after FROM h) AS hour_retry,
               (SELECT count(*) FROM fresh) AS new_recipients,
               (SELECT hits FROM n) AS new_hour, (SELECT retry_after FROM n) AS new_retry,
               (SELECT hits FROM d) AS day, (SELECT retry_after FROM d) AS day_retry,
               (SELECT hits FROM t) AS thread_turns,
               (SELECT retry_after FROM t) AS thread_retry,
               (%(in_reply_to)s <> '' AND EXISTS (
                    SELECT 1 FROM messages
                     WHERE agent_id = %(agent)s AND direction = 'inbound'
                       AND email_message_id = %(in_reply_to)s
                       AND %(label)s = ANY(labels))) AS answers_auto,
               coalesce((SELECT hits FROM rate_limits
                          WHERE bucket = %(bounces)s
                            AND window_start = date_bin(%(day)s * interval '1 second',
                                                        coalesce(%(at)s::timestamptz, now()),
                                                        timestamptz 'epoch')), 0) AS bounces,
               b.overrides, b.paused_at, b.paused_reason
          FROM (SELECT 1) AS one
          LEFT JOIN agent_brakes b ON b.agent_id = %(agent)s""")


def count_send(conn: psycopg.Connection, agent_id: str, *, conversation_id: str,
               recipients: list[str], in_reply_to: str, auto_label: str,
               new_limit: int = 0, at: datetime | None = None) -> Row:
    """Count one send of ``agent_id`` and read all the brakes decide on,
    in ONE statement: ``hour``/``day`` (sends in this window, this one
    included), ``hour_retry``/``day_retry`` (seconds to the window's end),
    ``thread_turns``/``thread_retry`` (turns on ``conversation_id`` this
    hour, counted only when another agent is among ``recipients``; else
    NULL), ``answers_auto`` (``in_reply_to`` is an inbound message of the
    agent labelled ``auto_label``), ``bounces`` (hard bounces in today's
    window), ``new_recipients`` (of this send, not sent to before) with
    ``new_hour``/``new_retry`` (new recipients this hour, this send's
    included; NULL when it has none), ``overrides``, ``paused_at`` and
    ``paused_reason``. This send's new recipients become known unless they
    take the hour past ``new_limit`` (the agent's override first; 0: no limit)."""
    params: dict[str, Any] = {
        "at": at, "agent": agent_id, "conversation": conversation_id,
        "cost0": 1, "cost1": 1, "cost2": 1,
        "recipients": [r.lower() for r in recipients], "in_reply_to": in_reply_to,
        "label": auto_label,
        "bucket0": f"brake-hour:{agent_id}", "window0": HOUR,
        "bucket1": f"brake-day:{agent_id}", "window1": DAY,
        "bucket2": f"brake-thread:{conversation_id}", "window2": HOUR,
        "bounces": f"brake-bounce:{agent_id}", "day": DAY,
        "bucket3": f"brake-new:{agent_id}", "window3": HOUR, "new_limit": new_limit}
    return conn.execute(_COUNT_SEND, params).fetchone()


def count_bounce(conn: psycopg.Connection, agent_id: str, *, at: datetime | None = None) -> None:
    conn.execute(_COUNT.format(n=0, condition=""), {
        "at": at, "cost0": 1, "bucket0": f"brake-bounce:{agent_id}", "window0": DAY})


def settings(conn: psycopg.Connection, agent_id: str) -> Row | None:
    return conn.execute("SELECT * FROM agent_brakes WHERE agent_id = %s",
                        (agent_id,)).fetchone()


def save(conn: psycopg.Connection, agent_id: str, overrides: dict[str, Any],
         paused: bool, reason: str | None) -> Row:
    """Overrides replaced wholesale; the pause keeps its first time while it lasts."""
    return conn.execute(
        """INSERT INTO agent_brakes AS b (agent_id, overrides, paused_at, paused_reason)
           VALUES (%(agent)s, %(overrides)s, CASE WHEN %(paused)s THEN now() END,
                   CASE WHEN %(paused)s THEN %(reason)s END)
           ON CONFLICT (agent_id) DO UPDATE SET
               overrides = EXCLUDED.overrides,
               paused_at = CASE WHEN %(paused)s THEN coalesce(b.paused_at, now()) END,
               paused_reason = CASE WHEN %(paused)s
                                    THEN coalesce(b.paused_reason, %(reason)s) END,
               updated_at = now()
           RETURNING *""",
        {"agent": agent_id, "overrides": Jsonb(overrides), "paused": paused,
         "reason": reason}).fetchone()


def pause(conn: psycopg.Connection, agent_id: str, reason: str) -> bool:
    """Pause the agent's outbound mail; True when this call paused it."""
    return conn.execute(
        """INSERT INTO agent_brakes AS b (agent_id, paused_at, paused_reason)
           VALUES (%s, now(), %s)
           ON CONFLICT (agent_id) DO UPDATE SET paused_at = now(),
                  paused_reason = EXCLUDED.paused_reason, updated_at = now()
            WHERE b.paused_at IS NULL
           RETURNING agent_id""", (agent_id, reason)).fetchone() is not None


def paused_agent_ids(conn: psycopg.Connection, user_id: str) -> set[str]:
    """The ids of the user's agents whose outbound mail is paused."""
    rows = conn.execute(
        """SELECT b.agent_id FROM agent_brakes b JOIN agents a ON a.id = b.agent_id
            WHERE a.user_id = %s AND b.paused_at IS NOT NULL""", (user_id,)).fetchall()
    return {row["agent_id"] for row in rows}
