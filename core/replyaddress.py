"""The Reply-To of an owner's notification: ``approve-<32 hex>-<mac>@<reply domain>``.

The 32 hex digits are the held message's id (``msg_`` left off, so the local
part stays within 64 characters); the MAC, an HMAC of the message id under
the owner's keys.REPLY_ADDRESS key (core/keys.py: the server's alone, never
the signing secret agents hold), makes the address unguessable, so mail to
an address nobody was given does nothing. Whether the reply may act at all
(the owner's From, a DMARC-aligned pass) is core/replyapproval.py's question.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

PREFIX = "approve-"
MAC_HEX = 20  # 80 bits: nobody guesses that within a message's lifetime
_LOCAL = re.compile(rf"approve-([0-9a-f]{{32}})-([0-9a-f]{{{MAC_HEX}}})", re.IGNORECASE)


@dataclass(frozen=True)
class ReplyAddress:
    message_id: str  # msg_<32 hex>, lowercase
    mac: str  # lowercase hex
    domain: str  # lowercase


def _mac(key: bytes, message_id: str) -> str:
    return hmac.new(key, message_id.encode(), hashlib.sha256).hexdigest()[:MAC_HEX]


def build(message_id: str, key: bytes, domain: str) -> str:
    """The reply address for held message ``message_id`` (``msg_<32 hex>``);
    ``key``: its owner's keys.REPLY_ADDRESS key."""
    hex_part = message_id.removeprefix("msg_")
    if not message_id.startswith("msg_") or not re.fullmatch(r"[0-9a-f]{32}", hex_part):
        raise ValueError(f"not a message id: {message_id!r}")
    if not domain or "@" in domain:
        raise ValueError(f"not a domain: {domain!r}")
    return f"{PREFIX}{hex_part}-{_mac(key, message_id)}@{domain.lower()}"


def parse(address: str) -> ReplyAddress | None:
    """The parts of a reply address; None when ``address`` is not shaped like
    one. Neither the MAC nor the domain is checked here."""
    local, at, domain = address.strip().removeprefix("<").removesuffix(">").rpartition("@")
    found = _LOCAL.fullmatch(local) if at and domain else None
    if found is None:
        return None
    return ReplyAddress("msg_" + found.group(1).lower(), found.group(2).lower(), domain.lower())


def verify(reply: ReplyAddress, key: bytes) -> bool:
    """Whether ``key`` (the message owner's keys.REPLY_ADDRESS key) made this
    address. Cheap: ask it before any DNS or DKIM work on the reply."""
    return hmac.compare_digest(_mac(key, reply.message_id), reply.mac)
