"""What the worker runs. Each job does one batch in one transaction and says
how much it did; a job that did something runs again at once, an idle one
waits for its interval."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg_pool import ConnectionPool

from e2a.core import housekeeping
from e2a.core.accounts import domains
from e2a.core.config import Config
from e2a.core.db.wakeup import Bell
from e2a.core.inbound import holds as inbound_holds
from e2a.core.outbound import approval, notification, reconcile
from e2a.core.webhooks import delivery, dispatch


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[[psycopg.Connection], int]
    every: float = 0.0  # seconds between runs while idle; 0: every poll
    wake: bool = False  # also run at once when the workers are notified of events
    finish: Callable[[ConnectionPool], None] | None = None  # at shutdown


# Batches must be claimed with FOR UPDATE SKIP LOCKED: several workers may
# run the same job at the same moment.
JOBS: tuple[Job, ...] = tuple(
    Job(f"purge {table}", functools.partial(housekeeping.purge, table), every=60.0)
    for table in housekeeping.RETENTION
)


def for_worker(cfg: Config, bell: Bell) -> tuple[Job, ...]:
    """Everything `e2a serve worker` runs. Dispatch comes before delivery, so
    a new event's deliveries go out in the same pass."""
    deliverer = delivery.Deliverer(cfg, on_done=bell.ring)
    return (Job("dispatch", dispatch.dispatch, wake=True),
            Job("deliver", deliverer.run, wake=True, finish=deliverer.finish),
            Job("notify owners", functools.partial(notification.notify_owners, cfg)),
            # Every poll: an expired hold's action is due when its time is.
            Job("expire holds", functools.partial(approval.expire_due, cfg=cfg)),
            Job("mark unconfirmed submissions", reconcile.mark_stuck, every=60.0),
            Job("expire inbound holds", inbound_holds.expire_due),
            Job("expire domain claims", functools.partial(domains.expire_claims, cfg),
                every=60.0),
            *JOBS)
