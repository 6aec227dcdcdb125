"""Housekeeping: forget what has outlived its retention."""

from __future__ import annotations

from datetime import timedelta

import psycopg

from e2a.core.store import maintenance

BATCH = 1000  # rows per transaction: short locks, small WAL bursts

RETENTION: dict[str, timedelta] = {
    # Idempotency keys replay a response for 24 h (CONTRACT.md).
    "idempotency_keys": timedelta(hours=24),
    # Rate-limit windows are minutes long; a day is ample.
    "rate_limits": timedelta(days=1),
    # The events API promises 30 days and answers 410 beyond.
    "events": timedelta(days=30),
}


def purge(table: str, conn: psycopg.Connection) -> int:
    """One batch of ``table``'s expired rows; how many were deleted."""
    return maintenance.purge_older_than(conn, table, RETENTION[table], BATCH)
