"""Loop and abuse brakes (core/outbound/brakes.py): the decision on
counted sends, the counts shared through Postgres, and the API's answers:
429 rate_limited with Retry-After, 403 agent_paused while the owner's kill
switch is on (GET/PUT /v1/agents/{email}/brakes), an answer to
auto-generated mail held, and turns between agents on one thread capped."""

from __future__ import annotations

import email
import email.policy
import secrets

import pytest
from apisupport import add_agent, agent_key, make_tenant
from sendsupport import received
from submitsupport import sending_client
from v1support import agent_path, assert_envelope, messages_path

from e2a.api.dashboard import pending
from e2a.core.db import open_pool, single_connection
from e2a.core.inbound import inbox
from e2a.core.mailauth.verdict import Verdict
from e2a.core.outbound import brakes
from e2a.core.store import brakes as brake_store


def reply_path(email_address: str, message_id: str) -> str:
    return messages_path(email_address) + f"/{message_id}/reply"


@pytest.fixture(autouse=True)
def clean(postfix):
    postfix.reset()


@pytest.fixture(scope="module")
def client(cfg, postfix, tmp_path_factory):
    with sending_client(cfg, postfix, tmp_path_factory.mktemp("brakes")) as test_client:
        yield test_client


@pytest.fixture
def tenant(cfg):
    return make_tenant(cfg)


SETTINGS = brakes.Settings(sends_per_hour=10, sends_per_day=100, pause_sends_per_hour=30,
                           new_recipients_per_hour=5,
                           bounce_rate_max=0.2, bounce_min_sends=20,
                           auto_reply_action="hold", thread_turns_per_hour=4)


def counted(**fields):
    row = {"hour": 1, "hour_retry": 100.0, "day": 1, "day_retry": 5000.0,
           "thread_turns": None, "answers_auto": False, "bounces": 0, "overrides": None,
           "new_recipients": 0, "new_hour": None, "new_retry": None,
           "paused_at": None, "paused_reason": None}
    row.update(fields)
    return row


@pytest.mark.parametrize("fields,action,brake", [
    ({}, brakes.Action.PASS, ""),
    ({"hour": 11}, brakes.Action.THROTTLE, "hourly"),
    ({"hour": 31}, brakes.Action.PAUSED, "paused"),
    ({"day": 101}, brakes.Action.THROTTLE, "daily"),
    ({"day": 41, "bounces": 9}, brakes.Action.THROTTLE, "bounce_rate"),
    ({"day": 41, "bounces": 8}, brakes.Action.PASS, ""),
    ({"day": 10, "bounces": 9}, brakes.Action.PASS, ""),  # too few sends to judge
    ({"answers_auto": True}, brakes.Action.HOLD, "auto_reply"),
    ({"thread_turns": 5}, brakes.Action.HOLD, "thread_turns"),
    ({"thread_turns": 4}, brakes.Action.PASS, ""),
    ({"new_recipients": 2, "new_hour": 6}, brakes.Action.THROTTLE, "new_recipients"),
    ({"new_recipients": 2, "new_hour": 5}, brakes.Action.PASS, ""),
    ({"paused_at": "2026-01-01", "paused_reason": "by hand"}, brakes.Action.PAUSED, "paused"),
])
def test_decide(fields, action, brake):
    verdict = brakes.decide(SETTINGS, counted(**fields))
    assert (verdict.action, verdict.brake) == (action, brake)


@pytest.mark.parametrize("fields,first", [
    ({"hour": 11}, True), ({"hour": 12}, False),
    ({"day": 101}, True), ({"day": 102}, False),
    ({"new_recipients": 2, "new_hour": 7}, True), ({"new_recipients": 1, "new_hour": 7}, False),
    ({"day": 41, "bounces": 9}, True),
    ({"paused_at": "2026-01-01", "paused_reason": None}, False),
    ({"hour": 31}, True),
])
def test_only_the_first_of_a_run_writes_an_event(fields, first):
    assert brakes.decide(SETTINGS, counted(**fields)).first is first


def test_overrides_are_checked():
    assert brakes.checked_overrides({"sends_per_hour": 0, "bounce_rate_max": 1}) == {
        "sends_per_hour": 0, "bounce_rate_max": 1.0}
    for bad in ({"sends_per_hour": -1}, {"sends_per_hour": True}, {"nope": 1},
                {"auto_reply_action": "ignore"}, {"bounce_rate_max": 0}):
        with pytest.raises(brakes.OverrideError):
            brakes.checked_overrides(bad)


def test_counts_are_one_statement_shared_through_postgres(cfg, tenant):
    with single_connection(cfg) as conn:
        rows = [brake_store.count_send(conn, tenant.agent["id"], conversation_id="",
                                       recipients=["a@example.org"], in_reply_to="",
                                       auto_label=brakes.AUTO_LABEL) for _ in range(3)]
    assert [(r["hour"], r["day"], r["thread_turns"]) for r in rows] == [
        (1, 1, None), (2, 2, None), (3, 3, None)]
    assert 0 < rows[-1]["hour_retry"] <= 3600


def test_new_recipients_are_counted_and_a_throttled_one_stays_new(cfg, tenant):
    def count(recipients):
        with single_connection(cfg) as conn:
            return brake_store.count_send(conn, tenant.agent["id"], conversation_id="",
                                          recipients=recipients, in_reply_to="",
                                          auto_label=brakes.AUTO_LABEL, new_limit=2)
    first = count(["a@example.org", "b@example.org"])
    assert (first["new_recipients"], first["new_hour"]) == (2, 2)
    again = count(["a@example.org"])  # known now: not new, not counted
    assert (again["new_recipients"], again["new_hour"]) == (0, None)
    over = count(["c@example.org"])
    assert (over["new_recipients"], over["new_hour"]) == (1, 3)
    retried = count(["c@example.org"])  # throttled before: still new
    assert (retried["new_recipients"], retried["new_hour"]) == (1, 4)
    verdict = brakes.decide(brakes.Settings.defaults(cfg).with_overrides(
        {"new_recipients_per_hour": 2}), retried)
    assert (verdict.action, verdict.brake) == (brakes.Action.THROTTLE, "new_recipients")


def test_the_api_throttles_with_retry_after(cfg, client, tenant, postfix):
    with single_connection(cfg) as conn:
        brake_store.save(conn, tenant.agent["id"], {"sends_per_hour": 2}, False, None)
    body = {"to": ["friend@example.org"], "subject": "s", "text": "x"}
    path = messages_path(tenant.agent["email"])
    for _ in range(2):
        assert client.simulate_post(path, headers=tenant.auth, json=body).status_code == 202
    refused = client.simulate_post(path, headers=tenant.auth, json=body)
    error = assert_envelope(refused, 429, "rate_limited")
    assert 1 <= int(refused.headers["Retry-After"]) <= 3600
    assert error["details"]["retry_after_seconds"] == int(refused.headers["Retry-After"])
    assert len(postfix.received) == 2


def test_the_owner_pauses_and_resumes_through_the_brakes_resource(cfg, client, tenant,
                                                                  postfix):
    path = agent_path(tenant.agent["email"]) + "/brakes"
    view = client.simulate_get(path, headers=tenant.auth)
    assert view.status_code == 200, view.text
    assert view.json["paused"] is False and view.json["overrides"] == {}
    assert view.json["effective"] == view.json["defaults"]
    paused = client.simulate_put(path, headers=tenant.auth, json={
        "paused": True, "overrides": {"sends_per_day": 5}})
    assert paused.status_code == 200, paused.text
    assert paused.json["paused"] is True and paused.json["effective"]["sends_per_day"] == 5
    send = {"to": ["friend@example.org"], "subject": "s", "text": "x"}
    assert_envelope(client.simulate_post(messages_path(tenant.agent["email"]),
                                         headers=tenant.auth, json=send), 403, "agent_paused")
    assert postfix.received == []
    key = agent_key(cfg, tenant, tenant.agent)
    assert_envelope(client.simulate_put(path, headers={"Authorization": f"Bearer {key}"},
                                        json={"paused": False}), 403, "forbidden")
    assert_envelope(client.simulate_put(path, headers=tenant.auth, json={
        "overrides": {"sends_per_day": -3}}), 400, "invalid_request")
    resumed = client.simulate_put(path, headers=tenant.auth, json={"paused": False})
    assert resumed.json["paused"] is False and resumed.json["overrides"] == {}
    assert client.simulate_post(messages_path(tenant.agent["email"]), headers=tenant.auth,
                                json=send).status_code == 202


def test_auto_generated_mail_is_labelled_and_an_answer_to_it_held(cfg, client, tenant):
    raw = (f"From: Out Of Office <ooo@example.org>\r\nTo: {tenant.agent['email']}\r\n"
           "Subject: Automatic reply: hello\r\nAuto-Submitted: auto-replied\r\n"
           f"Message-ID: <{secrets.token_hex(6)}@example.org>\r\n\r\nI am away.\r\n").encode()
    pool = open_pool(cfg, name="test-inbox", wait=True, autocommit=True)
    try:
        stored = inbox.store(pool, raw, inbox.Envelope("ooo@example.org",
                                                       [tenant.agent["email"]]),
                             Verdict(), cfg.secrets.hmac_secret)
    finally:
        pool.close()
    [message_id] = stored.message_ids
    got = client.simulate_get(messages_path(tenant.agent["email"]) + f"/{message_id}",
                              headers=tenant.auth)
    assert brakes.AUTO_LABEL in got.json["labels"], got.text
    answer = client.simulate_post(reply_path(tenant.agent["email"], message_id),
                                  headers=tenant.auth, json={"text": "Thanks!"})
    assert answer.status_code == 202, answer.text
    assert answer.json["status"] == "pending_review"
    human = received(cfg, tenant.agent)
    normal = client.simulate_post(reply_path(tenant.agent["email"], human),
                                  headers=tenant.auth, json={"text": "Thanks!"})
    assert normal.json["status"] == "accepted", normal.text
    with single_connection(cfg) as conn:
        brake_store.save(conn, tenant.agent["id"], {"auto_reply_action": "refuse"}, False, None)
    assert_envelope(client.simulate_post(reply_path(tenant.agent["email"], message_id),
                                         headers=tenant.auth, json={"text": "Again"}),
                    403, "brake_refused")


def test_turns_between_agents_on_one_thread_are_capped(cfg, client, tenant, postfix):
    other = add_agent(cfg, tenant)
    with single_connection(cfg) as conn:
        brake_store.save(conn, tenant.agent["id"], {"thread_turns_per_hour": 2}, False, None)
    conversation = "conv_" + secrets.token_hex(16)
    body = {"to": [other["email"]], "subject": "ping", "text": "x",
            "conversation_id": conversation}
    answers = [client.simulate_post(messages_path(tenant.agent["email"]), headers=tenant.auth,
                                    json=body).json for _ in range(3)]
    assert [a["status"] for a in answers] == ["accepted", "accepted", "pending_review"]
    # The reviewer learns which brake held it and why (the /v1 review's
    # hold_reason; the dashboard's "Brake").
    review = client.simulate_get(f"/v1/reviews/{answers[2]['message_id']}",
                                 headers=tenant.auth)
    assert review.status_code == 200, review.text
    reason = review.json["hold_reason"]
    assert {k: reason[k] for k in ("type", "code", "category")} == {
        "type": "send", "code": "outbound_send", "category": "thread_turns"}, reason
    assert "between agents" in reason["summary"], reason
    assert pending.reason_of({"hold_reason": reason}) == "brake"
    human = client.simulate_post(messages_path(tenant.agent["email"]), headers=tenant.auth,
                                 json={**body, "to": ["person@example.org"]})
    assert human.json["status"] == "accepted"  # not between agents: not a turn
    held = email.message_from_bytes(postfix.received[-2].data, policy=email.policy.default)
    assert held["To"] == other["email"]


def test_a_pause_mails_the_owner(hitl_cfg, hitl_owner, hitl_reinjection):
    from hitlsupport import released

    before = len(released(hitl_reinjection))
    agent = hitl_owner.agent
    with single_connection(hitl_cfg) as conn:
        brake_store.save(conn, agent["id"], {"pause_sends_per_hour": 1}, False, None)
        send = brakes.Send(["friend@example.org"], message_id="msg_x")
        verdicts = [brakes.judge(conn, hitl_cfg, agent, send) for _ in range(3)]
    assert [v.action for v in verdicts] == [brakes.Action.PASS, brakes.Action.PAUSED,
                                           brakes.Action.PAUSED]
    notices = released(hitl_reinjection)[before:]
    assert len(notices) == 1  # once, when it paused
    notice = email.message_from_bytes(notices[0].data, policy=email.policy.default)
    assert notice["To"] == hitl_owner.user["email"]
    assert notice["Subject"] == f"Agent paused: {agent['email']}"
    assert notice["Auto-Submitted"] == "auto-generated"
