"""Domains and agents."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

Row = dict[str, Any]

_AGENT_COLUMNS = """a.*, d.domain, d.verified AS domain_verified"""


def ensure_shared_domain(conn: psycopg.Connection, domain_id: str, domain: str,
                         token: str) -> Row:
    """The deployment's shared domain: reserved, owned by nobody, always verified."""
    conn.execute(
        """INSERT INTO domains (id, domain, is_shared, verification_token, verified, verified_at)
           VALUES (%s, %s, true, %s, true, now())
           ON CONFLICT (domain) DO NOTHING""",
        (domain_id, domain, token))
    return conn.execute("SELECT * FROM domains WHERE domain = %s", (domain,)).fetchone()


def domain_by_name(conn: psycopg.Connection, domain: str) -> Row | None:
    return conn.execute("SELECT * FROM domains WHERE domain = %s", (domain,)).fetchone()


def create_agent(conn: psycopg.Connection, agent_id: str, user_id: str, domain_id: str,
                 email: str, name: str, agent_mode: str, webhook_url: str = "") -> Row | None:
    """The new agent, or None when the address is taken."""
    created = conn.execute(
        """INSERT INTO agents (id, user_id, domain_id, email, name, agent_mode, webhook_url)
           VALUES (%s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (email) DO NOTHING
           RETURNING id""",
        (agent_id, user_id, domain_id, email, name, agent_mode, webhook_url)).fetchone()
    return agent_by_email(conn, email) if created else None


def agent_by_email(conn: psycopg.Connection, email: str) -> Row | None:
    return conn.execute(
        f"""SELECT {_AGENT_COLUMNS} FROM agents a JOIN domains d ON d.id = a.domain_id
             WHERE a.email = lower(%s)""",
        (email,)).fetchone()


def agent_for_user(conn: psycopg.Connection, user_id: str, email: str, *,
                   trashed_too: bool = False) -> Row | None:
    """The agent only when this user owns it: other tenants see nothing. A
    trashed agent only with ``trashed_too``."""
    live = "" if trashed_too else "AND a.deleted_at IS NULL"
    return conn.execute(
        f"""SELECT {_AGENT_COLUMNS} FROM agents a JOIN domains d ON d.id = a.domain_id
             WHERE a.email = lower(%s) AND a.user_id = %s {live}""",
        (email, user_id)).fetchone()


# The conversation of the agent's newest message with one of the Message-IDs
# a reply names; joined only when there are any.
_THREAD_JOIN = """LEFT JOIN LATERAL (
                   SELECT conversation_id FROM messages
                    WHERE agent_id = a.id AND email_message_id = ANY(%(refs)s)
                      AND conversation_id IS NOT NULL
                    ORDER BY created_at DESC LIMIT 1) t ON true"""


def agents_by_emails(conn: psycopg.Connection, emails: list[str],
                     thread_refs: list[str] | None = None) -> list[Row]:
    """The agents among these addresses: the milter's recipient lookup, one
    statement per message whatever it needs about each agent. With each:
    ``signing_secret``, its owner's newest signing secret (None: the owner has
    none), and ``thread_conversation_id``, the conversation of the agent's
    newest message whose Message-ID is among ``thread_refs`` (the In-Reply-To
    and References of the mail; None when none is)."""
    if not emails:
        return []
    thread, join = ("t.conversation_id", _THREAD_JOIN) if thread_refs else ("NULL::text", "")
    # One placeholder per address, not `= ANY(%s)`: the generic plan of a
    # prepared statement then knows how many rows to expect, and PostgreSQL
    # uses it instead of planning the lookup afresh for every message.
    params: dict[str, Any] = {f"email{n}": e.lower() for n, e in enumerate(emails)}
    params["refs"] = list(thread_refs or [])
    return conn.execute(
        f"""SELECT {_AGENT_COLUMNS}, s.secret AS signing_secret,
                   {thread} AS thread_conversation_id
              FROM agents a JOIN domains d ON d.id = a.domain_id
              LEFT JOIN LATERAL (
                   SELECT secret FROM signing_secrets WHERE user_id = a.user_id
                    ORDER BY created_at DESC, id DESC LIMIT 1) s ON true
              {join}
             WHERE a.email IN ({", ".join(f"%(email{n})s" for n in range(len(emails)))})
               AND a.deleted_at IS NULL""",
        params).fetchall()


def agents_for_user(conn: psycopg.Connection, user_id: str) -> list[Row]:
    return conn.execute(
        f"""SELECT {_AGENT_COLUMNS} FROM agents a JOIN domains d ON d.id = a.domain_id
             WHERE a.user_id = %s AND a.deleted_at IS NULL
             ORDER BY a.created_at, a.id""",
        (user_id,)).fetchall()


def count_for_user(conn: psycopg.Connection, user_id: str) -> int:
    return conn.execute("SELECT count(*) AS n FROM agents WHERE user_id = %s",
                        (user_id,)).fetchone()["n"]


# What an update may change; the keys are the only column names put in SQL.
UPDATABLE = ("agent_mode", "webhook_url", "hitl_enabled", "hitl_ttl_seconds",
             "hitl_expiration_action", "protection")


def update_agent(conn: psycopg.Connection, agent_id: str, changes: dict[str, Any]) -> None:
    unknown = set(changes) - set(UPDATABLE)
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    if not changes:
        return
    columns = [c for c in UPDATABLE if c in changes]
    assignments = ", ".join(f"{c} = %({c})s" for c in columns)
    values = {c: Jsonb(changes[c]) if c == "protection" else changes[c] for c in columns}
    conn.execute(f"UPDATE agents SET {assignments} WHERE id = %(agent_id)s",
                 {**values, "agent_id": agent_id})


def delete_agent(conn: psycopg.Connection, agent_id: str) -> bool:
    """Its messages, keys and deliveries go with it (ON DELETE CASCADE)."""
    return conn.execute("DELETE FROM agents WHERE id = %s", (agent_id,)).rowcount == 1


def agent_by_id(conn: psycopg.Connection, agent_id: str) -> Row | None:
    return conn.execute(
        f"""SELECT {_AGENT_COLUMNS} FROM agents a JOIN domains d ON d.id = a.domain_id
             WHERE a.id = %s""",
        (agent_id,)).fetchone()


def agents_page(conn: psycopg.Connection, user_id: str, *, limit: int,
                after: tuple[datetime, str] | None, trashed: bool = False) -> list[Row]:
    """A user's live (or ``trashed``) agents newest first, ``limit`` of them
    after the (created_at, id) the previous page ended with."""
    keyset = "AND (a.created_at, a.id) < (%(after_at)s, %(after_id)s)" if after else ""
    keyset += " AND a.deleted_at IS NOT NULL" if trashed else " AND a.deleted_at IS NULL"
    at, row_id = after or (None, None)
    return conn.execute(
        f"""SELECT {_AGENT_COLUMNS} FROM agents a JOIN domains d ON d.id = a.domain_id
             WHERE a.user_id = %(user_id)s {keyset}
             ORDER BY a.created_at DESC, a.id DESC LIMIT %(limit)s""",
        {"user_id": user_id, "limit": limit, "after_at": at, "after_id": row_id}).fetchall()


def rename_agent(conn: psycopg.Connection, agent_id: str, name: str) -> None:
    conn.execute("UPDATE agents SET name = %s WHERE id = %s", (name, agent_id))



def set_trashed(conn: psycopg.Connection, agent_id: str, trashed: bool) -> None:
    moment = "clock_timestamp()" if trashed else "NULL"
    conn.execute(f"UPDATE agents SET deleted_at = {moment} WHERE id = %s", (agent_id,))
