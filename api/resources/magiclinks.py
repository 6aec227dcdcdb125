"""The magic links of the owner's notification: ``/api/v1/approve?token=…``
and ``/api/v1/reject?token=…``.

A GET only shows the held draft and one button (link scanners and mail
previews fetch URLs: nothing may happen then); the button POSTs the token
back, and that acts, through core/outbound/approval.py like every other way of
resolving, with the message's owner as the reviewer. A second use finds the
message resolved (409): the state makes links single-use. No API key: the
token is the credential, checked against the owner's magic-link key, which
only the server holds (core/crypto/serverkeys.py, core/outbound/linkcheck.py). Answers are pages
for a person, also when refused.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

import falcon
from psycopg_pool import ConnectionPool

from e2a.api import pages
from e2a.core.config import Config
from e2a.core.outbound import approval, linkcheck, suppressions
from e2a.core.outbound.release import ReleaseError
from e2a.core.timefmt import rfc3339

log = logging.getLogger("e2a.api")

MAX_REASON_LENGTH = 1000

_RESOLVED = {
    "sent": "This email was already approved and sent.",
    "rejected": "This email was already rejected. It was not sent.",
    "expired_approved": "Nobody decided in time, so it was sent automatically when its "
                        "approval window ended.",
    "expired_rejected": "Nobody decided in time, so it was discarded when its approval "
                        "window ended. It was not sent.",
}
_VERB = {"approve": "approving", "reject": "rejecting"}


def _refusal(resp: falcon.Response, action: str, exc: Exception) -> None:
    """The page for a link that does not act (nothing changed)."""
    if isinstance(exc, linkcheck.WrongAction):
        pages.problem(resp, 400, "Wrong link",
                      f"This link is for {_VERB[exc.meant]} the email, not {_VERB[action]} "
                      "it. Use the other link in the notification email.")
    elif isinstance(exc, linkcheck.BadLink):
        pages.problem(resp, 400, "This link is not valid",
                      "The link may have been cut short or changed when it was copied. "
                      "Open it from the notification email again.")
    elif isinstance(exc, linkcheck.UnknownMessage | approval.NotFound):
        pages.problem(resp, 404, "No such email",
                      "There is no email waiting for review under this link. It may have "
                      "been deleted.")
    elif isinstance(exc, linkcheck.LinkExpired):
        pages.problem(resp, 410, "This link has expired",
                      "The email's approval window is over, and with it this link.")
    elif isinstance(exc, linkcheck.AlreadyResolved | approval.NotPending):
        pages.problem(resp, 409, "Already decided",
                      _RESOLVED.get(exc.status, "This email is no longer waiting for review."))
    else:
        raise exc


def _attachments(row: dict[str, Any]) -> list[dict[str, str]]:
    """Names, types and sizes of the draft's files (their content stays out)."""
    found = []
    for item in row["attachments"] or []:
        try:
            size = len(base64.b64decode(item.get("data", ""), validate=True))
        except (binascii.Error, ValueError):
            size = 0
        found.append({"filename": item.get("filename", ""),
                      "content_type": item.get("content_type", ""),
                      "size": f"{size / 1024:.0f} KB" if size >= 1024 else f"{size} bytes"})
    return found


class _MagicLink:
    public = True
    action = ""

    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._cfg = cfg
        self._pool = pool

    def _held(self, token: str) -> dict[str, Any]:
        with self._pool.connection() as conn:
            return linkcheck.held_message(conn, self._cfg, token, self.action)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        # /v1 links name the token ``t`` (the same token: one signer).
        token = req.get_param("token") or req.get_param("t") or ""
        try:
            row = self._held(token)
        except linkcheck.LinkRefused as exc:
            _refusal(resp, self.action, exc)
            return
        expires = row["approval_expires_at"]
        pages.render(resp, 200, "confirm.html", action=self.action, token=token, message=row,
                     attachments=_attachments(row),
                     expires=rfc3339(expires).replace("T", " ").replace("Z", " UTC")
                     if expires else "its expiry",
                     expiry_action="sent as written"
                     if row["hitl_expiration_action"] == "approve" else "discarded",
                     max_reason=MAX_REASON_LENGTH)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        form = pages.form_fields(req)
        try:
            row = self._held(form.get("token") or form.get("t", ""))
            self.act(row, form)
        except (linkcheck.LinkRefused, approval.NotFound, approval.NotPending) as exc:
            _refusal(resp, self.action, exc)
            return
        except suppressions.Suppressed as exc:
            pages.problem(resp, 422, "A recipient is suppressed",
                          f"{', '.join(exc.addresses)} unsubscribed or bounced, so this email "
                          "was not sent. It is still waiting for review: change its "
                          "recipients through the API, or reject it.")
            return
        except ReleaseError as exc:
            log.warning("approved message not released: %s", exc,
                        extra={"message_id": row["id"]})
            if exc.permanent:
                pages.problem(resp, 422, "The mail server refused this email",
                              f"It said: {exc}. The email is still waiting for review: "
                              "change it through the API, or reject it.")
                return
            pages.problem(resp, 503, "Not sent yet",
                          "The mail server did not take the email just now. It is still "
                          "waiting for your approval: try again in a minute.")
            return
        self.done(resp, row)

    def act(self, row: dict[str, Any], form: dict[str, str]) -> None:
        raise NotImplementedError

    def done(self, resp: falcon.Response, row: dict[str, Any]) -> None:
        raise NotImplementedError


class ApproveLink(_MagicLink):
    action = "approve"

    def act(self, row: dict[str, Any], form: dict[str, str]) -> None:
        approval.approve(self._pool, self._cfg, row["id"], owner_id=None,
                         reviewer_user_id=row["user_id"], via="link")

    def done(self, resp: falcon.Response, row: dict[str, Any]) -> None:
        pages.render(resp, 200, "done.html", message=row, heading="Approved and sent",
                     text="The email was handed to the mail server for delivery.")


class RejectLink(_MagicLink):
    action = "reject"

    def act(self, row: dict[str, Any], form: dict[str, str]) -> None:
        approval.reject(self._pool, row["id"], owner_id=None, reviewer_user_id=row["user_id"],
                        reason=form.get("reason", "").strip()[:MAX_REASON_LENGTH], via="link")

    def done(self, resp: falcon.Response, row: dict[str, Any]) -> None:
        pages.render(resp, 200, "done.html", message=row, heading="Rejected",
                     text="The email will not be sent.")
