"""Liveness of the database itself."""

from __future__ import annotations

import psycopg


def ping(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT 1 AS ok").fetchone()
    return row is not None and row["ok"] == 1
