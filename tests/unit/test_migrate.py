"""The migration runner: once each, in order, safe when hosts race."""

from __future__ import annotations

import threading

import psycopg
import pytest

from e2a.core.db import migrate, single_connection


def test_every_file_is_recorded_and_a_second_run_applies_nothing(cfg):
    with single_connection(cfg, autocommit=True) as conn:
        assert migrate.migrate(conn) == []
        assert migrate.pending(conn) == []
        names = [r["name"] for r in conn.execute(
            "SELECT name FROM schema_migrations ORDER BY version").fetchall()]
    assert names == [m.name for m in migrate.available()]


def test_files_are_idempotent_when_run_again(cfg):
    # A half-applied run re-executes a file; IF NOT EXISTS everywhere makes that safe.
    with single_connection(cfg) as conn:
        for mig in migrate.available():
            conn.execute(mig.sql)
        conn.rollback()


def test_concurrent_runs_wait_for_the_lock(cfg):
    """Two hosts migrating at once: the second waits on the advisory lock."""
    holder = psycopg.connect(cfg.database.url, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", (migrate.LOCK_KEY,))
    finished = threading.Event()

    def second_host() -> None:
        with single_connection(cfg, autocommit=True) as conn:
            migrate.migrate(conn)
        finished.set()

    thread = threading.Thread(target=second_host)
    thread.start()
    try:
        assert not finished.wait(1.0), "migrate ran while another host held the lock"
    finally:
        holder.execute("SELECT pg_advisory_unlock(%s)", (migrate.LOCK_KEY,))
        holder.close()
    thread.join(10)
    assert finished.is_set()


def test_a_changed_applied_file_is_refused(cfg):
    with single_connection(cfg, autocommit=True) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
        try:
            with pytest.raises(migrate.MigrationError, match="changed after it was applied"):
                migrate.migrate(conn)
        finally:
            first = migrate.available()[0]
            conn.execute("UPDATE schema_migrations SET checksum = %s WHERE version = 1",
                         (first.checksum,))
