"""LISTEN connections, opened one way for both of their users: the worker's
wake-up thread (core/db/wakeup.py) and the API process's one connection that
feeds every WebSocket client (api/pglisten.py). Each keeps its own loop (a
thread, a greenlet) around these two calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

import psycopg

from e2a.core.config import Config
from e2a.core.db.pool import single_connection
from e2a.core.store import websockets as listen_store

OnNotify = Callable[[str, str], None]  # channel, payload


def connect(cfg: Config, channels: Iterable[str], on_notify: OnNotify, *,
            name: str) -> psycopg.Connection:
    """An autocommit connection LISTENing on ``channels``; psycopg hands each
    notification to ``on_notify`` during the connection's next round trip
    (``keepalive``). Closed again when LISTEN fails."""
    conn = single_connection(cfg, autocommit=True, name=name)
    try:
        conn.add_notify_handler(lambda notify: on_notify(notify.channel, notify.payload))
        for channel in channels:
            listen_store.listen(conn, channel)
    except BaseException:
        conn.close()
        raise
    return conn


def keepalive(conn: psycopg.Connection) -> datetime:
    """A round trip: delivers what arrived to the notify handler, fails when
    the server is gone, and returns the database's clock."""
    return listen_store.keepalive(conn)
