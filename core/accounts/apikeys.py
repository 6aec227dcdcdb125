"""API keys: ``e2a_<64 hex>``, shown once; only a SHA-256 digest is stored.

A digest of a 256-bit random key needs no salt or slow hash: it cannot be
guessed, and the lookup by digest (a unique index) compares no secret bytes in
Python, so timing reveals nothing about other keys.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

_FORMAT = re.compile(r"^e2a_[0-9a-f]{64}$")


def generate() -> str:
    return "e2a_" + secrets.token_hex(32)


def is_well_formed(key: str) -> bool:
    return bool(_FORMAT.match(key))


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def prefix(key: str) -> str:
    """What lists show to tell keys apart (never enough to use)."""
    return key[:12]


def matches(key: str, stored_digest: bytes) -> bool:
    return hmac.compare_digest(digest(key), stored_digest)
