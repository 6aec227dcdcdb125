"""Messages, inbound and outbound."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from e2a.core.store.events import EVENTS_CHANNEL

Row = dict[str, Any]

# Channel the milter notifies on commit; API processes LISTEN for WebSocket push.
INBOUND_CHANNEL = "e2a_inbound"


_INSERT_INBOUND = """
    INSERT INTO messages (
        id, user_id, agent_id, direction, recipient, sender, envelope_sender,
        to_recipients, cc, reply_to, subject, email_message_id, in_reply_to,
        references_ids, conversation_id, raw_message, size_bytes, auth_headers,
        spf, dkim, dmarc, verified, entity_type, inbox_status, queue_id, dedupe_key,
        labels, flagged, flag_reason, protection, hold_reason, status, approval_expires_at)
    VALUES (
        %(id)s, %(user_id)s, %(agent_id)s, 'inbound', %(recipient)s, %(sender)s,
        %(envelope_sender)s, %(to_recipients)s, %(cc)s, %(reply_to)s, %(subject)s,
        %(email_message_id)s, %(in_reply_to)s, %(references_ids)s,
        %(conversation_id)s, %(raw_message)s, %(size_bytes)s, %(auth_headers)s,
        %(spf)s, %(dkim)s, %(dmarc)s, %(verified)s, %(entity_type)s, 'unread',
        %(queue_id)s, %(dedupe_key)s, %(labels)s::text[], %(flagged)s, %(flag_reason)s,
        %(protection)s, %(hold_reason)s, %(status)s,
        CASE WHEN %(hold_ttl)s::int IS NULL THEN NULL
             ELSE now() + %(hold_ttl)s::int * interval '1 second' END)
    ON CONFLICT (agent_id, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING"""

# What protection screening adds to a received message (core/inbound/screening.py);
# a row without them is an ordinary delivery.
_SCREENING_DEFAULTS: dict[str, Any] = {
    "labels": [], "flagged": False, "flag_reason": "", "protection": None,
    "hold_reason": None, "status": None, "hold_ttl": None}


def _inbound_params(row: dict[str, Any]) -> dict[str, Any]:
    params = {**_SCREENING_DEFAULTS, **row, "auth_headers": Jsonb(row["auth_headers"])}
    for name in ("protection", "hold_reason"):
        if params[name] is not None:
            params[name] = Jsonb(params[name])
    return params


def insert_inbound(conn: psycopg.Connection, row: dict[str, Any]) -> str | None:
    """Store one delivery to one agent; None when this delivery is already stored
    (a client retrying after a 4xx whose first transaction had committed)."""
    found = conn.execute(_INSERT_INBOUND + " RETURNING id", _inbound_params(row)).fetchone()
    return found["id"] if found else None


def insert_inbound_many(conn: psycopg.Connection, rows: Iterable[dict[str, Any]]) -> None:
    """``insert_inbound`` for a batch in one round trip (bulk loads such as
    bench/api); duplicates are skipped silently."""
    with conn.cursor() as cur:
        cur.executemany(_INSERT_INBOUND, [_inbound_params(row) for row in rows])


def count_for_agent(conn: psycopg.Connection, agent_id: str) -> int:
    return conn.execute("SELECT count(*) AS n FROM messages WHERE agent_id = %s",
                        (agent_id,)).fetchone()["n"]


# One delivery to one agent in one statement (one round trip): the row, its
# email.received event for the worker, its lifecycle steps (in the order
# given), and the two NOTIFYs (sent on commit). A duplicate inserts nothing,
# so it has no event and notifies nobody.
_STORE_INBOUND = f"""
    WITH stored AS ({_INSERT_INBOUND} RETURNING id),
         queued AS (
             INSERT INTO events (id, user_id, agent_id, message_id, conversation_id, type, data)
             SELECT %(event_id)s, %(user_id)s, %(agent_id)s, stored.id, %(conversation_id)s,
                    'email.received', %(event_data)s
               FROM stored),
         steps AS (
             INSERT INTO message_lifecycle (id, message_id, direction, stage, outcome,
                                            reason_code, retryable, evidence,
                                            correlation_ids, occurred_at)
             SELECT v.id, stored.id, 'inbound', v.stage, v.outcome, v.reason_code,
                    v.retryable, v.evidence, v.correlation_ids,
                    clock_timestamp() + make_interval(secs => n / 1000000.0)
               FROM stored,
                    ROWS FROM (jsonb_to_recordset(%(lifecycle)s)
                               AS (id text, stage text, outcome text, reason_code text,
                                   retryable boolean, evidence jsonb, correlation_ids jsonb))
                    WITH ORDINALITY AS v(id, stage, outcome, reason_code, retryable, evidence,
                                         correlation_ids, n))
    SELECT stored.id, pg_notify('{INBOUND_CHANNEL}', %(notify_payload)s) AS inbound_notified,
           pg_notify('{EVENTS_CHANNEL}', '') AS workers_notified
      FROM stored"""


def store_inbound(conn: psycopg.Connection, row: dict[str, Any], *, event_id: str,
                  event_data: dict[str, Any], notify_payload: str,
                  lifecycle: Sequence[dict[str, Any]] = ()) -> str | None:
    """``insert_inbound`` with its ``email.received`` event, its lifecycle
    steps (each {id, stage, outcome, reason_code, retryable, evidence,
    correlation_ids}) and the NOTIFYs of the API (INBOUND_CHANNEL,
    ``notify_payload``) and the workers, all or nothing in one statement;
    None for a duplicate (nothing written)."""
    found = conn.execute(_STORE_INBOUND, {
        **_inbound_params(row), "event_id": event_id, "event_data": Jsonb(event_data),
        "notify_payload": notify_payload, "lifecycle": Jsonb(list(lifecycle))}).fetchone()
    return found["id"] if found else None


# What a listing shows of each message (api/views.message_summary).
_SUMMARY_COLUMNS = """id, direction, recipient, sender, to_recipients, cc, reply_to, subject,
                      conversation_id, size_bytes, inbox_status, status, labels,
                      webhook_status, webhook_error, created_at, deleted_at,
                      envelope_sender, verified, delivery_status, flagged, flag_reason"""


# Received mail an agent has: not held for review (nor rejected there).
DELIVERED = "(direction = 'outbound' OR status IS NULL)"


@dataclass(frozen=True)
class Match:
    """One predicate of a filter expression (core/messages/filterexpr.py).

    ``field``: label | from | subject | created. ``op``: ``has`` (label),
    ``like`` (a ``*`` wildcard pattern, matched anywhere), ``eq``/``ne``
    (case-insensitive exact), or a comparison ``=``, ``!=``, ``<``, ``<=``,
    ``>``, ``>=`` (created)."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class AllOf:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Negated:
    item: Node


Node = Match | AllOf | AnyOf | Negated


@dataclass(frozen=True)
class MessageFilter:
    """Which of an agent's messages a listing holds; empty fields do not narrow."""

    direction: str | None = None  # inbound | outbound; None: both
    status: str | None = None  # unread | read
    sender_contains: str = ""  # case-insensitive substring of the From address
    subject_contains: str = ""  # case-insensitive substring
    conversation_id: str = ""
    since: datetime | None = None  # created_at >= since
    until: datetime | None = None  # created_at < until
    labels: tuple[str, ...] = ()  # the message carries every one of these
    trashed: bool = False  # the trash instead of the live mailbox
    expression: Node | None = None  # a filter expression, ANDed with the rest
    flagged: bool = False  # only what protection flagged


def _contains_pattern(text: str) -> str:
    """An ILIKE pattern (ESCAPE '\\') matching ``text`` anywhere, its own
    ``%``, ``_`` and ``\\`` taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


_TEXT_COLUMNS = {"from": "sender", "subject": "subject"}
_COMPARISONS = frozenset({"=", "!=", "<", "<=", ">", ">="})


def _match_sql(match: Match, params: dict[str, Any]) -> str:
    name = f"fx{len(params)}"
    # Every predicate is true or false, never NULL (a NULL subject matches
    # none of them), so NOT means "does not match".
    if match.field == "label" and match.op == "has":
        params[name] = [match.value]
        return f"labels @> %({name})s::text[]"
    column = _TEXT_COLUMNS.get(match.field)
    if column and match.op == "like":
        params[name] = _contains_pattern(match.value).replace("*", "%")
        return f"coalesce({column} ILIKE %({name})s ESCAPE '\\', false)"
    if column and match.op in ("eq", "ne"):
        params[name] = match.value
        op = "=" if match.op == "eq" else "<>"
        return f"coalesce(lower({column}) {op} lower(%({name})s), false)"
    if match.field == "created" and match.op in _COMPARISONS:
        params[name] = match.value
        return f"created_at {'<>' if match.op == '!=' else match.op} %({name})s"
    raise ValueError(f"no such filter predicate: {match}")


def _expression_sql(node: Node, params: dict[str, Any]) -> str:
    if isinstance(node, Match):
        return _match_sql(node, params)
    if isinstance(node, Negated):
        return f"NOT ({_expression_sql(node.item, params)})"
    joiner = " AND " if isinstance(node, AllOf) else " OR "
    return "(" + joiner.join(_expression_sql(item, params) for item in node.items) + ")"


def _filter_sql(agent_id: str, filt: MessageFilter) -> tuple[list[str], dict[str, Any]]:
    # (condition, its parameter, the value; a falsy value means "no filter")
    conditions: list[tuple[str, str, Any]] = [
        ("direction = %(direction)s", "direction", filt.direction),
        # With 'unread' this matches the partial index messages_agent_unread.
        ("inbox_status = %(status)s", "status", filt.status),
        ("sender ILIKE %(sender_like)s ESCAPE '\\'", "sender_like",
         filt.sender_contains and _contains_pattern(filt.sender_contains)),
        ("subject ILIKE %(subject_like)s ESCAPE '\\'", "subject_like",
         filt.subject_contains and _contains_pattern(filt.subject_contains)),
        ("conversation_id = %(conversation_id)s", "conversation_id", filt.conversation_id),
        ("created_at >= %(since)s", "since", filt.since),
        ("created_at < %(until)s", "until", filt.until),
        ("labels @> %(labels)s::text[]", "labels", list(filt.labels)),
        ("flagged = %(flagged)s", "flagged", filt.flagged),
    ]
    clauses = ["agent_id = %(agent_id)s", DELIVERED,
               "deleted_at IS NOT NULL" if filt.trashed else "deleted_at IS NULL"]
    params: dict[str, Any] = {"agent_id": agent_id}
    for condition, name, value in conditions:
        if value:
            clauses.append(condition)
            params[name] = value
    if filt.expression is not None:
        clauses.append(_expression_sql(filt.expression, params))
    return clauses, params


def list_for_agent(conn: psycopg.Connection, agent_id: str, filt: MessageFilter, *,
                   ascending: bool, limit: int,
                   after: tuple[datetime, str] | None) -> list[Row]:
    """One page of an agent's messages, newest first unless ``ascending``.

    ``after`` is the (created_at, id) of the last row of the previous page:
    keyset pagination stays correct while new mail arrives, and a deep page
    costs what the first one does (an index range scan on
    (agent_id, created_at, id), never an OFFSET).
    """
    clauses, params = _filter_sql(agent_id, filt)
    params["limit"] = limit
    if after:
        op = ">" if ascending else "<"
        clauses.append(f"(created_at, id) {op} (%(after_at)s, %(after_id)s)")
        params["after_at"], params["after_id"] = after
    order = "ASC" if ascending else "DESC"
    return conn.execute(
        f"""SELECT {_SUMMARY_COLUMNS}
              FROM messages WHERE {' AND '.join(clauses)}
             ORDER BY created_at {order}, id {order} LIMIT %(limit)s""",
        params).fetchall()


_DETAIL_COLUMNS = """id, direction, recipient, sender, to_recipients, cc, reply_to, subject,
                     conversation_id, size_bytes, status, labels, webhook_status,
                     webhook_error, created_at, auth_headers, raw_message, deleted_at,
                     envelope_sender, spf, dkim, dmarc, verified, delivery_status,
                     delivery_error, approval_expires_at, email_message_id,
                     hold_reason, protection, flagged, flag_reason"""


def open_for_agent(conn: psycopg.Connection, agent_id: str, message_id: str) -> Row | None:
    """One of this agent's messages in full; None when it has none by that id.

    Reading marks an unread inbound message read in the same statement: no
    window in which it was served but still counts as unread. The row shows the
    state this read leaves (an inbound message is read from now on), also to a
    concurrent reader whose snapshot predates the other's mark."""
    return conn.execute(
        f"""WITH marked AS (
                UPDATE messages SET inbox_status = 'read'
                 WHERE id = %(id)s AND agent_id = %(agent_id)s
                   AND direction = 'inbound' AND inbox_status = 'unread' AND status IS NULL)
            SELECT {_DETAIL_COLUMNS},
                   CASE WHEN direction = 'inbound' THEN 'read' END AS inbox_status
              FROM messages WHERE id = %(id)s AND agent_id = %(agent_id)s
               AND {DELIVERED}""",
        {"id": message_id, "agent_id": agent_id}).fetchone()


def peek_for_agent(conn: psycopg.Connection, agent_id: str, message_id: str) -> Row | None:
    """As open_for_agent, but its read state stays as it is (a restore
    answers the message without reading it)."""
    return conn.execute(
        f"""SELECT {_DETAIL_COLUMNS}, inbox_status FROM messages
             WHERE id = %s AND agent_id = %s AND {DELIVERED}""",
        (message_id, agent_id)).fetchone()


def labels_for_update(conn: psycopg.Connection, agent_id: str,
                      message_id: str) -> list[str] | None:
    """A message's labels, its row locked until the transaction ends so that
    concurrent label changes apply one after the other; None when missing."""
    row = conn.execute(
        "SELECT labels FROM messages WHERE id = %s AND agent_id = %s FOR UPDATE",
        (message_id, agent_id)).fetchone()
    return list(row["labels"]) if row else None


def set_labels(conn: psycopg.Connection, message_id: str, labels: list[str]) -> None:
    conn.execute("UPDATE messages SET labels = %s::text[] WHERE id = %s", (labels, message_id))


# conversation_summaries reads the newest messages first, this many rows per
# conversation asked for, more each time too few conversations were found.
_SCAN_PER_CONVERSATION = 8
_SCAN_GROWTH = 8


def conversation_summaries(conn: psycopg.Connection, agent_id: str, *,
                           conversation_id: str = "", since: datetime | None = None,
                           until: datetime | None = None, limit: int = 100,
                           after: tuple[datetime, str] | None = None) -> list[Row]:
    """Per conversation (messages sharing a non-empty conversation_id), latest
    activity first: first/last message time, counts by direction, whether an
    inbound member is unread (outbound rows never count), and the newest
    member's subject and sender. ``since``/``until`` bound the last message;
    ``after``: the (last_message_at, conversation_id) the previous page ended
    with. Trashed messages are no conversation's members.

    Grouping all of an agent's messages to find the latest conversations
    costs a scan of the whole mailbox (0.6 s at a million messages). Instead
    only the newest messages are read: every conversation met there ends no
    earlier than any conversation not met, so once ``limit`` of those met
    pass the bounds on their true latest message (an index probe: a row met
    inside a bound may belong to a conversation that ends beyond it), they
    are the page. The window grows until the page is full or the mailbox
    is read."""
    params: dict[str, Any] = {"agent_id": agent_id, "limit": limit}
    window, bounds = [], []
    if conversation_id:
        window.append("conversation_id = %(conversation_id)s")
        params["conversation_id"] = conversation_id
    if since:
        window.append("created_at >= %(since)s")
        bounds.append("t.last_message_at >= %(since)s")
        params["since"] = since
    if until:
        window.append("created_at < %(until)s")
        bounds.append("t.last_message_at < %(until)s")
        params["until"] = until
    if after:
        window.append("(created_at, conversation_id) < (%(after_at)s, %(after_id)s)")
        bounds.append("(t.last_message_at, f.conversation_id) < (%(after_at)s, %(after_id)s)")
        params["after_at"], params["after_id"] = after
    window_sql = "".join(f" AND {w}" for w in window)
    bounds_sql = f"WHERE {' AND '.join(bounds)}" if bounds else ""
    where = f"""agent_id = %(agent_id)s AND conversation_id IS NOT NULL
                AND conversation_id <> '' AND deleted_at IS NULL{window_sql}"""
    # The window: the newest rows in the index's own order, and every row of
    # the oldest one's time, so that a tie in time cuts no conversation off.
    query = f"""WITH scan AS (
                SELECT conversation_id, created_at FROM messages WHERE {where}
                 ORDER BY created_at DESC, id DESC LIMIT %(scan)s),
            met AS (
                SELECT conversation_id FROM scan
                 UNION
                SELECT conversation_id FROM messages
                 WHERE {where} AND created_at = (SELECT min(created_at) FROM scan)),
            latest AS (
                SELECT f.conversation_id, t.last_message_at FROM met f
                 CROSS JOIN LATERAL (
                       SELECT max(created_at) AS last_message_at FROM messages m
                        WHERE m.agent_id = %(agent_id)s
                          AND m.conversation_id = f.conversation_id
                          AND m.deleted_at IS NULL) t
                 {bounds_sql}
                 ORDER BY t.last_message_at DESC, f.conversation_id DESC
                 LIMIT %(limit)s)
            SELECT read.scanned, l.conversation_id, l.last_message_at, agg.first_message_at,
                   agg.message_count, agg.inbound_count, agg.outbound_count, agg.has_unread,
                   newest.subject AS latest_subject, newest.sender AS latest_sender
              FROM (SELECT count(*) AS scanned FROM scan) read
              LEFT JOIN latest l ON true
              LEFT JOIN LATERAL (
                   SELECT min(created_at) AS first_message_at, count(*) AS message_count,
                          count(*) FILTER (WHERE direction = 'inbound') AS inbound_count,
                          count(*) FILTER (WHERE direction = 'outbound') AS outbound_count,
                          coalesce(bool_or(direction = 'inbound'
                                           AND inbox_status = 'unread'), false) AS has_unread
                     FROM messages m
                    WHERE m.agent_id = %(agent_id)s AND m.deleted_at IS NULL
                      AND (m.direction = 'outbound' OR m.status IS NULL)
                      AND m.conversation_id = l.conversation_id) agg ON true
              LEFT JOIN LATERAL (
                   SELECT subject, sender FROM messages m
                    WHERE m.agent_id = %(agent_id)s AND m.conversation_id = l.conversation_id
                      AND (m.direction = 'outbound' OR m.status IS NULL)
                      AND m.deleted_at IS NULL
                    ORDER BY created_at DESC, id DESC LIMIT 1) newest ON true
             ORDER BY l.last_message_at DESC, l.conversation_id DESC"""
    scan = max(limit, 1) * _SCAN_PER_CONVERSATION
    while True:
        rows = conn.execute(query, {**params, "scan": scan}).fetchall()
        found = [r for r in rows if r["conversation_id"] is not None]
        if len(found) >= limit or rows[0]["scanned"] < scan:
            for row in found:
                del row["scanned"]
            return found
        scan *= _SCAN_GROWTH


def conversation_messages(conn: psycopg.Connection, agent_id: str,
                          conversation_id: str, *, limit: int) -> list[Row]:
    """The newest ``limit`` messages of one of this agent's conversations,
    oldest first."""
    return conn.execute(
        f"""SELECT * FROM (
                SELECT {_SUMMARY_COLUMNS} FROM messages
                 WHERE agent_id = %s AND conversation_id = %s AND deleted_at IS NULL
                   AND {DELIVERED}
                 ORDER BY created_at DESC, id DESC LIMIT %s) newest
             ORDER BY created_at, id""",
        (agent_id, conversation_id, limit)).fetchall()


def vacuum_analyze(conn: psycopg.Connection) -> None:
    """Fresh planner statistics and visibility map for the messages table, as
    autovacuum would leave them, right after a bulk load. ``conn`` is autocommit."""
    conn.execute("VACUUM (ANALYZE) messages")


def summaries_by_ids(conn: psycopg.Connection, agent_id: str, message_ids: list[str]) -> list[Row]:
    """These of the agent's messages (the ones a notification named), oldest first."""
    return conn.execute(
        f"""SELECT {_SUMMARY_COLUMNS} FROM messages
             WHERE agent_id = %s AND id = ANY(%s)
             ORDER BY created_at, id""",
        (agent_id, message_ids)).fetchall()


_INSERT_OUTBOUND = """
    INSERT INTO messages (
        id, user_id, agent_id, direction, type, recipient, sender, envelope_sender,
        to_recipients, cc, bcc, reply_to, subject, email_message_id, in_reply_to,
        references_ids, conversation_id, raw_message, size_bytes, entity_type, status,
        delivery_status, method, queue_id, dedupe_key)
    VALUES (
        %(id)s, %(user_id)s, %(agent_id)s, 'outbound', %(type)s, %(recipient)s, %(sender)s,
        %(envelope_sender)s, %(to_recipients)s, %(cc)s, %(bcc)s, %(reply_to)s, %(subject)s,
        %(email_message_id)s, %(in_reply_to)s, %(references_ids)s, %(conversation_id)s,
        %(raw_message)s, %(size_bytes)s, 'agent', %(status)s, %(delivery_status)s,
        %(method)s, %(queue_id)s, %(dedupe_key)s)
    ON CONFLICT DO NOTHING
    RETURNING id"""
# What a caller may leave out of an outbound row.
_OUTBOUND_DEFAULTS: dict[str, Any] = {"reply_to": [], "queue_id": "", "dedupe_key": None}


def insert_outbound(conn: psycopg.Connection, row: dict[str, Any]) -> str | None:
    """One message an agent sends (core/outbound/send.py; core/outbound/identify.py for mail
    sent without the API). None when its id or its (agent_id, dedupe_key) is
    taken already. An id taken by a transaction still in progress makes this
    wait for its end: the API holds its row uncommitted while Postfix takes
    the message, and the content filter may ask for the same id meanwhile."""
    found = conn.execute(_INSERT_OUTBOUND, {**_OUTBOUND_DEFAULTS, **row}).fetchone()
    return found["id"] if found else None


def held_inbound(conn: psycopg.Connection, message_id: str, user_id: str) -> Row | None:
    """A received message of ``user_id``'s held for review, in full, its
    inbox state left alone (the review pages read it, not the agent)."""
    return conn.execute(
        f"""SELECT {_DETAIL_COLUMNS}, inbox_status, agent_id FROM messages
             WHERE id = %s AND user_id = %s AND direction = 'inbound'
               AND status = 'pending_approval'""",
        (message_id, user_id)).fetchone()


def inbound_for_agent(conn: psycopg.Connection, agent_id: str, message_id: str) -> Row | None:
    """One of this agent's received messages, for a reply or a forward; its
    inbox state is left alone (a reply is not a read)."""
    return conn.execute(
        """SELECT id, sender, reply_to, to_recipients, cc, subject, email_message_id,
                  in_reply_to, references_ids, conversation_id, raw_message, created_at
             FROM messages
            WHERE id = %s AND agent_id = %s AND direction = 'inbound' AND status IS NULL""",
        (message_id, agent_id)).fetchone()


def _locked(conn: psycopg.Connection, agent_id: str, message_id: str) -> Row | None:
    """The message's trash state and status, its row locked until the
    transaction ends; None when the agent has no such message."""
    return conn.execute(
        """SELECT id, status, deleted_at FROM messages
            WHERE id = %s AND agent_id = %s FOR UPDATE""",
        (message_id, agent_id)).fetchone()


def trash(conn: psycopg.Connection, agent_id: str, message_id: str) -> Row | None:
    """Move a live message to the trash; the row as it was (None: no such
    message of this agent). A held message stays where it is: its owner
    decides it first (the caller answers 409 on ``status``)."""
    row = _locked(conn, agent_id, message_id)
    if row and row["deleted_at"] is None and row["status"] != "pending_approval":
        conn.execute("UPDATE messages SET deleted_at = clock_timestamp() WHERE id = %s",
                     (message_id,))
    return row


def restore(conn: psycopg.Connection, agent_id: str, message_id: str) -> Row | None:
    """Take a message out of the trash; the row as it was (None: missing)."""
    row = _locked(conn, agent_id, message_id)
    if row and row["deleted_at"] is not None:
        conn.execute("UPDATE messages SET deleted_at = NULL WHERE id = %s", (message_id,))
    return row


def erase_trashed(conn: psycopg.Connection, agent_id: str, message_id: str) -> Row | None:
    """Erase a message that is in the trash; the row as it was (None: missing).
    A live one is left alone (the caller answers 409)."""
    row = _locked(conn, agent_id, message_id)
    if row and row["deleted_at"] is not None:
        conn.execute("DELETE FROM messages WHERE id = %s", (message_id,))
    return row


def conversation_owned_by_other(conn: psycopg.Connection, conversation_id: str,
                                user_id: str) -> bool:
    """Whether a message of an owner other than ``user_id`` carries this
    conversation id (messages_conversation_id, sql/012)."""
    return conn.execute(
        """SELECT 1 FROM messages WHERE conversation_id = %s AND user_id <> %s LIMIT 1""",
        (conversation_id, user_id)).fetchone() is not None


def direction_for_agent(conn: psycopg.Connection, agent_id: str, message_id: str) -> str | None:
    """inbound | outbound for one of this agent's messages (trashed too);
    None when it has none by that id."""
    row = conn.execute("SELECT direction FROM messages WHERE id = %s AND agent_id = %s",
                       (message_id, agent_id)).fetchone()
    return row["direction"] if row else None


def announce_inbound(conn: psycopg.Connection, row: Row, *, event_id: str,
                     event_data: dict[str, Any], notify_payload: str) -> None:
    """A received message released from review: its email.received event and
    the NOTIFYs store_inbound sends for one delivered at once."""
    conn.execute(
        f"""WITH queued AS (
                INSERT INTO events (id, user_id, agent_id, message_id, conversation_id,
                                    type, data)
                VALUES (%(event_id)s, %(user_id)s, %(agent_id)s, %(id)s, %(conversation_id)s,
                        'email.received', %(event_data)s))
            SELECT pg_notify('{INBOUND_CHANNEL}', %(notify_payload)s),
                   pg_notify('{EVENTS_CHANNEL}', '')""",
        {"event_id": event_id, "user_id": row["user_id"], "agent_id": row["agent_id"],
         "id": row["id"], "conversation_id": row["conversation_id"],
         "event_data": Jsonb(event_data), "notify_payload": notify_payload})
