"""The /v1 resources over falcon.testing and a real database: meta,
account, agents, messages (filters, detail with authentication evidence,
labels, trash), conversations."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from apisupport import add_agent, add_domain, agent_key, api_client, insert_message, make_tenant
from v1support import agent_path, assert_envelope, messages_path

from e2a.core.db import single_connection
from e2a.core.ids import new_id
from e2a.core.store import agents as agent_store
from e2a.core.store import usage as usage_store


@pytest.fixture(scope="module")
def client(cfg):
    with api_client(cfg) as test_client:
        yield test_client


@pytest.fixture
def tenant(cfg):
    return make_tenant(cfg)


def test_info_is_public(client, cfg):
    result = client.simulate_get("/v1/info")
    assert result.status_code == 200
    assert result.json["shared_domain"] == cfg.mail.shared_domain
    assert result.json["slug_registration_enabled"] is True
    assert isinstance(result.json["version"], str)
    assert result.headers["X-Request-Id"]


def test_account_view(client, tenant):
    result = client.simulate_get("/v1/account", headers=tenant.auth)
    assert result.status_code == 200, result.text
    body = result.json
    assert body["user"] == {"id": tenant.user["id"], "email": tenant.user["email"]}
    assert body["scope"] == "account"
    assert body["usage"]["agents"] == 1
    assert set(body["limits"]) == {"max_agents", "max_domains", "max_messages_month",
                                   "max_storage_bytes"}


def test_account_view_for_an_agent_key(client, cfg, tenant):
    key = agent_key(cfg, tenant, tenant.agent)
    result = client.simulate_get("/v1/account", headers={"Authorization": f"Bearer {key}"})
    assert result.json["scope"] == "agent"
    assert result.json["agent_email"] == tenant.agent["email"]


def test_account_delete_needs_confirm_and_answers_a_receipt(client, tenant):
    assert_envelope(client.simulate_delete("/v1/account", headers=tenant.auth), 422,
                    "invalid_request")
    result = client.simulate_delete("/v1/account", params={"confirm": "DELETE"},
                                    headers=tenant.auth)
    assert result.status_code == 200, result.text
    assert result.json["deleted"] is True and result.json["user_deleted"] is True
    assert result.json["agents_deleted"] == 1
    assert_envelope(client.simulate_get("/v1/account", headers=tenant.auth), 401,
                    "unauthorized")


def test_agents_create_get_rename_list(client, cfg, tenant):
    email = f"made-{secrets.token_hex(3)}@{cfg.mail.shared_domain}"
    made = client.simulate_post("/v1/agents", json={"email": email, "name": "Made"},
                                headers=tenant.auth)
    assert made.status_code == 201, made.text
    assert made.json == {**made.json, "email": email, "name": "Made",
                         "domain": cfg.mail.shared_domain, "domain_verified": True,
                         "registered_domain": cfg.mail.shared_domain}
    again = client.simulate_post("/v1/agents", json={"email": email}, headers=tenant.auth)
    assert_envelope(again, 409, "agent_taken")
    renamed = client.simulate_patch(agent_path(email.upper()), json={"name": "New"},
                                    headers=tenant.auth)
    assert renamed.status_code == 200 and renamed.json["name"] == "New"
    first = client.simulate_get("/v1/agents", params={"limit": "1"}, headers=tenant.auth)
    assert [a["email"] for a in first.json["items"]] == [email]  # newest first
    second = client.simulate_get("/v1/agents", params={
        "limit": "1", "cursor": first.json["next_cursor"]}, headers=tenant.auth)
    assert [a["email"] for a in second.json["items"]] == [tenant.agent["email"]]
    assert second.json["next_cursor"] is None


def test_agent_on_a_domain_that_is_not_yours(client, tenant):
    result = client.simulate_post("/v1/agents", json={"email": "x@not-mine.example"},
                                  headers=tenant.auth)
    assert_envelope(result, 400, "domain_not_registered")


def test_agent_on_a_verified_custom_domain(client, cfg, tenant):
    domain = add_domain(cfg, tenant)
    result = client.simulate_post("/v1/agents", json={"email": f"bot@{domain['domain']}"},
                                  headers=tenant.auth)
    assert result.status_code == 201, result.text
    assert result.json["domain"] == domain["domain"]


def test_agent_limit_is_402(client, cfg, tenant):
    with single_connection(cfg) as conn:
        conn.execute("UPDATE users SET max_agents = 1 WHERE id = %s", (tenant.user["id"],))
    result = client.simulate_post(
        "/v1/agents", json={"email": f"more-{secrets.token_hex(3)}@{cfg.mail.shared_domain}"},
        headers=tenant.auth)
    error = assert_envelope(result, 402, "limit_exceeded")
    assert error["details"] == {"resource": "agents", "limit": 1, "current": 1}


def test_agent_trash_restore_and_erase(client, cfg, tenant):
    other = add_agent(cfg, tenant)
    message_id = insert_message(cfg, other)
    path = agent_path(other["email"])
    assert_envelope(client.simulate_post(path + "/restore", headers=tenant.auth), 409,
                    "not_in_trash")
    assert_envelope(client.simulate_delete(path, headers=tenant.auth), 422, "invalid_request")
    trashed = client.simulate_delete(path, params={"confirm": "DELETE"}, headers=tenant.auth)
    assert trashed.json == {"deleted": True, "email": other["email"], "messages_deleted": 0}
    # Out of the lists and the mailbox routes, in the trash view, still readable.
    live = client.simulate_get("/v1/agents", headers=tenant.auth).json["items"]
    assert other["email"] not in [a["email"] for a in live]
    trash = client.simulate_get("/v1/agents", params={"deleted": "true"},
                                headers=tenant.auth).json["items"]
    assert [a["email"] for a in trash] == [other["email"]] and trash[0]["deleted_at"]
    assert client.simulate_get(path, headers=tenant.auth).json["deleted_at"]
    assert_envelope(client.simulate_get(f"{path}/messages/{message_id}", headers=tenant.auth),
                    404, "not_found")
    legacy = client.simulate_get("/api/v1/agents", headers=tenant.auth).json["agents"]
    assert other["email"] not in [a["email"] for a in legacy]
    # Mail for it is refused at RCPT (the policy service's lookup) and by the milter's.
    with single_connection(cfg) as conn:
        assert usage_store.agent_with_quota(conn, other["email"]) is None
        assert agent_store.agents_by_emails(conn, [other["email"]]) == []
    # Its address stays taken while it is in the trash.
    again = client.simulate_post("/v1/agents", json={"email": other["email"]},
                                 headers=tenant.auth)
    assert_envelope(again, 409, "address_in_trash")
    restored = client.simulate_post(path + "/restore", headers=tenant.auth)
    assert restored.status_code == 200 and "deleted_at" not in restored.json
    assert client.simulate_get(f"{path}/messages/{message_id}",
                               headers=tenant.auth).status_code == 200
    erased = client.simulate_delete(path, params={"confirm": "DELETE", "permanent": "true"},
                                    headers=tenant.auth)
    assert erased.json == {"deleted": True, "email": other["email"], "messages_deleted": 1}
    assert_envelope(client.simulate_get(path, headers=tenant.auth), 404, "not_found")


def _dkim_signed_inbound(cfg, tenant):
    """A message as the milter stores it: our Authentication-Results on top."""
    ar = (f"Authentication-Results: {cfg.mail.authserv_id};\r\n\tspf=pass "
          "smtp.mailfrom=bounce@mail.example.org;\r\n\tdkim=pass header.d=example.org "
          "header.s=s1;\r\n\tdkim=fail header.d=other.example header.s=s2;\r\n\t"
          "dmarc=pass (p=reject) header.from=example.org\r\n")
    raw = (ar + "From: Alice <alice@example.org>\r\nTo: x\r\nSubject: signed\r\n"
           "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
           "--b\r\nContent-Type: text/plain\r\n\r\nhello there\r\n--b\r\n"
           "Content-Type: application/pdf\r\nContent-Disposition: attachment; "
           "filename=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           + base64.b64encode(b"%PDF-1").decode() + "\r\n--b--\r\n").encode()
    return insert_message(cfg, tenant.agent, subject="signed", sender="alice@example.org",
                          envelope_sender="bounce@mail.example.org", raw_message=raw,
                          size_bytes=len(raw), spf="pass", dkim="pass", dmarc="pass",
                          verified=True)


def test_message_detail_with_authentication_evidence(client, cfg, tenant):
    message_id = _dkim_signed_inbound(cfg, tenant)
    result = client.simulate_get(f"{messages_path(tenant.agent['email'])}/{message_id}",
                                 headers=tenant.auth)
    assert result.status_code == 200, result.text
    body = result.json
    assert body["id"] == message_id and body["direction"] == "inbound"
    assert body["header_from"] == "alice@example.org"
    assert body["envelope_from"] == "bounce@mail.example.org"
    assert body["verified_domain"] == "example.org"
    assert body["delivered_to"] == tenant.agent["email"]
    assert body["read_status"] == "read"
    auth = body["authentication"]
    assert auth["spf"] == {"status": "pass", "domain": "mail.example.org", "aligned": True}
    assert auth["dkim"] == [
        {"status": "pass", "domain": "example.org", "selector": "s1", "aligned": True},
        {"status": "fail", "domain": "other.example", "selector": "s2", "aligned": None}]
    assert auth["dmarc"] == {"status": "pass", "domain": "example.org", "policy": "reject",
                             "aligned_by": ["spf", "dkim"]}
    assert body["body"] == {"text": "hello there"}
    assert body["attachments"] == [{"index": 0, "size_bytes": 6, "filename": "a.pdf",
                                    "content_type": "application/pdf"}]
    assert base64.b64decode(body["raw_message"]).startswith(b"Authentication-Results")


def test_message_without_our_header_falls_back_to_the_stored_results(client, cfg, tenant):
    message_id = insert_message(cfg, tenant.agent)
    body = client.simulate_get(f"{messages_path(tenant.agent['email'])}/{message_id}",
                               headers=tenant.auth).json
    assert body["authentication"] == {
        "spf": {"status": "pass", "domain": "example.org", "aligned": None}, "dkim": [],
        "dmarc": {"status": "none", "domain": None, "policy": None, "aligned_by": []}}
    assert body["verified_domain"] is None


def test_list_filters_and_cursor(client, cfg, tenant):
    conversation = new_id("conv")
    ids = [insert_message(cfg, tenant.agent, subject=f"Report {n}", sender=f"s{n}@ex.org",
                          conversation_id=conversation) for n in range(3)]
    insert_message(cfg, tenant.agent, subject="other")
    path = messages_path(tenant.agent["email"])
    page = client.simulate_get(path, params={"subject_contains": "report", "limit": "2",
                                             "sort": "asc"}, headers=tenant.auth)
    assert page.status_code == 200, page.text
    assert [m["id"] for m in page.json["items"]] == ids[:2]
    rest = client.simulate_get(path, params={"subject_contains": "report", "limit": "2",
                                             "sort": "asc", "cursor": page.json["next_cursor"]},
                               headers=tenant.auth)
    assert [m["id"] for m in rest.json["items"]] == ids[2:]
    assert rest.json["next_cursor"] is None
    # A cursor only continues its own listing.
    foreign = client.simulate_get(path, params={"cursor": page.json["next_cursor"]},
                                  headers=tenant.auth)
    assert_envelope(foreign, 400, "invalid_cursor")
    garbage = client.simulate_get(path, params={"cursor": "nonsense"}, headers=tenant.auth)
    assert_envelope(garbage, 400, "invalid_request")
    by_from = client.simulate_get(path, params={"from": "s1@"}, headers=tenant.auth)
    assert [m["id"] for m in by_from.json["items"]] == [ids[1]]
    by_conv = client.simulate_get(path, params={"conversation_id": conversation},
                                  headers=tenant.auth)
    assert len(by_conv.json["items"]) == 3
    summary = by_conv.json["items"][0]
    assert summary["read_status"] == "unread" and summary["labels"] == []
    assert "authentication" not in summary and "raw_message" not in summary


def test_since_until_accept_the_sdk_datetime_form(client, cfg, tenant):
    insert_message(cfg, tenant.agent)
    path = messages_path(tenant.agent["email"])
    past = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%f%z")
    future = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%f%z")
    assert "+0000" in past
    found = client.simulate_get(path, params={"since": past, "until": future},
                                headers=tenant.auth)
    assert found.status_code == 200, found.text
    assert len(found.json["items"]) == 1
    none = client.simulate_get(path, params={"since": future}, headers=tenant.auth)
    assert none.json["items"] == []
    bad = client.simulate_get(path, params={"since": "yesterday"}, headers=tenant.auth)
    error = assert_envelope(bad, 400, "invalid_request")
    assert error["details"]["fields"][0]["location"] == "query.since"


def test_read_status_defaults_to_unread_for_inbound(client, cfg, tenant):
    read = insert_message(cfg, tenant.agent)
    unread = insert_message(cfg, tenant.agent)
    path = messages_path(tenant.agent["email"])
    client.simulate_get(f"{path}/{read}", headers=tenant.auth)
    listed = client.simulate_get(path, headers=tenant.auth).json["items"]
    assert [m["id"] for m in listed] == [unread]
    everything = client.simulate_get(path, params={"read_status": "all"},
                                     headers=tenant.auth).json["items"]
    assert {m["id"] for m in everything} == {read, unread}


def test_labels_patch(client, cfg, tenant):
    message_id = insert_message(cfg, tenant.agent)
    path = f"{messages_path(tenant.agent['email'])}/{message_id}"
    result = client.simulate_patch(path, json={"add_labels": ["urgent", "a:b"]},
                                   headers=tenant.auth)
    assert result.json == {"message_id": message_id, "labels": ["a:b", "urgent"]}
    result = client.simulate_patch(path, json={"remove_labels": ["urgent"]},
                                   headers=tenant.auth)
    assert result.json["labels"] == ["a:b"]
    assert_envelope(client.simulate_patch(path, json={"add_labels": ["e2a:x"]},
                                          headers=tenant.auth), 400, "invalid_request")
    listed = client.simulate_get(messages_path(tenant.agent["email"]),
                                 params={"labels": "a:b", "read_status": "all"},
                                 headers=tenant.auth)
    assert [m["id"] for m in listed.json["items"]] == [message_id]


def test_trash_restore_and_erase(client, cfg, tenant):
    message_id = insert_message(cfg, tenant.agent)
    path = f"{messages_path(tenant.agent['email'])}/{message_id}"
    listing = messages_path(tenant.agent["email"])
    assert_envelope(client.simulate_post(path + "/restore", headers=tenant.auth), 409,
                    "not_in_trash")
    assert_envelope(client.simulate_delete(path, params={"permanent": "true",
                                                         "confirm": "DELETE"},
                                           headers=tenant.auth), 409, "not_in_trash")
    deleted = client.simulate_delete(path, headers=tenant.auth)
    assert deleted.json == {"deleted": True, "id": message_id}
    assert client.simulate_get(listing, headers=tenant.auth).json["items"] == []
    trash = client.simulate_get(listing, params={"deleted": "true"}, headers=tenant.auth)
    assert [m["id"] for m in trash.json["items"]] == [message_id]
    assert "deleted_at" in trash.json["items"][0]
    # Still readable by id, and gone from the legacy listing too (one store).
    assert "deleted_at" in client.simulate_get(path, headers=tenant.auth).json
    legacy = client.simulate_get(tenant.messages_path, params={"status": "all"},
                                 headers=tenant.auth)
    assert legacy.json["messages"] == []
    restored = client.simulate_post(path + "/restore", headers=tenant.auth)
    assert restored.status_code == 200 and "deleted_at" not in restored.json
    # A restore is no read: the message is as unread as it was.
    assert restored.json["read_status"] == "read"  # the GET above read it
    client.simulate_delete(path, headers=tenant.auth)
    erased = client.simulate_delete(path, params={"permanent": "true", "confirm": "DELETE"},
                                    headers=tenant.auth)
    assert erased.json == {"deleted": True, "id": message_id}
    assert_envelope(client.simulate_get(path, headers=tenant.auth), 404, "not_found")


def test_a_held_message_cannot_be_trashed(client, cfg, tenant):
    message_id = insert_message(cfg, tenant.agent)
    with single_connection(cfg) as conn:
        conn.execute("UPDATE messages SET direction = 'outbound', inbox_status = NULL, "
                     "status = 'pending_approval' WHERE id = %s", (message_id,))
    path = f"{messages_path(tenant.agent['email'])}/{message_id}"
    assert_envelope(client.simulate_delete(path, headers=tenant.auth), 409, "message_held")


def test_conversations_list_and_get(client, cfg, tenant):
    first, second = new_id("conv"), new_id("conv")
    insert_message(cfg, tenant.agent, subject="one", conversation_id=first)
    insert_message(cfg, tenant.agent, subject="two", conversation_id=second,
                   sender="bob@example.org")
    path = agent_path(tenant.agent["email"]) + "/conversations"
    page = client.simulate_get(path, params={"limit": "1"}, headers=tenant.auth)
    assert page.status_code == 200, page.text
    assert [c["id"] for c in page.json["items"]] == [second]
    assert page.json["items"][0]["latest_from"] == "bob@example.org"
    rest = client.simulate_get(path, params={"limit": "1", "cursor": page.json["next_cursor"]},
                               headers=tenant.auth)
    assert [c["id"] for c in rest.json["items"]] == [first]
    detail = client.simulate_get(f"{path}/{first}", headers=tenant.auth)
    assert detail.json["message_count"] == 1
    assert detail.json["messages"][0]["subject"] == "one"
    assert "alice@example.org" in detail.json["participants"]
    assert_envelope(client.simulate_get(f"{path}/conv_nope", headers=tenant.auth), 404,
                    "not_found")


def test_restore_does_not_read_the_message(client, cfg, tenant):
    message_id = insert_message(cfg, tenant.agent)
    path = f"{messages_path(tenant.agent['email'])}/{message_id}"
    client.simulate_delete(path, headers=tenant.auth)
    restored = client.simulate_post(path + "/restore", headers=tenant.auth)
    assert restored.json["read_status"] == "unread"


def test_api_keys_create_list_revoke(client, cfg, tenant):
    made = client.simulate_post("/v1/account/api-keys", json={"name": "ci"},
                                headers=tenant.auth)
    assert made.status_code == 201, made.text
    assert made.json["scope"] == "account" and made.json["key"].startswith("e2a_")
    scoped = client.simulate_post("/v1/account/api-keys", headers=tenant.auth, json={
        "scope": "agent", "agent_email": tenant.agent["email"]})
    assert scoped.json["agent_email"] == tenant.agent["email"]
    new_key = {"Authorization": f"Bearer {made.json['key']}"}
    assert client.simulate_get("/v1/account", headers=new_key).status_code == 200
    listed = client.simulate_get("/v1/account/api-keys", headers=tenant.auth).json["items"]
    assert [k["id"] for k in listed][:2] == [scoped.json["id"], made.json["id"]]
    assert all("key" not in k for k in listed)
    assert_envelope(client.simulate_post("/v1/account/api-keys", headers=tenant.auth,
                                         json={"scope": "agent"}), 400, "invalid_scope")
    assert_envelope(client.simulate_post("/v1/account/api-keys", headers=tenant.auth,
                                         json={"expires_at": "2020-01-01T00:00:00Z"}),
                    400, "invalid_expires_at")
    path = f"/v1/account/api-keys/{made.json['id']}"
    assert_envelope(client.simulate_delete(path, headers=tenant.auth), 422, "invalid_request")
    revoked = client.simulate_delete(path, params={"confirm": "DELETE"}, headers=tenant.auth)
    assert revoked.json == {"deleted": True, "id": made.json["id"]}
    assert_envelope(client.simulate_get("/v1/account", headers=new_key), 401, "unauthorized")
    assert_envelope(client.simulate_delete(path, params={"confirm": "DELETE"},
                                           headers=tenant.auth), 404, "not_found")
