"""/v1/webhooks and /v1/events on a real database: the current shapes over
the legacy subscriptions and event log (one store), the /v1 vocabulary
(event names, agent_emails, error codes), and a /v1 delivery signed and
shaped as the 5.x SDK's construct_event wants it, next to a legacy one."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from apisupport import agent_key, api_client, make_tenant
from servicesupport import write_config
from test_api_webhooks import dispatch_all
from v1support import assert_envelope
from webhooksupport import Receiver

from e2a.core import config, delivery, dispatch, webhooks, webhooksig
from e2a.core.db import open_pool, single_connection
from e2a.core.ids import new_id
from e2a.core.store import events as event_store

HOOKS = "/v1/webhooks"
URL = "https://hooks.example.com/e2a"


@pytest.fixture(scope="module")
def hook_cfg(cfg, tmp_path_factory) -> config.Config:
    path = write_config(cfg, tmp_path_factory.mktemp("v1-hooks") / "e2a.toml",
                        "[webhooks]\nmax_per_user = 3\nallow_loopback = true\ntimeout = 2.0\n"
                        "[dns]\ntimeout = 1.0\n")
    return config.load(path, env={})


@pytest.fixture(scope="module")
def client(hook_cfg):
    with api_client(hook_cfg) as test_client:
        yield test_client


@pytest.fixture
def tenant(cfg):
    return make_tenant(cfg)


def create(client, tenant, **body):
    result = client.simulate_post(HOOKS, headers=tenant.auth,
                                  json={"url": URL, "events": ["email.received"], **body})
    assert result.status_code == 201, result.text
    return result.json


def add_event(cfg, tenant, type_="email.received", data=None, age=None, **refs) -> str:
    event_id = new_id("evt")
    with single_connection(cfg) as conn:
        event_store.insert_event(conn, event_id, tenant.user["id"], type_,
                                 data or {"message_id": "msg_x", "agent_id": tenant.agent["id"],
                                          "recipient": tenant.agent["email"],
                                          "from": "a@example.org", "subject": "hi"},
                                 agent_id=tenant.agent["id"], **refs)
        if age:
            conn.execute("UPDATE events SET created_at = now() - %s WHERE id = %s",
                         (age, event_id))
    return event_id


# -- subscriptions --------------------------------------------------------------


def test_create_shows_the_secret_once_in_v1_words(client, tenant):
    made = create(client, tenant, events=["email.review_approved", "email.sent"],
                  filters={"agent_emails": [tenant.agent["email"]], "labels": ["vip"]},
                  description="ops")
    assert made["signing_secret"].startswith("whsec_")
    assert made["id"].startswith("wh_")
    assert made["events"] == ["email.review_approved", "email.sent"]
    assert made["filters"] == {"agent_emails": [tenant.agent["email"]], "labels": ["vip"]}
    assert (made["enabled"], made["description"]) == (True, "ops")
    got = client.simulate_get(f"{HOOKS}/{made['id']}", headers=tenant.auth)
    assert got.status_code == 200, got.text
    assert "signing_secret" not in got.json
    assert got.json == {k: v for k, v in made.items() if k != "signing_secret"}


def test_create_replays_with_the_same_key(client, tenant):
    headers = {**tenant.auth, "Idempotency-Key": secrets.token_hex(16)}
    body = {"url": URL, "events": ["email.received"]}
    first = client.simulate_post(HOOKS, headers=headers, json=body)
    again = client.simulate_post(HOOKS, headers=headers, json=body)
    assert first.status_code == again.status_code == 201
    assert again.json["id"] == first.json["id"]
    assert again.json["signing_secret"] == first.json["signing_secret"]


@pytest.mark.parametrize("body,status,code", [
    ({"url": URL, "events": ["email.pending_approval"]}, 400, "invalid_event_type"),
    ({"url": "http://hooks.example.com/x", "events": ["email.sent"]}, 400,
     "invalid_webhook_url"),
    ({"url": URL, "events": []}, 400, "invalid_request"),
    ({"url": URL, "events": ["email.sent"], "secret": "x"}, 422, "invalid_request"),
    ({"url": URL, "events": ["email.sent"], "filters": {"agent_ids": ["ag_1"]}}, 422,
     "invalid_request"),
    ({"url": URL, "events": ["email.sent"],
      "filters": {"agent_emails": ["someone@elsewhere.example"]}}, 400, "invalid_request"),
])
def test_create_refuses_in_v1_codes(client, tenant, body, status, code):
    assert_envelope(client.simulate_post(HOOKS, headers=tenant.auth, json=body), status, code)


def test_the_cap_is_webhook_limit_reached(client, tenant):
    for _ in range(3):
        create(client, tenant)
    assert_envelope(client.simulate_post(HOOKS, headers=tenant.auth,
                                         json={"url": URL, "events": ["email.sent"]}),
                    400, "webhook_limit_reached")


def test_list_pages_newest_first(client, tenant):
    made = [create(client, tenant)["id"] for _ in range(3)]
    first = client.simulate_get(HOOKS, headers=tenant.auth, params={"limit": "2"})
    assert first.status_code == 200, first.text
    assert [w["id"] for w in first.json["items"]] == made[::-1][:2]
    rest = client.simulate_get(HOOKS, headers=tenant.auth,
                               params={"limit": "2", "cursor": first.json["next_cursor"]})
    assert [w["id"] for w in rest.json["items"]] == made[:1]
    assert rest.json["next_cursor"] is None


def test_patch_delete_and_the_cool_down(cfg, client, tenant):
    made = create(client, tenant)
    path = f"{HOOKS}/{made['id']}"
    patched = client.simulate_patch(path, headers=tenant.auth,
                                    json={"events": ["email.review_rejected"],
                                          "enabled": False})
    assert patched.status_code == 200, patched.text
    assert (patched.json["events"], patched.json["enabled"]) == (["email.review_rejected"],
                                                                 False)
    with single_connection(cfg) as conn:
        conn.execute("UPDATE webhooks SET auto_disabled_at = now() WHERE id = %s",
                     (made["id"],))
    shown = client.simulate_get(path, headers=tenant.auth).json
    assert "auto_disabled_at" in shown and shown["auto_disabled_reason"]
    assert_envelope(client.simulate_patch(path, headers=tenant.auth, json={"enabled": True}),
                    409, "webhook_cooldown")
    assert_envelope(client.simulate_post(f"{path}/test", headers=tenant.auth, json={}),
                    409, "webhook_disabled")
    assert_envelope(client.simulate_delete(path, headers=tenant.auth), 422, "invalid_request")
    deleted = client.simulate_delete(path, headers=tenant.auth, params={"confirm": "DELETE"})
    assert deleted.json == {"deleted": True, "id": made["id"]}
    assert_envelope(client.simulate_get(path, headers=tenant.auth), 404, "not_found")


def test_rotate_test_and_deliveries(cfg, client, tenant):
    made = create(client, tenant)
    path = f"{HOOKS}/{made['id']}"
    rotated = client.simulate_post(f"{path}/rotate-secret", headers=tenant.auth)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json["signing_secret"].startswith("whsec_")
    assert rotated.json["signing_secret"] != made["signing_secret"]
    assert rotated.json["previous_secret_expires_at"].endswith("Z")
    tested = client.simulate_post(f"{path}/test", headers=tenant.auth,
                                  json={"type": "email.review_requested"})
    assert tested.status_code == 200, tested.text
    listed = client.simulate_get(f"{path}/deliveries", headers=tenant.auth)
    assert listed.status_code == 200, listed.text
    (one,) = listed.json["items"]
    assert one["id"] == tested.json["delivery_id"]
    assert (one["type"], one["status"], one["attempts"]) == ("email.review_requested",
                                                             "pending", 0)
    assert one["next_retry_at"].endswith("Z")
    assert client.simulate_get(f"{path}/deliveries", headers=tenant.auth,
                               params={"status": "delivered"}).json["items"] == []


def test_account_only_and_tenant_walls(cfg, client, tenant):
    made = create(client, tenant)
    key = agent_key(cfg, tenant, tenant.agent)
    assert_envelope(client.simulate_get(HOOKS, headers={"Authorization": f"Bearer {key}"}),
                    403, "forbidden")
    other = make_tenant(cfg)
    assert_envelope(client.simulate_get(f"{HOOKS}/{made['id']}", headers=other.auth),
                    404, "not_found")
    assert client.simulate_get(HOOKS, headers=other.auth).json["items"] == []


# -- events ---------------------------------------------------------------------


def test_events_list_in_v1_words_filters_and_pages(cfg, client, tenant):
    received = [add_event(cfg, tenant, message_id=f"msg_{i}", conversation_id="conv_a")
                for i in range(3)]
    held = add_event(cfg, tenant, "email.pending_approval",
                     {"message_id": "msg_h", "agent_id": tenant.agent["id"], "to": ["x@y.z"],
                      "subject": "s", "type": "send"}, message_id="msg_h")
    add_event(cfg, tenant, age=timedelta(days=30, hours=1))  # past retention

    def ids(**params):
        result = client.simulate_get("/v1/events", headers=tenant.auth, params=params)
        assert result.status_code == 200, result.text
        return [e["id"] for e in result.json["items"]], result.json["next_cursor"]

    assert ids()[0] == [held, *reversed(received)]
    assert ids(type="email.review_requested")[0] == [held]
    assert ids(message_id="msg_1")[0] == [received[1]]
    assert ids(conversation_id="conv_a")[0] == list(reversed(received))
    assert ids(agent_email=tenant.agent["email"])[0] == [held, *reversed(received)]
    assert ids(agent_email="nobody@elsewhere.example")[0] == []
    first, cursor = ids(limit="2")
    rest, last = ids(limit="2", cursor=cursor)
    assert first + rest == [held, *reversed(received)] and last is None
    assert_envelope(client.simulate_get("/v1/events", headers=tenant.auth,
                                        params={"cursor": cursor, "type": "email.sent"}),
                    400, "invalid_cursor")
    assert_envelope(client.simulate_get("/v1/events", headers=tenant.auth,
                                        params={"type": "email.pending_approval"}),
                    400, "invalid_event_type")
    one = client.simulate_get(f"/v1/events/{held}", headers=tenant.auth).json
    assert (one["type"], one["schema_version"], one["status"]) == (
        "email.review_requested", "1", "pending")
    assert one["agent_email"] == one["data"]["agent_email"] == tenant.agent["email"]
    assert "agent_id" not in one["data"]
    assert one["delivery_status"] == {"matched_webhooks": 0, "delivered": 0, "pending": 0,
                                      "failed": 0}


def test_event_status_410_and_redeliver(cfg, client, tenant):
    first, second = create(client, tenant), create(client, tenant)
    event_id = add_event(cfg, tenant)
    lonely = add_event(cfg, tenant, "email.sent", {"message_id": "m"})
    dispatch_all(cfg)
    assert client.simulate_get(f"/v1/events/{lonely}",
                               headers=tenant.auth).json["status"] == "no_match"
    with single_connection(cfg) as conn:
        conn.execute("UPDATE deliveries SET status = 'delivered' WHERE event_id = %s",
                     (event_id,))
    got = client.simulate_get(f"/v1/events/{event_id}", headers=tenant.auth).json
    assert got["status"] == "processed"
    path = f"/v1/events/{event_id}/redeliver"
    fanned = client.simulate_post(path, headers=tenant.auth, json={})
    assert fanned.status_code == 202, fanned.text
    assert fanned.json["status"] == "scheduled"
    assert {d["webhook_id"] for d in fanned.json["deliveries"]} == {first["id"], second["id"]}
    assert {d["status"] for d in fanned.json["deliveries"]} == {"pending"}
    with single_connection(cfg) as conn:
        conn.execute("UPDATE deliveries SET status = 'delivered' WHERE event_id = %s",
                     (event_id,))
    one = client.simulate_post(path, headers=tenant.auth, json={"webhook_id": first["id"]})
    assert one.status_code == 202, one.text
    assert (one.json["status"], one.json["webhook_id"]) == ("pending", first["id"])
    assert one.json["delivery_id"].startswith("whd_")
    unmatched = create(client, tenant, events=["email.sent"])
    assert_envelope(client.simulate_post(path, headers=tenant.auth,
                                         json={"webhook_id": unmatched["id"]}),
                    409, "conflict")
    old = add_event(cfg, tenant, age=timedelta(days=30, minutes=1))
    assert_envelope(client.simulate_get(f"/v1/events/{old}", headers=tenant.auth), 410, "gone")
    assert_envelope(client.simulate_get("/v1/events/evt_nothing", headers=tenant.auth),
                    404, "not_found")


# -- one event, two generations of subscriber --------------------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def test_one_event_reaches_a_v1_and_a_legacy_subscriber_each_in_its_words(
        hook_cfg, client, tenant, receiver):
    v1 = client.simulate_post(HOOKS, headers=tenant.auth, json={
        "url": receiver.url("/v1"), "events": ["email.review_approved"]})
    assert v1.status_code == 201, v1.text
    legacy = client.simulate_post("/api/v1/webhooks", headers=tenant.auth, json={
        "url": receiver.url("/legacy"), "events": ["email.approved"]})
    assert legacy.status_code == 201, legacy.text
    event_id = add_event(hook_cfg, tenant, "email.approved", {
        "message_id": "msg_ok", "agent_id": tenant.agent["id"], "from": tenant.agent["email"],
        "to": ["x@example.org"], "subject": "ok", "type": "reply", "status": "sent",
        "edited": True})
    pool = open_pool(hook_cfg, name="test-v1-delivery", wait=True)
    deliverer = delivery.Deliverer(hook_cfg)
    try:
        # The deliverer takes every due delivery of the database, other tests'
        # too (some to names that take a DNS timeout): time for those first.
        deadline = time.monotonic() + 60
        with pool.connection() as conn:
            while time.monotonic() < deadline and len(receiver.requests) < 2:
                dispatch.dispatch(conn)
                deliverer.run(conn)
                time.sleep(0.05)
            deliverer.run(conn)
    finally:
        deliverer._executor.shutdown(wait=True)
        pool.close()
    got = {r.path: r for r in receiver.wait_for(2)}
    new, old = got["/v1"], got["/legacy"]
    body = json.loads(new.body)
    assert (body["type"], body["id"], body["schema_version"]) == (
        "email.review_approved", event_id, "1")
    assert body["data"]["agent_email"] == tenant.agent["email"]
    assert (body["data"]["edited"], body["data"]["message_type"]) == (True, "reply")
    assert new.headers["X-E2A-Schema-Version"] == "1"
    assert new.headers["User-Agent"] == "e2a-webhooks/1"
    assert webhooksig.verify(new.headers["X-E2A-Signature"], v1.json["signing_secret"],
                             new.body, int(time.time()))
    assert json.loads(old.body)["type"] == "email.approved"
    assert json.loads(old.body)["id"] == event_id
    with single_connection(hook_cfg) as conn:
        assert webhooks.event(conn, tenant.user["id"], event_id)["id"] == event_id
