"""The API process's hub for WebSocket clients: which agents have a client
here, and what the database said that concerns them.

The milter NOTIFYs ``e2a_inbound`` when it commits a message; a new WebSocket
connection NOTIFYs ``e2a_ws_control``; a trigger NOTIFYs ``e2a_key_revoked``
when an API key is revoked or deleted. The process's one listener
(api/pglisten.py) hears all three and the hub queues an event for each client
of the agent (or of the key) concerned; the client's own greenlet (api/wsession.py) does the
database work and the writing, so a slow client holds up nobody else.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import gevent
import gevent.queue

from e2a.api.pglisten import Listener
from e2a.core.config import Config
from e2a.core.ids import new_id
from e2a.core.store import messages as message_store
from e2a.core.store import websockets as ws_store

log = logging.getLogger("e2a.api")

# Seconds a new client waits for the listener (connecting at the process's
# first client, or reconnecting after a database restart).
READY_TIMEOUT = 5.0
# Events queued for one client before it counts as too slow: it is closed
# and catches up from the unread messages when it reconnects.
MAX_PENDING = 1000
# Seconds a stopping server gives its clients' close frames.
CLOSE_TIMEOUT = 2.0


class Closable(Protocol):
    def close(self, code: int, reason: str) -> None: ...


class Unavailable(Exception):
    """No client can be served now; the text says why."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# What a client's queue carries.
@dataclass(frozen=True)
class NewMessage:
    message_id: str


@dataclass(frozen=True)
class OwnerChanged:
    """Another connection may have taken this agent's place."""


@dataclass(frozen=True)
class KeyRevoked:
    """The API key the client connected with no longer works."""


@dataclass(frozen=True)
class Resumed:
    """The listener was away: messages stored since ``since`` may have gone
    unannounced."""

    since: datetime


@dataclass(frozen=True)
class Ended:
    """The client is gone, or the connection was closed under it."""


Event = NewMessage | OwnerChanged | KeyRevoked | Resumed | Ended


@dataclass(eq=False)
class Subscription:
    agent_id: str
    channel: Closable
    key_id: str  # the API key it connected with
    connection_id: str = field(default_factory=lambda: new_id("ws"))
    queue: gevent.queue.Queue = field(default_factory=gevent.queue.Queue)
    overflowed: bool = False

    def put(self, event: Event) -> None:
        if self.overflowed:
            return
        if isinstance(event, NewMessage) and self.queue.qsize() >= MAX_PENDING:
            self.overflowed = True
            event = Ended()
        self.queue.put_nowait(event)


class Hub:
    def __init__(self, cfg: Config) -> None:
        self._clients: dict[str, set[Subscription]] = {}
        self._stopping = False
        self._listener = Listener(
            cfg, (message_store.INBOUND_CHANNEL, ws_store.CONTROL_CHANNEL,
                  ws_store.KEY_REVOKED_CHANNEL),
            self._notified, self._resumed)

    def subscribe(self, agent_id: str, channel: Closable, key_id: str) -> Subscription:
        """Register a client for the agent's notifications. The listener is
        listening when this returns, so whatever commits from now on reaches
        the subscription: drain after subscribing, and nothing falls between."""
        if self._stopping:
            raise Unavailable(1001, "server shutting down")
        self._listener.start()
        if not self._listener.wait_ready(READY_TIMEOUT):
            raise Unavailable(1013, "database unavailable, try again later")
        if self._stopping:  # stopped while we waited
            raise Unavailable(1001, "server shutting down")
        sub = Subscription(agent_id, channel, key_id)
        self._clients.setdefault(agent_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        clients = self._clients.get(sub.agent_id)
        if clients is not None:
            clients.discard(sub)
            if not clients:
                del self._clients[sub.agent_id]

    def stop(self) -> None:
        """Close every client with 1001 (going away) and stop listening."""
        self._stopping = True
        subs = [sub for clients in self._clients.values() for sub in clients]
        # Each close in its own greenlet: one client too slow to take its
        # close frame must not keep the others waiting.
        gevent.joinall([gevent.spawn(self._going_away, sub) for sub in subs],
                       timeout=CLOSE_TIMEOUT)
        self._listener.stop()

    @staticmethod
    def _going_away(sub: Subscription) -> None:
        sub.channel.close(1001, "server shutting down")
        sub.put(Ended())

    def _notified(self, channel: str, payload: str) -> None:
        # Runs inside the listener's round trip: queue work, never block.
        try:
            data = json.loads(payload)
            if channel == ws_store.KEY_REVOKED_CHANNEL:
                self._key_revoked(str(data["key_id"]))
                return
            agent_id = data["agent_id"]
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable notification on %s", channel)
            return
        for sub in list(self._clients.get(agent_id, ())):
            if channel == message_store.INBOUND_CHANNEL:
                sub.put(NewMessage(str(data.get("message_id", ""))))
            elif data.get("connection_id") != sub.connection_id:
                sub.put(OwnerChanged())

    def _key_revoked(self, key_id: str) -> None:
        # Clients are filed by agent; revocations are rare enough to look at
        # every client of the process.
        for clients in list(self._clients.values()):
            for sub in list(clients):
                if sub.key_id == key_id:
                    sub.put(KeyRevoked())

    def _resumed(self, since: datetime) -> None:
        for clients in list(self._clients.values()):
            for sub in list(clients):
                # A newer connection may have announced itself meanwhile, too.
                sub.put(OwnerChanged())
                sub.put(Resumed(since))
