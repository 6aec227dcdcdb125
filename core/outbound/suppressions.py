"""Suppressions: the recipients an account (after a hard bounce, a
complaint, or by hand) or one agent (after an unsubscribe, or by hand) no
longer sends to.

Every outbound path asks ``check`` with the message's envelope recipients
before anything leaves: the API (both generations) before it records a
send, the approval of a held message before it releases it (the hold stays
pending), the content filter for mail submitted by SMTP or sendmail. The
whole message is refused: sending it to the others only would change what
the agent said to whom.

Addresses are compared canonical (core/net/addresses.mailbox). Adding one
writes its event in the same transaction: ``domain.suppression_added`` for
the account's (bounce | complaint; a manual one has no event upstream
either), ``agent.suppression_added`` for a new agent-scoped one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from e2a.core.ids import new_id
from e2a.core.net.addresses import mailbox
from e2a.core.runtime import metrics
from e2a.core.store import events as event_store
from e2a.core.store import suppressions as store
from e2a.core.webhooks import eventtypes

log = logging.getLogger("e2a.suppressions")

MAX_ADDRESS = 320
MAX_REASON = 2000
ACCOUNT_SOURCES = ("bounce", "complaint", "manual")
AGENT_SOURCES = ("unsubscribe", "manual")
# The enhanced status code of a refusal at the content filter (RFC 3463
# 5.7.1: delivery not authorized), as permanent as the 422 of the API.
SMTP_REFUSAL = "550 5.7.1"


class Suppressed(Exception):
    """The message names suppressed recipients; nothing was sent."""

    def __init__(self, addresses: list[str]) -> None:
        super().__init__("recipient suppressed: " + ", ".join(addresses))
        self.addresses = addresses

    @property
    def smtp_reply(self) -> str:
        return (f"{SMTP_REFUSAL} recipient suppressed (unsubscribed or bounced): "
                + ", ".join(self.addresses[:5]))


def canonical(address: str) -> str:
    return mailbox(address)


def check(conn: psycopg.Connection, agent: dict[str, Any], recipients: Iterable[str]) -> None:
    """Raise Suppressed when the account of ``agent`` or the agent itself
    suppresses any of ``recipients``. One statement."""
    wanted = sorted({canonical(r) for r in recipients if r})
    if not wanted:
        return
    found = store.suppressed_among(conn, agent["user_id"], agent["id"], wanted)
    if found:
        addresses = sorted({row["address"] for row in found})
        metrics.suppressed_sends.inc()
        log.info("refused: suppressed recipient", extra={
            "agent": agent["email"], "recipients": len(addresses)})
        raise Suppressed(addresses)


def add_for_account(conn: psycopg.Connection, user_id: str, address: str, *, source: str,
                    reason: str | None = None, message_id: str | None = None) -> bool:
    """Suppress ``address`` for every agent of ``user_id``; False when it was already."""
    if source not in ACCOUNT_SOURCES:
        raise ValueError(f"unknown suppression source {source!r}")
    address = canonical(address)
    row = store.add_account(conn, user_id, address, source=source,
                            reason=reason[:MAX_REASON] if reason else None,
                            source_message_id=message_id)
    if row is None:
        return False
    if source != "manual":
        data: dict[str, Any] = {"address": address, "source": source}
        if reason:
            data["reason"] = reason[:MAX_REASON]
        if message_id:
            data["message_id"] = message_id
        event_store.insert_event(conn, new_id("evt"), user_id,
                                 eventtypes.DOMAIN_SUPPRESSION_ADDED, data,
                                 message_id=message_id)
    log.info("address suppressed for the account", extra={"source": source,
                                                         "message_id": message_id})
    return True


@dataclass(frozen=True)
class AgentSuppression:
    row: dict[str, Any]
    created: bool


def add_for_agent(conn: psycopg.Connection, agent: dict[str, Any], address: str, *,
                  source: str, reason: str | None = None) -> AgentSuppression:
    """Suppress ``address`` for ``agent`` only; idempotent (the first row stays)."""
    if source not in AGENT_SOURCES:
        raise ValueError(f"unknown suppression source {source!r}")
    address = canonical(address)
    row, created = store.add_agent(conn, agent["user_id"], agent["id"], address, source=source,
                                   reason=reason[:MAX_REASON] if reason else None)
    if created:
        event_store.insert_event(conn, new_id("evt"), agent["user_id"],
                                 eventtypes.AGENT_SUPPRESSION_ADDED,
                                 {"agent_id": agent["id"], "address": address,
                                  "source": source}, agent_id=agent["id"])
        log.info("address suppressed for the agent", extra={"agent": agent["email"],
                                                           "source": source})
    return AgentSuppression(row, created)
