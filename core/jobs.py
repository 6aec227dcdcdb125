"""What the worker runs. Each job does one batch in one transaction and says
how much it did; a job that did something runs again at once, an idle one
waits for its interval."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from e2a.core import housekeeping


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[[psycopg.Connection], int]
    every: float = 0.0  # seconds between runs while idle; 0: every poll


# Webhook delivery and the expiry of held messages join here, run every poll.
# Their batches must be claimed with FOR UPDATE SKIP LOCKED: several workers
# may run the same job at the same moment.
JOBS: tuple[Job, ...] = tuple(
    Job(f"purge {table}", functools.partial(housekeeping.purge, table), every=60.0)
    for table in housekeeping.RETENTION
)
