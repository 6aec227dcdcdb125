"""Suppressions: account-wide (account_suppressions) and per agent
(agent_suppressions), and the tokens of managed unsubscribe."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

Row = dict[str, Any]


def add_account(conn: psycopg.Connection, user_id: str, address: str, *, source: str,
                reason: str | None = None, source_message_id: str | None = None) -> Row | None:
    """The new row, or None when the address was suppressed already (kept as it was)."""
    return conn.execute(
        """INSERT INTO account_suppressions (user_id, address, source, reason,
                                             source_message_id)
           VALUES (%s, %s, %s, %s, %s)
           ON CONFLICT (user_id, address) DO NOTHING
           RETURNING *""",
        (user_id, address, source, reason, source_message_id)).fetchone()


def add_agent(conn: psycopg.Connection, user_id: str, agent_id: str, address: str, *,
              source: str, reason: str | None = None) -> tuple[Row, bool]:
    """The row and whether it is new (an existing one is kept as it was)."""
    row = conn.execute(
        """INSERT INTO agent_suppressions (agent_id, user_id, address, source, reason)
           VALUES (%s, %s, %s, %s, %s)
           ON CONFLICT (agent_id, address) DO NOTHING
           RETURNING *""",
        (agent_id, user_id, address, source, reason)).fetchone()
    if row is not None:
        return row, True
    return conn.execute("SELECT * FROM agent_suppressions WHERE agent_id = %s AND address = %s",
                        (agent_id, address)).fetchone(), False


def delete_account(conn: psycopg.Connection, user_id: str, address: str) -> bool:
    return conn.execute("DELETE FROM account_suppressions WHERE user_id = %s AND address = %s",
                        (user_id, address)).rowcount > 0


def delete_agent(conn: psycopg.Connection, agent_id: str, address: str) -> bool:
    return conn.execute("DELETE FROM agent_suppressions WHERE agent_id = %s AND address = %s",
                        (agent_id, address)).rowcount > 0


def list_account(conn: psycopg.Connection, user_id: str, *, limit: int,
                 before: tuple[datetime, str] | None = None) -> list[Row]:
    """Newest first, ``limit`` rows after the position ``before`` (created_at, address)."""
    return _page(conn, "account_suppressions", "user_id", user_id, limit, before)


def list_agent(conn: psycopg.Connection, agent_id: str, *, limit: int,
               before: tuple[datetime, str] | None = None) -> list[Row]:
    """As ``list_account``, for one agent's own list."""
    return _page(conn, "agent_suppressions", "agent_id", agent_id, limit, before)


def _page(conn: psycopg.Connection, table: str, owner_column: str, owner: str, limit: int,
          before: tuple[datetime, str] | None) -> list[Row]:
    # ``table`` and ``owner_column`` are the two literals above, never input.
    return conn.execute(
        f"""SELECT * FROM {table}
            WHERE {owner_column} = %(owner)s
              AND (%(at)s::timestamptz IS NULL OR (created_at, address) < (%(at)s, %(addr)s))
            ORDER BY created_at DESC, address DESC
            LIMIT %(limit)s""",
        {"owner": owner, "at": before[0] if before else None,
         "addr": before[1] if before else None, "limit": limit}).fetchall()


def suppressed_among(conn: psycopg.Connection, user_id: str, agent_id: str,
                     addresses: Sequence[str]) -> list[Row]:
    """Which of ``addresses`` (canonical) the account or the agent suppresses,
    in one statement: ``address`` and ``scope`` (account | agent)."""
    return conn.execute(
        """SELECT address, 'account' AS scope, source FROM account_suppressions
            WHERE user_id = %(user)s AND address = ANY(%(addrs)s)
           UNION ALL
           SELECT address, 'agent' AS scope, source FROM agent_suppressions
            WHERE agent_id = %(agent)s AND address = ANY(%(addrs)s)""",
        {"user": user_id, "agent": agent_id, "addrs": list(addresses)}).fetchall()


def insert_token(conn: psycopg.Connection, digest: bytes, *, user_id: str, agent_id: str,
                 address: str, message_id: str) -> None:
    conn.execute(
        """INSERT INTO unsubscribe_tokens (token_digest, user_id, agent_id, address, message_id)
           VALUES (%s, %s, %s, %s, %s)""",
        (digest, user_id, agent_id, address, message_id))


def token(conn: psycopg.Connection, digest: bytes) -> Row | None:
    """The token's row with its agent's email; None when unknown or its agent is gone."""
    return conn.execute(
        """SELECT t.*, a.email AS agent_email FROM unsubscribe_tokens t
             JOIN agents a ON a.id = t.agent_id
            WHERE t.token_digest = %s""", (digest,)).fetchone()


def use_token(conn: psycopg.Connection, digest: bytes) -> Row | None:
    """Mark the token used; its row when this call used it, None when it
    was used before or is unknown (so two clicks suppress once)."""
    return conn.execute(
        """UPDATE unsubscribe_tokens t SET used_at = now()
             FROM agents a
            WHERE t.token_digest = %s AND t.used_at IS NULL AND a.id = t.agent_id
           RETURNING t.*, a.email AS agent_email""", (digest,)).fetchone()


def all_for_user(conn: psycopg.Connection, user_id: str) -> list[Row]:
    """Every suppression of the user's, the account's (agent_email NULL) and
    each agent's, for the data export; oldest first."""
    return conn.execute(
        """SELECT s.address, NULL::text AS agent_email, s.source, s.reason, s.created_at
             FROM account_suppressions s WHERE s.user_id = %(user)s
           UNION ALL
           SELECT s.address, a.email, s.source, s.reason, s.created_at
             FROM agent_suppressions s JOIN agents a ON a.id = s.agent_id
            WHERE s.user_id = %(user)s
           ORDER BY created_at, address""", {"user": user_id}).fetchall()
