"""Connection handling. Every process opens one pool at start and shares it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from e2a.core.config import Config


class Pool(ConnectionPool):
    """A pool that drops its dead connections as soon as one is found dead.

    After a database restart every idle connection is broken; without this,
    each would fail one request (a 451, a 503) before the pool noticed.
    psycopg_pool 3.2 can check on checkout, but Debian 12 ships 3.1."""

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[psycopg.Connection]:
        try:
            with super().connection(timeout=timeout) as conn:
                yield conn
        except psycopg.OperationalError:
            self.check()
            raise


def open_pool(cfg: Config, *, name: str, min_size: int = 1,
              max_size: int | None = None, wait: bool = False) -> Pool:
    """A pool whose connections return rows as dicts.

    ``wait=False`` lets a service start while the database is down: the mail
    paths must answer 4xx then, not refuse to exist.
    """
    pool = Pool(
        cfg.database.url,
        min_size=min_size,
        max_size=max_size or cfg.database.pool_size,
        kwargs={"row_factory": dict_row, "application_name": f"e2a-{name}",
                "connect_timeout": 5},
        name=f"e2a-{name}",
        timeout=10.0,
        reconnect_timeout=float("inf"),  # keep trying: an outage is not our end
        open=False,
    )
    pool.open(wait=wait)
    return pool


def single_connection(cfg: Config, *, autocommit: bool = False) -> psycopg.Connection:
    """One connection for short-lived commands (migrate, bootstrap, CLI)."""
    return psycopg.connect(cfg.database.url, row_factory=dict_row, autocommit=autocommit,
                           application_name="e2a-cli", connect_timeout=5)
