"""Idempotency-Key: a retried request gets the first one's answer instead of
doing the work twice (CONTRACT.md).

Keys are per user. The first request with a key claims it (a committed row
with no answer yet); its answer is recorded in the same transaction as its
work, so the two cannot disagree: if the work is rolled back, so is the
answer. The same key with the same request then replays that answer; with
another request it is refused (MISMATCH); while the first is still at work,
the second is told so (IN_PROGRESS) rather than made to wait. A request
that ends without an answer worth keeping (an error) releases its claim, so
the client can retry with the same key.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg

from e2a.core.housekeeping import RETENTION
from e2a.core.store import idempotency as store

MAX_KEY_LENGTH = 255
KEPT = RETENTION["idempotency_keys"]
# A claim this old without an answer belonged to a process that died mid-way
# (a request itself is bounded by submit.timeout per SMTP step).
STALE = timedelta(minutes=10)
# Claim attempts when the row changes under us (released, expired, taken).
_ATTEMPTS = 3


class Outcome(enum.Enum):
    CLAIMED = "claimed"  # do the work, then record() or release()
    REPLAY = "replay"  # answered before: send that answer again
    MISMATCH = "mismatch"  # the key was used with another request
    IN_PROGRESS = "in_progress"  # the first request with the key is still at work


@dataclass(frozen=True)
class Claim:
    outcome: Outcome
    status_code: int = 0  # REPLAY: the first answer's
    response: dict[str, Any] = field(default_factory=dict)


def valid_key(key: str) -> bool:
    """1-255 printable ASCII characters (it is an HTTP header value)."""
    return 0 < len(key) <= MAX_KEY_LENGTH and key.isascii() and key.isprintable()


def request_hash(*parts: bytes) -> bytes:
    """What makes two requests "the same": the caller passes the method, the
    path and the body in a canonical form."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.digest()


def claim(conn: psycopg.Connection, user_id: str, key: str, digest: bytes) -> Claim:
    for _ in range(_ATTEMPTS):
        # Read first: a plain read never waits, whereas an INSERT meeting a
        # key whose answer is being recorded (its row locked by the work's
        # transaction) would wait for that work to end.
        row = store.get(conn, user_id, key, retention=KEPT, stale=STALE)
        if row is None:
            if store.insert_claim(conn, user_id, key, digest):
                return Claim(Outcome.CLAIMED)
            continue  # claimed by another request meanwhile: read its row
        if row["reusable"]:  # expired, or a dead request's claim: as if new
            if store.take_over(conn, user_id, key, digest, retention=KEPT, stale=STALE):
                return Claim(Outcome.CLAIMED)
            continue
        if bytes(row["request_hash"]) != digest:
            return Claim(Outcome.MISMATCH)
        if row["status_code"] is None or not row["settled"]:
            return Claim(Outcome.IN_PROGRESS)
        return Claim(Outcome.REPLAY, row["status_code"], dict(row["response"] or {}))
    return Claim(Outcome.IN_PROGRESS)


def record(conn: psycopg.Connection, user_id: str, key: str, status_code: int,
           response: dict[str, Any], *, confirmed: bool = True) -> None:
    """The answer to replay; call it in the transaction of the work. Not
    ``confirmed``: work that is committed but still to be confirmed (a
    message Postfix has yet to take); until confirm(), or STALE, a second
    request is told IN_PROGRESS."""
    store.finish(conn, user_id, key, status_code, response, confirmed=confirmed)


def confirm(conn: psycopg.Connection, user_id: str, key: str) -> None:
    store.confirm(conn, user_id, key)


def release(conn: psycopg.Connection, user_id: str, key: str) -> None:
    store.release(conn, user_id, key)


def forget(conn: psycopg.Connection, user_id: str, key: str) -> None:
    """Take back an answer recorded for work that was undone since (and the
    claim with it): the key is free again, as after a failure."""
    store.forget(conn, user_id, key)
