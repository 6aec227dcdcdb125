"""``GET /api/v1/agents/{email}/ws?token=<key>``: a local-mode agent's
notifications of new mail, pushed over a WebSocket (frames and close codes:
CONTRACT.md; the session itself: api/wsession.py).

gevent-websocket has accepted the upgrade before the application runs, so
every refusal is a close frame: 1008 for a bad key, an agent that is not the
key's (the same answer whether it exists or not) and a cloud-mode agent,
and later for the key's revocation (api/wsession.py).
Cloud-mode agents get their mail POSTed to their webhook by the worker, with
retries and a delivery status on the message; a WebSocket beside it would be
a second, unaccounted channel for the same mail, so it is refused with a
reason that says where the mail goes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon
import psycopg
from psycopg_pool import ConnectionPool

from e2a.api import auth, errors, opdoc
from e2a.api.realtime import Hub, Unavailable
from e2a.api.wschannel import POLICY_VIOLATION, Channel
from e2a.api.wsession import Render, Session, notifications
from e2a.core.config import Config

TRY_AGAIN_LATER = 1013

_TOKEN = opdoc.query_param("token", "An API key: the account key of the agent's owner, or a "
                                    "key scoped to this agent", required=True)


class Refused(Exception):
    pass


def serve(pool: ConnectionPool, hub: Hub, ping_seconds: float, channel: Channel,
          find: Callable[[], tuple[str, str]], render: Render = notifications) -> None:
    """One socket of either API generation: ``find()`` names the agent and
    the key (agent id, key id) or raises Refused (close 1008); ``render``
    makes the frames."""
    try:
        agent_id, key_id = find()
        sub = hub.subscribe(agent_id, channel, key_id)
    except Refused as exc:
        channel.close(POLICY_VIOLATION, str(exc))
        return
    except Unavailable as exc:
        channel.close(exc.code, exc.reason)
        return
    except psycopg.Error:
        channel.close(TRY_AGAIN_LATER, "database unavailable, try again later")
        return
    try:
        Session(pool, channel, sub, ping_seconds, render=render).run()
    finally:
        hub.unsubscribe(sub)


class AgentSocket:
    # The key comes as ?token= (browsers' WebSocket cannot set headers) and
    # is checked here; a refusal must be a close frame, not an HTTP 401.
    public = True
    doc = {
        "get": {
            "summary": "Listen for new mail over a WebSocket",
            "description": (
                "Local-mode agents only. Server-to-client text frames, one per inbound "
                "message: {message_id, conversation_id, from, recipient, subject, "
                "received_at}. On connect every unread inbound message is sent, oldest "
                "first, then new mail as it arrives. Ping every 30 s. A second connection "
                "for the agent closes the first with 4000. Close 1008: invalid key, agent "
                "not found or not the key's, a cloud-mode agent, or the key revoked "
                "while connected; 1001: server shutting "
                "down; 1013: database unavailable or client too far behind (reconnect)."),
            "operationId": "listenAgent",
            "tags": ["Messages"],
            "parameters": [opdoc.AGENT_EMAIL, _TOKEN],
            "responses": {
                "101": {"description": "Switching Protocols: the WebSocket is open"},
                "426": opdoc.error("Not a WebSocket upgrade request"),
            },
        },
    }

    def __init__(self, cfg: Config, pool: ConnectionPool, hub: Hub) -> None:
        self._pool = pool
        self._hub = hub
        self._ping_seconds = cfg.http.ws_ping_seconds

    def on_get(self, req: falcon.Request, resp: falcon.Response, email: str) -> None:
        ws = req.env.get("wsgi.websocket")
        if ws is None:
            raise errors.ApiError(426, "upgrade_required",
                                  "this endpoint speaks WebSocket only",
                                  headers={"Upgrade": "websocket"})
        def find() -> tuple[str, str]:
            principal, agent = self._agent(req.get_param("token") or "", email)
            return agent["id"], principal.key_id

        serve(self._pool, self._hub, self._ping_seconds, Channel(ws), find)

    def _agent(self, token: str, email: str) -> tuple[auth.Principal, dict[str, Any]]:
        try:
            principal = auth.authenticate_key(self._pool, token)
            with self._pool.connection() as conn:
                agent = auth.agent_for(conn, principal, email)
        except errors.ApiError as exc:
            raise Refused(exc.description or "refused") from None
        if agent["agent_mode"] != "local":
            raise Refused("cloud-mode agent: its mail is delivered to its webhook")
        return principal, agent
