"""``GET /v1/account/export``'s document: e2a's UserExport, schema "4", over
the legacy export's reading and streaming (api/export.py). Only the shape of
each record is /v1's: agents as AgentIdentity, domains as Domain, messages as
Message (the MessageView's fields, its owner's address and its stored
bodies). The same never-exported list holds: no key digests, no secrets, no
DKIM private keys; every field is picked by name."""

from __future__ import annotations

from typing import Any

import psycopg

from e2a.api import export
from e2a.api.export import Shape
from e2a.api.v1 import views
from e2a.core.accounts.domains import sending_status
from e2a.core.config import Config
from e2a.core.store import suppressions as suppression_store
from e2a.core.timefmt import rfc3339

SCHEMA_VERSION = "4"

Row = dict[str, Any]


def _dt(moment: Any) -> str | None:
    return rfc3339(moment) if moment is not None else None


def _user(row: Row) -> Row:
    return {"id": row["id"], "email": row["email"], "name": row["name"],
            "created_at": rfc3339(row["created_at"])}


def _agent(row: Row) -> Row:
    """AgentIdentity. Protection here is the legacy HITL switch: holding
    every outbound draft is an outbound gate whose action is review; no
    scanner runs, so the scan fields say off."""
    gate = {"policy": "open", "action": "flag", "scan": "off", "sensitivity": "off"}
    view: Row = {
        "email": row["email"], "name": row["name"], "user_id": row["user_id"],
        "domain": row["domain"], "registered_domain": row["domain"],
        "domain_verified": row["domain_verified"], "public": False,
        "created_at": rfc3339(row["created_at"]),
        "inbound_7d": row["inbound_7d"], "outbound_7d": row["outbound_7d"],
        "pending_count": row["pending_count"],
        "last_delivery_at": _dt(row["last_delivery_at"]),
        "ttl_seconds": row["hitl_ttl_seconds"], "on_expiry": row["hitl_expiration_action"],
        "suppress_notifications": False,
    }
    for direction in ("inbound", "outbound"):
        held = direction == "outbound" and row["hitl_enabled"]
        view.update({f"{direction}_policy": gate["policy"],
                     f"{direction}_policy_action": "review" if held else gate["action"],
                     f"{direction}_scan": gate["scan"],
                     f"{direction}_scan_sensitivity": gate["sensitivity"],
                     f"{direction}_scan_block_threshold": 0,
                     f"{direction}_scan_review_threshold": 0})
    if row.get("deleted_at") is not None:
        view["deleted_at"] = rfc3339(row["deleted_at"])
    return view


def _domain(row: Row) -> Row:
    """Domain (the export's, with the public DKIM key and no records)."""
    view: Row = {"domain": row["domain"], "user_id": row["user_id"],
                 "primary": row["is_primary"], "verification_token": row["verification_token"],
                 "verified": row["verified"], "agent_count": row["agent_count"],
                 "sending_status": sending_status(row),
                 "dkim_selector": row["dkim_selector"],
                 "dkim_public_key": row["dkim_public_key"],
                 "created_at": rfc3339(row["created_at"]),
                 "verified_at": _dt(row["verified_at"]),
                 "last_checked_at": _dt(row["last_checked_at"])}
    return view


def _api_key(row: Row) -> Row:
    return {"id": row["id"], "name": row["name"], "key_prefix": row["key_prefix"],
            "scope": "agent" if row["agent_id"] else "account",
            "created_at": rfc3339(row["created_at"]),
            "last_used_at": _dt(row["last_used_at"]), "revoked_at": _dt(row["revoked_at"])}


def _extra(conn: psycopg.Connection, user_id: str) -> Row:
    # Protection decisions are in the event log, not a table of their own
    # yet: empty, as the schema requires the key.
    return {"protection_events": [],
            "suppressions": [export.suppression(s)
                             for s in suppression_store.all_for_user(conn, user_id)],
            "usage_events": [], "oauth_connections": []}


def shape(cfg: Config) -> Shape:
    authserv_id = cfg.mail.authserv_id

    def message(row: Row, emails: dict[str, str]) -> Row:
        view = views.message(row, authserv_id)
        view.update({"agent_email": emails.get(row["agent_id"], ""), "type": row["type"],
                     "bcc": list(row["bcc"] or []), "expires_at": None,
                     "status": row["status"] or "",
                     "approval_expires_at": _dt(row["approval_expires_at"]),
                     "reviewed_at": _dt(row["reviewed_at"]),
                     "rejection_reason": row["rejection_reason"],
                     "method": row["method"], "provider_message_id": row["provider_message_id"],
                     "email_message_id": row["email_message_id"],
                     "webhook_attempts": row["webhook_attempts"]})
        if row["body_text"]:
            view["text"] = row["body_text"]
        if row["body_html"]:
            view["html"] = row["body_html"]
        return {k: v for k, v in view.items()
                if v is not None or k in ("authentication", "envelope_from", "header_from",
                                          "verified_domain", "expires_at", "raw_message")}

    return Shape(SCHEMA_VERSION, _user, _agent, _domain, _api_key, message, _extra)
