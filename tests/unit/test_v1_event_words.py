"""core/v1events: the one event log in /v1's words (types both ways, data
with agent_email, the envelope), and the reference's signing vector over a
/v1 envelope's exact bytes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from e2a.core import dispatch, v1events, webhookpayload, webhooksig

AT = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


def test_types_both_ways():
    assert v1events.stored_types(["email.review_requested"]) == ["email.pending_approval"]
    assert v1events.stored_types(["email.review_approved", "email.review_rejected"]) == [
        "email.approved", "email.expired", "email.rejected"]
    assert v1events.v1_types(["email.approved", "email.expired", "email.received"]) == [
        "email.review_approved", "email.received"]
    with pytest.raises(v1events.UnknownType):
        v1events.stored_types(["email.approved"])  # a legacy name is no /v1 name
    assert v1events.v1_type("email.expired", {"status": "expired_approved"}) == \
        "email.review_approved"
    assert v1events.v1_type("email.expired", {"status": "expired_rejected"}) == \
        "email.review_rejected"


def test_data_has_agent_email_and_the_sdk_fields():
    envelope = v1events.envelope("evt_1", "email.received", AT, {
        "message_id": "msg_1", "agent_id": "ag_1", "recipient": "bot@x.example",
        "from": "a@b.example", "subject": "hi", "conversation_id": ""}, "bot@x.example")
    assert set(envelope) == {"type", "id", "schema_version", "created_at", "data"}
    assert envelope["schema_version"] == "1"
    data = envelope["data"]
    assert "agent_id" not in data and data["agent_email"] == "bot@x.example"
    assert (data["direction"], data["delivered_to"], data["to"], data["header_from"]) == (
        "inbound", "bot@x.example", ["bot@x.example"], "a@b.example")
    assert data["received_at"] == "2023-11-14T22:13:20Z"
    rejected = v1events.envelope("evt_2", "email.expired", AT, {
        "message_id": "msg_2", "status": "expired_rejected",
        "rejection_reason": "approval expired", "type": "send"}, None)
    assert rejected["type"] == "email.review_rejected"
    assert (rejected["data"]["reason"], rejected["data"]["auto_resolved"]) == (
        "approval expired", True)


def test_the_reference_vector_signs_the_encoded_envelope():
    body = webhookpayload.encode({"type": "email.sent", "id": "evt_vector",
                                  "schema_version": "1", "created_at": "2023-11-14T22:13:20Z",
                                  "data": {"message_id": "msg_vector"}})
    assert body == (b'{"type":"email.sent","id":"evt_vector","schema_version":"1",'
                    b'"created_at":"2023-11-14T22:13:20Z","data":{"message_id":"msg_vector"}}')
    header = webhooksig.header(["whsec_current_vector", "whsec_previous_vector"], 1700000000,
                               body)
    assert header == ("t=1700000000,"
                      "v1=1de00bc31e17fd3bec71b082a780ff6b2cbdf75a33dff23bf5fd17011ad480b4,"
                      "v1=5e52f2321124cafff81c81397278a776dd24a4087ae6aed8fcc8b9c183593872")


@pytest.mark.parametrize("status,approved_hook,rejected_hook", [
    ("expired_approved", True, False), ("expired_rejected", False, True)])
def test_an_expiry_reaches_the_v1_subscriber_of_its_outcome(status, approved_hook,
                                                            rejected_hook):
    event = {"type": "email.expired", "data": {"status": status}}

    def hook(v1_type: str, generation: str = "v1") -> dict:
        return {"events": v1events.stored_types([v1_type]), "filters": {},
                "generation": generation}

    assert dispatch.matches(hook("email.review_approved"), event) is approved_hook
    assert dispatch.matches(hook("email.review_rejected"), event) is rejected_hook
    # A legacy subscription to email.expired gets every expiry, as before.
    assert dispatch.matches({"events": ["email.expired"], "filters": {}}, event)
