"""Outbound mail: the one decision whether a message leaves now, and the one
rule for who a message is from."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import psycopg

from e2a.core.mail import headers
from e2a.core.mta import verp
from e2a.core.net import addresses
from e2a.core.outbound.screening import Screened
from e2a.core.store import agents as agent_store
from e2a.core.store import outbound as outbound_store

# Why an agent's mail from a client that is not this host (SASL submission,
# a host of mynetworks) is refused, with 5.7.1, by the milter or the filter:
# only on this host does it meet the hold and the signing.
FOREIGN_AGENT = ("an agent's mail is sent through the e2a API or from this host only "
                 "(not by remote SMTP submission)")


class Decision(enum.Enum):
    PASS = "pass"  # sign and reinject now  # noqa: S105 (not a password)
    HOLD = "hold"  # keep as pending_approval until a person decides (core/outbound/holds.py)
    BLOCK = "block"  # refused by the agent's recipient gate: never leaves, nothing kept


@dataclass(frozen=True)
class Candidate:
    mail_from: str  # envelope sender, "" for the null sender
    recipients: Sequence[str]
    message: bytes  # exactly as submitted
    # The sending agent's row (core/store/agents shape); None when the
    # sender is no agent of ours (a host's own mail): nothing to hold it for.
    agent: Mapping[str, Any] | None = None
    # The status of the message's outbound row so far ("sent" when it has
    # none yet, or it never waited for anyone).
    status: str = "sent"
    # Every agent among the message's sender identities (sending_agents):
    # any one of them under review holds the message.
    senders: Sequence[Mapping[str, Any]] = ()
    # What the agent's protection settings found (core/outbound/screening.py);
    # None when nobody screened it here: the API did, or it is no agent's.
    screened: Screened | None = None
    # Why a loop or abuse brake wants it held (core/outbound/brakes.py); "" none.
    brake_hold: str = ""


def sender_identities(mail_from: str, msg: EmailMessage) -> list[str]:
    """Every address ``msg`` is from, canonical, once each: the envelope
    sender, each From address and Sender. A message that names an agent in
    any of them is that agent's as far as holding and trust go: an agent
    under review cannot slip out behind a second From, a Sender or another
    agent's return path."""
    found = [mail_from, *headers.header_addresses(msg, "From"),
             *headers.header_addresses(msg, "Sender")]
    # headers.text: 8-bit junk in an envelope or header becomes text the
    # database takes (it names no agent either way).
    canonical = (addresses.mailbox(headers.text(a)) for a in found)
    return list(dict.fromkeys(a for a in canonical if "@" in a))


def sending_agents(conn: psycopg.Connection, mail_from: str, msg: EmailMessage,
                   thread_refs: list[str] | None = None) -> list[dict[str, Any]]:
    """The agents among ``msg``'s sender identities, in identity order (with
    the conversation of ``thread_refs``, as agents_by_emails gives it)."""
    identities = sender_identities(mail_from, msg)
    found = {a["email"]: a for a in agent_store.agents_by_emails(conn, identities, thread_refs)}
    return [found[i] for i in identities if i in found]


def reinjected_sender(conn: psycopg.Connection, mail_from: str, msg: EmailMessage,
                      verp_key: bytes) -> dict[str, Any] | None:
    """The outbound row of the agent that sent a message our reinjection
    service passed on, None when it is no agent's. The filter and release
    hand an agent's mail over with the VERP return path of its row, made
    by the API (the agent's key) or by the filter for mail of this host; it
    is that agent's only when its one From is the agent's address, so a
    host's program cannot borrow a row for mail written as someone else."""
    message_id = verp.parse(mail_from, verp_key)
    if not message_id:
        return None
    row = outbound_store.outbound_by_id(conn, message_id)
    if row is None:
        return None
    froms = [addresses.mailbox(a) for a in headers.header_addresses(msg, "From")]
    return row if froms == [row["agent_email"]] else None


def decide(mail: Candidate) -> Decision:
    """Whether ``mail`` leaves now. The single hold decision point.

    Every outbound path reaches it: the content filter calls it for each
    message Postfix hands over (API sends and plain SMTP or sendmail
    submissions alike), and the API calls it to answer in step with what the
    filter will do. Human-in-the-loop adds a HOLD outcome here: when the
    sending agent (``mail.agent``: the agent of the API row, or of the
    envelope sender or From of mail submitted otherwise) has
    ``hitl_enabled``, the message is held as ``pending_approval`` instead of
    leaving; so has any agent among the message's other sender identities
    (``mail.senders``). A message that was held already stays held whatever
    the agent's setting is now: only a person's approval (release) sends it,
    and one rejected or expired meanwhile never leaves. Mail of no agent of
    ours is never held. Protection screening (``mail.screened``) holds or
    blocks the messages its gate, scan or first-contact review stop.
    """
    if mail.screened is not None and mail.screened.blocked and mail.status == "sent":
        return Decision.BLOCK
    if mail.screened is not None and mail.screened.held:
        return Decision.HOLD
    if any(a is not None and a.get("hitl_enabled") for a in (mail.agent, *mail.senders)):
        return Decision.HOLD
    if mail.status != "sent" or mail.brake_hold:
        return Decision.HOLD
    return Decision.PASS
