"""Apply the numbered SQL files in ``sql/`` once each, in order.

Several hosts may start at once against one database, so the runner holds a
session-level advisory lock for the whole run; the second host waits, then
finds nothing left to do. Each file runs in its own transaction together with
the row that records it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from e2a.core.store import migrations as store

# "e2a-migr" as a 64-bit integer: the advisory lock all our hosts agree on.
LOCK_KEY = int.from_bytes(b"e2a-migr", "big") & 0x7FFF_FFFF_FFFF_FFFF
_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


class MigrationError(Exception):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available() -> list[Migration]:
    found = []
    for entry in resources.files("e2a.sql").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a number")
    return found


def migrate(conn: psycopg.Connection) -> list[str]:
    """Apply what is missing; returns the names applied. ``conn`` is autocommit."""
    applied_now: list[str] = []
    store.lock(conn, LOCK_KEY)
    try:
        store.ensure_table(conn)
        done = store.applied(conn)
        for mig in available():
            if mig.version in done:
                if done[mig.version] != mig.checksum:
                    raise MigrationError(
                        f"sql/{mig.name} changed after it was applied; "
                        "add a new numbered file instead")
                continue
            with conn.transaction():
                conn.execute(mig.sql)
                store.record(conn, mig.version, mig.name, mig.checksum)
            applied_now.append(mig.name)
    finally:
        store.unlock(conn, LOCK_KEY)
    return applied_now


def pending(conn: psycopg.Connection) -> list[str]:
    """Names of the files not yet applied (for `e2a doctor` and health checks)."""
    store.ensure_table(conn)
    done = store.applied(conn)
    return [m.name for m in available() if m.version not in done]
