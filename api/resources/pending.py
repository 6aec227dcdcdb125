"""Held outbound messages (human in the loop): ``GET /api/v1/messages``
(the owner's queue), ``GET /api/v1/messages/{id}``, and the reviewer's
``POST .../approve`` (optionally with edits) and ``POST .../reject``.

Another user's message is a 404. An agent-scoped key sees only its own
agent's messages and may not approve or reject: the agent is who the human
reviews.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import falcon
from psycopg_pool import ConnectionPool

from e2a.api import auth, errors, idempotent, inputs, pagination, views
from e2a.api.idempotent import Answer, Keep
from e2a.api.resources.send import suppressed
from e2a.api.sendinputs import attachments, mailboxes, refusals, text
from e2a.core.config import Config
from e2a.core.outbound import approval, compose, holds, suppressions
from e2a.core.outbound.release import ReleaseError
from e2a.core.store import pending as pending_store

log = logging.getLogger("e2a.api")

PENDING = holds.PENDING
MAX_REASON_LENGTH = 1000
# Also the default: clients written before the queue was paged read one page.
MAX_PENDING_PAGE = 100
# How long a client should wait before retrying an approval the mail server did not take.
RELEASE_RETRY_AFTER = 30


def _reviewer(req: falcon.Request) -> str:
    principal: auth.Principal = req.context.principal
    if principal.agent_id is not None:
        raise errors.forbidden("an agent-scoped key cannot approve or reject messages")
    return principal.user_id


def _resolving(message_id: str, act: Callable[[], approval.Resolved]) -> approval.Resolved:
    """``act``'s outcome, or the error the API answers for it."""
    try:
        return act()
    except approval.NotFound:
        raise errors.not_found(f"message {message_id} not found") from None
    except approval.NotPending as exc:
        raise errors.ApiError(409, "not_pending",
                              f"message {message_id} is no longer pending approval",
                              details={"status": exc.status}) from None
    except suppressions.Suppressed as exc:
        raise suppressed(exc) from None


class PendingMessages:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._pool = pool
        self._secret = cfg.secrets.hmac_secret

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.get_param("status") != PENDING:
            raise errors.bad_request(f"status must be {PENDING}", param="status")
        principal: auth.Principal = req.context.principal
        size = inputs.page_size(req, default=MAX_PENDING_PAGE, maximum=MAX_PENDING_PAGE)
        scope = {"user_id": principal.user_id, "agent_id": principal.agent_id,
                 "status": PENDING}
        token = req.get_param("token") or ""
        after = pagination.decode(self._secret, scope, token) if token else None
        with self._pool.connection() as conn:
            rows = pending_store.list_pending(conn, principal.user_id,
                                              agent_id=principal.agent_id, limit=size + 1,
                                              after=after)
        page = rows[:size]
        next_token = ""
        if len(rows) > size:
            next_token = pagination.encode(self._secret, scope,
                                           (page[-1]["sort_at"], page[-1]["id"]))
        resp.media = {"messages": [views.pending_summary(row) for row in page],
                      "next_token": next_token}


class PendingMessage:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        principal: auth.Principal = req.context.principal
        with self._pool.connection() as conn:
            row = pending_store.outbound_message(conn, id, user_id=principal.user_id)
            if row is None or principal.agent_id not in (None, row["agent_id"]):
                raise errors.not_found(f"message {id} not found")
            # A reply by the API or by plain SMTP alike: In-Reply-To names it.
            replied_to = pending_store.replied_to(conn, row["agent_id"], row["in_reply_to"])
        resp.media = views.pending_detail(row, replied_to)


def _optional(body: dict[str, Any], name: str, read: Callable[[], Any]) -> Any:
    """``read()`` when the request gives ``name`` (JSON null: not given)."""
    return None if body.get(name) is None else read()


def not_released(message_id: str, exc: ReleaseError) -> errors.ApiError:
    """The answer (both API generations') to an approval Postfix did not
    take: the message is still held."""
    log.warning("approved message not released: %s", exc, extra={"message_id": message_id})
    if exc.permanent:
        return errors.ApiError(
            422, "release_refused",
            f"the mail server refused the message for good ({exc}); it is still "
            "held: edit it (smaller attachments, fewer recipients) or reject it")
    return errors.ApiError(503, "release_unavailable",
                           "the mail server did not take the message; it is still "
                           "held, retry later",
                           headers={"Retry-After": str(RELEASE_RETRY_AFTER)})


def approve_as(pool: ConnectionPool, cfg: Config, message_id: str, reviewer: str,
               edits: approval.Edits | None) -> approval.Resolved:
    """A reviewer's approval through either API generation (core/outbound/approval
    raises NotFound and NotPending for the caller to word)."""
    try:
        return approval.approve(pool, cfg, message_id, owner_id=reviewer,
                                reviewer_user_id=reviewer, edits=edits, via="api")
    except ReleaseError as exc:
        raise not_released(message_id, exc) from None


def edits_of(body: dict[str, Any], limits: compose.SendLimits) -> approval.Edits | None:
    """The overrides an ApprovePendingMessageRequest gives; None when none.
    Malformed values raise ComposeError; whether a value really differs from
    the draft is core/outbound/approval's to say."""
    def addresses(name: str) -> list[str]:
        return [box.address for box in mailboxes(body, name)]

    given = {
        "subject": _optional(body, "subject", lambda: text(body, "subject")),
        "body_text": _optional(body, "body_text", lambda: text(body, "body_text")),
        "body_html": _optional(body, "body_html", lambda: text(body, "body_html")),
        "to": _optional(body, "to", lambda: addresses("to")),
        "cc": _optional(body, "cc", lambda: addresses("cc")),
        "bcc": _optional(body, "bcc", lambda: addresses("bcc")),
        "attachments": _optional(body, "attachments",
                                 lambda: list(attachments(body, limits))),
    }
    if all(value is None for value in given.values()):
        return None
    return approval.Edits(**given)


class PendingApproval:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._cfg = cfg
        self._pool = pool
        self._limits = compose.SendLimits.of(cfg)

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        reviewer = _reviewer(req)
        # The reviewer check above is the whole authorization: keys (and so
        # replays) are per user, and every message the work can reach is
        # looked up under the reviewer's own id.
        idempotent.respond(self._pool, req, resp, lambda keep: self._approve(req, keep, id,
                                                                             reviewer),
                           authorize=lambda: None)

    def _approve(self, req: falcon.Request, keep: Keep, message_id: str,
                 reviewer: str) -> Answer:
        body = inputs.json_object(req)
        with refusals():
            edits = edits_of(body, self._limits)
            done = _resolving(message_id, lambda: approve_as(
                self._pool, self._cfg, message_id, reviewer, edits))
        return Answer(200, {"message_id": done.message_id, "status": done.status,
                            "edited": done.edited, "method": done.method,
                            "provider_message_id": done.provider_message_id})


class PendingRejection:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        reviewer = _reviewer(req)
        body = inputs.json_object(req)
        with refusals():
            reason = text(body, "reason").strip()
        if len(reason) > MAX_REASON_LENGTH:
            raise errors.bad_request(f"reason is at most {MAX_REASON_LENGTH} characters",
                                     param="reason")
        done = _resolving(id, lambda: approval.reject(
            self._pool, id, owner_id=reviewer, reviewer_user_id=reviewer, reason=reason,
            via="api"))
        resp.media = {"message_id": done.message_id, "status": done.status,
                      "rejection_reason": done.rejection_reason}
