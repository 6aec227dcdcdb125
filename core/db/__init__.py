"""PostgreSQL access: the connection pool and the migration runner."""

from e2a.core.db.pool import Pool, autocommit, open_pool, single_connection

__all__ = ["Pool", "autocommit", "open_pool", "single_connection"]
