"""The worker's jobs against real PostgreSQL: what expires goes, the rest stays,
and several workers can share the work."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import psycopg
import pytest
from psycopg_pool import ConnectionPool
from servicesupport import write_config

from e2a.core import config, housekeeping
from e2a.core.accounts import registration as accounts
from e2a.core.db import open_pool, single_connection
from e2a.core.ids import new_id
from e2a.worker import jobs
from e2a.worker.daemon import Worker

# The fixtures write rows with chosen ages; no store function takes a
# timestamp, so they use plain SQL.
AGES = {"old": "now() - interval '45 days'", "fresh": "now() - interval '1 minute'"}


@pytest.fixture(scope="module")
def pool(cfg: config.Config) -> Iterator[ConnectionPool]:
    p = open_pool(cfg, name="test-worker", wait=True)
    yield p
    p.close()


@pytest.fixture
def rows(cfg: config.Config) -> SimpleNamespace:
    tag = secrets.token_hex(4)
    with single_connection(cfg) as conn:
        user = accounts.create_user(conn, f"worker-{tag}@example.org")
        for age, stamp in AGES.items():
            conn.execute(f"""INSERT INTO idempotency_keys (user_id, key, request_hash, created_at)
                             VALUES (%s, %s, '\\x00', {stamp})""", (user["id"], f"{tag}-{age}"))
            conn.execute(f"""INSERT INTO rate_limits (bucket, window_start, hits)
                             VALUES (%s, {stamp}, 1)""", (f"{tag}-{age}",))
            conn.execute(f"""INSERT INTO events (id, user_id, type, created_at)
                             VALUES (%s, %s, 'test', {stamp})""",
                         (f"evt_{tag}_{age}", user["id"]))
        # Past the 24 h of idempotency keys, well within the 30 days of events.
        conn.execute("""INSERT INTO idempotency_keys (user_id, key, request_hash, created_at)
                        VALUES (%s, %s, '\\x00', now() - interval '25 hours')""",
                     (user["id"], f"{tag}-day-old"))
        conn.execute("""INSERT INTO events (id, user_id, type, created_at)
                        VALUES (%s, %s, 'test', now() - interval '25 hours')""",
                     (f"evt_{tag}_day_old", user["id"]))
    return SimpleNamespace(tag=tag, user_id=user["id"])


def remaining(cfg: config.Config, tag: str) -> dict[str, set[str]]:
    with single_connection(cfg) as conn:
        return {
            "idempotency_keys": {r["key"] for r in conn.execute(
                "SELECT key FROM idempotency_keys WHERE key LIKE %s", (f"{tag}-%",))},
            "rate_limits": {r["bucket"] for r in conn.execute(
                "SELECT bucket FROM rate_limits WHERE bucket LIKE %s", (f"{tag}-%",))},
            "events": {r["id"] for r in conn.execute(
                "SELECT id FROM events WHERE id LIKE %s", (f"evt_{tag}_%",))},
        }


def test_one_pass_removes_only_what_expired(cfg, pool, rows):
    Worker(pool, jobs.JOBS, poll_interval=1.0).run_due()
    tag = rows.tag
    assert remaining(cfg, tag) == {
        "idempotency_keys": {f"{tag}-fresh"},
        "rate_limits": {f"{tag}-fresh"},
        "events": {f"evt_{tag}_fresh", f"evt_{tag}_day_old"},
    }


def test_deleting_an_event_takes_its_deliveries(cfg, pool, rows):
    with single_connection(cfg) as conn:
        accounts.seed_shared_domain(conn, cfg)
        agent = accounts.register_agent(conn, cfg, rows.user_id, slug=f"w-{rows.tag}")
        conn.execute("INSERT INTO deliveries (id, event_id, agent_id) VALUES (%s, %s, %s)",
                     (new_id("whd"), f"evt_{rows.tag}_old", agent["id"]))
    Worker(pool, jobs.JOBS, poll_interval=1.0).run_due()
    with single_connection(cfg) as conn:
        left = conn.execute("SELECT count(*) AS n FROM deliveries WHERE event_id = %s",
                            (f"evt_{rows.tag}_old",)).fetchone()
    assert left["n"] == 0


def test_purge_works_in_batches(cfg, pool):
    tag = secrets.token_hex(4)
    with single_connection(cfg) as conn:
        conn.execute(
            """INSERT INTO rate_limits (bucket, window_start, hits)
               SELECT %s || '-' || n, now() - interval '2 days', 1
                 FROM generate_series(1, %s) AS n""", (tag, housekeeping.BATCH + 5))
    with pool.connection() as conn:
        assert housekeeping.purge("rate_limits", conn) == housekeeping.BATCH
    # A job that did work runs again at once, until nothing is left.
    Worker(pool, jobs.JOBS, poll_interval=1.0).run_due()
    assert remaining(cfg, tag)["rate_limits"] == set()


def test_rows_locked_by_another_worker_are_skipped_not_waited_for(cfg, pool, rows):
    with single_connection(cfg) as other:
        # Another worker holds the old event (mid-batch) in its transaction.
        other.execute("SELECT id FROM events WHERE id = %s FOR UPDATE",
                      (f"evt_{rows.tag}_old",))
        with pool.connection() as conn:
            conn.execute("SET LOCAL lock_timeout = '2s'")
            started = time.monotonic()
            housekeeping.purge("events", conn)
            assert time.monotonic() - started < 2
        other.rollback()
    left = remaining(cfg, rows.tag)["events"]
    assert f"evt_{rows.tag}_old" in left  # skipped while locked
    Worker(pool, jobs.JOBS, poll_interval=1.0).run_due()
    assert f"evt_{rows.tag}_old" not in remaining(cfg, rows.tag)["events"]


def test_a_failing_job_backs_off_and_the_others_still_run(cfg, pool, rows):
    calls: list[str] = []

    def broken(conn: psycopg.Connection) -> int:
        calls.append("broken")
        conn.execute("SELECT * FROM no_such_table")
        return 0

    worker = Worker(pool, [jobs.Job("broken", broken), *jobs.JOBS], poll_interval=0.5)
    worker.run_due()
    worker.run_due()  # the broken job waits out its back-off; nothing raised
    assert calls == ["broken"]
    assert remaining(cfg, rows.tag)["rate_limits"] == {f"{rows.tag}-fresh"}


def test_database_down_is_survived(cfg, tmp_path):
    bad = config.load(write_config(
        cfg, tmp_path / "down.toml",
        database_url=f"postgresql://e2a@/e2a?host={tmp_path}/nowhere&port=1"), env={})
    down = open_pool(bad, name="test-worker-down")
    try:
        worker = Worker(down, jobs.JOBS, poll_interval=0.1, db_timeout=0.2)
        stop = threading.Event()
        thread = threading.Thread(target=worker.serve, args=(stop,))
        thread.start()
        time.sleep(1.0)
        assert thread.is_alive()
        stop.set()
        thread.join(3)
        assert not thread.is_alive()
    finally:
        down.close()
