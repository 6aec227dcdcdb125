"""What a /v1 caller may touch (reference/e2a-v1-current.md §1.2): account
keys everything of their account; an agent key its own agent's mailbox
only. A missing agent and another account's agent are both 404; an agent
key naming another agent of its own account is 403."""

from __future__ import annotations

from typing import Any

import falcon
import psycopg

from e2a.api import auth
from e2a.api.v1.errors import error, not_found
from e2a.core.store import agents as agent_store


def principal(req: falcon.Request) -> auth.Principal:
    return req.context.principal


def account_key(req: falcon.Request) -> auth.Principal:
    """The caller, who must hold an account-wide key."""
    caller = principal(req)
    if caller.agent_id is not None:
        raise error(403, "forbidden", "this operation needs an account key")
    return caller


def agent(conn: psycopg.Connection, req: falcon.Request, email: str, *,
          account_only: bool = False, trashed_too: bool = False) -> dict[str, Any]:
    """The caller's agent at ``email``. ``account_only``: refused to agent
    keys (403) even for their own agent. A trashed agent is missing (404)
    unless ``trashed_too``."""
    caller = principal(req)
    row = agent_store.agent_for_user(conn, caller.user_id, email, trashed_too=trashed_too)
    if row is None:
        raise not_found(f"agent {email} not found")
    if caller.agent_id is not None and (account_only or caller.agent_id != row["id"]):
        raise error(403, "forbidden", "an agent key may use its own agent's mailbox only")
    return row
