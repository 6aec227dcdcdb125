"""Waking the worker when there is work, instead of polling faster.

Whatever writes an event also NOTIFYs (core/store/events.EVENTS_CHANNEL);
the listener thread holds its own connection LISTENing there and rings the
bell, and the worker runs its waking jobs at once. Polling stays as the
safety net: a notification lost while the listener reconnects only costs one
poll interval.
"""

from __future__ import annotations

import logging
import select
import threading
import time

import psycopg

from e2a.core.config import Config
from e2a.core.db import listen

log = logging.getLogger("e2a.worker")

RECONNECT_DELAY = 2.0
# How often the listener looks at ``stop`` while nothing arrives.
IDLE_CHECK = 0.5
# Seconds between round trips on a quiet connection.
KEEPALIVE = 5.0
# After a round trip that took notifications, the next waits this long: a
# stream of them then costs one round trip per interval instead of one each
# (the worker batches what comes meanwhile anyway: core/worker.BUSY_PAUSE).
# The first of a burst still rings at once.
COALESCE = 0.02


class Bell:
    def __init__(self) -> None:
        self._rung = threading.Event()

    def ring(self) -> None:
        self._rung.set()

    def wait(self, timeout: float) -> bool:
        """Whether it rang within ``timeout`` (or before); resets it."""
        rung = self._rung.wait(timeout)
        self._rung.clear()
        return rung


class WakeupThread(threading.Thread):
    def __init__(self, cfg: Config, channel: str, bell: Bell, stop: threading.Event) -> None:
        super().__init__(name="e2a-listen", daemon=True)
        self._cfg = cfg
        self._channel = channel
        self._bell = bell
        self._halt = stop

    def run(self) -> None:
        self.lost = False
        while not self._halt.is_set():
            try:
                self._listen()
            except (psycopg.Error, OSError) as exc:
                if not self.lost:  # once per outage, not once per retry
                    log.warning("event notifications lost (%s); polling until reconnected",
                                type(exc).__name__)
                self.lost = True
                self._halt.wait(RECONNECT_DELAY)

    def _listen(self) -> None:
        def ring(_channel: str, _payload: str) -> None:
            self._bell.ring()

        with listen.connect(self._cfg, (self._channel,), ring, name="worker-listen") as conn:
            if self.lost:
                log.info("event notifications back")
                self.lost = False
            # Whatever was notified while nobody listened is found by a run now.
            self._bell.ring()
            last = time.monotonic()
            while not self._halt.is_set():
                readable, _, _ = select.select([conn.fileno()], [], [], IDLE_CHECK)
                if readable or time.monotonic() - last >= KEEPALIVE:
                    # A round trip hands what arrived to the handler (psycopg
                    # 3.1 has no notifies() with a timeout) and notices a
                    # server that vanished without a word.
                    listen.keepalive(conn)
                    last = time.monotonic()
                    if readable:
                        self._halt.wait(COALESCE)
