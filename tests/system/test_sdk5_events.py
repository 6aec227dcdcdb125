"""Today's published SDK, exactly ``e2a==5.8.1``, against the live sandbox on
the slice over the one hold and the one event log: reviews (approve with
edits, reject), a /v1 webhook delivery the SDK's own ``construct_event``
verifies, ``listen()`` receiving an envelope frame for mail that came in by
SMTP, and the event log (list, get)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from hitlowner import FRIEND, new_owner, send_held, status_of, wait_held
from sandbox_harness import RunningSandbox, compose, smtp_send, wait_until
from sdk5_session import Sdk5, session
from test_webhooks import own_workers, receiver  # noqa: F401 (fixtures)

from sandbox.stack import SHARED_DOMAIN

pytestmark = pytest.mark.system

SENDER = "ada@sandbox.test"


@pytest.fixture(scope="module")
def owner(sandbox: RunningSandbox):
    return new_owner(sandbox)


@pytest.fixture(scope="module")
def sdk(sandbox: RunningSandbox, owner) -> Iterator[Sdk5]:
    with session(sandbox.api_url, owner.api_key) as client:
        yield client


def held(sandbox, owner, what: str) -> tuple[str, str]:
    subject = f"{what} {secrets.token_hex(4)}"
    message_id = send_held(sandbox, owner, subject, f"the draft of {what}")
    wait_held(sandbox, message_id)
    return message_id, subject


def test_reviews_approve_with_edits(sandbox, owner, sdk):
    message_id, subject = held(sandbox, owner, "approve")
    queue = sdk("reviews.list")
    mine = next(r for r in queue if r["id"] == message_id)
    assert (mine["agent_email"], mine["review_status"], mine["subject"]) == (
        owner.agent, "pending_review", subject)
    review = sdk("reviews.get", message_id)
    assert review["body"]["text"].strip() == "the draft of approve"
    result = sdk("reviews.approve", message_id, {"subject": f"{subject} (edited)",
                                                "text": "reviewed text"})
    assert (result["message_id"], result["status"], result["edited"]) == (
        message_id, "accepted", True)
    out = sandbox.capture.wait_for(
        lambda c: FRIEND in c.rcpt_tos and f"{subject} (edited)" in str(c.message["Subject"]),
        timeout=30)
    assert "reviewed text" in out.message.get_body(("plain",)).get_content()
    assert status_of(sandbox, message_id) == "sent"
    # Then the event log has its outcome, in /v1's words.
    events = sdk("events.list", message_id=message_id, type="email.review_approved")
    assert [e["data"]["message_id"] for e in events] == [message_id]
    one = sdk("events.get", events[0]["id"])
    assert (one["type"], one["schema_version"], one["agent_email"]) == (
        "email.review_approved", "1", owner.agent)
    assert one["data"]["edited"] is True


def test_reviews_reject(sandbox, owner, sdk):
    message_id, _ = held(sandbox, owner, "reject")
    result = sdk("reviews.reject", message_id, {"reason": "not this one"})
    assert (result["status"], result["rejection_reason"]) == ("review_rejected",
                                                              "not this one")
    assert status_of(sandbox, message_id) == "rejected"
    assert message_id not in {r["id"] for r in sdk("reviews.list")}


def test_a_webhook_delivery_passes_construct_event(sandbox, owner, sdk, receiver,  # noqa: F811
                                                   own_workers):  # noqa: F811
    own_workers("v1-worker")
    made = sdk("webhooks.create", {"url": receiver.url("/v1"),
                                   "events": ["email.received"],
                                   "filters": {"agent_emails": [owner.agent]}})
    assert made["signing_secret"].startswith("whsec_")
    rcpt = owner.agent
    reply = smtp_send(sandbox.smtp_port, SENDER, rcpt,
                      compose(SENDER, rcpt, "for the hook", "Hi.\n"))
    assert reply.code == 250, reply
    [request] = receiver.wait_for(1, timeout=30)
    event = sdk("construct_event", request.body.decode(), request.headers["X-E2A-Signature"],
                made["signing_secret"])
    assert (event["type"], event["schema_version"]) == ("email.received", "1")
    assert event["data"]["agent_email"] == owner.agent
    assert event["data"]["subject"] == "for the hook"
    # The same event, by its id, in the event log; and its delivery listed.
    assert sdk("events.get", event["id"])["data"]["message_id"] == event["data"]["message_id"]
    wait_until(lambda: any(d["status"] == "delivered"
                           for d in sdk("webhooks.deliveries", made["id"])),
               timeout=20, what="the delivery recorded")


def test_listen_receives_an_envelope_for_smtp_mail(sandbox, sdk):
    # An agent of its own: its first unread mail is the one sent here.
    agent = sdk("agents.create", {"email": f"listen-{secrets.token_hex(3)}@{SHARED_DOMAIN}"})
    subject = f"listen {secrets.token_hex(4)}"
    reply = smtp_send(sandbox.smtp_port, SENDER, agent["email"],
                      compose(SENDER, agent["email"], subject, "Hi.\n"))
    assert reply.code == 250, reply
    event = sdk("listen.first", agent["email"], 20)
    assert (event["type"], event["schema_version"]) == ("email.received", "1")
    assert event["data"]["subject"] == subject
    assert event["data"]["delivered_to"] == agent["email"]
    # The frame is the event log's event, by the same id.
    assert sdk("events.get", event["id"])["data"]["message_id"] == event["data"]["message_id"]
