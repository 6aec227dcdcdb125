"""GET /api/v1/agents/{email}/messages on a real database: shape, paging, filters,
signed tokens, tenant isolation."""

from __future__ import annotations

import re

import pytest
from apisupport import add_agent, agent_key, api_client, insert_message, make_tenant, messages_path

from e2a.core.crypto import tokens
from e2a.core.db import single_connection

SUMMARY_FIELDS = {"cc", "conversation_id", "created_at", "direction", "from", "hitl_status",
                  "labels", "message_id", "recipient", "reply_to", "size_bytes", "status",
                  "subject", "to", "webhook_error", "webhook_status"}
RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
COUNT = 7


@pytest.fixture(scope="module")
def client(cfg):
    with api_client(cfg) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def mailbox(cfg):
    """A tenant whose agent holds COUNT messages; three share one created_at so
    the id breaks the tie, and two have been read."""
    tenant = make_tenant(cfg)
    ids = [insert_message(cfg, tenant.agent, subject=f"m{i}") for i in range(COUNT)]
    with single_connection(cfg) as conn:
        conn.execute("UPDATE messages SET created_at = '2026-06-01T12:00:00.123456Z' "
                     "WHERE id = ANY(%s)", (ids[2:5],))
        conn.execute("UPDATE messages SET inbox_status = 'read' WHERE id = ANY(%s)",
                     (ids[:2],))
        order = [r["id"] for r in conn.execute(
            "SELECT id FROM messages WHERE agent_id = %s ORDER BY created_at, id",
            (tenant.agent["id"],)).fetchall()]
    return tenant, ids, order


def get(client, tenant, **params):
    return client.simulate_get(tenant.messages_path, headers=tenant.auth, params=params)


def walk(client, tenant, **params):
    """Every page of a listing: the ids in order and the number of requests."""
    seen, token, pages = [], None, 0
    while True:
        result = get(client, tenant, **params, **({"token": token} if token else {}))
        assert result.status_code == 200, result.text
        pages += 1
        seen += [m["message_id"] for m in result.json["messages"]]
        token = result.json["next_token"]
        if not token:
            return seen, pages
        assert pages < 50


def test_summary_shape(client, mailbox):
    tenant, ids, _ = mailbox
    result = get(client, tenant)
    assert result.status_code == 200
    assert set(result.json) == {"messages", "next_token"}
    assert result.json["next_token"] == ""
    messages = result.json["messages"]
    assert len(messages) == COUNT
    for summary in messages:
        # Empty enumerations are left out (the 2.x SDK refuses "").
        assert set(summary) == SUMMARY_FIELDS - {"hitl_status", "webhook_status"}
        assert None not in summary.values()
        assert RFC3339_Z.match(summary["created_at"])
    newest = next(m for m in messages if m["message_id"] == ids[-1])
    assert newest == {
        "message_id": ids[-1], "conversation_id": "", "created_at": newest["created_at"],
        "direction": "inbound", "from": "alice@example.org",
        "to": [tenant.agent["email"]], "cc": [], "reply_to": [],
        "recipient": tenant.agent["email"], "subject": f"m{COUNT - 1}", "labels": [],
        "size_bytes": newest["size_bytes"], "status": "unread", "webhook_error": ""}
    assert newest["size_bytes"] > 0
    tied = [m for m in messages if m["message_id"] in ids[2:5]]
    assert {m["created_at"] for m in tied} == {"2026-06-01T12:00:00Z"}


@pytest.mark.parametrize(("sort", "page_size"), [("desc", 2), ("asc", 2), ("desc", 3),
                                                  ("asc", 1), ("desc", COUNT)])
def test_paging_has_no_gaps_or_duplicates(client, mailbox, sort, page_size):
    tenant, _, order = mailbox
    seen, pages = walk(client, tenant, sort=sort, page_size=page_size)
    assert seen == (order if sort == "asc" else order[::-1])
    assert pages == -(-COUNT // page_size)


def test_default_sort_is_newest_first(client, mailbox):
    tenant, _, order = mailbox
    seen, _ = walk(client, tenant, page_size=4)
    assert seen == order[::-1]


def test_page_size_may_change_between_pages(client, mailbox):
    tenant, _, order = mailbox
    first = get(client, tenant, page_size=2, sort="asc").json
    rest = get(client, tenant, page_size=100, sort="asc", token=first["next_token"]).json
    ids = [m["message_id"] for m in first["messages"] + rest["messages"]]
    assert ids == order
    assert rest["next_token"] == ""


def test_new_mail_during_paging_is_neither_skipped_nor_repeated(cfg, client):
    tenant = make_tenant(cfg)
    first_ids = [insert_message(cfg, tenant.agent) for _ in range(3)]
    page = get(client, tenant, sort="asc", page_size=2).json
    late = insert_message(cfg, tenant.agent)
    rest = get(client, tenant, sort="asc", page_size=2, token=page["next_token"]).json
    seen = [m["message_id"] for m in page["messages"] + rest["messages"]]
    assert seen == [*first_ids, late]


def test_status_filter(client, mailbox):
    tenant, ids, _ = mailbox
    read, _ = walk(client, tenant, status="read", page_size=1)
    unread, _ = walk(client, tenant, status="unread", page_size=2)
    assert sorted(read) == sorted(ids[:2])
    assert sorted(unread) == sorted(ids[2:])


def test_direction_filter(client, mailbox):
    tenant, ids, _ = mailbox
    assert get(client, tenant, direction="outbound").json == {"messages": [],
                                                               "next_token": ""}
    everything, _ = walk(client, tenant, direction="all", page_size=3)
    assert sorted(everything) == sorted(ids)


@pytest.mark.parametrize("params", [
    {"direction": "sideways"}, {"status": "archived"}, {"sort": "random"},
    {"page_size": "0"}, {"page_size": "-1"}, {"page_size": "ten"},
])
def test_bad_query_is_400(client, mailbox, params):
    tenant, _, _ = mailbox
    result = get(client, tenant, **params)
    assert result.status_code == 400
    assert result.json["error"]["code"] == "invalid_request"
    assert result.json["error"]["details"]["param"] == next(iter(params))


def test_page_size_above_limit_is_capped(cfg, client):
    tenant = make_tenant(cfg)
    for _ in range(101):
        insert_message(cfg, tenant.agent)
    result = get(client, tenant, page_size=1000)
    assert result.status_code == 200
    assert len(result.json["messages"]) == 100
    assert result.json["next_token"]


def _first_token(client, tenant, **params):
    token = get(client, tenant, page_size=2, **params).json["next_token"]
    assert token
    return token


def test_tampered_token_is_400(client, mailbox):
    tenant, _, _ = mailbox
    token = _first_token(client, tenant)
    payload, mac = token.split(".")
    flipped_mac = mac[:-2] + ("AA" if mac[-2:] != "AA" else "BA")
    forged_payload = tokens.b64url(
        tokens.b64url_decode(payload).replace(b'"desc"', b'"asc"'))
    for bad in (f"{payload}.{flipped_mac}", f"{forged_payload}.{mac}", "garbage", token + "x"):
        result = get(client, tenant, page_size=2, token=bad)
        assert result.status_code == 400, bad
        assert result.json["error"]["details"] == {"param": "token"}


def test_token_signed_with_another_secret_is_400(cfg, client, mailbox):
    tenant, _, _ = mailbox
    token = _first_token(client, tenant)
    data = tokens.verify_json(cfg.secrets.hmac_secret, "cursor", token)
    foreign = tokens.sign_json("another-deployment-secret-0123456789", "cursor", data)
    assert get(client, tenant, page_size=2, token=foreign).status_code == 400


@pytest.mark.parametrize(("issued", "used"), [
    ({}, {"status": "unread"}),
    ({}, {"sort": "asc"}),
    ({"direction": "all"}, {}),
    ({"status": "unread", "sort": "asc"}, {"status": "unread"}),
])
def test_token_used_with_other_filters_is_400(client, mailbox, issued, used):
    tenant, _, _ = mailbox
    token = _first_token(client, tenant, **issued)
    result = get(client, tenant, page_size=2, token=token, **used)
    assert result.status_code == 400
    assert "filters" in result.json["error"]["message"]


def test_token_of_another_agent_is_400(cfg, client, mailbox):
    tenant, _, _ = mailbox
    other = add_agent(cfg, tenant)
    token = _first_token(client, tenant)
    result = client.simulate_get(messages_path(other["email"]), headers=tenant.auth,
                                 params={"page_size": 2, "token": token})
    assert result.status_code == 400


def test_literal_at_sign_in_path_works_too(client, mailbox):
    tenant, _, _ = mailbox
    path = "/api/v1/agents/" + tenant.agent["email"] + "/messages"
    result = client.simulate_get(path, headers=tenant.auth)
    assert result.status_code == 200
    assert len(result.json["messages"]) == COUNT


def test_another_users_agent_is_404_like_a_missing_one(cfg, client, mailbox):
    tenant, _, _ = mailbox
    stranger = make_tenant(cfg)
    theirs = client.simulate_get(tenant.messages_path, headers=stranger.auth)
    missing = client.simulate_get(messages_path("nobody@agents.test.example"),
                                  headers=stranger.auth)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json["error"]["code"] == missing.json["error"]["code"] == "not_found"
    assert "messages" not in theirs.json


def test_agent_scoped_key_sees_only_its_agent(cfg, client, mailbox):
    tenant, _, _ = mailbox
    other = add_agent(cfg, tenant)
    insert_message(cfg, other, subject="for the other agent")
    scoped = {"Authorization": f"Bearer {agent_key(cfg, tenant, other)}"}
    own = client.simulate_get(messages_path(other["email"]), headers=scoped)
    assert own.status_code == 200
    assert [m["subject"] for m in own.json["messages"]] == ["for the other agent"]
    foreign = client.simulate_get(tenant.messages_path, headers=scoped)
    assert foreign.status_code == 404
    assert foreign.json["error"]["code"] == "not_found"
    # The account-wide key still reaches both.
    assert client.simulate_get(messages_path(other["email"]),
                               headers=tenant.auth).status_code == 200
