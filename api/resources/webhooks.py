"""``/api/v1/webhooks[/{id}[/...]]``: account-level webhook subscriptions.

Account endpoints: an agent-scoped key gets 403 before any lookup; another
user's subscription is a 404, the same as none. The rules are in
e2a.core.webhooks.subscriptions; delivery is the worker's (e2a.core.webhooks.delivery).
"""

from __future__ import annotations

from typing import Any

import falcon
from psycopg_pool import ConnectionPool

from e2a.api import errors, inputs, webhookviews
from e2a.api.openapi import parts as opdoc
from e2a.api.resources.account import AccountResource
from e2a.core import ratelimit
from e2a.core.accounts.registration import AccountError
from e2a.core.config import Config
from e2a.core.store import deliveries as delivery_store
from e2a.core.store import webhooks as webhook_store
from e2a.core.timefmt import parse_rfc3339, rfc3339
from e2a.core.webhooks import eventtypes
from e2a.core.webhooks import subscriptions as webhooks

TAGS = ["Webhooks"]
WEBHOOK_ID = opdoc.path_param("id", "Webhook ID (wh_...)")
FORBIDDEN = opdoc.error("The key is scoped to one agent")
NOT_FOUND = opdoc.error("Webhook not found")
DEFAULT_DELIVERIES = 20
MAX_DELIVERIES = 100
# Bulk replays per user: each may queue a week of events.
REDELIVER_SINCE_LIMIT = ratelimit.Limit("redeliver-since", per_window=10, window_seconds=3600)

_RULES = (f"url: https with a host name (no IP literal, no localhost) that resolves to public "
          f"addresses only, checked again at every delivery. events: one or more of "
          f"{', '.join(eventtypes.TYPES)}. filters: agent_ids, conversation_ids, labels; each "
          "set filter must hold (an agent or conversation in the list, a label shared with "
          "the message); empty or absent filters do not narrow.")


def _op(operation_id: str, summary: str, description: str, responses: dict[str, Any],
        **extra: Any) -> dict[str, Any]:
    return {"operationId": operation_id, "summary": summary, "description": description,
            "tags": TAGS, "responses": {"401": opdoc.UNAUTHORIZED, "403": FORBIDDEN,
                                        **responses}, **extra}


class _Resource(AccountResource):
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        super().__init__(pool)
        self._cfg = cfg


class Webhooks(_Resource):
    doc = {
        "get": _op("listWebhooks", "List webhook subscribers",
                   "Every subscription of the caller, enabled or not, oldest first. "
                   "signing_secret is never included.",
                   {"200": opdoc.ok("ListWebhooksResponse")}),
        "post": _op("createWebhook", "Create webhook subscriber",
                    "The response carries signing_secret (whsec_<64 hex>) this once; every "
                    "delivery is signed with it: X-E2A-Signature: t=<unix>,v1=<hex of "
                    "HMAC-SHA256(secret, t + '.' + body)>. " + _RULES,
                    {"201": opdoc.ok("WebhookResponse", "Created"),
                     "400": opdoc.error("Validation error, or the per-user cap is reached")},
                    requestBody=opdoc.body("CreateWebhookRequest", "Webhook spec")),
    }

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.principal(req)
        with self._pool.connection() as conn:
            rows = webhook_store.webhooks_for_user(conn, principal.user_id)
        resp.media = {"webhooks": [webhookviews.webhook(r) for r in rows]}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.principal(req)
        body = inputs.json_object(req)
        try:
            with self._pool.connection() as conn:
                row, secret = webhooks.create(conn, self._cfg, principal.user_id, body)
        except AccountError as exc:
            raise errors.rule_broken(exc) from None
        resp.status = falcon.HTTP_201
        resp.media = webhookviews.webhook(row, secret=secret)


class Webhook(_Resource):
    doc = {
        "get": _op("getWebhook", "Get webhook subscriber", "signing_secret is not included.",
                   {"200": opdoc.ok("WebhookResponse"), "404": NOT_FOUND},
                   parameters=[WEBHOOK_ID]),
        "patch": _op("updateWebhook", "Update webhook subscriber",
                     "Fields absent are unchanged; url, events and filters replace the "
                     "stored value whole. enabled=true on a subscription switched off after "
                     "repeated failures is refused (409) for "
                     f"{int(webhooks.REENABLE_COOLDOWN.total_seconds() // 60)} minutes after "
                     "auto_disabled_at; once on again, its pending deliveries resume. " + _RULES,
                     {"200": opdoc.ok("WebhookResponse"), "400": opdoc.error("Validation error"),
                      "404": NOT_FOUND, "409": opdoc.error("Re-enable cool-down")},
                     parameters=[WEBHOOK_ID],
                     requestBody=opdoc.body("UpdateWebhookRequest", "Patch body")),
        "delete": _op("deleteWebhook", "Delete webhook subscriber",
                      "Removes the subscription and its deliveries, pending ones included.",
                      {"204": {"description": "No content"}, "404": NOT_FOUND},
                      parameters=[WEBHOOK_ID]),
    }

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        principal = self.principal(req)
        try:
            with self._pool.connection() as conn:
                row = webhooks.owned(conn, principal.user_id, id)
        except AccountError as exc:
            raise errors.rule_broken(exc) from None
        resp.media = webhookviews.webhook(row)

    def on_patch(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        principal = self.principal(req)
        body = inputs.json_object(req)
        try:
            with self._pool.connection() as conn:
                row = webhooks.update(conn, self._cfg, principal.user_id, id, body)
        except AccountError as exc:
            raise errors.rule_broken(exc) from None
        resp.media = webhookviews.webhook(row)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        principal = self.principal(req)
        try:
            with self._pool.connection() as conn:
                webhooks.delete(conn, principal.user_id, id)
        except AccountError as exc:
            raise errors.rule_broken(exc) from None
        resp.status = falcon.HTTP_204


class WebhookSecretRotation(_Resource):
    doc = {"post": _op(
        "rotateWebhookSecret", "Rotate webhook signing secret",
        "A new secret signs from now on; for "
        f"{int(webhooks.ROTATION_GRACE.total_seconds() // 3600)} hours each delivery also "
        "carries a second v1= signature made with the previous secret.",
        {"200": opdoc.ok("RotateWebhookSecretResponse"), "404": NOT_FOUND},
        parameters=[WEBHOOK_ID])}

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        principal = self.principal(req)
        try:
            with self._pool.connection() as conn:
                row, secret = webhooks.rotate_secret(conn, principal.user_id, id)
        except AccountError as exc:
            raise errors.rule_broken(exc) from None
        resp.media = webhookviews.rotation(row, secret)


class WebhookTest(_Resource):
    doc = {"post": _op(
        "testWebhook", "Fire a synthetic webhook event for development",
        "Queues one delivery of a synthetic event (type from event, default "
        "email.received; data as given) to this subscription only, whatever its filters, "
        "signed like any other. One attempt, no retries; a failure does not count towards "
        "auto-disable. The event is not listed under /api/v1/events.",
        {"200": opdoc.ok("TestWebhookResponse"), "400": opdoc.error("Unknown event type"),
         "404": NOT_FOUND, "409": opdoc.error("Webhook disabled")},
        parameters=[WEBHOOK_ID],
        requestBody={**opdoc.body("TestWebhookRequest", "Synthetic event"), "required": False})}

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        principal = self.principal(req)
        body = inputs.json_object(req)
        try:
            with self._pool.connection() as conn:
                delivery_id = webhooks.send_test(conn, principal.user_id, id, body)
        except AccountError as exc:
            raise errors.rule_broken(exc) from None
        resp.media = {"delivery_id": delivery_id}


class WebhookDeliveries(_Resource):
    doc = {"get": _op(
        "listWebhookDeliveries", "List recent webhook deliveries",
        "Newest first. A delivery is pending (next_retry_at says when it is tried next), "
        "delivered, or failed after its last retry. Retries follow 1m, 5m, 15m, 1h, 4h, 8h, "
        "16h, 24h.",
        {"200": opdoc.ok("ListWebhookDeliveriesResponse"), "400": opdoc.error("Bad query"),
         "404": NOT_FOUND},
        parameters=[WEBHOOK_ID,
                    opdoc.query_param("limit", f"Page size (default {DEFAULT_DELIVERIES}, "
                                      f"max {MAX_DELIVERIES})", {"type": "integer"}),
                    opdoc.query_param("status", "pending, delivered or failed",
                                      {"type": "string",
                                       "enum": ["pending", "delivered", "failed"]})])}

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        principal = self.principal(req)
        status = inputs.choice(req, "status", ("", "pending", "delivered", "failed"), "")
        limit = req.get_param("limit") or str(DEFAULT_DELIVERIES)
        if not limit.isdigit() or int(limit) < 1:
            raise errors.bad_request(f"limit must be an integer from 1 to {MAX_DELIVERIES}",
                                     param="limit")
        try:
            with self._pool.connection() as conn:
                webhooks.owned(conn, principal.user_id, id)
                rows = delivery_store.list_for_webhook(conn, id, status or None,
                                                       min(int(limit), MAX_DELIVERIES))
        except AccountError as exc:
            raise errors.rule_broken(exc) from None
        resp.media = {"deliveries": [webhookviews.delivery(r) for r in rows]}


class WebhookRedeliverSince(_Resource):
    doc = {"post": _op(
        "redeliverWebhookSince", "Bulk-replay events for a webhook",
        "Queues again every event dispatched to this subscription since `since` (RFC 3339, "
        f"at most {webhooks.REDELIVER_WINDOW.days} days back), under its original id, except "
        "those with a delivery to it still pending. If the subscription is switched off, "
        f"they wait until it is on. At most {REDELIVER_SINCE_LIMIT.per_window} calls per "
        "user per hour.",
        {"200": opdoc.ok("RedeliverSinceResponse"),
         "400": opdoc.error("since out of window or malformed"), "404": NOT_FOUND,
         "429": opdoc.error("Too many bulk replays")},
        parameters=[WEBHOOK_ID],
        requestBody=opdoc.body("RedeliverSinceRequest", "Replay window"))}

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        principal = self.principal(req)
        raw = inputs.json_object(req).get("since")
        try:
            since = parse_rfc3339(raw) if isinstance(raw, str) else None
        except ValueError:
            since = None
        if since is None:
            raise errors.bad_request("since must be an RFC 3339 timestamp such as "
                                     "2026-06-01T12:00:00Z", param="since")
        try:
            with self._pool.connection() as conn:
                webhooks.owned(conn, principal.user_id, id)
                outcome = ratelimit.hit(conn, REDELIVER_SINCE_LIMIT, principal.user_id)
                if not outcome.allowed:
                    raise errors.rate_limited(
                        f"at most {REDELIVER_SINCE_LIMIT.per_window} bulk replays per hour",
                        outcome.retry_after_seconds)
                result = webhooks.redeliver_since(conn, principal.user_id, id, since)
        except AccountError as exc:
            raise errors.rule_broken(exc) from None
        resp.media = {**result, "since": rfc3339(since)}
