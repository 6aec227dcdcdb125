"""Drives our milter the way Postfix does, byte for byte, without Postfix.

Milter.testctx.TestCtx re-serialises the message through the email package,
which changes bytes; here each header goes in as Postfix sends it with
SMFIP_HDR_LEADSPC (value with its leading space, folds joined by LF) and the
body with CRLF.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import Milter
from Milter.testctx import TestCtx


@dataclass
class Outcome:
    code: int
    reply: tuple | None
    deleted: list[str] = field(default_factory=list)
    headers_added: list[tuple] = field(default_factory=list)


def split_message(raw: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    headers: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + b"\n" + line)
        else:
            name, _, value = line.partition(b":")
            headers.append((name, value))
    return headers, body


def feed(raw: bytes, mail_from: str, rcpts: list[str], *, client_ip: str = "127.0.0.1",
         helo: str = "client.example", daemon_name: str = "smtpd",
         queue_id: str = "4ABCDEF") -> Outcome:
    ctx = TestCtx()
    ctx._setsymval("{daemon_name}", daemon_name)
    ctx._setsymval("i", queue_id)
    assert ctx._connect(host="client.example", helo=helo, ip=client_ip) == Milter.CONTINUE
    code = ctx._envfrom(f"<{mail_from}>")
    for rcpt in rcpts:
        if code != Milter.CONTINUE:
            break
        code = ctx._envrcpt(f"<{rcpt}>")
    headers, body = split_message(raw)
    milter = ctx.getpriv()
    for name, value in headers:
        if code != Milter.CONTINUE:
            break
        ctx._stage = Milter.M_EOH
        code = milter.header_bytes(name.decode("ascii"), value)
    if code == Milter.CONTINUE:
        code = ctx._eoh()
    if code == Milter.CONTINUE:
        code = milter.body(body)
    if code == Milter.CONTINUE:
        code = ctx._eom()
    deleted = list(ctx._delrcpt)
    ctx._close()
    return Outcome(code, ctx._reply, deleted)
