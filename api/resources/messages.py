"""``/api/v1/agents/{email}/messages[/{id}]``: an agent's mailbox: the
filtered listing, one message in full (reading marks it read), its labels."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import falcon
from psycopg_pool import ConnectionPool

from e2a.api import auth, errors, inputs, pagination, views
from e2a.core.config import Config
from e2a.core.messages import labels, mailbox
from e2a.core.store import messages as message_store
from e2a.core.store.messages import MessageFilter

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
MAX_SEARCH_LENGTH = 200
# Conversation ids arrive from other agents' sends (core/inbound/inbox.py keeps 200
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


class AgentMessages:
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


class AgentMessage:
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
