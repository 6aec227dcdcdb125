"""Agents' WebSocket connections across API processes, and the channels
those processes LISTEN on."""

from __future__ import annotations

import json
from datetime import datetime

import psycopg
from psycopg import sql

# A new connection announces itself here: {"agent_id", "connection_id"}.
CONTROL_CHANNEL = "e2a_ws_control"
# An API key revoked or deleted: {"key_id"} (a trigger, sql/010_key_revocation.sql).
KEY_REVOKED_CHANNEL = "e2a_key_revoked"


def listen(conn: psycopg.Connection, channel: str) -> None:
    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))


def keepalive(conn: psycopg.Connection) -> datetime:
    """A round trip on a LISTEN connection: fails when the server is gone, and
    hands the connection's notify handlers whatever arrived. Returns the
    database's clock, the one that stamps messages.created_at."""
    return conn.execute("SELECT clock_timestamp() AS now").fetchone()["now"]


def claim(conn: psycopg.Connection, agent_id: str, connection_id: str) -> None:
    """Make this connection the agent's one connection and tell every API
    process; both take effect on commit."""
    conn.execute(
        """INSERT INTO ws_connections (agent_id, connection_id) VALUES (%s, %s)
           ON CONFLICT (agent_id) DO UPDATE
              SET connection_id = EXCLUDED.connection_id, connected_at = now()""",
        (agent_id, connection_id))
    conn.execute("SELECT pg_notify(%s, %s)", (CONTROL_CHANNEL, json.dumps(
        {"agent_id": agent_id, "connection_id": connection_id})))


def owner(conn: psycopg.Connection, agent_id: str) -> str | None:
    """The agent's current connection id, if any."""
    row = conn.execute("SELECT connection_id FROM ws_connections WHERE agent_id = %s",
                       (agent_id,)).fetchone()
    return row["connection_id"] if row else None


def release(conn: psycopg.Connection, agent_id: str, connection_id: str) -> None:
    """Forget the connection, unless a newer one took its place."""
    conn.execute("DELETE FROM ws_connections WHERE agent_id = %s AND connection_id = %s",
                 (agent_id, connection_id))
