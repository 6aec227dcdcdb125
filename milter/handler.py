"""One milter conversation: collects the envelope and message, and at end of
data authenticates it, stores it for the agents among its recipients, and
takes those recipients away from Postfix."""

from __future__ import annotations

import logging
from typing import Any

import Milter
from psycopg_pool import ConnectionPool

from e2a.core import inbound, mailauth
from e2a.core.config import Config
from e2a.core.store import agents as agent_store
from e2a.milter import rebuild

log = logging.getLogger("e2a.milter")

AR = "Authentication-Results"


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
        self._reset()

    def _reset(self) -> None:
        self.mail_from = ""
        self.rcpts: list[str] = []  # as Postfix gave them, for delrcpt
        self.headers: list[tuple[bytes, bytes]] = []
        self.body_parts: list[bytes] = []
        self.size = 0

    # -- SMTP stages -----------------------------------------------------

    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        self.client_name = hostname or ""
        # libmilter gives (ip, port[, flow, scope]); unix-socket clients give none.
        if isinstance(hostaddr, tuple) and hostaddr:
            self.client_addr = str(hostaddr[0])
        else:
            self.client_addr = hostaddr if isinstance(hostaddr, str) else ""
        # Postfix names the smtpd service in {daemon_name}; only our own
        # reinjection service carries this name, and a sender cannot set it.
        self.own_path = self.getsymval("{daemon_name}") == self.cfg.milter.own_daemon_name
        return Milter.CONTINUE

    def hello(self, heloname: str) -> int:
        self.helo = heloname or ""
        return Milter.CONTINUE

    def envfrom(self, mail_from: str, *params: str) -> int:
        self._reset()
        self.mail_from = inbound.addr_spec(mail_from)
        return Milter.CONTINUE

    def envrcpt(self, to: str, *params: str) -> int:
        if len(self.rcpts) >= self.cfg.mail.max_recipients:
            self.setreply("452", "4.5.3", "Too many recipients")
            return Milter.TEMPFAIL
        self.rcpts.append(to)
        return Milter.CONTINUE

    @Milter.decode("bytes")
    def header(self, name: Any, value: Any) -> int:
        raw_name = name.encode("ascii", "surrogateescape") if isinstance(name, str) else name
        self.headers.append((raw_name, value))
        return self._grow(len(raw_name) + len(value) + 3)

    def body(self, chunk: bytes) -> int:
        self.body_parts.append(chunk)
        return self._grow(len(chunk))

    def _grow(self, n: int) -> int:
        self.size += n
        if self.size > self.cfg.mail.max_message_bytes:
            self.setreply("552", "5.3.4", "Message size exceeds fixed limit")
            return Milter.REJECT
        return Milter.CONTINUE

    def eom(self) -> int:
        queue_id = self.getsymval("i") or ""
        try:
            return self._deliver(queue_id)
        except Exception:
            # Whatever went wrong, the sender keeps the message and retries.
            log.exception("inbound failed, answering 451", extra={"queue_id": queue_id})
            self.setreply("451", "4.3.0", "Temporary failure, please try again later")
            return Milter.TEMPFAIL
        finally:
            self._reset()

    def abort(self) -> int:
        self._reset()
        return Milter.CONTINUE

    # -- end of data -----------------------------------------------------

    def _deliver(self, queue_id: str) -> int:
        recipients = [inbound.addr_spec(r) for r in self.rcpts]
        with self.pool.connection() as conn:
            agents = agent_store.agents_by_emails(conn, recipients)
        if not agents:
            return Milter.CONTINUE  # not ours: passes on untouched
        ours = self.cfg.mail.authserv_id.lower()
        kept = [(n, v) for n, v in self.headers if not _claims(n, v, ours)]
        original = rebuild.message(kept, b"".join(self.body_parts),
                                   bool(self._protocol & Milter.P_HDR_LEADSPC))
        msg = inbound.parse(original)
        who = mailauth.Identity(self.client_addr, self.helo, self.mail_from,
                                inbound.from_address(msg).rpartition("@")[2])
        verdict = mailauth.authenticate(original, who, self.cfg.mail.authserv_id)
        delivered = inbound.prepend_header(original, AR, verdict.header)
        envelope = inbound.Envelope(
            mail_from=self.mail_from, recipients=recipients, client_addr=self.client_addr,
            client_name=self.client_name, helo=self.helo, queue_id=queue_id,
            own_path=self.own_path)
        stored = inbound.store(self.pool, delivered, envelope, verdict,
                               self.cfg.secrets.hmac_secret)
        log.info("stored for %d agent(s)", len(stored.agent_recipients), extra={
            "queue_id": queue_id, "message_ids": ",".join(stored.message_ids),
            "spf": verdict.spf, "dkim": verdict.dkim, "dmarc": verdict.dmarc})
        consumed = {r.lower() for r in stored.agent_recipients}
        remaining = 0
        for original_rcpt, addr in zip(self.rcpts, recipients, strict=True):
            if addr.lower() in consumed:
                self.delrcpt(original_rcpt)
            else:
                remaining += 1
        return Milter.CONTINUE if remaining else Milter.DISCARD


def _claims(name: bytes, value: bytes, authserv_id: str) -> bool:
    """An Authentication-Results header that pretends to be ours (forged)."""
    if name.strip().lower() != AR.lower().encode():
        return False
    claimed = value.split(b";", 1)[0].strip().decode("utf-8", "replace")
    return claimed.split()[0].lower() == authserv_id if claimed else False
