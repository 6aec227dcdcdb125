"""Tenant walls on every inbox endpoint: another user's key, and a key scoped
to another agent of the same user, get the 404 a missing resource gets, and
change nothing on the way."""

from __future__ import annotations

import pytest
from apisupport import add_agent, agent_key, api_client, insert_message, make_tenant
from inboxsupport import agent_path, conversations_path, message_path, stored

MISSING = "msg_" + "0" * 32


@pytest.fixture(scope="module")
def client(cfg):
    with api_client(cfg) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def victim(cfg):
    tenant = make_tenant(cfg)
    message_id = insert_message(cfg, tenant.agent, conversation_id="conv_private")
    return tenant, message_id


@pytest.fixture(scope="module")
def outsiders(cfg, victim):
    """Keys that must see nothing of the victim's agent."""
    tenant, _ = victim
    stranger = make_tenant(cfg)
    sibling = add_agent(cfg, tenant)
    return {
        "another user": stranger.auth,
        "a key scoped to a sibling agent":
            {"Authorization": f"Bearer {agent_key(cfg, tenant, sibling)}"},
    }


def requests_for(email, message_id, conversation_id):
    return [
        ("GET", f"{agent_path(email)}/messages", None),
        ("GET", message_path(email, message_id), None),
        ("PATCH", message_path(email, message_id), {"add_labels": ["pwned"]}),
        ("GET", conversations_path(email), None),
        ("GET", conversations_path(email, conversation_id), None),
    ]


@pytest.mark.parametrize("who", ["another user", "a key scoped to a sibling agent"])
@pytest.mark.parametrize("index", range(5))
def test_outsider_gets_the_404_of_a_missing_resource(cfg, client, victim, outsiders,
                                                     who, index):
    tenant, message_id = victim
    headers = outsiders[who]
    method, path, body = requests_for(tenant.agent["email"], message_id,
                                      "conv_private")[index]
    result = client.simulate_request(method, path, headers=headers, json=body)
    assert result.status_code == 404, result.text
    assert result.json["error"]["code"] == "not_found"
    # The same request for an agent that does not exist answers alike.
    method, missing_path, body = requests_for("nobody@agents.test.example", MISSING,
                                              "conv_none")[index]
    missing = client.simulate_request(method, missing_path, headers=headers, json=body)
    assert missing.status_code == 404
    assert set(missing.json["error"]) == set(result.json["error"])
    row = stored(cfg, message_id)
    assert row["inbox_status"] == "unread"
    assert list(row["labels"]) == []


def test_owner_reaches_all_of_it(cfg, client):
    """The walls above are walls, not a broken endpoint."""
    tenant = make_tenant(cfg)
    message_id = insert_message(cfg, tenant.agent, conversation_id="conv_private")
    scoped = {"Authorization": f"Bearer {agent_key(cfg, tenant, tenant.agent)}"}
    for headers in (tenant.auth, scoped):
        for method, path, body in requests_for(tenant.agent["email"], message_id,
                                               "conv_private"):
            result = client.simulate_request(method, path, headers=headers,
                                             json={"add_labels": []} if body else None)
            assert result.status_code == 200, (method, path, result.text)


def test_no_key_is_401_everywhere(client, victim):
    tenant, message_id = victim
    for method, path, body in requests_for(tenant.agent["email"], message_id,
                                           "conv_private"):
        result = client.simulate_request(method, path, json=body)
        assert result.status_code == 401, (method, path)
