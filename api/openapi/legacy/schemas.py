"""The components/schemas of the OpenAPI document: e2a's DEFINITIONS
(reference/e2a-v1-api.txt), by the same names and fields, plus our error
envelope.

One entry per schema: its fields separated by spaces, each ``name`` (a
string) or ``name:type``, where type is string, integer, boolean, object,
another schema's name, or ``[type]`` for an array of it.
"""

from __future__ import annotations

from typing import Any

DEFINITIONS: dict[str, str] = {
    "APIKeyExportEntry": "created_at id key_prefix last_used_at name revoked_at",
    "Agent":
        "agent_mode created_at domain domain_verified:boolean email hitl_enabled:boolean "
        "hitl_expiration_action hitl_ttl_seconds:integer id name webhook_url",
    "ApprovePendingMessageRequest":
        "attachments:[internal_agent.Attachment] bcc:[string] body_html body_text cc:[string] "
        "subject to:[string]",
    "ApprovePendingMessageResponse": "edited:boolean message_id method provider_message_id status",
    "ConversationDetail":
        "conversation_id first_message_at has_unread:boolean inbound_count:integer labels:[string] "
        "last_message_at latest_sender latest_subject message_count:integer "
        "messages:[MessageSummary] outbound_count:integer participants:[string]",
    "ConversationSummary":
        "conversation_id first_message_at has_unread:boolean inbound_count:integer last_message_at "
        "latest_sender latest_subject message_count:integer outbound_count:integer",
    "CreateSigningSecretResponse": "created_at id name secret secret_prefix",
    "CreateWebhookRequest": "description events:[string] filters:WebhookFilters url",
    "DNSRecord": "host priority:integer value",
    "DNSRecords": "dkim:DNSRecord mx:DNSRecord txt:DNSRecord",
    "DeleteUserDataResult":
        "agents_deleted:integer api_keys_deleted:integer domains_deleted:integer "
        "messages_deleted:integer oauth_access_tokens_deleted:integer "
        "oauth_auth_codes_deleted:integer oauth_refresh_tokens_deleted:integer "
        "sessions_deleted:integer usage_events_deleted:integer usage_summaries_deleted:integer "
        "user_deleted:boolean",
    "DeliveryStatus": "delivered:integer failed:integer matched_webhooks:integer pending:integer",
    "DeploymentInfo": "public_url shared_domain slug_registration_enabled:boolean",
    "Domain":
        "agent_count:integer created_at dns_records:DNSRecords domain is_primary:boolean "
        "last_checked_at verification_token verified:boolean verified_at",
    "ForwardMessageRequest":
        "attachments:[internal_agent.Attachment] bcc:[string] body cc:[string] conversation_id "
        "html_body to:[string]",
    "LimitsCaps":
        "max_agents:integer max_domains:integer max_messages_month:integer "
        "max_storage_bytes:integer",
    "LimitsInfo": "limits:LimitsCaps plan_code upgrade_url usage:LimitsUsage",
    "LimitsUsage": "agents:integer domains:integer messages_month:integer storage_bytes:integer",
    "ListAgentsResponse": "agents:[Agent]",
    "ListConversationsResponse": "conversations:[ConversationSummary]",
    "ListDomainsResponse": "domains:[Domain]",
    "ListEventsResponse": "events:[WebhookEvent] next_token",
    "ListMessagesResponse": "messages:[MessageSummary] next_token",
    "ListPendingMessagesResponse": "messages:[PendingMessageSummary] next_token",
    "ListSigningSecretsResponse": "secrets:[SigningSecretSummary]",
    "ListWebhookDeliveriesResponse": "deliveries:[WebhookDeliveryResponse]",
    "ListWebhooksResponse": "webhooks:[WebhookResponse]",
    "MessageDetail":
        "auth_headers:object cc:[string] conversation_id created_at from labels:[string] "
        "message_id raw_message recipient reply_to:[string] status subject to:[string]",
    "MessageSummary":
        "cc:[string] conversation_id created_at direction from hitl_status labels:[string] "
        "message_id recipient reply_to:[string] size_bytes:integer status subject to:[string] "
        "webhook_error webhook_status",
    "OAuthConnectionEntry":
        "agent_email client_id client_name expires_at issued_at revoked_at scope",
    "PendingMessageDetail":
        "agent_id approval_expires_at attachments:[internal_agent.Attachment] bcc:[string] "
        "body_html body_text cc:[string] conversation_id created_at direction edited:boolean "
        "email_message_id hold_reason:object id inbound:PendingMessageInboundContext method "
        "provider_message_id "
        "rejection_reason reviewed_at reviewed_by_name reviewed_by_user_id status subject "
        "to:[string] type",
    "PendingMessageInboundContext": "auth_headers:object created_at sender subject",
    "PendingMessageSummary":
        "agent_id approval_expires_at bcc:[string] cc:[string] conversation_id created_at "
        "direction hold_reason:object id status subject to:[string] type",
    "RedeliverDeliveryResult": "delivery_id reason status webhook_id",
    "RedeliverRequest": "webhook_id",
    "RedeliverResponse":
        "deliveries:[RedeliverDeliveryResult] delivery_id event_id status webhook_id",
    "RedeliverSinceRequest": "since",
    "RedeliverSinceResponse": "scheduled:integer since skipped_already_pending:integer webhook_id",
    "RegisterAgentRequest": "agent_mode email name slug webhook_url",
    "RegisterAgentResponse": "domain email id",
    "RegisterDomainRequest": "domain",
    "RejectPendingMessageRequest": "reason",
    "RejectPendingMessageResponse": "message_id rejection_reason status",
    "ReplyToMessageRequest":
        "attachments:[internal_agent.Attachment] bcc:[string] body cc:[string] conversation_id "
        "html_body reply_all:boolean",
    "RotateWebhookSecretResponse": "previous_secret_expires_at signing_secret",
    "SendEmailRequest":
        "attachments:[internal_agent.Attachment] bcc:[string] body cc:[string] conversation_id "
        "from html_body subject to:[string]",
    "SendEmailResponse": "approval_expires_at message_id method status",
    "SigningSecretSummary": "created_at id last_signed_at name secret secret_prefix",
    "TestWebhookRequest": "data:object event",
    "TestWebhookResponse": "delivery_id",
    "UpdateAgentRequest":
        "agent_mode hitl_enabled:boolean hitl_expiration_action hitl_ttl_seconds:integer "
        "webhook_url",
    "UpdateDomainRequest": "is_primary:boolean",
    "UpdateMessageRequest": "add_labels:[string] remove_labels:[string]",
    "UpdateMessageResponse": "labels:[string] message_id",
    "UpdateWebhookRequest":
        "description enabled:boolean events:[string] filters:WebhookFilters url",
    "UsageEventEntry": "agent_id created_at direction domain event_type id",
    "UserExport":
        "agents:[github_com_Mnexa-AI_e2a_internal_identity.AgentIdentity] "
        "api_keys:[APIKeyExportEntry] domains:[github_com_Mnexa-AI_e2a_internal_identity.Domain] "
        "generated_at messages:[github_com_Mnexa-AI_e2a_internal_identity.Message] "
        "oauth_connections:[OAuthConnectionEntry] schema_version usage_events:[UsageEventEntry] "
        "user:UserExportUser",
    "UserExportUser": "created_at email id name",
    "VerifyDomainResponse": "dkim domain mx spf verified:boolean verified_at",
    "WebhookDeliveryResponse":
        "attempts:integer created_at event_type id last_attempt_at last_error "
        "last_status_code:integer next_retry_at status",
    "WebhookEvent":
        "agent_id conversation_id created_at data:object delivery_status:DeliveryStatus id "
        "message_id schema_version:integer status type",
    "WebhookFilters": "agent_ids:[string] conversation_ids:[string] labels:[string]",
    "WebhookResponse":
        "auto_disabled_at created_at description enabled:boolean events:[string] "
        "filters:WebhookFilters id last_delivered_at previous_secret_expires_at signing_secret url",
    "github_com_Mnexa-AI_e2a_internal_identity.AgentIdentity":
        "agent_mode created_at domain domain_verified:boolean email hitl_enabled:boolean "
        "hitl_expiration_action hitl_ttl_seconds:integer id inbound_7d:integer last_delivery_at "
        "name outbound_7d:integer pending_count:integer public:boolean user_id "
        "webhook_healthy:boolean webhook_url",
    "github_com_Mnexa-AI_e2a_internal_identity.Domain":
        "agent_count:integer created_at dkim_public_key dkim_selector domain is_primary:boolean "
        "last_checked_at user_id verification_token verified:boolean verified_at",
    "github_com_Mnexa-AI_e2a_internal_identity.Message":
        "agent_id approval_expires_at attachments:[integer] auth_headers:object bcc:[string] "
        "body_html body_text cc:[string] conversation_id created_at delivery_status direction "
        "edited:boolean email_message_id expires_at id inbox_status labels:[string] method "
        "provider_message_id raw_message:[integer] recipient rejection_reason reply_to:[string] "
        "reviewed_at reviewed_by_name reviewed_by_user_id sender size_bytes:integer status subject "
        "to_recipients:[string] type webhook_attempts:integer webhook_error webhook_status",
    "internal_agent.Attachment": "content_type data filename",
    "internal_agent.CreateSigningSecretRequest": "name",
}

# Where the reference's types are an artefact of how e2a's Go structs were
# documented, the document says what travels: Go marshals a []byte as a
# base64 string and a json.RawMessage as the JSON it holds.
_WIRE_TYPES: dict[tuple[str, str], dict[str, Any]] = {
    ("github_com_Mnexa-AI_e2a_internal_identity.Message", "raw_message"):
        {"type": "string", "format": "byte"},
    ("github_com_Mnexa-AI_e2a_internal_identity.Message", "attachments"):
        {"type": "array", "items": {"type": "object"}},
}

ERROR = "ErrorResponse"
_PLAIN = ("string", "integer", "boolean", "object")


def _type(spec: str) -> dict[str, Any]:
    if spec.startswith("[") and spec.endswith("]"):
        return {"type": "array", "items": _type(spec[1:-1])}
    if spec in _PLAIN:
        return {"type": spec}
    return {"$ref": f"#/components/schemas/{spec}"}


def _object(name: str, fields: str) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for field in fields.split():
        field_name, _, spec = field.partition(":")
        properties[field_name] = (_WIRE_TYPES.get((name, field_name))
                                  or _type(spec or "string"))
    return {"type": "object", "properties": properties}


COMPONENTS: dict[str, dict[str, Any]] = {
    name: _object(name, fields) for name, fields in DEFINITIONS.items()}

# Ours: every error response (api/errors.py).
COMPONENTS[ERROR] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message", "request_id", "details"],
        "properties": {
            "code": {"type": "string"},
            "message": {"type": "string"},
            "request_id": {"type": "string"},
            "details": {"type": "object"},
        },
    }},
}
