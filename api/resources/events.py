"""``/api/v1/events[/{id}[/redeliver]]``: the caller's event log (30 days).

Account endpoints, like /api/v1/webhooks: an agent-scoped key gets 403,
another user's event is a 404.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import falcon
from psycopg_pool import ConnectionPool

from e2a.api import errors, inputs, pagination, webhookviews
from e2a.api.resources.account import AccountResource
from e2a.core.accounts.registration import AccountError
from e2a.core.config import Config
from e2a.core.store import deliveries as delivery_store
from e2a.core.store import events as event_store
from e2a.core.store.events import EventFilter
from e2a.core.webhooks import eventtypes
from e2a.core.webhooks import subscriptions as webhooks

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
MAX_ID_LENGTH = 255


@dataclass(frozen=True)
class EventQuery:
    filter: EventFilter
    page_size: int
    token: str

    @classmethod
    def from_request(cls, req: falcon.Request) -> EventQuery:
        type_ = req.get_param("type") or ""
        if type_ and not eventtypes.is_known(type_):
            raise errors.bad_request(f"type must be one of {', '.join(eventtypes.TYPES)}",
                                     param="type")
        ids = {name: inputs.text(req, name, max_length=MAX_ID_LENGTH)
               for name in ("agent_id", "conversation_id", "message_id")}
        return cls(
            filter=EventFilter(type=type_, since=inputs.timestamp(req, "since"),
                               until=inputs.timestamp(req, "until"), **ids),
            page_size=inputs.page_size(req, default=DEFAULT_PAGE_SIZE, maximum=MAX_PAGE_SIZE),
            token=req.get_param("token") or "")

    def scope(self, user_id: str) -> dict[str, Any]:
        f = self.filter
        return {"events_of": user_id, "type": f.type, "agent_id": f.agent_id,
                "conversation_id": f.conversation_id, "message_id": f.message_id,
                "since": f.since.isoformat() if f.since else None,
                "until": f.until.isoformat() if f.until else None}


class Events(AccountResource):
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        super().__init__(pool)
        self._secret = cfg.secrets.hmac_secret

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.principal(req)
        query = EventQuery.from_request(req)
        scope = query.scope(principal.user_id)
        after = pagination.decode(self._secret, scope, query.token) if query.token else None
        with self._pool.connection() as conn:
            rows = event_store.list_for_user(
                conn, principal.user_id, query.filter, not_before=webhooks.visible_since(),
                limit=query.page_size + 1, after=after)
            page = rows[:query.page_size]
            counts = delivery_store.status_counts(conn, [r["id"] for r in page])
        next_token = ""
        if len(rows) > query.page_size:
            last = page[-1]
            next_token = pagination.encode(self._secret, scope, (last["created_at"], last["id"]))
        resp.media = {"events": [webhookviews.event(r, counts.get(r["id"])) for r in page],
                      "next_token": next_token}


class Event(AccountResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        principal = self.principal(req)
        try:
            with self._pool.connection() as conn:
                row = webhooks.event(conn, principal.user_id, id)
                counts = delivery_store.status_counts(conn, [id])
        except AccountError as exc:
            raise errors.rule_broken(exc) from None
        resp.media = webhookviews.event(row, counts.get(id))


class EventRedelivery(AccountResource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        principal = self.principal(req)
        webhook_id = inputs.json_object(req).get("webhook_id") or None
        if webhook_id is not None and not isinstance(webhook_id, str):
            raise errors.bad_request("webhook_id must be a string", param="webhook_id")
        try:
            with self._pool.connection() as conn:
                resp.media = webhooks.redeliver(conn, principal.user_id, id, webhook_id)
        except AccountError as exc:
            raise errors.rule_broken(exc) from None
