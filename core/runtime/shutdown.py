"""Stopping a service on SIGTERM/SIGINT: an event the main loop waits on."""

from __future__ import annotations

import signal
import threading
from types import FrameType


def on_signals() -> threading.Event:
    """An event set by the first SIGTERM or SIGINT; call from the main thread.

    Handlers only set the event, so whatever the main thread was doing (a
    query, a sleep) ends normally and cleanup runs on the ordinary path.
    """
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)
    return stop


def wait(stop: threading.Event) -> None:
    # Short waits keep the main thread responsive to signals on every platform.
    while not stop.wait(0.5):
        pass
