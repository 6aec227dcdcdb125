"""One milter conversation: collects the envelope and message (with the size
and header limits), and at end of data hands them to core.inbound.route,
which authenticates and stores it for its consumers; the answer comes back
as milter actions: the consumed recipients taken away from Postfix, forged
headers deleted, a refusal, or DISCARD when nobody is left."""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import Callable
from typing import Any, TypeVar

import Milter
from psycopg_pool import ConnectionPool

from e2a.core.config import Config
from e2a.core.inbound import forged, inbox, route
from e2a.core.mail import headers, rebuild
from e2a.core.mailauth.verdict import Verdict
from e2a.core.net import addresses
from e2a.core.runtime import metrics

log = logging.getLogger("e2a.milter")

AR = "Authentication-Results"

Callback = TypeVar("Callback", bound=Callable[..., int])


def _answered(callback: Callback) -> Callback:
    """No exception leaves a callback: it is logged with the queue id and the
    client hears 451 and keeps the message (libmilter's own handling would
    tempfail too, but with a bare traceback on stderr)."""

    @functools.wraps(callback)
    def guarded(self: InboundMilter, *args: Any) -> int:
        try:
            return callback(self, *args)
        except Exception:
            log.exception("milter %s failed, answering 451", callback.__name__,
                          extra={"queue_id": self.queue_id()})
            self.tempfail()
            return Milter.TEMPFAIL

    return guarded  # type: ignore[return-value]


def _noreply_guarded(callback: Callback) -> Callback:
    """For the stages that do not answer (@noreply): an exception is logged
    and remembered, the stage answers CONTINUE (all it may), and the next
    stage that answers says 451."""

    @functools.wraps(callback)
    def guarded(self: InboundMilter, *args: Any) -> int:
        if self.failed:
            return Milter.CONTINUE  # the message gets 451 anyway: no more work on it
        try:
            return callback(self, *args)
        except Exception:
            log.exception("milter %s failed, answering 451", callback.__name__,
                          extra={"queue_id": self.queue_id()})
            if callback.__name__ in ("connect", "hello"):
                self.connection_failed = True
            else:
                self.failed = True
            return Milter.CONTINUE

    return guarded  # type: ignore[return-value]


@Milter.header_leading_space
class InboundMilter(Milter.Base):
    # Set once by the daemon before libmilter starts its threads.
    cfg: Config
    pool: ConnectionPool

    def __init__(self) -> None:
        self.client_addr = ""
        self.client_name = ""
        self.helo = ""
        self.own_path = False
        self.connection_failed = False  # connect or hello raised: every MAIL gets 451
        self._reset()

    def _reset(self) -> None:
        self.mail_from = ""
        self.rcpts: list[str] = []  # as Postfix gave them, for delrcpt
        self.headers: list[tuple[bytes, bytes]] = []
        self.body_parts: list[bytes] = []
        self.size = 0
        self.verdict_label = metrics.UNVERIFIED  # until authenticated
        self.refused: str | None = None  # the 552 text eom answers (over a limit)
        self.failed = False  # a no-reply stage raised: eom answers 451

    def queue_id(self) -> str:
        """Postfix's queue id ({i}: from the first accepted RCPT on)."""
        try:
            return self.getsymval("i") or ""
        except Exception:  # no context any more (connection gone)
            return ""

    def tempfail(self) -> None:
        try:
            self.setreply("451", "4.3.0", "Temporary failure, please try again later")
        except Exception:  # not every stage takes a reply; TEMPFAIL still applies
            log.debug("no reply text at this stage")

    # -- SMTP stages -----------------------------------------------------

    # Only envfrom, envrcpt and eom answer. Every other stage is @noreply
    # (negotiated: Postfix sends the event and goes on without waiting): a
    # message's dozen or so headers and its body chunks each cost a round
    # trip and a libmilter thread handoff otherwise. What those stages would
    # have refused (a header or message over the limit) is refused at end of
    # data instead: the client hears the same 552 after its DATA either way,
    # since SMTP answers a message only once it is all sent. An exception in
    # one of them tempfails at the next stage that answers.

    @Milter.noreply
    @_noreply_guarded
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        self.client_name = hostname or ""
        # libmilter gives (ip, port[, flow, scope]) for TCP clients; a local
        # client has no address SPF could check.
        if family in (socket.AF_INET, socket.AF_INET6):
            addr = hostaddr[0] if isinstance(hostaddr, tuple) else hostaddr
            self.client_addr = str(addr or "")
        # Postfix names the smtpd service in {daemon_name}; only our own
        # reinjection service carries this name, and a sender cannot set it.
        # Read here: at end of data Postfix's cleanup reports its own name.
        self.own_path = self.getsymval("{daemon_name}") == self.cfg.milter.own_daemon_name
        return Milter.CONTINUE

    @Milter.noreply
    @_noreply_guarded
    def hello(self, heloname: str) -> int:
        self.helo = heloname or ""
        return Milter.CONTINUE

    @_answered
    def envfrom(self, mail_from: str, *params: str) -> int:
        if self.connection_failed:  # connect or hello failed: own_path unknown
            self.tempfail()
            return Milter.TEMPFAIL
        self._reset()
        self.mail_from = addresses.mailbox(mail_from)
        declared = Milter.param2dict(params).get("SIZE") or ""
        # isdigit() alone takes "²", which int() refuses.
        if declared.isascii() and declared.isdigit() \
                and int(declared) > self.cfg.mail.max_message_bytes:
            return self._too_big(f"declared SIZE={declared} over "
                                 f"{self.cfg.mail.max_message_bytes} bytes")
        return Milter.CONTINUE

    @_answered
    def envrcpt(self, to: str, *params: str) -> int:
        if len(self.rcpts) >= self.cfg.mail.max_recipients:
            # RFC 5321 4.5.3.1.10: the client sends the rest in another transaction.
            log.info("recipient refused: over %d recipients", self.cfg.mail.max_recipients,
                     extra={"queue_id": self.queue_id()})
            self.setreply("452", "4.5.3", "Too many recipients")
            return Milter.TEMPFAIL
        self.rcpts.append(to)
        return Milter.CONTINUE

    @Milter.noreply
    @_noreply_guarded
    @Milter.decode("bytes")
    def header(self, name: Any, value: Any) -> int:
        if self.refused is not None:
            return Milter.CONTINUE
        raw_name = name.encode("ascii", "surrogateescape") if isinstance(name, str) else name
        size = rebuild.line_size(raw_name, value)
        if len(self.headers) >= headers.MAX_HEADER_FIELDS or size > headers.MAX_HEADER_BYTES:
            return self._refuse_at_eom(
                f"header: over {headers.MAX_HEADER_FIELDS} fields or one over "
                f"{headers.MAX_HEADER_BYTES} bytes", "Message header exceeds fixed limit")
        self.headers.append((raw_name, value))
        return self._grow(size)

    @Milter.noreply
    @_noreply_guarded
    def eoh(self) -> int:
        return self._grow(2)  # the empty line before the body

    @Milter.noreply
    @_noreply_guarded
    def body(self, chunk: bytes) -> int:
        if self.refused is None:
            self.body_parts.append(chunk)
            self._grow(len(chunk))
        return Milter.CONTINUE

    def _grow(self, n: int) -> int:
        self.size += n
        if self.size > self.cfg.mail.max_message_bytes and self.refused is None:
            return self._refuse_at_eom(
                f"message over {self.cfg.mail.max_message_bytes} bytes")
        return Milter.CONTINUE

    def _refuse_at_eom(self, what: str,
                       reply: str = "Message size exceeds fixed limit") -> int:
        log.info("refused: %s", what, extra={"queue_id": self.queue_id()})
        self.refused = reply
        # Nothing of it is needed any more; the rest is not kept either.
        self.headers, self.body_parts = [], []
        return Milter.CONTINUE

    def _too_big(self, what: str, reply: str = "Message size exceeds fixed limit") -> int:
        log.info("refused: %s", what, extra={"queue_id": self.queue_id()})
        return self._reject(reply)

    def _reject(self, reply: str) -> int:
        self.setreply("552", "5.3.4", reply)
        metrics.inbound_messages.labels(verdict=metrics.UNVERIFIED, result=metrics.REJECTED).inc()
        self._reset()  # nothing of it is needed any more
        return Milter.REJECT

    @_answered
    def eom(self) -> int:
        queue_id = self.queue_id()
        if self.failed:
            metrics.inbound_messages.labels(verdict=self.verdict_label,
                                            result=metrics.TEMPFAIL).inc()
            self._reset()
            self.tempfail()
            return Milter.TEMPFAIL
        if self.refused is not None:
            return self._reject(self.refused)
        try:
            return self._deliver(queue_id)
        except Exception:
            # Whatever went wrong, the sender keeps the message and retries.
            log.exception("inbound failed, answering 451", extra={"queue_id": queue_id})
            metrics.inbound_messages.labels(verdict=self.verdict_label,
                                            result=metrics.TEMPFAIL).inc()
            self.tempfail()
            return Milter.TEMPFAIL
        finally:
            self._reset()

    @_answered
    def abort(self) -> int:
        self._reset()
        return Milter.CONTINUE

    # -- end of data -----------------------------------------------------

    def _deliver(self, queue_id: str) -> int:
        """The message to core.inbound.route, its answer back to libmilter:
        the recipients it consumed taken away (DISCARD when none are left),
        the headers forged in our name deleted."""
        recipients = [addresses.mailbox(r) for r in self.rcpts]
        envelope = inbox.Envelope(
            mail_from=self.mail_from, recipients=recipients, client_addr=self.client_addr,
            client_name=self.client_name, helo=self.helo, queue_id=queue_id,
            own_path=self.own_path)
        received = route.Received(envelope, self.headers, b"".join(self.body_parts),
                                  bool(self._protocol & Milter.P_HDR_LEADSPC))
        routed = route.consume(self.pool, self.cfg, received, self._heard_verdict)
        if routed.refusal:
            self.setreply("550", "5.7.1", routed.refusal)
            metrics.inbound_messages.labels(verdict=metrics.UNVERIFIED,
                                            result=metrics.REJECTED).inc()
            return Milter.REJECT
        if routed.consumed and not self._take(recipients, routed.consumed):
            return Milter.DISCARD
        self._delete_headers(routed.forged, queue_id)
        return Milter.CONTINUE

    def _heard_verdict(self, verdict: Verdict) -> None:
        self.verdict_label = metrics.VERIFIED if verdict.aligned else metrics.UNVERIFIED

    def _take(self, recipients: list[str], consumed: set[str]) -> int:
        """Take the ``consumed`` recipients (lowercase) away from Postfix;
        return how many are left for it to deliver."""
        remaining = 0
        for original_rcpt, addr in zip(self.rcpts, recipients, strict=True):
            if addr in consumed:
                self.delrcpt(original_rcpt)
            else:
                remaining += 1
        return remaining

    def _delete_headers(self, positions: list[int], queue_id: str) -> None:
        if not positions:
            return
        for name, occurrence in forged.deletions(self.headers, positions):
            self.chgheader(name, occurrence, None)
        log.info("removed %d header(s) forged in our name", len(positions),
                 extra={"queue_id": queue_id})
