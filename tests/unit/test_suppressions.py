"""Suppressions on a real database: the /v1 account and agent routes (SDK
5.8.1 shapes), the refusal of a send naming a suppressed recipient on both
API generations (422 recipient_suppressed, nothing submitted), an approval
re-checked (422, the hold stays pending), and a hard bounce suppressing its
recipient for the account with its domain.suppression_added event."""

from __future__ import annotations

import secrets
from urllib.parse import quote

import pytest
from apisupport import agent_key, make_tenant
from hitlsupport import FRIEND, message_row, released, reset
from submitsupport import sending_client
from v1support import agent_path, assert_envelope, messages_path

from e2a.core.db import single_connection
from e2a.core.outbound import suppressions
from e2a.core.store import suppressions as store

ACCOUNT = "/v1/account/suppressions"


@pytest.fixture(autouse=True)
def clean(postfix):
    postfix.reset()


@pytest.fixture(scope="module")
def client(cfg, postfix, tmp_path_factory):
    with sending_client(cfg, postfix, tmp_path_factory.mktemp("supp")) as test_client:
        yield test_client


@pytest.fixture
def tenant(cfg):
    return make_tenant(cfg)


def bounce(cfg, tenant, address: str, message_id: str | None = None) -> None:
    with single_connection(cfg) as conn:
        suppressions.add_for_account(conn, tenant.user["id"], address, source="bounce",
                                     reason="550 5.1.1 no such user", message_id=message_id)


def events_of(cfg, user_id: str, type_: str) -> list[dict]:
    with single_connection(cfg) as conn:
        return [r["data"] for r in conn.execute(
            "SELECT data FROM events WHERE user_id = %s AND type = %s ORDER BY created_at",
            (user_id, type_)).fetchall()]


def test_account_list_and_delete(cfg, client, tenant):
    bounce(cfg, tenant, "Gone@Example.ORG", "msg_" + "1" * 32)
    bounce(cfg, tenant, "other@example.org")
    result = client.simulate_get(ACCOUNT, headers=tenant.auth, params={"limit": "1"})
    assert result.status_code == 200, result.text
    first = result.json["items"]
    assert len(first) == 1 and result.json["next_cursor"]
    rest = client.simulate_get(ACCOUNT, headers=tenant.auth,
                               params={"limit": "1", "cursor": result.json["next_cursor"]})
    items = {i["address"]: i for i in first + rest.json["items"]}
    assert set(items) == {"gone@example.org", "other@example.org"}
    assert items["gone@example.org"]["source"] == "bounce"
    assert items["gone@example.org"]["source_message_id"] == "msg_" + "1" * 32
    assert items["gone@example.org"]["reason"] == "550 5.1.1 no such user"
    assert [e["address"] for e in events_of(cfg, tenant.user["id"],
                                            "domain.suppression_added")] == [
        "gone@example.org", "other@example.org"]
    path = f"{ACCOUNT}/{quote('GONE@example.org', safe='')}"
    assert_envelope(client.simulate_delete(path, headers=tenant.auth), 422, "invalid_request")
    deleted = client.simulate_delete(path, headers=tenant.auth, params={"confirm": "DELETE"})
    assert (deleted.status_code, deleted.json) == (
        200, {"deleted": True, "address": "gone@example.org"})
    assert_envelope(client.simulate_delete(path, headers=tenant.auth,
                                           params={"confirm": "DELETE"}), 404, "not_found")


def test_agent_create_list_delete(cfg, client, tenant):
    path = agent_path(tenant.agent["email"]) + "/suppressions"
    created = client.simulate_post(path, headers=tenant.auth,
                                   json={"address": "Nope@Example.org", "reason": "asked"})
    assert created.status_code == 200, created.text
    assert created.json["address"] == "nope@example.org"
    assert created.json["agent_email"] == tenant.agent["email"]
    assert (created.json["source"], created.json["reason"]) == ("manual", "asked")
    again = client.simulate_post(path, headers=tenant.auth, json={"address": "nope@example.org"})
    assert (again.status_code, again.json) == (200, created.json)
    assert len(events_of(cfg, tenant.user["id"], "agent.suppression_added")) == 1
    listed = client.simulate_get(path, headers=tenant.auth)
    assert [i["address"] for i in listed.json["items"]] == ["nope@example.org"]
    assert_envelope(client.simulate_post(path, headers=tenant.auth, json={"address": "x"}),
                    400, "invalid_request")
    key = agent_key(cfg, tenant, tenant.agent)
    assert_envelope(client.simulate_get(path, headers={"Authorization": f"Bearer {key}"}),
                    403, "forbidden")
    deleted = client.simulate_delete(f"{path}/nope%40example.org", headers=tenant.auth,
                                     params={"confirm": "DELETE"})
    assert (deleted.status_code, deleted.json) == (
        200, {"deleted": True, "address": "nope@example.org"})
    assert client.simulate_get(path, headers=tenant.auth).json["items"] == []


@pytest.mark.parametrize("scope", ["account", "agent"])
def test_send_to_a_suppressed_recipient_is_refused_on_both_generations(cfg, client, tenant,
                                                                       postfix, scope):
    address = f"blocked-{secrets.token_hex(3)}@example.org"
    if scope == "account":
        bounce(cfg, tenant, address)
    else:
        with single_connection(cfg) as conn:
            store.add_agent(conn, tenant.user["id"], tenant.agent["id"], address,
                            source="unsubscribe")
    v1 = client.simulate_post(messages_path(tenant.agent["email"]), headers=tenant.auth,
                              json={"to": ["fine@example.org"], "cc": [address.upper()],
                                    "subject": "s", "text": "x"})
    error = assert_envelope(v1, 422, "recipient_suppressed")
    assert address in error["message"]
    legacy = client.simulate_post("/api/v1/send", headers=tenant.auth, json={
        "from": tenant.agent["email"], "to": address, "subject": "s", "body": "x"})
    assert legacy.status_code == 422, legacy.text
    assert legacy.json["error"]["code"] == "recipient_suppressed"
    assert postfix.received == []
    ok = client.simulate_post(messages_path(tenant.agent["email"]), headers=tenant.auth,
                              json={"to": ["fine@example.org"], "subject": "s", "text": "x"})
    assert ok.status_code == 202, ok.text


def test_another_agent_of_the_account_is_not_bound_by_an_agent_suppression(cfg, client,
                                                                          tenant):
    from apisupport import add_agent
    other = add_agent(cfg, tenant)
    with single_connection(cfg) as conn:
        store.add_agent(conn, tenant.user["id"], tenant.agent["id"], "only@example.org",
                        source="manual")
    refused = client.simulate_post(messages_path(tenant.agent["email"]), headers=tenant.auth,
                                   json={"to": ["only@example.org"], "subject": "s",
                                         "text": "x"})
    assert_envelope(refused, 422, "recipient_suppressed")
    allowed = client.simulate_post(messages_path(other["email"]), headers=tenant.auth,
                                   json={"to": ["only@example.org"], "subject": "s",
                                         "text": "x"})
    assert allowed.status_code == 202, allowed.text


def test_approval_rechecks_and_keeps_the_hold(hitl_cfg, hitl_client, hitl_owner, postfix,
                                              hitl_reinjection):
    reset(postfix, hitl_reinjection)
    held = hitl_client.simulate_post(messages_path(hitl_owner.agent["email"]),
                                     headers=hitl_owner.auth,
                                     json={"to": [FRIEND], "subject": "s", "text": "x"})
    assert held.json["status"] == "pending_review", held.text
    message_id = held.json["message_id"]
    bounce(hitl_cfg, hitl_owner, FRIEND)
    result = hitl_client.simulate_post(f"/v1/reviews/{message_id}/approve",
                                       headers=hitl_owner.auth, json={})
    assert_envelope(result, 422, "recipient_suppressed")
    legacy = hitl_client.simulate_post(f"/api/v1/messages/{message_id}/approve",
                                       headers=hitl_owner.auth, json={})
    assert legacy.status_code == 422, legacy.text
    assert message_row(hitl_cfg, message_id)["status"] == "pending_approval"
    assert released(hitl_reinjection) == []
    edited = hitl_client.simulate_post(f"/v1/reviews/{message_id}/approve",
                                       headers=hitl_owner.auth,
                                       json={"to": ["someone-else@example.org"]})
    assert edited.status_code == 202, edited.text
    assert [r.rcpt_tos for r in released(hitl_reinjection)] == [["someone-else@example.org"]]


def test_a_hard_bounce_suppresses_its_recipient_for_the_account(cfg, tenant):
    from test_bounces import golden, sent_message

    from e2a.core.db import open_pool
    from e2a.core.inbound import bounces
    from e2a.core.mta import verp

    message_id = sent_message(cfg, tenant.agent)
    rcpt = verp.return_path(message_id, tenant.agent["domain"], verp.key(cfg))
    pool = open_pool(cfg, name="test-bounce", wait=True)
    try:
        for _ in range(2):  # a DSN delivered twice suppresses once
            assert bounces.consume(pool, golden("failed"), [rcpt], verp.key(cfg)) == [rcpt]
    finally:
        pool.close()
    with single_connection(cfg) as conn:
        [row] = store.list_account(conn, tenant.user["id"], limit=10)
        blocked = store.suppressed_among(conn, tenant.user["id"], tenant.agent["id"],
                                         ["bounce-me@elsewhere.test"])
    assert (row["address"], row["source"], row["source_message_id"]) == (
        "bounce-me@elsewhere.test", "bounce", message_id)
    assert "5.1.1" in row["reason"]
    assert [b["scope"] for b in blocked] == ["account"]
    [event] = events_of(cfg, tenant.user["id"], "domain.suppression_added")
    assert event == {"address": "bounce-me@elsewhere.test", "source": "bounce",
                     "reason": row["reason"], "message_id": message_id}
    # And once toward the agent's bounce rate (core/outbound/brakes.py).
    from e2a.core.store import brakes as brake_store
    with single_connection(cfg) as conn:
        counted = brake_store.count_send(conn, tenant.agent["id"], conversation_id="",
                                         recipients=[], in_reply_to="", auto_label="x")
    assert counted["bounces"] == 1


def test_a_delay_warning_suppresses_nothing(cfg, tenant):
    from test_bounces import golden, sent_message

    from e2a.core.db import open_pool
    from e2a.core.inbound import bounces
    from e2a.core.mta import verp

    message_id = sent_message(cfg, tenant.agent)
    rcpt = verp.return_path(message_id, tenant.agent["domain"], verp.key(cfg))
    pool = open_pool(cfg, name="test-bounce", wait=True)
    try:
        bounces.consume(pool, golden("delayed"), [rcpt], verp.key(cfg))
    finally:
        pool.close()
    with single_connection(cfg) as conn:
        assert store.list_account(conn, tenant.user["id"], limit=10) == []


def test_erasing_the_account_erases_and_counts_its_suppressions(cfg, client, tenant):
    bounce(cfg, tenant, "one@example.org")
    path = agent_path(tenant.agent["email"]) + "/suppressions"
    for address in ("two@example.org", "three@example.org"):
        assert client.simulate_post(path, headers=tenant.auth,
                                    json={"address": address}).status_code == 200
    receipt = client.simulate_delete("/v1/account", headers=tenant.auth,
                                     params={"confirm": "DELETE"})
    assert receipt.status_code == 200, receipt.text
    assert receipt.json["agent_suppressions_deleted"] == 2
    assert receipt.json["agent_unsubscribe_tokens_deleted"] == 0
    with single_connection(cfg) as conn:
        assert store.list_account(conn, tenant.user["id"], limit=5) == []


def test_the_export_holds_the_accounts_and_the_agents_suppressions(cfg, client, tenant):
    bounce(cfg, tenant, "one@example.org")
    with single_connection(cfg) as conn:
        store.add_agent(conn, tenant.user["id"], tenant.agent["id"], "two@example.org",
                        source="unsubscribe", reason="clicked")
    other = make_tenant(cfg)
    bounce(cfg, other, "not-yours@example.org")
    body = client.simulate_get("/api/v1/users/me/export", headers=tenant.auth).json
    assert [(s["address"], s.get("agent_email"), s["source"]) for s in body["suppressions"]
            ] == [("one@example.org", None, "bounce"),
                  ("two@example.org", tenant.agent["email"], "unsubscribe")]
