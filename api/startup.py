"""What each API worker does once before it serves: route DNS lookups (domain
verification) through our resolver, and seed the shared domain's row."""

from __future__ import annotations

import logging
import threading

import psycopg
from psycopg_pool import ConnectionPool

from e2a.core.accounts import registration as accounts
from e2a.core.config import Config
from e2a.core.net import resolver as dns

log = logging.getLogger("e2a.api")

SEED_TIMEOUT = 10.0


def prepare(cfg: Config, pool: ConnectionPool) -> threading.Thread:
    """Returns at once: the seed runs beside the worker (a greenlet once
    gevent has patched threading), because a worker must serve while the
    database is down or slow. Should it fail, slug registration seeds the row
    on first use."""
    dns.configure(cfg)
    seeder = threading.Thread(target=_seed, args=(cfg, pool), name="e2a-seed", daemon=True)
    seeder.start()
    return seeder


def _seed(cfg: Config, pool: ConnectionPool) -> None:
    try:
        with pool.connection(timeout=SEED_TIMEOUT) as conn:
            accounts.seed_shared_domain(conn, cfg)
    except psycopg.Error as exc:  # PoolTimeout included
        log.warning("shared domain not seeded at start (%s); it will be on first use",
                    type(exc).__name__)
