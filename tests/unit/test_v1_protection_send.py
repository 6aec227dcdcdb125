"""Protection on the API's send path (core/outbound/screening.py in
core/outbound/send.py): the API screens as it records, so its answer says
what the filter will do (one decision, not a second scan there); and the
review queue shows why a message waits, for outbound and inbound holds."""

from __future__ import annotations

from pathlib import Path

import pytest
from apisupport import add_agent, insert_message, make_tenant
from submitsupport import sending_client
from v1support import agent_path, assert_envelope, messages_path

from e2a.core.db import single_connection

PEM = (Path(__file__).resolve().parents[1] / "fixtures" / "protection" / "outbound"
       / "secret_pem_rsa.eml").read_text().replace("\r\n", "\n").split("\n\n", 1)[1]
OPEN = {"gate": {"policy": "open", "action": "flag"}, "scan": {"sensitivity": "off"}}


@pytest.fixture(autouse=True)
def clean(postfix):
    postfix.reset()


@pytest.fixture(scope="module")
def client(cfg, postfix, tmp_path_factory):
    with sending_client(cfg, postfix, tmp_path_factory.mktemp("protect")) as test_client:
        yield test_client


@pytest.fixture
def tenant(cfg):
    return make_tenant(cfg)


def protect(client, tenant, email, **directions):
    put = client.simulate_put(agent_path(email) + "/protection", headers=tenant.auth, json={
        "inbound": directions.get("inbound", OPEN), "outbound": directions.get("outbound", OPEN),
        "holds": {}})
    assert put.status_code == 200, put.text


def test_a_private_key_is_held_with_its_reason(client, tenant, postfix):
    email = tenant.agent["email"]
    protect(client, tenant, email, outbound={"gate": {}, "scan": {"sensitivity": "medium"}})
    sent = client.simulate_post(messages_path(email), headers=tenant.auth,
                                json={"to": ["bob@example.org"], "subject": "key",
                                      "text": PEM})
    assert sent.status_code == 202, sent.text
    assert sent.json["status"] == "pending_review"
    # Submitted all the same: the hold is the filter's to enforce on every path.
    assert postfix.only().rcpt_tos == ["bob@example.org"]
    [review] = [r for r in client.simulate_get("/v1/reviews", headers=tenant.auth).json["items"]
                if r["id"] == sent.json["message_id"]]
    assert review["hold_reason"]["code"] == "outbound_scan"
    detail = client.simulate_get(f"/v1/reviews/{review['id']}", headers=tenant.auth).json
    assert detail["hold_reason"]["category"] == "secret"
    assert detail["protection"][0]["source"] == "scan"
    # The legacy queue says why as well.
    legacy = client.simulate_get(f"/api/v1/messages/{review['id']}", headers=tenant.auth)
    assert legacy.json["hold_reason"]["code"] == "outbound_scan"
    listed = client.simulate_get("/api/v1/messages", headers=tenant.auth,
                                 params={"status": "pending_approval"}).json["messages"]
    assert [m["hold_reason"]["code"] for m in listed] == ["outbound_scan"]
    # Harmless mail leaves at once.
    fine = client.simulate_post(messages_path(email), headers=tenant.auth,
                                json={"to": ["bob@example.org"], "text": "lunch?"})
    assert fine.json["status"] == "accepted"


def test_the_recipient_gate_refuses_with_blocked_by_policy(client, tenant, postfix):
    email = tenant.agent["email"]
    protect(client, tenant, email, outbound={
        "gate": {"policy": "allowlist", "action": "block", "allowlist": ["example.org"]},
        "scan": {}})
    refused = client.simulate_post(messages_path(email), headers=tenant.auth,
                                   json={"to": ["eve@elsewhere.example"], "text": "hi"})
    assert_envelope(refused, 403, "blocked_by_policy")
    assert postfix.received == []
    listed = client.simulate_get(messages_path(email), headers=tenant.auth,
                                 params={"direction": "outbound"}).json["items"]
    assert listed == []
    events = client.simulate_get("/v1/events", headers=tenant.auth,
                                 params={"type": "email.blocked"}).json["items"]
    assert events[0]["data"]["message_id"].startswith("msgblk_")
    assert events[0]["data"]["reason_source"] == "recipient_gate"


def test_an_inbound_hold_is_reviewed_by_message_id(cfg, client, tenant):
    agent = add_agent(cfg, tenant)
    message_id = insert_message(cfg, agent, subject="held in")
    with single_connection(cfg) as conn:
        conn.execute("""UPDATE messages SET status = 'pending_approval',
                               approval_expires_at = now() + interval '1 hour',
                               hold_reason = '{"type": "scan", "code": "inbound_scan",
                                               "summary": "asks to ignore prior instructions"}'
                         WHERE id = %s""", (message_id,))
    inbox = messages_path(agent["email"])
    assert client.simulate_get(inbox, headers=tenant.auth).json["items"] == []
    assert client.simulate_get(f"{inbox}/{message_id}", headers=tenant.auth).status_code == 404
    [review] = client.simulate_get("/v1/reviews", headers=tenant.auth).json["items"]
    assert (review["id"], review["direction"]) == (message_id, "inbound")
    assert review["hold_reason"]["code"] == "inbound_scan"
    detail = client.simulate_get(f"/v1/reviews/{message_id}", headers=tenant.auth)
    assert detail.status_code == 200 and detail.json["hold_reason"]["code"] == "inbound_scan"
    assert_envelope(client.simulate_post(f"/v1/reviews/{message_id}/approve",
                                         headers=tenant.auth, json={"subject": "x"}),
                    400, "invalid_request")
    other = make_tenant(cfg)
    assert client.simulate_post(f"/v1/reviews/{message_id}/approve", headers=other.auth,
                                json={}).status_code == 404
    approved = client.simulate_post(f"/v1/reviews/{message_id}/approve", headers=tenant.auth,
                                    json={})
    assert approved.status_code == 200, approved.text
    assert approved.json == {"message_id": message_id, "status": "review_approved"}
    assert [m["id"] for m in client.simulate_get(inbox, headers=tenant.auth).json["items"]] \
        == [message_id]
    assert_envelope(client.simulate_post(f"/v1/reviews/{message_id}/reject",
                                         headers=tenant.auth, json={}),
                    409, "message_not_pending")
