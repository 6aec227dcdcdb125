"""What the one SMTP client asks of a server that speaks DSN (RFC 3461):
RET and ENVID on MAIL FROM, NOTIFY and ORCPT on each RCPT TO; nothing of
it to a server that does not announce DSN (it would refuse the message)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from servicesupport import free_port

from e2a.core.mta import smtpclient
from e2a.core.mta.dsn import Dsn
from e2a.core.net.addresses import InetAddress

_DSN_PARAM = re.compile(r"\s+(RET|ENVID|NOTIFY|ORCPT)=\S+", re.IGNORECASE)


class Recording(SMTP):
    """Records MAIL and RCPT as the client sent them, then lets aiosmtpd
    (which knows no DSN parameter) handle them without."""

    def __init__(self, *args: Any, seen: list[str], dsn: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen = seen
        self.dsn = dsn

    async def smtp_EHLO(self, hostname: str) -> None:
        if not self.dsn:
            await super().smtp_EHLO(hostname)
            return
        # The DSN line before the last one of aiosmtpd's own answer.
        pushed: list[str] = []
        real_push = self.push

        async def collect(status: str) -> None:
            pushed.append(status)
        self.push = collect  # type: ignore[method-assign]
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self.push = real_push  # type: ignore[method-assign]
        for line in pushed[:-1]:
            await real_push(line)
        await real_push("250-DSN")
        await real_push(pushed[-1])

    async def smtp_MAIL(self, arg: str | None) -> None:
        self.seen.append(f"MAIL {arg}")
        await super().smtp_MAIL(_DSN_PARAM.sub("", arg or ""))

    async def smtp_RCPT(self, arg: str | None) -> None:
        self.seen.append(f"RCPT {arg}")
        await super().smtp_RCPT(_DSN_PARAM.sub("", arg or ""))


class Sink:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 2.0.0 Ok: queued as 4QDSN"


def serve(dsn: bool) -> Iterator[tuple[InetAddress, list[str]]]:
    seen: list[str] = []
    port = free_port()

    class Factory(Controller):
        def factory(self) -> SMTP:
            return Recording(self.handler, seen=seen, dsn=dsn, hostname="peer.test")

    controller = Factory(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield InetAddress("127.0.0.1", port), seen
    finally:
        controller.stop()


@pytest.fixture
def dsn_server() -> Iterator[tuple[InetAddress, list[str]]]:
    yield from serve(dsn=True)


@pytest.fixture
def plain_server() -> Iterator[tuple[InetAddress, list[str]]]:
    yield from serve(dsn=False)


TXN = smtpclient.Transaction("bounces+msg_1@agents.example", ["a+b@example.org", "c@example.org"],
                             b"Subject: x\r\n\r\ny\r\n",
                             dsn=Dsn("msg_0123456789abcdef0123456789abcdef"))


def test_dsn_is_asked_of_a_server_that_speaks_it(dsn_server):
    address, seen = dsn_server
    code, _ = smtpclient.send(address, TXN, helo="client.test", timeout=5)
    assert code == 250
    [mail, first, second] = seen
    assert "RET=HDRS" in mail and "ENVID=msg_0123456789abcdef0123456789abcdef" in mail
    assert first == "RCPT TO:<a+b@example.org> NOTIFY=SUCCESS,DELAY,FAILURE " \
                    "ORCPT=rfc822;a+2Bb@example.org"
    assert second.endswith("NOTIFY=SUCCESS,DELAY,FAILURE ORCPT=rfc822;c@example.org")


def test_nothing_of_it_to_a_server_without_dsn(plain_server):
    address, seen = plain_server
    code, _ = smtpclient.send(address, TXN, helo="client.test", timeout=5)
    assert code == 250
    assert not any(_DSN_PARAM.search(line) for line in seen)
