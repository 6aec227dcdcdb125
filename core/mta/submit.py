"""Handing a message to Postfix's submit service (submit.address) by SMTP.

The transaction is core/mta/smtpclient.py's: every recipient must be
accepted before DATA, and a refused one ends the transaction with nothing
queued, so the caller never has to explain a message that went to only some
of its recipients. A message counts as submitted only on Postfix's 250 to
the data; anything else is a SubmitError and Postfix has queued nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from e2a.core.mta import smtpclient
from e2a.core.net import addresses
from e2a.core.net.addresses import InetAddress

_QUEUED_AS = re.compile(r"queued as ([0-9A-Za-z]+)")


class SubmitError(Exception):
    """Postfix did not take the message (unreachable, or it refused); str()
    says why, with Postfix's answer when there was one."""


def queue_id(reply: str) -> str:
    """Postfix's queue id in its answer to the data ("250 2.0.0 Ok: queued as
    4Zx..."); "" when there is none."""
    found = _QUEUED_AS.search(reply)
    return found.group(1) if found else ""


def submit(address: str, mail_from: str, recipients: Sequence[str], message: bytes, *,
           helo: str, timeout: float) -> str:
    """Submit ``message`` (CRLF line ends) with this envelope; Postfix's
    answer to the data ("250 2.0.0 Ok: queued as ..."). ``timeout`` bounds
    each step (connect, every command)."""
    target = addresses.parse(address)
    if not isinstance(target, InetAddress):
        raise SubmitError(f"submit.address must be host:port, not {address}")
    if not recipients:
        raise SubmitError("no recipients")
    txn = smtpclient.Transaction(mail_from, recipients, message)
    try:
        code, text = smtpclient.send(target, txn, helo=helo, timeout=timeout)
    except smtpclient.Refused as exc:
        if exc.recipient:
            raise SubmitError(f"recipient {exc.recipient} refused: {exc.reply}") from None
        if exc.step == "MAIL FROM":
            raise SubmitError(f"sender refused: {exc.reply}") from None
        raise SubmitError(f"message refused: {exc.reply}") from None
    except (smtpclient.Unreachable, smtpclient.Unsupported) as exc:
        raise SubmitError(f"cannot reach Postfix at {address}: {exc}") from None
    return f"{code} {text}"
