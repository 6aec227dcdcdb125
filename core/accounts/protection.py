"""Reading and saving an agent's protection settings and its outbound
pause: the one path ``/v1/agents/{email}/protection[/first-contact]``,
``/v1/agents/{email}/brakes`` and the dashboard's agent page all take, so
that each checks and stores them alike. In the caller's transaction: a
ConfigError (or OverrideError) raised here leaves nothing written."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import psycopg

from e2a.core.outbound import brakes
from e2a.core.protection import config as protection
from e2a.core.store import agents as agent_store
from e2a.core.store import brakes as brake_store

OWNER_PAUSE = "paused by its owner"


def save(conn: psycopg.Connection, agent: Mapping[str, Any], body: Any,
         first_contact: Any = None) -> dict[str, Any]:
    """``body`` (a ProtectionConfigRequest) checked and stored wholesale;
    ``first_contact`` (its request) too when given. The agent row as it
    is now. Raises protection.ConfigError before writing anything."""
    config = protection.parse_request(body, protection.of_agent(agent))
    if first_contact is not None:
        config = replace(config, first_contact=protection.parse_first_contact(first_contact))
    agent_store.update_agent(conn, agent["id"], protection.columns(config))
    return agent_store.agent_by_id(conn, agent["id"])


def save_first_contact(conn: psycopg.Connection, agent: Mapping[str, Any],
                       body: Any) -> protection.FirstContact:
    """First-contact review alone; the rest stays as stored."""
    first = protection.parse_first_contact(body)
    config = replace(protection.of_agent(agent), first_contact=first)
    agent_store.update_agent(conn, agent["id"], {"protection": protection.stored(config)})
    return first


def set_brakes(conn: psycopg.Connection, agent: Mapping[str, Any],
               overrides: Mapping[str, Any] | None, paused: bool,
               reason: str | None = None) -> dict[str, Any]:
    """The agent's brake overrides (checked; None keeps the stored ones) and
    its kill switch; a pause or resume writes its agent.brake_applied event.
    Raises brakes.OverrideError before writing anything."""
    before = brake_store.settings(conn, agent["id"])
    if overrides is None:
        kept = dict(before["overrides"]) if before else {}
    else:
        kept = brakes.checked_overrides(overrides)
    row = brake_store.save(conn, agent["id"], kept, paused, reason or OWNER_PAUSE)
    if paused != bool(before and before["paused_at"]):
        brakes.record(conn, agent, brakes.Verdict(
            brakes.Action.PAUSED if paused else brakes.Action.PASS, "owner",
            row["paused_reason"] if paused else "resumed by its owner"))
    return row
