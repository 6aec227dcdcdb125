"""``/v1/reviews[/{id}[/approve|/reject]]``: the HITL queue of the current
API. A review is a held message (its id is the message's). Approving and
rejecting call core/outbound/approval, the functions the legacy pending resource and
the magic links call: one row lock, so a hold made through either API is
resolved once, from either. Account keys only (a person reviews what the
agent wrote)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon
from psycopg_pool import ConnectionPool

from e2a.api import idempotent
from e2a.api.idempotent import Answer, Keep
from e2a.api.resources.pending import approve_as, edits_of
from e2a.api.resources.send import suppressed
from e2a.api.v1 import access, bodies, cursors, params, views
from e2a.api.v1.errors import error, not_found
from e2a.api.v1.resources.sending import MAX_BODY, MAX_SUBJECT, refusals
from e2a.core.config import Config
from e2a.core.inbound import holds as inbound_holds
from e2a.core.mailauth import evidence
from e2a.core.outbound import approval, compose, holds, screening, suppressions
from e2a.core.store import messages as message_store
from e2a.core.store import pending as pending_store
from e2a.core.timefmt import rfc3339

MAX_REASON = 2000
APPROVE = {"subject": bodies.Field(str, max_length=MAX_SUBJECT),
           "text": bodies.Field(str, max_length=MAX_BODY),
           "html": bodies.Field(str, max_length=MAX_BODY),
           "to": bodies.Field(list), "cc": bodies.Field(list), "bcc": bodies.Field(list),
           "attachments": bodies.Field(list)}
REJECT = {"reason": bodies.Field(str, max_length=MAX_REASON)}
# The current API's names for the legacy request's fields.
_LEGACY_NAMES = {"text": "body_text", "html": "body_html"}
# A hold recorded before holds carried their reason: the agent held everything.
HOLD_REASON = screening.SEND_HOLD


def review(row: dict[str, Any]) -> dict[str, Any]:
    """ReviewView of a list_pending row."""
    inbound = row["direction"] == "inbound"
    view: dict[str, Any] = {
        "id": row["id"], "agent_email": row["agent_email"], "direction": row["direction"],
        "created_at": rfc3339(row["created_at"]), "subject": row["subject"],
        "to": list(row["to_recipients"] or []), "header_from": row["sender"] or None,
        "envelope_from": (row["envelope_sender"] or None) if inbound else None,
        "verified_domain": evidence.verified_domain(row),
        "review_status": "pending_review",
        "hold_reason": dict(row.get("hold_reason") or HOLD_REASON)}
    view.update({k: v for k, v in views.screening(row).items() if k != "protection"})
    if row["conversation_id"]:
        view["conversation_id"] = row["conversation_id"]
    if row["approval_expires_at"] is not None:
        view["approval_expires_at"] = rfc3339(row["approval_expires_at"])
    return view


def _resolving(message_id: str, act: Callable[[], approval.Resolved]) -> approval.Resolved:
    try:
        return act()
    except approval.NotFound:
        raise not_found(f"review {message_id} not found") from None
    except approval.NotPending as exc:
        raise error(409, "message_not_pending", f"message {message_id} is no longer "
                    "pending review", review_status=exc.status) from None
    except suppressions.Suppressed as exc:
        raise suppressed(exc) from None


def _inbound(act: Callable[[], bool], message_id: str) -> bool:
    """Resolve the review when it is received mail; whether it was."""
    try:
        return act()
    except inbound_holds.NotPending as exc:
        raise error(409, "message_not_pending", f"message {message_id} is no longer "
                    "pending review", review_status=exc.status) from None


class Reviews:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._secret = cfg.secrets.hmac_secret
        self._pool = pool

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        caller = access.account_key(req)
        limit = params.limit(req)
        bound = cursors.scope(req, "reviews")
        after = cursors.position(req, self._secret, bound)
        with self._pool.connection() as conn:
            rows = pending_store.list_pending(conn, caller.user_id, limit=limit + 1,
                                              after=after, inbound_too=True)
        resp.media = cursors.page(rows, limit, self._secret, bound, review,
                                  lambda r: (r["sort_at"], r["id"]))


class Review:
    """MessageView of the held message, with the draft as it stands (body,
    attachments) and, for a reply, ``inbound``: what it answers."""

    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._authserv_id = cfg.mail.authserv_id
        self._pool = pool

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        caller = access.account_key(req)
        with self._pool.connection() as conn:
            draft = pending_store.outbound_message(conn, id, user_id=caller.user_id)
            if draft is None:
                held = message_store.held_inbound(conn, id, caller.user_id)
                if held is None:
                    raise not_found(f"review {id} not found")
                resp.media = {**views.message(held, self._authserv_id),
                              "review_status": "pending_review"}
                return
            row = message_store.open_for_agent(conn, draft["agent_id"], id)
            replied_to = pending_store.replied_to(conn, draft["agent_id"],
                                                  draft["in_reply_to"])
        if row is None:
            raise not_found(f"review {id} not found")
        view = views.message(row, self._authserv_id)
        if draft["status"] == holds.PENDING:
            body = {k: v for k, v in (("text", draft["body_text"]),
                                      ("html", draft["body_html"])) if v}
            view.update(body=body, raw_message=None,
                        hold_reason=view.get("hold_reason") or HOLD_REASON,
                        bcc=list(draft["bcc"] or []),
                        draft_attachments=list(draft["attachments"] or []))
            if draft["approval_expires_at"] is not None:
                view["approval_expires_at"] = rfc3339(draft["approval_expires_at"])
        if replied_to is not None:
            view["inbound"] = {"header_from": replied_to["sender"],
                               "subject": replied_to["subject"],
                               "created_at": rfc3339(replied_to["created_at"]),
                               "authentication": {"spf": replied_to["spf"],
                                                  "dkim": replied_to["dkim"],
                                                  "dmarc": replied_to["dmarc"]}}
        resp.media = view


class ReviewApproval:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._cfg = cfg
        self._pool = pool
        self._limits = compose.SendLimits.of(cfg)

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        caller = access.account_key(req)
        # Keys and replays are per user; every message the work reaches is
        # looked up under the caller's own id: nothing else to authorize.
        idempotent.respond(self._pool, req, resp,
                           lambda keep: self._approve(req, keep, id, caller.user_id),
                           authorize=lambda: None)

    def _approve(self, req: falcon.Request, keep: Keep, message_id: str,
                 reviewer: str) -> Answer:
        body = bodies.read(req, APPROVE)
        if body:
            with self._pool.connection() as conn:
                if inbound_holds.held(conn, message_id, reviewer) is not None:
                    raise error(400, "invalid_request", "a received message is approved as "
                                "it came: no edits")
        if _inbound(lambda: inbound_holds.approve(self._pool, message_id, owner_id=reviewer,
                                                  reviewer=reviewer), message_id):
            # Released to the agent: nothing is sent, so 200, not 202.
            return Answer(200, {"message_id": message_id, "status": "review_approved"})
        legacy = {_LEGACY_NAMES.get(k, k): v for k, v in body.items()}
        with refusals():
            edits = edits_of(legacy, self._limits)
            done = _resolving(message_id, lambda: approve_as(
                self._pool, self._cfg, message_id, reviewer, edits))
        # Postfix has it: queued, as a /v1 send answers.
        return Answer(202, {"message_id": done.message_id, "status": "accepted",
                            "method": done.method or "smtp", "edited": done.edited})


class ReviewRejection:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        caller = access.account_key(req)
        reason = bodies.read(req, REJECT).get("reason", "").strip()
        if _inbound(lambda: inbound_holds.reject(self._pool, id, owner_id=caller.user_id,
                                                 reviewer=caller.user_id, reason=reason), id):
            view = {"message_id": id, "status": "review_rejected"}
            if reason:
                view["rejection_reason"] = reason
            resp.media = view
            return
        done = _resolving(id, lambda: approval.reject(
            self._pool, id, owner_id=caller.user_id, reviewer_user_id=caller.user_id,
            reason=reason, via="api"))
        view = {"message_id": done.message_id, "status": "review_rejected"}
        if done.rejection_reason:
            view["rejection_reason"] = done.rejection_reason
        resp.media = view
