"""The per-recipient report events and email.failed as /v1 shows them
(core/webhooks/v1events.py): the fields SDK 5.8.1's EmailDeliveredData,
EmailBouncedData and EmailFailedData require."""

from __future__ import annotations

from datetime import UTC, datetime

from e2a.core.webhooks import eventtypes, v1events

NOW = datetime(2026, 12, 7, 20, 0, tzinfo=UTC)
AGENT = "bot@agents.example"


def test_delivered_and_bounced_carry_the_one_recipient():
    stored = {"message_id": "msg_1", "agent_id": "ag_1", "delivered_to": "a@example.org",
              "smtp_detail": "250 2.0.0 ok", "subject": "Hi"}
    delivered = v1events.envelope("evt_1", eventtypes.EMAIL_DELIVERED, NOW, stored, AGENT)
    assert delivered["type"] == "email.delivered"
    data = delivered["data"]
    assert {k: data[k] for k in ("agent_email", "delivered_to", "direction", "message_id")} == {
        "agent_email": AGENT, "delivered_to": "a@example.org", "direction": "outbound",
        "message_id": "msg_1"}
    assert "agent_id" not in data
    bounced = v1events.envelope("evt_2", eventtypes.EMAIL_BOUNCED, NOW,
                                {**stored, "bounce_type": "permanent"}, AGENT)
    assert (bounced["type"], bounced["data"]["bounce_type"]) == ("email.bounced", "permanent")


def test_a_bounce_stored_before_per_recipient_reports_still_reads():
    # Older rows named the refused recipients in a list, with no bounce type.
    old = {"message_id": "msg_1", "agent_id": "ag_1", "recipients": ["a@example.org"],
           "status": "5.1.1", "delivery_error": "a@example.org: 550 no"}
    data = v1events.data(eventtypes.EMAIL_BOUNCED, old, AGENT, NOW)
    assert (data["delivered_to"], data["bounce_type"], data["direction"]) == (
        "a@example.org", "undetermined", "outbound")


def test_failed_has_the_sent_fields_and_the_reason():
    stored = {"message_id": "msg_1", "agent_id": "ag_1", "from": AGENT, "to": ["a@example.org"],
              "cc": [], "subject": "Hi", "type": "reply", "conversation_id": "",
              "reason": "552 5.3.4 too big", "reason_code": "submission.provider_rejected",
              "retryable": False}
    data = v1events.data(eventtypes.EMAIL_FAILED, stored, AGENT, NOW)
    required = {"agent_email", "direction", "from", "message_id", "message_type", "method",
                "reason", "subject", "to"}
    assert required <= data.keys()
    assert (data["message_type"], data["method"], data["reason"]) == (
        "reply", "smtp", "552 5.3.4 too big")
    assert v1events.stored_types(["email.failed"]) == ["email.failed"]
