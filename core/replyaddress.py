"""The Reply-To of an owner's notification: ``approve-<32 hex>-<mac>@<reply domain>``.

The 32 hex digits are the held message's id (``msg_`` left off, so the local
part stays within 64 characters); the MAC, an HMAC of the message id under
the owner's signing secret, makes the address unguessable, so mail to an
address nobody was given does nothing. Whether the reply may act at all
(the owner's From, a DMARC-aligned pass) is core/replyapproval.py's question.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

from e2a.core import tokens

PREFIX = "approve-"
MAC_HEX = 20  # 80 bits: nobody guesses that within a message's lifetime
_LOCAL = re.compile(rf"approve-([0-9a-f]{{32}})-([0-9a-f]{{{MAC_HEX}}})", re.IGNORECASE)
_PURPOSE = "hitl-reply"


@dataclass(frozen=True)
class ReplyAddress:
    message_id: str  # msg_<32 hex>, lowercase
    mac: str  # lowercase hex
    domain: str  # lowercase


def _mac(secret: str, message_id: str) -> str:
    key = tokens.purpose_key(secret, _PURPOSE)
    return hmac.new(key, message_id.encode(), hashlib.sha256).hexdigest()[:MAC_HEX]


def build(message_id: str, secret: str, domain: str) -> str:
    """The reply address for held message ``message_id`` (``msg_<32 hex>``)."""
    hex_part = message_id.removeprefix("msg_")
    if not message_id.startswith("msg_") or not re.fullmatch(r"[0-9a-f]{32}", hex_part):
        raise ValueError(f"not a message id: {message_id!r}")
    if not domain or "@" in domain:
        raise ValueError(f"not a domain: {domain!r}")
    return f"{PREFIX}{hex_part}-{_mac(secret, message_id)}@{domain.lower()}"


def parse(address: str) -> ReplyAddress | None:
    """The parts of a reply address; None when ``address`` is not shaped like
    one. Neither the MAC nor the domain is checked here."""
    local, at, domain = address.strip().removeprefix("<").removesuffix(">").rpartition("@")
    found = _LOCAL.fullmatch(local) if at and domain else None
    if found is None:
        return None
    return ReplyAddress("msg_" + found.group(1).lower(), found.group(2).lower(), domain.lower())


def verify(reply: ReplyAddress, secrets: Iterable[str]) -> bool:
    """Whether one of ``secrets`` (the owner's, every one of them: a rotation
    does not orphan the notifications already sent) made this address."""
    return any(hmac.compare_digest(_mac(secret, reply.message_id), reply.mac)
               for secret in secrets)
