"""Connection handling. Every process opens one pool at start and shares it."""

from __future__ import annotations

import math
import select
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import pq
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from e2a.core.config import Config


class Pool(ConnectionPool):
    """A pool that never hands out a connection the server has already closed.

    After a database restart every idle connection is dead; without this each
    would fail one request (a 451, a 503) before the pool noticed. psycopg_pool
    3.2 can check on checkout, but Debian 12 ships 3.1. The check is a poll of
    the socket, not a query: an idle connection has nothing to read unless the
    server said goodbye (or sent a notice, which costs only a reconnect)."""

    def getconn(self, timeout: float | None = None) -> psycopg.Connection:
        conn = super().getconn(timeout)
        if _server_spoke(conn):
            conn.close()
            self.putconn(conn)  # a closed connection is replaced, not reused
            self.check()  # the others idle since the same restart are dead too
            conn = super().getconn(timeout)
        return conn


def _server_spoke(conn: psycopg.Connection) -> bool:
    if conn.closed:
        return True
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


@contextmanager
def autocommit(pool: ConnectionPool) -> Iterator[psycopg.Connection]:
    """A checkout of a transactional pool whose statements are each their
    own transaction: no BEGIN and COMMIT round trips around a lone read, or
    around writes each complete alone (a counter). What must commit together
    still goes in ``conn.transaction()``."""
    with pool.connection() as conn:
        conn.autocommit = True
        try:
            yield conn
        finally:
            if conn.info.transaction_status == pq.TransactionStatus.IDLE:
                conn.autocommit = False
            else:
                # Broken or stuck mid-statement: never back to the pool as
                # it is; closed, the pool replaces it.
                conn.close()


def libpq_connect_timeout(cfg: Config) -> int:
    """libpq counts whole seconds and treats anything under 2 as 2."""
    return max(2, math.ceil(cfg.database.connect_timeout))


def open_pool(cfg: Config, *, name: str, min_size: int = 1,
              max_size: int | None = None, wait: bool = False,
              autocommit: bool = False, timeout: float = 10.0) -> Pool:
    """A pool whose connections return rows as dicts.

    ``wait=False`` lets a service start while the database is down: the mail
    paths must answer 4xx then, not refuse to exist. ``autocommit``: every
    statement is its own transaction. ``timeout``: how long a checkout waits
    for a connection (the mail paths pass ``database.connect_timeout``).
    """
    pool = Pool(
        cfg.database.url,
        min_size=min_size,
        max_size=max_size or cfg.database.pool_size,
        kwargs={"row_factory": dict_row, "application_name": f"e2a-{name}",
                "connect_timeout": libpq_connect_timeout(cfg),
                "autocommit": autocommit},
        name=f"e2a-{name}",
        timeout=timeout,
        reconnect_timeout=float("inf"),  # keep trying: an outage is not our end
        open=False,
    )
    pool.open(wait=wait)
    return pool


def single_connection(cfg: Config, *, autocommit: bool = False,
                      name: str = "cli") -> psycopg.Connection:
    """One connection outside any pool: short-lived commands (migrate,
    bootstrap, CLI), or one that must stay apart (an API process's LISTEN)."""
    return psycopg.connect(cfg.database.url, row_factory=dict_row, autocommit=autocommit,
                           application_name=f"e2a-{name}",
                           connect_timeout=libpq_connect_timeout(cfg))
