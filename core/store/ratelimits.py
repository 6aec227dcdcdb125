"""Fixed-window counters in rate_limits, shared by every process on the database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

Row = dict[str, Any]


@dataclass(frozen=True)
class Counter:
    bucket: str
    window_seconds: int
    cost: int
    # The next counter is only counted while this one's total stays at most this.
    go_on_up_to: int


# One counter's upsert: {n} numbers its parameters, {condition} can hold it
# back (core/store/brakes.py counts with it too).
UPSERT = """INSERT INTO rate_limits AS r (bucket, window_start, hits)
             SELECT %(bucket{n})s,
                    date_bin(%(window{n})s * interval '1 second',
                             coalesce(%(at)s::timestamptz, now()), timestamptz 'epoch'),
                    %(cost{n})s
              {condition}
             ON CONFLICT (bucket, window_start) DO UPDATE SET hits = r.hits + EXCLUDED.hits
             RETURNING r.hits,
                       extract(epoch FROM r.window_start + %(window{n})s * interval '1 second'
                               - coalesce(%(at)s::timestamptz, now()))::float8 AS retry_after"""


def hit_in_order(conn: psycopg.Connection, counters: Sequence[Counter],
                 at: datetime | None = None) -> list[Row | None]:
    """Add each counter's cost to its bucket's window that holds ``at``
    (default: the database's clock, which every host shares), in order, in
    one atomic statement; a counter is skipped once an earlier one went over
    its ``go_on_up_to``.

    One result per counter: ``hits`` (the window's total, this hit included)
    and ``retry_after`` (seconds from ``at`` until the window ends), or None
    when it was skipped. The rows stay locked until the caller's transaction
    ends: keep it short (autocommit is best).
    """
    params: dict[str, Any] = {"at": at}
    ctes = []
    for n, counter in enumerate(counters):
        params.update({f"bucket{n}": counter.bucket, f"window{n}": counter.window_seconds,
                       f"cost{n}": counter.cost, f"limit{n}": counter.go_on_up_to})
        # Each upsert waits for the one before: it reads its result.
        condition = f"WHERE (SELECT hits FROM h{n - 1}) <= %(limit{n - 1})s" if n else ""
        ctes.append(f"h{n} AS ({UPSERT.format(n=n, condition=condition)})")
    columns = ", ".join(f"(SELECT hits FROM h{n}) AS hits{n}, "
                        f"(SELECT retry_after FROM h{n}) AS retry_after{n}"
                        for n in range(len(counters)))
    row = conn.execute(f"WITH {', '.join(ctes)} SELECT {columns}", params).fetchone()
    return [None if row[f"hits{n}"] is None
            else {"hits": row[f"hits{n}"], "retry_after": row[f"retry_after{n}"]}
            for n in range(len(counters))]
