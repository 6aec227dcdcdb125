"""A held message's owner is emailed through the real Postfix by the
sandbox's worker: one notification, with the approve and reject links, the
review link and the reply address, and never the body."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import dkim
import pytest
import requests
from hitlowner import held_and_notified, new_owner, status_of
from sandbox_harness import RunningSandbox, sandbox_resolver

from e2a.core.crypto import serverkeys as keys
from e2a.core.crypto import tokens
from e2a.core.db import single_connection
from e2a.core.outbound import replyaddress

pytestmark = pytest.mark.system


def test_held_message_notifies_its_owner_with_links_and_no_body(
        sandbox: RunningSandbox) -> None:
    owner = new_owner(sandbox)
    held = held_and_notified(sandbox, owner, "Invoice")
    note, message_id, subject = held.notification, held.message_id, held.subject
    assert held.body.encode() not in note.data
    assert note.mail_from == "<>"  # bounces of notifications go nowhere
    msg = note.message
    assert msg["Subject"] == f"Approval needed: {subject}"
    text = msg.get_content()
    assert owner.agent in text and "friend@elsewhere.test" in text

    approve, reject, review, dashboard = [line for line in text.splitlines()
                                          if line.startswith(sandbox.api_url)]
    assert review == f"{sandbox.api_url}/api/v1/messages/{message_id}"
    assert dashboard == f"{sandbox.api_url}/dashboard/pending/{message_id}"
    # Signed out, the dashboard's page asks for a sign-in, and comes back to it.
    page = requests.get(dashboard, timeout=15, allow_redirects=False)
    assert page.status_code == 303
    assert page.headers["Location"].endswith(f"%2Fdashboard%2Fpending%2F{message_id}")
    for action, url in (("approve", approve), ("reject", reject)):
        assert url.startswith(f"{sandbox.api_url}/api/v1/{action}?token=")
        link = tokens.verify_magic_link(
            keys.for_owner(sandbox.box.config(), keys.MAGIC_LINK, owner.user_id),
            parse_qs(urlsplit(url).query)["token"][0])
        assert (link.message_id, link.action) == (message_id, action)
        # The link opens the confirmation page; opening it changes nothing.
        page = requests.get(url, timeout=15)
        assert page.status_code == 200, page.text[:300]
    assert status_of(sandbox, message_id) == "pending_approval"

    reply_to = replyaddress.parse(str(msg["Reply-To"]))
    assert reply_to is not None and reply_to.message_id == message_id
    assert replyaddress.verify(
        reply_to, keys.for_owner(sandbox.box.config(), keys.REPLY_ADDRESS, owner.user_id))
    # Never with a secret the owner's agents hold.
    assert not replyaddress.verify(reply_to, owner.secret.encode())
    # Signed with the shared domain's key, which receivers find in DNS.
    with sandbox_resolver(sandbox):
        assert dkim.verify(note.data)

    with single_connection(sandbox.box.config()) as conn:
        row = conn.execute("SELECT notified_at FROM messages WHERE id = %s",
                           (message_id,)).fetchone()
    assert row["notified_at"] is not None
    # The sentinel: another message of the owner held after it. Its
    # notification means the worker went over the held messages again since
    # the first one's: that one was not sent twice.
    later = held_and_notified(sandbox, owner, "Sentinel")
    notes = [c for c in sandbox.capture.messages() if c.rcpt_tos == [owner.email]]
    assert sorted(str(c.message["Subject"]) for c in notes) == sorted(
        [f"Approval needed: {subject}", f"Approval needed: {later.subject}"])
