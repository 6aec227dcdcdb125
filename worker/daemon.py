"""`e2a serve worker`: runs the jobs of core.jobs in a loop.

Safe with any number of workers on one database: jobs claim their rows with
FOR UPDATE SKIP LOCKED. A failing job (database down, a bug) is logged and
retried with a growing delay; it never stops the loop or the other jobs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import psycopg
from psycopg_pool import ConnectionPool

from e2a.core.config import Config
from e2a.core.db import open_pool, wakeup
from e2a.core.net import resolver as dns
from e2a.core.runtime import metrics, shutdown
from e2a.core.runtime.sdnotify import notify_ready
from e2a.core.store.events import EVENTS_CHANNEL
from e2a.worker import jobs

log = logging.getLogger("e2a.worker")

MAX_BACKOFF = 60.0
# Longest wait for the bell, so SIGTERM is seen promptly meanwhile.
STOP_CHECK = 0.5
# How long a job waits for a pooled connection: short, so that SIGTERM during
# a database outage is still answered within a second or two.
DB_TIMEOUT = 1.0
# After a pass that did something, this pause before the next: under a
# stream of mail the events that come meanwhile go out in one batch (one
# transaction, a few statements) instead of one batch each, and a pass costs
# the worker and the database the same for one event as for fifty. An idle
# worker still answers the bell at once.
BUSY_PAUSE = 0.05


class Worker:
    def __init__(self, pool: ConnectionPool, job_list: Sequence[jobs.Job], *,
                 poll_interval: float, db_timeout: float = DB_TIMEOUT) -> None:
        self.pool = pool
        self.jobs = tuple(job_list)
        self.poll_interval = poll_interval
        self.db_timeout = db_timeout
        self._due = {job.name: 0.0 for job in self.jobs}
        self._failures = {job.name: 0 for job in self.jobs}

    def run_due(self, stop: threading.Event | None = None) -> bool:
        """Run each job whose time has come, once; whether any did something."""
        worked = False
        for job in self.jobs:
            if stop is not None and stop.is_set():
                break
            now = time.monotonic()
            if self._due[job.name] <= now:
                self._due[job.name], done = self._run(job, now)
                worked = worked or done > 0
        return worked

    def serve(self, stop: threading.Event, bell: wakeup.Bell | None = None) -> None:
        while not stop.is_set():
            if self.run_due(stop):
                stop.wait(BUSY_PAUSE)
                # What rang meanwhile (new events, finished POSTs) is due in
                # the next pass, as it would be after an idle one.
                if bell is not None and bell.wait(0):
                    self.wake()
                continue
            pause = min(self._due.values(), default=0.0) - time.monotonic()
            wait = min(max(pause, 0.0), self.poll_interval)
            if bell is None:
                stop.wait(wait)
            elif bell.wait(min(wait, STOP_CHECK)):
                self.wake()

    def wake(self) -> None:
        """Make the waking jobs due now (not those backing off after errors)."""
        now = time.monotonic()
        for job in self.jobs:
            if job.wake and not self._failures[job.name]:
                self._due[job.name] = min(self._due[job.name], now)

    def _run(self, job: jobs.Job, now: float) -> tuple[float, int]:
        """Run ``job``; when it is due next, and how much it did."""
        try:
            with self.pool.connection(timeout=self.db_timeout) as conn:
                done = job.run(conn)
        except psycopg.Error as exc:
            delay = self._backoff(job)
            log.warning("job %s: database error, retrying in %.1fs: %s", job.name, delay,
                        " ".join(str(exc).split()))
            return now + delay, 0
        except Exception:
            delay = self._backoff(job)
            log.exception("job %s failed, retrying in %.1fs", job.name, delay)
            return now + delay, 0
        self._failures[job.name] = 0
        if done:
            log.info("job %s: %d done", job.name, done)
            return now, done
        return now + max(job.every, self.poll_interval), 0

    def _backoff(self, job: jobs.Job) -> float:
        self._failures[job.name] += 1
        return min(MAX_BACKOFF, self.poll_interval * 2 ** min(self._failures[job.name], 16))


def run(cfg: Config) -> None:
    stop = shutdown.on_signals()
    dns.configure(cfg)  # webhook hosts resolve through the configured resolver
    bell = wakeup.Bell()
    job_list = jobs.for_worker(cfg, bell)
    pool = open_pool(cfg, name="worker", max_size=2, wait=False)
    listener = wakeup.WakeupThread(cfg, EVENTS_CHANNEL, bell, stop)
    listener.start()
    metrics.serve(cfg.metrics.worker_listen, "worker")
    try:
        log.info("worker started, polling every %ss", cfg.worker.poll_interval)
        notify_ready()
        Worker(pool, job_list, poll_interval=cfg.worker.poll_interval).serve(stop, bell)
    finally:
        stop.set()
        for job in job_list:
            if job.finish is not None:
                job.finish(pool)
        pool.close()
        listener.join(2 * wakeup.IDLE_CHECK)
        log.info("worker stopped")
