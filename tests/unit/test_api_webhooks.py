"""/api/v1/webhooks and /api/v1/events on a real database: shapes, rules,
tenant walls, the event log's retention, replays."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from apisupport import agent_key, api_client, make_tenant
from servicesupport import write_config

from e2a.core import config
from e2a.core.db import single_connection
from e2a.core.ids import new_id
from e2a.core.store import events as event_store
from e2a.core.webhooks import dispatch

HOOKS = "/api/v1/webhooks"
WEBHOOK_FIELDS = {"id", "url", "description", "events", "filters", "enabled",
                  "auto_disabled_at", "created_at", "last_delivered_at"}
EVENT_FIELDS = {"id", "type", "schema_version", "created_at", "agent_id", "conversation_id",
                "message_id", "status", "data", "delivery_status"}
SECRET = re.compile(r"^whsec_[0-9a-f]{64}$")
URL = "https://hooks.example.com/e2a"


@pytest.fixture(scope="module")
def small_cfg(cfg, tmp_path_factory) -> config.Config:
    path = write_config(cfg, tmp_path_factory.mktemp("api-hooks") / "e2a.toml",
                        "[webhooks]\nmax_per_user = 3\n")
    return config.load(path, env={})


@pytest.fixture(scope="module")
def client(small_cfg):
    with api_client(small_cfg) as test_client:
        yield test_client


@pytest.fixture
def tenant(cfg):
    return make_tenant(cfg)


def create(client, tenant, **body):
    result = client.simulate_post(HOOKS, headers=tenant.auth,
                                  json={"url": URL, "events": ["email.received"], **body})
    assert result.status_code == 201, result.text
    return result.json


def add_event(cfg, tenant, type_="email.received", age: timedelta | None = None,
              **refs) -> str:
    event_id = new_id("evt")
    with single_connection(cfg) as conn:
        event_store.insert_event(conn, event_id, tenant.user["id"], type_, {"x": 1},
                                 agent_id=tenant.agent["id"], **refs)
        if age:
            conn.execute("UPDATE events SET created_at = now() - %s WHERE id = %s",
                         (age, event_id))
    return event_id


def dispatch_all(cfg) -> None:
    with single_connection(cfg) as conn:
        while dispatch.dispatch(conn):
            pass


def assert_error(result, status, code):
    assert result.status_code == status, result.text
    assert result.json["error"]["code"] == code


# -- subscriptions --------------------------------------------------------------


def test_create_shows_the_secret_once(client, tenant):
    made = create(client, tenant, description="main", filters={"labels": ["vip"]})
    assert set(made) == WEBHOOK_FIELDS | {"signing_secret"}
    assert SECRET.match(made["signing_secret"])
    assert made["filters"] == {"agent_ids": [], "conversation_ids": [], "labels": ["vip"]}
    assert (made["enabled"], made["auto_disabled_at"], made["last_delivered_at"]) == \
        (True, "", "")
    got = client.simulate_get(f"{HOOKS}/{made['id']}", headers=tenant.auth).json
    assert set(got) == WEBHOOK_FIELDS
    listed = client.simulate_get(HOOKS, headers=tenant.auth).json["webhooks"]
    assert [w["id"] for w in listed] == [made["id"]]
    assert "signing_secret" not in listed[0]


@pytest.mark.parametrize(("body", "fragment"), [
    ({"url": "http://hooks.example.com/x"}, "https"),
    ({"url": "https://10.0.0.1/x"}, "IP address"),
    ({"url": "https://localhost/x"}, "localhost"),
    ({"url": None}, "url"),
    ({"events": []}, "events"),
    ({"events": ["email.exploded"]}, "unknown event type"),
    ({"filters": ["x"]}, "filters must be an object"),
    ({"filters": {"agent_ids": "ag_1"}}, "agent_ids"),
    ({"filters": {"labels": ["Not Valid"]}}, "label"),
    ({"description": "x" * 501}, "description"),
])
def test_create_refuses_bad_input(client, tenant, body, fragment):
    result = client.simulate_post(HOOKS, headers=tenant.auth,
                                  json={"url": URL, "events": ["email.sent"], **body})
    assert_error(result, 400, "invalid_request")
    assert fragment in result.json["error"]["message"]


def test_the_per_user_cap(client, tenant):
    for _ in range(3):
        create(client, tenant)
    result = client.simulate_post(HOOKS, headers=tenant.auth,
                                  json={"url": URL, "events": ["email.sent"]})
    assert_error(result, 400, "limit_reached")


def test_patch_replaces_what_it_names(client, tenant):
    made = create(client, tenant, filters={"agent_ids": ["ag_1"], "labels": ["a"]})
    result = client.simulate_patch(f"{HOOKS}/{made['id']}", headers=tenant.auth, json={
        "events": ["email.sent", "email.sent", "email.bounced"],
        "filters": {"labels": ["b"]}, "enabled": False, "unknown": 1})
    assert result.status_code == 200, result.text
    assert result.json["events"] == ["email.sent", "email.bounced"]
    assert result.json["filters"] == {"agent_ids": [], "conversation_ids": [], "labels": ["b"]}
    assert result.json["enabled"] is False
    assert result.json["url"] == URL and "signing_secret" not in result.json
    assert_error(client.simulate_patch(f"{HOOKS}/{made['id']}", headers=tenant.auth,
                                       json={"enabled": "yes"}), 400, "invalid_request")


def test_re_enable_is_refused_during_the_cool_down(cfg, client, tenant):
    made = create(client, tenant)
    with single_connection(cfg) as conn:
        conn.execute("UPDATE webhooks SET enabled = false, auto_disabled_at = now() "
                     "WHERE id = %s", (made["id"],))
    path = f"{HOOKS}/{made['id']}"
    got = client.simulate_get(path, headers=tenant.auth).json
    assert got["enabled"] is False and got["auto_disabled_at"]
    assert_error(client.simulate_patch(path, headers=tenant.auth, json={"enabled": True}),
                 409, "conflict")
    with single_connection(cfg) as conn:
        conn.execute("UPDATE webhooks SET auto_disabled_at = now() - interval '5 minutes' "
                     "WHERE id = %s", (made["id"],))
    result = client.simulate_patch(path, headers=tenant.auth, json={"enabled": True})
    assert result.status_code == 200 and result.json["enabled"] is True
    assert result.json["auto_disabled_at"] == ""


def test_rotate_answers_the_new_secret_and_the_grace_end(client, tenant):
    made = create(client, tenant)
    result = client.simulate_post(f"{HOOKS}/{made['id']}/rotate-secret", headers=tenant.auth)
    assert result.status_code == 200, result.text
    assert set(result.json) == {"signing_secret", "previous_secret_expires_at"}
    assert SECRET.match(result.json["signing_secret"])
    assert result.json["signing_secret"] != made["signing_secret"]
    ends = datetime.fromisoformat(result.json["previous_secret_expires_at"])
    assert abs(ends - (datetime.now(UTC) + timedelta(hours=24))) < timedelta(minutes=1)


def test_test_event_and_the_deliveries_list(client, tenant):
    made = create(client, tenant)
    path = f"{HOOKS}/{made['id']}"
    result = client.simulate_post(f"{path}/test", headers=tenant.auth,
                                  json={"event": "email.sent", "data": {"a": 1}})
    assert result.status_code == 200, result.text
    delivery_id = result.json["delivery_id"]
    assert delivery_id.startswith("whd_")
    listed = client.simulate_get(f"{path}/deliveries", headers=tenant.auth).json["deliveries"]
    assert [d["id"] for d in listed] == [delivery_id]
    assert set(listed[0]) == {"id", "event_id", "event_type", "status", "attempts",
                              "last_error", "last_status_code", "last_attempt_at",
                              "next_retry_at", "created_at"}
    assert (listed[0]["event_type"], listed[0]["status"], listed[0]["attempts"]) == \
        ("email.sent", "pending", 0)
    assert listed[0]["next_retry_at"]
    assert client.simulate_get(f"{path}/deliveries", headers=tenant.auth,
                               params={"status": "failed"}).json["deliveries"] == []
    assert_error(client.simulate_get(f"{path}/deliveries", headers=tenant.auth,
                                     params={"status": "lost"}), 400, "invalid_request")
    assert_error(client.simulate_get(f"{path}/deliveries", headers=tenant.auth,
                                     params={"limit": "0"}), 400, "invalid_request")
    assert_error(client.simulate_post(f"{path}/test", headers=tenant.auth,
                                      json={"event": "email.nope"}), 400, "invalid_request")
    # The synthetic event is not part of the event log.
    events = client.simulate_get("/api/v1/events", headers=tenant.auth).json["events"]
    assert events == []
    client.simulate_patch(path, headers=tenant.auth, json={"enabled": False})
    assert_error(client.simulate_post(f"{path}/test", headers=tenant.auth), 409, "conflict")


def test_delete_takes_the_deliveries(cfg, client, tenant):
    made = create(client, tenant)
    path = f"{HOOKS}/{made['id']}"
    client.simulate_post(f"{path}/test", headers=tenant.auth)
    assert client.simulate_delete(path, headers=tenant.auth).status_code == 204
    assert_error(client.simulate_get(path, headers=tenant.auth), 404, "not_found")
    assert_error(client.simulate_delete(path, headers=tenant.auth), 404, "not_found")
    with single_connection(cfg) as conn:
        left = conn.execute("SELECT count(*) AS n FROM deliveries WHERE webhook_id = %s",
                            (made["id"],)).fetchone()["n"]
    assert left == 0


def test_tenant_walls(cfg, client, tenant):
    made = create(client, tenant)
    event_id = add_event(cfg, tenant)
    other = make_tenant(cfg)
    path = f"{HOOKS}/{made['id']}"
    for method, url, body in [
        ("GET", path, None), ("PATCH", path, {"enabled": False}), ("DELETE", path, None),
        ("POST", f"{path}/rotate-secret", None), ("POST", f"{path}/test", None),
        ("GET", f"{path}/deliveries", None),
        ("POST", f"{path}/redeliver-since", {"since": "2030-01-01T00:00:00Z"}),
        ("GET", f"/api/v1/events/{event_id}", None),
        ("POST", f"/api/v1/events/{event_id}/redeliver", None),
    ]:
        result = client.simulate_request(method, url, headers=other.auth, json=body)
        assert_error(result, 404, "not_found")
    assert client.simulate_get(HOOKS, headers=other.auth).json["webhooks"] == []
    assert client.simulate_get("/api/v1/events", headers=other.auth).json["events"] == []
    # An agent-scoped key may not use account endpoints at all.
    scoped = {"Authorization": f"Bearer {agent_key(cfg, tenant, tenant.agent)}"}
    for method, url in [("GET", HOOKS), ("POST", HOOKS), ("GET", path),
                        ("GET", "/api/v1/events"), ("GET", f"/api/v1/events/{event_id}")]:
        assert_error(client.simulate_request(method, url, headers=scoped, json={}),
                     403, "forbidden")
    assert client.simulate_get(path, headers=tenant.auth).json["enabled"] is True


# -- the event log ----------------------------------------------------------------


def test_events_list_filters_and_pages(cfg, client, tenant):
    received = [add_event(cfg, tenant, message_id=f"msg_{i}", conversation_id="conv_a")
                for i in range(3)]
    sent = add_event(cfg, tenant, "email.sent", message_id="msg_s")
    add_event(cfg, tenant, age=timedelta(days=30, hours=1))  # past retention: never listed

    def ids(**params):
        result = client.simulate_get("/api/v1/events", headers=tenant.auth, params=params)
        assert result.status_code == 200, result.text
        return [e["id"] for e in result.json["events"]], result.json["next_token"]

    assert ids() == ([sent, *reversed(received)], "")
    assert ids(type="email.sent")[0] == [sent]
    assert ids(message_id="msg_1")[0] == [received[1]]
    assert ids(conversation_id="conv_a")[0] == list(reversed(received))
    assert ids(agent_id="ag_nobody")[0] == []
    assert ids(since="2000-01-01T00:00:00Z", until="2000-01-02T00:00:00Z")[0] == []
    first, token = ids(page_size="2")
    assert first == [sent, received[2]] and token
    rest, token2 = ids(page_size="2", token=token)
    assert rest == [received[1], received[0]] and token2 == ""
    assert_error(client.simulate_get("/api/v1/events", headers=tenant.auth,
                                     params={"token": token, "type": "email.sent"}),
                 400, "invalid_request")
    assert_error(client.simulate_get("/api/v1/events", headers=tenant.auth,
                                     params={"type": "bogus"}), 400, "invalid_request")
    one = client.simulate_get("/api/v1/events", headers=tenant.auth,
                              params={"message_id": "msg_s"}).json["events"][0]
    assert set(one) == EVENT_FIELDS
    assert (one["type"], one["schema_version"], one["data"], one["agent_id"]) == \
        ("email.sent", 1, {"x": 1}, tenant.agent["id"])
    assert one["status"] == "pending"  # not dispatched yet


def test_event_get_counts_deliveries_and_410_past_retention(cfg, client, tenant):
    made = create(client, tenant)
    second = create(client, tenant)
    event_id = add_event(cfg, tenant)
    dispatch_all(cfg)
    with single_connection(cfg) as conn:
        conn.execute("UPDATE deliveries SET status = 'delivered' WHERE webhook_id = %s",
                     (made["id"],))
    got = client.simulate_get(f"/api/v1/events/{event_id}", headers=tenant.auth)
    assert got.status_code == 200, got.text
    assert got.json["delivery_status"] == {"matched_webhooks": 2, "delivered": 1, "pending": 1,
                                           "failed": 0}
    assert got.json["status"] == "pending"
    with single_connection(cfg) as conn:
        conn.execute("UPDATE deliveries SET status = 'failed' WHERE webhook_id = %s",
                     (second["id"],))
    assert client.simulate_get(f"/api/v1/events/{event_id}",
                               headers=tenant.auth).json["status"] == "failed"
    old = add_event(cfg, tenant, age=timedelta(days=30, minutes=1))
    assert_error(client.simulate_get(f"/api/v1/events/{old}", headers=tenant.auth),
                 410, "gone")
    assert_error(client.simulate_post(f"/api/v1/events/{old}/redeliver", headers=tenant.auth),
                 410, "gone")
    assert_error(client.simulate_get("/api/v1/events/evt_nothing", headers=tenant.auth),
                 404, "not_found")


def test_redeliver_one_event(cfg, client, tenant):
    first, second = create(client, tenant), create(client, tenant)
    unmatched = create(client, tenant, events=["email.sent"])
    event_id = add_event(cfg, tenant)
    dispatch_all(cfg)
    path = f"/api/v1/events/{event_id}/redeliver"
    # Both still pending: nothing to replay.
    result = client.simulate_post(path, headers=tenant.auth)
    assert result.status_code == 200, result.text
    assert result.json["status"] == "skipped"
    assert {d["reason"] for d in result.json["deliveries"]} == {"a delivery is already pending"}
    with single_connection(cfg) as conn:
        conn.execute("UPDATE deliveries SET status = 'delivered' WHERE event_id = %s",
                     (event_id,))
    client.simulate_patch(f"{HOOKS}/{second['id']}", headers=tenant.auth,
                          json={"enabled": False})
    result = client.simulate_post(path, headers=tenant.auth)
    assert result.json["event_id"] == event_id and result.json["status"] == "scheduled"
    by_hook = {d["webhook_id"]: d for d in result.json["deliveries"]}
    assert by_hook[first["id"]]["status"] == "scheduled"
    assert by_hook[first["id"]]["delivery_id"].startswith("whd_")
    assert by_hook[second["id"]] == {"webhook_id": second["id"], "delivery_id": "",
                                     "status": "skipped", "reason": "webhook disabled"}
    assert_error(client.simulate_post(path, headers=tenant.auth,
                                      json={"webhook_id": unmatched["id"]}), 409, "conflict")
    assert_error(client.simulate_post(path, headers=tenant.auth,
                                      json={"webhook_id": second["id"]}), 409, "conflict")
    # The replay of the first is pending now; a targeted one waits for it.
    result = client.simulate_post(path, headers=tenant.auth, json={"webhook_id": first["id"]})
    assert result.status_code == 200 and result.json["status"] == "skipped"
    with single_connection(cfg) as conn:
        rows = conn.execute("SELECT origin, count(*) AS n FROM deliveries WHERE event_id = %s "
                            "GROUP BY origin", (event_id,)).fetchall()
    assert {r["origin"]: r["n"] for r in rows} == {"dispatch": 2, "redeliver": 1}


def test_redeliver_since(cfg, client, tenant):
    made = create(client, tenant)
    done, waiting = add_event(cfg, tenant), add_event(cfg, tenant)
    dispatch_all(cfg)
    with single_connection(cfg) as conn:
        conn.execute("UPDATE deliveries SET status = 'delivered' WHERE event_id = %s", (done,))
    path = f"{HOOKS}/{made['id']}/redeliver-since"
    since = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = client.simulate_post(path, headers=tenant.auth, json={"since": since})
    assert result.status_code == 200, result.text
    assert result.json == {"webhook_id": made["id"], "since": since, "scheduled": 1,
                           "skipped_already_pending": 1}
    assert del_count(cfg, done) == 2 and del_count(cfg, waiting) == 1
    for bad in ("2020-01-01T00:00:00Z", "yesterday", None):
        assert_error(client.simulate_post(path, headers=tenant.auth, json={"since": bad}),
                     400, "invalid_request")


def test_redeliver_since_is_rate_limited(client, tenant):
    made = create(client, tenant)
    path = f"{HOOKS}/{made['id']}/redeliver-since"
    body = {"since": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    for _ in range(10):
        assert client.simulate_post(path, headers=tenant.auth, json=body).status_code == 200
    result = client.simulate_post(path, headers=tenant.auth, json=body)
    assert_error(result, 429, "rate_limited")
    assert int(result.headers["Retry-After"]) >= 1


def del_count(cfg, event_id: str) -> int:
    with single_connection(cfg) as conn:
        return conn.execute("SELECT count(*) AS n FROM deliveries WHERE event_id = %s",
                            (event_id,)).fetchone()["n"]
