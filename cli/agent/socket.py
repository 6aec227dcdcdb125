"""Reading an agent's WebSocket (websocket-client, Debian's python3-websocket):
each text frame a JSON event, pings answered, how the server closed made
plain. ``e2a listen`` reads /v1 with it; the tests read both APIs' sockets
with it (tests/wsclient.py)."""

from __future__ import annotations

import contextlib
import json
import struct
import time
from dataclasses import dataclass
from typing import Any

import websocket

MAX_FRAME = 4 * 1024 * 1024  # an event envelope is small; a huge frame is no event


@dataclass(frozen=True)
class Closed:
    code: int
    reason: str


class EventSocket:
    """One connection; ``pings`` counts the server's pings."""

    def __init__(self, url: str, headers: list[str] | None = None,
                 timeout: float = 10.0) -> None:
        self.ws = websocket.create_connection(url, timeout=timeout, header=headers or [])
        self.pings = 0
        self.closed: Closed | None = None

    def next(self, timeout: float = 5.0) -> dict[str, Any] | Closed | None:
        """The next event, or how the server closed; None when nothing came
        within ``timeout``. A frame that is not a JSON object is skipped."""
        if self.closed:
            return self.closed
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.ws.settimeout(left)
            try:
                opcode, frame = self.ws.recv_data_frame(control_frame=True)
            except websocket.WebSocketTimeoutException:
                return None
            except (websocket.WebSocketConnectionClosedException, ConnectionError):
                self.closed = Closed(1006, "connection dropped without a close frame")
                return self.closed
            if opcode == websocket.ABNF.OPCODE_TEXT:
                if len(frame.data) > MAX_FRAME:
                    continue
                try:
                    event = json.loads(frame.data)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    return event
            elif opcode == websocket.ABNF.OPCODE_PING:
                self.pings += 1
            elif opcode == websocket.ABNF.OPCODE_CLOSE:
                data = frame.data or b""
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                self.closed = Closed(code, data[2:].decode("utf-8", "replace"))
                return self.closed

    def close(self) -> None:
        with contextlib.suppress(websocket.WebSocketException, OSError):
            self.ws.close()  # fails when the server closed first
