"""Signed tokens: ``base64url(payload) + "." + base64url(HMAC-SHA256(key, payload))``.

One primitive serves every token we hand out and later take back: pagination
cursors (opaque JSON) and the magic links of CONTRACT.md (whose payload is
fixed by the wire contract; their key is the owner's magic-link key from
core/keys.py). Base64url is unpadded and decoded strictly, so one token has
exactly one spelling.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from e2a.core import keys

_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
ACTIONS = ("approve", "reject")


class TokenError(ValueError):
    """Malformed, forged or tampered token."""


class TokenExpired(TokenError):
    """Well signed but past its expiry."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    if not _B64URL.match(text) or len(text) % 4 == 1:
        raise TokenError("not base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("not base64url") from None
    # Leftover bits in the last character would give a second spelling.
    if b64url(data) != text:
        raise TokenError("not canonical base64url")
    return data


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()


def sign(key: bytes, payload: bytes) -> str:
    return f"{b64url(payload)}.{b64url(_mac(key, payload))}"


def verify(key: bytes, token: str) -> bytes:
    """The payload of a token this key signed; TokenError otherwise."""
    body, dot, mac = token.partition(".")
    if not dot:
        raise TokenError("not a signed token")
    payload = b64url_decode(body)
    if not hmac.compare_digest(b64url_decode(mac), _mac(key, payload)):
        raise TokenError("bad signature")
    return payload


def purpose_key(secret: str, purpose: str) -> bytes:
    """A key for one kind of token, so that a token minted for one use is
    worthless for any other even though one deployment secret backs them all."""
    return keys.hkdf(secret, b"e2a-token:" + purpose.encode())


def sign_json(secret: str, purpose: str, data: dict[str, Any]) -> str:
    payload = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return sign(purpose_key(secret, purpose), payload)


def verify_json(secret: str, purpose: str, token: str) -> dict[str, Any]:
    payload = verify(purpose_key(secret, purpose), token)
    try:
        data = json.loads(payload)
    except ValueError:
        raise TokenError("payload is not JSON") from None
    if not isinstance(data, dict):
        raise TokenError("payload is not an object")
    return data


@dataclass(frozen=True)
class MagicLink:
    message_id: str
    action: str  # approve | reject
    expires_at: int  # unix seconds


def magic_link(key: bytes, message_id: str, action: str, expires_at: int) -> str:
    """The approve/reject link token of CONTRACT.md, signed with ``key``: the
    owner's keys.MAGIC_LINK key (the contract's vector only pins the encoding)."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}")
    if "|" in message_id:
        raise ValueError("message id cannot contain '|'")
    return sign(key, f"{message_id}|{action}|{int(expires_at)}".encode())


def verify_magic_link(key: bytes, token: str, *, now: float | None = None) -> MagicLink:
    """TokenExpired once past ``expires_at``; TokenError for anything not ours."""
    payload = verify(key, token)
    try:
        message_id, action, exp = payload.decode("ascii").split("|")
    except (UnicodeDecodeError, ValueError):
        raise TokenError("malformed magic-link payload") from None
    if action not in ACTIONS or not message_id or not exp.isdigit():
        raise TokenError("malformed magic-link payload")
    link = MagicLink(message_id, action, int(exp))
    if (time.time() if now is None else now) > link.expires_at:
        raise TokenExpired("link expired")
    return link
