"""Housekeeping: forget what has outlived its retention."""

from __future__ import annotations

from datetime import timedelta

import psycopg

from e2a.core.store import maintenance

BATCH = 1000  # rows per transaction: short locks, small WAL bursts

RETENTION: dict[str, timedelta] = {
    # Idempotency keys replay a response for 24 h (docs/contract.md).
    "idempotency_keys": timedelta(hours=24),
    # Rate-limit windows are minutes long; a day is ample.
    "rate_limits": timedelta(days=1),
    # The events API shows 30 days (EVENTS_VISIBLE). Rows stay a day longer
    # so that a GET of an event that has just left the window is a 410, not
    # a 404 that would read as "no such event".
    "events": timedelta(days=31),
    # The notification limit counts the last hour (core/outbound/notification.py).
    "owner_notifications": timedelta(days=1),
    # The trash: a trashed message or agent (with its mail) is erased 30 days
    # after it was deleted unless restored; live rows are never purged.
    "messages": timedelta(days=30),
    "agents": timedelta(days=30),
    # Sign-in links and sessions are worthless once expired; a day after,
    # a replayed one still meets its row (refused as expired, not unknown).
    "dashboard_signins": timedelta(days=1),
    "dashboard_sessions": timedelta(days=1),
}

EVENTS_VISIBLE = timedelta(days=30)


def purge(table: str, conn: psycopg.Connection) -> int:
    """One batch of ``table``'s expired rows; how many were deleted."""
    return maintenance.purge_older_than(conn, table, RETENTION[table], BATCH)
