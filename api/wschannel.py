"""A server-to-client WebSocket over gevent-websocket's connection object.

Two things its WebSocket does not do for us:

- Close codes. Its ``close(code, message)`` sends ``message`` alone: the code
  never reaches the client, who then sees 1005 (no status). The close frame
  is built here.
- Whole frames from two greenlets. The session's greenlet writes
  notifications and pings while the reader's greenlet answers the client's
  pings inside ``receive()``; a write that has to wait for a slow client lets
  the other greenlet run, and its frame would land inside the first one.
  Every frame is written under one lock.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any

import gevent.lock
from geventwebsocket.exceptions import WebSocketError
from geventwebsocket.websocket import WebSocket

# RFC 6455 5.5: a control frame's payload is at most 125 bytes, 2 of them the code.
MAX_REASON_BYTES = 123

# The close code of a refused connection: a bad or revoked key, a bad request.
POLICY_VIOLATION = 1008

ChannelClosed = WebSocketError


class Channel:
    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws
        self._closing = False
        ws.raw_write = _whole_frames(ws.raw_write, gevent.lock.Semaphore())

    @property
    def closed(self) -> bool:
        return self._closing or self._ws.closed

    def send_json(self, value: dict[str, Any]) -> None:
        """Raises ChannelClosed once the connection is closed or broken."""
        self._ws.send(json.dumps(value, ensure_ascii=False, separators=(",", ":")))

    def ping(self) -> None:
        self._ws.send_frame(b"", WebSocket.OPCODE_PING)

    def close(self, code: int, reason: str) -> None:
        """Send the close frame with its code, once; later sends fail. Safe to
        call from any greenlet."""
        if self.closed:
            return
        self._closing = True  # no greenlet switch since the check above
        payload = struct.pack("!H", code) + _truncate(reason.encode(), MAX_REASON_BYTES)
        try:
            self._ws.send_frame(payload, WebSocket.OPCODE_CLOSE)
        except WebSocketError:
            pass  # the client is already gone
        finally:
            # gevent-websocket would otherwise send its own close frame when
            # the application returns.
            self._ws.closed = True

    def wait_closed(self) -> None:
        """Read until the client closes or the connection breaks. The client
        sends nothing we act on; reading is what answers its pings and
        notices its close."""
        try:
            while self._ws.receive() is not None:
                pass
        except WebSocketError:
            pass  # closed by us meanwhile


def _whole_frames(write: Callable[[bytes], None],
                  lock: gevent.lock.Semaphore) -> Callable[[bytes], None]:
    def locked_write(data: bytes) -> None:
        with lock:
            write(data)

    return locked_write


def _truncate(text: bytes, limit: int) -> bytes:
    """At most ``limit`` bytes, cut on a UTF-8 character boundary."""
    return text[:limit].decode("utf-8", "ignore").encode()
