"""Delivery status from Postfix itself, end to end: the published SDK 5.8.1
sends through /v1 to two recipients, the capture server (the internet)
refuses one with 550 and takes the other, Postfix reports both to the VERP
return path (the content filter asked for success, delay and failure
reports at reinjection), and the milter turns the reports into each
recipient's fate: the message, its lifecycle and its events say so, once."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sandbox_harness import RunningSandbox, compose, smtp_send, wait_until
from sdk5_session import Sdk5, session

from sandbox.stack import SHARED_DOMAIN

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def account(sandbox: RunningSandbox):
    return sandbox.box.bootstrap(user_email="dsn@sandbox.test", slug="dsn")


@pytest.fixture(scope="module")
def sdk(sandbox: RunningSandbox, account) -> Iterator[Sdk5]:
    with session(sandbox.api_url, account.api_key) as client:
        yield client


@pytest.fixture(scope="module")
def agent(sdk) -> str:
    email = f"dsn-{secrets.token_hex(3)}@{SHARED_DOMAIN}"
    sdk("agents.create", {"email": email, "name": "Reports"})
    return email


def events_of(sdk, message_id: str, event_type: str) -> list[dict[str, Any]]:
    return sdk("events.list", message_id=message_id, type=event_type)


def test_each_recipients_fate_comes_from_postfixs_reports(sdk, agent):
    tag = secrets.token_hex(4)
    friend, refused = f"friend-{tag}@elsewhere.test", f"bounce-{tag}@elsewhere.test"
    sent = sdk("messages.send", agent, {"to": [friend, refused], "subject": f"fates {tag}",
                                        "text": "One of you will not get this."}, wait="sent")
    # wait=sent: answered once Postfix's outbound queue had it.
    assert sent["status"] == "sent", sent
    assert sent["provider_message_id"]
    message_id = sent["message_id"]

    message = wait_until(
        lambda: (m := sdk("messages.get", agent, message_id))["delivery_status"] == "bounced"
        and f"{friend}: delivered" in (m.get("delivery_detail") or "") and m,
        timeout=30, what="both recipients reported on")
    detail = message["delivery_detail"]
    # Each recipient with what its server said.
    assert f"{friend}: delivered: 250 2.0.0 captured" in detail
    assert f"{refused}: bounced: 550 5.1.1 <{refused}>: Recipient address rejected" in detail

    page = sdk("messages.get_lifecycle", agent, message_id)
    steps = [(t["reason_code"], t.get("recipient")) for t in page["items"]]
    assert steps[:3] == [("acceptance.outbound_api", None),
                         ("queue.outbound_submission", None),
                         ("submission.upstream_accepted", None)]
    assert sorted(steps[3:]) == [("delivery.permanent_bounce", refused),
                                 ("delivery.recipient_server_accepted", friend)]
    bounce = next(t for t in page["items"] if t["reason_code"] == "delivery.permanent_bounce")
    assert (bounce["stage"], bounce["outcome"], bounce["retryable"]) == (
        "delivery", "bounced", False)
    assert bounce["evidence"]["smtp_detail"].startswith("550 5.1.1")
    assert bounce["correlation_ids"]["provider_message_id"] == sent["provider_message_id"]
    occurred = [t["occurred_at"] for t in page["items"]]
    assert occurred == sorted(occurred)

    # Pages follow the cursor, oldest first, with nothing twice.
    first = sdk("messages.get_lifecycle", agent, message_id, limit=2)
    assert first["next_cursor"]
    rest = sdk("messages.get_lifecycle", agent, message_id, limit=50,
               cursor=first["next_cursor"])
    assert [t["id"] for t in first["items"] + rest["items"]] == [
        t["id"] for t in page["items"]]

    # One event per recipient's outcome, in /v1's shapes, and no second one
    # while Postfix's queue settles.
    time.sleep(3)
    [delivered] = events_of(sdk, message_id, "email.delivered")
    [bounced] = events_of(sdk, message_id, "email.bounced")
    assert (delivered["data"]["delivered_to"], delivered["data"]["direction"]) == (
        friend, "outbound")
    assert delivered["data"]["smtp_detail"] == "250 2.0.0 captured"
    assert (bounced["data"]["delivered_to"], bounced["data"]["bounce_type"]) == (
        refused, "permanent")
    assert len(events_of(sdk, message_id, "email.sent")) == 1


def test_lifecycle_of_another_accounts_message_is_not_found(sandbox, sdk, agent):
    sent = sdk("messages.send", agent, {"to": [f"friend-{secrets.token_hex(3)}@elsewhere.test"],
                                        "subject": "mine", "text": "hello"})
    other = sandbox.api("GET", f"/v1/agents/{sandbox.agent_email}/messages/"
                               f"{sent['message_id']}/lifecycle")
    assert other.status_code == 404, other.text


def test_inbound_lifecycle_is_acceptance_and_dmarc(sandbox, sdk, agent):
    subject = f"inbound steps {secrets.token_hex(4)}"
    sender = "ada@sandbox.test"
    reply = smtp_send(sandbox.smtp_port, sender, agent,
                      compose(sender, agent, subject, "hello"))
    assert reply.code == 250, reply
    [message] = wait_until(lambda: [m for m in sdk("messages.list", agent)
                                    if m["subject"] == subject],
                           timeout=30, what="the message in the inbox")
    page = sdk("messages.get_lifecycle", agent, message["id"])
    steps = [(t["stage"], t["reason_code"], t["direction"]) for t in page["items"]]
    assert steps[0] == ("accepted", "acceptance.inbound_smtp", "inbound")
    assert steps[1][0] == "authentication" and steps[1][1].startswith("authentication.dmarc_")
    assert page["items"][1]["evidence"]["dmarc"] in ("pass", "fail", "none", "temperror",
                                                     "permerror")
    assert len(steps) == 2
