"""What a conversation's members add up to beyond the counts the store
aggregates (core/store/messages.conversation_summaries): who took part and
which labels its messages carry."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from e2a.core.store import messages as message_store


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
