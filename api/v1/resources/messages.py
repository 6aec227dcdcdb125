"""``/v1/agents/{email}/messages[/{id}[/restore]]``: an agent's mailbox,
over the same store and mailbox rules as the legacy API."""

from __future__ import annotations

from typing import Any

import falcon
from psycopg_pool import ConnectionPool

from e2a.api.v1 import access, bodies, cursors, params, views
from e2a.api.v1.errors import error, invalid, not_found
from e2a.api.v1.resources import sending
from e2a.api.v1.resources.account import confirmed
from e2a.core.config import Config
from e2a.core.messages import filterexpr, labels, mailbox
from e2a.core.store import messages as message_store
from e2a.core.store.messages import MessageFilter

MAX_SEARCH_LENGTH = 200
MAX_CONVERSATION_ID_LENGTH = 200
MAX_LABELS_PER_LIST = 50
_LABELS = {"add_labels": bodies.Field(list, max_length=MAX_LABELS_PER_LIST),
           "remove_labels": bodies.Field(list, max_length=MAX_LABELS_PER_LIST)}
_MAILBOX_STATUS = {"not_found": 404, "message_held": 409, "not_in_trash": 409}


def _label_filter(req: falcon.Request) -> tuple[str, ...]:
    wanted = params.csv(req, "labels")
    if len(wanted) > MAX_LABELS_PER_LIST:
        raise invalid("query.labels", f"at most {MAX_LABELS_PER_LIST} labels")
    try:
        return tuple(sorted({labels.check(label, "labels") for label in wanted}))
    except labels.LabelError as exc:
        raise invalid("query.labels", str(exc)) from None


def _written(req: falcon.Request) -> str:
    """The ``filter`` expression as written (``q`` in an older revision of
    upstream's docs)."""
    return req.get_param("filter") or req.get_param("q") or ""


def _expression(req: falcon.Request) -> filterexpr.Node | None:
    written = _written(req)
    if not written:
        return None
    try:
        return filterexpr.parse(written)
    except filterexpr.FilterError as exc:
        raise error(400, "invalid_filter", str(exc), fields=[
            {"location": "query.filter", "message": str(exc)}]) from None


def message_filter(req: falcon.Request) -> tuple[MessageFilter, str]:
    """The listing's filter and sort order from the SDK's parameters: the
    flat ones and the ``filter`` expression, ANDed. The trash view defaults
    direction and read_status to all."""
    expression = _expression(req)
    trashed = params.boolean(req, "deleted")
    direction = params.choice(req, "direction", ("inbound", "outbound", "all"),
                              "all" if trashed else "inbound")
    read_default = "unread" if direction == "inbound" and not trashed else "all"
    read_status = params.choice(req, "read_status", ("unread", "read", "all"), read_default)
    filt = MessageFilter(
        direction=None if direction == "all" else direction,
        # Read state is an inbound notion: it narrows nothing else.
        status=None if read_status == "all" or direction == "outbound" else read_status,
        sender_contains=params.text(req, "from", max_length=MAX_SEARCH_LENGTH),
        subject_contains=params.text(req, "subject_contains", max_length=MAX_SEARCH_LENGTH),
        conversation_id=params.text(req, "conversation_id",
                                    max_length=MAX_CONVERSATION_ID_LENGTH),
        since=params.timestamp(req, "since"),
        until=params.timestamp(req, "until"),
        labels=_label_filter(req),
        trashed=trashed,
        expression=expression)
    return filt, params.choice(req, "sort", ("asc", "desc"), "desc")


def _filter_scope(filt: MessageFilter, sort: str, written: str) -> dict[str, Any]:
    return {"filter": written, "direction": filt.direction, "status": filt.status, "sort": sort,
            "from": filt.sender_contains, "subject": filt.subject_contains,
            "conversation_id": filt.conversation_id,
            "since": filt.since.isoformat() if filt.since else None,
            "until": filt.until.isoformat() if filt.until else None,
            "labels": list(filt.labels), "deleted": filt.trashed}


def _refused(exc: mailbox.MailboxError) -> Exception:
    return error(_MAILBOX_STATUS.get(exc.code, 409), exc.code, str(exc))


class Messages:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._secret = cfg.secrets.hmac_secret
        self._pool = pool
        self._sender = sending.Sender(cfg, pool)

    def on_post(self, req: falcon.Request, resp: falcon.Response, email: str) -> None:
        sending.send(self._sender, req, resp, email)

    def on_get(self, req: falcon.Request, resp: falcon.Response, email: str) -> None:
        filt, sort = message_filter(req)
        written = _written(req)
        limit = params.limit(req)
        with self._pool.connection() as conn:
            agent = access.agent(conn, req, email)
            bound = cursors.scope(req, "messages", agent=agent["id"],
                                  **_filter_scope(filt, sort, written))
            after = cursors.position(req, self._secret, bound)
            rows = message_store.list_for_agent(conn, agent["id"], filt,
                                                ascending=sort == "asc", limit=limit + 1,
                                                after=after)
        resp.media = cursors.page(rows, limit, self._secret, bound, views.message_summary,
                                  lambda r: (r["created_at"], r["id"]))


class Message:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._authserv_id = cfg.mail.authserv_id
        self._pool = pool

    def on_get(self, req: falcon.Request, resp: falcon.Response, email: str,
               id: str) -> None:
        with self._pool.connection() as conn:
            agent = access.agent(conn, req, email)
            row = message_store.open_for_agent(conn, agent["id"], id)
        if row is None:
            raise not_found(f"message {id} not found")
        resp.media = views.message(row, self._authserv_id)

    def on_patch(self, req: falcon.Request, resp: falcon.Response, email: str,
                 id: str) -> None:
        with self._pool.connection() as conn:
            agent = access.agent(conn, req, email)
            body = bodies.read(req, _LABELS)
            try:
                delta = labels.Delta.parse(body.get("add_labels"), body.get("remove_labels"))
                updated = mailbox.relabel(conn, agent["id"], id, delta)
            except labels.LabelError as exc:
                raise invalid(f"body.{exc.field}", str(exc)) from None
            except mailbox.MailboxError as exc:
                raise _refused(exc) from None
        resp.media = {"message_id": id, "labels": updated}

    def on_delete(self, req: falcon.Request, resp: falcon.Response, email: str,
                  id: str) -> None:
        permanent = params.boolean(req, "permanent")
        with self._pool.connection() as conn:
            # Erasure is for account keys; trash for any key of the agent.
            agent = access.agent(conn, req, email, account_only=permanent)
            if permanent:
                confirmed(req)
            try:
                (mailbox.erase if permanent else mailbox.trash)(conn, agent["id"], id)
            except mailbox.MailboxError as exc:
                raise _refused(exc) from None
        resp.media = {"deleted": True, "id": id}


class MessageRestore:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._authserv_id = cfg.mail.authserv_id
        self._pool = pool

    def on_post(self, req: falcon.Request, resp: falcon.Response, email: str,
                id: str) -> None:
        bodies.no_body(req)
        with self._pool.connection() as conn:
            agent = access.agent(conn, req, email)
            try:
                mailbox.restore(conn, agent["id"], id)
            except mailbox.MailboxError as exc:
                raise _refused(exc) from None
            row = message_store.peek_for_agent(conn, agent["id"], id)
        if row is None:
            raise not_found(f"message {id} not found")
        resp.media = views.message(row, self._authserv_id)
