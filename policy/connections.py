"""Many long-lived client connections, few threads: the policy service's and
the socketmap's server.

Postfix keeps a policy (and a socketmap) connection open per smtpd process
and reuses it for every request, so most connections are idle most of the
time. One thread waits on all of them with a selector; a connection whose
bytes complete a request goes to a bounded pool of workers (which may wait
on the database), and comes back to the selector once its answer is
written. An idle connection costs a buffer and a descriptor, not a thread.

Limits (per server): ``max_connections`` open at once (one more is closed
at accept), ``idle_timeout`` seconds without a byte from the client (then
it is closed), ``workers`` requests decided at once (the rest wait their
turn in the pool's queue), WRITE_TIMEOUT seconds to write one answer. What
one request may hold is the protocol reader's limit.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

log = logging.getLogger("e2a.policy")

READ_SIZE = 65536
ACCEPT_BATCH = 64
# A client that does not take its answer within this long is gone.
WRITE_TIMEOUT = 10.0
# How often the selector wakes to close idle connections, at most.
SWEEP_SECONDS = 1.0


class ProtocolError(Exception):
    """The client broke the protocol: log one line, close its connection."""


class Reader(Protocol):
    """One connection's request framing, fed the bytes as they come."""

    def feed(self, data: bytes) -> list[Any]:
        """The requests ``data`` completes; raises ProtocolError."""

    def mid_request(self) -> bool:
        """Whether bytes of an unfinished request are buffered."""


class _Connection:
    def __init__(self, sock: socket.socket, reader: Reader) -> None:
        self.sock = sock
        self.reader = reader
        self.pending: deque[Any] = deque()
        self.busy = False  # a worker holds it (deciding or writing)
        self.last_active = time.monotonic()


class Server:
    """``respond(request)`` runs in a worker: the bytes to answer, or None to
    close the connection without an answer (Postfix then applies its
    default action)."""

    def __init__(self, sock: socket.socket, *, name: str, new_reader: Callable[[], Reader],
                 respond: Callable[[Any], bytes | None], workers: int,
                 max_connections: int, idle_timeout: float) -> None:
        self.name = name
        self._listener = sock
        self._new_reader = new_reader
        self._respond = respond
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{name}-worker")
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._returned: deque[_Connection] = deque()  # from workers, done
        self._open: dict[socket.socket, _Connection] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the selector's thread -------------------------------------------

    def start(self) -> None:
        self._listener.setblocking(False)
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-select",
                                        daemon=True)
        self._thread.start()

    def open_connections(self) -> int:
        return len(self._open)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._turn()
            except Exception:  # a bug here must not leave every client unanswered
                log.exception("%s: selector loop failed, going on", self.name)
                time.sleep(0.1)

    def _turn(self) -> None:
        for key, _events in self._selector.select(timeout=SWEEP_SECONDS):
            if key.fileobj is self._listener:
                self._accept()
            elif key.fileobj is self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    self._wake_r.recv(4096)
            else:
                self._read(key.data)
        while self._returned:
            self._resume(self._returned.popleft())
        self._sweep()

    def _accept(self) -> None:
        # Several per wake: a burst of clients must not fill the listen backlog
        # (a unix socket's client then gets EAGAIN).
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors, say: the client may try again
                log.warning("%s: accept failed: %s", self.name, exc)
                time.sleep(0.1)  # not a busy loop while the condition lasts
                return
            if len(self._open) >= self.max_connections:
                log.warning("%s: %d connections open, refusing another", self.name,
                            self.max_connections)
                sock.close()
                continue
            sock.setblocking(False)
            conn = _Connection(sock, self._new_reader())
            self._open[sock] = conn
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _read(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""  # reset by the client: as good as closed
        if not data:
            if conn.reader.mid_request():
                log.warning("%s client dropped: connection closed in the middle of a request",
                            self.name)
            self._close(conn)
            return
        conn.last_active = time.monotonic()
        try:
            conn.pending.extend(conn.reader.feed(data))
        except ProtocolError as exc:
            log.warning("%s client dropped: %s", self.name, exc)
            self._close(conn)
            return
        self._dispatch(conn)

    def _dispatch(self, conn: _Connection) -> None:
        """One request at a time per connection, as Postfix asks them; no
        more bytes are read from it while one is being answered."""
        if conn.busy or not conn.pending:
            return
        conn.busy = True
        self._selector.unregister(conn.sock)
        self._pool.submit(self._work, conn, conn.pending.popleft())

    def _resume(self, conn: _Connection) -> None:
        if conn.sock.fileno() < 0:
            self._open.pop(conn.sock, None)
            return
        conn.busy = False
        conn.last_active = time.monotonic()
        if conn.pending:
            self._dispatch(conn)
        else:
            self._selector.register(conn.sock, selectors.EVENT_READ, conn)

    def _sweep(self) -> None:
        now = time.monotonic()
        for conn in [c for c in self._open.values()
                     if not c.busy and now - c.last_active > self.idle_timeout]:
            log.info("%s: closing a connection idle for %.0f s", self.name, self.idle_timeout)
            self._close(conn)

    def _close(self, conn: _Connection) -> None:
        self._open.pop(conn.sock, None)
        if not conn.busy:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(conn.sock)
        conn.sock.close()

    # -- workers -----------------------------------------------------------

    def _work(self, conn: _Connection, request: Any) -> None:
        answer = None
        try:
            answer = self._respond(request)
        except Exception:
            log.exception("%s: answering failed, disconnecting", self.name)
        if answer is None:
            conn.sock.close()  # the selector's thread forgets it on return
        else:
            try:
                conn.sock.settimeout(WRITE_TIMEOUT)
                conn.sock.sendall(answer)
                conn.sock.setblocking(False)
            except OSError:
                conn.sock.close()
        self._returned.append(conn)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    # -- stopping ------------------------------------------------------------

    def stop(self, drain_seconds: float) -> None:
        """Stop accepting, let answers in progress go out (for up to
        ``drain_seconds``), close everything."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join()
        deadline = time.monotonic() + drain_seconds
        while any(c.busy for c in self._open.values()) and time.monotonic() < deadline:
            time.sleep(0.02)
            while self._returned:
                conn = self._returned.popleft()
                conn.busy = False
        for conn in list(self._open.values()):
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
            conn.sock.close()
        self._open.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
