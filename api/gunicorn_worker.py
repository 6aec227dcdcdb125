"""The gunicorn worker: gevent-websocket's, made to stop cleanly.

Two things would otherwise keep a stopping worker alive until the master's
graceful timeout kills it (without closing its pool):

- gevent's WSGI server waits for a client's next request forever, and the
  worker counts that wait as a request in progress, so one idle keep-alive
  client (an SDK's session, a proxy's upstream pool) holds it. Connections
  idle for ``keepalive`` seconds are dropped, as gunicorn's own workers do.
- From fork until it installs its own handlers, a worker still has the
  master's, which queue a SIGTERM in the child's copy of the master's state
  where nobody reads it. Stop signals are blocked across the fork and
  unblocked once the worker's handlers are in place, so one that arrives while
  a worker boots is delivered then instead of lost.
- A WebSocket never ends by itself. What registered with ``on_stop`` runs as
  soon as SIGTERM arrives (the WebSocket hub closes its clients with 1001),
  not after the graceful timeout.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from types import FrameType
from typing import ClassVar

import gevent
from geventwebsocket.gunicorn.workers import GeventWebSocketWorker
from geventwebsocket.handler import WebSocketHandler

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})
# A WebSocket's key travels in its URL (?token=); it must not reach a log line.
_TOKEN_PARAM = re.compile(r"([?&]token=)[^&\s]*")

_stop_callbacks: list[Callable[[], None]] = []


def on_stop(callback: Callable[[], None]) -> None:
    """Run ``callback`` in its own greenlet when this worker is told to stop."""
    _stop_callbacks.append(callback)


def _block_stop_signals() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def _unblock_stop_signals() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def hold_stop_signals_across_forks() -> None:
    """In the master, once: every child starts with stop signals blocked (the
    master itself holds them only for the instant of the fork)."""
    os.register_at_fork(before=_block_stop_signals, after_in_parent=_unblock_stop_signals)


class IdleLimitedHandler(WebSocketHandler):
    idle_timeout: ClassVar[float] = 2.0  # the worker sets gunicorn's keepalive

    def read_requestline(self) -> str | None:
        with gevent.Timeout(self.idle_timeout, False):
            return super().read_requestline()
        return None  # idle too long: the handler closes the connection

    def format_request(self) -> str:
        return _TOKEN_PARAM.sub(r"\1[redacted]", super().format_request())


class ApiWorker(GeventWebSocketWorker):
    wsgi_handler = IdleLimitedHandler

    def init_process(self) -> None:
        IdleLimitedHandler.idle_timeout = float(self.cfg.keepalive)
        super().init_process()

    def init_signals(self) -> None:
        super().init_signals()
        _unblock_stop_signals()  # our handlers are in place: a held SIGTERM lands now

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # A signal handler may run in gevent's hub, where nothing may block.
        for callback in _stop_callbacks:
            gevent.spawn(callback)
