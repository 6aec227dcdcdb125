"""The per-key request limit of the API: so many requests a minute for each
API key, counted in Postgres (e2a.core.ratelimit) so that every API process
and host enforces the one limit. Over it: 429 with ``Retry-After``; under
/v1 every counted answer carries the RateLimit-* headers too.
"""

from __future__ import annotations

import falcon
import psycopg

from e2a.api import errors
from e2a.api.v1.errors import is_v1
from e2a.core import ratelimit

WINDOW_SECONDS = 60


class RequestLimit:
    """Counts the requests of authenticated callers (public routes and
    rejected keys are not counted): Authentication asks ``count`` on the
    connection it checked the key on, and ``enforce`` once the hit committed
    (a refused request counts too).
    As middleware after Authentication, it writes the /v1 headers."""

    def __init__(self, per_minute: int) -> None:
        self._limit = ratelimit.Limit("api-key", per_minute, WINDOW_SECONDS)

    def count(self, conn: psycopg.Connection, key_id: str) -> ratelimit.HitOutcome | None:
        """This request's hit for the key; None when there is no limit."""
        if self._limit.per_window <= 0:
            return None
        return ratelimit.hit(conn, self._limit, key_id)

    @staticmethod
    def enforce(req: falcon.Request, outcome: ratelimit.HitOutcome | None) -> None:
        if outcome is None:
            return
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
