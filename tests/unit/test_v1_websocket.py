"""/v1/agents/{email}/ws against a real `e2a serve api`: Bearer on the
upgrade, event envelope frames (the event log's own id, as the /v1 webhook
delivery carries), the drain on connect without marking read, 4000 when a
newer connection takes over, refusals as close 1008."""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest
from apisupport import add_agent, agent_key, make_tenant
from test_api_websocket import api_server, delivering
from wsclient import AgentSocket

from e2a.cli.agent.socket import EventSocket
from e2a.core.db import single_connection

ENVELOPE = {"type", "id", "schema_version", "created_at", "data"}


class V1Socket(AgentSocket):
    """The current SDK's way in: /v1 path, key in the Authorization header."""

    def __init__(self, api_url: str, email: str, key: str, timeout: float = 10.0) -> None:
        base = api_url.replace("http://", "ws://", 1)
        EventSocket.__init__(self, f"{base}/v1/agents/{quote(email, safe='')}/ws",
                             [f"Authorization: Bearer {key}"], timeout)


@pytest.fixture(scope="module")
def api(cfg, tmp_path_factory):
    with api_server(cfg, tmp_path_factory.mktemp("v1ws"), "v1ws") as (url, _, _log):
        yield url


@pytest.fixture(scope="module")
def deliverer(cfg):
    with delivering(cfg) as deliver:
        yield deliver


def test_drains_then_pushes_event_envelopes(cfg, api, deliverer):
    tenant = make_tenant(cfg)
    agent = tenant.agent
    first = deliverer(agent, "first")
    client = V1Socket(api, agent["email"], tenant.key)
    [drained] = client.frames(1)
    assert set(drained) >= ENVELOPE
    assert (drained["type"], drained["schema_version"]) == ("email.received", "1")
    data = drained["data"]
    assert (data["message_id"], data["agent_email"], data["subject"]) == (
        first, agent["email"], "first")
    assert (data["direction"], data["delivered_to"]) == ("inbound", agent["email"])
    with single_connection(cfg) as conn:
        event = conn.execute("SELECT id FROM events WHERE message_id = %s AND "
                             "type = 'email.received'", (first,)).fetchone()
        # Draining does not read the mail.
        status = conn.execute("SELECT inbox_status FROM messages WHERE id = %s",
                              (first,)).fetchone()["inbox_status"]
    assert drained["id"] == event["id"]
    assert status == "unread"
    live = deliverer(agent, "live one")
    [frame] = client.frames(1, timeout=3)
    assert frame["data"]["message_id"] == live
    deliverer(add_agent(cfg, tenant), "for the other agent")
    client.quiet_for(0.5)
    client.close()


def test_an_agent_key_listens_to_its_own_agent(cfg, api, deliverer):
    tenant = make_tenant(cfg)
    key = agent_key(cfg, tenant, tenant.agent)
    message_id = deliverer(tenant.agent, "mine")
    client = V1Socket(api, tenant.agent["email"], key)
    assert client.frames(1)[0]["data"]["message_id"] == message_id
    client.close()


def test_a_newer_connection_closes_the_older_with_4000(cfg, api):
    tenant = make_tenant(cfg)
    older = V1Socket(api, tenant.agent["email"], tenant.key)
    time.sleep(0.3)
    newer = V1Socket(api, tenant.agent["email"], tenant.key)
    closed = older.closed_with()
    assert closed.code == 4000, closed
    newer.quiet_for(0.3)
    newer.close()


@pytest.mark.parametrize("case", ["no key", "other tenant", "other agent", "no such agent"])
def test_refusals_close_1008(cfg, api, case):
    tenant = make_tenant(cfg)
    email, key = tenant.agent["email"], tenant.key
    if case == "no key":
        key = ""
    elif case == "other tenant":
        key = make_tenant(cfg).key
    elif case == "other agent":
        key = agent_key(cfg, tenant, add_agent(cfg, tenant))
    else:
        email = "nobody@" + cfg.mail.shared_domain
    closed = V1Socket(api, email, key).closed_with()
    assert closed.code == 1008, closed
    expected = {"no key": "unauthorized", "other agent": "forbidden"}.get(case, "not_found")
    assert closed.reason == expected
