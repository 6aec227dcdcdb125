"""Delivery status notifications (RFC 3464): what we ask of Postfix, and
reading what it sends back.

Asking: every agent message leaves Postfix's reinjection service with
``RET=HDRS ENVID=<message id>`` and, per recipient, ``NOTIFY=SUCCESS,DELAY,
FAILURE ORCPT=rfc822;<address>`` (core/mta/smtpclient sends them when the
server announces DSN). Postfix then reports every outcome to the VERP return
path: ``relayed`` when the remote server took it but does not speak DSN,
``delivered`` when it does (or Postfix delivered it itself), ``delayed``
once the message waited delay_warning_time, ``failed`` when it gave up.

Reading: a DSN comes from whoever claims to send one, so the parser is
bounded (bytes read, blocks, field lengths) and an unreadable one is no
report, never an exception.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email import policy
from email.message import Message
from email.parser import BytesParser

log = logging.getLogger("e2a.dsn")

NOTIFY = "SUCCESS,DELAY,FAILURE"
RET = "HDRS"  # the headers come back, never the body a person wrote

# A DSN is small; what is past this (a returned message, usually) is not read.
MAX_BYTES = 1 << 20
# More blocks than a message can have recipients (50) plus slack; the rest is ignored.
MAX_REPORTS = 200
# Each field as shown to API clients (the remote reply can be long).
MAX_FIELD = 1000

# Action -> our per-recipient status.
DELIVERED = "delivered"
DEFERRED = "deferred"
BOUNCED = "bounced"
_STATUS = {"delivered": DELIVERED, "relayed": DELIVERED, "delayed": DEFERRED,
           "failed": BOUNCED}


@dataclass(frozen=True)
class Dsn:
    """What to ask of the next hop for one message (smtpclient.Transaction.dsn)."""

    envid: str  # our message id, Original-Envelope-Id in the reports
    notify: str = NOTIFY
    ret: str = RET


@dataclass(frozen=True)
class Report:
    """One per-recipient block of a DSN."""

    recipient: str  # Final-Recipient, the address only
    action: str  # failed | delayed | delivered | relayed | expanded (lowercase)
    status: str  # the enhanced status code, e.g. 5.1.1
    diagnostic: str  # Diagnostic-Code without its type, e.g. "550 5.1.1 ..."
    original_recipient: str = ""  # Original-Recipient (our ORCPT), the address only
    remote_mta: str = ""  # Remote-MTA without its type
    envid: str = ""  # the message block's Original-Envelope-Id

    @property
    def outcome(self) -> str:
        """delivered | deferred | bounced, "" for an action that says neither."""
        return _STATUS.get(self.action, "")

    @property
    def bounce_type(self) -> str:
        """For a failure: permanent (5.x.x), transient (4.x.x: Postfix gave up
        after retrying), undetermined."""
        if self.outcome != BOUNCED:
            return ""
        return {"5": "permanent", "4": "transient"}.get(self.status[:1], "undetermined")

    def address(self) -> str:
        """The address this block is about, lowercase: Final-Recipient, the
        one the outcome happened to (Original-Recipient only without it: a
        block naming two addresses must not count for the one it was not
        about)."""
        return (self.recipient or self.original_recipient).lower()


def xtext(value: str) -> str:
    """RFC 3461 xtext: '+', '=' and anything outside '!'..'~' as +XX."""
    return "".join(c if "!" <= c <= "~" and c not in "+=" else
                   "".join(f"+{b:02X}" for b in c.encode()) for c in value)


def unxtext(value: str) -> str:
    out = bytearray()
    i = 0
    while i < len(value):
        if value[i] == "+" and _hex(value[i + 1:i + 3]):
            out.append(int(value[i + 1:i + 3], 16))
            i += 3
        else:
            out.extend(value[i].encode())
            i += 1
    return out.decode("utf-8", "replace")


def _hex(pair: str) -> bool:
    return len(pair) == 2 and all(c in "0123456789ABCDEFabcdef" for c in pair)


def reports(raw: bytes) -> list[Report]:
    """The per-recipient reports of a DSN; [] when ``raw`` is not one."""
    try:
        msg = BytesParser(policy=policy.compat32).parsebytes(raw[:MAX_BYTES])
        if msg.get_content_type() != "multipart/report":
            return []
        found: list[Report] = []
        for part in msg.get_payload() if msg.is_multipart() else []:
            if not isinstance(part, Message) or \
                    part.get_content_type() != "message/delivery-status":
                continue
            blocks = part.get_payload()
            if not isinstance(blocks, list) or not blocks:
                continue
            # The first block describes the message, each further one a recipient.
            envid = _field(blocks[0], "Original-Envelope-Id") \
                if isinstance(blocks[0], Message) else ""
            for block in blocks[1:MAX_REPORTS + 1]:
                if isinstance(block, Message):
                    found.append(_report(block, unxtext(envid)))
        return found[:MAX_REPORTS]
    except Exception:
        # Anything too broken to read is no DSN (and must not make us 4xx
        # forever: the sender would retry it for days).
        log.info("unreadable delivery status notification", exc_info=True)
        return []


def _field(block: Message, name: str) -> str:
    value = block.get(name)
    return " ".join(str(value).split())[:MAX_FIELD] if value is not None else ""


def _typed(block: Message, name: str) -> str:
    """"rfc822; a@b" -> "a@b", "smtp; 550 ..." -> "550 ..."."""
    kind, sep, rest = _field(block, name).partition(";")
    return rest.strip() if sep else kind


def _report(block: Message, envid: str) -> Report:
    original = _typed(block, "Original-Recipient")
    return Report(recipient=_typed(block, "Final-Recipient") or original,
                  action=_field(block, "Action").lower(), status=_field(block, "Status"),
                  diagnostic=_typed(block, "Diagnostic-Code"),
                  original_recipient=unxtext(original) if original else "",
                  remote_mta=_typed(block, "Remote-MTA"), envid=envid)
