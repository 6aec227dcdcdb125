"""``GET /v1/agents/{email}/ws``: the current SDK's ``listen()``. The key
comes as ``Authorization: Bearer`` on the upgrade; each text frame is the
``email.received`` event envelope of a message, the same ``id`` and ``data``
its /v1 webhook delivery carries (core/v1events over the one event log).
Unread mail is drained on connect (not marked read), then new mail is pushed;
a newer connection for the agent closes this one with 4000. The session
itself (claim, drain, live frames, pings, revocation) is the legacy socket's
(api/wsession.py), only the frames differ.

gevent-websocket has accepted the upgrade before the application runs, so a
refusal (bad key, another tenant's or a missing agent, an agent key for
another agent) is a close frame, 1008 with the /v1 error code as reason;
the SDK treats it as final, as it does an HTTP 4xx."""

from __future__ import annotations

import hashlib
from typing import Any

import falcon
from psycopg_pool import ConnectionPool

from e2a.api import auth
from e2a.api.errors import ApiError
from e2a.api.realtime import Hub
from e2a.api.resources.websocket import Refused, serve
from e2a.api.v1 import access
from e2a.api.v1.errors import error
from e2a.api.wschannel import Channel
from e2a.core import eventtypes, v1events
from e2a.core.config import Config
from e2a.core.store import events as event_store


def _event_id(message_id: str) -> str:
    """For mail stored without its event (none is, but a frame needs an id):
    derived from the message, as e2a derives trigger ids, so it is stable."""
    digest = hashlib.sha256(f"{message_id}|{eventtypes.EMAIL_RECEIVED}".encode()).hexdigest()
    return "evt_" + digest[:32]


def frames(pool: ConnectionPool, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    with pool.connection() as conn:
        stored = event_store.received_for_messages(conn, [r["id"] for r in rows])
    out = []
    for row in rows:
        event = stored.get(row["id"])
        if event is not None:
            out.append(v1events.envelope(event["id"], event["type"], event["created_at"],
                                         event["data"] or {}, event["agent_email"]))
            continue
        data = {"message_id": row["id"], "recipient": row["recipient"],
                "from": row["sender"], "subject": row["subject"],
                "conversation_id": row["conversation_id"] or ""}
        out.append(v1events.envelope(_event_id(row["id"]), eventtypes.EMAIL_RECEIVED,
                                     row["created_at"], data, row["recipient"]))
    return out


class AgentSocket:
    # Authenticated here: a refusal must be a close frame (see above).
    public = True

    def __init__(self, cfg: Config, pool: ConnectionPool, hub: Hub) -> None:
        self._pool = pool
        self._hub = hub
        self._ping_seconds = cfg.http.ws_ping_seconds

    def on_get(self, req: falcon.Request, resp: falcon.Response, email: str) -> None:
        ws = req.env.get("wsgi.websocket")
        if ws is None:
            raise error(426, "upgrade_required", "this endpoint speaks WebSocket only")
        def find() -> tuple[str, str]:
            try:
                agent, key_id = self._agent(req, email)
            except ApiError as exc:
                raise Refused(exc.api_code or "forbidden") from None
            return agent["id"], key_id

        serve(self._pool, self._hub, self._ping_seconds, Channel(ws), find, render=frames)

    def _agent(self, req: falcon.Request, email: str) -> tuple[dict[str, Any], str]:
        scheme, _, token = (req.get_header("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise error(401, "unauthorized", "Authorization: Bearer <key> is required")
        req.context.principal = auth.authenticate_key(self._pool, token.strip())
        with self._pool.connection() as conn:
            agent = access.agent(conn, req, email)
        return agent, req.context.principal.key_id
