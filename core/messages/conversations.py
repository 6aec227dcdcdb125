"""What a conversation's members add up to beyond the counts the store
aggregates (core/store/messages.conversation_summaries): who took part and
which labels its messages carry."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


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
