"""Sending through /v1: a new message (``POST …/messages``, in
messages.Messages), a reply and a forward. Each reads the current request
shape strictly, builds its draft with core/outbound/drafts and goes the one send
path the legacy API goes (api/resources/send.Outbox -> core/outbound/send ->
Postfix -> the content filter, where the one hold decision is made)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import falcon
from psycopg_pool import ConnectionPool

from e2a.api import idempotent
from e2a.api.idempotent import Answer, Keep
from e2a.api.resources.send import Outbox
from e2a.api.sendinputs import attachments, mailboxes
from e2a.api.v1 import access, bodies, params
from e2a.api.v1.errors import error, invalid, not_found
from e2a.core import db, timefmt
from e2a.core.config import Config
from e2a.core.outbound import compose, drafts, holds, unsubscribe
from e2a.core.outbound import send as sending
from e2a.core.outbound.compose import ComposeError, Draft
from e2a.core.store import messages as message_store

MAX_ADDRESS = 320
MAX_SUBJECT = 2000
MAX_BODY = 1048576
_ADDRESSES = bodies.Field(list)
_COMMON = {"cc": _ADDRESSES, "bcc": _ADDRESSES,
           "html": bodies.Field(str, max_length=MAX_BODY),
           "conversation_id": bodies.Field(str, max_length=200),
           "attachments": bodies.Field(list),
           # Known to the current API, not served here yet: refused by name.
           "reply_to": bodies.Field((str, list)), "send_at": bodies.Field(str),
           "unsubscribe": bodies.Field(dict)}
SEND = {**_COMMON, "to": bodies.Field(list, required=True),
        "subject": bodies.Field(str, max_length=MAX_SUBJECT),
        "text": bodies.Field(str, max_length=MAX_BODY),
        "template_id": bodies.Field(str), "template_alias": bodies.Field(str),
        "template_data": bodies.Field(dict)}
REPLY = {**_COMMON, "text": bodies.Field(str, required=True, max_length=MAX_BODY),
         "reply_all": bodies.Field(bool), "quote_history": bodies.Field(bool)}
FORWARD = {**_COMMON, "to": bodies.Field(list, required=True),
           "text": bodies.Field(str, required=True, max_length=MAX_BODY)}
# wait=sent holds an immediate send at most this long (the reference: ≤20 s,
# ~15 s now), then answers what it saw.
WAIT_SECONDS = 15.0
# Where respond's check leaves the sending agent for deliver.
_SENDER = "v1_sending_agent"
_NOT_YET = ("reply_to", "send_at", "template_id", "template_alias", "template_data")


def _view(sent: sending.Sent) -> Answer:
    """SendResultView: queued for Postfix is ``accepted``; held for a person
    ``pending_review`` with its expiry. Both 202: nothing left yet."""
    if sent.status == holds.PENDING:
        return Answer(202, {"message_id": sent.message_id, "status": "pending_review",
                            "approval_expires_at": timefmt.rfc3339(sent.approval_expires_at)})
    return Answer(202, {"message_id": sent.message_id, "status": "accepted",
                        "method": sent.method or "smtp"})


@contextmanager
def refusals() -> Iterator[None]:
    """A draft's broken rule in the current vocabulary."""
    try:
        yield
    except ComposeError as exc:
        field = exc.field.split("[")[0].split(".")[0]
        code = {"to": "invalid_recipient", "cc": "invalid_recipient",
                "bcc": "invalid_recipient", "attachments": "invalid_attachment"}.get(
            field, "invalid_request")
        if "recipients (to, cc and bcc)" in str(exc):
            code = "too_many_recipients"
        raise error(400, code, str(exc),
                    fields=[{"location": f"body.{exc.field}", "message": str(exc)}]) from None


def read(req: falcon.Request, schema: dict[str, bodies.Field]) -> dict[str, Any]:
    body = bodies.read(req, schema, body_required=True)
    if "unsubscribe" in body and body["unsubscribe"] != {"mode": unsubscribe.MODE}:
        raise invalid("body.unsubscribe", f'must be {{"mode": "{unsubscribe.MODE}"}}',
                      status=422)
    unsupported = [name for name in _NOT_YET if name in body]
    if unsupported:
        raise error(400, "invalid_request", f"not supported by this server yet: "
                    f"{', '.join(unsupported)}", fields=[
                        {"location": f"body.{name}", "message": "not supported yet"}
                        for name in unsupported])
    return body


class Sender:
    """What the three sends share: the outbox and the idempotent answer."""

    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self.outbox = Outbox(cfg, pool)

    def respond(self, req: falcon.Request, resp: falcon.Response, email: str,
                work: Any) -> None:
        def authorize() -> None:
            with db.autocommit(self.outbox.pool) as conn:
                req.context[_SENDER] = access.agent(conn, req, email)

        wait = params.choice(req, "wait", ("sent",), "")
        idempotent.respond(self.outbox.pool, req, resp, work, authorize=authorize)
        if wait and isinstance(resp.media, dict) and resp.media.get("status") == "accepted":
            self._wait_sent(resp)

    def _wait_sent(self, resp: falcon.Response) -> None:
        """``wait=sent``: 200 ``sent`` (with Postfix's queue id) once the message
        left, 200 ``failed`` when Postfix refused it for good, else the 202
        ``accepted`` as it was. The stored idempotent answer stays the 202: a
        replay does not wait, and never sends again."""
        media = resp.media
        state = sending.wait_sent(self.outbox.pool, media["message_id"], WAIT_SECONDS)
        if state is None:
            return
        if state["delivery_status"] == "failed":
            resp.media = {**media, "status": "failed"}
        else:
            resp.media = {**media, "status": "sent"}
            if state["provider_message_id"]:
                resp.media["provider_message_id"] = state["provider_message_id"]
        resp.status = falcon.HTTP_200

    def deliver(self, req: falcon.Request, email: str, kind: str, keep: Keep,
                build: Any, message_id: str = "", managed_unsubscribe: bool = False) -> Answer:
        agent, inbound = self._read(req, email, message_id)
        if message_id and inbound is None:
            raise not_found(f"message {message_id} not found")
        with refusals():
            draft: Draft = build(self.outbox.sender(agent), agent, inbound)
            # Checked here too, so a broken rule is refused in this API's words.
            compose.check(draft, self.outbox.limits)
        return self.outbox.deliver(agent, kind, draft, keep, view=_view,
                                   managed_unsubscribe=managed_unsubscribe)

    def _read(self, req: falcon.Request, email: str, message_id: str
              ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The sending agent and the message a reply or forward is about.
        The agent is read once per request: ``respond``'s check read it."""
        agent = req.context.get(_SENDER)
        if agent is not None and not message_id:
            return agent, None
        with db.autocommit(self.outbox.pool) as conn:
            agent = agent or access.agent(conn, req, email)
            return agent, (message_store.inbound_for_agent(conn, agent["id"], message_id)
                           if message_id else None)

    def content(self, body: dict[str, Any]) -> dict[str, Any]:
        with refusals():
            return {"cc": mailboxes(body, "cc"), "bcc": mailboxes(body, "bcc"),
                    "attachments": attachments(body, self.outbox.limits)}


def send(sender: Sender, req: falcon.Request, resp: falcon.Response, email: str) -> None:
    """``POST /v1/agents/{email}/messages``."""
    def work(keep: Keep) -> Answer:
        body = read(req, SEND)

        def build(box: Any, agent: dict[str, Any], inbound: Any) -> Draft:
            return Draft(sender=box, to=mailboxes(body, "to"), subject=body.get("subject", ""),
                         text=body.get("text", ""), html=body.get("html", ""),
                         conversation_id=drafts.conversation(body.get("conversation_id", "")),
                         **sender.content(body))
        return sender.deliver(req, email, "send", keep, build,
                              managed_unsubscribe="unsubscribe" in body)

    sender.respond(req, resp, email, work)


class MessageReply:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._sender = Sender(cfg, pool)

    def on_post(self, req: falcon.Request, resp: falcon.Response, email: str,
                id: str) -> None:
        def work(keep: Keep) -> Answer:
            body = read(req, REPLY)

            def build(box: Any, agent: dict[str, Any], inbound: dict[str, Any]) -> Draft:
                return drafts.reply(box, agent, inbound, text=body["text"],
                                    html=body.get("html", ""),
                                    conversation_id=body.get("conversation_id", ""),
                                    reply_all=body.get("reply_all", False),
                                    quote_history=body.get("quote_history", False),
                                    **self._sender.content(body))
            return self._sender.deliver(req, email, "reply", keep, build, id,
                                        managed_unsubscribe="unsubscribe" in body)

        self._sender.respond(req, resp, email, work)


class MessageForward:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._sender = Sender(cfg, pool)

    def on_post(self, req: falcon.Request, resp: falcon.Response, email: str,
                id: str) -> None:
        def work(keep: Keep) -> Answer:
            body = read(req, FORWARD)

            def build(box: Any, agent: dict[str, Any], inbound: dict[str, Any]) -> Draft:
                return drafts.forward(box, inbound, to=mailboxes(body, "to"),
                                      text=body["text"], html=body.get("html", ""),
                                      conversation_id=body.get("conversation_id", ""),
                                      with_originals=True, **self._sender.content(body))
            return self._sender.deliver(req, email, "forward", keep, build, id,
                                        managed_unsubscribe="unsubscribe" in body)

        self._sender.respond(req, resp, email, work)


class AgentTest:
    """``POST /v1/agents/{email}/test``: no body, no idempotency key."""

    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._sender = Sender(cfg, pool)

    def on_post(self, req: falcon.Request, resp: falcon.Response, email: str) -> None:
        bodies.no_body(req)
        answer = self._sender.deliver(
            req, email, "test", Keep(),
            lambda box, agent, inbound: drafts.test_mail(box, agent))
        resp.status = falcon.code_to_http_status(answer.status)
        resp.media = answer.media
