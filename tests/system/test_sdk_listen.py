"""The published e2a Python SDK (2.x), unchanged: its ``listen()`` receives
our WebSocket notifications, the drained unread one first, then new mail
delivered through the sandbox Postfix."""

from __future__ import annotations

import json
import queue
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sandbox_harness import RunningSandbox, compose, smtp_send, wait_until
from sdk_session import SDK2_VERSION, ensure_installed, start

from e2a.core import accounts
from e2a.core.db import single_connection

pytestmark = pytest.mark.system

SENDER = "ada@sandbox.test"
LISTENER = Path(__file__).with_name("sdk_listener.py")


class Lines:
    """A child's stdout, line by line, with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._lines: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        stdout = proc.stdout
        threading.Thread(target=lambda: [self._lines.put(line) for line in stdout],
                         daemon=True).start()

    def next(self, timeout: float) -> dict[str, Any]:
        return json.loads(self._lines.get(timeout=timeout))


@pytest.fixture
def agent(sandbox: RunningSandbox) -> tuple[str, str]:
    """(key, address) of a fresh local-mode agent of a user of its own."""
    with single_connection(sandbox.box.config()) as conn:
        user = accounts.create_user(conn, f"sdk-ws-{secrets.token_hex(4)}@sandbox.test")
        key = accounts.issue_key(conn, user["id"], name="sdk").key
        cfg = sandbox.box.config()
        email = accounts.register_agent(conn, cfg, user["id"],
                                        slug=f"sdk-ws-{secrets.token_hex(4)}")["email"]
    return key, email


@pytest.fixture
def listener(sandbox: RunningSandbox, agent: tuple[str, str]) -> Iterator[Any]:
    assert ensure_installed() == SDK2_VERSION
    key, email = agent
    procs: list[subprocess.Popen[str]] = []

    def listen(count: int) -> tuple[subprocess.Popen[str], Lines]:
        proc = start(LISTENER, sandbox.api_url, key, email, str(count),
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs.append(proc)
        return proc, Lines(proc)

    try:
        yield listen
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def test_sdk_listen_gets_the_unread_then_the_new(sandbox, agent, listener):
    _, email = agent
    waiting = f"waiting {secrets.token_hex(6)}"
    reply = smtp_send(sandbox.smtp_port, SENDER, email, compose(SENDER, email, waiting, "1\n"))
    assert reply.code == 250, reply
    key, _ = agent

    def stored() -> bool:
        listing = requests.get(sandbox.api_url + sandbox.agent_path(email) + "/messages",
                               headers={"Authorization": f"Bearer {key}"}, timeout=15)
        return listing.status_code == 200 and len(listing.json()["messages"]) == 1

    wait_until(stored, what="the first message stored")
    proc, lines = listener(2)
    drained = lines.next(timeout=30)  # the SDK's own start-up included
    assert drained["subject"] == waiting
    assert drained["from_"] == SENDER
    assert drained["recipient"] == email
    assert drained["message_id"].startswith("msg_")
    assert drained["received_at"].endswith("Z")

    fresh = f"fresh {secrets.token_hex(6)}"
    reply = smtp_send(sandbox.smtp_port, SENDER, email, compose(SENDER, email, fresh, "2\n"))
    assert reply.code == 250, reply
    accepted = time.monotonic()
    live = lines.next(timeout=10)
    assert time.monotonic() - accepted < 2.0
    assert live["subject"] == fresh
    assert live["message_id"] != drained["message_id"]
    assert proc.wait(timeout=10) == 0, proc.stderr.read() if proc.stderr else ""
