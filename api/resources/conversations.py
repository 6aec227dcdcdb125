"""``/api/v1/agents/{email}/conversations[/{id}]``: an agent's mail grouped by
conversation_id. Messages without one belong to no conversation."""

from __future__ import annotations

import falcon
from psycopg_pool import ConnectionPool

from e2a.api import auth, errors, inputs, views
from e2a.core.messages import conversations
from e2a.core.store import messages as message_store

# No pagination (as in e2a): the latest conversations, at most this many.
MAX_CONVERSATIONS = 100
# Members shown in one conversation's detail: anyone can add to a thread by
# mailing the agent in it, so the answer must not grow with it.
MAX_CONVERSATION_MESSAGES = 200


class AgentConversations:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def on_get(self, req: falcon.Request, resp: falcon.Response, email: str) -> None:
        since = inputs.timestamp(req, "since")
        until = inputs.timestamp(req, "until")
        limit = inputs.page_size(req, default=MAX_CONVERSATIONS, maximum=MAX_CONVERSATIONS)
        with self._pool.connection() as conn:
            agent = auth.agent_for(conn, req.context.principal, email)
            rows = message_store.conversation_summaries(conn, agent["id"], since=since,
                                                        until=until, limit=limit)
        resp.media = {"conversations": [views.conversation_summary(r) for r in rows]}


class AgentConversation:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def on_get(self, req: falcon.Request, resp: falcon.Response, email: str, id: str) -> None:
        with self._pool.connection() as conn:
            agent = auth.agent_for(conn, req.context.principal, email)
            found = conversations.load(conn, agent["id"], id,
                                       max_members=MAX_CONVERSATION_MESSAGES)
        if found is None:
            raise errors.not_found(f"conversation {id} not found")
        resp.media = views.conversation_detail(
            found.summary, found.members, participants=found.participants,
            labels=found.labels)
