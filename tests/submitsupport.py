"""A real SMTP server (aiosmtpd) standing in for Postfix's submit service in
unit tests of sending, and the configuration that points the API at it."""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from apisupport import api_client
from falcon import testing
from servicesupport import write_config

from e2a.core import config
from e2a.core.config import Config

QUEUE_ID = "4ZtestQ1"


@dataclass(frozen=True)
class Submission:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes  # as received: CRLF line ends, dot-stuffing undone

    @property
    def message(self) -> email.message.EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        return parsed


class _Handler:
    def __init__(self, fake: FakePostfix) -> None:
        self.fake = fake

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address in self.fake.refuse_recipients:
            return f"554 5.7.1 <{address}>: Recipient address rejected"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.fake.data_started.set()
        if self.fake.hold is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.fake.hold.wait, 30)
        if self.fake.data_reply:
            return self.fake.data_reply
        with self.fake.lock:
            self.fake.received.append(Submission(
                envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content or b""))
        return f"250 2.0.0 Ok: queued as {QUEUE_ID}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FakePostfix:
    """Takes every message (250 ... queued as QUEUE_ID) unless told to refuse:
    ``data_reply`` answers the data instead, ``refuse_recipients`` get 554.
    With ``hold`` set, the answer to the data waits for that event (a
    submission in flight); ``data_started`` tells when one got there."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[Submission] = []
        self.lock = threading.Lock()
        self.data_reply = ""
        self.refuse_recipients: set[str] = set()
        self.hold: threading.Event | None = None
        self.data_started = threading.Event()
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port,
                                      decode_data=False, enable_SMTPUTF8=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def reset(self) -> None:
        with self.lock:
            self.received.clear()
        self.data_reply = ""
        self.refuse_recipients = set()
        self.hold = None
        self.data_started.clear()

    def only(self) -> Submission:
        """The one message received since the last reset."""
        with self.lock:
            assert len(self.received) == 1, f"{len(self.received)} messages submitted"
            return self.received[0]


@contextmanager
def running_fake_postfix() -> Iterator[FakePostfix]:
    fake = FakePostfix()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


def sending_config(cfg: Config, path: Path, submit_address: str, **send: Any) -> Config:
    """The test database's configuration with Postfix's submit service at
    ``submit_address`` and these ``[send]`` settings."""
    send.setdefault("rate_per_agent", 100_000)
    lines = "".join(f"{key} = {value}\n" for key, value in send.items())
    write_config(cfg, path, f'[submit]\naddress = "{submit_address}"\ntimeout = 5\n'
                            f"[send]\n{lines}")
    return config.load(path, env={})


@contextmanager
def sending_client(cfg: Config, postfix: Any, directory: Path) -> Iterator[testing.TestClient]:
    """The whole app, handing mail to ``postfix`` (a test submit server);
    its configuration written into ``directory``."""
    with api_client(sending_config(cfg, directory / "e2a.toml", postfix.address)) as client:
        yield client
