"""``X-E2A-Signature`` on subscription deliveries (docs/contract.md).

``t=<unix seconds>,v1=<hex>`` with ``v1 = HMAC-SHA256(secret, "<t>." + body)``
over the exact bytes sent. While a rotated-out secret is in its grace period a
second ``v1`` signed with it follows, so a receiver that still holds only the
old secret keeps accepting deliveries.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

HEADER = "X-E2A-Signature"
TOLERANCE_SECONDS = 300  # what receivers accept either side of t


def v1(secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def header(secrets: Sequence[str], timestamp: int, body: bytes) -> str:
    """The header value, one ``v1`` per secret, the current secret first."""
    parts = [f"t={timestamp}"] + [f"v1={v1(s, timestamp, body)}" for s in secrets]
    return ",".join(parts)


def verify(value: str, secret: str, body: bytes, now: int,
           tolerance: int = TOLERANCE_SECONDS) -> bool:
    """What a receiver does: some ``v1`` matches and ``t`` is recent enough."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in value.split(","):
        key, _, item = part.strip().partition("=")
        if key == "t" and item.isdigit():
            timestamp = int(item)
        elif key == "v1":
            candidates.append(item)
    if timestamp is None or abs(now - timestamp) > tolerance:
        return False
    expected = v1(secret, timestamp, body)
    return any(hmac.compare_digest(expected, c) for c in candidates)
