"""Idle SMTP connections kept for the next message (submit, reinjection).

Opening a connection per message costs Postfix a new smtpd session (and, on
the reinjection service, a new milter session) and us a TCP handshake,
greeting and EHLO: measured as a large share of the outbound path. A
connection goes back to the pool only after a transaction that ended with
250 (so it is idle, with no transaction open); any error closes it. An idle
connection is used for at most ``IDLE_SECONDS`` (below Postfix's
smtpd_timeout of 300 s, after which it says 421 and closes).

A server may still close an idle connection at any time (smtpd exits after
max_idle, Postfix reloads): ``run`` retries on a fresh connection when a
reused one fails before the message data was sent, and never after, so a
message is never sent twice.
"""

from __future__ import annotations

import contextlib
import os
import smtplib
import socket
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

IDLE_SECONDS = 60.0
MAX_IDLE = 16  # Postfix's e2a-filter transport runs 10 deliveries at once


class Stale(Exception):
    """Raised by a transaction whose reused connection answered 421 (the
    server's goodbye) before any data went out: retried on a fresh one."""


class Session:
    """One connection as handed to a transaction; ``data_started`` is set by
    the caller just before it sends DATA (from then on nothing is retried)."""

    def __init__(self, smtp: smtplib.SMTP, reused: bool) -> None:
        self.smtp = smtp
        self.reused = reused
        self.data_started = False


class Pool:
    def __init__(self, connect: Callable[[], smtplib.SMTP], *,
                 idle_seconds: float = IDLE_SECONDS, max_idle: int = MAX_IDLE) -> None:
        self._connect = connect
        self._idle: list[tuple[smtplib.SMTP, float]] = []
        self._lock = threading.Lock()
        self.idle_seconds = idle_seconds
        self.max_idle = max_idle
        self.opened = 0  # connections made, for tests and the curious

    def _take(self) -> Session:
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._idle:
                    break
                smtp, since = self._idle.pop()
            if now - since < self.idle_seconds:
                return Session(smtp, reused=True)
            _quit(smtp)
        smtp = self._connect()
        self.opened += 1
        if smtp.sock is not None and smtp.sock.family in (socket.AF_INET, socket.AF_INET6):
            # Small commands then a wait for the reply: Nagle plus delayed ACK
            # would add tens of milliseconds per message.
            smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return Session(smtp, reused=False)

    def _give_back(self, smtp: smtplib.SMTP) -> None:
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append((smtp, time.monotonic()))
                return
        _quit(smtp)

    def run(self, transaction: Callable[[Session], T]) -> T:
        """``transaction(session)`` on an idle connection or a new one. The
        connection is kept when it returns, closed when it raises; a reused
        connection found closed before DATA is replaced once."""
        for attempt in (1, 2):
            session = self._take()
            try:
                result = transaction(session)
            except BaseException as exc:
                _quit(session.smtp)
                if (attempt == 1 and session.reused and not session.data_started
                        and _closed_by_server(exc)):
                    continue
                raise
            self._give_back(session.smtp)
            return result
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for smtp, _ in idle:
            _quit(smtp)


_shared: dict[tuple[object, ...], Pool] = {}
_shared_lock = threading.Lock()


def shared(key: tuple[object, ...], connect: Callable[[], smtplib.SMTP]) -> Pool:
    """The process's pool for ``key`` (made with ``connect`` the first time).
    Per process: a pool made before a fork (gunicorn's workers) must not hand
    one socket to two processes, so the PID is part of the key."""
    full = (os.getpid(), *key)
    with _shared_lock:
        pool = _shared.get(full)
        if pool is None:
            pool = _shared[full] = Pool(connect)
        return pool


def _closed_by_server(exc: BaseException) -> bool:
    """An idle connection the server had dropped: no answer at all, or its
    421 goodbye (timeout, shutdown) in place of an answer to our command."""
    if isinstance(exc, smtplib.SMTPServerDisconnected | ConnectionError | Stale):
        return True
    return getattr(exc, "smtp_code", None) == 421


def _quit(smtp: smtplib.SMTP) -> None:
    # QUIT also discards a transaction abandoned after a refusal.
    with contextlib.suppress(OSError, smtplib.SMTPException):
        smtp.quit()
    with contextlib.suppress(OSError):
        smtp.close()
