"""Conversations: whose they are, and what a conversation's members add up
to beyond the counts the store aggregates
(core/store/messages.conversation_summaries): who took part and which
labels its messages carry.

A conversation id belongs to the owner whose messages carry it first. An id
a caller or a message names is taken only when no other owner's message
carries it, so nobody can attach mail to another tenant's thread by
knowing its id.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import psycopg

from e2a.core import inbound
from e2a.core.store import messages as message_store

HEADER = "X-E2A-Conversation-Id"
MAX_ID = 200


def open_to(conn: psycopg.Connection, conversation_id: str, user_id: str) -> bool:
    """Whether ``user_id`` may put messages in ``conversation_id``: it is
    theirs, or nobody's yet."""
    return not message_store.conversation_owned_by_other(conn, conversation_id, user_id)


def claimed(conn: psycopg.Connection, msg: EmailMessage, user_id: str) -> str:
    """The conversation ``msg``'s header names, when ``user_id`` may use
    it; "" otherwise."""
    claim = inbound.header_value(msg, HEADER)[:MAX_ID]
    return claim if claim and open_to(conn, claim, user_id) else ""

def participants(members: Iterable[dict[str, Any]]) -> list[str]:
    """Every address seen in From, To or Cc of any member, both directions,
    once each (addresses compare case-insensitively), sorted."""
    seen: set[str] = set()
    for row in members:
        for address in [row["sender"], *(row["to_recipients"] or []), *(row["cc"] or [])]:
            if address:
                seen.add(address.lower())
    return sorted(seen)


def labels(members: Iterable[dict[str, Any]]) -> list[str]:
    """The union of the members' labels, sorted."""
    return sorted({label for row in members for label in (row["labels"] or [])})


@dataclass(frozen=True)
class Conversation:
    summary: dict[str, Any]  # counts and times of all members
    members: list[dict[str, Any]]  # the newest ones, oldest first
    participants: list[str]
    labels: list[str]


def load(conn: psycopg.Connection, agent_id: str, conversation_id: str, *,
         max_members: int) -> Conversation | None:
    """One of the agent's conversations, None when it has no live member."""
    summary = message_store.conversation_summaries(conn, agent_id,
                                                   conversation_id=conversation_id, limit=1)
    members = message_store.conversation_messages(conn, agent_id, conversation_id,
                                                  limit=max_members)
    if not summary or not members:
        return None
    return Conversation(summary[0], members, participants(members), labels(members))
