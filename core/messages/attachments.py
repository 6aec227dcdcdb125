"""Download grants for a message's attachments: the short-lived capability
behind /v1's ``download_url``, so the bytes travel outside an agent's API
calls (and its context) and need no API key to fetch.

A grant names one attachment of one message of one owner and an expiry, and
is signed with the owner's own attachment-download key (core/crypto/serverkeys:
never the deployment secret, never a key of another purpose), so a grant
minted for one tenant proves nothing about another's mail and a magic link or
cursor is no grant. The owner named in the payload picks the key, and a
payload whose owner was changed no longer matches its signature."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from e2a.core.config import Config
from e2a.core.crypto import serverkeys, tokens

LIFETIME_SECONDS = 15 * 60
MAX_TOKEN = 1024  # far above a real grant; the bound on what is decoded


@dataclass(frozen=True)
class Grant:
    owner_id: str
    message_id: str
    index: int
    expires_at: int  # unix seconds


def _key(cfg: Config, owner_id: str) -> bytes:
    return serverkeys.for_owner(cfg, serverkeys.ATTACHMENT_DOWNLOAD, owner_id)


def grant(cfg: Config, owner_id: str, message_id: str, index: int, *,
          now: float | None = None) -> tuple[str, int]:
    """A token for this attachment and its expiry (unix seconds)."""
    expires_at = int(time.time() if now is None else now) + LIFETIME_SECONDS
    payload = json.dumps({"u": owner_id, "m": message_id, "i": index, "exp": expires_at},
                         sort_keys=True, separators=(",", ":")).encode()
    return tokens.sign(_key(cfg, owner_id), payload), expires_at


def open_grant(cfg: Config, token: str, *, now: float | None = None) -> Grant:
    """The grant ``token`` carries; TokenExpired once past its expiry,
    TokenError for anything else that is not a grant of ours."""
    if not token or len(token) > MAX_TOKEN:
        raise tokens.TokenError("not a download token")
    body, _, _ = token.partition(".")
    try:
        claimed = json.loads(tokens.b64url_decode(body))
        owner_id = claimed["u"]
    except (ValueError, TypeError, KeyError):
        raise tokens.TokenError("not a download token") from None
    if not isinstance(owner_id, str) or not owner_id or "\0" in owner_id:
        raise tokens.TokenError("not a download token")
    data = json.loads(tokens.verify(_key(cfg, owner_id), token))
    message_id, index, expires_at = data.get("m"), data.get("i"), data.get("exp")
    if not (isinstance(message_id, str) and type(index) is int and type(expires_at) is int):
        raise tokens.TokenError("not a download token")
    if (time.time() if now is None else now) > expires_at:
        raise tokens.TokenExpired("the download link expired; ask for the attachment again")
    return Grant(owner_id, message_id, index, expires_at)
