"""The trash empties itself: trashed messages and agents older than the
retention are erased by the worker's housekeeping; live rows never are."""

from __future__ import annotations

from apisupport import add_agent, insert_message, make_tenant

from e2a.core import housekeeping
from e2a.core.db import single_connection


def _exists(conn, table: str, row_id: str) -> bool:
    return conn.execute(f"SELECT 1 FROM {table} WHERE id = %s", (row_id,)).fetchone() is not None


def test_old_trash_is_erased_and_nothing_else(cfg):
    tenant = make_tenant(cfg)
    old, recent, live = (insert_message(cfg, tenant.agent) for _ in range(3))
    gone_agent = add_agent(cfg, tenant)
    with single_connection(cfg) as conn:
        conn.execute("UPDATE messages SET deleted_at = now() - interval '31 days' "
                     "WHERE id = %s", (old,))
        conn.execute("UPDATE messages SET deleted_at = now() - interval '1 day' "
                     "WHERE id = %s", (recent,))
        conn.execute("UPDATE agents SET deleted_at = now() - interval '31 days' "
                     "WHERE id = %s", (gone_agent["id"],))
        while housekeeping.purge("messages", conn) or housekeeping.purge("agents", conn):
            pass
        assert not _exists(conn, "messages", old)
        assert _exists(conn, "messages", recent) and _exists(conn, "messages", live)
        assert not _exists(conn, "agents", gone_agent["id"])
        assert _exists(conn, "agents", tenant.agent["id"])
