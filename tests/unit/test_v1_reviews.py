"""/v1/reviews and the /v1 magic links on a real database: the queue, one
review with its draft, approve (with edits, idempotent) and reject, all over
core/approval, the legacy pending resource's path. Cross-generation: a hold
made through either API is resolved from the other exactly once."""

from __future__ import annotations

import email
import email.policy
import secrets

import pytest
from apisupport import agent_key
from hitlsupport import FRIEND, hold, link_token, message_row, released, reset
from v1support import assert_envelope, messages_path

from e2a.core.db import single_connection

REVIEWS = "/v1/reviews"


@pytest.fixture(autouse=True)
def fresh(postfix, hitl_reinjection):
    reset(postfix, hitl_reinjection)


@pytest.fixture
def tenant(hitl_owner):
    return hitl_owner


def v1_hold(client, tenant, **fields) -> str:
    """A send through /v1 by the HITL agent: held (pending_review)."""
    result = client.simulate_post(messages_path(tenant.agent["email"]), headers=tenant.auth,
                                  json={"to": [FRIEND], "subject": "Draft for review",
                                        "text": "Hello, friend.", **fields})
    assert result.status_code == 202, result.text
    assert result.json["status"] == "pending_review"
    return result.json["message_id"]


def test_the_queue_lists_holds_of_both_generations(hitl_client, tenant):
    legacy = hold(hitl_client, tenant, tenant.agent, subject="legacy")
    current = v1_hold(hitl_client, tenant, subject="current")
    result = hitl_client.simulate_get(REVIEWS, headers=tenant.auth)
    assert result.status_code == 200, result.text
    items = {r["id"]: r for r in result.json["items"]}
    assert set(items) == {legacy, current}
    assert result.json["next_cursor"] is None
    one = items[current]
    assert (one["agent_email"], one["direction"], one["review_status"]) == (
        tenant.agent["email"], "outbound", "pending_review")
    assert (one["subject"], one["to"], one["header_from"]) == (
        "current", [FRIEND], tenant.agent["email"])
    assert one["envelope_from"] is None and one["verified_domain"] is None
    assert one["hold_reason"]["code"] == "outbound_send"
    first = hitl_client.simulate_get(REVIEWS, headers=tenant.auth, params={"limit": "1"})
    rest = hitl_client.simulate_get(REVIEWS, headers=tenant.auth, params={
        "limit": "1", "cursor": first.json["next_cursor"]})
    assert {first.json["items"][0]["id"], rest.json["items"][0]["id"]} == {legacy, current}


def test_get_shows_the_draft(hitl_client, tenant):
    held = v1_hold(hitl_client, tenant, html="<p>Hello</p>")
    result = hitl_client.simulate_get(f"{REVIEWS}/{held}", headers=tenant.auth)
    assert result.status_code == 200, result.text
    view = result.json
    assert (view["id"], view["direction"], view["review_status"]) == (
        held, "outbound", "pending_review")
    assert view["body"]["text"].strip() == "Hello, friend."
    assert view["body"]["html"] == "<p>Hello</p>"
    assert view["raw_message"] is None
    assert view["hold_reason"]["type"] == "send"
    assert_envelope(hitl_client.simulate_get(f"{REVIEWS}/msg_{'0' * 32}", headers=tenant.auth),
                    404, "not_found")


def test_approve_with_edits_sends_the_edited_draft_once(hitl_cfg, hitl_client, tenant,
                                                        hitl_reinjection):
    held = v1_hold(hitl_client, tenant)
    headers = {**tenant.auth, "Idempotency-Key": secrets.token_hex(16)}
    body = {"subject": "Reviewed", "to": ["other@elsewhere.example"],
            "text": "Hello, friend (reviewed)."}
    result = hitl_client.simulate_post(f"{REVIEWS}/{held}/approve", headers=headers, json=body)
    assert result.status_code == 202, result.text
    assert result.json == {"message_id": held, "status": "accepted", "method": "smtp",
                           "edited": True}
    replay = hitl_client.simulate_post(f"{REVIEWS}/{held}/approve", headers=headers, json=body)
    assert (replay.status_code, replay.json) == (202, result.json)
    [out] = released(hitl_reinjection)
    assert out.rcpt_tos == ["other@elsewhere.example"]
    sent = email.message_from_bytes(out.data, policy=email.policy.default)
    assert sent["Subject"] == "Reviewed"
    assert sent.get_body(("plain",)).get_content().strip() == "Hello, friend (reviewed)."
    assert message_row(hitl_cfg, held)["status"] == "sent"
    assert_envelope(hitl_client.simulate_post(f"{REVIEWS}/{held}/approve",
                                              headers=tenant.auth, json={}),
                    409, "message_not_pending")
    assert len(released(hitl_reinjection)) == 1


def test_approve_refuses_unknown_fields_and_bad_addresses(hitl_client, tenant,
                                                          hitl_reinjection):
    held = v1_hold(hitl_client, tenant)
    path = f"{REVIEWS}/{held}/approve"
    assert_envelope(hitl_client.simulate_post(path, headers=tenant.auth,
                                              json={"body_text": "legacy name"}),
                    422, "invalid_request")
    assert_envelope(hitl_client.simulate_post(path, headers=tenant.auth,
                                              json={"to": ["not an address"]}),
                    400, "invalid_recipient")
    assert released(hitl_reinjection) == []


def test_reject(hitl_cfg, hitl_client, tenant, hitl_reinjection):
    held = v1_hold(hitl_client, tenant)
    result = hitl_client.simulate_post(f"{REVIEWS}/{held}/reject", headers=tenant.auth,
                                       json={"reason": "not today"})
    assert result.status_code == 200, result.text
    assert result.json == {"message_id": held, "status": "review_rejected",
                           "rejection_reason": "not today"}
    assert message_row(hitl_cfg, held)["status"] == "rejected"
    assert_envelope(hitl_client.simulate_post(f"{REVIEWS}/{held}/reject", headers=tenant.auth,
                                              json={}), 409, "message_not_pending")
    assert_envelope(hitl_client.simulate_post(f"{REVIEWS}/{held}/reject", headers=tenant.auth,
                                              json={"reason": "x" * 2001}),
                    400, "invalid_request")
    assert released(hitl_reinjection) == []


def test_agent_keys_and_other_tenants_are_refused(hitl_cfg, hitl_client, tenant):
    held = v1_hold(hitl_client, tenant)
    key = {"Authorization": f"Bearer {agent_key(hitl_cfg, tenant, tenant.agent)}"}
    for method, path in (("GET", REVIEWS), ("GET", f"{REVIEWS}/{held}"),
                         ("POST", f"{REVIEWS}/{held}/approve"),
                         ("POST", f"{REVIEWS}/{held}/reject")):
        assert_envelope(hitl_client.simulate_request(method, path, headers=key, json={}),
                        403, "forbidden")
    from apisupport import make_tenant
    other = make_tenant(hitl_cfg)
    assert hitl_client.simulate_get(REVIEWS, headers=other.auth).json["items"] == []
    for method, path in (("GET", f"{REVIEWS}/{held}"), ("POST", f"{REVIEWS}/{held}/approve"),
                         ("POST", f"{REVIEWS}/{held}/reject")):
        assert_envelope(hitl_client.simulate_request(method, path, headers=other.auth,
                                                     json={}), 404, "not_found")
    assert message_row(hitl_cfg, held)["status"] == "pending_approval"


# -- one hold, two generations ---------------------------------------------------


def test_a_legacy_hold_is_approved_through_v1_once(hitl_cfg, hitl_client, tenant,
                                                   hitl_reinjection):
    held = hold(hitl_client, tenant, tenant.agent)
    approved = hitl_client.simulate_post(f"{REVIEWS}/{held}/approve", headers=tenant.auth)
    assert approved.status_code == 202, approved.text
    legacy = hitl_client.simulate_post(f"/api/v1/messages/{held}/approve",
                                       headers=tenant.auth)
    assert legacy.status_code == 409 and legacy.json["error"]["code"] == "not_pending"
    assert len(released(hitl_reinjection)) == 1
    with single_connection(hitl_cfg) as conn:
        types = [r["type"] for r in conn.execute(
            "SELECT type FROM events WHERE message_id = %s ORDER BY created_at", (held,))]
    assert types.count("email.approved") == 1


def test_a_v1_hold_is_resolved_through_the_legacy_api_once(hitl_cfg, hitl_client, tenant,
                                                           hitl_reinjection):
    held = v1_hold(hitl_client, tenant)
    legacy = hitl_client.simulate_post(f"/api/v1/messages/{held}/approve",
                                       headers=tenant.auth)
    assert legacy.status_code == 200, legacy.text
    assert_envelope(hitl_client.simulate_post(f"{REVIEWS}/{held}/approve",
                                              headers=tenant.auth), 409, "message_not_pending")
    assert_envelope(hitl_client.simulate_post(f"{REVIEWS}/{held}/reject",
                                              headers=tenant.auth), 409, "message_not_pending")
    assert len(released(hitl_reinjection)) == 1
    event = hitl_client.simulate_get("/v1/events", headers=tenant.auth,
                                     params={"message_id": held,
                                             "type": "email.review_approved"})
    assert [e["data"]["message_id"] for e in event.json["items"]] == [held]


def test_the_magic_links_are_mounted_under_v1(hitl_cfg, hitl_client, tenant,
                                              hitl_reinjection):
    held = v1_hold(hitl_client, tenant)
    token = link_token(hitl_cfg, held, "reject")
    page = hitl_client.simulate_get("/v1/reject", params={"t": token})
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert message_row(hitl_cfg, held)["status"] == "pending_approval"  # GET changes nothing
    done = hitl_client.simulate_post("/v1/reject", body=f"token={token}&reason=no",
                                     headers={"Content-Type":
                                              "application/x-www-form-urlencoded"})
    assert done.status_code == 200, done.text
    assert message_row(hitl_cfg, held)["status"] == "rejected"
    again = hitl_client.simulate_post("/api/v1/reject", body=f"token={token}",
                                      headers={"Content-Type":
                                               "application/x-www-form-urlencoded"})
    assert again.status_code == 409
    assert released(hitl_reinjection) == []
