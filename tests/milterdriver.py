"""Drives our milter the way Postfix does, byte for byte, without Postfix.

Milter.testctx.TestCtx re-serialises the message through the email package,
which changes bytes; here each header goes in as Postfix sends it with
SMFIP_HDR_LEADSPC (value with its leading space, folds joined by LF) and the
body with CRLF, in chunks of at most 65535 bytes as Postfix sends them.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import Milter
from Milter.testctx import TestCtx

from e2a.core.accounts import registration as accounts
from e2a.core.config import Config
from e2a.core.db import open_pool, single_connection
from e2a.milter.handler import InboundMilter

CHUNK = 65535  # MILTER_CHUNK_SIZE: the largest body piece Postfix sends


@dataclass
class Outcome:
    code: int  # the answer that ended the transaction (CONTINUE: accepted)
    reply: tuple | None  # the last setreply: (code, dsn, text)
    deleted: list[str] = field(default_factory=list)  # delrcpt calls
    rcpt_codes: list[int] = field(default_factory=list)  # one per RCPT TO given
    header_changes: list[tuple[str, int, str | None]] = field(default_factory=list)


class _Recorder(TestCtx):
    """TestCtx applies header edits to its own parsed copy; we only record them."""

    def __init__(self) -> None:
        super().__init__()
        self.header_changes: list[tuple[str, int, str | None]] = []

    def _connect(self, host: str = "localhost", helo: str = "spamrelay",
                 ip: str = "1.2.3.4") -> int:
        """TestCtx's, but NOREPLY (a no-reply stage, as Postfix negotiates
        them) goes on as CONTINUE instead of closing the connection."""
        rc = self._negotiate()
        if rc not in (Milter.CONTINUE, Milter.ALL_OPTS):
            return rc
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        self._stage = Milter.M_CONNECT
        rc = _go_on(Milter.connect_callback(self, host, family, ip))
        self._stage = None
        if rc != Milter.CONTINUE:
            self._close()
            return rc
        self._stage = Milter.M_HELO
        rc = _go_on(self._priv.hello(helo))
        self._stage = None
        if rc != Milter.CONTINUE:
            self._close()
        return rc

    def chgheader(self, field: str, idx: int, value: str | None) -> None:
        if self._stage != Milter.M_EOM:
            raise OSError("chgheader not called from eom()")
        self.header_changes.append((field, idx, value))


@contextmanager
def installed(cfg: Config) -> Iterator[None]:
    """Our milter with its own pool, as `e2a serve milter` sets it up."""
    pool = open_pool(cfg, name="test-milter", wait=True, autocommit=True)
    InboundMilter.cfg = cfg
    InboundMilter.pool = pool
    Milter.factory = InboundMilter
    try:
        yield
    finally:
        pool.close()


def agent_of_a_new_owner(cfg: Config, slug: str) -> dict:
    """An agent ``slug`` on the shared domain, its owner made for the test."""
    with single_connection(cfg) as conn:
        accounts.seed_shared_domain(conn, cfg)
        owner = accounts.create_user(conn, f"{slug}-{secrets.token_hex(4)}@owners.example")
        return accounts.register_agent(conn, cfg, owner["id"], slug=slug)


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


def _go_on(code: int) -> int:
    return Milter.CONTINUE if code == Milter.NOREPLY else code


def feed(raw: bytes, mail_from: str, rcpts: list[str], *, client_ip: str = "127.0.0.1",
         helo: str = "client.example", daemon_name: str = "smtpd",
         queue_id: str = "4ABCDEF", mail_params: tuple[str, ...] = ()) -> Outcome:
    ctx = _Recorder()
    ctx._setsymval("{daemon_name}", daemon_name)
    ctx._setsymval("i", queue_id)
    # Stages the milter negotiated as no-reply answer NOREPLY: Postfix goes on.
    assert _go_on(ctx._connect(host="client.example", helo=helo, ip=client_ip)) \
        == Milter.CONTINUE
    milter = ctx.getpriv()
    ctx._stage = Milter.M_ENVFROM
    code = milter.envfrom(f"<{mail_from}>", *mail_params)
    rcpt_codes: list[int] = []
    if code == Milter.CONTINUE:
        # Postfix asks about every recipient; the transaction goes on while
        # at least one was accepted.
        rcpt_codes = [ctx._envrcpt(f"<{rcpt}>") for rcpt in rcpts]
        if Milter.CONTINUE not in rcpt_codes:
            code = rcpt_codes[-1] if rcpt_codes else Milter.TEMPFAIL
    headers, body = split_message(raw)
    # libmilter has no macro stage of its own for headers and body: the
    # ones sent so far stay readable.
    ctx._stage = Milter.M_EOH
    for name, value in headers:
        if code != Milter.CONTINUE:
            break
        code = _go_on(milter.header_bytes(name.decode("ascii"), value))
    if code == Milter.CONTINUE:
        code = _go_on(ctx._eoh())
    ctx._stage = Milter.M_EOH
    for start in range(0, len(body), CHUNK):
        if code != Milter.CONTINUE:
            break
        code = _go_on(milter.body(body[start:start + CHUNK]))
    if code == Milter.CONTINUE:
        code = ctx._eom()
    else:
        milter.abort()
    outcome = Outcome(code, ctx._reply, list(ctx._delrcpt), rcpt_codes, ctx.header_changes)
    ctx._close()
    return outcome
