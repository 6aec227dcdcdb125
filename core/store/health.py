"""Liveness of the database itself."""

from __future__ import annotations

from datetime import datetime

import psycopg


def ping(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT 1 AS ok").fetchone()
    return row is not None and row["ok"] == 1


def clock(conn: psycopg.Connection) -> datetime:
    """The database server's wall clock (not the transaction's start time)."""
    row = conn.execute("SELECT clock_timestamp() AS now").fetchone()
    assert row is not None
    return row["now"]
