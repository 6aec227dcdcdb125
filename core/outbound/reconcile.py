"""Outbound rows left ``submitting``: the API committed the row, then died
(or lost its database) before it heard Postfix's answer to the submission.

What such a row means: the content filter takes the marker away whenever it
meets the message (core/outbound/identify -> send.confirm), so a row still
``submitting`` long after its submission timed out is a message the filter
has not seen. Either Postfix never took it (the process died before the
data went out), or Postfix has it queued but cannot hand it to the filter
(the filter down for that long).

What is done: the row is marked ``unconfirmed`` with a detail saying so,
logged as a warning for an operator, and never submitted again. Why not
resend: from here the two cases cannot be told apart for certain (the
worker need not run where Postfix's queue is, nor be allowed to read it),
and resending in the second case sends the message twice, which is worse
than a message that needs a person. Why not ``failed``: in the second case
the filter still meets the message later and confirms it (the marker
``unconfirmed`` is taken away like ``submitting``), after which it goes on
as any other; an email.failed already sent could not be taken back. The
operator's check (docs/operations.md): the message id is in the return
path, so ``postqueue -p | grep <msg id>`` and the mail log tell which case
it is.
"""

from __future__ import annotations

import logging

import psycopg

from e2a.core.store import outbound as outbound_store

log = logging.getLogger("e2a.reconcile")

# Far past submit.timeout (30 s by default, per SMTP step): a submission
# still running then is not running any more.
STUCK_SECONDS = 900.0
BATCH = 100
DETAIL = ("not confirmed by Postfix: the API stopped while handing the message over; "
          "it is not sent again (an operator checks Postfix's queue and log)")


def mark_stuck(conn: psycopg.Connection, *, older_than: float = STUCK_SECONDS) -> int:
    """One batch of stuck ``submitting`` rows marked ``unconfirmed``; how many."""
    marked = 0
    with conn.transaction():
        for row in outbound_store.stuck_submitting(conn, older_than, BATCH):
            if outbound_store.mark_unconfirmed(conn, row["id"], DETAIL):
                marked += 1
                log.warning("outbound message never confirmed by Postfix: marked unconfirmed, "
                            "not sent again", extra={"message_id": row["id"],
                                                     "agent": row["agent_email"],
                                                     "created_at": str(row["created_at"])})
    return marked
