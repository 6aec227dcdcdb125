"""A real WebSocket client for tests and benches: the CLI's reader
(e2a.cli.agent.socket, on websocket-client) with what tests assert on."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote, urlencode

from e2a.cli.agent.socket import Closed, EventSocket

__all__ = ["AgentSocket", "Closed", "ws_url"]


def ws_url(api_url: str, email: str, key: str) -> str:
    base = api_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    return f"{base}/api/v1/agents/{quote(email, safe='')}/ws?{urlencode({'token': key})}"


class AgentSocket(EventSocket):
    """One connection to an agent's legacy WebSocket (key in the URL)."""

    def __init__(self, api_url: str, email: str, key: str, timeout: float = 10.0) -> None:
        super().__init__(ws_url(api_url, email, key), timeout=timeout)

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
