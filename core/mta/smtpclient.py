"""The one SMTP client that hands mail to Postfix: its submit service (what
the API sends, core/mta/submit.py) and its reinjection service (what the
content filter and release let go, core/mta/reinject.py).

One transaction per message, all or nothing: every recipient must be
accepted before DATA, because after DATA a server has one answer for all
recipients: delivering to the accepted subset would lose the refused ones
(answering 250) or deliver twice to the others (answering 4xx and being
retried). A refusal at any step ends the transaction; QUIT discards it, so
nothing is queued. The connection is kept between messages
(core/mta/smtppool: reused while idle, replaced when the server closed it
before the data went out, so a message is never sent twice). Commands are
built by hand: smtplib's address quoting would re-parse (and could rewrite)
addresses that must go on exactly as given. Each caller turns the failures
into its own error and wording.
"""

from __future__ import annotations

import smtplib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from e2a.core.mta import dsn as dsnparams
from e2a.core.mta import smtppool, xforward
from e2a.core.net.addresses import InetAddress


@dataclass(frozen=True)
class Transaction:
    mail_from: str  # "" for the null sender
    recipients: Sequence[str]
    data: bytes  # sent exactly as is (CRLF line ends)
    body_type: str = ""  # BODY= of the client's MAIL FROM (7BIT, 8BITMIME)
    smtputf8: bool = False
    xforward: Mapping[str, str] = field(default_factory=dict)
    # Delivery status notifications to ask for (core/mta/dsn.py); None: the
    # server's defaults (failures only).
    dsn: dsnparams.Dsn | None = None


class Refused(Exception):
    """The server answered ``code`` at ``step`` ("EHLO", "XFORWARD", "MAIL
    FROM", "RCPT TO:<a@b>", "DATA" for a refusal before the message, "end
    of data"); ``text`` is its reply on one line."""

    def __init__(self, step: str, code: int, text: str, *, recipient: str = "") -> None:
        super().__init__(f"{step} answered {code} {text}")
        self.step = step
        self.code = code
        self.text = text
        self.recipient = recipient  # for a refused RCPT TO

    @property
    def reply(self) -> str:
        return f"{self.code} {self.text}"


class Unsupported(Exception):
    """The server does not announce an extension the message needs (str()
    names it): no server of ours would take it as it is."""


class Unreachable(Exception):
    """No conversation, or it broke off (connection refused or lost, a
    timeout, a missing extension): ``connecting`` when it never began."""

    def __init__(self, reason: str, *, connecting: bool) -> None:
        super().__init__(reason)
        self.connecting = connecting


# A kept connection logs in again once its login is this old; well inside
# release.LOGIN_SECONDS (300 s), after which the reinjection service refuses it.
LOGIN_REFRESH = 60.0


def _pool(address: InetAddress, helo: str, timeout: float) -> smtppool.Pool:
    def connect() -> smtplib.SMTP:
        try:
            smtp = smtplib.SMTP(address.host, address.port, local_hostname=helo,
                                timeout=timeout)
        except (OSError, smtplib.SMTPException) as exc:
            raise Unreachable(str(exc) or type(exc).__name__, connecting=True) from None
        try:
            _expect(smtp.ehlo(), "EHLO", 250)
        except BaseException:
            smtp.close()
            raise
        return smtp

    return smtppool.shared(("smtp", address.host, address.port, helo, timeout), connect)


def send(address: InetAddress, txn: Transaction, *, helo: str, timeout: float,
         login: str = "") -> tuple[int, str]:
    """Send ``txn``; the server's final answer (code, one-line text), which
    names the queue id. ``timeout`` bounds each step (connect, every command).
    ``login``: given with XCLIENT LOGIN, what proves to the reinjection
    service that we are its client (core/outbound/release.reinject_login):
    on a new connection, and again on a kept one once its login is
    LOGIN_REFRESH old (the service refuses a login older than
    release.LOGIN_SECONDS, checked at each transaction). The connection is
    kept for the next message (core/mta/smtppool: reused while idle,
    replaced when the server closed it before the data went out)."""
    try:
        return _pool(address, helo, timeout).run(
            lambda session: _transact(session, txn, login))
    except smtplib.SMTPResponseException as exc:  # DATA refused before the message
        raise Refused("DATA", exc.smtp_code, one_line(exc.smtp_error)) from None
    except (OSError, smtplib.SMTPException, UnicodeError, smtppool.Stale) as exc:
        raise Unreachable(str(exc) or type(exc).__name__, connecting=False) from None


def _transact(session: smtppool.Session, txn: Transaction, login: str) -> tuple[int, str]:
    smtp = session.smtp
    # XFORWARD and SMTPUTF8 state end with each transaction: set them anew.
    smtp.command_encoding = "ascii"
    first = True
    # When this connection last gave its login (monotonic), kept on it.
    logged_in: float | None = getattr(smtp, "e2a_login_at", None)
    if login and (logged_in is None or time.monotonic() - logged_in > LOGIN_REFRESH):
        if "login" not in smtp.esmtp_features.get("xclient", "").lower().split():
            raise Unsupported("XCLIENT LOGIN")
        # XCLIENT starts the session afresh: a new greeting, then EHLO again.
        _expect_first(session, smtp.docmd("XCLIENT", f"LOGIN={login}"), "XCLIENT", first, 220)
        first = False
        _expect(smtp.ehlo(), "EHLO", 250)
        smtp.e2a_login_at = time.monotonic()  # type: ignore[attr-defined]
    if txn.xforward and smtp.has_extn("xforward"):
        supported = smtp.esmtp_features["xforward"].split()
        for args in xforward.commands(txn.xforward, supported):
            _expect_first(session, smtp.docmd("XFORWARD", args), "XFORWARD", first, 250)
            first = False
    params = []
    if txn.body_type and smtp.has_extn("8bitmime"):
        params.append(f"BODY={txn.body_type}")
    if txn.smtputf8:
        if not smtp.has_extn("smtputf8"):
            raise Unsupported("SMTPUTF8")
        params.append("SMTPUTF8")
        smtp.command_encoding = "utf-8"
    if smtp.has_extn("size"):
        params.append(f"SIZE={len(txn.data)}")
    # Without DSN announced the parameters would be refused; the message
    # still goes, with the server's default notices (failures).
    dsn = txn.dsn if txn.dsn is not None and smtp.has_extn("dsn") else None
    if dsn is not None:
        params.extend((f"RET={dsn.ret}", f"ENVID={dsnparams.xtext(dsn.envid)}"))
    _expect_first(session, smtp.docmd(
        "MAIL", f"FROM:<{txn.mail_from}>{''.join(' ' + p for p in params)}"), "MAIL FROM",
        first, 250)
    for rcpt in txn.recipients:
        _expect(smtp.docmd("RCPT", f"TO:<{rcpt}>{_rcpt_params(dsn, rcpt)}"),
                f"RCPT TO:<{rcpt}>", 250, 251, recipient=rcpt)
    session.data_started = True
    code, reply = smtp.data(txn.data)
    return code, _expect((code, reply), "end of data", 250)


def _rcpt_params(dsn: dsnparams.Dsn | None, rcpt: str) -> str:
    if dsn is None:
        return ""
    # ORCPT names the address as we asked for it, so that the report can be
    # matched to the message's recipient after any rewriting; rfc822 is
    # for ASCII addresses only.
    orcpt = f" ORCPT=rfc822;{dsnparams.xtext(rcpt)}" if rcpt.isascii() else ""
    return f" NOTIFY={dsn.notify}{orcpt}"


def _expect_first(session: smtppool.Session, answer: tuple[int, bytes], step: str,
                  first: bool, code: int) -> str:
    """The first command on a reused connection: a 421 there is the server's
    goodbye to an idle connection, not a verdict on this message."""
    if first and session.reused and answer[0] == 421:
        raise smtppool.Stale(f"{step} answered {answer[0]} {one_line(answer[1])}")
    return _expect(answer, step, code)


def _expect(answer: tuple[int, bytes], step: str, *codes: int, recipient: str = "") -> str:
    code, reply = answer
    text = one_line(reply)
    if code not in codes:
        raise Refused(step, code, text, recipient=recipient)
    return text


def one_line(reply: bytes | str) -> str:
    """A server reply for a log line: decoded, every run of whitespace
    (the line breaks of a multi-line reply too) one space."""
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    return " ".join(reply.split())
