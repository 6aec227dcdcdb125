"""The policy decision for one request: an ordered list of RCPT checks.

Each check looks at one recipient of one of our domains and returns a Postfix
action to stop at, or None to let the next check speak. Everything that is
not an RCPT for an agent domain is DUNNO: Postfix's own restrictions decide.
Database errors propagate; the daemon then disconnects so that Postfix
applies smtpd_policy_service_default_action (a 4xx), never a silent accept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from e2a.core.store import agents as agent_store

DUNNO = "DUNNO"


@dataclass(frozen=True)
class Rcpt:
    attrs: Mapping[str, str]  # the whole request, for checks that need the client
    recipient: str  # as Postfix sent it
    agent: dict[str, Any] | None  # the agent at this address, None when there is none
    domain_verified: bool  # of the agent domain the address is on


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


# In order; the first action wins. Owner quota (552 5.2.2) and inbound rate
# limits (450 4.7.1) join here.
RCPT_CHECKS: tuple[Check, ...] = (agent_exists, domain_verified)


def decide(pool: ConnectionPool, attrs: Mapping[str, str], *, db_timeout: float) -> str:
    if attrs.get("protocol_state", "").upper() != "RCPT":
        return DUNNO
    recipient = attrs.get("recipient", "").strip()
    local, at, domain_name = recipient.rpartition("@")
    if not at or not local or not domain_name:
        return DUNNO  # null or domainless recipient: not an agent address
    with pool.connection(timeout=db_timeout) as conn:
        # One query for the common case (an agent); the domain alone only
        # when there is no agent, to tell our domains from everyone else's.
        agent = agent_store.agent_by_email(conn, recipient)
        if agent is not None:
            verified = agent["domain_verified"]
        else:
            domain = agent_store.domain_by_name(conn, domain_name.lower())
            if domain is None:
                return DUNNO  # not one of our domains
            verified = domain["verified"]
        rcpt = Rcpt(attrs, recipient, agent, verified)
        for check in RCPT_CHECKS:
            action = check(conn, rcpt)
            if action is not None:
                return action
    return DUNNO
