"""The ``Idempotency-Key`` header on endpoints that do something once (send,
reply, forward; approve later), over core/idempotency.py.

A responder hands its work to ``respond``, with the check of what the
caller's key may touch: a replay is an answer like any other, and comes
only after that check. The work gets ``keep``, to call inside its own
transaction with the answer it is about to give, so the answer is recorded
exactly when the work commits. Only successes are kept:
a request that fails releases the key, and the client may retry with it.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import falcon
import psycopg
from psycopg_pool import ConnectionPool

from e2a.api import errors, inputs, opdoc
from e2a.core import idempotency
from e2a.core.idempotency import Outcome

log = logging.getLogger("e2a.api")

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
PARAMETER = opdoc.header_param(
    HEADER, "Caller-generated unique key (a UUIDv4, say), at most "
    f"{idempotency.MAX_KEY_LENGTH} characters. A retry with the same key and body within "
    "24 h replays the first response (with Idempotent-Replayed: true); the same key with "
    "another body is a 422; while the first request runs, a 409.")
RESPONSES = {
    "409": opdoc.error("Another request with this Idempotency-Key is in progress"),
    "422": opdoc.error("Idempotency-Key reused with a different request body"),
}


@dataclass(frozen=True)
class Answer:
    status: int
    media: dict[str, Any]


class Keep:
    """keep(conn, answer): record the answer in the work's transaction on
    conn (``confirmed=False``: keep.confirm(conn) later makes it final).
    keep.forget(conn): take a committed answer back, in the transaction that
    undoes the work (core/sending commits its answer before Postfix is asked,
    confirms it after Postfix's 250, and undoes both when Postfix does not
    take the mail)."""

    def __init__(self, user_id: str = "", key: str = "") -> None:
        self.user_id = user_id
        self.key = key
        self.kept = False

    def __call__(self, conn: psycopg.Connection, answer: Answer, *,
                 confirmed: bool = True) -> None:
        if self.key:
            idempotency.record(conn, self.user_id, self.key, answer.status, answer.media,
                               confirmed=confirmed)
        self.kept = True

    def confirm(self, conn: psycopg.Connection) -> None:
        if self.key and self.kept:
            idempotency.confirm(conn, self.user_id, self.key)

    def forget(self, conn: psycopg.Connection) -> None:
        if self.key and self.kept:
            idempotency.forget(conn, self.user_id, self.key)
        self.kept = False


Work = Callable[[Keep], Answer]


def _write(resp: falcon.Response, answer: Answer) -> None:
    resp.status = falcon.code_to_http_status(answer.status)
    resp.media = answer.media


def _canonical_body(req: falcon.Request) -> bytes:
    """The JSON body in one spelling: key order and spacing do not make two
    requests different."""
    body = inputs.json_object(req)
    return json.dumps(body, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8", "surrogatepass")


def respond(pool: ConnectionPool, req: falcon.Request, resp: falcon.Response,
            work: Work, *, authorize: Callable[[], object]) -> None:
    """``authorize`` raises when the caller's key may not do this at all (an
    agent-scoped key naming another agent: 404). It runs before the key is
    looked at: keys are per user, so without it any key of the user would
    get any stored answer of the user's, whatever that key may touch."""
    authorize()
    key = req.get_header(HEADER)
    if key is None:
        _write(resp, work(Keep()))
        return
    if not idempotency.valid_key(key):
        raise errors.bad_request(f"{HEADER} must be 1 to {idempotency.MAX_KEY_LENGTH} "
                                 "printable ASCII characters", param=HEADER)
    user_id = req.context.principal.user_id
    digest = idempotency.request_hash(req.method.encode(), req.path.encode(),
                                      _canonical_body(req))
    with pool.connection() as conn:
        claim = idempotency.claim(conn, user_id, key, digest)
    if claim.outcome is Outcome.REPLAY:
        _write(resp, Answer(claim.status_code, claim.response))
        resp.set_header(REPLAYED, "true")
        return
    if claim.outcome is Outcome.MISMATCH:
        raise errors.ApiError(422, "idempotency_key_reused",
                              f"this {HEADER} was used with a different request")
    if claim.outcome is Outcome.IN_PROGRESS:
        raise errors.ApiError(409, "idempotency_key_in_progress",
                              f"a request with this {HEADER} is still in progress; "
                              "retry later")
    keep = Keep(user_id, key)
    try:
        answer = work(keep)
        if not keep.kept:
            with pool.connection() as conn:
                idempotency.record(conn, user_id, key, answer.status, answer.media)
    except BaseException:
        # A rolled-back keep() left the claim unanswered: free the key. Were
        # the database gone, the claim counts as dead after STALE.
        with contextlib.suppress(psycopg.Error), pool.connection() as conn:
            idempotency.release(conn, user_id, key)
        raise
    _write(resp, answer)
