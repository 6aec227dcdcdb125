"""The content filter in tests: a real aiosmtpd server standing in for
Postfix's reinjection service, the filter itself on a loopback socket with a
real database pool, and an SMTP client standing in for Postfix's e2a-filter
transport."""

from __future__ import annotations

import asyncio
import smtplib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from psycopg_pool import ConnectionPool
from servicesupport import free_port

from e2a.core.addresses import InetAddress
from e2a.core.config import Config
from e2a.policy import listen
from e2a.policy.filter import ContentFilter
from e2a.policy.gate import Gate

XFORWARD_ATTRS = "NAME ADDR PORT PROTO HELO IDENT SOURCE"
XCLIENT_ATTRS = "NAME ADDR PROTO HELO LOGIN"
QUEUED_AS = "4ABCDEF"  # the queue id the stand-in reinjection service reports


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    mail_options: list[str]


@dataclass
class Reinjection:
    """What Postfix's reinjection service would have been told."""

    messages: list[Received] = field(default_factory=list)
    xforward: list[str] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)  # XCLIENT LOGIN= values
    refuse_rcpt: set[str] = field(default_factory=set)
    data_reply: str = ""
    delay: float = 0.0
    data_started: threading.Event = field(default_factory=threading.Event)

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], f"250-XFORWARD {XFORWARD_ATTRS}",
                f"250-XCLIENT {XCLIENT_ATTRS}", responses[-1]]

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        if address in self.refuse_rcpt:
            return "550 5.1.1 refused for the test"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_started.set()
        await asyncio.sleep(self.delay)
        if self.data_reply:
            return self.data_reply
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                      envelope.original_content, list(envelope.mail_options)))
        return f"250 2.0.0 Ok: queued as {QUEUED_AS}"


class XforwardSMTP(SMTP):
    async def smtp_XFORWARD(self, arg: str) -> None:
        self.event_handler.xforward.append(arg)
        await self.push("250 2.0.0 Ok")

    async def smtp_XCLIENT(self, arg: str) -> None:
        # As Postfix: the session starts afresh with a new greeting.
        for item in arg.split():
            name, _, value = item.partition("=")
            if name.upper() == "LOGIN":
                self.event_handler.logins.append(value)
        await self.push("220 reinject.test ESMTP")


class ReinjectionController(Controller):
    def factory(self) -> SMTP:
        return XforwardSMTP(self.handler, **self.SMTP_kwargs)


@contextmanager
def reinjection_service(port: int | None = None) -> Iterator[tuple[Reinjection, int]]:
    handler = Reinjection()
    port = port or free_port()
    controller = ReinjectionController(handler, hostname="127.0.0.1", port=port,
                                       server_hostname="reinject.test")
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


class RunningFilter:
    def __init__(self, cfg: Config, pool: ConnectionPool, reinject_port: int,
                 max_bytes: int = 10 * 1024 * 1024, db_timeout: float = 10.0) -> None:
        listener = listen.bind(InetAddress("127.0.0.1", 0))
        self.port = listener.address.port  # type: ignore[union-attr]
        gate = Gate(pool, cfg, InetAddress("127.0.0.1", reinject_port), helo="filter.test",
                    timeout=10, db_timeout=db_timeout)
        self.filter = ContentFilter(listener, gate, max_message_bytes=max_bytes)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        await self.filter.serve(self._stop)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        assert not self._thread.is_alive()

    def client(self) -> smtplib.SMTP:
        smtp = smtplib.SMTP("127.0.0.1", self.port, local_hostname="postfix.test", timeout=20)
        smtp.ehlo()
        return smtp


def send(smtp: smtplib.SMTP, mail_from: str, rcpts: list[str], data: bytes,
         params: str = " BODY=8BITMIME") -> tuple[int, str]:
    code, reply = smtp.docmd("MAIL", f"FROM:<{mail_from}>{params}")
    assert code == 250, reply
    for rcpt in rcpts:
        code, reply = smtp.docmd("RCPT", f"TO:<{rcpt}>")
        assert code == 250, reply
    code, reply = smtp.data(data)
    return code, reply.decode()


def signature_tags(data: bytes) -> dict[str, str]:
    """The tags of the first DKIM-Signature in ``data``'s header."""
    lines = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(b"DKIM-Signature:"))
    field = lines[start].split(b":", 1)[1]
    for line in lines[start + 1:]:
        if line[:1] not in (b" ", b"\t"):
            break
        field += line
    tags = {}
    for part in field.decode().split(";"):
        name, _, value = part.partition("=")
        tags[name.strip()] = "".join(value.split())
    return tags
