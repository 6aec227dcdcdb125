"""The capture server (the sandbox's internet) over a real SMTP connection."""

from __future__ import annotations

import asyncio
import json
import smtplib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.capture import DEFAULT_HOSTNAME, Store, serve


@pytest.fixture
def capture(tmp_path: Path) -> Iterator[tuple[int, Store]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    directory = tmp_path / "capture"
    thread = threading.Thread(
        target=loop.run_until_complete, args=(serve(directory, "127.0.0.1", port, stop=stop),))
    thread.start()
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                threading.Event().wait(0.05)
        yield port, Store(directory)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def test_message_is_stored_byte_for_byte_with_its_envelope(capture: tuple[int, Store]) -> None:
    port, store = capture
    # A line starting with a dot (dot-stuffed on the wire), 8-bit text, a
    # trailing space: what must come out exactly as it went in.
    raw = ("From: Bot <bot@agents.sandbox.test>\r\nTo: someone@example.org\r\n"
           "Subject: out\r\n\r\n.leading dot\r\ncaf\u00e9 \r\nlast\r\n").encode()
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        code, greeting = client.ehlo("client.test")
        assert code == 250
        assert greeting.decode().startswith(DEFAULT_HOSTNAME)  # not Postfix's myhostname
        refused = client.sendmail("bot@agents.sandbox.test",
                                  ["someone@example.org", "other@example.net"], raw)
    assert refused == {}
    [captured] = store.messages()
    assert captured.data == raw
    assert captured.mail_from == "bot@agents.sandbox.test"
    assert captured.rcpt_tos == ["someone@example.org", "other@example.net"]
    assert captured.message["Subject"] == "out"
    assert captured.path.name.endswith("-1.eml")
    envelope = json.loads(captured.path.with_suffix(".json").read_text())
    assert envelope == {"mail_from": "bot@agents.sandbox.test",
                        "rcpt_tos": ["someone@example.org", "other@example.net"]}


def test_messages_come_back_in_arrival_order(capture: tuple[int, Store]) -> None:
    port, store = capture
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        for n in range(3):
            client.sendmail("a@sandbox.test", ["b@example.org"],
                            f"Subject: n{n}\r\n\r\nbody\r\n".encode())
    assert [c.message["Subject"] for c in store.messages()] == ["n0", "n1", "n2"]
    found = store.wait_for(lambda c: c.message["Subject"] == "n1", timeout=1)
    assert found.message["Subject"] == "n1"


def test_wait_for_times_out(tmp_path: Path) -> None:
    with pytest.raises(TimeoutError):
        Store(tmp_path).wait_for(lambda c: True, timeout=0.2)


def test_bounce_me_and_defer_me_are_refused_like_a_real_peer(capture: tuple[int, Store]) -> None:
    port, store = capture
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.test")
        client.mail("bounces+msg_0123456789abcdef0123456789abcdef@agents.sandbox.test")
        code, text = client.rcpt("Bounce-Me@elsewhere.test")
        assert (code, text[:5]) == (550, b"5.1.1")
        code, text = client.rcpt("defer-me@elsewhere.test")
        assert (code, text[:5]) == (450, b"4.2.0")
        # A test picks each recipient's fate by the start of its name.
        assert client.rcpt("bounce-7f3a@elsewhere.test")[0] == 550
        assert client.rcpt("defer-7f3a@elsewhere.test")[0] == 450
        assert client.rcpt("bouncer@elsewhere.test")[0] == 250
        assert client.rcpt("friend@elsewhere.test")[0] == 250
        assert client.data(b"Subject: x\r\n\r\ny\r\n")[0] == 250
    [captured] = store.messages()
    assert captured.rcpt_tos == ["bouncer@elsewhere.test", "friend@elsewhere.test"]
