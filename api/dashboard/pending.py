"""Dashboard → Pending: the held mail of all the user's agents, soonest to
expire first, with why each is held (its hold_reason); one draft to read,
edit and approve, or reject. Received mail held by an agent's inbound
protection is in the queue too: read-only, released to the agent or kept
from it through core/inbound/holds, as /v1/reviews does.

Approving and rejecting call core/outbound/approval like the APIs and the
magic links do (one row lock: a message approved here and by a link leaves
once), with the signed-in user as the reviewer. Only the fields whose value
differs from the draft count as edits; a browser sends textareas with CRLF
line ends, which alone is no edit.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from typing import Any

import falcon

from e2a.api.dashboard import web
from e2a.api.resources.magiclinks import MAX_REASON_LENGTH
from e2a.api.v1.resources.sending import MAX_BODY, MAX_SUBJECT
from e2a.core.inbound import holds as inbound_holds
from e2a.core.outbound import approval, compose, holds, screening
from e2a.core.outbound.release import ReleaseError
from e2a.core.store import agents as agent_store
from e2a.core.store import messages as message_store
from e2a.core.store import pending as pending_store

log = logging.getLogger("e2a.api")

MAX_LISTED = 200
# Why a message is held, from its hold_reason (core/outbound/screening,
# core/inbound/screening): its type, and first contact by its code. A row
# held before holds carried a reason was the agent's HITL setting.
REASONS = {"hitl": "Human review (HITL)", "protection": "Protection scan finding",
           "gate": "Gate", "first_contact": "First contact", "brake": "Brake"}
_REASON_OF_TYPE = {"send": "hitl", "scan": "protection", "gate": "gate"}
_ADDRESS_SPLIT = re.compile(r"[,;\n]")
_NOTICES = {"approved": "Approved: the email was handed to the mail server.",
            "rejected": "Rejected: the email will not be sent.",
            "released": "Approved: the received email was released to its agent.",
            "kept": "Rejected: the received email stays hidden from its agent."}


def reason_of(row: dict[str, Any]) -> str:
    hold = row.get("hold_reason") or {}
    if hold.get("code") in (screening.FIRST_CONTACT, screening.BRAKE):
        return str(hold["code"])
    if hold.get("type", "send") == "send" and hold.get("category"):
        return screening.BRAKE  # only a brake's send hold names a category
    return _REASON_OF_TYPE.get(hold.get("type", "send"), "hitl")


def attachments_of(row: dict[str, Any]) -> list[dict[str, Any]]:
    """Each attachment's name, type and size (its content is a download)."""
    found = []
    for index, item in enumerate(row["attachments"] or []):
        try:
            size = len(base64.b64decode(item.get("data", ""), validate=True))
        except (binascii.Error, ValueError):
            size = 0
        found.append({"index": index, "filename": item.get("filename") or f"attachment-{index}",
                      "content_type": item.get("content_type", ""),
                      "size": f"{size / 1024:.0f} KB" if size >= 1024 else f"{size} bytes"})
    return found


def download(resp: falcon.Response, filename: str, data: bytes) -> None:
    """A file to save, never to render on our origin (an HTML attachment
    would run as our page otherwise)."""
    resp.status = falcon.HTTP_200
    resp.set_headers(web.HEADERS)
    resp.content_type = "application/octet-stream"
    safe = re.sub(r"[^A-Za-z0-9._ -]", "_", filename)[:200] or "attachment"
    resp.set_header("Content-Disposition", f'attachment; filename="{safe}"')
    resp.data = data


def html_frame(resp: falcon.Response, html: str) -> None:
    """An HTML body, for the sandboxed frame of a page of ours."""
    resp.status = falcon.HTTP_200
    resp.set_headers(web.FRAME_HEADERS)
    resp.content_type = "text/html; charset=utf-8"
    resp.text = html


class PendingList(web.Page):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        user = self.user(req)
        agent_id = req.get_param("agent") or ""
        reason = req.get_param("reason") or ""
        if reason and reason not in REASONS:
            reason = ""
        with self._pool.connection() as conn:
            agents = agent_store.agents_for_user(conn, user["user_id"])
            if agent_id and agent_id not in {a["id"] for a in agents}:
                web.not_found("agent")
            rows = pending_store.list_pending(conn, user["user_id"], agent_id=agent_id or None,
                                              limit=MAX_LISTED + 1, inbound_too=True)
        more = len(rows) > MAX_LISTED
        held = [dict(row, reason=reason_of(row)) for row in rows[:MAX_LISTED]]
        if reason:
            held = [row for row in held if row["reason"] == reason]
        self.render(req, resp, "dashboard/pending.html", section="pending", held=held,
                    more=more, agents=agents, agent_id=agent_id, reason=reason,
                    reasons=REASONS, notice=_NOTICES.get(req.get_param("done") or "", ""))


class _Draft(web.Page):
    def draft(self, user: dict[str, str], message_id: str) -> dict[str, Any]:
        with self._pool.connection() as conn:
            row = pending_store.outbound_message(conn, message_id, user_id=user["user_id"])
        if row is None:
            web.not_found("message")
        return row

    def show(self, req: falcon.Request, resp: falcon.Response, row: dict[str, Any],
             status: int, *, values: dict[str, str] | None = None, error: str = "") -> None:
        with self._pool.connection() as conn:
            replied_to = pending_store.replied_to(conn, row["agent_id"], row["in_reply_to"])
        given = values or {}
        form = {
            "subject": given.get("subject", row["subject"] or ""),
            "to": given.get("to", ", ".join(row["to_recipients"] or [])),
            "cc": given.get("cc", ", ".join(row["cc"] or [])),
            "bcc": given.get("bcc", ", ".join(row["bcc"] or [])),
            "body_text": given.get("body_text", row["body_text"] or ""),
            "body_html": given.get("body_html", row["body_html"] or ""),
        }
        self.render(req, resp, "dashboard/draft.html", status=status, section="pending",
                    message=row, pending=row["status"] == holds.PENDING,
                    reason=REASONS[reason_of(row)], replied_to=replied_to,
                    attachments=attachments_of(row), form=form, error=error,
                    max_reason=MAX_REASON_LENGTH, max_subject=MAX_SUBJECT)


class PendingDraft(_Draft):
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        user = self.user(req)
        with self._pool.connection() as conn:
            draft = pending_store.outbound_message(conn, id, user_id=user["user_id"])
            held = None if draft is not None else message_store.held_inbound(
                conn, id, user["user_id"])
        if draft is not None:
            self.show(req, resp, draft, 200)
            return
        if held is None:
            web.not_found("message")
        content = holds.extract(bytes(held["raw_message"] or b""))
        self.render(req, resp, "dashboard/held.html", section="pending", message=held,
                    reason=REASONS[reason_of(held)], body_text=content.body_text,
                    attachments=[item["filename"] or f"attachment-{n}"
                                 for n, item in enumerate(content.attachments)],
                    max_reason=MAX_REASON_LENGTH)


def _inbound_decision(act: Any) -> None:
    """Decide a held received message (core/inbound/holds); 404 when the
    user has none by this id, 409 when it was decided on before."""
    try:
        found = act()
    except inbound_holds.NotPending as exc:
        raise _decided(exc.status) from None
    if not found:
        web.not_found("message")


def _outbound(pool: Any, user: dict[str, str], message_id: str) -> bool:
    with pool.connection() as conn:
        return pending_store.outbound_message(conn, message_id,
                                              user_id=user["user_id"]) is not None


class PendingApproval(_Draft):
    """Approve, with what the form changed."""

    max_body_bytes = web.MAX_FORM_BYTES

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        user = self.user(req)
        fields = self.checked_form(req)
        if not _outbound(self._pool, user, id):
            _inbound_decision(lambda: inbound_holds.approve(
                self._pool, id, owner_id=user["user_id"], reviewer=user["user_id"]))
            web.redirect(resp, web.url("/pending", done="released"))
            return
        row = self.draft(user, id)
        try:
            edits = edits_of(row, fields)
            approval.approve(self._pool, self._cfg, id, owner_id=user["user_id"],
                             reviewer_user_id=user["user_id"], edits=edits, via="dashboard")
        except compose.ComposeError as exc:
            self.show(req, resp, row, 422, values=fields, error=str(exc))
            return
        except approval.NotFound:
            web.not_found("message")
        except approval.NotPending as exc:
            raise _decided(exc.status) from None
        except ReleaseError as exc:
            log.warning("approved message not released: %s", exc, extra={"message_id": id})
            error = (f"The mail server refused this email for good ({exc}). It is still "
                     "held: change it, or reject it." if exc.permanent else
                     "The mail server did not take the email just now. It is still held: "
                     "try again in a minute.")
            self.show(req, resp, row, 422 if exc.permanent else 503, values=fields,
                      error=error)
            return
        web.redirect(resp, web.url("/pending", done="approved"))


def _decided(status: str) -> web.PageError:
    return web.PageError(409, "Already decided",
                         f"This email is no longer waiting for review (it is {status}).")


def _text_edit(fields: dict[str, str], name: str, stored: str | None,
               limit: int) -> str | None:
    if name not in fields:
        return None
    value = fields[name].replace("\r\n", "\n")
    if len(value) > limit:
        raise compose.ComposeError(name, f"{name} is at most {limit} characters")
    return None if value == (stored or "").replace("\r\n", "\n") else value


def _addresses(fields: dict[str, str], name: str) -> list[str] | None:
    if name not in fields:
        return None
    return [part.strip() for part in _ADDRESS_SPLIT.split(fields[name]) if part.strip()]


def edits_of(row: dict[str, Any], fields: dict[str, str]) -> approval.Edits | None:
    """The form's values as approval edits; what equals the draft is not
    given (core/outbound/approval decides what else counts as a change)."""
    edits = approval.Edits(
        subject=_text_edit(fields, "subject", row["subject"], MAX_SUBJECT),
        body_text=_text_edit(fields, "body_text", row["body_text"], MAX_BODY),
        body_html=_text_edit(fields, "body_html", row["body_html"], MAX_BODY),
        to=_addresses(fields, "to"), cc=_addresses(fields, "cc"),
        bcc=_addresses(fields, "bcc"))
    given = [getattr(edits, name) for name in ("subject", "body_text", "body_html", "to",
                                               "cc", "bcc")]
    return None if all(value is None for value in given) else edits


class PendingRejection(_Draft):
    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        user = self.user(req)
        fields = self.checked_form(req)
        outbound = _outbound(self._pool, user, id)
        reason = fields.get("reason", "").strip()
        if not reason or len(reason) > MAX_REASON_LENGTH:
            raise web.PageError(422, "A reason is needed",
                                f"Say in up to {MAX_REASON_LENGTH} characters why the email "
                                "must not be sent; it is kept with the message.")
        if not outbound:
            _inbound_decision(lambda: inbound_holds.reject(
                self._pool, id, owner_id=user["user_id"], reviewer=user["user_id"],
                reason=reason))
            web.redirect(resp, web.url("/pending", done="kept"))
            return
        row = self.draft(user, id)
        try:
            approval.reject(self._pool, row["id"], owner_id=user["user_id"],
                            reviewer_user_id=user["user_id"], reason=reason, via="dashboard")
        except approval.NotFound:
            web.not_found("message")
        except approval.NotPending as exc:
            raise _decided(exc.status) from None
        web.redirect(resp, web.url("/pending", done="rejected"))


class PendingAttachment(_Draft):
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str, index: int) -> None:
        row = self.draft(self.user(req), id)
        items = row["attachments"] or []
        if not 0 <= index < len(items):
            web.not_found("attachment")
        item = items[index]
        try:
            data = base64.b64decode(item.get("data", ""), validate=True)
        except (binascii.Error, ValueError):
            data = b""
        download(resp, item.get("filename") or f"attachment-{index}", data)


class PendingHtml(_Draft):
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        row = self.draft(self.user(req), id)
        html_frame(resp, row["body_html"] or "")
