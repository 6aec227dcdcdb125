"""``/v1/agents/{email}/protection[/first-contact]`` over falcon.testing and
a real database, and the legacy ``hitl_*`` fields as the same setting."""

from __future__ import annotations

import pytest
from apisupport import add_agent, agent_key, api_client, make_tenant
from v1support import agent_path, assert_envelope

from e2a.core.db import single_connection
from e2a.core.store import agents as agent_store

DEFAULT = {
    "inbound": {"gate": {"policy": "open", "action": "flag", "allowlist": []},
                "scan": {"sensitivity": "off"}},
    "outbound": {"gate": {"policy": "open", "action": "flag", "allowlist": []},
                 "scan": {"sensitivity": "off"}},
    "holds": {"ttl_seconds": 604800, "on_expiry": "reject", "suppress_notifications": False},
    "first_contact": {"enabled": False, "trust_days": None},
}


@pytest.fixture(scope="module")
def client(cfg):
    with api_client(cfg) as test_client:
        yield test_client


@pytest.fixture
def tenant(cfg):
    return make_tenant(cfg)


def path(email: str) -> str:
    return agent_path(email) + "/protection"


def legacy(email: str) -> str:
    return "/api/v1/agents/" + email


def config(**changes):
    body = {"inbound": {"gate": {"policy": "open", "action": "flag"},
                        "scan": {"sensitivity": "off"}},
            "outbound": {"gate": {"policy": "open", "action": "flag"},
                         "scan": {"sensitivity": "off"}},
            "holds": {"ttl_seconds": 604800, "on_expiry": "reject"}}
    body.update(changes)
    return body


def test_defaults(client, tenant):
    got = client.simulate_get(path(tenant.agent["email"]), headers=tenant.auth)
    assert got.status_code == 200, got.text
    assert got.json == DEFAULT


def test_put_is_wholesale_and_normalizes(client, tenant):
    email = tenant.agent["email"]
    body = config(inbound={"gate": {"policy": "allowlist", "action": "block",
                                    "allowlist": ["@Example.COM", "Bob@Example.org"]},
                           "scan": {"sensitivity": "high"}},
                  holds={"ttl_seconds": 3600, "on_expiry": "approve",
                         "suppress_notifications": True})
    put = client.simulate_put(path(email), headers=tenant.auth, json=body)
    assert put.status_code == 200, put.text
    assert put.json["inbound"] == {"gate": {"policy": "allowlist", "action": "block",
                                            "allowlist": ["example.com", "bob@example.org"]},
                                   "scan": {"sensitivity": "high"}}
    assert put.json["holds"] == {"ttl_seconds": 3600, "on_expiry": "approve",
                                 "suppress_notifications": True}
    assert client.simulate_get(path(email), headers=tenant.auth).json == put.json
    # Wholesale: what the next PUT leaves out is back to its default.
    again = client.simulate_put(path(email), headers=tenant.auth, json={
        "inbound": {}, "outbound": {}, "holds": {}})
    assert again.status_code == 200, again.text
    assert again.json == DEFAULT


@pytest.mark.parametrize("body, status", [
    ({"inbound": {}, "outbound": {}}, 400),
    (config(inbound={"gate": {"policy": "everyone"}, "scan": {}}), 400),
    (config(outbound={"gate": {}, "scan": {"sensitivity": "paranoid"}}), 400),
    (config(holds={"ttl_seconds": 0}), 400),
    (config(holds={"on_expiry": "later"}), 400),
    (config(inbound={"gate": {"allowlist": ["not an address"]}, "scan": {}}), 400),
    (config(inbound={"gate": {"allowlist": [f"a{i}@example.com" for i in range(1001)]},
                     "scan": {}}), 400),
    (config(extra=True), 422),
    (config(inbound={"gate": {}, "scan": {}, "model": "x"}), 422),
    ([], 400),
])
def test_bad_requests_change_nothing(client, tenant, body, status):
    email = tenant.agent["email"]
    result = client.simulate_put(path(email), headers=tenant.auth, json=body)
    assert_envelope(result, status, "invalid_request")
    assert client.simulate_get(path(email), headers=tenant.auth).json == DEFAULT


def test_agent_keys_and_other_tenants_are_refused(cfg, client, tenant):
    email = tenant.agent["email"]
    key = agent_key(cfg, tenant, tenant.agent)
    own = {"Authorization": f"Bearer {key}"}
    assert_envelope(client.simulate_get(path(email), headers=own), 403, "forbidden")
    assert_envelope(client.simulate_put(path(email), headers=own, json=config()), 403,
                    "forbidden")
    other = make_tenant(cfg)
    assert_envelope(client.simulate_get(path(email), headers=other.auth), 404, "not_found")
    assert_envelope(client.simulate_put(path(email), headers=other.auth, json=config()),
                    404, "not_found")


def test_legacy_hitl_is_the_outbound_review(cfg, client, tenant):
    email = add_agent(cfg, tenant)["email"]
    legacy_put = client.simulate_put(legacy(email), headers=tenant.auth,
                                     json={"hitl_enabled": True, "hitl_ttl_seconds": 600,
                                           "hitl_expiration_action": "approve"})
    assert legacy_put.status_code == 200, legacy_put.text
    seen = client.simulate_get(path(email), headers=tenant.auth).json
    assert seen["outbound"]["gate"] == {"policy": "allowlist", "action": "review",
                                        "allowlist": []}
    assert seen["holds"] == {"ttl_seconds": 600, "on_expiry": "approve",
                             "suppress_notifications": False}
    # And back: /v1 opens the gate, legacy sees HITL off and the new TTL.
    client.simulate_put(path(email), headers=tenant.auth, json=config(
        holds={"ttl_seconds": 900, "on_expiry": "reject"}))
    got = client.simulate_get(legacy(email), headers=tenant.auth).json
    assert (got["hitl_enabled"], got["hitl_ttl_seconds"], got["hitl_expiration_action"]) \
        == (False, 900, "reject")
    with single_connection(cfg) as conn:
        assert agent_store.agent_by_email(conn, email)["hitl_enabled"] is False


def test_an_outbound_scan_turns_on_legacy_hitl_without_holding_everything(
        cfg, client, tenant):
    email = add_agent(cfg, tenant)["email"]
    client.simulate_put(path(email), headers=tenant.auth, json=config(
        outbound={"gate": {}, "scan": {"sensitivity": "medium"}}))
    assert client.simulate_get(legacy(email), headers=tenant.auth).json["hitl_enabled"] is True
    with single_connection(cfg) as conn:
        assert agent_store.agent_by_email(conn, email)["hitl_enabled"] is False
    # Writing back what legacy read changes nothing; writing false turns it off.
    client.simulate_put(legacy(email), headers=tenant.auth, json={"hitl_enabled": True})
    assert client.simulate_get(path(email), headers=tenant.auth).json["outbound"] == {
        "gate": {"policy": "open", "action": "flag", "allowlist": []},
        "scan": {"sensitivity": "medium"}}
    client.simulate_put(legacy(email), headers=tenant.auth, json={"hitl_enabled": False})
    assert client.simulate_get(path(email), headers=tenant.auth).json["outbound"] == \
        DEFAULT["outbound"]


def test_first_contact_is_its_own_resource(client, tenant):
    email = tenant.agent["email"]
    first = path(email) + "/first-contact"
    assert client.simulate_get(first, headers=tenant.auth).json == {
        "enabled": False, "trust_days": None}
    put = client.simulate_put(first, headers=tenant.auth,
                              json={"enabled": True, "trust_days": 30})
    assert put.status_code == 200, put.text
    assert_envelope(client.simulate_put(first, headers=tenant.auth,
                                        json={"enabled": "yes"}), 400, "invalid_request")
    # The SDK's wholesale PUT does not know it, and leaves it alone.
    client.simulate_put(path(email), headers=tenant.auth, json=config())
    assert client.simulate_get(path(email), headers=tenant.auth).json["first_contact"] == {
        "enabled": True, "trust_days": 30}
