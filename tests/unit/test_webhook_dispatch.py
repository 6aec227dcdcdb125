"""Dispatch: events into deliveries, by type and filters, once per event and
target however many workers run it (real PostgreSQL)."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator

import pytest
from apisupport import insert_message, make_tenant

from e2a.core.accounts import registration as accounts
from e2a.core.db import open_pool, single_connection
from e2a.core.ids import new_id
from e2a.core.store import events as event_store
from e2a.core.store import messages as message_store
from e2a.core.webhooks import dispatch
from e2a.core.webhooks import subscriptions as webhooks

HOOK = {"events": ["email.received"], "filters": {}}
EVENT = {"type": "email.received", "agent_id": "ag_1", "conversation_id": "conv_1",
         "labels": ["urgent", "billing"]}


@pytest.mark.parametrize(("hook", "event", "matched"), [
    (HOOK, EVENT, True),
    ({**HOOK, "events": ["email.sent"]}, EVENT, False),
    ({**HOOK, "events": ["email.sent", "email.received"]}, EVENT, True),
    ({**HOOK, "filters": {"agent_ids": ["ag_1", "ag_2"]}}, EVENT, True),
    ({**HOOK, "filters": {"agent_ids": ["ag_2"]}}, EVENT, False),
    ({**HOOK, "filters": {"agent_ids": ["ag_1"]}}, {**EVENT, "agent_id": None}, False),
    ({**HOOK, "filters": {"conversation_ids": ["conv_1"]}}, EVENT, True),
    ({**HOOK, "filters": {"conversation_ids": ["conv_2"]}}, EVENT, False),
    ({**HOOK, "filters": {"labels": ["billing"]}}, EVENT, True),
    ({**HOOK, "filters": {"labels": ["spam"]}}, EVENT, False),
    ({**HOOK, "filters": {"labels": ["spam"]}}, {**EVENT, "labels": []}, False),
    # Every filter set must hold; empty ones do not narrow.
    ({**HOOK, "filters": {"agent_ids": ["ag_1"], "labels": ["spam"]}}, EVENT, False),
    ({**HOOK, "filters": {"agent_ids": ["ag_1"], "conversation_ids": [], "labels": []}},
     EVENT, True),
])
def test_matching(hook, event, matched):
    assert dispatch.matches(hook, event) is matched


@pytest.fixture(scope="module")
def pool(cfg) -> Iterator:
    p = open_pool(cfg, name="test-dispatch", wait=True)
    yield p
    p.close()


def drain(pool) -> int:
    """Dispatch whatever other tests left, so counts below are ours."""
    total = 0
    with pool.connection() as conn:
        while done := dispatch.dispatch(conn):
            total += done
    return total


def add_webhook(cfg, user_id: str, events: list[str], **filters: list[str]) -> str:
    with single_connection(cfg) as conn:
        row, _ = webhooks.create(conn, cfg, user_id, {
            "url": "https://hooks.example.com/in", "events": events, "filters": filters})
    return row["id"]


def add_event(cfg, user_id: str, type_: str = "email.received", **refs: str | None) -> str:
    event_id = new_id("evt")
    with single_connection(cfg) as conn:
        event_store.insert_event(conn, event_id, user_id, type_, {"k": "v"}, **refs)
    return event_id


def deliveries_of(cfg, event_ids: list[str]) -> list[tuple[str, str | None, str | None]]:
    with single_connection(cfg) as conn:
        rows = conn.execute(
            """SELECT event_id, webhook_id, agent_id FROM deliveries WHERE event_id = ANY(%s)
                ORDER BY event_id, webhook_id, agent_id""", (event_ids,)).fetchall()
    return [(r["event_id"], r["webhook_id"], r["agent_id"]) for r in rows]


def test_events_fan_out_to_matching_subscriptions_and_cloud_agents(cfg, pool):
    drain(pool)
    tenant = make_tenant(cfg)
    uid = tenant.user["id"]
    with single_connection(cfg) as conn:
        cloud = accounts.register_agent(conn, cfg, uid, slug=f"c-{secrets.token_hex(3)}",
                                        agent_mode="cloud",
                                        webhook_url="https://agent.example.com/in")
    every = add_webhook(cfg, uid, ["email.received", "email.sent"])
    only_cloud = add_webhook(cfg, uid, ["email.received"], agent_ids=[cloud["id"]])
    sent_only = add_webhook(cfg, uid, ["email.sent"])
    other_user = add_webhook(cfg, make_tenant(cfg).user["id"], ["email.received"])
    local_mail = add_event(cfg, uid, agent_id=tenant.agent["id"], message_id="msg_a")
    cloud_mail = add_event(cfg, uid, agent_id=cloud["id"], message_id="msg_b")
    sent = add_event(cfg, uid, "email.sent", agent_id=cloud["id"], message_id="msg_c")
    assert drain(pool) == 3
    assert set(deliveries_of(cfg, [local_mail, cloud_mail, sent])) == {
        (local_mail, every, None),
        (cloud_mail, every, None), (cloud_mail, only_cloud, None), (cloud_mail, None, cloud["id"]),
        (sent, every, None), (sent, sent_only, None),
    }
    assert other_user not in {w for _, w, _ in deliveries_of(cfg, [local_mail, cloud_mail])}
    with single_connection(cfg) as conn:
        undispatched = conn.execute(
            "SELECT count(*) AS n FROM events WHERE id = ANY(%s) AND dispatched_at IS NULL",
            ([local_mail, cloud_mail, sent],)).fetchone()["n"]
    assert undispatched == 0


def test_label_filters_read_the_message_labels(cfg, pool):
    drain(pool)
    tenant = make_tenant(cfg)
    uid = tenant.user["id"]
    hook = add_webhook(cfg, uid, ["email.received"], labels=["vip"])
    plain = insert_message(cfg, tenant.agent)
    labelled = insert_message(cfg, tenant.agent)
    with single_connection(cfg) as conn:
        message_store.set_labels(conn, labelled, ["vip", "x"])
    events = [add_event(cfg, uid, agent_id=tenant.agent["id"], message_id=m)
              for m in (plain, labelled)]
    drain(pool)
    assert deliveries_of(cfg, events) == [(events[1], hook, None)]


def test_disabled_subscriptions_match_nothing(cfg, pool):
    drain(pool)
    uid = make_tenant(cfg).user["id"]
    hook = add_webhook(cfg, uid, ["email.received"])
    with single_connection(cfg) as conn:
        webhooks.update(conn, cfg, uid, hook, {"enabled": False})
    event = add_event(cfg, uid)
    drain(pool)
    assert deliveries_of(cfg, [event]) == []


def test_an_event_locked_by_another_worker_is_skipped_then_dispatched(cfg, pool):
    drain(pool)
    uid = make_tenant(cfg).user["id"]
    hook = add_webhook(cfg, uid, ["email.received"])
    held, free = add_event(cfg, uid), add_event(cfg, uid)
    with single_connection(cfg) as other:
        other.execute("SELECT id FROM events WHERE id = %s FOR UPDATE", (held,))
        assert drain(pool) == 1
        assert deliveries_of(cfg, [held, free]) == [(free, hook, None)]
        other.rollback()
    assert drain(pool) == 1
    assert len(deliveries_of(cfg, [held, free])) == 2


def test_concurrent_dispatchers_take_each_event_once(cfg, pool):
    drain(pool)
    uid = make_tenant(cfg).user["id"]
    add_webhook(cfg, uid, ["email.received"])
    with single_connection(cfg) as conn:
        ids = [new_id("evt") for _ in range(3 * dispatch.BATCH)]
        for event_id in ids:
            event_store.insert_event(conn, event_id, uid, "email.received", {})
    counts: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def worker() -> None:
        try:
            start.wait()
            counts.append(drain(pool))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    # Each event counted by exactly one worker, and each has its one delivery.
    assert sum(counts) == len(ids)
    assert len(deliveries_of(cfg, ids)) == len(ids)
