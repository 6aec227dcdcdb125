"""``/api/v1/agents/{email}/messages``: an agent's mailbox."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import falcon
from psycopg_pool import ConnectionPool

from e2a.api import auth, errors, pagination, views
from e2a.core.config import Config
from e2a.core.store import messages as message_store

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100


def _choice(req: falcon.Request, name: str, allowed: tuple[str, ...], default: str) -> str:
    value = req.get_param(name) or default
    if value not in allowed:
        raise errors.bad_request(f"{name} must be one of {', '.join(allowed)}", param=name)
    return value


def _page_size(req: falcon.Request) -> int:
    raw = req.get_param("page_size")
    if raw is None or raw == "":
        return DEFAULT_PAGE_SIZE
    if not raw.isdigit() or int(raw) < 1:
        raise errors.bad_request(f"page_size must be an integer from 1 to {MAX_PAGE_SIZE}",
                                 param="page_size")
    # Larger asks get the largest page and a next_token, not an error.
    return min(int(raw), MAX_PAGE_SIZE)


@dataclass(frozen=True)
class MessageQuery:
    direction: str  # inbound | outbound | all
    status: str  # "" | unread | read
    sort: str  # desc | asc
    page_size: int
    token: str

    @classmethod
    def from_request(cls, req: falcon.Request) -> MessageQuery:
        return cls(
            direction=_choice(req, "direction", ("inbound", "outbound", "all"), "inbound"),
            status=_choice(req, "status", ("", "unread", "read"), ""),
            sort=_choice(req, "sort", ("desc", "asc"), "desc"),
            page_size=_page_size(req),
            token=req.get_param("token") or "",
        )

    def scope(self, agent_id: str) -> dict[str, Any]:
        """Everything that decides which rows the listing holds (not the page
        size, which may change between pages)."""
        return {"agent_id": agent_id, "direction": self.direction, "status": self.status,
                "sort": self.sort}


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
                conn, agent["id"],
                direction=None if query.direction == "all" else query.direction,
                status=query.status or None, ascending=query.sort == "asc",
                limit=query.page_size + 1, after=after)
        page = rows[:query.page_size]
        next_token = ""
        if len(rows) > query.page_size:
            last = page[-1]
            next_token = pagination.encode(self._secret, scope, (last["created_at"], last["id"]))
        resp.media = {"messages": [views.message_summary(r) for r in page],
                      "next_token": next_token}
