"""Domains and agents."""

from __future__ import annotations

from typing import Any

import psycopg

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
                 email: str, name: str, agent_mode: str, webhook_url: str = "") -> Row:
    conn.execute(
        """INSERT INTO agents (id, user_id, domain_id, email, name, agent_mode, webhook_url)
           VALUES (%s, %s, %s, %s, %s, %s, %s)""",
        (agent_id, user_id, domain_id, email, name, agent_mode, webhook_url))
    return agent_by_email(conn, email)


def agent_by_email(conn: psycopg.Connection, email: str) -> Row | None:
    return conn.execute(
        f"""SELECT {_AGENT_COLUMNS} FROM agents a JOIN domains d ON d.id = a.domain_id
             WHERE a.email = lower(%s)""",
        (email,)).fetchone()


def agent_for_user(conn: psycopg.Connection, user_id: str, email: str) -> Row | None:
    """The agent only when this user owns it: other tenants see nothing."""
    return conn.execute(
        f"""SELECT {_AGENT_COLUMNS} FROM agents a JOIN domains d ON d.id = a.domain_id
             WHERE a.email = lower(%s) AND a.user_id = %s""",
        (email, user_id)).fetchone()


def agents_by_emails(conn: psycopg.Connection, emails: list[str]) -> list[Row]:
    """The agents among these addresses (the milter's recipient lookup)."""
    if not emails:
        return []
    return conn.execute(
        f"""SELECT {_AGENT_COLUMNS} FROM agents a JOIN domains d ON d.id = a.domain_id
             WHERE a.email = ANY(%s)""",
        ([e.lower() for e in emails],)).fetchall()
