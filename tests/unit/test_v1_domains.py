"""/v1/domains on a real database and a real DNS server (dnsmasq on
loopback): the DomainView with its purposed records, re-registration,
the /v1 error codes, deletion with its receipt and Idempotency-Key, and
verification that needs the inbound MX as well as the ownership TXT."""

from __future__ import annotations

import re
import secrets

import pytest
from apisupport import agent_key, api_client, make_tenant
from servicesupport import free_udp_tcp_port
from test_api_domains import dns_server, our_resolver, resolver_config  # noqa: F401
from v1support import assert_envelope

from e2a.core.accounts import domains
from e2a.core.accounts.domaindns import Probe
from e2a.core.db import single_connection
from e2a.core.store import agents as agent_store

DOMAINS = "/v1/domains"
VIEW_FIELDS = {"domain", "verified", "verification_token", "agent_count", "created_at",
               "sending_status", "capabilities", "dns_records", "sending_ramp"}
RAMP_FIELDS = {"status", "daily_recipient_limit", "recipients_used_today", "active_days",
               "ramp_days"}


@pytest.fixture(scope="module")
def client(cfg):
    with api_client(cfg) as test_client:
        yield test_client


@pytest.fixture
def tenant(cfg):
    return make_tenant(cfg)


def fresh() -> str:
    return f"v{secrets.token_hex(5)}.example.org"


def register(client, tenant, name: str):
    return client.simulate_post(DOMAINS, headers=tenant.auth, json={"domain": name})


def registered(client, tenant, name: str | None = None) -> dict:
    result = register(client, tenant, name or fresh())
    assert result.status_code == 201, result.text
    return result.json


def by_purpose(view: dict) -> dict[str, dict]:
    return {r["purpose"]: r for r in view["dns_records"]}


def test_register_answers_a_domain_view_with_purposed_records(cfg, client, tenant):
    name = fresh()
    view = registered(client, tenant, name.upper())
    assert set(view) == VIEW_FIELDS
    assert (view["domain"], view["verified"], view["agent_count"]) == (name, False, 0)
    assert view["capabilities"] == {"inbound": "pending", "outbound": "pending"}
    assert view["sending_status"] == "pending"
    assert set(view["sending_ramp"]) == RAMP_FIELDS and view["sending_ramp"]["status"] == "exempt"
    records = by_purpose(view)
    assert set(records) == {"ownership", "inbound_mx", "dkim"}
    assert records["ownership"] == {
        "type": "TXT", "name": f"_e2a.{name}", "priority": None, "purpose": "ownership",
        "value": f"e2a-verification={view['verification_token']}", "status": "pending"}
    assert records["inbound_mx"] == {"type": "MX", "name": name, "value": cfg.mail.hostname,
                                     "priority": 10, "purpose": "inbound_mx",
                                     "status": "pending"}
    assert records["dkim"]["type"] == "TXT" and records["dkim"]["priority"] is None
    assert records["dkim"]["value"].startswith("v=DKIM1; k=rsa; p=")
    assert records["dkim"]["name"].endswith(f"._domainkey.{name}")


def test_registering_an_owned_domain_again_answers_it(client, tenant):
    first = registered(client, tenant)
    again = registered(client, tenant, first["domain"])
    assert again["verification_token"] == first["verification_token"]
    listed = client.simulate_get(DOMAINS, headers=tenant.auth).json
    assert [d["domain"] for d in listed["items"]] == [first["domain"]]


def test_another_accounts_domain_is_taken(cfg, client, tenant):
    name = registered(client, make_tenant(cfg))["domain"]
    assert_envelope(register(client, tenant, name), 409, "domain_taken")


@pytest.mark.parametrize("name,code", [
    ("not a domain", "invalid_domain"), ("10.0.0.1", "invalid_domain"),
    ("localhost", "invalid_domain")])
def test_bad_names_are_invalid_domain(client, tenant, name, code):
    error = assert_envelope(register(client, tenant, name), 400, code)
    assert error["details"]["fields"][0]["location"] == "body.domain"


def test_the_shared_domain_and_below_are_reserved(cfg, client, tenant):
    shared = cfg.mail.shared_domain
    assert_envelope(register(client, tenant, shared), 400, "reserved_domain")
    assert_envelope(register(client, tenant, f"x.{shared}"), 400, "reserved_domain")


def test_unknown_fields_are_refused(client, tenant):
    result = client.simulate_post(DOMAINS, headers=tenant.auth,
                                  json={"domain": fresh(), "primary": True})
    assert_envelope(result, 422, "invalid_request")


def test_the_domain_limit_is_402(cfg, client, tenant):
    with single_connection(cfg) as conn:
        conn.execute("UPDATE users SET max_domains = 1 WHERE id = %s", (tenant.user["id"],))
    registered(client, tenant)
    error = assert_envelope(register(client, tenant, fresh()), 402, "limit_exceeded")
    assert error["details"] == {"resource": "domains", "limit": 1, "current": 1}


def test_list_is_newest_first_and_paged(client, tenant):
    names = [registered(client, tenant)["domain"] for _ in range(3)]
    first = client.simulate_get(DOMAINS, headers=tenant.auth, params={"limit": "2"}).json
    assert [d["domain"] for d in first["items"]] == names[::-1][:2]
    rest = client.simulate_get(DOMAINS, headers=tenant.auth,
                               params={"limit": "2", "cursor": first["next_cursor"]}).json
    assert [d["domain"] for d in rest["items"]] == [names[0]]
    assert rest["next_cursor"] is None


def test_get_counts_agents_and_another_tenant_sees_nothing(cfg, client, tenant):
    name = registered(client, tenant)["domain"]
    with single_connection(cfg) as conn:
        row = conn.execute("SELECT id FROM domains WHERE domain = %s", (name,)).fetchone()
        agent_store.create_agent(conn, "agt_" + secrets.token_hex(8), tenant.user["id"],
                                 row["id"], f"bot@{name}", "Bot", "local", "")
    view = client.simulate_get(f"{DOMAINS}/{name}", headers=tenant.auth).json
    assert view["agent_count"] == 1
    stranger = make_tenant(cfg)
    assert_envelope(client.simulate_get(f"{DOMAINS}/{name}", headers=stranger.auth),
                    404, "not_found")
    # With an agent on it, it stays.
    refused = client.simulate_delete(f"{DOMAINS}/{name}", headers=tenant.auth,
                                     params={"confirm": "DELETE"})
    assert_envelope(refused, 400, "domain_has_agents")


def test_delete_needs_confirm_and_replays_by_key(client, tenant):
    name = registered(client, tenant)["domain"]
    path = f"{DOMAINS}/{name}"
    assert_envelope(client.simulate_delete(path, headers=tenant.auth), 422, "invalid_request")
    keyed = {**tenant.auth, "Idempotency-Key": secrets.token_hex(16)}
    done = client.simulate_delete(path, headers=keyed, params={"confirm": "DELETE"})
    assert done.status_code == 200, done.text
    assert done.json == {"deleted": True, "domain": name, "sending_teardown": "confirmed"}
    again = client.simulate_delete(path, headers=keyed, params={"confirm": "DELETE"})
    assert (again.status_code, again.json) == (200, done.json)
    assert_envelope(client.simulate_delete(path, headers=tenant.auth,
                                           params={"confirm": "DELETE"}), 404, "not_found")


def test_agent_keys_are_refused(cfg, client, tenant):
    key = agent_key(cfg, tenant, tenant.agent)
    result = client.simulate_get(DOMAINS, headers={"Authorization": f"Bearer {key}"})
    assert_envelope(result, 403, "forbidden")


def test_verify_needs_the_ownership_txt_and_the_inbound_mx(
        cfg, client, tenant, dns_server, our_resolver, tmp_path):  # noqa: F811
    our_resolver(resolver_config(cfg, tmp_path, dns_server.address))
    view = registered(client, tenant)
    name, records = view["domain"], by_purpose(view)
    path = f"{DOMAINS}/{name}/verify"

    nothing = client.simulate_post(path, headers=tenant.auth)
    assert nothing.status_code == 200
    assert nothing.json == {"domain": name, "verified": False, "mx": "missing",
                            "spf": "missing", "dkim": "missing"}

    # The ownership token alone verifies a legacy domain, not a /v1 one.
    dns_server.add_txt(records["ownership"]["name"], records["ownership"]["value"])
    dns_server.reload()
    owned = client.simulate_post(path, headers=tenant.auth).json
    assert (owned["verified"], owned["mx"]) == (False, "missing")

    dns_server.add_mx(name, records["inbound_mx"]["value"], 10)
    dns_server.add_txt(records["dkim"]["name"], records["dkim"]["value"])
    dns_server.reload()
    done = client.simulate_post(path, headers=tenant.auth).json
    assert (done["verified"], done["mx"], done["dkim"]) == (True, "found", "found")
    assert re.match(r"^\d{4}-\d\d-\d\dT", done["verified_at"])
    shown = client.simulate_get(f"{DOMAINS}/{name}", headers=tenant.auth).json
    assert shown["verified"] is True
    assert shown["capabilities"] == {"inbound": "verified", "outbound": "verified"}
    assert {r["status"] for r in shown["dns_records"]} == {"verified"}


def test_verify_is_200_when_dns_does_not_answer(cfg, client, tenant, our_resolver,  # noqa: F811
                                                tmp_path):
    name = registered(client, tenant)["domain"]
    our_resolver(resolver_config(cfg, tmp_path, f"127.0.0.1:{free_udp_tcp_port()}",
                                 timeout=0.5))
    result = client.simulate_post(f"{DOMAINS}/{name}/verify", headers=tenant.auth)
    assert result.status_code == 200, result.text
    assert result.json["verified"] is False and result.json["mx"] == "missing"


def test_a_verified_domain_loses_it_when_the_mx_goes(cfg, client, tenant):
    """What a /v1 probe stores: the legacy rule stays ownership alone."""
    name = registered(client, tenant)["domain"]
    with single_connection(cfg) as conn:
        row = conn.execute("SELECT id FROM domains WHERE domain = %s", (name,)).fetchone()
        assert domains.record_probe(conn, row["id"], Probe(True, "missing", "found", "found"),
                                    need_mx=True)["verified"] is False
        assert domains.record_probe(conn, row["id"], Probe(True, "missing", "found",
                                                           "found"))["verified"] is True

