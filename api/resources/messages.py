"""``/api/v1/agents/{email}/messages[/{id}]``: an agent's mailbox: the
filtered listing, one message in full (reading marks it read), its labels."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import falcon
from psycopg_pool import ConnectionPool

from e2a.api import auth, errors, inputs, opdoc, pagination, views
from e2a.core import labels, mailbox
from e2a.core.config import Config
from e2a.core.store import messages as message_store
from e2a.core.store.messages import MessageFilter

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
MAX_SEARCH_LENGTH = 200
# Conversation ids arrive from other agents' sends (core/inbound.py keeps 200
# characters); the cap only stops absurd query strings.
MAX_CONVERSATION_ID_LENGTH = 255


def _label_filter(req: falcon.Request) -> tuple[str, ...]:
    wanted = inputs.string_list(req, "labels")
    if len(wanted) > labels.MAX_PER_REQUEST:
        raise errors.bad_request(f"labels: at most {labels.MAX_PER_REQUEST} labels",
                                 param="labels")
    try:
        return tuple(sorted({labels.check(label, "labels") for label in wanted}))
    except labels.LabelError as exc:
        raise errors.bad_request(str(exc), param="labels") from None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


@dataclass(frozen=True)
class MessageQuery:
    filter: MessageFilter
    sort: str  # desc | asc
    page_size: int
    token: str

    @classmethod
    def from_request(cls, req: falcon.Request) -> MessageQuery:
        direction = inputs.choice(req, "direction", ("inbound", "outbound", "all"), "inbound")
        # "all" is what the TypeScript SDK sends for "no status filter".
        status = inputs.choice(req, "status", ("", "unread", "read", "all"), "")
        return cls(
            filter=MessageFilter(
                direction=None if direction == "all" else direction,
                status=None if status in ("", "all") else status,
                sender_contains=inputs.text(req, "from", max_length=MAX_SEARCH_LENGTH),
                subject_contains=inputs.text(req, "subject_contains",
                                             max_length=MAX_SEARCH_LENGTH),
                conversation_id=inputs.text(req, "conversation_id",
                                            max_length=MAX_CONVERSATION_ID_LENGTH),
                since=inputs.timestamp(req, "since"),
                until=inputs.timestamp(req, "until"),
                labels=_label_filter(req),
            ),
            sort=inputs.choice(req, "sort", ("desc", "asc"), "desc"),
            page_size=inputs.page_size(req, default=DEFAULT_PAGE_SIZE, maximum=MAX_PAGE_SIZE),
            token=req.get_param("token") or "",
        )

    def scope(self, agent_id: str) -> dict[str, Any]:
        """Everything that decides which rows the listing holds (not the page
        size, which may change between pages), normalised so that spellings of
        the same listing (``status=all`` or none, ``Z`` or ``+00:00``) agree."""
        filt = self.filter
        return {"agent_id": agent_id, "direction": filt.direction or "all",
                "status": filt.status or "", "sort": self.sort,
                "from": filt.sender_contains, "subject_contains": filt.subject_contains,
                "conversation_id": filt.conversation_id, "since": _iso(filt.since),
                "until": _iso(filt.until), "labels": list(filt.labels)}


_LIST_PARAMS = [
    opdoc.AGENT_EMAIL,
    opdoc.query_param("direction", "inbound (default), outbound or all",
                      {"type": "string", "enum": ["inbound", "outbound", "all"]}),
    opdoc.query_param("status", "Inbox status of inbound messages; all (or none) for both",
                      {"type": "string", "enum": ["unread", "read", "all"]}),
    opdoc.query_param("page_size", f"Messages per page, 1-{MAX_PAGE_SIZE} (default "
                      f"{DEFAULT_PAGE_SIZE}; larger values are clamped)",
                      {"type": "integer", "minimum": 1}),
    opdoc.query_param("sort", "By created_at: desc (default, newest first) or asc (FIFO)",
                      {"type": "string", "enum": ["desc", "asc"]}),
    opdoc.query_param("from", "Case-insensitive substring of the sender address; % and _ "
                      f"match themselves. At most {MAX_SEARCH_LENGTH} characters.",
                      {"type": "string", "maxLength": MAX_SEARCH_LENGTH}),
    opdoc.query_param("subject_contains", "Case-insensitive substring of the subject. "
                      f"At most {MAX_SEARCH_LENGTH} characters.",
                      {"type": "string", "maxLength": MAX_SEARCH_LENGTH}),
    opdoc.query_param("conversation_id", "Exact conversation_id: one thread",
                      {"type": "string", "maxLength": MAX_CONVERSATION_ID_LENGTH}),
    opdoc.query_param("since", "RFC 3339 timestamp; only messages with created_at >= since",
                      {"type": "string", "format": "date-time"}),
    opdoc.query_param("until", "RFC 3339 timestamp; only messages with created_at < until",
                      {"type": "string", "format": "date-time"}),
    opdoc.query_param("labels", "Only messages carrying every one of these labels "
                      "(comma-separated, or the parameter repeated); at most "
                      f"{labels.MAX_PER_REQUEST}",
                      {"type": "array", "items": {"type": "string"}}, style="form",
                      explode=True),
    opdoc.query_param("token", "next_token of the previous page; the other parameters "
                      "(but page_size) must stay the same"),
]


class AgentMessages:
    doc = {
        "get": {
            "summary": "List messages for an agent",
            "description": "Newest first unless sort=asc. Filters are sealed into the "
                           "signed next_token: a continuation with other filters is a 400.",
            "operationId": "listMessages",
            "tags": ["Messages"],
            "parameters": _LIST_PARAMS,
            "responses": {
                "200": opdoc.ok("ListMessagesResponse"),
                "400": opdoc.error("Invalid parameter or pagination token, or a token "
                                   "issued for other filters"),
                "401": opdoc.UNAUTHORIZED,
                "404": opdoc.error("Agent not found or not yours"),
            },
        },
    }

    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._secret = cfg.secrets.hmac_secret
        self._pool = pool

    def on_get(self, req: falcon.Request, resp: falcon.Response, email: str) -> None:
        query = MessageQuery.from_request(req)
        with self._pool.connection() as conn:
            agent = auth.agent_for(conn, req.context.principal, email)
            scope = query.scope(agent["id"])
            after = pagination.decode(self._secret, scope, query.token) if query.token else None
            # One row more than asked says whether another page exists.
            rows = message_store.list_for_agent(
                conn, agent["id"], query.filter, ascending=query.sort == "asc",
                limit=query.page_size + 1, after=after)
        page = rows[:query.page_size]
        next_token = ""
        if len(rows) > query.page_size:
            last = page[-1]
            next_token = pagination.encode(self._secret, scope, (last["created_at"], last["id"]))
        resp.media = {"messages": [views.message_summary(r) for r in page],
                      "next_token": next_token}


_MESSAGE_ID = opdoc.path_param("id", "Message ID (msg_...)")


class AgentMessage:
    doc = {
        "get": {
            "summary": "Get a single message",
            "description": "The full message: raw RFC 5322 bytes (base64) and the "
                           "X-E2A-Auth-* headers. Marks an unread inbound message read.",
            "operationId": "getMessage",
            "tags": ["Messages"],
            "parameters": [opdoc.AGENT_EMAIL, _MESSAGE_ID],
            "responses": {
                "200": opdoc.ok("MessageDetail"),
                "401": opdoc.UNAUTHORIZED,
                "404": opdoc.error("Message not found"),
            },
        },
        "patch": {
            "summary": "Update a message (labels)",
            "description": "Applies a label delta and answers the resulting labels. Labels: "
                           f"[a-z0-9:_-], 1-{labels.MAX_LENGTH} characters, at most "
                           f"{labels.MAX_PER_REQUEST} per list, {labels.MAX_PER_MESSAGE} per "
                           f"message; the {labels.SYSTEM_PREFIX!r} prefix is reserved. A label "
                           "in both lists is removed. An empty body changes nothing.",
            "operationId": "updateMessage",
            "tags": ["Messages"],
            "parameters": [opdoc.AGENT_EMAIL, _MESSAGE_ID],
            "requestBody": opdoc.body("UpdateMessageRequest", "Label delta"),
            "responses": {
                "200": opdoc.ok("UpdateMessageResponse"),
                "400": opdoc.error("Invalid label or per-message cap exceeded"),
                "401": opdoc.UNAUTHORIZED,
                "404": opdoc.error("Message not found"),
            },
        },
    }

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def on_get(self, req: falcon.Request, resp: falcon.Response, email: str, id: str) -> None:
        with self._pool.connection() as conn:
            agent = auth.agent_for(conn, req.context.principal, email)
            row = message_store.open_for_agent(conn, agent["id"], id)
        if row is None:
            raise errors.not_found(f"message {id} not found")
        resp.media = views.message_detail(row)

    def on_patch(self, req: falcon.Request, resp: falcon.Response, email: str,
                 id: str) -> None:
        body = inputs.json_object(req)
        try:
            delta = labels.Delta.parse(body.get("add_labels"), body.get("remove_labels"))
            with self._pool.connection() as conn:
                agent = auth.agent_for(conn, req.context.principal, email)
                updated = mailbox.relabel(conn, agent["id"], id, delta)
        except labels.LabelError as exc:
            raise errors.bad_request(str(exc), param=exc.field) from None
        except mailbox.MailboxError as exc:
            raise errors.not_found(str(exc)) from None
        resp.media = views.labels_update(id, updated)
