"""The private Postfix instance: starts, relays mail byte for byte, stops clean."""

from __future__ import annotations

import os
import shutil
import smtplib
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from sandbox.postfix import Instance, PostfixError
from sandbox.supervisor import alive

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="a Postfix instance needs root"),
]


def _free_ports(count: int) -> list[int]:
    """Distinct loopback ports nobody listens on (all held until all are chosen)."""
    with ExitStack() as held:
        socks = [held.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


class Capture:
    """aiosmtpd handler keeping every message it is given."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 2.0.0 captured"

    def wait(self, count: int = 1, timeout: float = 20.0) -> list[Envelope]:
        deadline = time.monotonic() + timeout
        while len(self.envelopes) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.envelopes


@pytest.fixture
def capture() -> Iterator[tuple[Capture, int]]:
    handler = Capture()
    [port] = _free_ports(1)
    # decode_data=False: the handler sees the exact bytes Postfix sent.
    controller = Controller(handler, hostname="127.0.0.1", port=port, decode_data=False,
                            server_hostname="capture.test")
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def _instance(root: Path, relay_port: int) -> Instance:
    smtp, reinject, submit, content_filter = _free_ports(4)
    return Instance(root=root, hostname="mx.test.example", smtp_port=smtp,
                    reinject_port=reinject, submit_port=submit,
                    filter_address=f"127.0.0.1:{content_filter}",
                    relayhost=f"[127.0.0.1]:{relay_port}",
                    relay_domains=["agents.test.example"],
                    # No content filter runs here: Postfix alone relays.
                    filter_all_mail=False)


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Not pytest's tmp_path: that is private to root, and Postfix's
    # unprivileged processes must reach their queue and log.
    root = Path(tempfile.mkdtemp(prefix="e2a-test-postfix-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


MESSAGE = (
    b"From: Sender <sender@outside.example>\r\n"
    b"To: Someone <someone@elsewhere.example>\r\n"
    b"Subject: bytes intact\r\n"
    b"Date: Thu, 20 Nov 2025 10:00:00 +0000\r\n"
    b"Message-ID: <intact-1@outside.example>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Gr\xc3\xbc\xc3\x9fe, 8-bit body that must not be converted.\r\n"
    b".a line starting with a dot\r\n"
    b"trailing spaces   \r\n"
)


def test_relays_mail_byte_for_byte_and_stops_clean(workdir: Path,
                                                   capture: tuple[Capture, int]) -> None:
    handler, relay_port = capture
    inst = _instance(workdir / "postfix", relay_port)
    inst.write_config()
    inst.check()
    try:
        inst.start()
        master = inst.master_pid()
        assert master is not None and inst.running()
        seen = inst.processes()
        assert master in seen and len(seen) > 1  # master plus its children

        with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as client:
            refused = client.sendmail("sender@outside.example", ["someone@elsewhere.example"],
                                      MESSAGE, mail_options=["BODY=8BITMIME"])
        assert refused == {}

        envelopes = handler.wait()
        assert len(envelopes) == 1, inst.maillog_tail()
        got = envelopes[0]
        assert got.mail_from == "sender@outside.example"
        assert got.rcpt_tos == ["someone@elsewhere.example"]
        # Postfix prepends its Received header and changes nothing else.
        assert got.original_content.startswith(b"Received: from ")
        assert got.original_content.endswith(MESSAGE)
        assert inst.wait_for_log(r"status=sent")
        assert inst.queue_ids_in_log()
        deadline = time.monotonic() + 10
        while not inst.queue_empty() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert inst.queue_empty()
    finally:
        inst.stop()

    assert not inst.running()
    assert inst.processes() == []
    assert not any(alive(pid) for pid in seen)


def test_two_instances_run_side_by_side(workdir: Path, capture: tuple[Capture, int]) -> None:
    _, relay_port = capture
    first = _instance(workdir / "one", relay_port)
    second = _instance(workdir / "two", relay_port)
    try:
        first.start()
        second.start()
        assert first.master_pid() != second.master_pid()
        assert not set(first.processes()) & set(second.processes())
        first.stop()
        assert not first.running()
        assert second.running()
        with smtplib.SMTP("127.0.0.1", second.smtp_port, timeout=30) as client:
            assert client.noop()[0] == 250
    finally:
        first.stop()
        second.stop()
    assert not second.running()


def test_start_names_a_port_already_taken(workdir: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        inst = _instance(workdir / "postfix", relay_port=_free_ports(1)[0])
        inst.submit_port = squatter.getsockname()[1]
        try:
            with pytest.raises(PostfixError, match=f"submit port 127.0.0.1:{inst.submit_port}"):
                inst.start()
        finally:
            inst.stop()
    assert inst.processes() == []


def test_deferred_mail_is_retried_once_the_next_hop_is_back(workdir: Path) -> None:
    [relay_port] = _free_ports(1)  # nothing listens there yet: the internet is down
    inst = _instance(workdir / "postfix", relay_port)
    handler = Capture()
    controller = Controller(handler, hostname="127.0.0.1", port=relay_port, decode_data=False,
                            server_hostname="capture.test")
    internet_up = False
    try:
        inst.start()
        with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as client:
            client.sendmail("sender@outside.example", ["someone@elsewhere.example"], MESSAGE)
        assert inst.wait_for_log(r"status=deferred")
        [queued] = inst.queue()
        assert queued["recipients"][0]["address"] == "someone@elsewhere.example"
        assert not inst.queue_empty()

        controller.start()
        internet_up = True
        inst.flush()
        assert len(handler.wait()) == 1, inst.maillog_tail()
        assert handler.envelopes[0].original_content.endswith(MESSAGE)
    finally:
        inst.stop()
        if internet_up:
            controller.stop()
