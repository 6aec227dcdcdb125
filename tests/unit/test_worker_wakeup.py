"""Waking the worker: a committed event NOTIFYs, the listener rings the bell,
the waking jobs run at once instead of at the next poll (real PostgreSQL)."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from e2a.core.accounts import registration as accounts
from e2a.core.db import open_pool, single_connection, wakeup
from e2a.core.ids import new_id
from e2a.core.store import events as event_store
from e2a.worker import daemon as worker_module
from e2a.worker import jobs
from e2a.worker.daemon import Worker


@pytest.fixture
def listening(cfg) -> Iterator[wakeup.Bell]:
    bell, stop = wakeup.Bell(), threading.Event()
    listener = wakeup.WakeupThread(cfg, event_store.EVENTS_CHANNEL, bell, stop)
    listener.start()
    assert bell.wait(5)  # rung once on connecting
    yield bell
    stop.set()
    listener.join(5)
    assert not listener.is_alive()


def new_event(cfg, *, commit: bool = True) -> None:
    with single_connection(cfg) as conn:
        user = accounts.create_user(conn, f"wake-{secrets.token_hex(4)}@example.org")
        event_store.insert_event(conn, new_id("evt"), user["id"], "email.sent", {})
        if not commit:
            conn.rollback()


def test_a_committed_event_rings_the_bell(cfg, listening):
    new_event(cfg, commit=False)
    assert not listening.wait(1.0)  # a rolled-back event says nothing
    new_event(cfg)
    assert listening.wait(2.0)


def test_waking_jobs_run_at_once_when_the_bell_rings(cfg, listening):
    runs: dict[str, list[float]] = {"waking": [], "polled": []}

    def job(name: str):
        def run(conn: psycopg.Connection) -> int:
            runs[name].append(time.monotonic())
            return 0
        return run

    pool = open_pool(cfg, name="test-wake", wait=True)
    stop = threading.Event()
    worker = Worker(pool, [jobs.Job("waking", job("waking"), wake=True),
                           jobs.Job("polled", job("polled"))], poll_interval=30.0)
    thread = threading.Thread(target=worker.serve, args=(stop, listening))
    try:
        thread.start()
        time.sleep(0.5)  # both ran once at start; now idle for 30 s
        assert (len(runs["waking"]), len(runs["polled"])) == (1, 1)
        rung = time.monotonic()
        new_event(cfg)
        deadline = time.monotonic() + 3
        while len(runs["waking"]) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(runs["waking"]) == 2
        assert runs["waking"][1] - rung < 1.0
        assert len(runs["polled"]) == 1
    finally:
        stop.set()
        thread.join(5)
        pool.close()
    assert not thread.is_alive()


def test_a_pass_that_did_something_waits_a_moment_before_the_next(cfg):
    """Under a stream of events the worker gathers them into batches: after a
    pass with work it pauses BUSY_PAUSE, then goes on without waiting for a
    bell or the poll interval."""
    runs: list[float] = []

    def busy_once(conn: psycopg.Connection) -> int:
        runs.append(time.monotonic())
        return 1 if len(runs) == 1 else 0

    pool = open_pool(cfg, name="test-busy", wait=True)
    stop = threading.Event()
    worker = Worker(pool, [jobs.Job("busy", busy_once, wake=True)], poll_interval=30.0)
    thread = threading.Thread(target=worker.serve, args=(stop,))
    try:
        thread.start()
        deadline = time.monotonic() + 5
        while len(runs) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(runs) == 2
        assert runs[1] - runs[0] >= worker_module.BUSY_PAUSE
        time.sleep(2 * worker_module.BUSY_PAUSE)
        assert len(runs) == 2  # idle now: the next run waits for the poll interval
    finally:
        stop.set()
        thread.join(5)
        pool.close()
    assert not thread.is_alive()
