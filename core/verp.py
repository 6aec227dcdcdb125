"""VERP return paths: the envelope sender of outbound mail names the message.

Every message an agent sends leaves with the envelope sender
``bounces+<msg_id>-<mac>@<agent's domain>``. A bounce (DSN) comes back to
that address, so the message it reports on is known without reading the
(often mangled) copy of it inside the DSN; the content filter reads the
same address to find the row the API stored.

The MAC (an HMAC of the id under keys.VERP, a key only the server holds)
is what makes the address ours: anyone on the host can submit mail with
``sendmail -f bounces+<id>@...`` naming a held message, and anyone who got
one of our messages knows its return path's id. Without the MAC such mail
matches no row: it can neither take a held message's place nor mark a
message bounced.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from e2a.core import keys
from e2a.core.config import Config

LOCAL_PREFIX = "bounces+"
MAC_HEX = 16  # 64 bits, guessed only by sending mail: local part 61 of 64 characters
# Exactly core.ids' message ids: nothing else is a VERP address of ours. The
# MAC is optional in the shape so that mail to a return path made before the
# MAC existed is still recognised (and consumed), never acted on.
_LOCAL = re.compile(rf"bounces\+(msg_[0-9a-f]{{32}})(?:-([0-9a-f]{{{MAC_HEX}}}))?",
                    re.IGNORECASE)


def key(cfg: Config) -> bytes:
    """This deployment's VERP key."""
    return keys.deployment(cfg, keys.VERP)


def _mac(verp_key: bytes, msg_id: str) -> str:
    return hmac.new(verp_key, msg_id.encode(), hashlib.sha256).hexdigest()[:MAC_HEX]


def return_path(msg_id: str, domain: str, verp_key: bytes) -> str:
    """The envelope sender for message ``msg_id`` sent from ``domain``."""
    if not _LOCAL.fullmatch(LOCAL_PREFIX + msg_id) or msg_id != msg_id.lower():
        raise ValueError(f"not a message id: {msg_id!r}")
    if not domain or "@" in domain:
        raise ValueError(f"not a domain: {domain!r}")
    return f"{LOCAL_PREFIX}{msg_id}-{_mac(verp_key, msg_id)}@{domain.lower()}"


def _parts(address: str) -> tuple[str, str] | None:
    local, at, domain = address.strip().removeprefix("<").removesuffix(">").rpartition("@")
    if not at or not domain:
        return None
    found = _LOCAL.fullmatch(local)
    return (found.group(1).lower(), (found.group(2) or "").lower()) if found else None


def shaped(address: str) -> bool:
    """Whether ``address`` looks like a return path of ours (MAC or not,
    right or not): mail to it is for us to consume, never to deliver."""
    return _parts(address) is not None


def parse(address: str, verp_key: bytes) -> str | None:
    """The message id in a VERP return path (lowercase) when its MAC is
    ours, None otherwise. The domain is not checked here: whether it is
    ours is the caller's question."""
    parts = _parts(address)
    if parts is None or not parts[1]:
        return None
    msg_id, mac = parts
    return msg_id if hmac.compare_digest(_mac(verp_key, msg_id), mac) else None


def domain_of(address: str) -> str:
    """The domain part, lowercase ("" when there is none)."""
    local, at, domain = address.strip().removeprefix("<").removesuffix(">").rpartition("@")
    return domain.lower() if at and local else ""
