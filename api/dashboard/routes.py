"""The dashboard's routes, under /dashboard."""

from __future__ import annotations

import falcon
from psycopg_pool import ConnectionPool

from e2a.api.dashboard import account, agents, pending, signin, web
from e2a.core.config import Config


def mount(app: falcon.App, cfg: Config, pool: ConnectionPool) -> None:
    web.install(app)
    p = web.PREFIX
    app.add_route(p, signin.Home(cfg, pool))
    app.add_route(f"{p}/login", signin.Login(cfg, pool))
    app.add_route(f"{p}/signin", signin.SignIn(cfg, pool))
    app.add_route(f"{p}/logout", signin.SignOut(cfg, pool))
    # Pending: the queue, a draft, its decisions, its files and HTML body.
    app.add_route(f"{p}/pending", pending.PendingList(cfg, pool))
    app.add_route(f"{p}/pending/{{id}}", pending.PendingDraft(cfg, pool))
    app.add_route(f"{p}/pending/{{id}}/approve", pending.PendingApproval(cfg, pool))
    app.add_route(f"{p}/pending/{{id}}/reject", pending.PendingRejection(cfg, pool))
    app.add_route(f"{p}/pending/{{id}}/attachments/{{index:int}}",
                  pending.PendingAttachment(cfg, pool))
    app.add_route(f"{p}/pending/{{id}}/html", pending.PendingHtml(cfg, pool))
    # Agents: settings, activity, the inbox (read-only).
    app.add_route(f"{p}/agents", agents.AgentList(cfg, pool))
    app.add_route(f"{p}/agents/{{agent_id}}", agents.AgentDetail(cfg, pool))
    app.add_route(f"{p}/agents/{{agent_id}}/hitl", agents.AgentHitl(cfg, pool))
    app.add_route(f"{p}/agents/{{agent_id}}/protection", agents.AgentProtection(cfg, pool))
    app.add_route(f"{p}/agents/{{agent_id}}/brakes", agents.AgentPause(cfg, pool))
    app.add_route(f"{p}/agents/{{agent_id}}/inbox", agents.AgentInbox(cfg, pool))
    app.add_route(f"{p}/agents/{{agent_id}}/inbox/{{id}}", agents.InboxMessage(cfg, pool))
    app.add_route(f"{p}/agents/{{agent_id}}/inbox/{{id}}/html", agents.InboxHtml(cfg, pool))
    app.add_route(f"{p}/agents/{{agent_id}}/inbox/{{id}}/attachments/{{index:int}}",
                  agents.InboxAttachment(cfg, pool))
    # Account: keys, signing secrets, webhooks, domains.
    app.add_route(f"{p}/account", account.Account(cfg, pool))
    app.add_route(f"{p}/account/keys", account.ApiKeys(cfg, pool))
    app.add_route(f"{p}/account/keys/{{id}}/revoke", account.ApiKeyRevocation(cfg, pool))
    app.add_route(f"{p}/account/secrets", account.SigningSecrets(cfg, pool))
    app.add_route(f"{p}/account/secrets/{{id}}/delete",
                  account.SigningSecretDeletion(cfg, pool))
    app.add_route(f"{p}/account/webhooks/{{id}}", account.WebhookDetail(cfg, pool))
    app.add_route(f"{p}/account/domains/{{domain}}", account.DomainDetail(cfg, pool))
    app.add_route(f"{p}/account/domains/{{domain}}/verify", account.DomainVerify(cfg, pool))
