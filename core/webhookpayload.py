"""The bodies and headers of webhook POSTs (CONTRACT.md).

Subscriptions get the event envelope ``{"type", "id", "schema_version",
"created_at", "data"}`` signed with ``X-E2A-Signature``. A cloud-mode agent's
own webhook gets the message itself, its X-E2A-Auth-* attestation in the body
(``auth_headers``) and as HTTP headers.

The attestation is signed afresh for every attempt: receivers refuse a
timestamp older than five minutes, and a retry can come a day later. Every
other field is the one stored with the message, so the signature still binds
the exact bytes in ``raw_message``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from e2a.core import attest, webhooksig
from e2a.core.timefmt import rfc3339

_P = attest.PREFIX


def encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


_json = encode


def event_envelope(event_id: str, type_: str, schema_version: int, created_at: datetime,
                   data: Mapping[str, Any]) -> bytes:
    return _json({"type": type_, "id": event_id, "schema_version": str(schema_version),
                  "created_at": rfc3339(created_at), "data": dict(data)})


def subscription_headers(body: bytes, secrets: Sequence[str], event_id: str, type_: str,
                         now: int) -> dict[str, str]:
    return {webhooksig.HEADER: webhooksig.header(secrets, now, body),
            "X-E2A-Event-Id": event_id, "X-E2A-Event-Type": type_}


# What a /v1 subscriber is told besides (reference §4.1's frozen headers).
V1_HEADERS = {"X-E2A-Schema-Version": "1", "User-Agent": "e2a-webhooks/1"}


def resigned(stored: Mapping[str, str], secret: str, now: datetime) -> dict[str, str]:
    """The stored X-E2A-Auth-* headers with a new timestamp and signature;
    as stored when they are incomplete (nothing to re-sign)."""
    try:
        att = attest.Attestation(
            verified=stored[_P + "Verified"] == "true", sender=stored[_P + "Sender"],
            entity_type=stored[_P + "Entity-Type"], domain_check=stored[_P + "Domain-Check"],
            delegation=stored.get(_P + "Delegation", ""), timestamp=rfc3339(now),
            message_id=stored[_P + "Message-Id"], body_hash=stored[_P + "Body-Hash"])
    except KeyError:
        return dict(stored)
    return att.headers(secret)


def agent_payload(message: Mapping[str, Any], auth_headers: Mapping[str, str]) -> bytes:
    raw = message["raw_message"]
    return _json({
        "message_id": message["id"],
        "conversation_id": message["conversation_id"] or "",
        "from": message["sender"],
        "to": list(message["to_recipients"] or []),
        "cc": list(message["cc"] or []),
        "reply_to": list(message["reply_to"] or []),
        "recipient": message["recipient"],
        "raw_message": base64.b64encode(bytes(raw)).decode("ascii") if raw is not None else "",
        "auth_headers": dict(auth_headers),
        "received_at": rfc3339(message["created_at"]),
    })
