"""``/v1/events[/{id}[/redeliver]]``: the one event log (core/store/events,
the rows /api/v1/events shows) in /v1's words (core/v1events): an event's
``id`` and ``data`` are those its /v1 webhook deliveries and WebSocket frames
carry. 30 days visible, then 410 ``gone``. Account keys only."""

from __future__ import annotations

from typing import Any

import falcon
from psycopg_pool import ConnectionPool

from e2a.api.v1 import access, bodies, cursors, params
from e2a.api.v1.errors import error
from e2a.api.v1.resources.webhooks import account_rules
from e2a.core import v1events, webhooks
from e2a.core.config import Config
from e2a.core.store import agents as agent_store
from e2a.core.store import deliveries as delivery_store
from e2a.core.store import events as event_store
from e2a.core.store.events import EventFilter

MAX_ID_LENGTH = 200
# An agent filter naming none of the caller's agents matches nothing.
_NO_AGENT = "-"
REDELIVER = {"webhook_id": bodies.Field(str, max_length=MAX_ID_LENGTH)}


def _status(row: dict[str, Any], counts: dict[str, int]) -> str:
    if row["dispatched_at"] is None or counts["pending"]:
        return "pending"
    return "processed" if counts["matched_webhooks"] else "no_match"


def event(row: dict[str, Any], counts: dict[str, Any] | None) -> dict[str, Any]:
    """EventView: the delivery envelope, then where the event stands."""
    status = {key: int((counts or {}).get(key) or 0)
              for key in ("matched_webhooks", "delivered", "pending", "failed")}
    view = v1events.envelope(row["id"], row["type"], row["created_at"], row["data"] or {},
                             row["agent_email"])
    view.update(status=_status(row, status), delivery_status=status)
    for name in ("agent_email", "conversation_id", "message_id"):
        if row[name]:
            view[name] = row[name]
    return view


class Events:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._secret = cfg.secrets.hmac_secret
        self._pool = pool

    def _filter(self, req: falcon.Request, conn: Any, user_id: str) -> EventFilter:
        type_ = req.get_param("type") or ""
        try:
            types = tuple(v1events.stored_types([type_])) if type_ else ()
        except v1events.UnknownType as exc:
            raise error(400, "invalid_event_type", str(exc), fields=[
                {"location": "query.type", "message": str(exc)}]) from None
        agent_id = ""
        email = params.text(req, "agent_email", max_length=320)
        if email:
            agent = agent_store.agent_for_user(conn, user_id, email, trashed_too=True)
            agent_id = agent["id"] if agent else _NO_AGENT
        return EventFilter(
            types=types, agent_id=agent_id,
            conversation_id=params.text(req, "conversation_id", max_length=MAX_ID_LENGTH),
            message_id=params.text(req, "message_id", max_length=MAX_ID_LENGTH),
            since=params.timestamp(req, "since"), until=params.timestamp(req, "until"))

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        caller = access.account_key(req)
        limit = params.limit(req)
        with self._pool.connection() as conn:
            filt = self._filter(req, conn, caller.user_id)
            bound = cursors.scope(
                req, "events", types=list(filt.types), agent=filt.agent_id,
                conversation_id=filt.conversation_id, message_id=filt.message_id,
                since=filt.since.isoformat() if filt.since else None,
                until=filt.until.isoformat() if filt.until else None)
            after = cursors.position(req, self._secret, bound)
            rows = event_store.list_for_user(conn, caller.user_id, filt,
                                             not_before=webhooks.visible_since(),
                                             limit=limit + 1, after=after)
            counts = delivery_store.status_counts(conn, [r["id"] for r in rows[:limit]])
        resp.media = cursors.page(rows, limit, self._secret, bound,
                                  lambda r: event(r, counts.get(r["id"])),
                                  lambda r: (r["created_at"], r["id"]))


class Event:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        caller = access.account_key(req)
        with self._pool.connection() as conn, account_rules():
            row = webhooks.event(conn, caller.user_id, id)
            counts = delivery_store.status_counts(conn, [id])
        resp.media = event(row, counts.get(id))


class EventRedelivery:
    """202: the replay is queued under the event's own id (receivers dedupe)."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        caller = access.account_key(req)
        webhook_id = bodies.read(req, REDELIVER).get("webhook_id") or None
        with self._pool.connection() as conn, account_rules():
            done = webhooks.redeliver(conn, caller.user_id, id, webhook_id)
        resp.status = falcon.HTTP_202
        if webhook_id:
            view: dict[str, Any] = {"event_id": id, "webhook_id": webhook_id,
                                    "status": "pending"}
            if done["delivery_id"]:
                view["delivery_id"] = done["delivery_id"]
            resp.media = view
            return
        deliveries = []
        for item in done["deliveries"]:
            entry = {"webhook_id": item["webhook_id"],
                     "status": "pending" if item["status"] == "scheduled" else "skipped"}
            if item["delivery_id"]:
                entry["delivery_id"] = item["delivery_id"]
            if item["reason"]:
                entry["reason"] = item["reason"]
            deliveries.append(entry)
        resp.media = {"event_id": id, "status": "scheduled", "deliveries": deliveries}
