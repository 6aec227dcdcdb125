"""The policy decision for one request: an ordered list of RCPT checks.

Each check looks at one recipient of one of our domains and returns a Postfix
action to stop at, or None to let the next check speak. Everything that is
not an RCPT for an agent domain is DUNNO: Postfix's own restrictions decide.
Database errors propagate; the daemon then disconnects so that Postfix
applies smtpd_policy_service_default_action (a 4xx), never a silent accept.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from e2a.core import ratelimit
from e2a.core.config import Config
from e2a.core.mta import verp
from e2a.core.net import addresses
from e2a.core.outbound import replyaddress, unsubscribe
from e2a.core.store import agents as agent_store
from e2a.core.store import usage as usage_store

DUNNO = "DUNNO"


@dataclass(frozen=True)
class RcptLimits:
    """The inbound rate limits; None is off."""

    per_client_ip: ratelimit.Limit | None = None
    per_agent: ratelimit.Limit | None = None

    @classmethod
    def from_config(cls, cfg: Config) -> RcptLimits:
        ip, agent = cfg.policy.rate_per_client_ip, cfg.policy.rate_per_agent
        return cls(per_client_ip=ratelimit.Limit("inbound-ip", ip) if ip else None,
                   per_agent=ratelimit.Limit("inbound-agent", agent) if agent else None)


@dataclass(frozen=True)
class Rcpt:
    attrs: Mapping[str, str]  # the whole request, for checks that need the client
    recipient: str  # as Postfix sent it
    # The agent at this address with its owner's quota (usage.agent_with_quota),
    # None when there is none.
    agent: dict[str, Any] | None
    domain_verified: bool  # of the agent domain the address is on
    limits: RcptLimits


Check = Callable[[psycopg.Connection, Rcpt], str | None]


# Postfix words the reply itself: "550 5.1.1 <rcpt>: Recipient address
# rejected: " and then the text of our action, so the text is only the reason.


def agent_exists(conn: psycopg.Connection, rcpt: Rcpt) -> str | None:
    if rcpt.agent is None:
        return "550 5.1.1 no such agent"
    return None


def domain_verified(conn: psycopg.Connection, rcpt: Rcpt) -> str | None:
    if not rcpt.domain_verified:
        return "550 5.7.1 the agent's domain is not verified"
    return None


def within_quota(conn: psycopg.Connection, rcpt: Rcpt) -> str | None:
    quota = rcpt.agent
    if quota is None:
        return None
    if quota["messages_this_month"] >= quota["max_messages_month"]:
        return "552 5.2.2 mailbox full: monthly message quota reached"
    # The size the client declared in MAIL FROM (0 when it declared none).
    if quota["storage_bytes"] + max(_declared_size(rcpt.attrs), 1) > quota["max_storage_bytes"]:
        return "552 5.2.2 mailbox full: storage quota reached"
    return None


def within_rate(conn: psycopg.Connection, rcpt: Rcpt) -> str | None:
    """The client's limit before the agent's: a client refused for its own
    flood does not use up the agent's rate (one statement for both)."""
    hits = []
    client = client_key(rcpt.attrs.get("client_address", ""))
    if rcpt.limits.per_client_ip is not None and client:
        hits.append((rcpt.limits.per_client_ip, client))
    if rcpt.limits.per_agent is not None and rcpt.agent is not None:
        hits.append((rcpt.limits.per_agent, rcpt.agent["id"]))
    refusal = ratelimit.first_refusal(conn, hits) if hits else None
    if refusal is None:
        return None
    if refusal[0] is rcpt.limits.per_client_ip:
        return "450 4.7.1 too much mail from your address, try again later"
    return "450 4.7.1 too much mail for this agent, try again later"


# In order; the first action wins. The rate check comes last, so recipients
# refused anyway do not use up anyone's rate.
RCPT_CHECKS: tuple[Check, ...] = (agent_exists, domain_verified, within_quota, within_rate)


def client_key(address: str) -> str:
    """What one client is for the rate limit: its IPv4 address, or its IPv6
    /64 (one host usually holds a whole /64, so single addresses are free)."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return ""  # "unknown", or nothing: no client to count
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _declared_size(attrs: Mapping[str, str]) -> int:
    value = attrs.get("size", "").strip()
    # isdigit() alone takes "²", which int() refuses. Only a hint: the milter
    # counts the real bytes.
    return int(value) if value.isascii() and value.isdigit() else 0


def decide(pool: ConnectionPool, attrs: Mapping[str, str], *, limits: RcptLimits,
           db_timeout: float) -> str:
    if attrs.get("protocol_state", "").upper() != "RCPT":
        return DUNNO
    # Canonical, as the milter and the filter see it: "hello"@domain or
    # hello@domain. is the same agent to all three.
    recipient = addresses.mailbox(attrs.get("recipient", ""))
    local, at, domain_name = recipient.rpartition("@")
    if not at or not local or not domain_name:
        return DUNNO  # null or domainless recipient: not an agent address
    with pool.connection(timeout=db_timeout) as conn:
        # One query for the common case (an agent); the domain alone only
        # when there is no agent, to tell our domains from everyone else's.
        agent = usage_store.agent_with_quota(conn, recipient)
        if agent is not None:
            verified = agent["domain_verified"]
        else:
            domain = agent_store.domain_by_name(conn, domain_name)
            if domain is None:
                return DUNNO  # not one of our domains
            if verp.shaped(recipient):
                return DUNNO  # a bounce of our outbound mail: the milter takes it
            if replyaddress.parse(recipient):
                return DUNNO  # a reply to an owner notification: the milter takes it
            if unsubscribe.token_of(recipient):
                return DUNNO  # a mailto: unsubscribe: the milter takes it
            verified = domain["verified"]
        rcpt = Rcpt(attrs, recipient, agent, verified, limits)
        for check in RCPT_CHECKS:
            action = check(conn, rcpt)
            if action is not None:
                return action
    return DUNNO
