"""Hand a message back to Postfix's reinjection service: all or nothing.

Every recipient must be accepted before the data is sent. A refused
recipient aborts the whole transaction (nothing is queued, the caller
answers 4xx and Postfix retries the message later): after DATA an SMTP
server has one answer for all recipients, so delivering to the accepted
subset would either lose the refused ones (answering 250) or deliver twice
to the others (answering 4xx, and Postfix retrying them all). The
reinjection service accepts every recipient from loopback by design, so a
refusal there is a fault an operator must see, not a verdict on the mail.

A 5xx to the message (MAIL FROM, DATA, end of data) is permanent
(ReinjectError.permanent): the message as it is will never be taken (552,
grown past message_size_limit by our DKIM signature, is the one seen in
practice), so retrying it for days only delays the bounce that says why.
Everything else (4xx, no connection, a timeout, a refused recipient: the
operator's fault, above) is transient.
"""

from __future__ import annotations

import smtplib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from e2a.core import smtppool
from e2a.core.addresses import InetAddress
from e2a.policy import xforward


class ReinjectError(Exception):
    """The message was not taken; str() is one line for the log: the
    server's reply or the network error, never message content.
    ``permanent``: refused for good, the same message would be refused again;
    ``reply``: the refusing answer ("552 5.3.4 ..."), "" when there was none."""

    def __init__(self, reason: str, *, permanent: bool = False, reply: str = "") -> None:
        super().__init__(reason)
        self.permanent = permanent
        self.reply = reply


@dataclass(frozen=True)
class Transaction:
    mail_from: str  # "" for the null sender
    recipients: Sequence[str]
    data: bytes  # sent exactly as is
    body_type: str = ""  # BODY= of the client's MAIL FROM (7BIT, 8BITMIME)
    smtputf8: bool = False
    xforward: Mapping[str, str] = field(default_factory=dict)


# A kept connection logs in again once its login is this old; well inside
# release.LOGIN_SECONDS (300 s), after which the service refuses it.
LOGIN_REFRESH = 60.0


def _pool(address: InetAddress, helo: str, timeout: float) -> smtppool.Pool:
    def connect() -> smtplib.SMTP:
        try:
            smtp = smtplib.SMTP(address.host, address.port, local_hostname=helo,
                                timeout=timeout)
        except (OSError, smtplib.SMTPException) as exc:
            raise ReinjectError(f"cannot connect to {address}: {exc}") from None
        try:
            _expect(smtp.ehlo(), "EHLO", 250)
        except BaseException:
            smtp.close()
            raise
        return smtp

    return smtppool.shared(("reinject", address.host, address.port, helo, timeout), connect)


def reinject(address: InetAddress, txn: Transaction, *, helo: str, timeout: float,
             login: str = "") -> str:
    """Send ``txn``; return the server's final reply (it names the new queue id).
    ``login``: what proves to the reinjection service that we are its
    client (core/release.reinject_login), given with XCLIENT LOGIN on a new
    connection and again on a kept one once its login is LOGIN_REFRESH old
    (the service refuses a login older than release.LOGIN_SECONDS, checked
    at each transaction). The connection is kept for the next message
    (core/smtppool)."""
    try:
        return _pool(address, helo, timeout).run(
            lambda session: _send(session, txn, login))
    except smtplib.SMTPResponseException as exc:
        raise ReinjectError(f"{address}: answered {exc.smtp_code} "
                            f"{_text(exc.smtp_error)}",
                            permanent=_permanent(exc.smtp_code),
                            reply=f"{exc.smtp_code} {_text(exc.smtp_error)}") from None
    except (OSError, smtplib.SMTPException, UnicodeError, smtppool.Stale) as exc:
        raise ReinjectError(f"{address}: {exc}") from None


def _send(session: smtppool.Session, txn: Transaction, login: str) -> str:
    smtp = session.smtp
    # XFORWARD and SMTPUTF8 state end with each transaction: set them anew.
    smtp.command_encoding = "ascii"
    first = True
    # When this connection last gave its login (monotonic), kept on it.
    logged_in: float | None = getattr(smtp, "e2a_login_at", None)
    if login and (logged_in is None or time.monotonic() - logged_in > LOGIN_REFRESH):
        if "login" not in smtp.esmtp_features.get("xclient", "").lower().split():
            raise ReinjectError("the reinjection service does not announce XCLIENT LOGIN")
        # XCLIENT starts the session afresh: a new greeting, then EHLO again.
        _expect_first(session, smtp.docmd("XCLIENT", f"LOGIN={login}"), "XCLIENT", first,
                      220)
        first = False
        _expect(smtp.ehlo(), "EHLO", 250)
        smtp.e2a_login_at = time.monotonic()  # type: ignore[attr-defined]
    if txn.xforward and smtp.has_extn("xforward"):
        supported = smtp.esmtp_features["xforward"].split()
        for args in xforward.commands(txn.xforward, supported):
            _expect_first(session, smtp.docmd("XFORWARD", args), "XFORWARD", first)
            first = False
    params = []
    if txn.body_type and smtp.has_extn("8bitmime"):
        params.append(f"BODY={txn.body_type}")
    if txn.smtputf8:
        if not smtp.has_extn("smtputf8"):
            raise ReinjectError("the reinjection service does not announce SMTPUTF8")
        params.append("SMTPUTF8")
        smtp.command_encoding = "utf-8"
    if smtp.has_extn("size"):
        params.append(f"SIZE={len(txn.data)}")
    # Commands built by hand: smtplib's own address quoting would re-parse
    # (and could rewrite) the addresses; they go on exactly as received.
    _expect_first(session, smtp.docmd(
        "MAIL", f"FROM:<{txn.mail_from}>{''.join(' ' + p for p in params)}"), "MAIL FROM", first)
    for rcpt in txn.recipients:
        _expect(smtp.docmd("RCPT", f"TO:<{rcpt}>"), f"RCPT TO:<{rcpt}>", 250, 251)
    session.data_started = True
    code, reply = smtp.data(txn.data)
    return _expect((code, reply), "end of data", 250)


def _expect_first(session: smtppool.Session, answer: tuple[int, bytes], step: str,
                  first: bool, code: int = 250) -> str:
    """The first command on a reused connection: a 421 there is the server's
    goodbye to an idle connection, not a verdict on this message."""
    if first and session.reused and answer[0] == 421:
        raise smtppool.Stale(f"{step} answered {answer[0]} {_text(answer[1])}")
    return _expect(answer, step, code)


def _expect(answer: tuple[int, bytes], step: str, *codes: int) -> str:
    code, reply = answer
    text = _text(reply)
    if code not in codes:
        raise ReinjectError(f"{step} answered {code} {text}",
                            permanent=_permanent(code) and not step.startswith("RCPT"),
                            reply=f"{code} {text}")
    return text


def _permanent(code: int) -> bool:
    return 500 <= code <= 599


def _text(reply: bytes | str) -> str:
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    return " ".join(reply.split())
