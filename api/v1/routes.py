"""The /v1 route table: every path, its resource and, per method, the
operation (its SDK operationId, who may call it, what it answers). The app
mounts it (``mount``), the OpenAPI document is generated from it
(api/v1/openapi.py) and the tenant and scope tests walk it, so a route
added here is served, documented and tested in one step.

To add a resource: write its class in api/v1/resources/<noun>.py over the
core functions the legacy resource uses, and add a ``Route`` row below."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import falcon
from psycopg_pool import ConnectionPool

from e2a.api.realtime import Hub
from e2a.api.resources.magiclinks import ApproveLink, RejectLink
from e2a.api.resources.unsubscribe import Unsubscribe
from e2a.api.v1 import openapi
from e2a.api.v1.resources import (
    account,
    agents,
    apikeys,
    attachments,
    brakes,
    conversations,
    domains,
    events,
    lifecycle,
    messages,
    meta,
    protection,
    reviews,
    sending,
    suppressions,
    webhooks,
    websocket,
)
from e2a.core.config import Config

# Who may call an operation (reference/e2a-v1-current.md §1.2).
PUBLIC = "public"
ACCOUNT = "account"  # account keys only
AGENT = "agent"  # account keys, or an agent key for its own agent


@dataclass(frozen=True)
class Op:
    method: str
    operation_id: str
    summary: str
    scope: str
    status: int = 200
    view: str = ""  # the success body's schema name


@dataclass(frozen=True)
class Route:
    template: str
    make: Callable[[Config, ConnectionPool], object]
    ops: tuple[Op, ...]


AGENT_PATH = "/v1/agents/{email}"
MESSAGE_PATH = AGENT_PATH + "/messages/{id}"

ROUTES: tuple[Route, ...] = (
    Route("/v1/info", lambda cfg, pool: meta.Info(cfg), (
        Op("GET", "getDeploymentInfo", "Deployment info", PUBLIC,
           view="DeploymentInfoView"),)),
    Route("/v1/openapi.json", lambda cfg, pool: openapi.Document(ROUTES, cfg.http.public_url), (
        Op("GET", "getOpenApiDocument", "This API's OpenAPI document", PUBLIC),)),
    Route("/v1/account", lambda cfg, pool: account.Account(pool), (
        Op("GET", "getAccount", "The caller's account: limits and usage", AGENT,
           view="AccountView"),
        Op("DELETE", "deleteAccount", "Erase the account and everything it owns "
           "(confirm=DELETE)", ACCOUNT, view="DeleteUserDataResult"))),
    Route("/v1/account/api-keys", lambda cfg, pool: apikeys.ApiKeys(cfg, pool), (
        Op("GET", "listApiKeys", "List the account's live API keys, newest first", ACCOUNT,
           view="PageAPIKeyView"),
        Op("POST", "createApiKey", "Create an API key (shown once)", ACCOUNT, status=201,
           view="CreateAPIKeyResponse"))),
    Route("/v1/account/api-keys/{id}", lambda cfg, pool: apikeys.ApiKey(pool), (
        Op("DELETE", "deleteApiKey", "Revoke an API key (confirm=DELETE)", ACCOUNT,
           view="DeleteApiKeyResult"),)),
    Route("/v1/account/suppressions",
          lambda cfg, pool: suppressions.AccountSuppressions(cfg, pool), (
              Op("GET", "listSuppressions", "Addresses the account no longer sends to "
                 "(hard bounces, complaints), newest first", ACCOUNT,
                 view="PageSuppressionView"),)),
    Route("/v1/account/suppressions/{address}",
          lambda cfg, pool: suppressions.AccountSuppression(pool), (
              Op("DELETE", "deleteSuppression", "Send to an address again (confirm=DELETE)",
                 ACCOUNT, view="DeleteSuppressionResult"),)),
    Route(AGENT_PATH + "/suppressions",
          lambda cfg, pool: suppressions.AgentSuppressions(cfg, pool), (
              Op("GET", "listAgentSuppressions", "Addresses this agent no longer sends to "
                 "(unsubscribes, by hand), newest first", ACCOUNT,
                 view="PageAgentSuppressionView"),
              Op("POST", "createAgentSuppression", "Stop this agent sending to an address",
                 ACCOUNT, view="AgentSuppressionView"))),
    Route(AGENT_PATH + "/suppressions/{address}",
          lambda cfg, pool: suppressions.AgentSuppression(pool), (
              Op("DELETE", "deleteAgentSuppression", "Let this agent send to an address "
                 "again (confirm=DELETE)", ACCOUNT, view="DeleteSuppressionResult"),)),
    Route("/v1/agents", lambda cfg, pool: agents.Agents(cfg, pool), (
        Op("GET", "listAgents", "List agents, newest first", ACCOUNT,
           view="PageAgentView"),
        Op("POST", "createAgent", "Create an agent by email (a custom domain or the "
           "shared one)", ACCOUNT, status=201, view="AgentView"))),
    Route(AGENT_PATH, lambda cfg, pool: agents.Agent(cfg, pool), (
        Op("GET", "getAgent", "Get an agent", AGENT, view="AgentView"),
        Op("PATCH", "updateAgent", "Rename an agent", ACCOUNT, view="AgentView"),
        Op("DELETE", "deleteAgent", "Delete an agent (confirm=DELETE, permanent=true)",
           ACCOUNT, view="DeleteAgentResult"))),
    Route(AGENT_PATH + "/restore", lambda cfg, pool: agents.AgentRestore(pool), (
        Op("POST", "restoreAgent", "Restore a trashed agent", ACCOUNT, view="AgentView"),)),
    Route(AGENT_PATH + "/test", lambda cfg, pool: sending.AgentTest(cfg, pool), (
        Op("POST", "testAgent", "Send the agent a test mail from itself", AGENT,
           status=202, view="SendResultView"),)),
    Route(AGENT_PATH + "/protection", lambda cfg, pool: protection.AgentProtection(pool), (
        Op("GET", "getAgentProtection", "An agent's protection settings (beta)", ACCOUNT,
           view="ProtectionConfigView"),
        Op("PUT", "putAgentProtection", "Replace an agent's protection settings "
           "(beta, wholesale)", ACCOUNT, view="ProtectionConfigView"))),
    Route(AGENT_PATH + "/protection/first-contact",
          lambda cfg, pool: protection.FirstContact(pool), (
              Op("GET", "getAgentFirstContact", "First-contact review of outbound mail "
                 "(e2a extension)", ACCOUNT, view="FirstContactView"),
              Op("PUT", "updateAgentFirstContact", "Set first-contact review (e2a "
                 "extension)", ACCOUNT, view="FirstContactView"))),
    # An e2a-postfix extension (not upstream e2a's): the loop and abuse brakes.
    Route(AGENT_PATH + "/brakes", lambda cfg, pool: brakes.AgentBrakes(cfg, pool), (
        Op("GET", "getAgentBrakes", "The agent's loop and abuse brakes and kill switch "
           "(e2a-postfix extension)", ACCOUNT, view="AgentBrakesView"),
        Op("PUT", "putAgentBrakes", "Set the agent's brake overrides and pause or resume "
           "its outbound mail, wholesale (e2a-postfix extension)", ACCOUNT,
           view="AgentBrakesView"))),
    Route(AGENT_PATH + "/messages", lambda cfg, pool: messages.Messages(cfg, pool), (
        Op("GET", "listMessages", "List an agent's messages", AGENT,
           view="PageMessageSummaryView"),
        Op("POST", "sendMessage", "Send a message from the agent (Idempotency-Key)", AGENT,
           status=202, view="SendResultView"))),
    Route(MESSAGE_PATH, lambda cfg, pool: messages.Message(cfg, pool), (
        Op("GET", "getMessage", "Get a message (marks an unread inbound one read)", AGENT,
           view="MessageView"),
        Op("PATCH", "updateMessage", "Add and remove labels", AGENT,
           view="UpdateMessageResultView"),
        Op("DELETE", "deleteMessage", "Move a message to the trash, or erase a trashed "
           "one (permanent=true&confirm=DELETE, account key)", AGENT,
           view="DeleteMessageResult"))),
    Route(MESSAGE_PATH + "/reply", lambda cfg, pool: sending.MessageReply(cfg, pool), (
        Op("POST", "replyToMessage", "Reply to a message (reply_all for its Cc too)", AGENT,
           status=202, view="SendResultView"),)),
    Route(MESSAGE_PATH + "/forward", lambda cfg, pool: sending.MessageForward(cfg, pool), (
        Op("POST", "forwardMessage", "Forward a message", AGENT, status=202,
           view="SendResultView"),)),
    Route(MESSAGE_PATH + "/lifecycle", lambda cfg, pool: lifecycle.MessageLifecycle(cfg, pool), (
        Op("GET", "getMessageLifecycle", "A message's lifecycle transitions, oldest first "
           "(beta)", AGENT, view="PageMessageLifecycleTransition"),)),
    Route(MESSAGE_PATH + "/restore", lambda cfg, pool: messages.MessageRestore(cfg, pool), (
        Op("POST", "restoreMessage", "Take a message out of the trash", AGENT,
           view="MessageView"),)),
    Route(AGENT_PATH + "/conversations",
          lambda cfg, pool: conversations.Conversations(cfg, pool), (
              Op("GET", "listConversations", "List conversations, latest activity first",
                 AGENT, view="PageConversationSummaryView"),)),
    Route(AGENT_PATH + "/conversations/{id}",
          lambda cfg, pool: conversations.Conversation(pool), (
              Op("GET", "getConversation", "Get a conversation", AGENT,
                 view="ConversationDetailView"),)),
    # The HITL queue: the same holds and approval path as /api/v1/messages.
    Route("/v1/reviews", lambda cfg, pool: reviews.Reviews(cfg, pool), (
        Op("GET", "listReviews", "List held messages awaiting review", ACCOUNT,
           view="PageReviewView"),)),
    Route("/v1/reviews/{id}", lambda cfg, pool: reviews.Review(cfg, pool), (
        Op("GET", "getReview", "A held message with its draft and what it answers",
           ACCOUNT, view="MessageView"),)),
    Route("/v1/reviews/{id}/approve", lambda cfg, pool: reviews.ReviewApproval(cfg, pool), (
        Op("POST", "approveReview", "Approve a held message, optionally edited "
           "(Idempotency-Key)", ACCOUNT, status=202, view="SendResultView"),)),
    Route("/v1/reviews/{id}/reject", lambda cfg, pool: reviews.ReviewRejection(pool), (
        Op("POST", "rejectReview", "Reject a held message", ACCOUNT,
           view="RejectResultView"),)),
    # Webhook subscriptions (the legacy ones, generation v1) and the event log.
    Route("/v1/webhooks", lambda cfg, pool: webhooks.Webhooks(cfg, pool), (
        Op("GET", "listWebhooks", "List webhooks, newest first", ACCOUNT,
           view="PageWebhookView"),
        Op("POST", "createWebhook", "Create a webhook (Idempotency-Key); the signing "
           "secret is shown once", ACCOUNT, status=201, view="CreateWebhookResponse"))),
    Route("/v1/webhooks/{id}", lambda cfg, pool: webhooks.Webhook(cfg, pool), (
        Op("GET", "getWebhook", "Get a webhook", ACCOUNT, view="WebhookView"),
        Op("PATCH", "updateWebhook", "Update a webhook", ACCOUNT, view="WebhookView"),
        Op("DELETE", "deleteWebhook", "Delete a webhook (confirm=DELETE)", ACCOUNT,
           view="DeleteWebhookResult"))),
    Route("/v1/webhooks/{id}/rotate-secret",
          lambda cfg, pool: webhooks.WebhookSecretRotation(cfg, pool), (
              Op("POST", "rotateWebhookSecret", "New signing secret; the old one signs "
                 "too for 24 hours", ACCOUNT, view="RotateWebhookSecretResponse"),)),
    Route("/v1/webhooks/{id}/test", lambda cfg, pool: webhooks.WebhookTest(cfg, pool), (
        Op("POST", "testWebhook", "Deliver a synthetic event to this webhook", ACCOUNT,
           view="TestWebhookResponse"),)),
    Route("/v1/webhooks/{id}/deliveries",
          lambda cfg, pool: webhooks.WebhookDeliveries(cfg, pool), (
              Op("GET", "listWebhookDeliveries", "A webhook's deliveries, newest first",
                 ACCOUNT, view="PageWebhookDeliveryView"),)),
    Route("/v1/events", lambda cfg, pool: events.Events(cfg, pool), (
        Op("GET", "listEvents", "List events of the last 30 days, newest first", ACCOUNT,
           view="PageEventView"),)),
    Route("/v1/events/{id}", lambda cfg, pool: events.Event(pool), (
        Op("GET", "getEvent", "Get an event (410 past retention)", ACCOUNT,
           view="EventView"),)),
    Route("/v1/events/{id}/redeliver", lambda cfg, pool: events.EventRedelivery(pool), (
        Op("POST", "redeliverEvent", "Deliver an event again to its webhooks", ACCOUNT,
           status=202, view="RedeliverView"),)),
)

# -- v1data: domains, export, attachments (the legacy domains' and export's core).
ROUTES += (
    Route("/v1/domains", lambda cfg, pool: domains.Domains(cfg, pool), (
        Op("GET", "listDomains", "List the account's domains, newest first", ACCOUNT,
           view="PageDomainView"),
        Op("POST", "registerDomain", "Register a domain (an owned one answers itself)",
           ACCOUNT, status=201, view="DomainView"))),
    Route("/v1/domains/{domain}", lambda cfg, pool: domains.Domain(cfg, pool), (
        Op("GET", "getDomain", "Get a domain with the DNS records to publish", ACCOUNT,
           view="DomainView"),
        Op("DELETE", "deleteDomain", "Delete a domain without agents (confirm=DELETE, "
           "Idempotency-Key)", ACCOUNT, view="DeleteDomainResult"))),
    Route("/v1/domains/{domain}/verify",
          lambda cfg, pool: domains.DomainVerification(cfg, pool), (
              Op("POST", "verifyDomain", "Probe the DNS records; verified once the "
                 "ownership TXT and the inbound MX resolve", ACCOUNT,
                 view="VerifyDomainView"),)),
    Route("/v1/account/export", lambda cfg, pool: account.AccountExport(cfg, pool), (
        Op("GET", "exportAccount", "Everything the account holds, as one JSON document "
           "(streamed, Content-Disposition)", ACCOUNT, view="UserExport"),)),
    Route(MESSAGE_PATH + "/attachments/{index}",
          lambda cfg, pool: attachments.Attachment(cfg, pool), (
              Op("GET", "getAttachment", "An attachment's metadata and a 15-minute download "
                 "URL (inline=true: its bytes too, up to 256 KB)", AGENT,
                 view="AttachmentView"),)),
)

# Served under /v1 but not JSON operations, so not in the OpenAPI document:
# the magic links' HTML pages (the same tokens and pages as /api/v1/approve).
PAGES: tuple[Route, ...] = (
    Route("/v1/approve", lambda cfg, pool: ApproveLink(cfg, pool), (
        Op("GET", "approvePage", "Approval confirmation page", PUBLIC),
        Op("POST", "approveByLink", "Approve by magic link", PUBLIC))),
    Route("/v1/reject", lambda cfg, pool: RejectLink(cfg, pool), (
        Op("GET", "rejectPage", "Rejection confirmation page", PUBLIC),
        Op("POST", "rejectByLink", "Reject by magic link", PUBLIC))),
    # Managed unsubscribe (RFC 8058), for both API generations' mail.
    Route("/u/{token}", lambda cfg, pool: Unsubscribe(cfg, pool), (
        Op("GET", "unsubscribePage", "Unsubscribe confirmation page", PUBLIC),
        Op("POST", "unsubscribe", "Unsubscribe (the page's form or RFC 8058 one-click)",
           PUBLIC))),
)

# -- v1data: an attachment's bytes, to the holder of its signed download URL.
PAGES += (
    Route(MESSAGE_PATH + "/attachments/{index}/download",
          lambda cfg, pool: attachments.AttachmentDownload(cfg, pool), (
              Op("GET", "downloadAttachment", "An attachment's bytes (token=)", PUBLIC),)),
)

# Resources that take a send's attachments: the larger body limit.
LARGE_BODIES: tuple[type, ...] = (messages.Messages, sending.MessageReply,
                                  sending.MessageForward, reviews.ReviewApproval)


# The SDK's listen(): a WebSocket, no JSON operation either.
SOCKET_PATH = AGENT_PATH + "/ws"
UNDOCUMENTED = frozenset({*(r.template for r in PAGES), SOCKET_PATH})


def mount(app: falcon.App, cfg: Config, pool: ConnectionPool, hub: Hub) -> None:
    """``hub``: the process's WebSocket hub, shared with the legacy socket."""
    for route in ROUTES + PAGES:
        app.add_route(route.template, route.make(cfg, pool))
    app.add_route(SOCKET_PATH, websocket.AgentSocket(cfg, pool, hub))
