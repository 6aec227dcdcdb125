"""An agent's mailbox: the changes both API generations make to stored
messages (labels, trash, restore, erasure), each in the caller's connection
and under the message's row lock, with the rules that can refuse them."""

from __future__ import annotations

import psycopg

from e2a.core import labels
from e2a.core.store import messages as message_store


class MailboxError(Exception):
    """A refused change; ``code`` says which rule (not_found, message_held,
    not_in_trash)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


def _missing(message_id: str) -> MailboxError:
    return MailboxError(f"message {message_id} not found", code="not_found")


def relabel(conn: psycopg.Connection, agent_id: str, message_id: str,
            delta: labels.Delta) -> list[str]:
    """Apply a label delta; the labels after it. labels.LabelError when the
    message would hold too many."""
    with conn.transaction():
        current = message_store.labels_for_update(conn, agent_id, message_id)
        if current is None:
            raise _missing(message_id)
        updated = delta.apply(current)
        if updated != current:
            message_store.set_labels(conn, message_id, updated)
    return updated


def trash(conn: psycopg.Connection, agent_id: str, message_id: str) -> None:
    """Move a message to the trash (again: nothing changes). A message held
    for its owner's approval is refused: trashing it would hide a decision
    someone still has to make."""
    with conn.transaction():
        row = message_store.trash(conn, agent_id, message_id)
    if row is None:
        raise _missing(message_id)
    if row["deleted_at"] is None and row["status"] == "pending_approval":
        raise MailboxError(f"message {message_id} is held for review; approve or reject it "
                           "first", code="message_held")


def restore(conn: psycopg.Connection, agent_id: str, message_id: str) -> None:
    with conn.transaction():
        row = message_store.restore(conn, agent_id, message_id)
    if row is None:
        raise _missing(message_id)
    if row["deleted_at"] is None:
        raise MailboxError(f"message {message_id} is not in the trash", code="not_in_trash")


def erase(conn: psycopg.Connection, agent_id: str, message_id: str) -> None:
    """Erase a trashed message for good; a live one must be trashed first, so
    no single call destroys mail."""
    with conn.transaction():
        row = message_store.erase_trashed(conn, agent_id, message_id)
    if row is None:
        raise _missing(message_id)
    if row["deleted_at"] is None:
        raise MailboxError(f"message {message_id} is not in the trash; delete it first",
                           code="not_in_trash")
