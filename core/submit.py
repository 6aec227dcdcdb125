"""Handing a message to Postfix's submit service (submit.address) by SMTP.

One SMTP transaction per message, on a connection kept between messages
(core/smtppool: reused while idle, replaced when the server closed it before
the data went out). Every recipient must be accepted before
DATA: a refused one ends the transaction with nothing queued, so the caller
never has to explain a message that went to only some of its recipients. A
message counts as submitted only on Postfix's 250 to the data; anything else
is a SubmitError and Postfix has queued nothing.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
from collections.abc import Sequence

from e2a.core import addresses, smtppool
from e2a.core.addresses import InetAddress

_QUEUED_AS = re.compile(r"queued as ([0-9A-Za-z]+)")


class SubmitError(Exception):
    """Postfix did not take the message (unreachable, or it refused); str()
    says why, with Postfix's answer when there was one."""


def queue_id(reply: str) -> str:
    """Postfix's queue id in its answer to the data ("250 2.0.0 Ok: queued as
    4Zx..."); "" when there is none."""
    found = _QUEUED_AS.search(reply)
    return found.group(1) if found else ""


def _answer(code: int, text: bytes) -> str:
    return f"{code} {text.decode('utf-8', 'replace')}"


def _pool(target: InetAddress, helo: str, timeout: float) -> smtppool.Pool:
    def connect() -> smtplib.SMTP:
        client = smtplib.SMTP(target.host, target.port, local_hostname=helo, timeout=timeout)
        client.ehlo_or_helo_if_needed()
        return client

    return smtppool.shared(("submit", target.host, target.port, helo, timeout), connect)


def submit(address: str, mail_from: str, recipients: Sequence[str], message: bytes, *,
           helo: str, timeout: float) -> str:
    """Submit ``message`` (CRLF line ends) with this envelope; Postfix's
    answer to the data ("250 2.0.0 Ok: queued as ..."). ``timeout`` bounds
    each step (connect, every command). The connection is kept for the next
    message (core/smtppool)."""
    target = addresses.parse(address)
    if not isinstance(target, InetAddress):
        raise SubmitError(f"submit.address must be host:port, not {address}")
    if not recipients:
        raise SubmitError("no recipients")

    def transaction(session: smtppool.Session) -> str:
        client = session.smtp
        options = [f"SIZE={len(message)}"] if client.has_extn("size") else []
        code, text = client.mail(mail_from, options)
        if code == 421 and session.reused:
            raise smtppool.Stale(_answer(code, text))
        if code != 250:
            raise SubmitError(f"sender refused: {_answer(code, text)}")
        for rcpt in recipients:
            code, text = client.rcpt(rcpt)
            if code not in (250, 251):
                with contextlib.suppress(OSError, smtplib.SMTPException):
                    client.rset()  # nothing queued; the answer to it does not matter
                raise SubmitError(f"recipient {rcpt} refused: {_answer(code, text)}")
        session.data_started = True
        code, text = client.data(message)
        if code != 250:
            raise SubmitError(f"message refused: {_answer(code, text)}")
        return _answer(code, text)

    try:
        return _pool(target, helo, timeout).run(transaction)
    except smtplib.SMTPResponseException as exc:  # DATA refused before the message
        raise SubmitError(f"message refused: {_answer(exc.smtp_code, exc.smtp_error)}") \
            from None
    except (OSError, smtplib.SMTPException, smtppool.Stale) as exc:
        raise SubmitError(f"cannot reach Postfix at {address}: "
                          f"{exc or type(exc).__name__}") from None
