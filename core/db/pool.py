"""Connection handling. Every process opens one pool at start and shares it."""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from e2a.core.config import Config


def open_pool(cfg: Config, *, name: str, min_size: int = 1,
              max_size: int | None = None, wait: bool = False) -> ConnectionPool:
    """A pool whose connections return rows as dicts.

    ``wait=False`` lets a service start while the database is down: the mail
    paths must answer 4xx then, not refuse to exist.
    """
    pool = ConnectionPool(
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
