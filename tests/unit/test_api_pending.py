"""The held-message endpoints on a real database: the owner's queue, one
held message, approve (with and without edits, idempotent) and reject.

Messages are held as the API holds them (a send by an agent with HITL on,
answered 202) with a real SMTP server (aiosmtpd) as Postfix's submit
service; an approval releases to another one standing in for Postfix's
reinjection service."""

from __future__ import annotations

import base64
import email
import email.policy
import secrets

import pytest
from apisupport import add_agent, agent_key, assert_error, make_tenant
from filtersupport import QUEUED_AS
from hitlsupport import FRIEND, copies_of_hold, enable_hitl, hold, message_row, released, reset
from sendsupport import received, reply_path

from e2a.api.resources.pending import MAX_PENDING_PAGE
from e2a.core import verp
from e2a.core.db import single_connection

LIST = "/api/v1/messages"
PDF = b"%PDF-1.7\n\x00\x01 binary"


def detail_path(message_id: str) -> str:
    return f"{LIST}/{message_id}"


@pytest.fixture(autouse=True)
def fresh(postfix, hitl_reinjection):
    reset(postfix, hitl_reinjection)


@pytest.fixture
def tenant(hitl_owner):
    """A fresh owner (its queue starts empty) whose agent holds what it sends."""
    return hitl_owner


# -- the queue -------------------------------------------------------------


def test_the_queue_lists_held_messages_of_every_agent_soonest_expiry_first(
        hitl_cfg, hitl_client, tenant):
    second_agent = add_agent(hitl_cfg, tenant)
    enable_hitl(hitl_client, tenant, second_agent)
    later = hold(hitl_client, tenant, tenant.agent, subject="later")
    sooner = hold(hitl_client, tenant, second_agent, subject="sooner", cc=["cc@elsewhere.example"])
    with single_connection(hitl_cfg) as conn:
        conn.execute("UPDATE messages SET approval_expires_at = now() + interval '1 hour' "
                     "WHERE id = %s", (sooner,))
    decided = hold(hitl_client, tenant, tenant.agent, subject="decided")
    assert hitl_client.simulate_post(detail_path(decided) + "/reject", headers=tenant.auth,
                                json={}).status_code == 200

    result = hitl_client.simulate_get(LIST, params={"status": "pending_approval"},
                                 headers=tenant.auth)

    assert result.status_code == 200, result.text
    listed = result.json["messages"]
    assert [m["id"] for m in listed] == [sooner, later]
    first = listed[0]
    assert first["agent_id"] == second_agent["id"]
    assert first["subject"] == "sooner"
    assert first["to"] == [FRIEND] and first["cc"] == ["cc@elsewhere.example"]
    assert first["bcc"] == []
    assert (first["status"], first["direction"], first["type"]) == (
        "pending_approval", "outbound", "send")
    assert first["approval_expires_at"].endswith("Z") and first["created_at"].endswith("Z")
    assert first["conversation_id"].startswith("conv_")
    # No content in the queue: that is the detail's.
    assert not {"body_text", "body_html", "attachments"} & set(first)


def test_the_queue_is_paged(hitl_cfg, hitl_client, tenant):
    first = hold(hitl_client, tenant, tenant.agent, subject="soonest")
    with single_connection(hitl_cfg) as conn:
        conn.execute("UPDATE messages SET approval_expires_at = now() + interval '1 hour' "
                     "WHERE id = %s", (first,))
    held = [first, *copies_of_hold(hitl_cfg, first, MAX_PENDING_PAGE + 4)]

    # Unpaged clients (the 2.x SDKs) get the first MAX_PENDING_PAGE, and a token.
    whole = hitl_client.simulate_get(LIST, params={"status": "pending_approval"},
                                     headers=tenant.auth)
    assert [m["id"] for m in whole.json["messages"]] == held[:MAX_PENDING_PAGE]
    assert whole.json["next_token"]

    seen: list[str] = []
    params = {"status": "pending_approval", "page_size": "40"}
    while True:
        page = hitl_client.simulate_get(LIST, params=params, headers=tenant.auth)
        assert page.status_code == 200, page.text
        seen += [m["id"] for m in page.json["messages"]]
        if not page.json["next_token"]:
            break
        params["token"] = page.json["next_token"]
    assert seen == held

    # A token continues only the queue it came from.
    scoped = {"Authorization": f"Bearer {agent_key(hitl_cfg, tenant, add_agent(hitl_cfg, tenant))}"}
    other = hitl_client.simulate_get(LIST, params={**params, "token": whole.json["next_token"]},
                                     headers=scoped)
    assert_error(other, 400, "invalid_request")


@pytest.mark.parametrize("params", [{}, {"status": "sent"}, {"status": "all"},
                                    {"status": "PENDING_APPROVAL"}])
def test_the_queue_takes_only_status_pending_approval(hitl_client, tenant, params):
    result = hitl_client.simulate_get(LIST, params=params, headers=tenant.auth)
    assert assert_error(result, 400, "invalid_request")["details"] == {"param": "status"}


def test_an_agent_key_sees_only_its_agents_queue(hitl_cfg, hitl_client, tenant):
    other_agent = add_agent(hitl_cfg, tenant)
    enable_hitl(hitl_client, tenant, other_agent)
    mine = hold(hitl_client, tenant, tenant.agent)
    theirs = hold(hitl_client, tenant, other_agent)
    scoped = {"Authorization": f"Bearer {agent_key(hitl_cfg, tenant, tenant.agent)}"}

    listed = hitl_client.simulate_get(LIST, params={"status": "pending_approval"}, headers=scoped)

    assert [m["id"] for m in listed.json["messages"]] == [mine]
    assert hitl_client.simulate_get(detail_path(mine), headers=scoped).status_code == 200
    assert_error(hitl_client.simulate_get(detail_path(theirs), headers=scoped), 404, "not_found")


def test_another_users_held_messages_stay_out_of_sight(hitl_cfg, hitl_client, tenant,
                                                       hitl_reinjection):
    held = hold(hitl_client, tenant, tenant.agent)
    stranger = make_tenant(hitl_cfg)

    listed = hitl_client.simulate_get(LIST, params={"status": "pending_approval"},
                                 headers=stranger.auth)
    assert listed.json == {"messages": [], "next_token": ""}
    for method, path in (("GET", detail_path(held)), ("POST", detail_path(held) + "/approve"),
                         ("POST", detail_path(held) + "/reject")):
        result = hitl_client.simulate_request(method, path, headers=stranger.auth, json={})
        assert_error(result, 404, "not_found")
        assert tenant.agent["email"] not in result.text
    assert message_row(hitl_cfg, held)["status"] == "pending_approval"
    assert released(hitl_reinjection) == []


# -- one held message ------------------------------------------------------


def test_the_detail_has_the_draft_while_held(hitl_client, tenant):
    held = hold(hitl_client, tenant, tenant.agent, html_body="<p>Hello, friend.</p>",
                bcc=["audit@elsewhere.example"],
                attachments=[{"filename": "q3.pdf", "content_type": "application/pdf",
                              "data": base64.b64encode(PDF).decode()}])

    result = hitl_client.simulate_get(detail_path(held), headers=tenant.auth)

    assert result.status_code == 200, result.text
    detail = result.json
    assert detail["id"] == held and detail["status"] == "pending_approval"
    assert detail["body_text"] == "Hello, friend.\nSee the attached numbers."
    assert detail["body_html"] == "<p>Hello, friend.</p>"
    assert detail["bcc"] == ["audit@elsewhere.example"]
    assert [(a["filename"], a["content_type"], base64.b64decode(a["data"]))
            for a in detail["attachments"]] == [("q3.pdf", "application/pdf", PDF)]
    assert detail["email_message_id"].startswith(f"<{held}@")
    assert detail["approval_expires_at"].endswith("Z")
    assert (detail["edited"], detail["reviewed_by_user_id"], detail["reviewed_by_name"],
            detail["reviewed_at"], detail["provider_message_id"]) == (False, "", "", "", "")
    assert "inbound" not in detail  # not a reply


def test_a_held_reply_carries_the_inbound_message_it_answers(hitl_cfg, hitl_client, tenant):
    inbound_id = received(hitl_cfg, tenant.agent, sender="alice@example.org",
                          subject="Quarterly report", spf="pass", dkim="pass", dmarc="fail")
    held = hold(hitl_client, tenant, tenant.agent,
                path=reply_path(tenant.agent["email"], inbound_id), body="Thanks, Alice.")

    detail = hitl_client.simulate_get(detail_path(held), headers=tenant.auth).json

    assert detail["type"] == "reply" and detail["subject"] == "Re: Quarterly report"
    assert detail["inbound"]["sender"] == "alice@example.org"
    assert detail["inbound"]["subject"] == "Quarterly report"
    assert detail["inbound"]["auth_headers"] == {"spf": "pass", "dkim": "pass", "dmarc": "fail"}
    assert detail["inbound"]["created_at"].endswith("Z")


def test_an_inbound_message_is_no_held_message(hitl_cfg, hitl_client, tenant):
    inbound_id = received(hitl_cfg, tenant.agent)
    assert_error(hitl_client.simulate_get(detail_path(inbound_id), headers=tenant.auth),
                 404, "not_found")
    assert_error(hitl_client.simulate_post(detail_path(inbound_id) + "/approve",
                                      headers=tenant.auth, json={}), 404, "not_found")


# -- approve ---------------------------------------------------------------


def test_approve_releases_the_held_message_once(hitl_cfg, hitl_client, tenant, hitl_reinjection):
    held = hold(hitl_client, tenant, tenant.agent)

    result = hitl_client.simulate_post(detail_path(held) + "/approve", headers=tenant.auth)

    assert result.status_code == 200, result.text
    assert result.json == {"message_id": held, "status": "sent", "edited": False,
                           "method": "smtp", "provider_message_id": QUEUED_AS}
    [out] = released(hitl_reinjection)
    assert out.mail_from == verp.return_path(held, tenant.agent["domain"], verp.key(hitl_cfg))
    assert out.rcpt_tos == [FRIEND]
    assert b"Subject: Draft for review" in out.data
    row = message_row(hitl_cfg, held)
    assert (row["status"], row["reviewed_by_user_id"]) == ("sent", tenant.user["id"])
    assert (row["body_text"], row["body_html"], row["attachments"]) == (None, None, None)
    detail = hitl_client.simulate_get(detail_path(held), headers=tenant.auth).json
    assert detail["status"] == "sent" and detail["body_text"] == ""
    assert detail["reviewed_by_user_id"] == tenant.user["id"]
    assert detail["reviewed_by_name"] == tenant.user["email"]  # a user without a name
    assert detail["reviewed_at"].endswith("Z")

    again = hitl_client.simulate_post(detail_path(held) + "/approve", headers=tenant.auth)
    assert assert_error(again, 409, "not_pending")["details"] == {"status": "sent"}
    assert len(released(hitl_reinjection)) == 1


def test_approve_with_edits_sends_the_edited_draft(hitl_cfg, hitl_client, tenant, hitl_reinjection):
    held = hold(hitl_client, tenant, tenant.agent)

    result = hitl_client.simulate_post(detail_path(held) + "/approve", headers=tenant.auth,
                                  json={"subject": "Reviewed draft",
                                        "to": ["other@elsewhere.example"],
                                        "body_text": "Hello, friend (reviewed)."})

    assert result.status_code == 200, result.text
    assert result.json["edited"] is True
    [out] = released(hitl_reinjection)
    assert out.rcpt_tos == ["other@elsewhere.example"]
    sent = email.message_from_bytes(out.data, policy=email.policy.default)
    assert sent["Subject"] == "Reviewed draft"
    assert sent.get_body(("plain",)).get_content().strip() == "Hello, friend (reviewed)."
    row = message_row(hitl_cfg, held)
    assert (row["subject"], row["to_recipients"], row["edited"]) == (
        "Reviewed draft", ["other@elsewhere.example"], True)


def test_overrides_equal_to_the_draft_are_no_edit(hitl_client, tenant, hitl_reinjection):
    held = hold(hitl_client, tenant, tenant.agent)
    result = hitl_client.simulate_post(detail_path(held) + "/approve", headers=tenant.auth,
                                  json={"subject": "Draft for review", "to": [FRIEND],
                                        "cc": None})
    assert result.status_code == 200, result.text
    assert result.json["edited"] is False
    assert len(released(hitl_reinjection)) == 1


@pytest.mark.parametrize("body,param", [
    ({"to": ["not an address"]}, "to"),
    ({"to": []}, "to"),
    ({"subject": 7}, "subject"),
    ({"attachments": [{"filename": "a.txt", "content_type": "text/plain",
                       "data": "not base64!"}]}, "attachments[0].data"),
])
def test_invalid_edits_are_refused_and_nothing_leaves(hitl_cfg, hitl_client, tenant,
                                                      hitl_reinjection, body, param):
    held = hold(hitl_client, tenant, tenant.agent)
    result = hitl_client.simulate_post(detail_path(held) + "/approve", headers=tenant.auth,
                                  json=body)
    assert assert_error(result, 400, "invalid_request")["details"] == {"param": param}
    assert released(hitl_reinjection) == []
    assert message_row(hitl_cfg, held)["status"] == "pending_approval"


def test_an_agent_key_may_not_approve_or_reject(hitl_cfg, hitl_client, tenant, hitl_reinjection):
    held = hold(hitl_client, tenant, tenant.agent)
    scoped = {"Authorization": f"Bearer {agent_key(hitl_cfg, tenant, tenant.agent)}"}
    for action in ("approve", "reject"):
        result = hitl_client.simulate_post(f"{detail_path(held)}/{action}", headers=scoped, json={})
        assert_error(result, 403, "forbidden")
    assert released(hitl_reinjection) == []
    assert message_row(hitl_cfg, held)["status"] == "pending_approval"


def test_an_approve_retried_with_its_idempotency_key_is_replayed(hitl_client, tenant,
                                                                 hitl_reinjection):
    held = hold(hitl_client, tenant, tenant.agent)
    headers = {**tenant.auth, "Idempotency-Key": secrets.token_hex(8)}

    first = hitl_client.simulate_post(detail_path(held) + "/approve", headers=headers, json={})
    second = hitl_client.simulate_post(detail_path(held) + "/approve", headers=headers, json={})

    assert first.status_code == second.status_code == 200
    assert second.json == first.json
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert len(released(hitl_reinjection)) == 1
    other_body = hitl_client.simulate_post(detail_path(held) + "/approve", headers=headers,
                                      json={"subject": "changed"})
    assert_error(other_body, 422, "idempotency_key_reused")


def test_an_approval_the_mail_server_refuses_leaves_the_message_held(hitl_cfg, hitl_client, tenant,
                                                                     hitl_reinjection):
    held = hold(hitl_client, tenant, tenant.agent)
    hitl_reinjection[0].data_reply = "451 4.3.0 try again later"

    result = hitl_client.simulate_post(detail_path(held) + "/approve", headers=tenant.auth)

    assert_error(result, 503, "release_unavailable")
    assert result.headers["Retry-After"]
    assert message_row(hitl_cfg, held)["status"] == "pending_approval"
    hitl_reinjection[0].data_reply = ""
    assert hitl_client.simulate_post(detail_path(held) + "/approve",
                                headers=tenant.auth).status_code == 200


def test_an_approval_the_mail_server_refuses_for_good_says_why(hitl_cfg, hitl_client, tenant,
                                                              hitl_reinjection):
    # 552 once our DKIM signature made it too big: retrying would not help;
    # the reviewer reads why, the message stays held (to edit or reject).
    held = hold(hitl_client, tenant, tenant.agent)
    hitl_reinjection[0].data_reply = "552 5.3.4 Message size exceeds fixed limit"
    try:
        result = hitl_client.simulate_post(detail_path(held) + "/approve", headers=tenant.auth)
    finally:
        hitl_reinjection[0].data_reply = ""
    assert_error(result, 422, "release_refused")
    assert "552 5.3.4 Message size exceeds fixed limit" in result.json["error"]["message"]
    found = message_row(hitl_cfg, held)
    assert found["status"] == "pending_approval"
    assert "552 5.3.4" in found["delivery_error"]


# -- reject ----------------------------------------------------------------


def test_reject_discards_the_message_and_keeps_the_reason(hitl_cfg, hitl_client, tenant,
                                                          hitl_reinjection):
    held = hold(hitl_client, tenant, tenant.agent)

    result = hitl_client.simulate_post(detail_path(held) + "/reject", headers=tenant.auth,
                                  json={"reason": "  wrong tone  "})

    assert result.status_code == 200, result.text
    assert result.json == {"message_id": held, "status": "rejected",
                           "rejection_reason": "wrong tone"}
    row = message_row(hitl_cfg, held)
    assert (row["status"], row["rejection_reason"], row["reviewed_by_user_id"]) == (
        "rejected", "wrong tone", tenant.user["id"])
    assert (row["body_text"], row["attachments"], row["raw_message"]) == (None, None, None)
    assert released(hitl_reinjection) == []
    again = hitl_client.simulate_post(detail_path(held) + "/reject", headers=tenant.auth, json={})
    assert assert_error(again, 409, "not_pending")["details"] == {"status": "rejected"}
    approve = hitl_client.simulate_post(detail_path(held) + "/approve", headers=tenant.auth)
    assert_error(approve, 409, "not_pending")


def test_reject_without_a_body_and_with_a_bad_one(hitl_client, tenant):
    held = hold(hitl_client, tenant, tenant.agent)
    too_long = hitl_client.simulate_post(detail_path(held) + "/reject", headers=tenant.auth,
                                    json={"reason": "x" * 1001})
    assert_error(too_long, 400, "invalid_request")
    not_json = hitl_client.simulate_post(detail_path(held) + "/reject", headers={
        **tenant.auth, "Content-Type": "application/json"}, body="{")
    assert_error(not_json, 400, "invalid_json")
    result = hitl_client.simulate_post(detail_path(held) + "/reject", headers=tenant.auth)
    assert result.status_code == 200, result.text
    assert result.json["rejection_reason"] == ""
