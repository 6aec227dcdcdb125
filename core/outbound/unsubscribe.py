"""Managed unsubscribe (RFC 8058): a send that asks for it carries
``List-Unsubscribe: <{public_url}/u/{token}>`` and ``List-Unsubscribe-Post:
List-Unsubscribe=One-Click`` (both under the DKIM signature, as RFC 8058
section 4 requires) and a footer with the same link. Opening the link shows
a confirmation page; a POST to it (the page's form, or a mail client's
one-click ``List-Unsubscribe=One-Click``) suppresses the recipient for the
sending agent (``agent.suppression_added``). ``List-Unsubscribe`` names a
``mailto:`` address too, on the reply domain: the milter takes mail to it
and acts the same (``consume``).

The token is 256 random bits. The database keeps only its HMAC under a
server key of its own purpose (core/crypto/serverkeys.UNSUBSCRIBE, never
the owner's signing secret, which agents hold): a copy of the table
unsubscribes nobody, and a token cannot be forged. It acts once: a second
POST finds it used and changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from e2a.core.config import Config
from e2a.core.crypto import serverkeys
from e2a.core.mail import headers
from e2a.core.outbound import suppressions
from e2a.core.store import agents as agent_store
from e2a.core.store import suppressions as store

MODE = "managed"
ONE_CLICK = "List-Unsubscribe=One-Click"
PATH = "/u/"
# The mailto: address is MAILTO_PREFIX + token @ the reply domain. A mail
# address is compared without case (core/net/addresses.mailbox), so the
# token is lowercase base32: 256 bits in 52 characters, 58 with the
# prefix, within a local part's 64.
MAILTO_PREFIX = "unsub-"
_TOKEN = re.compile(r"[a-z2-7]{52}")


@dataclass(frozen=True)
class Minted:
    token: str
    digest: bytes
    url: str
    mailto: str


def _digest(cfg: Config, token: str) -> bytes:
    key = serverkeys.deployment(cfg, serverkeys.UNSUBSCRIBE)
    return hmac.new(key, token.encode("ascii"), hashlib.sha256).digest()


def mint(cfg: Config) -> Minted:
    token = base64.b32encode(secrets.token_bytes(32)).decode("ascii").rstrip("=").lower()
    return Minted(token, _digest(cfg, token), cfg.http.public_url.rstrip("/") + PATH + token,
                  f"{MAILTO_PREFIX}{token}@{cfg.hitl.reply_domain}")


def token_of(address: str) -> str | None:
    """The token of an address shaped like a mailto: unsubscribe one
    (canonical, so lowercase), None for any other address."""
    local, at, domain = address.rpartition("@")
    if not at or not domain or not local.startswith(MAILTO_PREFIX):
        return None
    token = local[len(MAILTO_PREFIX):]
    return token if _TOKEN.fullmatch(token) else None


def consume(pool: ConnectionPool, cfg: Config, recipients: list[str]) -> set[str]:
    """Mail to mailto: unsubscribe addresses on our domains among
    ``recipients`` (canonical): each acts on its token, whatever the message
    says (the address is the credential, as the URL is). The addresses
    taken, lowercase: nobody reads them, and mail to a token that is not
    ours is dropped as well, never bounced (no backscatter)."""
    found = {r.lower(): t for r in recipients if (t := token_of(r.lower())) is not None}
    if not found:
        return set()
    taken: set[str] = set()
    with pool.connection() as conn:
        for address, token in found.items():
            if agent_store.domain_by_name(conn, address.rpartition("@")[2]) is None:
                continue  # not ours: it passes on like any other address
            unsubscribe(conn, cfg, token)
            taken.add(address)
    return taken


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


def targets_of(raw: bytes | None) -> tuple[str, str]:
    """The managed-unsubscribe URL and mailto: address a composed message
    carries ("" for none): a held message edited on approval is composed
    again and keeps them."""
    if not raw:
        return "", ""
    value = headers.header_value(headers.parse(raw), "List-Unsubscribe")
    found = re.findall(r"<([^<>]*)>", value)
    url = next((f for f in found if PATH in f and not f.startswith("mailto:")), "")
    mailto = next((f[len("mailto:"):] for f in found if f.startswith("mailto:")), "")
    return url, mailto
