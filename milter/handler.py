"""One milter conversation: collects the envelope and message, and at end of
data authenticates it, stores it for the agents among its recipients, and
takes those recipients away from Postfix."""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any, TypeVar

import Milter
from psycopg_pool import ConnectionPool

from e2a.core import addresses, bounces, inbound, mailauth, metrics, outbound, replyapproval, verp
from e2a.core.config import Config
from e2a.core.mailauth.verdict import Verdict
from e2a.core.store import agents as agent_store
from e2a.milter import forged, rebuild

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
        if len(self.headers) >= inbound.MAX_HEADER_FIELDS or size > inbound.MAX_HEADER_BYTES:
            return self._refuse_at_eom(
                f"header: over {inbound.MAX_HEADER_FIELDS} fields or one over "
                f"{inbound.MAX_HEADER_BYTES} bytes", "Message header exceeds fixed limit")
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
        recipients = [addresses.mailbox(r) for r in self.rcpts]
        leading_space = bool(self._protocol & Milter.P_HDR_LEADSPC)
        body = b"".join(self.body_parts)
        bounced = self._consume_bounces(recipients, body, leading_space, queue_id)
        bounced |= self._consume_replies(recipients, body, leading_space, queue_id)
        authserv_id = self.cfg.mail.authserv_id
        fakes = [i for i, (name, value) in enumerate(self.headers)
                 if forged.claims_ours(name, value, authserv_id)]
        # DKIM is checked on the bytes as they came; what we store and
        # attest to leaves out the headers forged in our name.
        received = rebuild.message(self.headers, body, leading_space)
        drop = set(fakes)
        kept = received if not drop else rebuild.message(
            [h for i, h in enumerate(self.headers) if i not in drop], body, leading_space)
        msg = inbound.parse(kept)
        wanted = {r for r in recipients if r not in bounced}
        # Our own path: the sender is known by its outbound row instead.
        identities = [] if self.own_path else outbound.sender_identities(self.mail_from, msg)
        with self.pool.connection() as conn:
            # Recipients and senders in one lookup: one statement per message.
            found = {a["email"]: a for a in agent_store.agents_by_emails(
                conn, [*wanted, *identities], inbound.thread_refs(msg))}
            sent_by = outbound.reinjected_sender(conn, self.mail_from, msg, verp.key(self.cfg)) \
                if self.own_path else None
        agents = [a for email, a in found.items() if email in wanted]
        senders = [found[i] for i in identities if i in found]
        if senders and not addresses.local_client(self.client_addr) \
                and self._leaves(recipients, bounced, agents):
            return self._foreign_agent_mail(queue_id)
        if agents and self._sent_by_held_agent(senders):
            # Its agent recipients get it when a person releases it: it comes
            # back through our reinjection service and is stored then.
            log.info("from an agent under review: left for the content filter",
                     extra={"queue_id": queue_id})
            self._delete_headers(fakes, queue_id)
            return Milter.CONTINUE
        if not agents:
            # Not ours: no checks, nothing stored; it passes on as it came
            # but for headers forged in our name.
            log.debug("no agent among %d recipient(s): passed on", len(recipients),
                      extra={"queue_id": queue_id})
            if bounced and not self._take(recipients, bounced):
                return Milter.DISCARD
            self._delete_headers(fakes, queue_id)
            return Milter.CONTINUE
        verdict = self._authenticate(received, msg)
        self.verdict_label = metrics.VERIFIED if verdict.aligned else metrics.UNVERIFIED
        delivered = inbound.prepend_header(kept, AR, verdict.header)
        envelope = inbound.Envelope(
            mail_from=self.mail_from, recipients=recipients, client_addr=self.client_addr,
            client_name=self.client_name, helo=self.helo, queue_id=queue_id,
            own_path=self.own_path, sent_by=sent_by)
        with metrics.timed("milter_store"):
            stored = inbound.store(self.pool, delivered, envelope, verdict,
                                   self.cfg.secrets.hmac_secret, agents=agents, msg=msg)
        metrics.inbound_messages.labels(
            verdict=self.verdict_label,
            result=metrics.STORED if stored.message_ids else metrics.DUPLICATE).inc()
        log.info("stored for %d agent(s)", len(stored.agent_recipients), extra={
            "queue_id": queue_id, "message_id": ",".join(stored.message_ids),
            "spf": verdict.spf, "dkim": verdict.dkim, "dmarc": verdict.dmarc,
            "verified": verdict.aligned, "forged_removed": len(fakes)})
        consumed = bounced | {r.lower() for r in stored.agent_recipients}
        if not self._take(recipients, consumed):
            return Milter.DISCARD
        self._delete_headers(fakes, queue_id)
        return Milter.CONTINUE

    def _sent_by_held_agent(self, senders: list[dict[str, Any]]) -> bool:
        """Whether an agent whose mail waits for a person sent this from this
        host (plain SMTP, sendmail), by any of its sender identities
        (``senders``: outbound.sending_agents). Such mail is held by the
        content filter after queueing; stored for agent recipients here, at
        its first pass, it would reach them before anyone approved it."""
        if self.own_path or not addresses.local_client(self.client_addr):
            return False
        return outbound.decide(outbound.Outgoing(
            self.mail_from, [], b"", senders=senders)) is outbound.Decision.HOLD

    def _leaves(self, recipients: list[str], bounced: set[str],
                agents: list[dict[str, Any]]) -> bool:
        """Whether some recipient is no agent of ours: the message would go
        on to the content filter and out."""
        ours = bounced | {a["email"] for a in agents}
        return any(r not in ours for r in recipients)

    def _foreign_agent_mail(self, queue_id: str) -> int:
        """An agent's address as sender, from a client that is not this
        host (SASL submission, a host of mynetworks, the internet), on its
        way out: refused. Agent mail leaves only from this host, where the
        content filter holds and signs it; passed on from elsewhere it would
        leave unheld and unsigned in the agent's name."""
        log.info("refused: agent sender from a client that is not this host",
                 extra={"queue_id": queue_id})
        self.setreply("550", "5.7.1", outbound.FOREIGN_AGENT)
        metrics.inbound_messages.labels(verdict=metrics.UNVERIFIED, result=metrics.REJECTED).inc()
        return Milter.REJECT

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

    def _consume_bounces(self, recipients: list[str], body: bytes, leading_space: bool,
                         queue_id: str) -> set[str]:
        """Mail for our VERP return paths (bounces of our outbound mail) goes
        to core.bounces, never to anyone; the addresses it took, lowercase."""
        if not bounces.verp_recipients(recipients):
            return set()
        raw = rebuild.message(self.headers, body, leading_space)
        return {r.lower() for r in bounces.consume(self.pool, raw, recipients,
                                                   verp.key(self.cfg), queue_id)}

    def _consume_replies(self, recipients: list[str], body: bytes, leading_space: bool,
                         queue_id: str) -> set[str]:
        """Mail for the reply addresses of owner notifications goes to
        core.replyapproval (approve or reject by reply), never to anyone; the
        addresses it took, lowercase."""
        if not replyapproval.reply_recipients(recipients):
            return set()
        raw = rebuild.message(self.headers, body, leading_space)
        # Authenticated only on demand: once the address's MAC says it is
        # one we gave out, so junk to made-up addresses costs no DNS.
        return {r.lower() for r in replyapproval.consume(
            self.pool, self.cfg, raw, lambda: self._authenticate(raw, inbound.parse(raw)),
            recipients, queue_id)}

    def _authenticate(self, received: bytes, msg: EmailMessage) -> Verdict:
        """SPF, DKIM and DMARC of ``received`` (the bytes as they came)."""
        who = mailauth.Identity(self.client_addr, self.helo, self.mail_from,
                                inbound.author_domains(msg))
        with metrics.timed("milter_auth"):
            return mailauth.authenticate(received, who, self.cfg.mail.authserv_id)

    def _delete_headers(self, positions: list[int], queue_id: str) -> None:
        if not positions:
            return
        for name, occurrence in forged.deletions(self.headers, positions):
            self.chgheader(name, occurrence, None)
        log.info("removed %d header(s) forged in our name", len(positions),
                 extra={"queue_id": queue_id})
