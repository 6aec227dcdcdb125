"""``GET /v1/agents/{email}/messages/{id}/lifecycle`` (beta): the steps a
message took (core/messages/lifecycle.py), oldest first, in cursor pages."""

from __future__ import annotations

from typing import Any

import falcon
from psycopg_pool import ConnectionPool

from e2a.api.v1 import access, cursors, params
from e2a.api.v1.errors import not_found
from e2a.core.config import Config
from e2a.core.store import lifecycle as lifecycle_store
from e2a.core.store import messages as message_store
from e2a.core.timefmt import rfc3339

DEFAULT_LIMIT = 50


def transition(row: dict[str, Any]) -> dict[str, Any]:
    """MessageLifecycleTransition."""
    view = {"id": row["id"], "message_id": row["message_id"], "direction": row["direction"],
            "stage": row["stage"], "outcome": row["outcome"],
            "reason_code": row["reason_code"], "retryable": row["retryable"],
            # Every step here was seen as it happened, none rebuilt afterwards.
            "reconstructed": False, "occurred_at": rfc3339(row["occurred_at"]),
            "evidence": dict(row["evidence"] or {}),
            "correlation_ids": {k: str(v) for k, v in (row["correlation_ids"] or {}).items()}}
    if row["recipient"]:
        view["recipient"] = row["recipient"]
    return view


class MessageLifecycle:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._secret = cfg.secrets.hmac_secret
        self._pool = pool

    def on_get(self, req: falcon.Request, resp: falcon.Response, email: str,
               id: str) -> None:
        limit = params.limit(req, DEFAULT_LIMIT)
        with self._pool.connection() as conn:
            agent = access.agent(conn, req, email)
            if message_store.direction_for_agent(conn, agent["id"], id) is None:
                raise not_found(f"message {id} not found")
            bound = cursors.scope(req, "lifecycle", agent=agent["id"], message=id)
            after = cursors.position(req, self._secret, bound)
            rows = lifecycle_store.for_message(conn, id, limit=limit + 1, after=after)
        resp.media = cursors.page(rows, limit, self._secret, bound, transition,
                                  lambda r: (r["occurred_at"], r["id"]))
