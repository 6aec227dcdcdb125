"""``/v1/agents/{email}/conversations[/{id}]``: an agent's mail grouped by
its caller-owned conversation_id, latest activity first."""

from __future__ import annotations

import falcon
from psycopg_pool import ConnectionPool

from e2a.api.v1 import access, cursors, params, views
from e2a.api.v1.errors import not_found
from e2a.core import conversations
from e2a.core.config import Config
from e2a.core.store import messages as message_store

# Members shown in one conversation's detail: anyone can add to a thread by
# mailing the agent in it, so the answer must not grow with it (the message
# list pages through all of them by conversation_id).
MAX_CONVERSATION_MESSAGES = 200


class Conversations:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._secret = cfg.secrets.hmac_secret
        self._pool = pool

    def on_get(self, req: falcon.Request, resp: falcon.Response, email: str) -> None:
        since = params.timestamp(req, "since")
        until = params.timestamp(req, "until")
        limit = params.limit(req)
        with self._pool.connection() as conn:
            agent = access.agent(conn, req, email)
            bound = cursors.scope(req, "conversations", agent=agent["id"],
                                  since=since.isoformat() if since else None,
                                  until=until.isoformat() if until else None)
            after = cursors.position(req, self._secret, bound)
            rows = message_store.conversation_summaries(conn, agent["id"], since=since,
                                                        until=until, limit=limit + 1,
                                                        after=after)
        resp.media = cursors.page(rows, limit, self._secret, bound,
                                  views.conversation_summary,
                                  lambda r: (r["last_message_at"], r["conversation_id"]))


class Conversation:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def on_get(self, req: falcon.Request, resp: falcon.Response, email: str,
               id: str) -> None:
        with self._pool.connection() as conn:
            agent = access.agent(conn, req, email)
            found = conversations.load(conn, agent["id"], id,
                                       max_members=MAX_CONVERSATION_MESSAGES)
        if found is None:
            raise not_found(f"conversation {id} not found")
        resp.media = views.conversation(found.summary, found.members,
                                        participants=found.participants,
                                        labels=found.labels)
