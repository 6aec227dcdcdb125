"""The Falcon application: routes, middleware, error rendering."""

from __future__ import annotations

import falcon
from psycopg_pool import ConnectionPool

from e2a.api import errors, middleware
from e2a.api.resources.health import Health
from e2a.api.resources.info import Info
from e2a.api.resources.messages import AgentMessages
from e2a.core.config import Config


def create_app(cfg: Config, pool: ConnectionPool) -> falcon.App:
    app = falcon.App(middleware=[middleware.RequestId(), middleware.Authentication(pool)])
    errors.install(app)
    app.add_route("/api/health", Health(pool))
    app.add_route("/api/v1/info", Info(cfg))
    # {email} arrives percent-decoded (bot%40example.com -> bot@example.com).
    app.add_route("/api/v1/agents/{email}/messages", AgentMessages(cfg, pool))
    return app
