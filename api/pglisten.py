"""One LISTEN connection per API process, kept up across database restarts.

Every WebSocket client of the process is served from this one connection
(api/realtime.py fans the notifications out), so a thousand clients cost the
database one session per process, not a thousand.

It waits for the server in gevent (a readable socket, or a keep-alive
interval), then makes a round trip: psycopg hands notifications to the
connection's notify handlers during any query, in 3.1 as in 3.3, whereas
``Connection.notifies()`` cannot time out before 3.2. The round trip is also
how a dead server is noticed when its socket says nothing.

Notifications sent while the connection is down are lost (Postgres keeps
them only for sessions that are listening). After a reconnect the listener
reports since when it may have missed some, in the database's clock, and its
owner catches up from the tables.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

import gevent
import gevent.event
import gevent.select
import psycopg

from e2a.core.config import Config
from e2a.core.db import listen

log = logging.getLogger("e2a.api")

# Seconds between round trips on a quiet connection: how long a server that
# vanished without a word (a cut network) can go unnoticed.
KEEPALIVE_SECONDS = 5.0
FIRST_BACKOFF = 0.1
MAX_BACKOFF = 5.0

OnNotify = Callable[[str, str], None]  # channel, payload
OnResume = Callable[[datetime], None]  # missed notifications may date from then


class ProcessListener:
    def __init__(self, cfg: Config, channels: tuple[str, ...], on_notify: OnNotify,
                 on_resume: OnResume) -> None:
        self._cfg = cfg
        self._channels = channels
        self._on_notify = on_notify
        self._on_resume = on_resume
        self._ready = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None
        self._conn: psycopg.Connection | None = None
        # The database's clock at the last round trip that proved we were
        # listening: whatever was missed was sent after it.
        self._heard_at: datetime | None = None

    def start(self) -> None:
        """Connect in the background (once; later calls do nothing)."""
        if self._greenlet is None or self._greenlet.dead:
            self._greenlet = gevent.spawn(self._run)

    def wait_ready(self, timeout: float) -> bool:
        """True once the channels are listened to (now or within ``timeout``)."""
        return self._ready.wait(timeout)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill()
            self._greenlet = None
        self._ready.clear()
        self._close()

    def _run(self) -> None:
        backoff = FIRST_BACKOFF
        lost = False
        while True:
            try:
                self._conn = listen.connect(self._cfg, self._channels, self._on_notify,
                                            name="api-listen")
                missed_since = self._heard_at
                self._heard_at = listen.keepalive(self._conn)
                self._ready.set()
                backoff = FIRST_BACKOFF
                if lost:
                    log.info("listening to the database again")
                    self._on_resume(missed_since or self._heard_at)
                lost = False
                self._serve(self._conn)
            except Exception as exc:
                # The database went away, mostly; anything else must not end
                # the process's only listener either.
                self._ready.clear()
                self._close()
                if not isinstance(exc, psycopg.Error | OSError):
                    log.exception("database listener failed")
                elif not lost:
                    log.warning("database notifications lost (%s); reconnecting",
                                type(exc).__name__)
                lost = True
                gevent.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    def _serve(self, conn: psycopg.Connection) -> None:
        """Until the connection fails: wait, then a round trip that delivers
        whatever arrived to the notify handler."""
        while True:
            gevent.select.select([conn.fileno()], [], [], KEEPALIVE_SECONDS)
            self._heard_at = listen.keepalive(conn)

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):  # already broken: nothing to release
                conn.close()
