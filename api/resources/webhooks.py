"""``/api/v1/webhooks[/{id}[/...]]``: account-level webhook subscriptions.

Account endpoints: an agent-scoped key gets 403 before any lookup; another
user's subscription is a 404, the same as none. The rules are in
e2a.core.webhooks.subscriptions; delivery is the worker's (e2a.core.webhooks.delivery).
"""

from __future__ import annotations

import falcon
from psycopg_pool import ConnectionPool

from e2a.api import errors, inputs, webhookviews
from e2a.api.resources.account import AccountResource
from e2a.core import ratelimit
from e2a.core.accounts.registration import AccountError
from e2a.core.config import Config
from e2a.core.store import deliveries as delivery_store
from e2a.core.store import webhooks as webhook_store
from e2a.core.timefmt import parse_rfc3339, rfc3339
from e2a.core.webhooks import subscriptions as webhooks

DEFAULT_DELIVERIES = 20
MAX_DELIVERIES = 100
# Bulk replays per user: each may queue a week of events.
REDELIVER_SINCE_LIMIT = ratelimit.Limit("redeliver-since", per_window=10, window_seconds=3600)


class _Resource(AccountResource):
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        super().__init__(pool)
        self._cfg = cfg


class Webhooks(_Resource):
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
    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        principal = self.principal(req)
        try:
            with self._pool.connection() as conn:
                row, secret = webhooks.rotate_secret(conn, principal.user_id, id)
        except AccountError as exc:
            raise errors.rule_broken(exc) from None
        resp.media = webhookviews.rotation(row, secret)


class WebhookTest(_Resource):
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
