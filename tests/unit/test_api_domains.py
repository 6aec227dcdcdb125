"""/api/v1/domains on a real database, and verification against a real DNS
server (dnsmasq on loopback): shapes, rules, reservations, the primary flag,
deletion, tenant walls and agent-scoped keys."""

from __future__ import annotations

import re
import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dns.resolver
import pytest
from apisupport import (
    add_domain,
    agent_key,
    agent_path,
    api_client,
    assert_error,
    domain_path,
    make_tenant,
)
from servicesupport import free_udp_tcp_port, write_config

from e2a.cli.sandbox.dns import DnsServer
from e2a.core import accounts, config, jobs, wakeup
from e2a.core import dns as ourdns
from e2a.core.db import single_connection

RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
DOMAIN_FIELDS = {"domain", "verified", "verification_token", "dns_records", "created_at",
                 "verified_at", "is_primary", "last_checked_at", "agent_count"}
VERIFY_FIELDS = {"domain", "verified", "verified_at", "mx", "spf", "dkim"}


@pytest.fixture(scope="module")
def client(cfg):
    with api_client(cfg) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def tenant(cfg):
    return make_tenant(cfg)


@pytest.fixture(scope="module")
def other(cfg):
    return make_tenant(cfg)


def fresh_name() -> str:
    return f"t{secrets.token_hex(5)}.example.org"


def register(client, tenant, name):
    return client.simulate_post("/api/v1/domains", headers=tenant.auth, json={"domain": name})


def registered(client, tenant, name=None):
    result = register(client, tenant, name or fresh_name())
    assert result.status_code == 201, result.text
    return result.json


def resolver_config(cfg, tmp: Path, address: str, timeout: float = 3.0) -> config.Config:
    path = write_config(cfg, tmp / "e2a.toml",
                        extra=f'[dns]\nresolver = "{address}"\ntimeout = {timeout}\n')
    return config.load(path, env={})


@pytest.fixture
def our_resolver():
    """core.dns is process-wide: whatever a test points it at is undone after."""
    saved = dns.resolver.default_resolver
    yield lambda c: ourdns.configure(c)
    dns.resolver.default_resolver = saved


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("dns")
    server = DnsServer(root / "dns", free_udp_tcp_port(), pidfile=root / "dnsmasq.pid",
                       logfile=root / "dnsmasq.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- register, list, get ----------------------------------------------------


def test_register_answers_the_domain_with_records_to_publish(cfg, client, tenant):
    name = fresh_name()
    result = register(client, tenant, name)
    assert result.status_code == 201, result.text
    body = result.json
    assert set(body) == DOMAIN_FIELDS
    assert body["domain"] == name
    assert (body["verified"], body["is_primary"], body["agent_count"]) == (False, False, 0)
    assert (body["verified_at"], body["last_checked_at"]) == ("", "")
    assert RFC3339_Z.match(body["created_at"])
    token = body["verification_token"]
    assert re.fullmatch(r"[0-9a-f]{32}", token)
    records = body["dns_records"]
    assert records["mx"] == {"host": name, "value": cfg.mail.hostname, "priority": 10}
    assert records["txt"] == {"host": f"_e2a.{name}", "value": f"e2a-verification={token}",
                              "priority": 0}
    assert records["dkim"]["host"] == f"e2a._domainkey.{name}"
    assert re.fullmatch(r"v=DKIM1; k=rsa; p=[A-Za-z0-9+/]{392}", records["dkim"]["value"])
    # Each domain has its own token and key pair.
    second = registered(client, tenant)
    assert second["verification_token"] != token
    assert second["dns_records"]["dkim"]["value"] != records["dkim"]["value"]


def test_register_stores_the_normalized_name(client, tenant):
    tag = secrets.token_hex(4)
    body = registered(client, tenant, f"  Bücher-{tag}.Example.  ")
    assert body["domain"].startswith("xn--bcher-") and body["domain"].endswith(".example")
    got = client.simulate_get(domain_path(f"BÜCHER-{tag}.example"), headers=tenant.auth)
    assert got.status_code == 200 and got.json["domain"] == body["domain"]


@pytest.mark.parametrize("payload", [
    {}, {"domain": ""}, {"domain": 42}, {"domain": ["x.example"]}, {"domain": "localhost"},
    {"domain": "192.0.2.1"}, {"domain": "[::1]"}, {"domain": "under_score.example"},
    {"domain": "a" * 64 + ".example"}, {"domain": "x" * 300 + ".example"},
])
def test_register_refuses_what_is_not_a_domain(client, tenant, payload):
    result = client.simulate_post("/api/v1/domains", headers=tenant.auth, json=payload)
    assert_error(result, 400, "invalid_request")


def test_register_refuses_bodies_that_are_not_objects(client, tenant):
    bad_json = client.simulate_post("/api/v1/domains", headers=tenant.auth, body="{nope",
                                    content_type="application/json")
    assert_error(bad_json, 400, "invalid_json")
    listed = client.simulate_post("/api/v1/domains", headers=tenant.auth, json=["x.example"])
    assert_error(listed, 400, "invalid_request")


def test_the_shared_domain_and_mail_host_are_reserved(cfg, client, tenant):
    for name in (cfg.mail.shared_domain, f"sub.{cfg.mail.shared_domain}",
                 cfg.mail.shared_domain.upper() + ".", cfg.mail.hostname):
        error = assert_error(register(client, tenant, name), 409, "conflict")
        assert "reserved" in error["message"]
    listed = client.simulate_get("/api/v1/domains", headers=tenant.auth).json["domains"]
    assert cfg.mail.shared_domain not in [d["domain"] for d in listed]
    shared = client.simulate_get(domain_path(cfg.mail.shared_domain), headers=tenant.auth)
    assert_error(shared, 404, "not_found")


def test_a_taken_name_is_409_without_saying_whose(client, tenant, other):
    name = fresh_name()
    registered(client, tenant, name)
    mine_again = assert_error(register(client, tenant, name), 409, "conflict")
    theirs = assert_error(register(client, other, name.upper()), 409, "conflict")
    assert theirs["message"] == mine_again["message"] == f"domain {name} is already registered"
    assert tenant.user["email"] not in str(theirs)


def test_list_holds_own_domains_with_agent_counts(cfg, client, tenant):
    domain = add_domain(cfg, tenant)
    with single_connection(cfg) as conn:
        for local in ("a", "b"):
            accounts.register_agent(conn, cfg, tenant.user["id"],
                                    email=f"{local}@{domain['domain']}")
    result = client.simulate_get("/api/v1/domains", headers=tenant.auth)
    assert result.status_code == 200
    assert set(result.json) == {"domains"}
    listed = {d["domain"]: d for d in result.json["domains"]}
    assert all(set(d) == DOMAIN_FIELDS for d in listed.values())
    assert listed[domain["domain"]]["agent_count"] == 2
    assert listed[domain["domain"]]["verified"] is True
    got = client.simulate_get(domain_path(domain["domain"]), headers=tenant.auth)
    assert got.status_code == 200
    assert got.json == listed[domain["domain"]]


def test_list_of_a_user_without_domains_is_an_empty_array(cfg, client):
    newcomer = make_tenant(cfg)
    result = client.simulate_get("/api/v1/domains", headers=newcomer.auth)
    assert result.json == {"domains": []}


def test_domain_cap(cfg, client):
    capped = make_tenant(cfg)
    with single_connection(cfg) as conn:
        conn.execute("UPDATE users SET max_domains = 1 WHERE id = %s", (capped.user["id"],))
    registered(client, capped)
    assert_error(register(client, capped, fresh_name()), 400, "limit_reached")


# -- primary ------------------------------------------------------------------


def primaries(client, tenant):
    listed = client.simulate_get("/api/v1/domains", headers=tenant.auth).json["domains"]
    return [d["domain"] for d in listed if d["is_primary"]]


def test_patch_primary_moves_the_flag(cfg, client):
    owner = make_tenant(cfg)
    first, second = registered(client, owner)["domain"], registered(client, owner)["domain"]

    def patch(name, body):
        return client.simulate_patch(domain_path(name), headers=owner.auth, json=body)

    made = patch(first, {"is_primary": True})
    assert made.status_code == 200 and made.json["is_primary"] is True
    assert set(made.json) == DOMAIN_FIELDS
    assert primaries(client, owner) == [first]
    assert patch(second, {"is_primary": True}).json["is_primary"] is True
    assert primaries(client, owner) == [second]
    # false, an empty body and unknown fields change nothing
    for body in ({"is_primary": False}, {}, {"colour": "red"}, {"is_primary": None}):
        unchanged = patch(second, body)
        assert unchanged.status_code == 200 and unchanged.json["is_primary"] is True
    assert patch(first, {"is_primary": False}).json["is_primary"] is False
    assert primaries(client, owner) == [second]
    for bad in ("yes", 1, "true"):
        assert_error(patch(first, {"is_primary": bad}), 400, "invalid_request")
    assert primaries(client, owner) == [second]


def test_concurrent_promotions_leave_exactly_one_primary(cfg, client):
    owner = make_tenant(cfg)
    names = [registered(client, owner)["domain"] for _ in range(3)]

    def promote(i):
        return client.simulate_patch(domain_path(names[i % 3]), headers=owner.auth,
                                     json={"is_primary": True}).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        codes = list(pool.map(promote, range(30)))
    assert codes == [200] * 30
    assert len(primaries(client, owner)) == 1


# -- delete -------------------------------------------------------------------


def test_delete_is_refused_while_agents_exist(cfg, client, tenant):
    domain = add_domain(cfg, tenant)
    email = f"bot@{domain['domain']}"
    with single_connection(cfg) as conn:
        accounts.register_agent(conn, cfg, tenant.user["id"], email=email)
    path = domain_path(domain["domain"])
    refused = assert_error(client.simulate_delete(path, headers=tenant.auth), 400, "has_agents")
    assert "agent" in refused["message"]
    assert client.simulate_get(path, headers=tenant.auth).status_code == 200

    deleted_agent = client.simulate_delete(agent_path(email), headers=tenant.auth)
    assert deleted_agent.status_code == 200
    gone = client.simulate_delete(path, headers=tenant.auth)
    assert gone.status_code == 204 and gone.text == ""
    assert_error(client.simulate_get(path, headers=tenant.auth), 404, "not_found")
    assert_error(client.simulate_delete(path, headers=tenant.auth), 404, "not_found")
    # The name is free again.
    assert register(client, tenant, domain["domain"]).status_code == 201


# -- walls ----------------------------------------------------------------------


def every_call(client, name, headers):
    path = domain_path(name)
    return {
        "get": client.simulate_get(path, headers=headers),
        "patch": client.simulate_patch(path, headers=headers, json={"is_primary": True}),
        "verify": client.simulate_post(path + "/verify", headers=headers),
        "delete": client.simulate_delete(path, headers=headers),
    }


def test_another_tenant_gets_404_on_every_endpoint(cfg, client, tenant, other):
    mine = registered(client, tenant)["domain"]
    for call, result in every_call(client, mine, other.auth).items():
        error = assert_error(result, 404, "not_found")
        assert error["message"] == f"domain {mine} not found", call
    # ... exactly what a name nobody registered gets
    for result in every_call(client, fresh_name(), other.auth).values():
        assert_error(result, 404, "not_found")
    assert mine not in [d["domain"] for d in client.simulate_get(
        "/api/v1/domains", headers=other.auth).json["domains"]]
    # and the domain is untouched
    got = client.simulate_get(domain_path(mine), headers=tenant.auth).json
    assert (got["is_primary"], got["last_checked_at"]) == (False, "")


def test_agent_scoped_keys_get_403_on_every_endpoint(cfg, client, tenant):
    scoped = {"Authorization": f"Bearer {agent_key(cfg, tenant, tenant.agent)}"}
    mine = registered(client, tenant)["domain"]
    results = every_call(client, mine, scoped)
    results["list"] = client.simulate_get("/api/v1/domains", headers=scoped)
    results["post"] = client.simulate_post("/api/v1/domains", headers=scoped,
                                           json={"domain": fresh_name()})
    for result in results.values():
        assert_error(result, 403, "forbidden")
    # The same 403 for a domain that does not exist: nothing is revealed.
    for result in every_call(client, fresh_name(), scoped).values():
        assert_error(result, 403, "forbidden")
    assert client.simulate_get(domain_path(mine), headers=tenant.auth).status_code == 200


def test_no_key_is_401_everywhere(client, tenant):
    name = registered(client, tenant)["domain"]
    results = every_call(client, name, {})
    results["list"] = client.simulate_get("/api/v1/domains")
    results["post"] = client.simulate_post("/api/v1/domains", json={"domain": fresh_name()})
    for result in results.values():
        assert_error(result, 401, "unauthorized")


# -- verify against real DNS ------------------------------------------------------


def verify(client, tenant, name):
    return client.simulate_post(domain_path(name) + "/verify", headers=tenant.auth)


def test_verify_against_real_dns(cfg, client, tenant, dns_server, our_resolver, tmp_path):
    our_resolver(resolver_config(cfg, tmp_path, dns_server.address))
    body = registered(client, tenant)
    name, records = body["domain"], body["dns_records"]

    nothing = verify(client, tenant, name)
    assert nothing.status_code == 412
    assert nothing.json == {"domain": name, "verified": False, "verified_at": "",
                            "mx": "missing", "spf": "missing", "dkim": "missing"}
    checked = client.simulate_get(domain_path(name), headers=tenant.auth).json
    assert RFC3339_Z.match(checked["last_checked_at"]) and checked["verified"] is False

    # Everything but the ownership token: still 412, the rest found.
    dns_server.add_mx(records["mx"]["host"], records["mx"]["value"], records["mx"]["priority"])
    dns_server.add_txt(records["dkim"]["host"], records["dkim"]["value"])
    dns_server.add_txt(name, f"v=spf1 include:{cfg.mail.hostname} -all")
    dns_server.add_txt(records["txt"]["host"], "e2a-verification=" + "0" * 32)
    dns_server.reload()
    almost = verify(client, tenant, name)
    assert almost.status_code == 412
    assert almost.json == {"domain": name, "verified": False, "verified_at": "",
                           "mx": "found", "spf": "found", "dkim": "found"}

    dns_server.add_txt(records["txt"]["host"], records["txt"]["value"])
    dns_server.reload()
    done = verify(client, tenant, name)
    assert done.status_code == 200, done.text
    assert set(done.json) == VERIFY_FIELDS
    assert (done.json["verified"], done.json["mx"], done.json["spf"], done.json["dkim"]) == (
        True, "found", "found", "found")
    assert RFC3339_Z.match(done.json["verified_at"])
    shown = client.simulate_get(domain_path(name), headers=tenant.auth).json
    assert shown["verified"] is True and shown["verified_at"] == done.json["verified_at"]

    # The token taken down: the next check says so, and the domain is unverified.
    dns_server.set_txt(records["txt"]["host"], None)
    dns_server.reload()
    lost = verify(client, tenant, name)
    assert lost.status_code == 412
    assert (lost.json["verified"], lost.json["mx"]) == (False, "found")
    assert client.simulate_get(domain_path(name), headers=tenant.auth).json["verified"] is False


def test_verify_reports_a_dkim_key_that_is_not_ours(cfg, client, tenant, dns_server,
                                                    our_resolver, tmp_path):
    our_resolver(resolver_config(cfg, tmp_path, dns_server.address))
    body = registered(client, tenant)
    name, records = body["domain"], body["dns_records"]
    foreign = registered(client, tenant)["dns_records"]["dkim"]["value"]
    dns_server.add_txt(records["txt"]["host"], records["txt"]["value"])
    dns_server.add_txt(records["dkim"]["host"], foreign)
    dns_server.add_mx(name, "mx.elsewhere.example")
    dns_server.add_txt(name, "v=spf1 include:_spf.elsewhere.example -all")
    dns_server.reload()
    result = verify(client, tenant, name)
    assert result.status_code == 200
    assert (result.json["verified"], result.json["mx"], result.json["spf"],
            result.json["dkim"]) == (True, "missing", "missing", "missing")


def test_verify_when_dns_does_not_answer(cfg, client, tenant, our_resolver, tmp_path):
    name = registered(client, tenant)["domain"]
    our_resolver(resolver_config(cfg, tmp_path, f"127.0.0.1:{free_udp_tcp_port()}",
                                 timeout=0.5))
    result = verify(client, tenant, name)
    error = assert_error(result, 503, "dns_unavailable")
    assert name in error["message"]
    assert result.headers["retry-after"] == "30"
    shown = client.simulate_get(domain_path(name), headers=tenant.auth).json
    assert RFC3339_Z.match(shown["last_checked_at"]) and shown["verified"] is False


# -- unverified claims expire ----------------------------------------------------


def _age(cfg, name: str, seconds: float) -> None:
    with single_connection(cfg) as conn:
        conn.execute("UPDATE domains SET created_at = now() - %s * interval '1 second' "
                     "WHERE domain = %s", (seconds, name))


def _run_worker_job(cfg, name: str) -> int:
    [job] = [j for j in jobs.for_worker(cfg, wakeup.Bell()) if j.name == name]
    with single_connection(cfg) as conn:
        return job.run(conn)


def _exists(cfg, name: str) -> bool:
    with single_connection(cfg) as conn:
        return conn.execute("SELECT 1 FROM domains WHERE domain = %s",
                            (name,)).fetchone() is not None


def test_an_unverified_claim_expires_and_the_name_is_free_again(cfg, client, tenant, other):
    ttl = cfg.domains.unverified_expiry_seconds
    assert ttl == 7 * 24 * 3600
    squatted, fresh, verified = fresh_name(), fresh_name(), fresh_name()
    for name in (squatted, fresh, verified):
        registered(client, tenant, name)
    with single_connection(cfg) as conn:
        conn.execute("UPDATE domains SET verified = true, verified_at = now() "
                     "WHERE domain = %s", (verified,))
    _age(cfg, squatted, ttl + 60)
    _age(cfg, fresh, ttl - 3600)
    _age(cfg, verified, ttl + 60)

    assert _run_worker_job(cfg, "expire domain claims") >= 1

    assert not _exists(cfg, squatted)
    assert _exists(cfg, fresh) and _exists(cfg, verified)
    assert registered(client, other, squatted)["domain"] == squatted
    assert_error(register(client, other, fresh), 409, "conflict")


def test_an_expired_claim_is_free_before_the_worker_runs(cfg, client, tenant, other):
    name = fresh_name()
    registered(client, tenant, name)
    _age(cfg, name, cfg.domains.unverified_expiry_seconds + 60)
    assert registered(client, other, name)["domain"] == name
    listed = client.simulate_get("/api/v1/domains", headers=tenant.auth).json["domains"]
    assert name not in [d["domain"] for d in listed]


def test_a_domain_once_verified_is_no_claim_to_expire(cfg, client, tenant):
    """Verified once, with agents on it: a lapse in DNS does not free the name."""
    row = add_domain(cfg, tenant)
    with single_connection(cfg) as conn:
        accounts.register_agent(conn, cfg, tenant.user["id"], email=f"bot@{row['domain']}")
        conn.execute("UPDATE domains SET verified = false, created_at = now() - interval "
                     "'30 days' WHERE id = %s", (row["id"],))
    _run_worker_job(cfg, "expire domain claims")
    assert _exists(cfg, row["domain"])
