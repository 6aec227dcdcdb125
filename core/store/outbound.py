"""Outbound messages as the content filter and the bounce handler see them:
found by id or retry key, and their transport fate (queued -> sent ->
bounced). They are inserted by core/store/messages.insert_outbound."""

from __future__ import annotations

from typing import Any

import psycopg

Row = dict[str, Any]

# What the filter and the bounce handler need of a row: never its body.
_COLUMNS = """m.id, m.user_id, m.agent_id, m.status, m.delivery_status,
              m.provider_message_id, m.conversation_id, m.subject,
              m.to_recipients, m.cc, m.bcc,
              a.email AS agent_email, d.domain AS agent_domain"""


def outbound_by_id(conn: psycopg.Connection, message_id: str) -> Row | None:
    """The outbound message with this id and its agent's address and domain;
    None when there is none (or the id is an inbound message's)."""
    return conn.execute(
        f"""SELECT {_COLUMNS}
              FROM messages m JOIN agents a ON a.id = m.agent_id
                              JOIN domains d ON d.id = a.domain_id
             WHERE m.id = %s AND m.direction = 'outbound'""",
        (message_id,)).fetchone()


def outbound_by_dedupe_key(conn: psycopg.Connection, agent_id: str,
                           dedupe_key: bytes) -> Row | None:
    return conn.execute(
        f"""SELECT {_COLUMNS}
              FROM messages m JOIN agents a ON a.id = m.agent_id
                              JOIN domains d ON d.id = a.domain_id
             WHERE m.agent_id = %s AND m.dedupe_key = %s AND m.direction = 'outbound'""",
        (agent_id, dedupe_key)).fetchone()


SUBMITTING = "submitting"


def confirm_submitted(conn: psycopg.Connection, message_id: str, queue_id: str) -> Row | None:
    """Postfix took the message the API marked ``submitting``: the marker
    goes. The row (what its event says) when this call took it away, None
    when it was gone already (the other side came first)."""
    return conn.execute(
        """UPDATE messages
              SET delivery_status = 'queued',
                  queue_id = CASE WHEN COALESCE(queue_id, '') = '' THEN %s ELSE queue_id END
            WHERE id = %s AND direction = 'outbound' AND delivery_status = 'submitting'
        RETURNING id, user_id, agent_id, type, status, sender, to_recipients, cc, subject,
                  conversation_id""",
        (queue_id, message_id)).fetchone()


def discard_unsubmitted(conn: psycopg.Connection, message_id: str) -> bool:
    """Postfix did not take the message the API marked ``submitting``: the row
    goes, as if never written. False when the filter met the message first
    (then Postfix did take it, whatever the client heard)."""
    return conn.execute(
        """DELETE FROM messages
            WHERE id = %s AND direction = 'outbound' AND delivery_status = 'submitting'""",
        (message_id,)).rowcount == 1


def record_passed_on(conn: psycopg.Connection, message_id: str, queue_id: str) -> None:
    """Postfix took the message for delivery under ``queue_id``. A bounce that
    came back first keeps its mark: the fate only moves forward."""
    conn.execute(
        """UPDATE messages
              SET delivery_status = CASE WHEN delivery_status = 'bounced'
                                         THEN delivery_status ELSE 'sent' END,
                  provider_message_id = %s
            WHERE id = %s AND direction = 'outbound'""",
        (queue_id, message_id))


def record_failed(conn: psycopg.Connection, message_id: str, error: str) -> None:
    """Postfix's reinjection refused the message for good (it bounces it to
    the sender with the reason); a bounce recorded already keeps its mark."""
    conn.execute(
        """UPDATE messages SET delivery_status = 'failed', delivery_error = %s
            WHERE id = %s AND direction = 'outbound' AND delivery_status <> 'bounced'""",
        (error, message_id))


def record_bounced(conn: psycopg.Connection, message_id: str, error: str) -> bool:
    """Mark the message bounced; False when it was already (a DSN delivered
    twice), so that its event is written once."""
    return conn.execute(
        """UPDATE messages SET delivery_status = 'bounced', delivery_error = %s
            WHERE id = %s AND direction = 'outbound' AND delivery_status <> 'bounced'""",
        (error, message_id)).rowcount == 1
