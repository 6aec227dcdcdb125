"""``/v1/webhooks[/{id}[/rotate-secret|/test|/deliveries]]``: the current
API's webhook subscriptions. They are the legacy subscriptions (core/webhooks:
the same rules, secrets ``whsec_``, 24-hour dual signing on rotation, the
delivery worker, auto-disable and its cool-down), marked ``generation=v1`` so
their deliveries speak /v1's words (core/v1events). What this adapter adds is
the vocabulary: /v1 event type names, ``agent_emails`` filters (stored as
agent ids), the error codes and the page shape. Account keys only."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import falcon
import psycopg
from psycopg_pool import ConnectionPool

from e2a.api import idempotent
from e2a.api.idempotent import Answer, Keep
from e2a.api.v1 import access, bodies, cursors, params
from e2a.api.v1.errors import error, invalid
from e2a.api.v1.resources.account import confirmed
from e2a.core import v1events, webhooks
from e2a.core.accounts import AccountError
from e2a.core.config import Config
from e2a.core.store import agents as agent_store
from e2a.core.store import deliveries as delivery_store
from e2a.core.store import webhooks as webhook_store
from e2a.core.store.deliveries import PARKED
from e2a.core.timefmt import rfc3339

MAX_URL = 2048
MAX_DESCRIPTION = 200
MAX_FILTER_ITEMS = 50
_FILTERS = {"agent_emails": bodies.Field(list, max_length=MAX_FILTER_ITEMS),
            "conversation_ids": bodies.Field(list, max_length=MAX_FILTER_ITEMS),
            "labels": bodies.Field(list, max_length=MAX_FILTER_ITEMS)}
CREATE = {"url": bodies.Field(str, required=True, max_length=MAX_URL),
          "events": bodies.Field(list, required=True),
          "filters": bodies.Field(dict), "description": bodies.Field(str,
                                                                     max_length=MAX_DESCRIPTION)}
UPDATE = {"url": bodies.Field(str, max_length=MAX_URL), "events": bodies.Field(list),
          "filters": bodies.Field(dict),
          "description": bodies.Field(str, max_length=MAX_DESCRIPTION),
          "enabled": bodies.Field(bool)}
TEST = {"type": bodies.Field(str), "data": bodies.Field(dict)}
_STATUS = {"not_found": 404, "conflict": 409, "gone": 410, "limit_reached": 400}


@contextmanager
def account_rules(conflict: str = "conflict") -> Iterator[None]:
    """core's AccountError in /v1's codes; ``conflict``: what a 409 is called
    for this operation (webhook_cooldown, webhook_disabled, ...)."""
    try:
        yield
    except AccountError as exc:
        status = _STATUS.get(exc.code, 400)
        code = {"limit_reached": "webhook_limit_reached", "conflict": conflict}.get(
            exc.code, exc.code)
        if code == "invalid_request":
            raise invalid("body", str(exc)) from None
        raise error(status, code, str(exc)) from None


def _events(value: list[Any]) -> list[str]:
    if not value:
        raise invalid("body.events", "at least one event type is required")
    try:
        return v1events.stored_types(value)
    except v1events.UnknownType as exc:
        raise error(400, "invalid_event_type", str(exc), fields=[
            {"location": "body.events", "message": str(exc)}]) from None


def _url(cfg: Config, value: str) -> str:
    try:
        return webhooks.check_url(cfg, value)
    except AccountError as exc:
        raise error(400, "invalid_webhook_url", str(exc), fields=[
            {"location": "body.url", "message": str(exc)}]) from None


def _filters(conn: psycopg.Connection, user_id: str, value: dict[str, Any]) -> dict[str, Any]:
    """/v1 filters as stored: agent emails become the ids of the caller's
    agents (an address that is none of theirs is refused, whoever has it)."""
    unknown = sorted(set(value) - set(_FILTERS))
    if unknown:
        raise bodies.unknown_fields([f"filters.{name}" for name in unknown])
    ids = []
    for email in value.get("agent_emails") or []:
        agent = (agent_store.agent_for_user(conn, user_id, email)
                 if isinstance(email, str) and len(email) <= 320 else None)
        if agent is None:
            raise invalid("body.filters.agent_emails", f"{email!r} is not one of your agents")
        ids.append(agent["id"])
    return {"agent_ids": ids, "conversation_ids": value.get("conversation_ids") or [],
            "labels": value.get("labels") or []}


def _legacy_body(conn: psycopg.Connection, cfg: Config, user_id: str,
                 body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: body[k] for k in ("description", "enabled") if k in body}
    if "url" in body:
        out["url"] = _url(cfg, body["url"])
    if "events" in body:
        out["events"] = _events(body["events"])
    if "filters" in body:
        out["filters"] = _filters(conn, user_id, body["filters"])
    return out


def _emails(conn: psycopg.Connection, user_id: str) -> dict[str, str]:
    return {a["id"]: a["email"] for a in agent_store.agents_for_user(conn, user_id)}


def webhook(row: dict[str, Any], emails: dict[str, str], secret: str = "") -> dict[str, Any]:
    """WebhookView (CreateWebhookResponse with ``secret``)."""
    stored = row["filters"] or {}
    filters = {"agent_emails": [emails[i] for i in stored.get("agent_ids") or [] if i in emails],
               "conversation_ids": list(stored.get("conversation_ids") or []),
               "labels": list(stored.get("labels") or [])}
    view: dict[str, Any] = {
        "id": row["id"], "url": row["url"], "description": row["description"] or "",
        "events": v1events.v1_types(row["events"] or []),
        "filters": {k: v for k, v in filters.items() if v},
        "enabled": row["enabled"], "created_at": rfc3339(row["created_at"])}
    if row["last_delivered_at"] is not None:
        view["last_delivered_at"] = rfc3339(row["last_delivered_at"])
    if not row["enabled"] and row["auto_disabled_at"] is not None:
        view["auto_disabled_at"] = rfc3339(row["auto_disabled_at"])
        view["auto_disabled_reason"] = "repeated delivery failures"
    if secret:
        view["signing_secret"] = secret
    return view


def delivery(row: dict[str, Any]) -> dict[str, Any]:
    """WebhookDeliveryView. next_retry_at is required: a delivery that will
    not be tried again (done, or parked while its webhook is off) shows its
    last attempt's time."""
    scheduled = row["status"] == "pending" and row["next_attempt_at"] < PARKED
    view: dict[str, Any] = {
        "id": row["id"], "type": v1events.v1_type(row["event_type"], row["event_data"] or {}),
        "status": row["status"], "attempts": row["attempts"],
        "next_retry_at": rfc3339(row["next_attempt_at"] if scheduled
                                 else row["last_attempt_at"] or row["created_at"]),
        "created_at": rfc3339(row["created_at"])}
    if row["last_attempt_at"] is not None:
        view["last_attempt_at"] = rfc3339(row["last_attempt_at"])
    if row["last_status_code"]:
        view["last_status_code"] = row["last_status_code"]
    if row["last_error"]:
        view["last_error"] = row["last_error"]
    return view


class _Resource:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._cfg = cfg
        self._pool = pool


class Webhooks(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        caller = access.account_key(req)
        limit = params.limit(req)
        secret = self._cfg.secrets.hmac_secret
        bound = cursors.scope(req, "webhooks")
        after = cursors.position(req, secret, bound)
        with self._pool.connection() as conn:
            rows = webhook_store.webhooks_page(conn, caller.user_id, limit=limit + 1,
                                               after=after)
            emails = _emails(conn, caller.user_id)
        resp.media = cursors.page(rows, limit, secret, bound, lambda r: webhook(r, emails),
                                  lambda r: (r["created_at"], r["id"]))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        caller = access.account_key(req)
        # A keyed replay answers the same id and secret (the stored answer).
        idempotent.respond(self._pool, req, resp, lambda keep: self._create(req, keep,
                                                                            caller.user_id),
                           authorize=lambda: None)

    def _create(self, req: falcon.Request, keep: Keep, user_id: str) -> Answer:
        body = bodies.read(req, CREATE, body_required=True)
        # The subscription and its replay record commit together.
        with self._pool.connection() as conn, account_rules(), conn.transaction():
            legacy = _legacy_body(conn, self._cfg, user_id, body)
            row, secret = webhooks.create(conn, self._cfg, user_id, legacy, generation="v1")
            answer = Answer(201, webhook(row, _emails(conn, user_id), secret))
            keep(conn, answer)
        return answer


class Webhook(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        caller = access.account_key(req)
        with self._pool.connection() as conn, account_rules():
            row = webhooks.owned(conn, caller.user_id, id)
            resp.media = webhook(row, _emails(conn, caller.user_id))

    def on_patch(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        caller = access.account_key(req)
        body = bodies.read(req, UPDATE)
        with self._pool.connection() as conn, account_rules("webhook_cooldown"):
            webhooks.owned(conn, caller.user_id, id)
            legacy = _legacy_body(conn, self._cfg, caller.user_id, body)
            row = webhooks.update(conn, self._cfg, caller.user_id, id, legacy)
            resp.media = webhook(row, _emails(conn, caller.user_id))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        caller = access.account_key(req)
        confirmed(req)
        with self._pool.connection() as conn, account_rules():
            webhooks.delete(conn, caller.user_id, id)
        resp.media = {"deleted": True, "id": id}


class WebhookSecretRotation(_Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        caller = access.account_key(req)
        bodies.no_body(req)

        def rotate(keep: Keep) -> Answer:
            with self._pool.connection() as conn, account_rules(), conn.transaction():
                row, secret = webhooks.rotate_secret(conn, caller.user_id, id)
                answer = Answer(200, {"signing_secret": secret,
                                      "previous_secret_expires_at":
                                          rfc3339(row["previous_secret_expires_at"])})
                keep(conn, answer)
            return answer

        # The key is per webhook: the same key on another id is a reuse.
        idempotent.respond(self._pool, req, resp, rotate, authorize=lambda: None)


class WebhookTest(_Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        caller = access.account_key(req)
        body = bodies.read(req, TEST)
        legacy: dict[str, Any] = {"data": body.get("data", {"test": True})}
        if "type" in body:
            try:
                # The stored name of the type: the delivery names it back.
                legacy["event"] = v1events.stored_types([body["type"]])[0]
            except v1events.UnknownType as exc:
                raise error(400, "invalid_event_type", str(exc)) from None
        with self._pool.connection() as conn, account_rules("webhook_disabled"):
            delivery_id = webhooks.send_test(conn, caller.user_id, id, legacy)
        resp.media = {"delivery_id": delivery_id}


class WebhookDeliveries(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        caller = access.account_key(req)
        status = params.choice(req, "status", ("", "pending", "delivered", "failed"), "")
        limit = params.limit(req)
        secret = self._cfg.secrets.hmac_secret
        bound = cursors.scope(req, "deliveries", webhook=id, status=status)
        after = cursors.position(req, secret, bound)
        with self._pool.connection() as conn, account_rules():
            webhooks.owned(conn, caller.user_id, id)
            rows = delivery_store.list_for_webhook(conn, id, status or None, limit + 1,
                                                   after=after)
        resp.media = cursors.page(rows, limit, secret, bound, delivery,
                                  lambda r: (r["created_at"], r["id"]))
