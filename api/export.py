"""The data export (``GET /api/v1/users/me/export``) as a stream of JSON.

A user may own gigabytes of mail, so the document is never built whole: the
account's small parts are read up front (a failure there is still an ordinary
error response), then messages follow agent by agent in batches bounded by
size, each batch on a connection borrowed only for its query. A failure
mid-stream cuts the connection, so a client never mistakes a truncated export
for a complete one.

The shapes are e2a's UserExport. Never in it: API key hashes, signing secret
values, webhook secrets, DKIM private keys: every field below is picked by name.
Beyond e2a, additively: ``signing_secrets`` and ``webhooks`` (metadata only),
``agent_id`` on API keys.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from e2a.core.store import domains as domain_store
from e2a.core.store import keys as key_store
from e2a.core.store import signing as signing_store
from e2a.core.store import suppressions as suppression_store
from e2a.core.store import userdata
from e2a.core.timefmt import rfc3339

log = logging.getLogger("e2a.api")

SCHEMA_VERSION = "1"
BATCH_ROWS = 200
# Content (raw mail, bodies, attachments) per batch; one message larger than
# this still comes, alone.
BATCH_BYTES = 8 * 1024 * 1024

Row = dict[str, Any]


def _user(row: Row) -> Row:
    return {"id": row["id"], "email": row["email"], "name": row["name"],
            "created_at": rfc3339(row["created_at"])}


def _agent(row: Row) -> Row:
    return {
        "id": row["id"], "user_id": row["user_id"], "email": row["email"],
        "name": row["name"], "domain": row["domain"],
        "domain_verified": row["domain_verified"], "agent_mode": row["agent_mode"],
        "webhook_url": row["webhook_url"], "hitl_enabled": row["hitl_enabled"],
        "hitl_ttl_seconds": row["hitl_ttl_seconds"],
        "hitl_expiration_action": row["hitl_expiration_action"],
        "public": False, "inbound_7d": row["inbound_7d"], "outbound_7d": row["outbound_7d"],
        "pending_count": row["pending_count"],
        "last_delivery_at": rfc3339(row["last_delivery_at"]),
        "webhook_healthy": row["webhook_healthy"], "created_at": rfc3339(row["created_at"]),
    }


def _domain(row: Row) -> Row:
    return {
        "domain": row["domain"], "user_id": row["user_id"], "is_primary": row["is_primary"],
        "verification_token": row["verification_token"], "verified": row["verified"],
        "verified_at": rfc3339(row["verified_at"]),
        "last_checked_at": rfc3339(row["last_checked_at"]),
        "dkim_selector": row["dkim_selector"], "dkim_public_key": row["dkim_public_key"] or "",
        "agent_count": row["agent_count"], "created_at": rfc3339(row["created_at"]),
    }


def _api_key(row: Row) -> Row:
    return {"id": row["id"], "name": row["name"], "key_prefix": row["key_prefix"],
            "agent_id": row["agent_id"] or "", "created_at": rfc3339(row["created_at"]),
            "last_used_at": rfc3339(row["last_used_at"]),
            "revoked_at": rfc3339(row["revoked_at"])}


def _signing_secret(row: Row) -> Row:
    return {"id": row["id"], "name": row["name"], "secret_prefix": row["secret_prefix"],
            "created_at": rfc3339(row["created_at"]),
            "last_signed_at": rfc3339(row["last_signed_at"])}


def _webhook(row: Row) -> Row:
    return {"id": row["id"], "url": row["url"], "description": row["description"],
            "events": list(row["events"]), "filters": row["filters"],
            "enabled": row["enabled"], "auto_disabled_at": rfc3339(row["auto_disabled_at"]),
            "last_delivered_at": rfc3339(row["last_delivered_at"]),
            "created_at": rfc3339(row["created_at"])}


def suppression(row: Row) -> Row:
    """A suppression as both generations show it (SuppressionView), in an
    export and in /v1's listings; the optional fields when the row has them."""
    found = {"address": row["address"], "source": row["source"],
             "created_at": rfc3339(row["created_at"])}
    for optional in ("agent_email", "reason", "source_message_id"):
        if row.get(optional):
            found[optional] = row[optional]
    return found


def _message(row: Row) -> Row:
    raw = row["raw_message"]
    return {
        "id": row["id"], "agent_id": row["agent_id"], "direction": row["direction"],
        "type": row["type"], "sender": row["sender"], "recipient": row["recipient"],
        "to_recipients": list(row["to_recipients"]), "cc": list(row["cc"]),
        "bcc": list(row["bcc"]), "reply_to": list(row["reply_to"]),
        "subject": row["subject"], "email_message_id": row["email_message_id"],
        "conversation_id": row["conversation_id"] or "",
        # e2a's Go server marshals its []byte as base64, as MessageDetail does.
        "raw_message": base64.b64encode(bytes(raw)).decode("ascii") if raw is not None else "",
        "size_bytes": row["size_bytes"], "auth_headers": row["auth_headers"],
        "inbox_status": row["inbox_status"] or "", "status": row["status"] or "",
        "delivery_status": row["delivery_status"], "labels": list(row["labels"]),
        "webhook_status": row["webhook_status"], "webhook_error": row["webhook_error"],
        "webhook_attempts": row["webhook_attempts"],
        "body_text": row["body_text"] or "", "body_html": row["body_html"] or "",
        "attachments": row["attachments"] if row["attachments"] is not None else [],
        "approval_expires_at": rfc3339(row["approval_expires_at"]),
        "expires_at": "", "edited": row["edited"],
        "reviewed_by_user_id": row["reviewed_by_user_id"] or "",
        "reviewed_by_name": row["reviewed_by_name"] or "",
        "reviewed_at": rfc3339(row["reviewed_at"]),
        "rejection_reason": row["rejection_reason"], "method": row["method"],
        "provider_message_id": row["provider_message_id"],
        "created_at": rfc3339(row["created_at"]),
    }


@dataclass(frozen=True)
class Shape:
    """How one API generation writes the export: its schema version and one
    function per record. The reading and streaming are the same for both."""

    schema_version: str
    user: Callable[[Row], Row]
    agent: Callable[[Row], Row]
    domain: Callable[[Row], Row]
    api_key: Callable[[Row], Row]
    # (message, the user's agent emails by id)
    message: Callable[[Row, dict[str, str]], Row]
    # The generation's further top-level keys, read up front.
    more: Callable[[psycopg.Connection, str], Row]


def _legacy_extra(conn: psycopg.Connection, user_id: str) -> Row:
    return {"signing_secrets": [_signing_secret(s)
                                for s in signing_store.list_secrets(conn, user_id)],
            "webhooks": [_webhook(w) for w in userdata.webhooks(conn, user_id)],
            "suppressions": [suppression(s)
                             for s in suppression_store.all_for_user(conn, user_id)],
            "usage_events": [], "oauth_connections": []}


LEGACY = Shape(SCHEMA_VERSION, _user, _agent, _domain, _api_key,
               lambda row, emails: _message(row), _legacy_extra)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class Export:
    """One user's export: ``head`` read at construction, ``chunks()`` streamed."""

    def __init__(self, pool: ConnectionPool, user: Row, shape: Shape = LEGACY) -> None:
        self._pool = pool
        self._shape = shape
        user_id = user["id"]
        with pool.connection() as conn:
            agents = userdata.agents(conn, user_id)
            self._head: Row = {
                "schema_version": shape.schema_version,
                "generated_at": rfc3339(datetime.now(UTC)),
                "user": shape.user(user),
                "agents": [shape.agent(a) for a in agents],
                "domains": [shape.domain(d)
                            for d in domain_store.domains_for_user(conn, user_id)],
                "api_keys": [shape.api_key(k) for k in key_store.keys_for_user(conn, user_id)],
                **shape.more(conn, user_id),
            }
        self._agent_ids = [a["id"] for a in agents]
        self._emails = {a["id"]: a["email"] for a in agents}
        self._user_id = user_id

    def chunks(self) -> Iterator[bytes]:
        head = _dumps(self._head)
        # The head's closing brace is replaced by the messages array.
        yield head[:-1] + b',"messages":['
        try:
            first = True
            for message in self._messages():
                yield (b"" if first else b",") + _dumps(self._shape.message(message,
                                                                            self._emails))
                first = False
        except psycopg.Error:
            # Only the kind and the user: the rows may hold message content.
            log.warning("export of %s aborted: database error", self._user_id, exc_info=False)
            raise
        yield b"]}"

    def _messages(self) -> Iterator[Row]:
        for agent_id in self._agent_ids:
            after: tuple[datetime, str] | None = None
            while True:
                with self._pool.connection() as conn:
                    batch = userdata.messages_batch(conn, agent_id, after, BATCH_ROWS,
                                                    BATCH_BYTES)
                if not batch:
                    break
                yield from batch
                after = (batch[-1]["created_at"], batch[-1]["id"])
