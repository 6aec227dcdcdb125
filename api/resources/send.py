"""Sending: ``POST /api/v1/send``, ``.../messages/{id}/reply``,
``.../messages/{id}/forward`` and ``/api/v1/agents/{email}/test``.

Each one: the agent (another tenant's is a 404), its domain verified (403),
the message composed and checked (400: nothing is sent), the agent's send
rate (429), then recorded and submitted to Postfix in one go (503 when
Postfix does not take it: nothing is recorded as sent). An agent with HITL
on gets 202 pending_approval with approval_expires_at: the content filter
holds the message until a person approves it (core/outbound/holds.py).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import falcon
import psycopg
from psycopg_pool import ConnectionPool

from e2a.api import auth, errors, idempotent, inputs
from e2a.api.idempotent import Answer, Keep
from e2a.api.sendinputs import attachments, flag, mailboxes, refusals, text
from e2a.core import db, ratelimit, timefmt
from e2a.core.config import Config
from e2a.core.ids import new_id
from e2a.core.messages import conversations
from e2a.core.mta import submit
from e2a.core.outbound import brakes, compose, drafts, holds, suppressions, unsubscribe
from e2a.core.outbound import send as sending
from e2a.core.outbound.compose import ComposeError, Draft, Mailbox
from e2a.core.store import messages as message_store

log = logging.getLogger("e2a.api")

WINDOW_SECONDS = 60
# How long a client should wait before retrying after Postfix did not take a message.
SUBMIT_RETRY_AFTER = 30


def legacy_answer(sent: sending.Sent) -> Answer:
    # 202: held for a person's approval (the agent's HITL), not sent yet.
    return Answer(202 if sent.status == holds.PENDING else 200,
                  {"message_id": sent.message_id, "status": sent.status,
                   "method": sent.method,
                   "approval_expires_at": timefmt.rfc3339(sent.approval_expires_at)})


def suppressed(exc: suppressions.Suppressed) -> errors.ApiError:
    """422 recipient_suppressed, both API generations alike."""
    return errors.ApiError(422, "recipient_suppressed",
                           f"suppressed recipient(s), not sent: {', '.join(exc.addresses)}",
                           details={"addresses": exc.addresses})


class Outbox:
    """What the sending resources share: the send rate, composing, and
    handing over to core/outbound/send with the idempotent answer."""

    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self.cfg = cfg
        self.pool = pool
        self.limits = compose.SendLimits.of(cfg)
        self.rate = ratelimit.Limit("send-agent", cfg.send.rate_per_agent, WINDOW_SECONDS)

    @staticmethod
    def sender(agent: dict[str, Any]) -> Mailbox:
        """The agent may send only once its domain is verified."""
        if not agent["domain_verified"]:
            raise errors.ApiError(403, "domain_not_verified",
                                  f"domain {agent['domain']} is not verified")
        return Mailbox(agent["email"], agent["name"])

    def _checks(self, agent: dict[str, Any], draft: Draft, recipients: list[str],
                message_id: str) -> tuple[str, str]:
        """Suppressed recipients (422), the send rate (429), then the loop
        and abuse brakes (core/outbound/brakes.py), in that order: one
        checkout, one transaction. What refuses is decided inside and raised
        once that committed: a refused send's counts stay counted, as the
        rate limits and the brakes want. Returns the reason to hold the
        message and the brake's name ("" to send it)."""
        with self.pool.connection() as conn:
            with conn.transaction():
                refusal, judged = self._decide(conn, agent, draft, recipients, message_id)
            if judged is not None:
                judged.tell_owner(conn, self.cfg, agent)
        if refusal is not None:
            raise refusal
        assert judged is not None  # no refusal: the brakes were asked
        return self._brake(agent, judged.verdict)

    def _decide(self, conn: psycopg.Connection, agent: dict[str, Any], draft: Draft,
                recipients: list[str], message_id: str
                ) -> tuple[errors.ApiError | None, brakes.Judged | None]:
        """The first refusal, else the brakes' judgement; the counts of
        each check asked are written, those after a refusal are not."""
        try:
            suppressions.check(conn, agent, recipients)
        except suppressions.Suppressed as exc:
            return suppressed(exc), None
        if self.rate.per_window > 0:
            outcome = ratelimit.hit(conn, self.rate, agent["id"])
            if not outcome.allowed:
                return errors.rate_limited(
                    f"agent {agent['email']} may send at most {outcome.limit} messages per "
                    f"{WINDOW_SECONDS} s; retry in {outcome.retry_after_seconds} s",
                    outcome.retry_after_seconds), None
        return None, brakes.counted(conn, self.cfg, agent, brakes.Send(
            recipients, conversation_id=draft.conversation_id,
            in_reply_to=draft.in_reply_to, message_id=message_id))

    @staticmethod
    def _brake(agent: dict[str, Any], verdict: brakes.Verdict) -> tuple[str, str]:
        """The brakes' say: a refusal raised, or the reason to hold the
        message and the brake's name ("" to send it)."""
        if verdict.action is brakes.Action.THROTTLE:
            raise errors.rate_limited(f"agent {agent['email']}: {verdict.reason}; retry in "
                                      f"{verdict.retry_after_seconds} s",
                                      verdict.retry_after_seconds)
        if verdict.action is brakes.Action.PAUSED:
            raise errors.ApiError(403, "agent_paused", verdict.reason,
                                  details={"brake": verdict.brake})
        if verdict.action is brakes.Action.REFUSE:
            raise errors.ApiError(403, "brake_refused", f"not sent: {verdict.reason}",
                                  details={"brake": verdict.brake})
        if verdict.action is brakes.Action.HOLD:
            return verdict.reason, verdict.brake
        return "", ""

    def deliver(self, agent: dict[str, Any], kind: str, draft: Draft, keep: Keep, *,
                view: Callable[[sending.Sent], Answer] | None = None,
                managed_unsubscribe: bool = False) -> Answer:
        """``view``: the answer in the caller's API generation (the legacy
        one when None). ``managed_unsubscribe``: the message carries a
        one-click unsubscribe link for its one recipient."""
        self._own_conversation(agent, draft.conversation_id)
        message_id = new_id("msg")
        minted = None
        if managed_unsubscribe:
            only = compose.unique_addresses([*draft.to, *draft.cc, *draft.bcc])
            if len(only) != 1:
                raise errors.bad_request("managed unsubscribe needs exactly one recipient "
                                         f"across to, cc and bcc ({len(only)} given)",
                                         param="unsubscribe")
            minted = unsubscribe.mint(self.cfg)
            draft = dataclasses.replace(draft, unsubscribe_url=minted.url,
                                        unsubscribe_mailto=minted.mailto)
        with refusals():
            composed = compose.compose(draft, message_id=message_id, domain=agent["domain"],
                                       limits=self.limits)
        brake_hold, brake = self._checks(agent, draft, composed.recipients, message_id)
        answer = view or legacy_answer

        try:
            sent = sending.send(self.pool, self.cfg,
                                sending.AgentMessage(message_id, kind, agent, composed),
                                in_transaction=lambda conn, s: (
                                    minted and unsubscribe.record(
                                        conn, minted, agent, composed.recipients[0],
                                        message_id),
                                    keep(conn, answer(s), confirmed=False)),
                                confirmed=keep.confirm, undo=keep.forget,
                                brake_hold=brake_hold, brake=brake)
        except sending.Blocked as exc:
            raise errors.ApiError(403, "blocked_by_policy",
                                  f"the agent's protection settings refuse this message: "
                                  f"{exc}") from None
        except submit.SubmitError as exc:
            log.warning("submission failed, nothing sent: %s", exc,
                        extra={"message_id": message_id, "agent": agent["email"]})
            raise errors.ApiError(503, "submit_unavailable",
                                  "the mail server did not take the message; it was not "
                                  "sent, retry later",
                                  headers={"Retry-After": str(SUBMIT_RETRY_AFTER)}) from None
        return answer(sent)

    def _own_conversation(self, agent: dict[str, Any], conversation_id: str) -> None:
        """A caller names only a conversation of its own account, or a new
        one: another tenant's id would put this message in their thread."""
        if not conversation_id or drafts.minted(conversation_id):
            return
        with db.autocommit(self.pool) as conn:
            mine = conversations.open_to(conn, conversation_id, agent["user_id"])
        if not mine:
            raise errors.ApiError(403, "conversation_forbidden",
                                  f"conversation {conversation_id} belongs to another account",
                                  details={"param": "conversation_id"})

    def content(self, body: dict[str, Any]) -> dict[str, Any]:
        """What every kind of send takes from the body alike."""
        return {"cc": mailboxes(body, "cc"), "bcc": mailboxes(body, "bcc"),
                "attachments": attachments(body, self.limits)}


class Send:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._outbox = Outbox(cfg, pool)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        idempotent.respond(self._outbox.pool, req, resp, lambda keep: self._send(req, keep),
                           authorize=lambda: self._sender(req))

    def _sender(self, req: falcon.Request) -> dict[str, Any]:
        """The agent at ``from``, if the caller's key may use it (else 404).
        Read once per request: the idempotency check asks first, the send
        after it, and a second read would be a second round trip."""
        known = req.context.get("sender_agent")
        if known is not None:
            return known
        with refusals():
            given = text(inputs.json_object(req), "from")
            if not given:
                raise ComposeError("from", "required: the address of the agent that sends")
            address = compose.mailbox(given, "from").address.lower()
        with db.autocommit(self._outbox.pool) as conn:
            agent = auth.agent_for(conn, req.context.principal, address)
        req.context["sender_agent"] = agent
        return agent

    def _send(self, req: falcon.Request, keep: Keep) -> Answer:
        body = inputs.json_object(req)
        agent = self._sender(req)
        with refusals():
            draft = Draft(
                sender=self._outbox.sender(agent), to=mailboxes(body, "to"),
                subject=text(body, "subject"), text=text(body, "body"),
                html=text(body, "html_body"),
                conversation_id=drafts.conversation(text(body, "conversation_id")),
                **self._outbox.content(body))
        return self._outbox.deliver(agent, "send", draft, keep)


class _AboutReceived:
    """Reply and Forward: a new message about one the agent received."""

    kind = ""

    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._outbox = Outbox(cfg, pool)

    def on_post(self, req: falcon.Request, resp: falcon.Response, email: str,
                id: str) -> None:
        idempotent.respond(self._outbox.pool, req, resp,
                           lambda keep: self._act(req, keep, email, id),
                           authorize=lambda: self._authorize(req, email))

    def _authorize(self, req: falcon.Request, email: str) -> None:
        with db.autocommit(self._outbox.pool) as conn:
            auth.agent_for(conn, req.context.principal, email)

    def _act(self, req: falcon.Request, keep: Keep, email: str, message_id: str) -> Answer:
        body = inputs.json_object(req)
        with db.autocommit(self._outbox.pool) as conn:
            agent = auth.agent_for(conn, req.context.principal, email)
            inbound = message_store.inbound_for_agent(conn, agent["id"], message_id)
        if inbound is None:
            raise errors.not_found(f"message {message_id} not found")
        with refusals():
            draft = self.draft(body, self._outbox.sender(agent), agent, inbound)
        return self._outbox.deliver(agent, self.kind, draft, keep)

    def draft(self, body: dict[str, Any], sender: Mailbox, agent: dict[str, Any],
              inbound: dict[str, Any]) -> Draft:
        raise NotImplementedError


class Reply(_AboutReceived):
    kind = "reply"

    def draft(self, body: dict[str, Any], sender: Mailbox, agent: dict[str, Any],
              inbound: dict[str, Any]) -> Draft:
        return drafts.reply(sender, agent, inbound, text=text(body, "body"),
                            html=text(body, "html_body"),
                            conversation_id=text(body, "conversation_id"),
                            reply_all=flag(body, "reply_all"), **self._outbox.content(body))


class Forward(_AboutReceived):
    kind = "forward"

    def draft(self, body: dict[str, Any], sender: Mailbox, agent: dict[str, Any],
              inbound: dict[str, Any]) -> Draft:
        return drafts.forward(sender, inbound, to=mailboxes(body, "to"),
                              text=text(body, "body"), html=text(body, "html_body"),
                              conversation_id=text(body, "conversation_id"),
                              **self._outbox.content(body))


class AgentTest:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._outbox = Outbox(cfg, pool)

    def on_post(self, req: falcon.Request, resp: falcon.Response, email: str) -> None:
        with db.autocommit(self._outbox.pool) as conn:
            agent = auth.agent_for(conn, req.context.principal, email)
        draft = drafts.test_mail(self._outbox.sender(agent), agent)
        answer = self._outbox.deliver(agent, "test", draft, idempotent.Keep())
        resp.status = falcon.code_to_http_status(answer.status)
        resp.media = answer.media
