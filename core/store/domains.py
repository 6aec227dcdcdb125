"""Users' mail domains (the shared domain's row lives in agents.py's
ensure_shared_domain; it has no owner, so no query here returns it)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg

Row = dict[str, Any]


def create_domain(conn: psycopg.Connection, domain_id: str, user_id: str, domain: str,
                  token: str, selector: str, public_key: str,
                  private_key_enc: bytes) -> Row | None:
    """The new row, or None when the name is taken (by anyone)."""
    return conn.execute(
        """INSERT INTO domains (id, user_id, domain, verification_token, dkim_selector,
                                dkim_public_key, dkim_private_key_enc)
           VALUES (%s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (domain) DO NOTHING
           RETURNING *""",
        (domain_id, user_id, domain, token, selector, public_key, private_key_enc)).fetchone()


def domains_for_user(conn: psycopg.Connection, user_id: str) -> list[Row]:
    return conn.execute(
        """SELECT d.*, (SELECT count(*) FROM agents a WHERE a.domain_id = d.id) AS agent_count
             FROM domains d
            WHERE d.user_id = %s
            ORDER BY d.created_at, d.id""",
        (user_id,)).fetchall()


def domain_for_user(conn: psycopg.Connection, user_id: str, domain: str) -> Row | None:
    """The domain only when this user owns it: other tenants see nothing."""
    return conn.execute("SELECT * FROM domains WHERE domain = %s AND user_id = %s",
                        (domain, user_id)).fetchone()


def count_for_user(conn: psycopg.Connection, user_id: str) -> int:
    return conn.execute("SELECT count(*) AS n FROM domains WHERE user_id = %s",
                        (user_id,)).fetchone()["n"]


def agent_count(conn: psycopg.Connection, domain_id: str) -> int:
    return conn.execute("SELECT count(*) AS n FROM agents WHERE domain_id = %s",
                        (domain_id,)).fetchone()["n"]


def make_primary(conn: psycopg.Connection, user_id: str, domain_id: str) -> Row:
    """This domain becomes the user's only primary one. The caller holds the
    user's lock (users.lock_user): two promotions at once would otherwise
    both clear the old flag and then collide on domains_one_primary."""
    conn.execute(
        "UPDATE domains SET is_primary = false WHERE user_id = %s AND is_primary AND id <> %s",
        (user_id, domain_id))
    return conn.execute("UPDATE domains SET is_primary = true WHERE id = %s RETURNING *",
                        (domain_id,)).fetchone()


def record_check(conn: psycopg.Connection, domain_id: str, verified: bool) -> Row:
    """The outcome of an ownership probe: ``verified_at`` moves only on success."""
    return conn.execute(
        """UPDATE domains
              SET verified = %(ok)s, last_checked_at = now(),
                  verified_at = CASE WHEN %(ok)s THEN now() ELSE verified_at END
            WHERE id = %(id)s
        RETURNING *""",
        {"ok": verified, "id": domain_id}).fetchone()


def touch_checked(conn: psycopg.Connection, domain_id: str) -> None:
    """A probe ran but DNS could not answer: only the time changes."""
    conn.execute("UPDATE domains SET last_checked_at = now() WHERE id = %s", (domain_id,))


def delete_domain(conn: psycopg.Connection, domain_id: str) -> bool:
    return conn.execute("DELETE FROM domains WHERE id = %s", (domain_id,)).rowcount == 1


def set_dkim_key(conn: psycopg.Connection, domain_id: str, selector: str, public_key: str,
                 private_key_enc: bytes) -> bool:
    """Store a key pair on a domain that has none (True), never replacing one."""
    return conn.execute(
        """UPDATE domains SET dkim_selector = %s, dkim_public_key = %s,
                              dkim_private_key_enc = %s
            WHERE id = %s AND dkim_private_key_enc IS NULL""",
        (selector, public_key, private_key_enc, domain_id)).rowcount == 1


def dkim_key(conn: psycopg.Connection, domain: str) -> Row | None:
    return conn.execute(
        "SELECT domain, dkim_selector, dkim_private_key_enc FROM domains WHERE domain = %s",
        (domain,)).fetchone()


# Any change to the domains table (a trigger, sql/013_domain_changes.sql).
DOMAINS_CHANGED_CHANNEL = "e2a_domains_changed"


def accepts_mail_for(conn: psycopg.Connection, domain: str) -> bool:
    """Postfix may take mail for this domain: the shared one, or a verified one."""
    return conn.execute(
        "SELECT 1 FROM domains WHERE domain = %s AND (is_shared OR verified)",
        (domain,)).fetchone() is not None


def signing_key_of_owner(conn: psycopg.Connection, domain: str, user_id: str,
                         authors: list[str]) -> Row | None:
    """``domain``'s DKIM key (its row's domain, dkim_selector and
    dkim_private_key_enc; None when there is no such domain) and
    ``may_sign``: whether mail of ``user_id``'s agents with these From
    addresses (all on ``domain``) may carry its signature: the user's own
    verified domain, or the shared domain when every author is an agent of
    theirs (nobody owns the shared domain; each address on it is one
    agent's). One statement for both: the filter asks for every message."""
    return conn.execute(
        """SELECT d.domain, d.dkim_selector, d.dkim_private_key_enc,
                  d.verified
                  AND (d.user_id = %(user)s
                       OR (d.is_shared AND (SELECT count(*) FROM agents a
                                             WHERE a.domain_id = d.id AND a.user_id = %(user)s
                                               AND a.email = ANY(%(authors)s))
                                           = cardinality(%(authors)s::text[])))
                  IS TRUE AS may_sign
             FROM domains d
            WHERE d.domain = %(domain)s""",
        {"domain": domain, "user": user_id, "authors": authors}).fetchone()


def delete_expired_claims(conn: psycopg.Connection, age: timedelta, limit: int, *,
                          domain: str | None = None) -> int:
    """Delete up to ``limit`` claims older than ``age`` (of this one name when
    ``domain``): rows never verified, so without agents. Rows another
    transaction holds are skipped, not waited for (several workers)."""
    return conn.execute(
        """DELETE FROM domains WHERE id IN (
               SELECT d.id FROM domains d
                WHERE NOT d.is_shared AND NOT d.verified AND d.verified_at IS NULL
                  AND d.created_at < now() - %(age)s
                  AND (%(domain)s::text IS NULL OR d.domain = %(domain)s)
                  AND NOT EXISTS (SELECT 1 FROM agents a WHERE a.domain_id = d.id)
                ORDER BY d.created_at LIMIT %(limit)s
                  FOR UPDATE SKIP LOCKED)""",
        {"age": age, "domain": domain, "limit": limit}).rowcount
