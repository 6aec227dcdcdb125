"""The deliver job against real PostgreSQL and a real receiver on loopback:
what is sent, retries, the lease, auto-disable and its cool-down."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from apisupport import insert_message, make_tenant
from servicesupport import write_config
from webhooksupport import Receiver

from e2a.api import webhookviews
from e2a.core import config
from e2a.core.accounts import registration as accounts
from e2a.core.accounts import signing_secrets
from e2a.core.accounts.registration import AccountError
from e2a.core.db import open_pool, single_connection
from e2a.core.ids import new_id
from e2a.core.inbound import attest
from e2a.core.store import deliveries as delivery_store
from e2a.core.store import events as event_store
from e2a.core.store import messages as message_store
from e2a.core.store import webhooks as webhook_store
from e2a.core.timefmt import parse_rfc3339, rfc3339
from e2a.core.webhooks import delivery, dispatch
from e2a.core.webhooks import signature as webhooksig
from e2a.core.webhooks import subscriptions as webhooks


def test_retry_schedule():
    minutes = [delivery.retry_in(n).total_seconds() / 60 for n in range(1, 9)]
    assert minutes == [1, 5, 15, 60, 240, 480, 960, 1440]
    assert delivery.retry_in(9) is None
    assert delivery.retry_in(1, "test") is None


@pytest.fixture(scope="module")
def hook_cfg(cfg, tmp_path_factory) -> config.Config:
    path = write_config(cfg, tmp_path_factory.mktemp("hooks") / "e2a.toml",
                        "[webhooks]\nallow_loopback = true\ntimeout = 2.0\n"
                        "[dns]\ntimeout = 1.0\n")
    return config.load(path, env={})


@pytest.fixture(scope="module")
def pool(cfg) -> Iterator:
    p = open_pool(cfg, name="test-delivery", wait=True)
    yield p
    p.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def deliverer(hook_cfg) -> Iterator[delivery.Deliverer]:
    d = delivery.Deliverer(hook_cfg)
    yield d
    d._executor.shutdown(wait=True)


def settle(pool, deliverer: delivery.Deliverer, timeout: float = 15.0) -> None:
    """Dispatch and deliver until nothing is due or on the wire."""
    deadline = time.monotonic() + timeout
    with pool.connection() as conn:
        while time.monotonic() < deadline:
            done = dispatch.dispatch(conn) + deliverer.run(conn)
            if not done and not deliverer.busy:
                return
            time.sleep(0.02)
    raise AssertionError("deliveries did not settle")


def subscribe(hook_cfg, user_id: str, url: str, events: list[str] | None = None) -> tuple[str, str]:
    with single_connection(hook_cfg) as conn:
        row, secret = webhooks.create(conn, hook_cfg, user_id,
                                      {"url": url, "events": events or ["email.sent"]})
    return row["id"], secret


def add_event(cfg, user_id: str, type_: str = "email.sent", **refs: str) -> str:
    event_id = new_id("evt")
    with single_connection(cfg) as conn:
        event_store.insert_event(conn, event_id, user_id, type_, {"n": 1}, **refs)
    return event_id


def delivery_rows(cfg, event_id: str) -> list[dict]:
    with single_connection(cfg) as conn:
        return conn.execute("SELECT * FROM deliveries WHERE event_id = %s ORDER BY created_at",
                            (event_id,)).fetchall()


def sql(cfg, statement: str, *params: object) -> None:
    """Moving the clock for a row (time travel): no store function takes a time."""
    with single_connection(cfg) as conn:
        conn.execute(statement, params)


def test_a_subscription_gets_the_signed_envelope(cfg, hook_cfg, pool, receiver, deliverer):
    uid = make_tenant(cfg).user["id"]
    hook, secret = subscribe(hook_cfg, uid, receiver.url())
    event_id = add_event(cfg, uid, message_id="msg_x")
    settle(pool, deliverer)
    (got,) = receiver.wait_for(1)
    assert webhooksig.verify(got.headers["X-E2A-Signature"], secret, got.body, int(time.time()))
    envelope = got.json()
    assert list(envelope) == ["type", "id", "schema_version", "created_at", "data"]
    assert (envelope["type"], envelope["id"], envelope["schema_version"], envelope["data"]) == \
        ("email.sent", event_id, "1", {"n": 1})
    assert got.headers["X-E2A-Event-Id"] == event_id
    (row,) = delivery_rows(cfg, event_id)
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("delivered", 1, 200)
    with single_connection(cfg) as conn:
        assert webhook_store.webhook_for_user(conn, uid, hook)["last_delivered_at"] is not None


def test_a_cloud_agent_gets_its_mail_with_attestation_headers(cfg, hook_cfg, pool, receiver,
                                                             deliverer):
    tenant = make_tenant(cfg)
    uid = tenant.user["id"]
    with single_connection(cfg) as conn:
        secret = signing_secrets.create(conn, uid).secret
        agent = accounts.register_agent(conn, hook_cfg, uid, slug=f"cl-{secrets.token_hex(3)}",
                                        agent_mode="cloud", webhook_url=receiver.url("/agent"))
    raw = b"From: alice@example.org\r\nTo: x@example.com\r\nSubject: hi\r\n\r\nbody\r\n"
    message_id = new_id("msg")
    stored = attest.Attestation(
        verified=True, sender="alice@example.org", entity_type="human",
        domain_check="spf=pass; dkim=none; dmarc=pass", delegation="",
        timestamp="2020-01-01T00:00:00Z", message_id=message_id,
        body_hash=attest.body_hash(raw)).headers(secret)
    with single_connection(cfg) as conn:
        message_store.insert_inbound(conn, {
            "id": message_id, "user_id": uid, "agent_id": agent["id"],
            "recipient": agent["email"], "sender": "alice@example.org",
            "envelope_sender": "alice@example.org", "to_recipients": ["x@example.com"],
            "cc": ["cc@example.org"], "reply_to": [], "subject": "hi", "email_message_id": "",
            "in_reply_to": "", "references_ids": [], "conversation_id": "conv_1",
            "raw_message": raw, "size_bytes": len(raw), "auth_headers": stored, "spf": "pass",
            "dkim": "none", "dmarc": "pass", "verified": True, "entity_type": "human",
            "queue_id": "", "dedupe_key": None})
    add_event(cfg, uid, "email.received", agent_id=agent["id"], message_id=message_id)
    settle(pool, deliverer)
    (got,) = receiver.wait_for(1)
    payload = got.json()
    assert got.path == "/agent"
    assert set(payload) == {"message_id", "conversation_id", "from", "to", "cc", "reply_to",
                            "recipient", "raw_message", "auth_headers", "received_at"}
    assert (payload["message_id"], payload["conversation_id"], payload["from"],
            payload["cc"], payload["recipient"]) == \
        (message_id, "conv_1", "alice@example.org", ["cc@example.org"], agent["email"])
    assert base64.b64decode(payload["raw_message"]) == raw
    auth = payload["auth_headers"]
    assert attest.verify(auth, secret)
    assert auth[attest.PREFIX + "Body-Hash"] == hashlib.sha256(raw).hexdigest()
    # Signed afresh for this attempt, with a timestamp a receiver accepts.
    stamp = parse_rfc3339(auth[attest.PREFIX + "Timestamp"])
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 30
    headers = {k: v for k, v in got.headers.items() if k.startswith(attest.PREFIX)}
    assert headers == auth
    assert attest.verify(headers, secret)
    with single_connection(cfg) as conn:
        state = conn.execute("SELECT webhook_status, webhook_error, webhook_attempts "
                             "FROM messages WHERE id = %s", (message_id,)).fetchone()
    assert state == {"webhook_status": "delivered", "webhook_error": "",
                     "webhook_attempts": 1}


def test_failures_are_retried_on_schedule_then_given_up(cfg, hook_cfg, pool, receiver,
                                                       deliverer):
    tenant = make_tenant(cfg)
    with single_connection(cfg) as conn:
        agent = accounts.register_agent(conn, hook_cfg, tenant.user["id"],
                                        slug=f"r-{secrets.token_hex(3)}", agent_mode="cloud",
                                        webhook_url=receiver.url())
    message_id = insert_message(cfg, agent)
    event_id = add_event(cfg, tenant.user["id"], "email.received", agent_id=agent["id"],
                         message_id=message_id)
    receiver.behaviour.status = 500
    before = datetime.now(UTC)
    settle(pool, deliverer)
    (row,) = delivery_rows(cfg, event_id)
    assert (row["status"], row["attempts"], row["last_status_code"], row["last_error"]) == \
        ("pending", 1, 500, "HTTP 500")
    wait = (row["next_attempt_at"] - before).total_seconds()
    assert 60 <= wait < 70
    with single_connection(cfg) as conn:
        state = conn.execute("SELECT webhook_status, webhook_error, webhook_attempts "
                             "FROM messages WHERE id = %s", (message_id,)).fetchone()
    assert state == {"webhook_status": "pending", "webhook_error": "HTTP 500",
                     "webhook_attempts": 1}
    # Seven more failures later (their waits skipped), the ninth attempt is the last.
    sql(cfg, "UPDATE deliveries SET attempts = 8, next_attempt_at = now() WHERE id = %s",
        row["id"])
    settle(pool, deliverer)
    (row,) = delivery_rows(cfg, event_id)
    assert (row["status"], row["attempts"]) == ("failed", 9)
    with single_connection(cfg) as conn:
        state = conn.execute("SELECT webhook_status, webhook_attempts FROM messages "
                             "WHERE id = %s", (message_id,)).fetchone()
    assert state == {"webhook_status": "failed", "webhook_attempts": 9}
    assert len(receiver.requests) == 2


def test_a_retry_after_the_receiver_recovers_delivers(cfg, hook_cfg, pool, receiver, deliverer):
    uid = make_tenant(cfg).user["id"]
    subscribe(hook_cfg, uid, receiver.url())
    event_id = add_event(cfg, uid)
    receiver.stop()  # down: connection refused
    settle(pool, deliverer)
    (row,) = delivery_rows(cfg, event_id)
    assert row["status"] == "pending" and "refused" in row["last_error"].lower()
    receiver.start()
    sql(cfg, "UPDATE deliveries SET next_attempt_at = now() WHERE id = %s", row["id"])
    settle(pool, deliverer)
    (row,) = delivery_rows(cfg, event_id)
    assert (row["status"], row["attempts"]) == ("delivered", 2)
    assert [r.json()["id"] for r in receiver.requests] == [event_id]


def test_a_claim_holds_for_its_lease_and_a_late_outcome_is_ignored(cfg, hook_cfg, pool):
    uid = make_tenant(cfg).user["id"]
    subscribe(hook_cfg, uid, "https://hooks.example.com/x")
    event_id = add_event(cfg, uid)
    with pool.connection() as conn:
        dispatch.dispatch(conn)
    (row,) = delivery_rows(cfg, event_id)
    lease = delivery.lease(hook_cfg)
    with single_connection(cfg) as conn:
        first = [c for c in delivery_store.claim_due(conn, 1000, lease) if c["id"] == row["id"]]
    assert first and first[0]["attempts"] == 1
    with single_connection(cfg) as conn:  # another worker, within the lease
        assert row["id"] not in {c["id"] for c in delivery_store.claim_due(conn, 1000, lease)}
        conn.rollback()
    # The first worker died; its lease runs out and another takes over.
    sql(cfg, "UPDATE deliveries SET next_attempt_at = now() WHERE id = %s", row["id"])
    with single_connection(cfg) as conn:
        again = [c for c in delivery_store.claim_due(conn, 1000, lease) if c["id"] == row["id"]]
    assert again[0]["attempts"] == 2
    with single_connection(cfg) as conn:
        # The first worker's outcome, arriving late, changes nothing.
        assert not delivery_store.record_delivered(conn, row["id"], 1, 200)
        assert delivery_store.record_delivered(conn, row["id"], 2, 200)
    assert delivery_rows(cfg, event_id)[0]["status"] == "delivered"


def test_rotation_dual_signs_for_the_grace_period(cfg, hook_cfg, pool, receiver, deliverer):
    uid = make_tenant(cfg).user["id"]
    hook, old = subscribe(hook_cfg, uid, receiver.url())
    with single_connection(cfg) as conn:
        row, new = webhooks.rotate_secret(conn, uid, hook)
    grace = row["previous_secret_expires_at"] - datetime.now(UTC)
    assert timedelta(hours=23, minutes=59) < grace <= timedelta(hours=24)
    add_event(cfg, uid)
    settle(pool, deliverer)
    got = receiver.wait_for(1)[0]
    value = got.headers["X-E2A-Signature"]
    assert value.count("v1=") == 2
    for secret in (old, new):
        assert webhooksig.verify(value, secret, got.body, int(time.time()))
    sql(cfg, "UPDATE webhooks SET previous_secret_expires_at = now() - interval '1 second' "
        "WHERE id = %s", hook)
    add_event(cfg, uid)
    settle(pool, deliverer)
    got = receiver.wait_for(2)[1]
    value = got.headers["X-E2A-Signature"]
    assert value.count("v1=") == 1
    assert webhooksig.verify(value, new, got.body, int(time.time()))
    assert not webhooksig.verify(value, old, got.body, int(time.time()))


def test_auto_disable_needs_many_failures_over_a_long_time(cfg, hook_cfg):
    uid = make_tenant(cfg).user["id"]
    hook, _ = subscribe(hook_cfg, uid, "https://hooks.example.com/x")
    window = timedelta(hours=24)
    with single_connection(cfg) as conn:
        # A burst: many failures at once do not switch it off.
        assert not any(webhook_store.record_failure(conn, hook, disable_after=3,
                                                    disable_window=window) for _ in range(5))
        assert webhook_store.webhook_for_user(conn, uid, hook)["enabled"]
        webhook_store.record_success(conn, hook)
        row = webhook_store.webhook_for_user(conn, uid, hook)
        assert (row["consecutive_failures"], row["failing_since"]) == (0, None)
    with single_connection(cfg) as conn:
        for _ in range(2):
            webhook_store.record_failure(conn, hook, disable_after=3, disable_window=window)
        # Switching on what is on does not wipe the run of failures.
        assert webhooks.update(conn, hook_cfg, uid, hook,
                               {"enabled": True})["consecutive_failures"] == 2
    sql(cfg, "UPDATE webhooks SET failing_since = now() - interval '25 hours' WHERE id = %s",
        hook)
    with single_connection(cfg) as conn:
        assert webhook_store.record_failure(conn, hook, disable_after=3, disable_window=window)
        row = webhook_store.webhook_for_user(conn, uid, hook)
    assert not row["enabled"] and row["auto_disabled_at"] is not None


def test_re_enable_waits_out_the_cool_down_and_resumes_deliveries(cfg, hook_cfg, pool, receiver,
                                                                 deliverer):
    uid = make_tenant(cfg).user["id"]
    hook, _ = subscribe(hook_cfg, uid, receiver.url())
    receiver.behaviour.status = 503
    event_id = add_event(cfg, uid)
    settle(pool, deliverer)
    sql(cfg, """UPDATE webhooks SET enabled = false, auto_disabled_at = now()
                 WHERE id = %s""", hook)
    sql(cfg, "UPDATE deliveries SET next_attempt_at = now() WHERE event_id = %s", event_id)
    settle(pool, deliverer)  # switched off: its delivery waits
    assert delivery_rows(cfg, event_id)[0]["attempts"] == 1
    with single_connection(cfg) as conn, pytest.raises(AccountError) as refused:
        webhooks.update(conn, hook_cfg, uid, hook, {"enabled": True})
    assert refused.value.code == "conflict"
    sql(cfg, "UPDATE webhooks SET auto_disabled_at = now() - interval '6 minutes' WHERE id = %s",
        hook)
    receiver.behaviour.status = 200
    with single_connection(cfg) as conn:
        row = webhooks.update(conn, hook_cfg, uid, hook, {"enabled": True})
    assert row["enabled"] and row["auto_disabled_at"] is None
    assert row["consecutive_failures"] == 0
    settle(pool, deliverer)
    (row,) = delivery_rows(cfg, event_id)
    assert (row["status"], row["attempts"]) == ("delivered", 2)


def test_a_test_delivery_gets_one_attempt_and_does_not_count(cfg, hook_cfg, pool, receiver,
                                                            deliverer):
    uid = make_tenant(cfg).user["id"]
    hook, secret = subscribe(hook_cfg, uid, receiver.url())
    receiver.behaviour.status = 500
    with single_connection(cfg) as conn:
        delivery_id = webhooks.send_test(conn, uid, hook, {"event": "email.bounced",
                                                           "data": {"why": "testing"}})
    settle(pool, deliverer)
    got = receiver.wait_for(1)[0]
    assert webhooksig.verify(got.headers["X-E2A-Signature"], secret, got.body, int(time.time()))
    assert (got.json()["type"], got.json()["data"]) == ("email.bounced", {"why": "testing"})
    with single_connection(cfg) as conn:
        row = conn.execute("SELECT * FROM deliveries WHERE id = %s", (delivery_id,)).fetchone()
        hook_row = webhook_store.webhook_for_user(conn, uid, hook)
    assert (row["status"], row["attempts"], row["origin"]) == ("failed", 1, "test")
    assert hook_row["consecutive_failures"] == 0


def test_deliveries_list_newest_first(cfg, hook_cfg, pool, receiver, deliverer):
    uid = make_tenant(cfg).user["id"]
    hook, _ = subscribe(hook_cfg, uid, receiver.url())
    first, second = add_event(cfg, uid), add_event(cfg, uid)
    settle(pool, deliverer)
    with single_connection(cfg) as conn:
        rows = delivery_store.list_for_webhook(conn, hook, None, 10)
        assert delivery_store.list_for_webhook(conn, hook, "pending", 10) == []
    assert {r["event_id"] for r in rows} == {first, second}
    assert all(r["event_type"] == "email.sent" and r["status"] == "delivered" for r in rows)
    assert rfc3339(rows[0]["created_at"]) >= rfc3339(rows[1]["created_at"])


def test_switched_off_its_deliveries_wait_parked_until_it_is_on(cfg, hook_cfg, pool, receiver,
                                                               deliverer):
    uid = make_tenant(cfg).user["id"]
    hook, _ = subscribe(hook_cfg, uid, receiver.url())
    receiver.behaviour.status = 503
    # Switched off at its first failure (thresholds of one, no waiting).
    deliverer._disable_after, deliverer._disable_window = 1, timedelta(0)
    event_id = add_event(cfg, uid)
    settle(pool, deliverer)
    (row,) = delivery_rows(cfg, event_id)
    assert (row["status"], row["attempts"], row["next_attempt_at"]) == \
        ("pending", 1, delivery_store.PARKED)
    with single_connection(cfg) as conn:
        hook_row = webhook_store.webhook_for_user(conn, uid, hook)
        assert not hook_row["enabled"] and hook_row["auto_disabled_at"]
        (listed,) = delivery_store.list_for_webhook(conn, hook, "pending", 10)
    assert webhookviews.delivery(listed)["next_retry_at"] == ""
    sql(cfg, "UPDATE webhooks SET auto_disabled_at = now() - interval '1 hour' WHERE id = %s",
        hook)
    receiver.behaviour.status = 200
    with single_connection(cfg) as conn:
        webhooks.update(conn, hook_cfg, uid, hook, {"enabled": True})
    assert delivery_rows(cfg, event_id)[0]["next_attempt_at"] <= datetime.now(UTC)
    settle(pool, deliverer)
    assert (delivery_rows(cfg, event_id)[0]["status"], len(receiver.requests)) == ("delivered", 2)
    # Switched off by hand, the same: parked, then resumed.
    receiver.behaviour.status = 503
    second = add_event(cfg, uid)
    deliverer._disable_after = delivery.NEVER
    settle(pool, deliverer)
    with single_connection(cfg) as conn:
        webhooks.update(conn, hook_cfg, uid, hook, {"enabled": False})
    assert delivery_rows(cfg, second)[0]["next_attempt_at"] == delivery_store.PARKED
    with single_connection(cfg) as conn:
        webhooks.update(conn, hook_cfg, uid, hook, {"enabled": True})
    assert delivery_rows(cfg, second)[0]["next_attempt_at"] <= datetime.now(UTC)
