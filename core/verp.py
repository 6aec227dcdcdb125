"""VERP return paths: the envelope sender of outbound mail names the message.

Every message an agent sends leaves with the envelope sender
``bounces+<msg_id>@<agent's domain>``. A bounce (DSN) comes back to that
address, so the message it reports on is known without reading the
(often mangled) copy of it inside the DSN; the content filter reads the
same address to find the row the API stored.
"""

from __future__ import annotations

import re

LOCAL_PREFIX = "bounces+"
# Exactly core.ids' message ids: nothing else is a VERP address of ours.
_LOCAL = re.compile(r"bounces\+(msg_[0-9a-f]{32})", re.IGNORECASE)


def return_path(msg_id: str, domain: str) -> str:
    """The envelope sender for message ``msg_id`` sent from ``domain``."""
    if not _LOCAL.fullmatch(LOCAL_PREFIX + msg_id) or msg_id != msg_id.lower():
        raise ValueError(f"not a message id: {msg_id!r}")
    if not domain or "@" in domain:
        raise ValueError(f"not a domain: {domain!r}")
    return f"{LOCAL_PREFIX}{msg_id}@{domain.lower()}"


def parse(address: str) -> str | None:
    """The message id in a VERP return path (lowercase), None when ``address``
    is not one. The domain is not checked here: whether it is ours is the
    caller's question."""
    local, at, domain = address.strip().removeprefix("<").removesuffix(">").rpartition("@")
    if not at or not domain:
        return None
    found = _LOCAL.fullmatch(local)
    return found.group(1).lower() if found else None


def domain_of(address: str) -> str:
    """The domain part, lowercase ("" when there is none)."""
    local, at, domain = address.strip().removeprefix("<").removesuffix(">").rpartition("@")
    return domain.lower() if at and local else ""
