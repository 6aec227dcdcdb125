"""`e2a serve filter`: the after-queue content filter.

Postfix's e2a-filter transport delivers every outbound message here over
SMTP (with XFORWARD). Each message goes through the outbound gate
(policy/gate.py: its row, the hold decision, the DKIM signature) and back to
Postfix's reinjection service with its recipients and XFORWARD attributes
and, but for our signature and return path, exactly the same bytes.
Postfix hears 250 only once the reinjection service has answered 250 for
the data and the row records it; a permanent refusal there (a 5xx to the
message, e.g. 552 once our signature made it too big) is answered with that
5xx, so Postfix bounces it at once with the reason; anything else is 451,
and the message stays in Postfix's queue to be retried.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from aiosmtpd.smtp import SMTP, Envelope, Session, syntax

from e2a.core import addresses, metrics
from e2a.core.config import Config
from e2a.core.db import open_pool
from e2a.core.sdnotify import notify_ready
from e2a.policy import listen, xforward
from e2a.policy.gate import HELD, Gate, Refused
from e2a.policy.reinject import ReinjectError, Transaction

log = logging.getLogger("e2a.filter")

TEMPFAIL = "451 4.3.0 Error: message not passed on, try again later"
SHUTTING_DOWN = "451 4.3.2 Error: filter shutting down, try again later"
TOO_BIG = "552 5.3.4 Message size exceeds fixed limit"
XFORWARD_EHLO = "250-XFORWARD " + " ".join(xforward.ATTRIBUTES)
# Per SMTP step towards the reinjection service; Postfix waits up to its
# smtp_data_done_timeout (1200 s in our master.cf) for our final answer.
REINJECT_TIMEOUT = 60.0
# On stop, messages being passed on get this long to finish: cutting one off
# after the reinjection took it would make Postfix send it again.
DRAIN_SECONDS = 30.0
# Postfix's e2a-filter transport runs at most 10 deliveries at once.
MAX_WORKERS = 16
# Our name in the greeting. Never Postfix's myhostname: Postfix refuses a
# next hop that greets with its own name ("mail loops back to myself").
GREETING_NAME = "e2a-filter.invalid"


class FilterEnvelope(Envelope):
    """XFORWARD attributes live on the envelope: aiosmtpd renews it after
    each message, on RSET and on EHLO, exactly when XFORWARD state resets."""

    def __init__(self) -> None:
        super().__init__()
        self.xforward: dict[str, str] = {}


class FilterSMTP(SMTP):
    def _create_envelope(self) -> FilterEnvelope:
        return FilterEnvelope()

    @syntax("XFORWARD attribute=value ...")
    async def smtp_XFORWARD(self, arg: str | None) -> None:
        envelope = self.envelope
        if self.session is None or not self.session.extended_smtp:
            await self.push("503 5.5.1 Error: send EHLO first")
        elif not isinstance(envelope, FilterEnvelope) or envelope.mail_from:
            await self.push("503 5.5.1 Error: mail transaction in progress")
        else:
            try:
                envelope.xforward.update(xforward.parse(arg or ""))
            except xforward.XforwardError as exc:
                await self.push(f"501 5.5.4 {exc}")
            else:
                await self.push("250 2.0.0 Ok")

    async def push(self, status: Any) -> None:
        # aiosmtpd refuses an oversize message with a bare 552; the enhanced
        # code is what tells Postfix (and the bounce it writes) the reason.
        if isinstance(status, str) and status.startswith("552 ") \
                and not status.startswith("552 5."):
            status = TOO_BIG
        await super().push(status)


class FilterHandler:
    def __init__(self, gate: Gate, *, executor: ThreadPoolExecutor) -> None:
        self.gate = gate
        self.executor = executor
        self.in_flight = 0
        self.stopping = False

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], XFORWARD_EHLO, responses[-1]]

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.stopping:
            return SHUTTING_DOWN  # Postfix retries; the next instance passes it on
        txn = _transaction(envelope)
        queue_id = txn.xforward.get("IDENT", "")
        self.in_flight += 1
        try:
            loop = asyncio.get_running_loop()
            with metrics.timed("filter"):
                reply = await loop.run_in_executor(self.executor, self.gate.pass_on, txn)
        except Refused as exc:
            metrics.outbound_messages.labels(status=metrics.REJECTED).inc()
            return str(exc)
        except ReinjectError as exc:
            if exc.permanent:
                metrics.outbound_messages.labels(status=metrics.FAILED).inc()
                log.warning("reinjection refused the message for good, Postfix bounces it: "
                            "%s", exc, extra={"queue_id": queue_id})
                return refusal(exc)
            metrics.outbound_messages.labels(status=metrics.TEMPFAIL).inc()
            log.warning("reinjection failed, Postfix keeps the message: %s", exc,
                        extra={"queue_id": queue_id})
            return TEMPFAIL
        except psycopg.Error as exc:  # the pool's timeout too: the database is away
            metrics.outbound_messages.labels(status=metrics.TEMPFAIL).inc()
            log.warning("database unavailable, Postfix keeps the message: %s", exc,
                        extra={"queue_id": queue_id})
            return TEMPFAIL
        except Exception:
            metrics.outbound_messages.labels(status=metrics.TEMPFAIL).inc()
            log.exception("filter failed, Postfix keeps the message", extra={"queue_id": queue_id})
            return TEMPFAIL
        finally:
            self.in_flight -= 1
        held = reply.startswith(HELD)
        metrics.outbound_messages.labels(status=metrics.HELD if held else metrics.SENT).inc()
        log.info("passed on: %s", reply, extra={"queue_id": queue_id,
                                               "recipients": len(txn.recipients)})
        # The reinjection's queue id in our answer links the two in Postfix's log.
        return f"250 2.0.0 Ok: passed on: {reply[:400]}"

    async def handle_exception(self, error: Exception) -> str:
        log.error("filter session failed", exc_info=error)
        return TEMPFAIL


def refusal(exc: ReinjectError) -> str:
    """Our 5xx for a message the reinjection service refused for good: its
    own code and enhanced status when it gave them, so the bounce Postfix
    writes says why."""
    code, _, rest = exc.reply.partition(" ")
    status, _, text = rest.partition(" ")
    if not (len(code) == 3 and code.startswith("5") and code.isdigit()):
        code = "554"
    if not re.fullmatch(r"5\.\d{1,3}\.\d{1,3}", status):
        status, text = "5.3.0", rest
    text = "".join(c for c in text if c.isprintable() and c.isascii())[:300]
    return f"{code} {status} Error: refused downstream: {text or 'no reason given'}"


def _transaction(envelope: Envelope) -> Transaction:
    body_type = ""
    for option in envelope.mail_options:
        name, _, value = option.partition("=")
        if name.upper() == "BODY":
            body_type = value.upper()
    mail_from = envelope.mail_from or ""
    return Transaction(
        mail_from="" if mail_from == "<>" else mail_from,
        recipients=list(envelope.rcpt_tos),
        data=envelope.original_content or b"",
        body_type=body_type,
        smtputf8=envelope.smtp_utf8,
        xforward=dict(envelope.xforward) if isinstance(envelope, FilterEnvelope) else {},
    )


class ContentFilter:
    def __init__(self, listener: listen.Listener, gate: Gate, *,
                 max_message_bytes: int) -> None:
        self.listener = listener
        self.max_message_bytes = max_message_bytes
        self.executor = ThreadPoolExecutor(MAX_WORKERS, thread_name_prefix="e2a-reinject")
        self.handler = FilterHandler(gate, executor=self.executor)

    def _protocol(self) -> FilterSMTP:
        return FilterSMTP(self.handler, data_size_limit=self.max_message_bytes,
                          enable_SMTPUTF8=True, decode_data=False, hostname=GREETING_NAME,
                          ident="e2a content filter", loop=asyncio.get_running_loop())

    async def serve(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then drain and close."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(self._protocol, sock=self.listener.sock)
        log.info("filter listening on %s, reinjecting to %s", self.listener.address,
                 self.handler.gate.reinject_to)
        notify_ready()
        try:
            await stop.wait()
        finally:
            server.close()
            self.handler.stopping = True
            # in_flight drops in the same step in which aiosmtpd writes our
            # answer, so at zero every answer is on its way to Postfix.
            deadline = loop.time() + DRAIN_SECONDS
            while self.handler.in_flight and loop.time() < deadline:
                await asyncio.sleep(0.05)
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.listener.close()


async def _serve_until_signalled(content_filter: ContentFilter) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await content_filter.serve(stop)


def run(cfg: Config) -> None:
    reinject_to = addresses.inet(cfg.filter.reinject)
    try:
        listener = listen.bind(addresses.parse(cfg.filter.listen))
    except listen.ListenError as exc:
        log.error("filter: %s", exc)
        raise SystemExit(1) from None
    # Up while the database is down: messages then get 451 until it is back.
    pool = open_pool(cfg, name="filter", max_size=MAX_WORKERS, autocommit=True)
    metrics.serve(cfg.metrics.filter_listen, "filter")
    try:
        gate = Gate(pool, cfg, reinject_to, helo=cfg.mail.hostname, timeout=REINJECT_TIMEOUT)
        content_filter = ContentFilter(listener, gate,
                                       max_message_bytes=cfg.mail.max_message_bytes)
        asyncio.run(_serve_until_signalled(content_filter))
    finally:
        pool.close()
    log.info("filter stopped")
