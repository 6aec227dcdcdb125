"""The Falcon application: routes, middleware, error rendering."""

from __future__ import annotations

import falcon
from psycopg_pool import ConnectionPool

from e2a.api import errors, jsonbody, middleware, throttle
from e2a.api.dashboard import routes as dashboard_routes
from e2a.api.realtime import Hub
from e2a.api.resources.account import DataExport, Limits, Me
from e2a.api.resources.agents import Agent, Agents
from e2a.api.resources.conversations import AgentConversation, AgentConversations
from e2a.api.resources.domains import Domain, Domains, DomainVerification
from e2a.api.resources.events import Event, EventRedelivery, Events
from e2a.api.resources.health import Health
from e2a.api.resources.info import Info
from e2a.api.resources.magiclinks import ApproveLink, RejectLink
from e2a.api.resources.messages import AgentMessage, AgentMessages
from e2a.api.resources.metrics import Metrics
from e2a.api.resources.openapi import OpenApiDocument
from e2a.api.resources.pending import (
    PendingApproval,
    PendingMessage,
    PendingMessages,
    PendingRejection,
)
from e2a.api.resources.send import AgentTest, Forward, Reply, Send
from e2a.api.resources.signing_secrets import SigningSecret, SigningSecrets
from e2a.api.resources.webhooks import (
    Webhook,
    WebhookDeliveries,
    WebhookRedeliverSince,
    Webhooks,
    WebhookSecretRotation,
    WebhookTest,
)
from e2a.api.resources.websocket import AgentSocket
from e2a.api.v1 import errors as v1_errors
from e2a.api.v1 import middleware as v1_middleware
from e2a.api.v1 import routes as v1_routes
from e2a.core.config import Config


def create_app(cfg: Config, pool: ConnectionPool, hub: Hub | None = None) -> falcon.App:
    """``hub``: the process's WebSocket hub (api/server.py stops it on SIGTERM);
    one of its own when not given (tests)."""
    # Shape checks come before authentication: an oversized or malformed
    # request costs no database round trip.
    shape = middleware.RequestShape(cfg, large=(Send, Reply, Forward, PendingApproval,
                                           *v1_routes.LARGE_BODIES),
                                    pages=(ApproveLink, RejectLink))
    limit = throttle.RequestLimit(cfg.http.requests_per_minute)
    app = falcon.App(middleware=[middleware.RequestId(), middleware.RequestTiming(),
                                 v1_middleware.Text(), shape, v1_middleware.Body(),
                                 middleware.Authentication(pool, limit), limit])
    errors.install(app)
    # The current API's envelope for /v1 requests; the legacy one elsewhere.
    v1_errors.install(app)
    jsonbody.install(app)
    app.add_route("/api/health", Health(pool))
    app.add_route("/api/v1/info", Info(cfg))
    app.add_route("/api/openapi.json", OpenApiDocument(app, cfg.http.public_url))
    app.add_route("/metrics", Metrics())
    # The account: limits, export, deletion, signing secrets.
    app.add_route("/api/v1/users/me", Me(pool))
    app.add_route("/api/v1/users/me/export", DataExport(pool))
    app.add_route("/api/v1/users/me/limits", Limits(pool))
    app.add_route("/api/v1/users/me/signing-secrets", SigningSecrets(pool))
    app.add_route("/api/v1/users/me/signing-secrets/{id}", SigningSecret(pool))
    # Domains and agents.
    app.add_route("/api/v1/domains", Domains(cfg, pool))
    app.add_route("/api/v1/domains/{domain}", Domain(cfg, pool))
    app.add_route("/api/v1/domains/{domain}/verify", DomainVerification(cfg, pool))
    app.add_route("/api/v1/agents", Agents(cfg, pool))
    # {email} arrives percent-decoded (bot%40example.com -> bot@example.com).
    app.add_route("/api/v1/agents/{email}", Agent(cfg, pool))
    # Inbox: messages, labels, conversations.
    app.add_route("/api/v1/agents/{email}/messages", AgentMessages(cfg, pool))
    app.add_route("/api/v1/agents/{email}/messages/{id}", AgentMessage(pool))
    app.add_route("/api/v1/agents/{email}/conversations", AgentConversations(pool))
    app.add_route("/api/v1/agents/{email}/conversations/{id}", AgentConversation(pool))
    # Sending: new mail, replies, forwards, an agent's test mail to itself.
    app.add_route("/api/v1/send", Send(cfg, pool))
    app.add_route("/api/v1/agents/{email}/messages/{id}/reply", Reply(cfg, pool))
    app.add_route("/api/v1/agents/{email}/messages/{id}/forward", Forward(cfg, pool))
    app.add_route("/api/v1/agents/{email}/test", AgentTest(cfg, pool))
    # Held outbound mail (human in the loop): the owner's queue, review, and
    # the notification's magic links (public: the token is the credential).
    app.add_route("/api/v1/messages", PendingMessages(cfg, pool))
    app.add_route("/api/v1/messages/{id}", PendingMessage(pool))
    app.add_route("/api/v1/messages/{id}/approve", PendingApproval(cfg, pool))
    app.add_route("/api/v1/messages/{id}/reject", PendingRejection(pool))
    app.add_route("/api/v1/approve", ApproveLink(cfg, pool))
    app.add_route("/api/v1/reject", RejectLink(cfg, pool))
    # Real time: new mail pushed to local-mode agents.
    hub = hub or Hub(cfg)
    app.add_route("/api/v1/agents/{email}/ws", AgentSocket(cfg, pool, hub))
    # Webhook subscriptions and the event log (account level).
    app.add_route("/api/v1/webhooks", Webhooks(cfg, pool))
    app.add_route("/api/v1/webhooks/{id}", Webhook(cfg, pool))
    app.add_route("/api/v1/webhooks/{id}/rotate-secret", WebhookSecretRotation(cfg, pool))
    app.add_route("/api/v1/webhooks/{id}/test", WebhookTest(cfg, pool))
    app.add_route("/api/v1/webhooks/{id}/deliveries", WebhookDeliveries(cfg, pool))
    app.add_route("/api/v1/webhooks/{id}/redeliver-since", WebhookRedeliverSince(cfg, pool))
    app.add_route("/api/v1/events", Events(cfg, pool))
    app.add_route("/api/v1/events/{id}", Event(pool))
    app.add_route("/api/v1/events/{id}/redeliver", EventRedelivery(pool))
    # The current API (SDK 5.x): its own route table, the same core.
    v1_routes.mount(app, cfg, pool, hub)
    # The review dashboard: pages for people, signed in by mailed link.
    dashboard_routes.mount(app, cfg, pool)
    return app
