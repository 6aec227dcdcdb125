"""Hand a message back to Postfix's reinjection service: all or nothing.

The transaction itself is core/mta/smtpclient.py's (every recipient
accepted before the data, or nothing queued). The reinjection service
accepts every recipient from loopback by design, so a refused recipient
there is a fault an operator must see, not a verdict on the mail.

A 5xx to the message (MAIL FROM, DATA, end of data) is permanent
(ReinjectError.permanent): the message as it is will never be taken (552,
grown past message_size_limit by our DKIM signature, is the one seen in
practice), so retrying it for days only delays the bounce that says why.
Everything else (4xx, no connection, a timeout, a refused recipient: the
operator's fault, above) is transient.
"""

from __future__ import annotations

from e2a.core.mta import smtpclient
from e2a.core.mta.smtpclient import Transaction
from e2a.core.net.addresses import InetAddress

__all__ = ["ReinjectError", "Transaction", "reinject"]


class ReinjectError(Exception):
    """The message was not taken; str() is one line for the log: the
    server's reply or the network error, never message content.
    ``permanent``: refused for good, the same message would be refused again;
    ``reply``: the refusing answer ("552 5.3.4 ..."), "" when there was none."""

    def __init__(self, reason: str, *, permanent: bool = False, reply: str = "") -> None:
        super().__init__(reason)
        self.permanent = permanent
        self.reply = reply


def reinject(address: InetAddress, txn: Transaction, *, helo: str, timeout: float,
             login: str = "") -> str:
    """Send ``txn``; return the server's final reply (it names the new queue id).
    ``login``: what proves to the reinjection service that we are its
    client (core/outbound/release.reinject_login), given with XCLIENT LOGIN."""
    try:
        _code, text = smtpclient.send(address, txn, helo=helo, timeout=timeout, login=login)
    except smtpclient.Refused as exc:
        permanent = _permanent(exc.code) and not exc.step.startswith("RCPT")
        if exc.step == "DATA":  # refused before the message was sent
            raise ReinjectError(f"{address}: answered {exc.reply}", permanent=permanent,
                                reply=exc.reply) from None
        raise ReinjectError(str(exc), permanent=permanent, reply=exc.reply) from None
    except smtpclient.Unsupported as exc:
        raise ReinjectError(f"the reinjection service does not announce {exc}") from None
    except smtpclient.Unreachable as exc:
        if exc.connecting:
            raise ReinjectError(f"cannot connect to {address}: {exc}") from None
        raise ReinjectError(f"{address}: {exc}") from None
    return text


def _permanent(code: int) -> bool:
    return 500 <= code <= 599
