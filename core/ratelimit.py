"""Rate limits shared by every process on one database: fixed windows counted
in Postgres, so several MX hosts (or API processes) enforce one limit.

Used by the policy service (inbound per client and per agent) and the API. A
hit is one atomic UPSERT; hits that are refused count as well, so a client
that keeps pushing stays refused until the window ends.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg

from e2a.core.store import ratelimits as store


@dataclass(frozen=True)
class Limit:
    """At most ``per_window`` hits in each ``window_seconds``-long window."""

    scope: str  # names the counter family in bucket names: "inbound-ip", "send", ...
    per_window: int
    window_seconds: int = 60


@dataclass(frozen=True)
class HitOutcome:
    allowed: bool
    hits: int  # in this window, this hit included
    limit: int
    retry_after: float  # seconds until the window ends

    @property
    def retry_after_seconds(self) -> int:
        """For a Retry-After header: whole seconds, at least 1."""
        return max(1, math.ceil(self.retry_after))


def hit(conn: psycopg.Connection, limit: Limit, key: str, *, cost: int = 1,
        at: datetime | None = None) -> HitOutcome:
    """Count ``cost`` hits for ``key`` (an IP, an agent id, a key id) under
    ``limit``; ``at`` only for tests, the database's clock otherwise."""
    [outcome] = _hit_in_order(conn, [(limit, key)], cost=cost, at=at)
    assert outcome is not None  # the first is always counted
    return outcome


def first_refusal(conn: psycopg.Connection, hits: Sequence[tuple[Limit, str]], *,
                  at: datetime | None = None) -> tuple[Limit, HitOutcome] | None:
    """Count one hit under each (limit, key) in order, in one statement, up
    to the first limit that refuses: what that one refuses must not use up
    the limits after it. That limit and its outcome, or None when all allow."""
    for (limit, _), outcome in zip(hits, _hit_in_order(conn, hits, at=at), strict=True):
        if outcome is not None and not outcome.allowed:
            return limit, outcome
    return None


def _hit_in_order(conn: psycopg.Connection, hits: Sequence[tuple[Limit, str]], *,
                  cost: int = 1, at: datetime | None = None) -> list[HitOutcome | None]:
    """The outcome of each (limit, key), None for those after a refusal."""
    rows = store.hit_in_order(
        conn, [store.Counter(f"{limit.scope}:{key}", limit.window_seconds, cost,
                             go_on_up_to=limit.per_window) for limit, key in hits], at)
    return [None if row is None else
            HitOutcome(allowed=row["hits"] <= limit.per_window, hits=row["hits"],
                    limit=limit.per_window, retry_after=max(row["retry_after"], 0.0))
            for (limit, _), row in zip(hits, rows, strict=True)]
