"""The X-E2A-Auth-* attestation headers (docs/contract.md): what we vouch for about
an inbound message, HMAC-signed so an agent can check it came from us."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

PREFIX = "X-E2A-Auth-"


@dataclass(frozen=True)
class Attestation:
    verified: bool
    sender: str
    entity_type: str  # "agent" | "human"
    domain_check: str  # "spf=<r>; dkim=<r>; dmarc=<r>"
    delegation: str  # "" or "agent=<id>;human=<id>"
    timestamp: str  # RFC 3339 UTC to the second
    message_id: str  # our msg_<32 hex>
    body_hash: str  # hex SHA-256 of raw_message as delivered

    def canonical(self) -> bytes:
        fields = ("true" if self.verified else "false", self.sender, self.entity_type,
                  self.domain_check, self.delegation, self.timestamp, self.message_id,
                  self.body_hash)
        return "\n".join(fields).encode()

    def sign(self, secret: str) -> str:
        return hmac.new(secret.encode(), self.canonical(), hashlib.sha256).hexdigest()

    def headers(self, secret: str) -> dict[str, str]:
        """Header name -> value, in the order of docs/contract.md; Delegation only when set."""
        out = {
            PREFIX + "Verified": "true" if self.verified else "false",
            PREFIX + "Sender": self.sender,
            PREFIX + "Entity-Type": self.entity_type,
            PREFIX + "Domain-Check": self.domain_check,
        }
        if self.delegation:
            out[PREFIX + "Delegation"] = self.delegation
        out.update({
            PREFIX + "Timestamp": self.timestamp,
            PREFIX + "Message-Id": self.message_id,
            PREFIX + "Body-Hash": self.body_hash,
            PREFIX + "Signature": self.sign(secret),
        })
        return out


def body_hash(raw_message: bytes) -> str:
    return hashlib.sha256(raw_message).hexdigest()


def verify(headers: dict[str, str], secret: str) -> bool:
    """Check a received header set (what an agent SDK does), constant-time."""
    try:
        att = Attestation(
            verified=headers[PREFIX + "Verified"] == "true",
            sender=headers[PREFIX + "Sender"],
            entity_type=headers[PREFIX + "Entity-Type"],
            domain_check=headers[PREFIX + "Domain-Check"],
            delegation=headers.get(PREFIX + "Delegation", ""),
            timestamp=headers[PREFIX + "Timestamp"],
            message_id=headers[PREFIX + "Message-Id"],
            body_hash=headers[PREFIX + "Body-Hash"],
        )
    except KeyError:
        return False
    return hmac.compare_digest(att.sign(secret), headers.get(PREFIX + "Signature", ""))
