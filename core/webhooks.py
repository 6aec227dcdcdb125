"""Webhook subscriptions and the event log: the rules behind /api/v1/webhooks
and /api/v1/events.

- The signing secret (``whsec_<64 hex>``) is shown once, at creation and at
  rotation. A rotation keeps the old secret signing alongside the new one for
  24 hours (CONTRACT.md), so receivers can switch without losing a delivery.
- Auto-disable: see store.webhooks.record_failure (config
  ``webhooks.disable_after_failures`` / ``disable_after_seconds``; by default
  20 failed attempts in a row spread over at least 24 hours). Switching a
  disabled subscription back on is refused (409) for 5 minutes after it was
  switched off, so a client looping on PATCH enabled=true cannot hammer a
  receiver that is still down. Its deliveries that were pending go out again.
- Events are visible for 30 days (housekeeping.EVENTS_VISIBLE); an event past
  that is answered 410 while its row remains (one more day), then 404.
- Replays reuse the event id: a receiver that processed the event already
  discards the replay. A replay goes only to subscriptions the event was
  dispatched to, and never while a delivery of it to that one is pending.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from e2a.core import eventtypes, housekeeping, labels, signing_secrets, webhookurl
from e2a.core.accounts import AccountError
from e2a.core.config import Config
from e2a.core.ids import new_id
from e2a.core.store import deliveries as delivery_store
from e2a.core.store import events as event_store
from e2a.core.store import users as user_store
from e2a.core.store import webhooks as webhook_store

ROTATION_GRACE = timedelta(hours=24)
REENABLE_COOLDOWN = timedelta(minutes=5)
REDELIVER_WINDOW = timedelta(days=7)
MAX_DESCRIPTION = 500
MAX_FILTER_ITEMS = 100
MAX_ID_LENGTH = 255
FILTER_KEYS = ("agent_ids", "conversation_ids", "labels")
TEST_EVENT_DATA = {"test": True, "message": "a test event from e2a"}

Row = dict[str, Any]


def _bad(message: str) -> AccountError:
    return AccountError(message, code="invalid_request")


def _not_found(what: str) -> AccountError:
    return AccountError(f"{what} not found", code="not_found")


# -- checking what a caller sends ----------------------------------------------


def check_url(cfg: Config, url: object) -> str:
    try:
        return webhookurl.check(url, allow_loopback=cfg.webhooks.allow_loopback)
    except webhookurl.WebhookUrlError as exc:
        raise _bad(str(exc).replace("webhook_url", "url")) from None


def check_events(value: object) -> list[str]:
    if not isinstance(value, list) or not value:
        raise _bad("events must be a non-empty array of event types")
    unknown = [v for v in value if not eventtypes.is_known(v)]
    if unknown:
        raise _bad(f"unknown event type {unknown[0]!r}; known: {', '.join(eventtypes.TYPES)}")
    return list(dict.fromkeys(value))  # no repeats, order kept


def _id_list(value: object, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and 0 < len(v) <= MAX_ID_LENGTH
                                              for v in value):
        raise _bad(f"filters.{name} must be an array of non-empty strings")
    if len(value) > MAX_FILTER_ITEMS:
        raise _bad(f"filters.{name}: at most {MAX_FILTER_ITEMS} entries")
    return list(dict.fromkeys(value))


def check_filters(value: object) -> dict[str, list[str]]:
    """Always all three keys, each a list (empty: no constraint)."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise _bad("filters must be an object")
    filters = {name: _id_list(value.get(name), name) for name in FILTER_KEYS}
    try:
        for label in filters["labels"]:
            labels.check(label, "filters.labels")
    except labels.LabelError as exc:
        raise _bad(str(exc)) from None
    return filters


def check_description(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise _bad(f"description must be a string of at most {MAX_DESCRIPTION} characters")
    return value


# -- subscriptions --------------------------------------------------------------


def owned(conn: psycopg.Connection, user_id: str, webhook_id: str, *,
          lock: bool = False) -> Row:
    row = webhook_store.webhook_for_user(conn, user_id, webhook_id, lock=lock)
    if row is None:
        raise _not_found(f"webhook {webhook_id}")
    return row


def create(conn: psycopg.Connection, cfg: Config, user_id: str,
           body: Mapping[str, Any], *, generation: str = "legacy") -> tuple[Row, str]:
    """The new subscription and its secret (the only time it is shown).
    ``generation``: the API that made it, whose words its deliveries speak."""
    url = check_url(cfg, body.get("url"))
    events = check_events(body.get("events"))
    filters = check_filters(body.get("filters"))
    description = check_description(body.get("description"))
    with conn.transaction():
        user_store.lock_user(conn, user_id)
        if webhook_store.count_for_user(conn, user_id) >= cfg.webhooks.max_per_user:
            raise AccountError(f"at most {cfg.webhooks.max_per_user} webhooks per user: "
                               "delete one first", code="limit_reached")
        secret = signing_secrets.generate()
        row = webhook_store.insert_webhook(conn, new_id("wh"), user_id, url, description,
                                           events, filters, secret, generation)
    return row, secret


def update(conn: psycopg.Connection, cfg: Config, user_id: str, webhook_id: str,
           body: Mapping[str, Any]) -> Row:
    changes: dict[str, Any] = {}
    if body.get("url") is not None:
        changes["url"] = check_url(cfg, body["url"])
    if body.get("events") is not None:
        changes["events"] = check_events(body["events"])
    if body.get("filters") is not None:
        changes["filters"] = check_filters(body["filters"])
    if body.get("description") is not None:
        changes["description"] = check_description(body["description"])
    if body.get("enabled") is not None:
        if not isinstance(body["enabled"], bool):
            raise _bad("enabled must be true or false")
        changes["enabled"] = body["enabled"]
    with conn.transaction():
        row = owned(conn, user_id, webhook_id, lock=True)
        switch = changes.get("enabled")
        if switch and not row["enabled"]:
            disabled_at = row["auto_disabled_at"]
            if disabled_at and datetime.now(UTC) < disabled_at + REENABLE_COOLDOWN:
                until = disabled_at + REENABLE_COOLDOWN
                raise AccountError(
                    f"webhook {webhook_id} was switched off after repeated failures; it may "
                    f"be switched on again from {until.strftime('%Y-%m-%dT%H:%M:%SZ')}",
                    code="conflict")
            # Its deliveries that waited while it was off go out now.
            delivery_store.resume_parked(conn, webhook_id)
            event_store.notify_workers(conn)
        elif switch is False and row["enabled"]:
            delivery_store.park_pending(conn, webhook_id)
        return webhook_store.update_webhook(conn, webhook_id, changes)


def delete(conn: psycopg.Connection, user_id: str, webhook_id: str) -> None:
    if not webhook_store.delete_webhook(conn, user_id, webhook_id):
        raise _not_found(f"webhook {webhook_id}")


def rotate_secret(conn: psycopg.Connection, user_id: str, webhook_id: str) -> tuple[Row, str]:
    with conn.transaction():
        owned(conn, user_id, webhook_id, lock=True)
        secret = signing_secrets.generate()
        row = webhook_store.rotate_secret(conn, webhook_id, secret, ROTATION_GRACE)
    return row, secret


def send_test(conn: psycopg.Connection, user_id: str, webhook_id: str,
              body: Mapping[str, Any]) -> str:
    """Queue a synthetic event for this one subscription; the delivery id."""
    type_ = body.get("event") or eventtypes.EMAIL_RECEIVED
    if not eventtypes.is_known(type_):
        raise _bad(f"unknown event type {type_!r}; known: {', '.join(eventtypes.TYPES)}")
    data = body.get("data")
    if data is None:
        data = TEST_EVENT_DATA
    if not isinstance(data, dict):
        raise _bad("data must be an object")
    with conn.transaction():
        hook = owned(conn, user_id, webhook_id)
        if not hook["enabled"]:
            raise AccountError(f"webhook {webhook_id} is disabled", code="conflict")
        event = event_store.insert_synthetic_event(conn, new_id("evt"), user_id, type_, data)
        delivery = delivery_store.insert_delivery(conn, new_id("whd"), event["id"], webhook_id,
                                                  "test")
        event_store.notify_workers(conn)
    return delivery["id"]


# -- the event log --------------------------------------------------------------


def visible_since() -> datetime:
    return datetime.now(UTC) - housekeeping.EVENTS_VISIBLE


def event(conn: psycopg.Connection, user_id: str, event_id: str) -> Row:
    """The caller's event; not_found, or gone when past retention."""
    row = event_store.event_for_user(conn, user_id, event_id)
    if row is None:
        raise _not_found(f"event {event_id}")
    if row["created_at"] < visible_since():
        raise AccountError(f"event {event_id} is past the "
                           f"{housekeeping.EVENTS_VISIBLE.days}-day retention", code="gone")
    return row


def redeliver(conn: psycopg.Connection, user_id: str, event_id: str,
              webhook_id: str | None) -> dict[str, Any]:
    """Replay one event to one of its subscriptions, or to each of them."""
    with conn.transaction():
        event(conn, user_id, event_id)
        matched = delivery_store.matched_webhooks(conn, event_id)
        if webhook_id:
            target = next((m for m in matched if m["id"] == webhook_id), None)
            if target is None:
                raise AccountError(f"event {event_id} was not delivered to webhook "
                                   f"{webhook_id}", code="conflict")
            if not target["enabled"]:
                raise AccountError(f"webhook {webhook_id} is disabled", code="conflict")
            result = _replay(conn, event_id, target)
            event_store.notify_workers(conn)
            return {"event_id": event_id, "webhook_id": webhook_id,
                    "delivery_id": result["delivery_id"], "status": result["status"],
                    "deliveries": []}
        results = [_replay(conn, event_id, m) for m in matched]
        event_store.notify_workers(conn)
    scheduled = any(r["status"] == "scheduled" for r in results)
    return {"event_id": event_id, "webhook_id": "", "delivery_id": "",
            "status": "scheduled" if scheduled else "skipped", "deliveries": results}


def _replay(conn: psycopg.Connection, event_id: str, target: Row) -> dict[str, str]:
    if not target["enabled"]:
        return {"webhook_id": target["id"], "delivery_id": "", "status": "skipped",
                "reason": "webhook disabled"}
    if target["pending"]:
        return {"webhook_id": target["id"], "delivery_id": "", "status": "skipped",
                "reason": "a delivery is already pending"}
    row = delivery_store.insert_delivery(conn, new_id("whd"), event_id, target["id"],
                                         "redeliver")
    return {"webhook_id": target["id"], "delivery_id": row["id"], "status": "scheduled",
            "reason": ""}


def redeliver_since(conn: psycopg.Connection, user_id: str, webhook_id: str,
                    since: datetime) -> dict[str, Any]:
    """Replay every event dispatched to this subscription since ``since``
    (at most 7 days back) that has no delivery pending to it."""
    if since < datetime.now(UTC) - REDELIVER_WINDOW:
        raise _bad(f"since must be within the last {REDELIVER_WINDOW.days} days")
    with conn.transaction():
        hook = owned(conn, user_id, webhook_id, lock=True)
        found = delivery_store.matched_events_since(conn, webhook_id, since, visible_since())
        todo = [r["event_id"] for r in found if not r["pending"]]
        delivery_store.insert_deliveries(conn, (
            {"id": new_id("whd"), "event_id": e, "webhook_id": webhook_id, "agent_id": None,
             "origin": "redeliver"} for e in todo))
        if hook["enabled"]:
            event_store.notify_workers(conn)
        else:
            delivery_store.park_pending(conn, webhook_id)
    return {"webhook_id": webhook_id, "scheduled": len(todo),
            "skipped_already_pending": len(found) - len(todo)}
