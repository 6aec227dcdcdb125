"""The keys only the server holds: derived from the deployment secret
(``secrets.hmac_secret``), one per purpose and, where a key grants an action
on an owner's mail, one per owner.

Anything that lets its bearer act (approve a held message by link or by
reply, claim an outbound row by its return path) is checked against a key
from here, never against an owner's signing secret: agents hold those (they
verify ``X-E2A-Auth-*`` and webhooks with them), and an agent that could mint
an approval could approve its own mail. Nor is the deployment secret itself
ever a key: a token made with it is worth nothing, so it is no master key
for every tenant. The label makes the purposes disjoint (HKDF's info), the
owner's id keeps one owner's links off another owner's messages.
"""

from __future__ import annotations

import functools

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from e2a.core.config import Config

KEY_BYTES = 32

# One label per purpose; a new purpose gets a new label, never a shared one.
MAGIC_LINK = "hitl-magic-link"
REPLY_ADDRESS = "hitl-reply-address"
VERP = "verp-return-path"
# The XCLIENT login that lets the filter and release into the reinjection service.
REINJECT_LOGIN = "reinject-login"
# /v1's attachment download URLs: whoever holds one reads that attachment.
ATTACHMENT_DOWNLOAD = "attachment-download"
# The dashboard (core/accounts/signin.py): what its stored token hashes are
# keyed with, and what its CSRF tokens are derived from.
DASHBOARD_SIGN_IN = "dashboard-sign-in"
DASHBOARD_SESSION = "dashboard-session"
DASHBOARD_CSRF = "dashboard-csrf"
# Keys the stored digest of a managed-unsubscribe token (core/outbound/unsubscribe.py).
UNSUBSCRIBE = "unsubscribe-token"
PER_OWNER = frozenset({MAGIC_LINK, REPLY_ADDRESS, ATTACHMENT_DOWNLOAD})
PURPOSES = frozenset({*PER_OWNER, VERP, REINJECT_LOGIN, DASHBOARD_SIGN_IN, DASHBOARD_SESSION,
                      DASHBOARD_CSRF, UNSUBSCRIBE})

_INFO = b"e2a derived key v1"


def hkdf(secret: str, info: bytes) -> bytes:
    """HKDF-SHA256 of ``secret`` for ``info``: the one derivation every key
    of ours goes through (dkimkeys' at-rest key keeps its own, older info)."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None,
                info=info).derive(secret.encode())


# A key is a function of its inputs alone: derived once per process, not
# on every message (a send asks for the VERP key, a hold for its owner's).
@functools.lru_cache(maxsize=4096)
def derive(secret: str, purpose: str, owner_id: str = "") -> bytes:
    """The key for ``purpose`` (one of PURPOSES), for ``owner_id`` (a user id)
    when the purpose is per owner."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown key purpose {purpose!r}")
    if (purpose in PER_OWNER) != bool(owner_id):
        raise ValueError(f"key purpose {purpose!r} "
                         + ("needs an owner" if purpose in PER_OWNER else "has no owner"))
    if "\0" in owner_id:
        raise ValueError("owner id cannot contain NUL")
    return hkdf(secret, b"\0".join([_INFO, purpose.encode(), owner_id.encode()]))


def for_owner(cfg: Config, purpose: str, owner_id: str) -> bytes:
    """``derive`` from this deployment's secret."""
    return derive(cfg.secrets.hmac_secret, purpose, owner_id)


def deployment(cfg: Config, purpose: str) -> bytes:
    """``derive`` from this deployment's secret, for a purpose with no owner."""
    return derive(cfg.secrets.hmac_secret, purpose)
