"""Fanning events out into deliveries: the worker's ``dispatch`` job.

An event becomes one delivery per subscription that matches it, and an
``email.received`` for a cloud-mode agent one more, to the agent's own
webhook_url. Matching, the inserts and marking the events dispatched are one
transaction over rows locked FOR UPDATE SKIP LOCKED, so several workers never
dispatch an event twice, and a worker that dies mid-batch leaves the batch to
the next one.

A subscription matches an event when it asks for the event's type and every
filter it sets holds: ``agent_ids`` holds the event's agent,
``conversation_ids`` its conversation, ``labels`` shares at least one label
with its message (as labelled when the event is dispatched). An empty or
missing filter does not narrow. Disabled subscriptions match nothing: what
happens while one is off is not queued for it (redeliver-since replays it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from e2a.core import eventtypes, v1events
from e2a.core.ids import new_id
from e2a.core.store import deliveries as delivery_store
from e2a.core.store import events as event_store
from e2a.core.store import webhooks as webhook_store

BATCH = 200  # events per transaction


def matches(webhook: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    if event["type"] not in (webhook["events"] or ()):
        return False
    # A /v1 subscription names the review outcome an expiry is, approved or
    # rejected; the stored email.expired is either (core/v1events).
    if (webhook.get("generation") == "v1" and event["type"] == eventtypes.EMAIL_EXPIRED
            and v1events.v1_type(event["type"], event.get("data") or {})
            not in v1events.v1_types(webhook["events"])):
        return False
    filters = webhook["filters"] or {}
    agent_ids = filters.get("agent_ids") or []
    if agent_ids and event.get("agent_id") not in agent_ids:
        return False
    conversation_ids = filters.get("conversation_ids") or []
    if conversation_ids and event.get("conversation_id") not in conversation_ids:
        return False
    labels = filters.get("labels") or []
    return not labels or bool(set(labels) & set(event.get("labels") or ()))


def goes_to_agent_webhook(event: Mapping[str, Any]) -> bool:
    return (event["type"] == eventtypes.EMAIL_RECEIVED and event.get("agent_mode") == "cloud"
            and bool(event.get("webhook_url")) and bool(event.get("message_id")))


def dispatch(conn: psycopg.Connection) -> int:
    """One batch; how many events it dispatched."""
    with conn.transaction():
        events = event_store.undispatched(conn, BATCH)
        if not events:
            return 0
        webhooks: dict[str, list[dict[str, Any]]] = {}
        for hook in webhook_store.enabled_for_users(conn, sorted({e["user_id"] for e in events})):
            webhooks.setdefault(hook["user_id"], []).append(hook)
        rows: list[dict[str, Any]] = []
        agent_messages: list[str] = []
        for event in events:
            rows += [{"id": new_id("whd"), "event_id": event["id"], "webhook_id": hook["id"],
                      "agent_id": None, "origin": "dispatch"}
                     for hook in webhooks.get(event["user_id"], []) if matches(hook, event)]
            if goes_to_agent_webhook(event):
                rows.append({"id": new_id("whd"), "event_id": event["id"], "webhook_id": None,
                             "agent_id": event["agent_id"], "origin": "dispatch"})
                agent_messages.append(event["message_id"])
        delivery_store.insert_deliveries(conn, rows)
        if agent_messages:
            delivery_store.set_messages_pending(conn, agent_messages)
        event_store.mark_dispatched(conn, [e["id"] for e in events])
    return len(events)
