"""The OpenAPI operations of the legacy generation (``/api/v1``, e2a's v1 API
as the 2.x SDKs call it): resource class name -> lowercase HTTP method ->
operation object, written with api/openapi/parts.py.

The document's paths come from the app's routes (api/openapi/builder.py), so
this table only says what each responder does; ``builder.check`` fails the
unit tests when a responder has no entry here, or an entry has no responder.
The resources themselves carry no documentation, only behaviour.
"""

from __future__ import annotations

from typing import Any

from e2a.api import idempotent
from e2a.api.openapi import parts as opdoc
from e2a.api.pages import FORM
from e2a.api.resources.agents import REGISTRATIONS
from e2a.api.resources.conversations import MAX_CONVERSATION_MESSAGES, MAX_CONVERSATIONS
from e2a.api.resources.events import DEFAULT_PAGE_SIZE as EVENTS_DEFAULT_PAGE_SIZE
from e2a.api.resources.events import MAX_PAGE_SIZE as EVENTS_MAX_PAGE_SIZE
from e2a.api.resources.magiclinks import MAX_REASON_LENGTH as MAGICLINKS_MAX_REASON_LENGTH
from e2a.api.resources.messages import DEFAULT_PAGE_SIZE as MESSAGES_DEFAULT_PAGE_SIZE
from e2a.api.resources.messages import MAX_CONVERSATION_ID_LENGTH, MAX_SEARCH_LENGTH
from e2a.api.resources.messages import MAX_PAGE_SIZE as MESSAGES_MAX_PAGE_SIZE
from e2a.api.resources.pending import MAX_PENDING_PAGE, PENDING
from e2a.api.resources.pending import MAX_REASON_LENGTH as PENDING_MAX_REASON_LENGTH
from e2a.api.resources.webhooks import DEFAULT_DELIVERIES, MAX_DELIVERIES, REDELIVER_SINCE_LIMIT
from e2a.core import housekeeping
from e2a.core.accounts import registration as accounts
from e2a.core.accounts import signing_secrets
from e2a.core.messages import labels
from e2a.core.webhooks import eventtypes
from e2a.core.webhooks import subscriptions as webhooks

# -- api/resources/account.py -----------------------------------------------------
ACCOUNT_ERRORS = {"401": opdoc.UNAUTHORIZED,
                  "403": opdoc.error("The key is scoped to one agent")}


# -- api/resources/agents.py ------------------------------------------------------
AGENTS_TAGS = ["Agents"]
AGENTS_FORBIDDEN = opdoc.error("The key is scoped to one agent")
AGENTS_NOT_FOUND = opdoc.error("Agent not found")


# -- api/resources/domains.py -----------------------------------------------------
DOMAINS_TAGS = ["Domains"]
DOMAIN = opdoc.path_param("domain", "Domain name")
DOMAINS_FORBIDDEN = opdoc.error("The key is scoped to one agent")
DOMAINS_NOT_FOUND = opdoc.error("Domain not found")


# -- api/resources/events.py ------------------------------------------------------
EVENTS_TAGS = ["Events"]
EVENT_ID = opdoc.path_param("id", "Event ID (evt_<32hex>)")
EVENTS_FORBIDDEN = opdoc.error("The key is scoped to one agent")
DAYS = housekeeping.EVENTS_VISIBLE.days


# -- api/resources/magiclinks.py --------------------------------------------------
HTML = "text/html"


def page(description: str) -> dict[str, Any]:
    return {"description": description, "content": {HTML: {"schema": {"type": "string"}}}}


def doc(action: str) -> dict[str, Any]:
    word = action.capitalize()
    token = {"name": "token", "in": "query", "required": True,
             "description": "The token of the owner's notification", "schema": {"type": "string"}}
    errors = {
        "400": page("Malformed, tampered or foreign token, or a token for the other action"),
        "404": page("No such message"),
        "409": page("The message is no longer pending approval"),
        "410": page("The link has expired"),
    }
    return {
        "get": {
            "operationId": f"{action}LinkPage",
            "summary": f"Magic link: the page to {action} a held message",
            "description": "An HTML page with the held draft (recipients, subject, body, "
                           "attachment names) and one button that POSTs the token. Changes "
                           "nothing. No API key: the token is the credential.",
            "tags": ["Approvals"],
            "parameters": [token],
            "responses": {"200": page("The confirmation page"), **errors},
        },
        "post": {
            "operationId": f"{action}LinkConfirm",
            "summary": f"Magic link: {action} the held message",
            "description": f"{word}s the message the token names, as its owner. Single use: "
                           "a second use finds it resolved (409).",
            "tags": ["Approvals"],
            "requestBody": {"required": True, "content": {FORM: {"schema": {
                "type": "object", "required": ["token"],
                "properties": {"token": {"type": "string"},
                               **({"reason": {"type": "string",
                                              "maxLength": MAGICLINKS_MAX_REASON_LENGTH}}
                                  if action == "reject" else {})}}}}},
            "responses": {"200": page(f"{word}d"), **errors,
                          "422": page("The mail server refused the message for good; it "
                                       "is still held"),
                          "503": page("The mail server did not take the message; it is "
                                       "still held")},
        },
    }


# -- api/resources/messages.py ----------------------------------------------------
LIST_PARAMS = [
    opdoc.AGENT_EMAIL,
    opdoc.query_param("direction", "inbound (default), outbound or all",
                      {"type": "string", "enum": ["inbound", "outbound", "all"]}),
    opdoc.query_param("status", "Inbox status of inbound messages; all (or none) for both",
                      {"type": "string", "enum": ["unread", "read", "all"]}),
    opdoc.query_param("page_size", f"Messages per page, 1-{MESSAGES_MAX_PAGE_SIZE} (default "
                      f"{MESSAGES_DEFAULT_PAGE_SIZE}; larger values are clamped)",
                      {"type": "integer", "minimum": 1}),
    opdoc.query_param("sort", "By created_at: desc (default, newest first) or asc (FIFO)",
                      {"type": "string", "enum": ["desc", "asc"]}),
    opdoc.query_param("from", "Case-insensitive substring of the sender address; % and _ "
                      f"match themselves. At most {MAX_SEARCH_LENGTH} characters.",
                      {"type": "string", "maxLength": MAX_SEARCH_LENGTH}),
    opdoc.query_param("subject_contains", "Case-insensitive substring of the subject. "
                      f"At most {MAX_SEARCH_LENGTH} characters.",
                      {"type": "string", "maxLength": MAX_SEARCH_LENGTH}),
    opdoc.query_param("conversation_id", "Exact conversation_id: one thread",
                      {"type": "string", "maxLength": MAX_CONVERSATION_ID_LENGTH}),
    opdoc.query_param("since", "RFC 3339 timestamp; only messages with created_at >= since",
                      {"type": "string", "format": "date-time"}),
    opdoc.query_param("until", "RFC 3339 timestamp; only messages with created_at < until",
                      {"type": "string", "format": "date-time"}),
    opdoc.query_param("labels", "Only messages carrying every one of these labels "
                      "(comma-separated, or the parameter repeated); at most "
                      f"{labels.MAX_PER_REQUEST}",
                      {"type": "array", "items": {"type": "string"}}, style="form",
                      explode=True),
    opdoc.query_param("token", "next_token of the previous page; the other parameters "
                      "(but page_size) must stay the same"),
]
MESSAGES_MESSAGE_ID = opdoc.path_param("id", "Message ID (msg_...)")


# -- api/resources/pending.py -----------------------------------------------------
PENDING_TAGS = ["Approvals"]
PENDING_MESSAGE_ID = opdoc.path_param("id", "Message ID (msg_...) of an outbound message")
NOT_YOURS = opdoc.error("Message not found or not owned by this user")
AGENT_KEY = opdoc.error("An agent-scoped key cannot approve or reject: a person reviews "
                         "what the agent wrote")
NOT_PENDING = opdoc.error("The message is no longer pending approval (sent, rejected or "
                           "expired)")


# -- api/resources/send.py --------------------------------------------------------
SEND_TAGS = ["Sending"]


def errors(not_found: str) -> dict[str, Any]:
    return {
        "400": opdoc.error("Missing or invalid fields (addresses, header characters, "
                           "sizes); nothing was sent"),
        "401": opdoc.UNAUTHORIZED,
        "403": opdoc.error("Agent domain not verified, or conversation_id names another "
                           "account's conversation"),
        "404": opdoc.error(not_found),
        **idempotent.RESPONSES,
        "429": opdoc.error("Rate limit exceeded: send.rate_per_agent sends per agent per "
                           "minute (default 60); see Retry-After"),
        "503": opdoc.error("The mail server did not take the message; it was not sent"),
    }


def sent_responses(what: str) -> dict[str, Any]:
    return {"200": opdoc.ok("SendEmailResponse", f"{what} sent (handed to the mail server)"),
            "202": opdoc.ok("SendEmailResponse", f"{what} held for approval (the agent has "
                            "HITL enabled): status pending_approval, approval_expires_at")}
SEND_MESSAGE_ID = opdoc.path_param("id", "Message ID (msg_...) of a received message")


# -- api/resources/webhooks.py ----------------------------------------------------
WEBHOOKS_TAGS = ["Webhooks"]
WEBHOOK_ID = opdoc.path_param("id", "Webhook ID (wh_...)")
WEBHOOKS_FORBIDDEN = opdoc.error("The key is scoped to one agent")
WEBHOOKS_NOT_FOUND = opdoc.error("Webhook not found")
RULES = (f"url: https with a host name (no IP literal, no localhost) that resolves to public "
          f"addresses only, checked again at every delivery. events: one or more of "
          f"{', '.join(eventtypes.TYPES)}. filters: agent_ids, conversation_ids, labels; each "
          "set filter must hold (an agent or conversation in the list, a label shared with "
          "the message); empty or absent filters do not narrow.")


def op(operation_id: str, summary: str, description: str, responses: dict[str, Any],
        **extra: Any) -> dict[str, Any]:
    return {"operationId": operation_id, "summary": summary, "description": description,
            "tags": WEBHOOKS_TAGS,
            "responses": {"401": opdoc.UNAUTHORIZED, "403": WEBHOOKS_FORBIDDEN, **responses},
            **extra}


# -- api/resources/websocket.py ---------------------------------------------------
TOKEN = opdoc.query_param("token", "An API key: the account key of the agent's owner, or a "
                                    "key scoped to this agent", required=True)


OPERATIONS: dict[str, dict[str, Any]] = {
    "Me": {"delete": {
    "operationId": "deleteUserData",
    "summary": "Delete your account and everything it owns",
    "description": "Irreversible, in one transaction. Requires confirm=DELETE. Answers "
                   "how many rows of each kind were removed; the key used stops working.",
    "parameters": [opdoc.query_param("confirm", "Must be DELETE", required=True)],
    "responses": {"200": opdoc.ok("DeleteUserDataResult"),
                  "400": opdoc.error("confirm is missing or not DELETE"),
                  **ACCOUNT_ERRORS},
}},
    "DataExport": {"get": {
    "operationId": "exportUserData",
    "summary": "Export your data",
    "description": "Everything the account owns as one JSON document: profile, agents, "
                   "domains, API key metadata, signing secret metadata, webhooks and "
                   "every message with its raw content (base64). No key hashes, secret "
                   "values or private keys. Streamed.",
    "responses": {"200": opdoc.ok("UserExport"), **ACCOUNT_ERRORS},
}},
    "Limits": {"get": {
    "operationId": "getUserLimits",
    "summary": "Your limits and current usage",
    "description": "messages_month counts inbound mail in the current calendar month "
                   "(UTC); storage_bytes is the size of all stored mail.",
    "responses": {"200": opdoc.ok("LimitsInfo"), **ACCOUNT_ERRORS},
}},
    "Agents": {
    "get": {
        "operationId": "listAgents",
        "summary": "List your registered agents",
        "description": "Returns all agents owned by the authenticated user (for an "
                       "agent-scoped key, its own agent only).",
        "tags": AGENTS_TAGS,
        "responses": {"200": opdoc.ok("ListAgentsResponse"), "401": opdoc.UNAUTHORIZED},
    },
    "post": {
        "operationId": "registerAgent",
        "summary": "Register a new agent",
        "description": "Registers an agent by slug on the shared domain, or by email on "
                       "a verified domain of yours. agent_mode: local (the default) "
                       "or cloud; cloud needs an https webhook_url. Rate limited to "
                       f"{REGISTRATIONS.per_window} registrations per source IP per "
                       "hour; 429 carries Retry-After.",
        "tags": AGENTS_TAGS,
        "requestBody": opdoc.body("RegisterAgentRequest", "Agent registration details"),
        "responses": {"201": opdoc.ok("RegisterAgentResponse", "Created"),
                      "400": opdoc.error("Invalid request"),
                      "401": opdoc.UNAUTHORIZED, "403": AGENTS_FORBIDDEN,
                      "409": opdoc.error("Agent already exists"),
                      "429": opdoc.error("Rate limit exceeded; see Retry-After")},
    },
},
    "Agent": {
    "get": {
        "operationId": "getAgent",
        "summary": "Get agent details",
        "tags": AGENTS_TAGS,
        "parameters": [opdoc.AGENT_EMAIL],
        "responses": {"200": opdoc.ok("Agent"), "401": opdoc.UNAUTHORIZED,
                      "404": AGENTS_NOT_FOUND},
    },
    "put": {
        "operationId": "updateAgent",
        "summary": "Update an agent",
        "description": "Partial: only the fields sent change. Switching to cloud mode "
                       "needs a webhook_url; hitl_ttl_seconds is 1 to "
                       f"{accounts.HITL_MAX_TTL}; hitl_expiration_action is reject or "
                       "approve. Returns the agent after the update.",
        "tags": AGENTS_TAGS,
        "parameters": [opdoc.AGENT_EMAIL],
        "requestBody": opdoc.body("UpdateAgentRequest", "Fields to update"),
        "responses": {"200": opdoc.ok("Agent"),
                      "400": opdoc.error("Validation error (e.g. bad agent_mode, TTL "
                                         "out of range)"),
                      "401": opdoc.UNAUTHORIZED, "403": AGENTS_FORBIDDEN, "404": AGENTS_NOT_FOUND},
    },
    "delete": {
        "operationId": "deleteAgent",
        "summary": "Delete an agent",
        "description": "Deletes the agent with its messages and agent-scoped keys.",
        "tags": AGENTS_TAGS,
        "parameters": [opdoc.AGENT_EMAIL],
        "responses": {"200": {"description": "status: deleted", "content": {
                          opdoc.JSON: {"schema": {"type": "object", "properties": {
                              "status": {"type": "string"}}}}}},
                      "401": opdoc.UNAUTHORIZED, "403": AGENTS_FORBIDDEN, "404": AGENTS_NOT_FOUND},
    },
},
    "AgentConversations": {
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
},
    "AgentConversation": {
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
},
    "Domains": {
    "get": {
        "operationId": "listDomains",
        "summary": "List your domains",
        "description": "Returns all domains owned by the authenticated user, each with "
                       "its agent_count.",
        "tags": DOMAINS_TAGS,
        "responses": {"200": opdoc.ok("ListDomainsResponse"), "401": opdoc.UNAUTHORIZED,
                      "403": DOMAINS_FORBIDDEN},
    },
    "post": {
        "operationId": "registerDomain",
        "summary": "Register a domain",
        "description": "Registers a custom domain and makes its DKIM key pair. Returns "
                       "the DNS records to publish: MX to this deployment's mail host, "
                       "the ownership TXT record at _e2a.<domain>, and the DKIM key "
                       "record.",
        "tags": DOMAINS_TAGS,
        "requestBody": opdoc.body("RegisterDomainRequest", "Domain to register"),
        "responses": {"201": opdoc.ok("Domain", "Created"),
                      "400": opdoc.error("Invalid domain name, or the cap is reached"),
                      "401": opdoc.UNAUTHORIZED, "403": DOMAINS_FORBIDDEN,
                      "409": opdoc.error("Registered already, or reserved")},
    },
},
    "Domain": {
    "get": {
        "operationId": "getDomain",
        "summary": "Get a domain",
        "description": "Returns the authenticated user's view of a single domain.",
        "tags": DOMAINS_TAGS,
        "parameters": [DOMAIN],
        "responses": {"200": opdoc.ok("Domain"), "401": opdoc.UNAUTHORIZED,
                      "403": DOMAINS_FORBIDDEN, "404": DOMAINS_NOT_FOUND},
    },
    "patch": {
        "operationId": "updateDomain",
        "summary": "Update a domain",
        "description": "is_primary true makes this the user's primary domain and clears "
                       "the flag on the previous one, in one transaction; false changes "
                       "nothing.",
        "tags": DOMAINS_TAGS,
        "parameters": [DOMAIN],
        "requestBody": opdoc.body("UpdateDomainRequest", "Fields to update"),
        "responses": {"200": opdoc.ok("Domain"), "400": opdoc.error("Invalid request"),
                      "401": opdoc.UNAUTHORIZED, "403": DOMAINS_FORBIDDEN,
                      "404": DOMAINS_NOT_FOUND},
    },
    "delete": {
        "operationId": "deleteDomain",
        "summary": "Delete a domain",
        "tags": DOMAINS_TAGS,
        "parameters": [DOMAIN],
        "responses": {"204": {"description": "Domain deleted"},
                      "400": opdoc.error("Agents still exist on this domain"),
                      "401": opdoc.UNAUTHORIZED, "403": DOMAINS_FORBIDDEN,
                      "404": DOMAINS_NOT_FOUND},
    },
},
    "DomainVerification": {
    "post": {
        "operationId": "verifyDomain",
        "summary": "Verify domain ownership + DNS diagnostic",
        "description": "Looks the domain's records up through the deployment's resolver. "
                       "The ownership TXT token alone decides verified: 200 when it is "
                       "published, else 412 with the same body. mx is found when an MX "
                       "record names the deployment's mail host; spf when a v=spf1 "
                       "record holds include:, a: or redirect= of that host (or a bare "
                       "mx while the MX is ours); dkim when the published key equals the "
                       "stored one.",
        "tags": DOMAINS_TAGS,
        "parameters": [DOMAIN],
        "responses": {"200": opdoc.ok("VerifyDomainResponse"),
                      "401": opdoc.UNAUTHORIZED, "403": DOMAINS_FORBIDDEN, "404": DOMAINS_NOT_FOUND,
                      "412": opdoc.ok("VerifyDomainResponse",
                                      "TXT record not found; the body holds the "
                                      "per-record diagnostic"),
                      "503": opdoc.error("DNS did not answer; retry later")},
    },
},
    "Events": {"get": {
    "operationId": "listEvents",
    "summary": "List webhook events",
    "description": f"Newest first; events older than {DAYS} days are not returned. "
                   "Filters are sealed into the signed next_token.",
    "tags": EVENTS_TAGS,
    "parameters": [
        opdoc.query_param("type", "Exact event type (e.g. email.received)"),
        opdoc.query_param("agent_id", "Only events of this agent"),
        opdoc.query_param("conversation_id", "Only events on this conversation"),
        opdoc.query_param("message_id", "Only events on this message"),
        opdoc.query_param("since", "RFC 3339; created_at >= since",
                          {"type": "string", "format": "date-time"}),
        opdoc.query_param("until", "RFC 3339; created_at < until",
                          {"type": "string", "format": "date-time"}),
        opdoc.query_param("page_size",
                          f"1-{EVENTS_MAX_PAGE_SIZE} (default {EVENTS_DEFAULT_PAGE_SIZE})",
                          {"type": "integer", "minimum": 1}),
        opdoc.query_param("token", "next_token of the previous page"),
    ],
    "responses": {"200": opdoc.ok("ListEventsResponse"),
                  "400": opdoc.error("Invalid query parameter or pagination token"),
                  "401": opdoc.UNAUTHORIZED, "403": EVENTS_FORBIDDEN},
}},
    "Event": {"get": {
    "operationId": "getEvent",
    "summary": "Get a single event",
    "description": "With delivery_status: how many subscriptions it matched and where "
                   f"the latest delivery to each stands. 410 once past the {DAYS}-day "
                   "retention.",
    "tags": EVENTS_TAGS,
    "parameters": [EVENT_ID],
    "responses": {"200": opdoc.ok("WebhookEvent"), "401": opdoc.UNAUTHORIZED,
                  "403": EVENTS_FORBIDDEN,
                  "404": opdoc.error("Event not found or not owned by caller"),
                  "410": opdoc.error(f"Event past {DAYS}-day retention")},
}},
    "EventRedelivery": {"post": {
    "operationId": "redeliverEvent",
    "summary": "Replay a webhook event",
    "description": "To one subscription (body {webhook_id}) or to every subscription "
                   "the event was dispatched to (empty body), under the original event "
                   "id so a receiver that has it already discards the replay. A "
                   "subscription with a delivery of the event still pending is skipped "
                   "(status skipped); one switched off is skipped in a fan-out and "
                   "refused (409) when targeted.",
    "tags": EVENTS_TAGS,
    "parameters": [EVENT_ID],
    "requestBody": {**opdoc.body("RedeliverRequest", "{webhook_id} for one subscription; "
                                 "empty for all"), "required": False},
    "responses": {"200": opdoc.ok("RedeliverResponse"), "401": opdoc.UNAUTHORIZED,
                  "403": EVENTS_FORBIDDEN, "404": opdoc.error("Event not found"),
                  "409": opdoc.error("Webhook not in the originally-matched set, or "
                                     "disabled"),
                  "410": opdoc.error("Event past retention")},
}},
    "Health": {"get": {
    "operationId": "getHealth",
    "summary": "Whether this process can serve (its database answers)",
    "responses": {
        "200": {"description": "Serving", "content": {opdoc.JSON: {"schema": {
            "type": "object", "properties": {"status": {"type": "string"}}}}}},
        "503": {"description": "The database does not answer", "content": {opdoc.JSON: {
            "schema": {"type": "object", "properties": {"status": {"type": "string"}}}}}},
    },
}},
    "Info": {"get": {
    "operationId": "getDeploymentInfo",
    "summary": "Deployment info: shared domain, slug registration, public URL",
    "responses": {"200": opdoc.ok("DeploymentInfo")},
}},
    "ApproveLink": doc("approve"),
    "RejectLink": doc("reject"),
    "Unsubscribe": {
        "get": {
            "operationId": "unsubscribePage",
            "summary": "Managed unsubscribe (RFC 8058): the confirmation page",
            "description": "The link of a message's List-Unsubscribe field. Changes nothing. "
                           "No API key: the token is the credential.",
            "tags": ["Unsubscribe"],
            "parameters": [{"name": "token", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {"200": page("The confirmation page"),
                          "404": page("Not an unsubscribe link of this server")},
        },
        "post": {
            "operationId": "unsubscribeConfirm",
            "summary": "Managed unsubscribe: suppress the recipient for the sending agent",
            "description": "The RFC 8058 one-click body List-Unsubscribe=One-Click (200, "
                           "empty body) or the page's form (200, a page). Acts once.",
            "tags": ["Unsubscribe"],
            "parameters": [{"name": "token", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {"200": page("Unsubscribed"),
                          "400": page("Neither the one-click body nor the form"),
                          "404": page("Not an unsubscribe link of this server")},
        },
    },
    "AgentMessages": {
    "get": {
        "summary": "List messages for an agent",
        "description": "Newest first unless sort=asc. Filters are sealed into the "
                       "signed next_token: a continuation with other filters is a 400.",
        "operationId": "listMessages",
        "tags": ["Messages"],
        "parameters": LIST_PARAMS,
        "responses": {
            "200": opdoc.ok("ListMessagesResponse"),
            "400": opdoc.error("Invalid parameter or pagination token, or a token "
                               "issued for other filters"),
            "401": opdoc.UNAUTHORIZED,
            "404": opdoc.error("Agent not found or not yours"),
        },
    },
},
    "AgentMessage": {
    "get": {
        "summary": "Get a single message",
        "description": "The full message: raw RFC 5322 bytes (base64) and the "
                       "X-E2A-Auth-* headers. Marks an unread inbound message read.",
        "operationId": "getMessage",
        "tags": ["Messages"],
        "parameters": [opdoc.AGENT_EMAIL, MESSAGES_MESSAGE_ID],
        "responses": {
            "200": opdoc.ok("MessageDetail"),
            "401": opdoc.UNAUTHORIZED,
            "404": opdoc.error("Message not found"),
        },
    },
    "patch": {
        "summary": "Update a message (labels)",
        "description": "Applies a label delta and answers the resulting labels. Labels: "
                       f"[a-z0-9:_-], 1-{labels.MAX_LENGTH} characters, at most "
                       f"{labels.MAX_PER_REQUEST} per list, {labels.MAX_PER_MESSAGE} per "
                       f"message; the {labels.SYSTEM_PREFIX!r} prefix is reserved. A label "
                       "in both lists is removed. An empty body changes nothing.",
        "operationId": "updateMessage",
        "tags": ["Messages"],
        "parameters": [opdoc.AGENT_EMAIL, MESSAGES_MESSAGE_ID],
        "requestBody": opdoc.body("UpdateMessageRequest", "Label delta"),
        "responses": {
            "200": opdoc.ok("UpdateMessageResponse"),
            "400": opdoc.error("Invalid label or per-message cap exceeded"),
            "401": opdoc.UNAUTHORIZED,
            "404": opdoc.error("Message not found"),
        },
    },
},
    "Metrics": {"get": {
    "operationId": "getMetrics",
    "summary": "Prometheus metrics of this API (all its worker processes)",
    "responses": {"200": {"description": "Prometheus text exposition format",
                          "content": {"text/plain": {"schema": {"type": "string"}}}}},
}},
    "OpenApiDocument": {"get": {
    "operationId": "getOpenApiDocument",
    "summary": "This API's OpenAPI 3 document",
    "responses": {"200": {"description": "OK", "content": {opdoc.JSON: {
        "schema": {"type": "object"}}}}},
}},
    "PendingMessages": {
    "get": {
        "operationId": "listPendingMessages",
        "summary": "List messages waiting for HITL approval",
        "description": "Every held message of every agent of yours (an agent-scoped key: "
                       "its agent's), the soonest to expire first, at most "
                       f"{MAX_PENDING_PAGE} a page; `next_token` (empty on the last "
                       "page) continues. No bodies or attachments: the detail endpoint "
                       "has them.",
        "tags": PENDING_TAGS,
        "parameters": [{**opdoc.query_param(
            "status", "Only pending_approval is supported",
            {"type": "string", "enum": [PENDING]}), "required": True},
            opdoc.query_param("page_size", f"Messages per page, 1-{MAX_PENDING_PAGE} "
                              f"(default {MAX_PENDING_PAGE})",
                              {"type": "integer", "minimum": 1,
                               "maximum": MAX_PENDING_PAGE}),
            opdoc.query_param("token", "next_token of the previous page")],
        "responses": {
            "200": opdoc.ok("ListPendingMessagesResponse"),
            "400": opdoc.error("Unsupported or missing status"),
            "401": opdoc.UNAUTHORIZED,
        },
    },
},
    "PendingMessage": {
    "get": {
        "operationId": "getPendingMessage",
        "summary": "Fetch a held outbound message",
        "description": "Recipients, subject, body, attachments and review metadata of "
                       "one of your outbound messages. Once it is sent, rejected or "
                       "expired, the body, HTML and attachments are gone (empty). A "
                       "reply carries `inbound`: the sender, subject, time and "
                       "SPF/DKIM/DMARC verdicts of the message it answers.",
        "tags": PENDING_TAGS,
        "parameters": [PENDING_MESSAGE_ID],
        "responses": {
            "200": opdoc.ok("PendingMessageDetail"),
            "401": opdoc.UNAUTHORIZED,
            "404": NOT_YOURS,
        },
    },
},
    "PendingApproval": {
    "post": {
        "operationId": "approvePendingMessage",
        "summary": "Approve a held outbound message",
        "description": "Sends the held message (DKIM-signed, through the mail server) and "
                       "marks it sent. Any of subject, body_text, body_html, to, cc, bcc, "
                       "attachments replace the draft's before it goes; `edited` says "
                       "whether one really differed. An empty body sends the draft as "
                       "it is. The body, HTML and attachments are then wiped.",
        "tags": PENDING_TAGS,
        "parameters": [PENDING_MESSAGE_ID, idempotent.PARAMETER],
        "requestBody": {**opdoc.body("ApprovePendingMessageRequest",
                                     "Optional field overrides"), "required": False},
        "responses": {
            "200": opdoc.ok("ApprovePendingMessageResponse"),
            "400": opdoc.error("Invalid overrides (addresses, header characters, sizes); "
                               "nothing was sent"),
            "401": opdoc.UNAUTHORIZED,
            "403": AGENT_KEY,
            "404": NOT_YOURS,
            "409": opdoc.error("The message is no longer pending approval, or another "
                               "request with this Idempotency-Key is in progress"),
            "422": opdoc.error("Idempotency-Key reused with a different request body, "
                               "or the mail server refused the message for good "
                               "(release_refused: it is still held, edit or reject it)"),
            "503": opdoc.error("The mail server did not take the message; it is still "
                               "held, retry later"),
        },
    },
},
    "PendingRejection": {
    "post": {
        "operationId": "rejectPendingMessage",
        "summary": "Reject a held outbound message",
        "description": "The message is never sent; its body, HTML, attachments and raw "
                       f"copy are wiped. The optional reason (at most {PENDING_MAX_REASON_LENGTH} "
                       "characters) is kept.",
        "tags": PENDING_TAGS,
        "parameters": [PENDING_MESSAGE_ID],
        "requestBody": {**opdoc.body("RejectPendingMessageRequest",
                                     "Optional rejection reason"), "required": False},
        "responses": {
            "200": opdoc.ok("RejectPendingMessageResponse"),
            "400": opdoc.error("Invalid request body"),
            "401": opdoc.UNAUTHORIZED,
            "403": AGENT_KEY,
            "404": NOT_YOURS,
            "409": NOT_PENDING,
        },
    },
},
    "Send": {
    "post": {
        "operationId": "sendEmail",
        "summary": "Send a new email",
        "description": "Sends from `from`, an agent of yours on a verified domain, through "
                       "the mail server (DKIM-signed on the way out). The message gets a "
                       "conversation_id (yours, or a new conv_...; one that another "
                       "account's messages carry is refused, 403). Attachments: base64 "
                       "`data`, at most 10 files, 10 MB each, 25 MB in all.",
        "tags": SEND_TAGS,
        "parameters": [idempotent.PARAMETER],
        "requestBody": opdoc.body("SendEmailRequest", "Email to send"),
        "responses": {**sent_responses("Message"),
                      **errors("No agent of yours at the `from` address")},
    },
},
    "Reply": {
    "post": {
        "operationId": "replyToMessage",
        "summary": "Reply to an inbound email",
        "description": "Goes to the message's Reply-To (else From); with reply_all also "
                       "to its other To and Cc addresses, never the agent itself. "
                       "Subject Re: (not doubled), In-Reply-To and References thread it; "
                       "it keeps the message's conversation_id unless you pass one.",
        "tags": SEND_TAGS,
        "parameters": [opdoc.AGENT_EMAIL, SEND_MESSAGE_ID, idempotent.PARAMETER],
        "requestBody": opdoc.body("ReplyToMessageRequest", "Reply content"),
        "responses": {**sent_responses("Reply"),
                      **errors("Message not found or does not belong to this agent")},
    },
},
    "Forward": {
    "post": {
        "operationId": "forwardMessage",
        "summary": "Forward an inbound email",
        "description": "Your optional comment, then a \"Forwarded message\" block with "
                       "the original's From, Date, Subject and To and its text. A new "
                       "thread (no In-Reply-To/References, a new conversation_id) unless "
                       "you pass conversation_id.",
        "tags": SEND_TAGS,
        "parameters": [opdoc.AGENT_EMAIL, SEND_MESSAGE_ID, idempotent.PARAMETER],
        "requestBody": opdoc.body("ForwardMessageRequest", "Forward content"),
        "responses": {**sent_responses("Forward"),
                      **errors("Message not found or does not belong to this agent")},
    },
},
    "AgentTest": {
    "post": {
        "operationId": "sendTestEmail",
        "summary": "Send a test email",
        "description": "The agent sends a short message to its own address, through the "
                       "mail server and back in: it shows up in the agent's inbox (and "
                       "on its WebSocket or webhook).",
        "tags": SEND_TAGS,
        "parameters": [opdoc.AGENT_EMAIL],
        "responses": {
            **sent_responses("Test email"),
            "401": opdoc.UNAUTHORIZED,
            "403": opdoc.error("Agent domain not verified"),
            "404": opdoc.error("Agent not found"),
            "429": opdoc.error("Rate limit exceeded"),
            "503": opdoc.error("The mail server did not take the message"),
        },
    },
},
    "SigningSecrets": {
    "get": {
        "operationId": "listSigningSecrets",
        "summary": "List your signing secrets",
        "description": "Newest first; the newest signs new mail. The secret itself is "
                       "never listed (secret is empty): it is shown once, at creation.",
        "responses": {"200": opdoc.ok("ListSigningSecretsResponse"), **ACCOUNT_ERRORS},
    },
    "post": {
        "operationId": "createSigningSecret",
        "summary": "Create a signing secret",
        "description": f"At most {signing_secrets.MAX_SECRETS} per user. The response "
                       "holds the secret (whsec_<64 hex>); it cannot be read again.",
        "requestBody": {"required": False, "content": {"application/json": {
            "schema": opdoc.ref("internal_agent.CreateSigningSecretRequest")}}},
        "responses": {"201": opdoc.ok("CreateSigningSecretResponse", "Created"),
                      "400": opdoc.error("Bad request, or the cap is reached"),
                      **ACCOUNT_ERRORS},
    },
},
    "SigningSecret": {"delete": {
    "operationId": "deleteSigningSecret",
    "summary": "Delete a signing secret",
    "description": "Refused while it is the user's last one: create its replacement "
                   "first.",
    "parameters": [opdoc.path_param("id", "Signing secret id (sec_...)")],
    "responses": {"204": {"description": "Deleted"},
                  "400": opdoc.error("It is the last signing secret"),
                  "404": opdoc.error("No such secret of this user"), **ACCOUNT_ERRORS},
}},
    "Webhooks": {
    "get": op("listWebhooks", "List webhook subscribers",
               "Every subscription of the caller, enabled or not, oldest first. "
               "signing_secret is never included.",
               {"200": opdoc.ok("ListWebhooksResponse")}),
    "post": op("createWebhook", "Create webhook subscriber",
                "The response carries signing_secret (whsec_<64 hex>) this once; every "
                "delivery is signed with it: X-E2A-Signature: t=<unix>,v1=<hex of "
                "HMAC-SHA256(secret, t + '.' + body)>. " + RULES,
                {"201": opdoc.ok("WebhookResponse", "Created"),
                 "400": opdoc.error("Validation error, or the per-user cap is reached")},
                requestBody=opdoc.body("CreateWebhookRequest", "Webhook spec")),
},
    "Webhook": {
    "get": op("getWebhook", "Get webhook subscriber", "signing_secret is not included.",
               {"200": opdoc.ok("WebhookResponse"), "404": WEBHOOKS_NOT_FOUND},
               parameters=[WEBHOOK_ID]),
    "patch": op("updateWebhook", "Update webhook subscriber",
                 "Fields absent are unchanged; url, events and filters replace the "
                 "stored value whole. enabled=true on a subscription switched off after "
                 "repeated failures is refused (409) for "
                 f"{int(webhooks.REENABLE_COOLDOWN.total_seconds() // 60)} minutes after "
                 "auto_disabled_at; once on again, its pending deliveries resume. " + RULES,
                 {"200": opdoc.ok("WebhookResponse"), "400": opdoc.error("Validation error"),
                  "404": WEBHOOKS_NOT_FOUND, "409": opdoc.error("Re-enable cool-down")},
                 parameters=[WEBHOOK_ID],
                 requestBody=opdoc.body("UpdateWebhookRequest", "Patch body")),
    "delete": op("deleteWebhook", "Delete webhook subscriber",
                  "Removes the subscription and its deliveries, pending ones included.",
                  {"204": {"description": "No content"}, "404": WEBHOOKS_NOT_FOUND},
                  parameters=[WEBHOOK_ID]),
},
    "WebhookSecretRotation": {"post": op(
    "rotateWebhookSecret", "Rotate webhook signing secret",
    "A new secret signs from now on; for "
    f"{int(webhooks.ROTATION_GRACE.total_seconds() // 3600)} hours each delivery also "
    "carries a second v1= signature made with the previous secret.",
    {"200": opdoc.ok("RotateWebhookSecretResponse"), "404": WEBHOOKS_NOT_FOUND},
    parameters=[WEBHOOK_ID])},
    "WebhookTest": {"post": op(
    "testWebhook", "Fire a synthetic webhook event for development",
    "Queues one delivery of a synthetic event (type from event, default "
    "email.received; data as given) to this subscription only, whatever its filters, "
    "signed like any other. One attempt, no retries; a failure does not count towards "
    "auto-disable. The event is not listed under /api/v1/events.",
    {"200": opdoc.ok("TestWebhookResponse"), "400": opdoc.error("Unknown event type"),
     "404": WEBHOOKS_NOT_FOUND, "409": opdoc.error("Webhook disabled")},
    parameters=[WEBHOOK_ID],
    requestBody={**opdoc.body("TestWebhookRequest", "Synthetic event"), "required": False})},
    "WebhookDeliveries": {"get": op(
    "listWebhookDeliveries", "List recent webhook deliveries",
    "Newest first. A delivery is pending (next_retry_at says when it is tried next), "
    "delivered, or failed after its last retry. Retries follow 1m, 5m, 15m, 1h, 4h, 8h, "
    "16h, 24h.",
    {"200": opdoc.ok("ListWebhookDeliveriesResponse"), "400": opdoc.error("Bad query"),
     "404": WEBHOOKS_NOT_FOUND},
    parameters=[WEBHOOK_ID,
                opdoc.query_param("limit", f"Page size (default {DEFAULT_DELIVERIES}, "
                                  f"max {MAX_DELIVERIES})", {"type": "integer"}),
                opdoc.query_param("status", "pending, delivered or failed",
                                  {"type": "string",
                                   "enum": ["pending", "delivered", "failed"]})])},
    "WebhookRedeliverSince": {"post": op(
    "redeliverWebhookSince", "Bulk-replay events for a webhook",
    "Queues again every event dispatched to this subscription since `since` (RFC 3339, "
    f"at most {webhooks.REDELIVER_WINDOW.days} days back), under its original id, except "
    "those with a delivery to it still pending. If the subscription is switched off, "
    f"they wait until it is on. At most {REDELIVER_SINCE_LIMIT.per_window} calls per "
    "user per hour.",
    {"200": opdoc.ok("RedeliverSinceResponse"),
     "400": opdoc.error("since out of window or malformed"), "404": WEBHOOKS_NOT_FOUND,
     "429": opdoc.error("Too many bulk replays")},
    parameters=[WEBHOOK_ID],
    requestBody=opdoc.body("RedeliverSinceRequest", "Replay window"))},
    "AgentSocket": {
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
        "parameters": [opdoc.AGENT_EMAIL, TOKEN],
        "responses": {
            "101": {"description": "Switching Protocols: the WebSocket is open"},
            "426": opdoc.error("Not a WebSocket upgrade request"),
        },
    },
},
}
