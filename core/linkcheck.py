"""Which held message a magic link (CONTRACT.md "Magic-link tokens") may act
on, and why not when it may not.

A token names its message; the message names its owner; the token must be
signed with that owner's keys.MAGIC_LINK key (core/keys.py), which only the
server holds: a token minted with a signing secret (agents hold those), the
deployment secret itself or another owner's key is refused even for a real
message id. Then, in this order:
expired, meant for the other action, message no longer held.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from e2a.core import holds, keys, tokens
from e2a.core.config import Config
from e2a.core.store import pending as pending_store

# A real token is about 100 characters; anything far longer is not one.
MAX_TOKEN_LENGTH = 512


class LinkRefused(Exception):
    """The link does not act; str() is one line safe for a log (no token)."""


class BadLink(LinkRefused):
    """Malformed, forged, tampered, signed with a secret not the owner's, or
    meant for the other action."""


class WrongAction(BadLink):
    """A good link to do the other thing (reject, used to approve)."""

    def __init__(self, meant: str, used: str) -> None:
        super().__init__(f"a link to {meant}, used to {used}")
        self.meant = meant


class UnknownMessage(LinkRefused):
    """No outbound message by the id the token names."""


class LinkExpired(LinkRefused):
    """Well signed, but past its expiry."""


class AlreadyResolved(LinkRefused):
    def __init__(self, status: str) -> None:
        super().__init__(f"message is {status}, no longer pending approval")
        self.status = status


def _named_message(token: str) -> str:
    """The message id the token claims, before anything is verified."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise BadLink("no token, or not one of ours")
    try:
        payload = tokens.b64url_decode(token.partition(".")[0])
    except tokens.TokenError:
        raise BadLink("not a token of ours") from None
    message_id = payload.split(b"|", 1)[0].decode("ascii", "replace")
    if not message_id.startswith("msg_"):
        raise BadLink("not a token of ours")
    return message_id


def _verified(key: bytes, token: str, now: float) -> tokens.MagicLink:
    try:
        return tokens.verify_magic_link(key, token, now=now)
    except tokens.TokenExpired:
        raise LinkExpired("link expired") from None
    except tokens.TokenError:
        raise BadLink("not signed for the message's owner") from None


def held_message(conn: psycopg.Connection, cfg: Config, token: str, action: str, *,
                 now: float | None = None) -> dict[str, Any]:
    """The held message ``token`` lets its bearer ``action`` (approve |
    reject), with its draft; one of the LinkRefused errors otherwise. Reads
    only: the caller acts (core/approval.py locks and checks again)."""
    message_id = _named_message(token)
    row = pending_store.outbound_message(conn, message_id, user_id=None)
    if row is None:
        raise UnknownMessage(f"no outbound message {message_id}")
    link = _verified(keys.for_owner(cfg, keys.MAGIC_LINK, row["user_id"]), token,
                     time.time() if now is None else now)
    if link.message_id != row["id"]:
        raise BadLink("token names another message")
    if link.action != action:
        raise WrongAction(link.action, action)
    if row["status"] != holds.PENDING:
        raise AlreadyResolved(row["status"])
    return row
