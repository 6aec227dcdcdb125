"""``/api/v1/agents/{email}/conversations[/{id}]``: an agent's mail grouped by
conversation_id. Messages without one belong to no conversation."""

from __future__ import annotations

import falcon
from psycopg_pool import ConnectionPool

from e2a.api import auth, errors, inputs, opdoc, views
from e2a.core import conversations
from e2a.core.store import messages as message_store

# No pagination (as in e2a): the latest conversations, at most this many.
MAX_CONVERSATIONS = 100
# Members shown in one conversation's detail: anyone can add to a thread by
# mailing the agent in it, so the answer must not grow with it.
MAX_CONVERSATION_MESSAGES = 200


class AgentConversations:
    doc = {
        "get": {
            "summary": "List conversations for an agent",
            "description": "One summary per non-empty conversation_id, latest activity "
                           f"first, at most {MAX_CONVERSATIONS}; since/until bound "
                           "last_message_at.",
            "operationId": "listConversations",
            "tags": ["Conversations"],
            "parameters": [
                opdoc.AGENT_EMAIL,
                opdoc.query_param("since", "RFC 3339; only conversations whose latest "
                                  "message is at or after this",
                                  {"type": "string", "format": "date-time"}),
                opdoc.query_param("until", "RFC 3339; only conversations whose latest "
                                  "message is before this",
                                  {"type": "string", "format": "date-time"}),
                opdoc.query_param("page_size", "Most conversations to return (default and "
                                  f"maximum {MAX_CONVERSATIONS}; larger values are clamped)",
                                  {"type": "integer", "minimum": 1}),
            ],
            "responses": {
                "200": opdoc.ok("ListConversationsResponse"),
                "400": opdoc.error("Invalid since/until or page_size"),
                "401": opdoc.UNAUTHORIZED,
                "404": opdoc.error("Agent not found or not yours"),
            },
        },
    }

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
    doc = {
        "get": {
            "summary": "Get a conversation",
            "description": "Counts of all members; the newest "
                           f"{MAX_CONVERSATION_MESSAGES} member messages oldest first, with "
                           "their participants and labels (the message list pages through "
                           "all of them by conversation_id).",
            "operationId": "getConversation",
            "tags": ["Conversations"],
            "parameters": [opdoc.AGENT_EMAIL, opdoc.path_param("id", "Conversation ID")],
            "responses": {
                "200": opdoc.ok("ConversationDetail"),
                "401": opdoc.UNAUTHORIZED,
                "404": opdoc.error("Conversation not found"),
            },
        },
    }

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
