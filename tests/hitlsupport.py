"""Shared set-up for the tests of held messages through the API: a
configuration whose submit and reinjection services are real SMTP servers
on loopback (aiosmtpd), agents with HITL on, messages held the way the API
holds them (a send answered 202), and magic-link tokens as the owner's
notification carries them."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from apisupport import Tenant, agent_path
from falcon import testing
from filtersupport import Received, Reinjection
from servicesupport import write_config
from submitsupport import FakePostfix

from e2a.core import config, notification, signing_secrets
from e2a.core.config import Config
from e2a.core.db import single_connection
from e2a.core.store import pending as pending_store

SEND = "/api/v1/send"
FRIEND = "friend@elsewhere.example"


def hitl_config(cfg: Config, path: Path, submit_address: str, reinject_port: int) -> Config:
    """The test database's configuration, submitting to ``submit_address``
    and reinjecting (what an approval does) to ``reinject_port``."""
    write_config(cfg, path, f'[submit]\naddress = "{submit_address}"\ntimeout = 5\n'
                            f'[filter]\nreinject = "127.0.0.1:{reinject_port}"\n'
                            "[send]\nrate_per_agent = 100000\n")
    return config.load(path, env={})


def reset(submit: FakePostfix, reinjection: tuple[Reinjection, int]) -> None:
    """The stand-ins as new: nothing received, every message taken."""
    submit.reset()
    reinjection[0].messages.clear()
    reinjection[0].data_reply = ""


def released(reinjection: tuple[Reinjection, int]) -> list[Received]:
    """What approvals reinjected (sent out) since the last reset."""
    return reinjection[0].messages


def enable_hitl(client: testing.TestClient, tenant: Tenant, agent: dict[str, Any], *,
                action: str = "reject") -> None:
    result = client.simulate_put(agent_path(agent["email"]), headers=tenant.auth,
                                 json={"hitl_enabled": True, "hitl_expiration_action": action})
    assert result.status_code == 200, result.text
    assert result.json["hitl_enabled"] is True


def hold(client: testing.TestClient, tenant: Tenant, agent: dict[str, Any],
         path: str = SEND, **fields: Any) -> str:
    """Send as ``agent`` (HITL on): held, 202; the held message's id."""
    body = {"from": agent["email"], "to": [FRIEND], "subject": "Draft for review",
            "body": "Hello, friend.\nSee the attached numbers.", **fields}
    result = client.simulate_post(path, headers=tenant.auth, json=body)
    assert result.status_code == 202, result.text
    assert result.json["status"] == "pending_approval"
    return result.json["message_id"]


def owner_secret(cfg: Config, tenant: Tenant) -> str:
    """A signing secret of the tenant's (made now): one its agents hold, so
    one that must never sign a link."""
    with single_connection(cfg) as conn:
        return signing_secrets.create(conn, tenant.user["id"], "links").secret


def link_token(cfg: Config, message_id: str, action: str) -> str:
    """The token of the ``action`` link the owner's notification carries."""
    with single_connection(cfg) as conn:
        row = pending_store.outbound_message(conn, message_id, user_id=None)
    url = notification.links(cfg, row["user_id"], message_id, row["approval_expires_at"])[action]
    return url.partition("?token=")[2]


def message_row(cfg: Config, message_id: str) -> dict[str, Any]:
    with single_connection(cfg) as conn:
        return conn.execute("SELECT * FROM messages WHERE id = %s", (message_id,)).fetchone()


def copies_of_hold(cfg: Config, message_id: str, count: int) -> list[str]:
    """``count`` more held messages like this one, expiring a minute apart
    from a day on (rows copied: far quicker than holding each)."""
    ids = [f"msg_{secrets.token_hex(16)}" for _ in range(count)]
    with single_connection(cfg) as conn:
        conn.execute("CREATE TEMP TABLE held AS SELECT * FROM messages WHERE id = %s",
                     (message_id,))
        for n, new in enumerate(ids):
            conn.execute("UPDATE held SET id = %s, dedupe_key = NULL, approval_expires_at = "
                         "now() + interval '1 day' + %s * interval '1 minute'", (new, n))
            conn.execute("INSERT INTO messages SELECT * FROM held")
        conn.execute("DROP TABLE held")
    return ids
