"""/api/v1/agents on a real database: registration by slug and by email, the
rules and validation, partial updates, deletion, the registration rate limit,
tenant walls and agent-scoped keys."""

from __future__ import annotations

import re
import secrets

import pytest
from apisupport import (
    add_agent,
    add_domain,
    agent_key,
    agent_path,
    api_client,
    assert_error,
    insert_message,
    make_tenant,
)
from servicesupport import write_config

from e2a.api.resources.agents import REGISTRATIONS
from e2a.core import config, ratelimit
from e2a.core.db import single_connection

AGENT_FIELDS = {"id", "email", "name", "domain", "domain_verified", "agent_mode", "webhook_url",
                "hitl_enabled", "hitl_ttl_seconds", "hitl_expiration_action", "created_at"}
RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
HOOK = "https://hooks.example.com/e2a"


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


def slug() -> str:
    return f"a-{secrets.token_hex(4)}"


def register(client, tenant, remote_addr="127.0.0.1", **body):
    body.setdefault("agent_mode", "local")
    return client.simulate_post("/api/v1/agents", headers=tenant.auth, json=body,
                                remote_addr=remote_addr)


# -- register -------------------------------------------------------------------


def test_register_by_slug(cfg, client, tenant):
    name = slug()
    result = register(client, tenant, slug=name, name="Helper")
    assert result.status_code == 201, result.text
    email = f"{name}@{cfg.mail.shared_domain}"
    assert set(result.json) == {"id", "email", "domain"}
    assert result.json["email"] == email
    assert result.json["domain"] == cfg.mail.shared_domain
    assert re.fullmatch(r"ag_[0-9a-f]{32}", result.json["id"])
    got = client.simulate_get(agent_path(email), headers=tenant.auth)
    assert got.status_code == 200
    assert set(got.json) == AGENT_FIELDS
    assert got.json == {
        "id": result.json["id"], "email": email, "name": "Helper",
        "domain": cfg.mail.shared_domain, "domain_verified": True, "agent_mode": "local",
        "webhook_url": "", "hitl_enabled": False, "hitl_ttl_seconds": 604800,
        "hitl_expiration_action": "reject", "created_at": got.json["created_at"]}
    assert RFC3339_Z.match(got.json["created_at"])


def test_register_by_email_on_a_verified_domain(cfg, client, tenant):
    domain = add_domain(cfg, tenant)["domain"]
    result = register(client, tenant, email=f"Support@{domain.upper()}", agent_mode="cloud",
                      webhook_url=HOOK)
    assert result.status_code == 201, result.text
    assert result.json["email"] == f"support@{domain}"
    assert result.json["domain"] == domain
    got = client.simulate_get(agent_path(f"support@{domain}"), headers=tenant.auth).json
    assert (got["agent_mode"], got["webhook_url"], got["domain_verified"]) == (
        "cloud", HOOK, True)


def test_null_fields_count_as_absent(cfg, client, tenant):
    result = register(client, tenant, slug=slug(), email=None, name=None, webhook_url=None)
    assert result.status_code == 201, result.text


def test_register_refuses_domains_that_are_not_yours_and_verified(cfg, client, tenant, other):
    unverified = add_domain(cfg, tenant, verified=False)["domain"]
    theirs = add_domain(cfg, other)["domain"]
    error = assert_error(register(client, tenant, email=f"x@{unverified}"), 400,
                         "domain_not_verified")
    assert unverified in error["message"]
    for email in (f"x@{theirs}", "x@nobody-registered-this.example"):
        assert_error(register(client, tenant, email=email), 400, "domain_not_found")


def test_an_existing_address_is_409_whoever_holds_it(cfg, client, tenant, other):
    name = slug()
    assert register(client, tenant, slug=name).status_code == 201
    assert_error(register(client, tenant, slug=name), 409, "conflict")
    assert_error(register(client, other, slug=name), 409, "conflict")
    shared_email = f"{name}@{cfg.mail.shared_domain}"
    assert_error(register(client, other, email=shared_email), 409, "conflict")


@pytest.mark.parametrize("body", [
    {},  # neither slug nor email
    {"slug": "x1", "email": "x1@example.com"},
    {"slug": "Upper"}, {"slug": "-dash"}, {"slug": "dot."}, {"slug": "a" * 65},
    {"slug": "has space"}, {"slug": "a@b"}, {"slug": 7},
    {"email": "not-an-address"}, {"email": "@example.com"}, {"email": "x@192.0.2.1"},
    {"email": "a" * 65 + "@example.com"}, {"email": ["x@example.com"]},
    {"name": "n" * 256},
])
def test_register_validation(client, tenant, body):
    body = {"slug": slug(), **body} if "email" not in body and "slug" not in body and body else body
    assert_error(register(client, tenant, **body), 400, "invalid_request")


@pytest.mark.parametrize("mode", ["", "remote", "LOCAL", 1])
def test_agent_mode_must_be_local_or_cloud(client, tenant, mode):
    result = client.simulate_post("/api/v1/agents", headers=tenant.auth,
                                  json={"slug": slug(), "agent_mode": mode})
    assert_error(result, 400, "invalid_request")


@pytest.mark.parametrize("body", [{}, {"agent_mode": None}])
def test_agent_mode_defaults_to_local(client, tenant, body):
    created = client.simulate_post("/api/v1/agents", headers=tenant.auth,
                                   json={"slug": slug(), **body})
    assert created.status_code == 201, created.text
    got = client.simulate_get(f"/api/v1/agents/{created.json['email']}", headers=tenant.auth)
    assert got.json["agent_mode"] == "local"


def test_role_addresses_of_the_shared_domain_are_reserved(cfg, client, tenant):
    for name in ("postmaster", "abuse", "mailer-daemon"):
        assert_error(register(client, tenant, slug=name), 409, "conflict")
        assert_error(register(client, tenant, email=f"{name}@{cfg.mail.shared_domain}"),
                     409, "conflict")


def test_shared_domain_addresses_follow_the_slug_rules_however_given(cfg, client, tenant):
    for local in ("bot+tag", "Bot", "_x"):
        result = register(client, tenant, email=f"{local}@{cfg.mail.shared_domain}")
        if local == "Bot":  # an address is case-insensitive: it is stored lowercase
            assert result.status_code == 201 and result.json["email"].startswith("bot@")
        else:
            assert_error(result, 400, "invalid_request")


def test_slug_registration_seeds_a_shared_domain_the_start_could_not(cfg, tmp_path):
    fresh = f"s{secrets.token_hex(4)}.test.example"
    renamed = config.load(write_config(cfg, tmp_path / "e2a.toml"),
                          env={"E2A_MAIL_SHARED_DOMAIN": fresh})
    owner = make_tenant(cfg)
    with api_client(renamed) as renamed_client:
        result = register(renamed_client, owner, slug="first")
        assert result.status_code == 201, result.text
        assert result.json == {"id": result.json["id"], "email": f"first@{fresh}",
                               "domain": fresh}
        # The old shared domain is nobody's now.
        old = register(renamed_client, owner, email=f"late@{cfg.mail.shared_domain}")
        assert_error(old, 400, "domain_not_found")


HOSTILE_URLS = [
    "http://169.254.169.254/latest/meta-data/", "https://169.254.169.254/",
    "https://user:pw@hooks.example.com/", "javascript:alert(1)",
    "https://hooks.example.com/\r\nX-Evil: 1", "https://hooks.example.com/" + "a" * 10_240,
    "http://hooks.example.com/", "https://localhost/", "https://10.1.2.3/", "",
]


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_cloud_agents_need_a_safe_webhook_url(client, tenant, url):
    result = register(client, tenant, slug=slug(), agent_mode="cloud", webhook_url=url)
    error = assert_error(result, 400, "invalid_request")
    assert "webhook_url" in error["message"]


def test_a_local_agent_with_a_bad_webhook_url_is_refused_too(client, tenant):
    result = register(client, tenant, slug=slug(), webhook_url="http://169.254.169.254/")
    assert_error(result, 400, "invalid_request")


def test_loopback_webhooks_only_where_configured(cfg, tmp_path):
    path = write_config(cfg, tmp_path / "e2a.toml", extra="[webhooks]\nallow_loopback = true\n")
    sandbox_cfg = config.load(path, env={})
    owner = make_tenant(cfg)
    with api_client(sandbox_cfg) as sandbox:
        ok = register(sandbox, owner, slug=slug(), agent_mode="cloud",
                      webhook_url="http://127.0.0.1:8999/hook")
        assert ok.status_code == 201, ok.text
        metadata = register(sandbox, owner, slug=slug(), agent_mode="cloud",
                            webhook_url="http://169.254.169.254/")
        assert_error(metadata, 400, "invalid_request")


def test_agent_cap(cfg, client):
    capped = make_tenant(cfg)  # holds one agent already
    with single_connection(cfg) as conn:
        conn.execute("UPDATE users SET max_agents = 2 WHERE id = %s", (capped.user["id"],))
    assert register(client, capped, slug=slug()).status_code == 201
    assert_error(register(client, capped, slug=slug()), 400, "limit_reached")


def test_registrations_are_rate_limited_per_source_address(cfg, client, tenant, other):
    address = f"198.51.100.{secrets.randbelow(250) + 1}"
    with single_connection(cfg) as conn:  # as if 199 registrations came first
        ratelimit.hit(conn, REGISTRATIONS, address, cost=REGISTRATIONS.per_window - 1)
    assert register(client, tenant, address, slug=slug()).status_code == 201
    name = slug()
    refused = register(client, other, address, slug=name)  # any key, same address
    error = assert_error(refused, 429, "rate_limited")
    assert "200" in error["message"]
    retry = int(refused.headers["retry-after"])
    assert 1 <= retry <= 3600
    assert client.simulate_get(agent_path(f"{name}@{cfg.mail.shared_domain}"),
                               headers=other.auth).status_code == 404
    # Another address is not held back.
    assert register(client, other, "198.51.100.0", slug=slug()).status_code == 201


def _registrations_counted_for(cfg, address: str) -> int:
    with single_connection(cfg) as conn:
        row = conn.execute("SELECT coalesce(sum(hits), 0) AS n FROM rate_limits "
                           "WHERE bucket = %s", (f"{REGISTRATIONS.scope}:{address}",)).fetchone()
    return row["n"]


@pytest.fixture(scope="module")
def proxied(cfg, tmp_path_factory):
    """The app behind a reverse proxy on 10.1.0.0/16 and one on 192.0.2.10."""
    path = write_config(cfg, tmp_path_factory.mktemp("proxy") / "e2a.toml",
                        '[http]\ntrusted_proxies = ["10.1.0.0/16", "192.0.2.10"]\n')
    with api_client(config.load(path, env={})) as test_client:
        yield test_client


def _register_via(client, tenant, peer, forwarded):
    headers = {**tenant.auth, "X-Forwarded-For": forwarded}
    return client.simulate_post("/api/v1/agents", headers=headers, remote_addr=peer,
                                json={"agent_mode": "local", "slug": slug()})


def _fresh_address() -> str:
    return f"203.0.113.{secrets.randbelow(250) + 1}"


def test_x_forwarded_for_is_ignored_by_default(cfg, client, tenant):
    peer, spoofed = _fresh_address(), _fresh_address()
    assert _register_via(client, tenant, peer, spoofed).status_code == 201
    assert _registrations_counted_for(cfg, peer) == 1
    assert _registrations_counted_for(cfg, spoofed) == 0


def test_behind_a_trusted_proxy_the_client_is_the_rightmost_untrusted_hop(cfg, proxied,
                                                                           tenant):
    client_addr, claimed = _fresh_address(), _fresh_address()
    # The client claimed an address; our two proxies each appended their peer.
    result = _register_via(proxied, tenant, "10.1.2.3",
                           f"{claimed}, {client_addr}, 192.0.2.10")
    assert result.status_code == 201, result.text
    assert _registrations_counted_for(cfg, client_addr) == 1
    assert _registrations_counted_for(cfg, claimed) == 0
    assert _registrations_counted_for(cfg, "10.1.2.3") == 0


def test_a_spoofed_x_forwarded_for_from_an_untrusted_peer_is_ignored(cfg, proxied, tenant):
    peer, spoofed = _fresh_address(), _fresh_address()
    assert _register_via(proxied, tenant, peer, spoofed).status_code == 201
    assert _registrations_counted_for(cfg, peer) == 1
    assert _registrations_counted_for(cfg, spoofed) == 0
    # Nor can a client dodge the limit by rotating the header.
    with single_connection(cfg) as conn:
        ratelimit.hit(conn, REGISTRATIONS, peer, cost=REGISTRATIONS.per_window)
    assert_error(_register_via(proxied, tenant, peer, _fresh_address()), 429, "rate_limited")


@pytest.mark.parametrize("value,problem", [
    ('["not-an-ip"]', "not an IP address"),
    ('"10.0.0.1"', "must be a list"),
])
def test_trusted_proxies_must_be_addresses(cfg, tmp_path, value, problem):
    path = write_config(cfg, tmp_path / "e2a.toml", f"[http]\ntrusted_proxies = {value}\n")
    with pytest.raises(config.ConfigError, match=problem):
        config.load(path, env={})


# -- list, get ----------------------------------------------------------------------


def test_list_holds_own_agents_only(cfg, client, tenant, other):
    second = add_agent(cfg, tenant)
    result = client.simulate_get("/api/v1/agents", headers=tenant.auth)
    assert result.status_code == 200
    assert set(result.json) == {"agents"}
    emails = [a["email"] for a in result.json["agents"]]
    assert tenant.agent["email"] in emails and second["email"] in emails
    assert other.agent["email"] not in emails
    assert all(set(a) == AGENT_FIELDS for a in result.json["agents"])


def test_get_takes_the_address_in_any_case(client, tenant):
    result = client.simulate_get(agent_path(tenant.agent["email"].upper()), headers=tenant.auth)
    assert result.status_code == 200 and result.json["email"] == tenant.agent["email"]
    assert_error(client.simulate_get(agent_path("nobody@example.com"), headers=tenant.auth),
                 404, "not_found")


# -- update ----------------------------------------------------------------------


def put(client, tenant, email, body):
    return client.simulate_put(agent_path(email), headers=tenant.auth, json=body)


def test_update_is_partial_and_answers_the_new_state(cfg, client, tenant):
    email = add_agent(cfg, tenant)["email"]
    hitl = put(client, tenant, email, {"hitl_enabled": True})
    assert hitl.status_code == 200, hitl.text
    assert set(hitl.json) == AGENT_FIELDS
    assert (hitl.json["hitl_enabled"], hitl.json["agent_mode"], hitl.json["hitl_ttl_seconds"]) \
        == (True, "local", 604800)
    both = put(client, tenant, email, {"hitl_ttl_seconds": 3600,
                                       "hitl_expiration_action": "approve",
                                       "unknown_field": "ignored", "webhook_url": None})
    assert (both.json["hitl_enabled"], both.json["hitl_ttl_seconds"],
            both.json["hitl_expiration_action"]) == (True, 3600, "approve")
    cloud = put(client, tenant, email, {"agent_mode": "cloud", "webhook_url": HOOK})
    assert (cloud.json["agent_mode"], cloud.json["webhook_url"]) == ("cloud", HOOK)
    # The stored URL carries a later switch back and forth.
    assert put(client, tenant, email, {"agent_mode": "local"}).json["agent_mode"] == "local"
    again = put(client, tenant, email, {"agent_mode": "cloud"})
    assert again.status_code == 200 and again.json["webhook_url"] == HOOK
    assert put(client, tenant, email, {}).json == again.json
    assert client.simulate_get(agent_path(email), headers=tenant.auth).json == again.json
    for ttl in (1, 604800):
        assert put(client, tenant, email, {"hitl_ttl_seconds": ttl}).status_code == 200


@pytest.mark.parametrize("body", [
    {"agent_mode": "remote"}, {"agent_mode": ""},
    {"hitl_ttl_seconds": 0}, {"hitl_ttl_seconds": 604801}, {"hitl_ttl_seconds": -5},
    {"hitl_ttl_seconds": "3600"}, {"hitl_ttl_seconds": 3600.5}, {"hitl_ttl_seconds": True},
    {"hitl_enabled": "yes"}, {"hitl_enabled": 1},
    {"hitl_expiration_action": "delete"}, {"hitl_expiration_action": ""},
    {"webhook_url": "http://169.254.169.254/"}, {"webhook_url": "https://u:p@x.example/"},
    {"webhook_url": 5},
    {"agent_mode": "cloud"},  # no webhook_url stored
    {"agent_mode": "cloud", "webhook_url": ""},
    # one bad field spoils the lot: nothing is applied
    {"hitl_enabled": True, "hitl_ttl_seconds": 0},
])
def test_update_validation(cfg, client, tenant, body):
    agent = add_agent(cfg, tenant)
    before = client.simulate_get(agent_path(agent["email"]), headers=tenant.auth).json
    assert_error(put(client, tenant, agent["email"], body), 400, "invalid_request")
    after = client.simulate_get(agent_path(agent["email"]), headers=tenant.auth).json
    assert after == before


def test_update_refuses_a_body_that_is_not_an_object(cfg, client, tenant):
    result = client.simulate_put(agent_path(tenant.agent["email"]), headers=tenant.auth,
                                 body="[1]", content_type="application/json")
    assert_error(result, 400, "invalid_request")


# -- delete -----------------------------------------------------------------------


def test_delete_takes_messages_and_scoped_keys_along(cfg, client, tenant):
    agent = add_agent(cfg, tenant)
    insert_message(cfg, agent)
    key = agent_key(cfg, tenant, agent)
    result = client.simulate_delete(agent_path(agent["email"]), headers=tenant.auth)
    assert result.status_code == 200 and result.json == {"status": "deleted"}
    assert_error(client.simulate_get(agent_path(agent["email"]), headers=tenant.auth),
                 404, "not_found")
    assert_error(client.simulate_delete(agent_path(agent["email"]), headers=tenant.auth),
                 404, "not_found")
    with single_connection(cfg) as conn:
        left = conn.execute("SELECT count(*) AS n FROM messages WHERE agent_id = %s",
                            (agent["id"],)).fetchone()["n"]
    assert left == 0
    orphan = client.simulate_get("/api/v1/agents",
                                 headers={"Authorization": f"Bearer {key}"})
    assert_error(orphan, 401, "unauthorized")
    # The address can be registered again.
    local = agent["email"].split("@")[0]
    assert register(client, tenant, slug=local).status_code == 201


# -- walls ------------------------------------------------------------------------


def every_call(client, email, headers):
    path = agent_path(email)
    return {
        "get": client.simulate_get(path, headers=headers),
        "put": client.simulate_put(path, headers=headers, json={"hitl_enabled": False}),
        "delete": client.simulate_delete(path, headers=headers),
    }


def test_another_tenant_gets_404_on_every_endpoint(cfg, client, tenant, other):
    agent = add_agent(cfg, tenant)
    put(client, tenant, agent["email"], {"hitl_enabled": True})
    for result in every_call(client, agent["email"], other.auth).values():
        error = assert_error(result, 404, "not_found")
        assert error["message"] == f"agent {agent['email']} not found"
    for result in every_call(client, f"ghost-{secrets.token_hex(3)}@example.com",
                             other.auth).values():
        assert_error(result, 404, "not_found")
    survived = client.simulate_get(agent_path(agent["email"]), headers=tenant.auth)
    assert survived.status_code == 200 and survived.json["hitl_enabled"] is True


def test_agent_scoped_keys(cfg, client, tenant):
    own = add_agent(cfg, tenant)
    sibling = add_agent(cfg, tenant)
    scoped = {"Authorization": f"Bearer {agent_key(cfg, tenant, own)}"}
    # It reads its own agent, and lists only that one.
    assert client.simulate_get(agent_path(own["email"]), headers=scoped).status_code == 200
    listed = client.simulate_get("/api/v1/agents", headers=scoped).json["agents"]
    assert [a["email"] for a in listed] == [own["email"]]
    # It may not change or delete its own agent (lifting its own HITL hold) ...
    calls = every_call(client, own["email"], scoped)
    assert calls["get"].status_code == 200
    assert_error(calls["put"], 403, "forbidden")
    assert_error(calls["delete"], 403, "forbidden")
    # ... nor register agents ...
    assert_error(client.simulate_post("/api/v1/agents", headers=scoped,
                                      json={"slug": slug(), "agent_mode": "local"}),
                 403, "forbidden")
    # ... and its siblings do not exist for it.
    for result in every_call(client, sibling["email"], scoped).values():
        assert_error(result, 404, "not_found")
    assert client.simulate_get(agent_path(own["email"]), headers=tenant.auth).status_code == 200


def test_no_key_is_401_everywhere(client, tenant):
    results = every_call(client, tenant.agent["email"], {})
    results["list"] = client.simulate_get("/api/v1/agents")
    results["post"] = client.simulate_post("/api/v1/agents",
                                           json={"slug": slug(), "agent_mode": "local"})
    for result in results.values():
        assert_error(result, 401, "unauthorized")


def test_the_servers_own_addresses_cannot_be_agents(cfg, client, tenant):
    # The owners' notifications come from hitl.notify_from (approvals@ the
    # shared domain by default): an agent there could send fake approval
    # requests or read the owners' replies.
    assert cfg.hitl.notify_from == f"approvals@{cfg.mail.shared_domain}"
    shaped = [f"approve-{'0' * 32}-{'1' * 20}", "approve-anything"]
    for local in ("approvals", *shaped):
        assert_error(register(client, tenant, slug=local), 409, "conflict")
        result = register(client, tenant, email=f"{local}@{cfg.mail.shared_domain}")
        assert_error(result, 409, "conflict")
        assert "reserved" in result.json["error"]["message"]
    domain = add_domain(cfg, tenant)["domain"]
    for local in (*shaped, f"bounces+msg_{'0' * 32}"):
        assert_error(register(client, tenant, email=f"{local}@{domain}"), 409, "conflict")


def test_a_configured_notify_from_and_reply_domain_are_reserved(cfg, tmp_path):
    owner = make_tenant(cfg)
    reply_domain = add_domain(cfg, owner)["domain"]
    notify_from = f"hitl-notices@{cfg.mail.shared_domain}"
    configured = config.load(write_config(
        cfg, tmp_path / "e2a.toml",
        f'[hitl]\nnotify_from = "{notify_from}"\nreply_domain = "{reply_domain}"\n'), env={})
    with api_client(configured) as configured_client:
        assert_error(register(configured_client, owner, slug="hitl-notices"), 409, "conflict")
        assert_error(register(configured_client, owner, email=f"anyone@{reply_domain}"),
                     409, "conflict")
        # approvals@ is an ordinary address when notifications come from elsewhere.
        assert register(configured_client, owner, slug=f"approvals-{secrets.token_hex(2)}") \
            .status_code == 201
