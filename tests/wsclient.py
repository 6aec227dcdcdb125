"""A real WebSocket client for tests and benches (websocket-client, Debian's
python3-websocket), with our frames and close codes made plain."""

from __future__ import annotations

import contextlib
import json
import struct
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import websocket


@dataclass(frozen=True)
class Closed:
    code: int
    reason: str


def ws_url(api_url: str, email: str, key: str) -> str:
    base = api_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    return f"{base}/api/v1/agents/{quote(email, safe='')}/ws?{urlencode({'token': key})}"


class AgentSocket:
    """One connection to an agent's WebSocket. ``pings`` counts the server's pings."""

    def __init__(self, api_url: str, email: str, key: str, timeout: float = 10.0) -> None:
        self.ws = websocket.create_connection(ws_url(api_url, email, key), timeout=timeout)
        self.pings = 0
        self.closed: Closed | None = None

    def next(self, timeout: float = 5.0) -> dict[str, Any] | Closed | None:
        """The next notification, or how the server closed; None when nothing
        came within ``timeout``. Pings are answered and counted."""
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
                return json.loads(frame.data)
            if opcode == websocket.ABNF.OPCODE_PING:
                self.pings += 1
            elif opcode == websocket.ABNF.OPCODE_CLOSE:
                data = frame.data or b""
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                self.closed = Closed(code, data[2:].decode("utf-8", "replace"))
                return self.closed

    def frames(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Exactly ``count`` notifications, each within ``timeout``."""
        got: list[dict[str, Any]] = []
        while len(got) < count:
            frame = self.next(timeout)
            assert isinstance(frame, dict), f"after {got}: {frame}"
            got.append(frame)
        return got

    def closed_with(self, timeout: float = 5.0) -> Closed:
        """How the server closes the connection (notifications before it are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.next(max(0.0, deadline - time.monotonic()))
            if isinstance(frame, Closed):
                return frame
            assert frame is not None, f"still open after {timeout}s"

    def quiet_for(self, seconds: float) -> None:
        """Asserts that nothing but pings arrives for ``seconds``."""
        frame = self.next(seconds)
        assert frame is None, frame

    def close(self) -> None:
        with contextlib.suppress(websocket.WebSocketException, OSError):
            self.ws.close()  # fails when the server closed first
