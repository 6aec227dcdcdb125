"""The per-key request limit of the API: so many requests a minute for each
API key, counted in Postgres (e2a.core.ratelimit) so that every API process
and host enforces the one limit. Over it: 429 with ``Retry-After``; under
/v1 every counted answer carries the RateLimit-* headers too.
"""

from __future__ import annotations

from typing import Any

import falcon
from psycopg_pool import ConnectionPool

from e2a.api import errors
from e2a.api.v1.errors import is_v1
from e2a.core import ratelimit

WINDOW_SECONDS = 60


class RequestLimit:
    """Middleware after Authentication: counts the requests of authenticated
    callers (public routes and rejected keys are not counted)."""

    def __init__(self, pool: ConnectionPool, per_minute: int) -> None:
        self._pool = pool
        self._limit = ratelimit.Limit("api-key", per_minute, WINDOW_SECONDS)

    def process_resource(self, req: falcon.Request, resp: falcon.Response,
                         resource: object, params: dict[str, Any]) -> None:
        principal = getattr(req.context, "principal", None)
        if principal is None or self._limit.per_window <= 0:
            return
        with self._pool.connection() as conn:
            outcome = ratelimit.hit(conn, self._limit, principal.key_id)
        req.context.rate_limit = outcome
        if not outcome.allowed:
            raise errors.rate_limited(
                f"too many requests for this API key: at most {outcome.limit} per "
                f"{WINDOW_SECONDS} s; retry in {outcome.retry_after_seconds} s",
                outcome.retry_after_seconds)

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: object,
                         req_succeeded: bool) -> None:
        """/v1 tells its callers where they stand (RateLimit-Limit, -Remaining,
        and -Reset in seconds), on successes and refusals alike."""
        outcome = getattr(req.context, "rate_limit", None)
        if outcome is None or not is_v1(req):
            return
        resp.set_headers({"RateLimit-Limit": str(outcome.limit),
                          "RateLimit-Remaining": str(max(0, outcome.limit - outcome.hits)),
                          "RateLimit-Reset": str(outcome.retry_after_seconds)})
