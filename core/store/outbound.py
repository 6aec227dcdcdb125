"""Outbound messages as the content filter and the bounce handler see them:
found by id or retry key, and their transport fate (submitting -> queued ->
sent -> deferred -> delivered | bounced, or failed), per recipient too
(delivery_recipients, from Postfix's DSNs). They are inserted by
core/store/messages.insert_outbound."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from e2a.core.store.events import EVENTS_CHANNEL, INSERT_EVENTS

Row = dict[str, Any]

# What the filter and the bounce handler need of a row: never its body.
_COLUMNS = """m.id, m.user_id, m.agent_id, m.status, m.delivery_status,
              m.provider_message_id, m.conversation_id, m.subject,
              m.to_recipients, m.cc, m.bcc, m.type, m.sender, m.queue_id,
              m.email_message_id, m.delivery_error,
              a.email AS agent_email, d.domain AS agent_domain"""


def outbound_by_id(conn: psycopg.Connection, message_id: str, *,
                   lock: bool = False) -> Row | None:
    """The outbound message with this id and its agent's address and domain;
    None when there is none (or the id is an inbound message's). ``lock``:
    the row is locked for the caller's transaction (two reports on one
    message, handled at once, must add up, not overwrite each other)."""
    return conn.execute(
        f"""SELECT {_COLUMNS}
              FROM messages m JOIN agents a ON a.id = m.agent_id
                              JOIN domains d ON d.id = a.domain_id
             WHERE m.id = %s AND m.direction = 'outbound'
             {"FOR UPDATE OF m" if lock else ""}""",
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
UNCONFIRMED = "unconfirmed"
# What Postfix's DSNs told: no later step may take these back to "sent".
REPORTED = ("deferred", "delivered", "bounced")


def confirm_submitted(conn: psycopg.Connection, message_id: str, queue_id: str) -> Row | None:
    """Postfix took the message the API marked ``submitting`` (or the
    reconciler ``unconfirmed`` since): the marker goes. The row (what its
    event says) when this call took it away, None when it was gone already
    (the other side came first)."""
    return conn.execute(
        """UPDATE messages
              SET delivery_status = 'queued',
                  queue_id = CASE WHEN COALESCE(queue_id, '') = '' THEN %s ELSE queue_id END
            WHERE id = %s AND direction = 'outbound'
              AND delivery_status IN ('submitting', 'unconfirmed')
        RETURNING id, user_id, agent_id, type, status, sender, to_recipients, cc, subject,
                  conversation_id""",
        (queue_id, message_id)).fetchone()


def confirm_heard(conn: psycopg.Connection, message_id: str, queue_id: str) -> Row | None:
    """The API heard Postfix's 250 for its message: ``queue_id`` is the
    message's (whichever side came first), and the marker goes as in
    confirm_submitted, in one statement. The row when this call took the
    marker away, None when the filter had."""
    row = conn.execute(
        """WITH old AS (SELECT id, delivery_status IN ('submitting', 'unconfirmed') AS marked
                          FROM messages
                         WHERE id = %s AND direction = 'outbound'
                           FOR UPDATE)
           UPDATE messages m
              SET queue_id = %s,
                  delivery_status = CASE WHEN old.marked THEN 'queued'
                                         ELSE m.delivery_status END
             FROM old
            WHERE m.id = old.id
        RETURNING old.marked, m.id, m.user_id, m.agent_id, m.type, m.status, m.sender,
                  m.to_recipients, m.cc, m.subject, m.conversation_id""",
        (message_id, queue_id)).fetchone()
    return row if row is not None and row["marked"] else None


def discard_unsubmitted(conn: psycopg.Connection, message_id: str) -> bool:
    """Postfix did not take the message the API marked ``submitting``: the row
    goes, as if never written. False when the filter met the message first
    (then Postfix did take it, whatever the client heard)."""
    return conn.execute(
        """DELETE FROM messages
            WHERE id = %s AND direction = 'outbound' AND delivery_status = 'submitting'""",
        (message_id,)).rowcount == 1


# Lifecycle steps (core/messages/lifecycle.step dicts, with their
# recipient) of the message ``{source}.id``, in the order given, written
# by the statement that made the change they describe; a once-only step
# recorded before is skipped.
_STEPS = """
    INSERT INTO message_lifecycle (id, message_id, direction, stage, outcome, reason_code,
                                   retryable, recipient, evidence, correlation_ids,
                                   occurred_at)
    SELECT v.id, {source}.id, 'outbound', v.stage, v.outcome, v.reason_code, v.retryable,
           coalesce(v.recipient, ''), v.evidence, v.correlation_ids,
           clock_timestamp() + make_interval(secs => n / 1000000.0)
      FROM {source},
           ROWS FROM (jsonb_to_recordset(%(steps)s)
                      AS (id text, stage text, outcome text, reason_code text,
                          retryable boolean, recipient text, evidence jsonb,
                          correlation_ids jsonb))
           WITH ORDINALITY AS v(id, stage, outcome, reason_code, retryable, recipient,
                                evidence, correlation_ids, n)
    ON CONFLICT DO NOTHING"""


def record_passed_on(conn: psycopg.Connection, message_id: str, queue_id: str, *,
                     steps: Sequence[Row] = ()) -> bool:
    """Postfix took the message for delivery under ``queue_id``, and its
    lifecycle ``steps`` with it, in one statement. A report that came back
    first keeps its mark: the fate only moves forward. False when there is
    no such outbound message (no step is written then)."""
    return conn.execute(
        f"""WITH passed AS (
                UPDATE messages
                   SET delivery_status = CASE WHEN delivery_status = ANY(%(reported)s)
                                              THEN delivery_status ELSE 'sent' END,
                       provider_message_id = %(queue_id)s
                 WHERE id = %(id)s AND direction = 'outbound'
             RETURNING id),
                 stepped AS ({_STEPS.format(source="passed")})
            SELECT id FROM passed""",
        {"reported": list(REPORTED), "queue_id": queue_id, "id": message_id,
         "steps": Jsonb(list(steps))}).fetchone() is not None


def record_failed(conn: psycopg.Connection, message_id: str, error: str) -> bool:
    """Postfix's reinjection refused the message for good (it bounces it to
    the sender with the reason); a report recorded already keeps its mark.
    False when it was failed already (its event is written once)."""
    return conn.execute(
        """UPDATE messages SET delivery_status = 'failed', delivery_error = %s
            WHERE id = %s AND direction = 'outbound'
              AND delivery_status <> ALL(%s) AND delivery_status <> 'failed'""",
        (error, message_id, list(REPORTED))).rowcount == 1


_RECIPIENT_COLUMNS = """recipient, status, bounce_type, action, dsn_status, diagnostic,
                        remote_mta, updated_at"""


def record_recipient(conn: psycopg.Connection, message_id: str, recipient: str, *,
                     status: str, bounce_type: str, action: str, dsn_status: str,
                     diagnostic: str, remote_mta: str) -> list[Row]:
    """One recipient's fate as a DSN told it. Only forward: a final one
    (delivered, bounced) never changes, a delay repeated changes nothing.
    Every recipient reported on so far, by address, as they stand after
    this one (one statement: the DSN's reading of them is not another
    round trip), each with ``changed``: true for this one when it changed
    (its event and lifecycle step follow)."""
    return conn.execute(
        f"""WITH told AS (
                INSERT INTO delivery_recipients AS r (message_id, recipient, status, bounce_type,
                                                      action, dsn_status, diagnostic, remote_mta)
                VALUES (%(id)s, %(recipient)s, %(status)s, %(bounce_type)s, %(action)s,
                        %(dsn_status)s, %(diagnostic)s, %(remote_mta)s)
                ON CONFLICT (message_id, recipient) DO UPDATE
                   SET status = EXCLUDED.status, bounce_type = EXCLUDED.bounce_type,
                       action = EXCLUDED.action, dsn_status = EXCLUDED.dsn_status,
                       diagnostic = EXCLUDED.diagnostic, remote_mta = EXCLUDED.remote_mta,
                       updated_at = now()
                 WHERE r.status = 'deferred' AND EXCLUDED.status <> 'deferred'
             RETURNING {_RECIPIENT_COLUMNS})
            SELECT {_RECIPIENT_COLUMNS}, true AS changed FROM told
            UNION ALL
            SELECT {_RECIPIENT_COLUMNS}, false AS changed FROM delivery_recipients
             WHERE message_id = %(id)s AND recipient NOT IN (SELECT recipient FROM told)
            ORDER BY recipient""",
        {"id": message_id, "recipient": recipient.lower(), "status": status,
         "bounce_type": bounce_type, "action": action, "dsn_status": dsn_status,
         "diagnostic": diagnostic, "remote_mta": remote_mta}).fetchall()


def record_reported(conn: psycopg.Connection, message_id: str, status: str, detail: str, *,
                    steps: Sequence[Row], events: Sequence[Row]) -> None:
    """The message's fate as its recipients' reports add up
    (core/outbound/delivery.py), with the lifecycle ``steps`` and the
    ``events`` (each: id, user_id, agent_id, message_id, conversation_id,
    type, data) of the recipients that changed, and the workers' NOTIFY
    when there are events: one statement."""
    conn.execute(
        f"""WITH reported AS (
                UPDATE messages SET delivery_status = %(status)s, delivery_error = %(detail)s
                 WHERE id = %(id)s AND direction = 'outbound'
             RETURNING id),
                 stepped AS ({_STEPS.format(source="reported")}),
                 queued AS ({INSERT_EVENTS} RETURNING 1)
            SELECT CASE WHEN EXISTS (SELECT 1 FROM queued)
                        THEN pg_notify('{EVENTS_CHANNEL}', '') END AS workers_notified""",
        {"id": message_id, "status": status, "detail": detail, "steps": Jsonb(list(steps)),
         "events": Jsonb(list(events))})


def stuck_submitting(conn: psycopg.Connection, older_than_seconds: float,
                     limit: int) -> list[Row]:
    """Rows the API marked ``submitting`` this long ago and nobody confirmed
    or discarded: the process died between its commit and Postfix's answer."""
    return conn.execute(
        f"""SELECT {_COLUMNS}, m.created_at, m.envelope_sender
              FROM messages m JOIN agents a ON a.id = m.agent_id
                              JOIN domains d ON d.id = a.domain_id
             WHERE m.direction = 'outbound' AND m.delivery_status = 'submitting'
               AND m.status <> 'pending_approval'
               AND m.created_at < now() - make_interval(secs => %s)
             ORDER BY m.created_at LIMIT %s
               FOR UPDATE OF m SKIP LOCKED""",
        (older_than_seconds, limit)).fetchall()


def mark_unconfirmed(conn: psycopg.Connection, message_id: str, detail: str) -> bool:
    """A stuck ``submitting`` row: marked for an operator, never sent again
    (core/outbound/reconcile.py says why)."""
    return conn.execute(
        """UPDATE messages SET delivery_status = 'unconfirmed', delivery_error = %s
            WHERE id = %s AND direction = 'outbound' AND delivery_status = 'submitting'""",
        (detail, message_id)).rowcount == 1


def delivery_state(conn: psycopg.Connection, message_id: str) -> Row | None:
    """Where an outbound message's transport stands (what a waiting send answers)."""
    return conn.execute(
        """SELECT status, delivery_status, delivery_error, provider_message_id
             FROM messages WHERE id = %s AND direction = 'outbound'""",
        (message_id,)).fetchone()
