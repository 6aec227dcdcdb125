"""One agent's WebSocket session: claim the agent, drain its unread mail
oldest first, then push new mail as it is stored, with a ping every
``http.ws_ping_seconds``.

No duplicates between the drain and the live frames: the subscription exists
before the drain reads (so nothing committed meanwhile is missed) and every
frame sent is remembered by id (so what both the drain and a notification
name goes out once).

Close codes: 4000 when a newer connection for the agent took over (on this or
any other API process: the ws_connections row decides), 1008 when the API key
it connected with is revoked or deleted (announced by a trigger, within
moments on every process; checked again at every ping and after the listener
was away, in case the announcement was lost), 1001 when the server
stops (api/realtime.Hub.stop), 1013 when the database is unavailable or the
client fell too far behind (it reconnects and drains), 1011 on a bug.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import gevent
import gevent.queue
import psycopg
from psycopg_pool import ConnectionPool

from e2a.api import views
from e2a.api.realtime import (
    Ended,
    Event,
    KeyRevoked,
    NewMessage,
    OwnerChanged,
    Resumed,
    Subscription,
)
from e2a.api.wschannel import POLICY_VIOLATION, Channel, ChannelClosed
from e2a.core.store import messages as message_store
from e2a.core.store import users as user_store
from e2a.core.store import websockets as ws_store
from e2a.core.store.messages import MessageFilter

log = logging.getLogger("e2a.api")

DRAIN_PAGE = 200
# Events handled in one go: one query for a burst of new mail.
MAX_BATCH = 200
# A message is stamped (created_at) when inserted and announced when its
# transaction commits; a catch-up after lost notifications starts this much
# before the last moment the listener was known to hear.
CATCH_UP_MARGIN = timedelta(seconds=60)
# Seconds to wait for a connection to forget ours; a stopping server must not
# wait out the pool's timeout when the database is down.
RELEASE_TIMEOUT = 2.0


class SentIds:
    """The ids of the frames sent, for as long as a repeat can come. A
    notification follows its commit by moments; a catch-up re-reads the
    unread mail created from CATCH_UP_MARGIN before the listener's last good
    round trip, and what was sent before the listener went away is at most a
    keep-alive interval newer than that round trip. So the id of a message
    created more than twice the margin before the newest one sent is let go:
    a client connected for months holds minutes of ids, not all of them."""

    def __init__(self, keep: timedelta) -> None:
        self._keep = keep
        self._ids: OrderedDict[str, datetime] = OrderedDict()
        self._newest: datetime | None = None

    def __contains__(self, message_id: str) -> bool:
        return message_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, message_id: str, created_at: datetime) -> None:
        self._ids[message_id] = created_at
        if self._newest is None or created_at > self._newest:
            self._newest = created_at
        horizon = self._newest - self._keep
        while self._ids and next(iter(self._ids.values())) < horizon:
            self._ids.popitem(last=False)


class Replaced(Exception):
    pass


class Revoked(Exception):
    pass


# The frames for a batch of message rows, one per row, in order: the legacy
# notification by default; the /v1 socket sends each message's event envelope.
Render = Callable[[ConnectionPool, list[dict[str, Any]]], list[dict[str, Any]]]


def notifications(pool: ConnectionPool, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [views.notification(row) for row in rows]


class Session:
    def __init__(self, pool: ConnectionPool, channel: Channel, sub: Subscription,
                 ping_seconds: float, render: Render = notifications) -> None:
        self._render = render
        self._pool = pool
        self._channel = channel
        self._sub = sub
        self._ping_seconds = ping_seconds
        self._sent = SentIds(2 * CATCH_UP_MARGIN)

    def run(self) -> None:
        """Serve until the client leaves or the connection is closed."""
        reader = gevent.spawn(self._read)
        try:
            with self._pool.connection() as conn:
                ws_store.claim(conn, self._sub.agent_id, self._sub.connection_id)
            # A revocation between the key check and the subscription was
            # announced to nobody.
            self._check_key()
            self._drain(since=None)
            self._live()
        except Replaced:
            self._channel.close(4000, "replaced by a newer connection")
        except Revoked:
            self._channel.close(POLICY_VIOLATION, "API key revoked")
        except ChannelClosed:
            pass
        except psycopg.Error as exc:
            log.warning("websocket closed: database error %s", type(exc).__name__)
            self._channel.close(1013, "database unavailable, try again later")
        except Exception:
            log.exception("websocket session failed")
            self._channel.close(1011, "internal error")
        finally:
            reader.kill()
            self._release()

    def _read(self) -> None:
        self._channel.wait_closed()
        self._sub.put(Ended())

    def _live(self) -> None:
        next_ping = time.monotonic() + self._ping_seconds
        while True:
            try:
                first = self._sub.queue.get(timeout=max(0.0, next_ping - time.monotonic()))
            except gevent.queue.Empty:
                self._check_key()
                self._channel.ping()
                next_ping = time.monotonic() + self._ping_seconds
                continue
            if not self._handle(self._batch(first)):
                return

    def _batch(self, first: Event) -> list[Event]:
        events = [first]
        while len(events) < MAX_BATCH:
            try:
                events.append(self._sub.queue.get_nowait())
            except gevent.queue.Empty:
                break
        return events

    def _handle(self, events: list[Event]) -> bool:
        """False once the session is over."""
        if any(isinstance(e, Ended) for e in events) or self._channel.closed:
            if self._sub.overflowed:
                self._channel.close(1013, "too far behind; reconnect to receive the rest")
            return False
        if any(isinstance(e, KeyRevoked) for e in events):
            raise Revoked
        if any(isinstance(e, Resumed) for e in events):
            self._check_key()  # a revocation may have been announced meanwhile
        if any(isinstance(e, OwnerChanged) for e in events):
            self._check_owner()
        new = [e.message_id for e in events if isinstance(e, NewMessage)
               and e.message_id not in self._sent]
        if new:
            with self._pool.connection() as conn:
                rows = message_store.summaries_by_ids(conn, self._sub.agent_id, new)
            self._send(rows)
        missed = [e.since for e in events if isinstance(e, Resumed)]
        if missed:
            self._drain(since=min(missed) - CATCH_UP_MARGIN)
        return True

    def _check_key(self) -> None:
        with self._pool.connection() as conn:
            live = user_store.api_key_is_live(conn, self._sub.key_id)
        if not live:
            raise Revoked

    def _check_owner(self) -> None:
        with self._pool.connection() as conn:
            owner = ws_store.owner(conn, self._sub.agent_id)
        # No row at all (it was removed behind our back): nobody newer claims it.
        if owner is not None and owner != self._sub.connection_id:
            raise Replaced

    def _drain(self, since: datetime | None) -> None:
        """The agent's unread inbound mail, oldest first, page by page."""
        wanted = MessageFilter(direction="inbound", status="unread", since=since)
        after: tuple[datetime, str] | None = None
        while True:
            with self._pool.connection() as conn:
                rows = message_store.list_for_agent(conn, self._sub.agent_id, wanted,
                                                    ascending=True, limit=DRAIN_PAGE,
                                                    after=after)
            self._send(rows)
            if len(rows) < DRAIN_PAGE:
                return
            after = (rows[-1]["created_at"], rows[-1]["id"])

    def _send(self, rows: list[dict[str, Any]]) -> None:
        rows = [row for row in rows if row["id"] not in self._sent]
        if not rows:
            return
        for row, frame in zip(rows, self._render(self._pool, rows), strict=True):
            self._channel.send_json(frame)
            self._sent.add(row["id"], row["created_at"])

    def _release(self) -> None:
        try:
            with self._pool.connection(timeout=RELEASE_TIMEOUT) as conn:
                ws_store.release(conn, self._sub.agent_id, self._sub.connection_id)
        except psycopg.Error:
            pass  # a stale row only costs the next connection an UPDATE
