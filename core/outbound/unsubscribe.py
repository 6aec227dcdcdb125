"""Managed unsubscribe (RFC 8058): a send that asks for it carries
``List-Unsubscribe: <{public_url}/u/{token}>`` and ``List-Unsubscribe-Post:
List-Unsubscribe=One-Click`` (both under the DKIM signature, as RFC 8058
section 4 requires) and a footer with the same link. Opening the link shows
a confirmation page; a POST to it (the page's form, or a mail client's
one-click ``List-Unsubscribe=One-Click``) suppresses the recipient for the
sending agent (``agent.suppression_added``).

The token is 256 random bits. The database keeps only its HMAC under a
server key of its own purpose (core/crypto/serverkeys.UNSUBSCRIBE, never
the owner's signing secret, which agents hold): a copy of the table
unsubscribes nobody, and a token cannot be forged. It acts once: a second
POST finds it used and changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

import psycopg

from e2a.core.config import Config
from e2a.core.crypto import serverkeys
from e2a.core.mail import headers
from e2a.core.outbound import suppressions
from e2a.core.store import suppressions as store

MODE = "managed"
ONE_CLICK = "List-Unsubscribe=One-Click"
PATH = "/u/"
# token_urlsafe(32): 43 characters of the URL-safe alphabet.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


@dataclass(frozen=True)
class Minted:
    token: str
    digest: bytes
    url: str


def _digest(cfg: Config, token: str) -> bytes:
    key = serverkeys.deployment(cfg, serverkeys.UNSUBSCRIBE)
    return hmac.new(key, token.encode("ascii"), hashlib.sha256).digest()


def mint(cfg: Config) -> Minted:
    token = secrets.token_urlsafe(32)
    return Minted(token, _digest(cfg, token), cfg.http.public_url.rstrip("/") + PATH + token)


def record(conn: psycopg.Connection, minted: Minted, agent: dict[str, Any], address: str,
           message_id: str) -> None:
    """Keep ``minted`` for the one recipient ``address`` of ``message_id``
    (in the transaction that records the message)."""
    store.insert_token(conn, minted.digest, user_id=agent["user_id"], agent_id=agent["id"],
                       address=suppressions.canonical(address), message_id=message_id)


def lookup(conn: psycopg.Connection, cfg: Config, token: str) -> dict[str, Any] | None:
    """The token's row (address, agent_email, used_at), None when it is no token of ours."""
    if not _TOKEN.fullmatch(token):
        return None
    return store.token(conn, _digest(cfg, token))


def unsubscribe(conn: psycopg.Connection, cfg: Config, token: str) -> dict[str, Any] | None:
    """Act on ``token``: its recipient suppressed for its agent. The token's
    row; None when it is no token of ours. A used token changes nothing."""
    if not _TOKEN.fullmatch(token):
        return None
    digest = _digest(cfg, token)
    with conn.transaction():
        row = store.use_token(conn, digest)
        if row is None:
            return store.token(conn, digest)
        agent = {"id": row["agent_id"], "user_id": row["user_id"], "email": row["agent_email"]}
        suppressions.add_for_agent(conn, agent, row["address"], source="unsubscribe",
                                   reason=f"unsubscribed from {row['message_id']}")
    return row


def url_of(raw: bytes | None) -> str:
    """The managed-unsubscribe URL a composed message carries ("" for none):
    a held message edited on approval is composed again and keeps it."""
    if not raw:
        return ""
    value = headers.header_value(headers.parse(raw), "List-Unsubscribe")
    url = value.strip().removeprefix("<").split(">", 1)[0]
    return url if PATH in url else ""
