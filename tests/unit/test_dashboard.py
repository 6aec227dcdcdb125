"""The review dashboard on a real database, through the whole Falcon app:
sign-in by mailed link (the mail reaches a real SMTP server standing in for
Postfix's reinjection service), the session cookie, CSRF, tenant isolation
in every URL, and approving/rejecting through the approval core."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import html
import re
import time
from typing import Any
from urllib.parse import urlencode

import falcon
import pytest
from apisupport import add_agent, add_domain, agent_key, insert_message, make_tenant
from hitlsupport import (
    FRIEND,
    enable_hitl,
    hold,
    link_token,
    message_row,
    released,
    reset,
)
from servicesupport import write_config

from e2a.api.dashboard import pending, web
from e2a.core import config
from e2a.core.db import single_connection
from e2a.core.webhooks import subscriptions

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
LINK = re.compile(r"(http\S+/dashboard/signin\?token=[A-Za-z0-9_-]+)")
FULL_LINK = re.compile(r"(http\S+/dashboard/signin\?\S+)")


@pytest.fixture(autouse=True)
def fresh(postfix, hitl_reinjection, hitl_cfg):
    reset(postfix, hitl_reinjection)
    with single_connection(hitl_cfg) as conn:
        conn.execute("DELETE FROM rate_limits WHERE bucket LIKE 'dashboard-signin-%'")


@pytest.fixture
def owner(hitl_cfg, hitl_client):
    tenant = make_tenant(hitl_cfg)
    enable_hitl(hitl_client, tenant, tenant.agent)
    return tenant


class Browser:
    """A cookie jar over the Falcon test client."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.cookies: dict[str, str] = {}

    def _keep(self, result: Any) -> Any:
        for name, cookie in result.cookies.items():
            if cookie.value:
                self.cookies[name] = cookie.value
            else:
                self.cookies.pop(name, None)
        return result

    def get(self, path: str, **kw: Any) -> Any:
        return self._keep(self.client.simulate_get(path, cookies=self.cookies, **kw))

    def post(self, path: str, fields: dict[str, str], **kw: Any) -> Any:
        return self._keep(self.client.simulate_post(path, cookies=self.cookies, headers=FORM,
                                                     body=urlencode(fields), **kw))


def csrf_of(page: str) -> str:
    return html.unescape(re.search(r'name="csrf" value="([^"]*)"', page).group(1))


def sign_in_mails(reinjection, address: str) -> list[str]:
    found = []
    for item in released(reinjection):
        if item.rcpt_tos == [address]:
            msg = email.message_from_bytes(item.data, policy=email.policy.default)
            if "sign-in" in str(msg["Subject"]):
                found.append(msg.get_content())
    return found


def wait_for_link(reinjection, address: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        mails = sign_in_mails(reinjection, address)
        if mails:
            return LINK.search(mails[-1]).group(1)
        time.sleep(0.05)
    raise AssertionError(f"no sign-in mail for {address}")


def ask_for_link(browser: Browser, address: str) -> Any:
    page = browser.get("/dashboard/login")
    assert page.status_code == 200
    return browser.post("/dashboard/login", {"email": address, "csrf": csrf_of(page.text)})


def signed_in(client, reinjection, address: str) -> Browser:
    browser = Browser(client)
    assert ask_for_link(browser, address).status_code == 200
    url = wait_for_link(reinjection, address)
    path = url[url.index("/dashboard/"):]
    page = browser.get(path)
    assert page.status_code == 200, page.text
    token = path.partition("token=")[2]
    result = browser.post("/dashboard/signin", {"token": token, "csrf": csrf_of(page.text)})
    assert result.status_code == 303, result.text
    assert result.headers["Location"] == "/dashboard/pending"
    assert "e2a_session" in browser.cookies
    return browser


def test_sign_in_by_mailed_link_and_the_cookie_it_sets(hitl_client, hitl_reinjection, owner):
    browser = Browser(hitl_client)
    ask_for_link(browser, owner.user["email"].upper())
    url = wait_for_link(hitl_reinjection, owner.user["email"])
    path = url[url.index("/dashboard/"):]
    # Opening the link signs nobody in (mail scanners fetch links).
    page = browser.get(path)
    assert "e2a_session" not in browser.cookies
    token = path.partition("token=")[2]
    result = browser.post("/dashboard/signin", {"token": token, "csrf": csrf_of(page.text)})
    cookie = result.cookies["e2a_session"]
    assert cookie.http_only and cookie.path == "/dashboard"
    assert cookie.same_site == "Strict"
    assert not cookie.secure  # the test's public URL is http
    queue = browser.get("/dashboard/pending")
    assert queue.status_code == 200
    assert owner.user["email"] in queue.text
    policy = queue.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "unsafe-inline" not in policy


def test_the_answer_is_the_same_for_an_address_without_an_account(hitl_client,
                                                                  hitl_reinjection, owner):
    known = ask_for_link(Browser(hitl_client), owner.user["email"])
    unknown = ask_for_link(Browser(hitl_client), "nobody-here@example.net")
    assert known.status_code == unknown.status_code == 200
    assert known.text == unknown.text
    wait_for_link(hitl_reinjection, owner.user["email"])
    time.sleep(0.3)
    assert sign_in_mails(hitl_reinjection, "nobody-here@example.net") == []


def test_a_link_works_once(hitl_client, hitl_reinjection, owner):
    browser = signed_in(hitl_client, hitl_reinjection, owner.user["email"])
    url = wait_for_link(hitl_reinjection, owner.user["email"])
    token = url.partition("token=")[2]
    page = browser.get("/dashboard/login")  # signed in: sent on to the queue
    assert page.status_code == 303
    again = Browser(hitl_client)
    form = again.get(f"/dashboard/signin?token={token}")
    result = again.post("/dashboard/signin", {"token": token, "csrf": csrf_of(form.text)})
    assert result.status_code == 410
    assert "e2a_session" not in again.cookies


def test_an_expired_link_is_refused(hitl_cfg, hitl_client, hitl_reinjection, owner):
    browser = Browser(hitl_client)
    ask_for_link(browser, owner.user["email"])
    token = wait_for_link(hitl_reinjection, owner.user["email"]).partition("token=")[2]
    with single_connection(hitl_cfg) as conn:
        conn.execute("UPDATE dashboard_signins SET expires_at = now() - interval '1 second' "
                     "WHERE user_id = %s", (owner.user["id"],))
    form = browser.get(f"/dashboard/signin?token={token}")
    result = browser.post("/dashboard/signin", {"token": token, "csrf": csrf_of(form.text)})
    assert result.status_code == 410
    assert "e2a_session" not in browser.cookies


def test_only_a_hash_of_each_token_is_stored(hitl_cfg, hitl_client, hitl_reinjection, owner):
    browser = signed_in(hitl_client, hitl_reinjection, owner.user["email"])
    token = wait_for_link(hitl_reinjection, owner.user["email"]).partition("token=")[2]
    with single_connection(hitl_cfg) as conn:
        stored = [bytes(r["token_hash"]) for r in conn.execute(
            "SELECT token_hash FROM dashboard_signins WHERE user_id = %(u)s UNION ALL "
            "SELECT token_hash FROM dashboard_sessions WHERE user_id = %(u)s",
            {"u": owner.user["id"]})]
    assert len(stored) == 2
    for secret in (token, browser.cookies["e2a_session"]):
        assert all(secret.encode() not in value for value in stored)


def test_sign_in_requests_are_rate_limited_per_address(hitl_client, owner):
    answers = [ask_for_link(Browser(hitl_client), owner.user["email"]).status_code
               for _ in range(6)]
    assert answers == [200] * 5 + [429]


def test_a_form_without_its_csrf_token_is_refused(hitl_cfg, hitl_client, hitl_reinjection,
                                                  owner):
    message_id = hold(hitl_client, owner, owner.agent)
    browser = signed_in(hitl_client, hitl_reinjection, owner.user["email"])
    for path, fields in ((f"/dashboard/pending/{message_id}/approve", {}),
                         (f"/dashboard/pending/{message_id}/reject", {"reason": "no"}),
                         (f"/dashboard/agents/{owner.agent['id']}/hitl", {}),
                         ("/dashboard/logout", {})):
        assert browser.post(path, fields).status_code == 403, path
        assert browser.post(path, {**fields, "csrf": "x" * 43}).status_code == 403, path
    assert message_row(hitl_cfg, message_id)["status"] == "pending_approval"
    assert browser.get("/dashboard/pending").status_code == 200  # still signed in
    # Before sign-in, the login form's token is bound to the browser's cookie.
    other = Browser(hitl_client)
    page = other.get("/dashboard/login")
    stranger = Browser(hitl_client)
    result = stranger.post("/dashboard/login", {"email": owner.user["email"],
                                                "csrf": csrf_of(page.text)})
    assert result.status_code == 403


def test_another_users_ids_are_not_found(hitl_cfg, hitl_client, hitl_reinjection, owner):
    other = make_tenant(hitl_cfg)
    enable_hitl(hitl_client, other, other.agent)
    theirs = hold(hitl_client, other, other.agent,
                  attachments=[{"filename": "a.txt", "content_type": "text/plain",
                                "data": "aGk="}], html_body="<p>hi</p>")
    inbound = insert_message(hitl_cfg, other.agent)
    browser = signed_in(hitl_client, hitl_reinjection, owner.user["email"])
    agent = other.agent["id"]
    for path in (f"/dashboard/pending/{theirs}", f"/dashboard/pending/{theirs}/html",
                 f"/dashboard/pending/{theirs}/attachments/0", f"/dashboard/agents/{agent}",
                 f"/dashboard/agents/{agent}/inbox", f"/dashboard/agents/{agent}/inbox/{inbound}",
                 f"/dashboard/agents/{agent}/inbox/{inbound}/html",
                 f"/dashboard/pending?agent={agent}"):
        assert browser.get(path).status_code == 404, path
    csrf = csrf_of(browser.get("/dashboard/pending").text)
    for path, fields in ((f"/dashboard/pending/{theirs}/approve", {}),
                         (f"/dashboard/pending/{theirs}/reject", {"reason": "mine now"}),
                         (f"/dashboard/agents/{agent}/hitl", {})):
        assert browser.post(path, {**fields, "csrf": csrf}).status_code == 404, path
    assert message_row(hitl_cfg, theirs)["status"] == "pending_approval"
    # Their own user sees theirs.
    mine = signed_in(hitl_client, hitl_reinjection, other.user["email"])
    assert mine.get(f"/dashboard/pending/{theirs}").status_code == 200


def test_api_keys_do_not_open_the_dashboard(hitl_cfg, hitl_client, hitl_reinjection, owner):
    scoped = agent_key(hitl_cfg, owner, owner.agent)
    for key in (scoped, owner.key):
        by_header = hitl_client.simulate_get("/dashboard/pending",
                                             headers={"Authorization": f"Bearer {key}"})
        assert by_header.status_code == 303
        assert by_header.headers["Location"] == "/dashboard/login?next=%2Fdashboard%2Fpending"
        by_cookie = hitl_client.simulate_get("/dashboard/pending", cookies={"e2a_session": key})
        assert by_cookie.status_code == 303
        # Nor is a key a sign-in link, or an address to mail one to.
        browser = Browser(hitl_client)
        assert browser.get(f"/dashboard/signin?token={key}").status_code == 410
        csrf = csrf_of(browser.get("/dashboard/login").text)
        used = browser.post("/dashboard/signin", {"token": key, "csrf": csrf})
        assert used.status_code == 410 and "e2a_session" not in browser.cookies
        assert browser.post("/dashboard/login", {"email": key, "csrf": csrf}).status_code == 200
    time.sleep(0.3)
    assert released(hitl_reinjection) == []


def test_the_cookie_is_secure_under_an_https_public_url(hitl_cfg, tmp_path, pool):
    write_config(hitl_cfg, tmp_path / "e2a.toml", "")
    for url, secure in (("https://mail.example.com", True), ("http://127.0.0.1:8080", False)):
        cfg = config.load(tmp_path / "e2a.toml", env={"E2A_PUBLIC_URL": url})
        resp = falcon.Response()
        web.Page(cfg, pool).set_cookie(resp, web.SESSION_COOKIE, "x" * 43, 60)
        [cookie] = [value for name, value in resp._wsgi_headers() if name == "set-cookie"]
        assert ("Secure" in cookie) is secure, cookie
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_the_queue_lists_every_agents_held_mail_soonest_first(hitl_cfg, hitl_client,
                                                             hitl_reinjection, owner):
    second = add_agent(hitl_cfg, owner)
    enable_hitl(hitl_client, owner, second)
    first_id = hold(hitl_client, owner, owner.agent, subject="First one")
    second_id = hold(hitl_client, owner, second, subject="Second one")
    with single_connection(hitl_cfg) as conn:
        conn.execute("UPDATE messages SET approval_expires_at = now() + interval '5 minutes' "
                     "WHERE id = %s", (second_id,))
    browser = signed_in(hitl_client, hitl_reinjection, owner.user["email"])
    page = browser.get("/dashboard/pending").text
    assert page.index(second_id) < page.index(first_id)
    assert "Human review (HITL)" in page and "4 min" in page
    only = browser.get(f"/dashboard/pending?agent={owner.agent['id']}").text
    assert first_id in only and second_id not in only


def test_approve_with_an_edited_subject_sends_once(hitl_cfg, hitl_client, hitl_reinjection,
                                                   owner):
    message_id = hold(hitl_client, owner, owner.agent, subject="Draft subject",
                      body="Line one.\nLine two.")
    browser = signed_in(hitl_client, hitl_reinjection, owner.user["email"])
    page = browser.get(f"/dashboard/pending/{message_id}")
    assert page.status_code == 200
    assert "Line one.\nLine two." in html.unescape(page.text)
    # What a browser sends: every field, the textareas with CRLF line ends.
    fields = {"csrf": csrf_of(page.text), "subject": "Edited subject", "to": FRIEND,
              "cc": "", "bcc": "", "body_text": "Line one.\r\nLine two.", "body_html": ""}
    result = browser.post(f"/dashboard/pending/{message_id}/approve", fields)
    assert result.status_code == 303, result.text
    assert result.headers["Location"] == "/dashboard/pending?done=approved"
    row = message_row(hitl_cfg, message_id)
    assert row["status"] == "sent" and row["edited"] is True
    assert row["reviewed_by_user_id"] == owner.user["id"]
    out = [m for m in released(hitl_reinjection) if m.rcpt_tos == [FRIEND]]
    assert len(out) == 1
    sent = email.message_from_bytes(out[0].data, policy=email.policy.default)
    assert str(sent["Subject"]) == "Edited subject"
    assert sent.get_body(("plain",)).get_content().splitlines() == ["Line one.", "Line two."]
    # A second approval (another tab, the notification's magic link) finds it decided.
    again = browser.post(f"/dashboard/pending/{message_id}/approve", fields)
    assert again.status_code == 409
    token = link_token(hitl_cfg, message_id, "approve")
    by_link = hitl_client.simulate_post("/api/v1/approve", headers=FORM,
                                        body=urlencode({"token": token}))
    assert by_link.status_code == 409
    assert len([m for m in released(hitl_reinjection) if m.rcpt_tos == [FRIEND]]) == 1


def test_approve_unchanged_is_no_edit(hitl_cfg, hitl_client, hitl_reinjection, owner):
    message_id = hold(hitl_client, owner, owner.agent, body="a\nb")
    browser = signed_in(hitl_client, hitl_reinjection, owner.user["email"])
    page = browser.get(f"/dashboard/pending/{message_id}")
    fields = {"csrf": csrf_of(page.text), "subject": "Draft for review", "to": FRIEND,
              "cc": "", "bcc": "", "body_text": "a\r\nb", "body_html": ""}
    assert browser.post(f"/dashboard/pending/{message_id}/approve", fields).status_code == 303
    row = message_row(hitl_cfg, message_id)
    assert row["status"] == "sent" and row["edited"] is False


def test_a_bad_recipient_shows_the_form_again(hitl_cfg, hitl_client, hitl_reinjection, owner):
    message_id = hold(hitl_client, owner, owner.agent)
    browser = signed_in(hitl_client, hitl_reinjection, owner.user["email"])
    page = browser.get(f"/dashboard/pending/{message_id}")
    result = browser.post(f"/dashboard/pending/{message_id}/approve",
                          {"csrf": csrf_of(page.text), "to": "not an address"})
    assert result.status_code == 422
    assert 'id="error"' in result.text and "not an address" in html.unescape(result.text)
    assert message_row(hitl_cfg, message_id)["status"] == "pending_approval"


def test_reject_with_a_reason(hitl_cfg, hitl_client, hitl_reinjection, owner):
    message_id = hold(hitl_client, owner, owner.agent)
    browser = signed_in(hitl_client, hitl_reinjection, owner.user["email"])
    csrf = csrf_of(browser.get(f"/dashboard/pending/{message_id}").text)
    empty = browser.post(f"/dashboard/pending/{message_id}/reject", {"csrf": csrf, "reason": " "})
    assert empty.status_code == 422
    result = browser.post(f"/dashboard/pending/{message_id}/reject",
                          {"csrf": csrf, "reason": "Wrong numbers"})
    assert result.status_code == 303
    row = message_row(hitl_cfg, message_id)
    assert (row["status"], row["rejection_reason"]) == ("rejected", "Wrong numbers")
    assert row["reviewed_by_user_id"] == owner.user["id"]
    assert [m for m in released(hitl_reinjection) if m.rcpt_tos == [FRIEND]] == []


def test_html_bodies_and_attachments_stay_inert(hitl_client, hitl_reinjection, owner):
    message_id = hold(hitl_client, owner, owner.agent,
                      html_body="<script>alert(1)</script><b>x</b>",
                      attachments=[{"filename": "evil.html", "content_type": "text/html",
                                    "data": "PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="}])
    browser = signed_in(hitl_client, hitl_reinjection, owner.user["email"])
    page = browser.get(f"/dashboard/pending/{message_id}").text
    assert "<script>alert" not in page
    assert 'sandbox title="The HTML body"' in page
    frame = browser.get(f"/dashboard/pending/{message_id}/html")
    assert frame.headers["Content-Security-Policy"].startswith("sandbox;")
    assert "script-src" not in frame.headers["Content-Security-Policy"]
    download = browser.get(f"/dashboard/pending/{message_id}/attachments/0")
    assert download.headers["Content-Type"] == "application/octet-stream"
    assert download.headers["Content-Disposition"] == 'attachment; filename="evil.html"'
    assert browser.get(f"/dashboard/pending/{message_id}/attachments/1").status_code == 404


def test_hitl_switch(hitl_cfg, hitl_client, hitl_reinjection, owner):
    browser = signed_in(hitl_client, hitl_reinjection, owner.user["email"])
    path = f"/dashboard/agents/{owner.agent['id']}"
    page = browser.get(path)
    assert page.status_code == 200 and "checked" in page.text
    result = browser.post(f"{path}/hitl", {"csrf": csrf_of(page.text), "ttl_minutes": "30",
                                           "expiration_action": "approve"})
    assert result.status_code == 303
    with single_connection(hitl_cfg) as conn:
        agent = conn.execute("SELECT * FROM agents WHERE id = %s",
                             (owner.agent["id"],)).fetchone()
    assert (agent["hitl_enabled"], agent["hitl_ttl_seconds"],
            agent["hitl_expiration_action"]) == (False, 1800, "approve")
    bad = browser.post(f"{path}/hitl", {"csrf": csrf_of(page.text), "ttl_minutes": "0"})
    assert bad.status_code == 422


def test_inbox_is_read_only(hitl_cfg, hitl_client, hitl_reinjection, owner):
    inbound = insert_message(hitl_cfg, owner.agent, subject="Hello there")
    browser = signed_in(hitl_client, hitl_reinjection, owner.user["email"])
    base = f"/dashboard/agents/{owner.agent['id']}/inbox"
    assert "Hello there" in browser.get(base).text
    assert browser.get(f"{base}/{inbound}").status_code == 200
    assert message_row(hitl_cfg, inbound)["inbox_status"] == "unread"


def test_sign_out_ends_the_session(hitl_client, hitl_reinjection, owner):
    browser = signed_in(hitl_client, hitl_reinjection, owner.user["email"])
    cookie = browser.cookies["e2a_session"]
    page = browser.get("/dashboard/pending")
    result = browser.post("/dashboard/logout", {"csrf": csrf_of(page.text)})
    assert result.status_code == 303
    assert "e2a_session" not in browser.cookies
    replay = hitl_client.simulate_get("/dashboard/pending", cookies={"e2a_session": cookie})
    assert replay.status_code == 303
    assert replay.headers["Location"] == "/dashboard/login?next=%2Fdashboard%2Fpending"


def test_account_keys_are_shown_once_and_revoke(hitl_cfg, hitl_client, hitl_reinjection, owner):
    browser = signed_in(hitl_client, hitl_reinjection, owner.user["email"])
    csrf = csrf_of(browser.get("/dashboard/account").text)
    made = browser.post("/dashboard/account/keys", {"csrf": csrf, "name": "laptop",
                                                    "agent": owner.agent["id"]})
    assert made.status_code == 201
    key = html.unescape(re.search(r'id="new-key">([^<]+)<', made.text).group(1))
    auth = {"Authorization": f"Bearer {key}"}
    assert hitl_client.simulate_get(f"/api/v1/agents/{owner.agent['email']}",
                                    headers=auth).status_code == 200
    # Listed by its prefix from now on, never in full.
    listing = browser.get("/dashboard/account").text
    assert key not in listing and key[:12] in listing
    with single_connection(hitl_cfg) as conn:
        key_id = conn.execute("SELECT id FROM api_keys WHERE name = 'laptop' AND user_id = %s",
                              (owner.user["id"],)).fetchone()["id"]
    assert browser.post(f"/dashboard/account/keys/{key_id}/revoke",
                        {"csrf": csrf}).status_code == 303
    assert hitl_client.simulate_get(f"/api/v1/agents/{owner.agent['email']}",
                                    headers=auth).status_code == 401
    # A key for another user's agent, or another user's key: not found.
    other = make_tenant(hitl_cfg)
    assert browser.post("/dashboard/account/keys", {"csrf": csrf, "agent": other.agent["id"]}
                        ).status_code == 404
    with single_connection(hitl_cfg) as conn:
        theirs = conn.execute("SELECT id FROM api_keys WHERE user_id = %s",
                              (other.user["id"],)).fetchone()["id"]
    assert browser.post(f"/dashboard/account/keys/{theirs}/revoke",
                        {"csrf": csrf}).status_code == 404
    still = hitl_client.simulate_get("/api/v1/users/me/limits", headers=other.auth)
    assert still.status_code == 200


def test_account_secrets_webhooks_and_domains(hitl_cfg, hitl_client, hitl_reinjection, owner):
    other = make_tenant(hitl_cfg)
    with single_connection(hitl_cfg) as conn:
        mine, _ = subscriptions.create(conn, hitl_cfg, owner.user["id"],
                                       {"url": "https://hooks.example.com/e2a",
                                        "events": ["email.received"]})
        theirs, _ = subscriptions.create(conn, hitl_cfg, other.user["id"],
                                         {"url": "https://hooks.example.com/other",
                                          "events": ["email.received"]})
    domain = add_domain(hitl_cfg, owner, verified=False)
    their_domain = add_domain(hitl_cfg, other)
    browser = signed_in(hitl_client, hitl_reinjection, owner.user["email"])
    page = browser.get("/dashboard/account")
    assert "hooks.example.com/e2a" in page.text and domain["domain"] in page.text
    assert "hooks.example.com/other" not in page.text
    csrf = csrf_of(page.text)
    made = browser.post("/dashboard/account/secrets", {"csrf": csrf, "name": "ci"})
    assert made.status_code == 201 and 'id="new-secret"' in made.text
    assert browser.get(f"/dashboard/account/webhooks/{mine['id']}").status_code == 200
    assert browser.get(f"/dashboard/account/webhooks/{theirs['id']}").status_code == 404
    detail = browser.get(f"/dashboard/account/domains/{domain['domain']}")
    assert detail.status_code == 200
    assert domain["verification_token"] in detail.text
    assert browser.get(f"/dashboard/account/domains/{their_domain['domain']}"
                       ).status_code == 404
    assert browser.post(f"/dashboard/account/domains/{their_domain['domain']}/verify",
                        {"csrf": csrf}).status_code == 404
    with single_connection(hitl_cfg) as conn:
        their_secret = conn.execute("SELECT id FROM signing_secrets WHERE user_id = %s",
                                    (other.user["id"],)).fetchone()
    if their_secret is not None:
        assert browser.post(f"/dashboard/account/secrets/{their_secret['id']}/delete",
                            {"csrf": csrf}).status_code == 404


def test_the_pages_policy_allows_exactly_their_style_and_script(hitl_client, hitl_reinjection,
                                                               owner):
    browser = signed_in(hitl_client, hitl_reinjection, owner.user["email"])
    page = browser.get("/dashboard/pending")
    policy = page.headers["Content-Security-Policy"]
    for tag in ("style", "script"):
        [content] = re.findall(f"<{tag}>(.*?)</{tag}>", page.text, re.S)
        digest = base64.b64encode(hashlib.sha256(content.encode()).digest()).decode()
        assert f"{tag}-src 'sha256-{digest}'" in policy
    assert "unsafe-inline" not in policy and " style=" not in page.text
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-store"


def test_an_oversized_form_is_a_page_413(hitl_client):
    result = hitl_client.simulate_post("/dashboard/login", headers=FORM,
                                       body=urlencode({"email": "a" * 20_000}))
    assert result.status_code == 413
    assert result.headers["Content-Type"].startswith("text/html")


def test_a_page_opened_signed_out_opens_again_after_sign_in(hitl_client, hitl_reinjection,
                                                           owner):
    message_id = hold(hitl_client, owner, owner.agent)
    browser = Browser(hitl_client)
    first = browser.get(f"/dashboard/pending/{message_id}")
    assert first.status_code == 303
    assert first.headers["Location"] == (
        f"/dashboard/login?next=%2Fdashboard%2Fpending%2F{message_id}")
    page = browser.get("/dashboard/login", params={"next": f"/dashboard/pending/{message_id}"})
    browser.post("/dashboard/login", {"email": owner.user["email"], "csrf": csrf_of(page.text),
                                      "next": f"/dashboard/pending/{message_id}"})
    wait_for_link(hitl_reinjection, owner.user["email"])
    [mail] = sign_in_mails(hitl_reinjection, owner.user["email"])
    url = FULL_LINK.search(mail).group(1)
    form = browser.get(url[url.index("/dashboard/"):])
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', form.text))
    result = browser.post("/dashboard/signin", {k: html.unescape(v) for k, v in fields.items()})
    assert result.headers["Location"] == f"/dashboard/pending/{message_id}"


@pytest.mark.parametrize("where", ["https://evil.example/x", "//evil.example", "/dashboard/../x",
                                   "/\\evil.example", "/api/v1/users/me", "/dashboard/a?b=c"])
def test_no_way_off_the_dashboard_after_sign_in(hitl_client, hitl_reinjection, owner, where):
    browser = Browser(hitl_client)
    page = browser.get("/dashboard/login", params={"next": where})
    assert 'name="next"' not in page.text
    browser.post("/dashboard/login", {"email": owner.user["email"], "csrf": csrf_of(page.text),
                                      "next": where})
    token = wait_for_link(hitl_reinjection, owner.user["email"]).partition("token=")[2]
    form = browser.get(f"/dashboard/signin?token={token}")
    result = browser.post("/dashboard/signin", {"token": token, "csrf": csrf_of(form.text),
                                                "next": where})
    assert result.headers["Location"] == "/dashboard/pending"


def test_a_message_approved_by_link_is_decided_in_the_dashboard(hitl_cfg, hitl_client,
                                                               hitl_reinjection, owner):
    message_id = hold(hitl_client, owner, owner.agent)
    browser = signed_in(hitl_client, hitl_reinjection, owner.user["email"])
    page = browser.get(f"/dashboard/pending/{message_id}")
    token = link_token(hitl_cfg, message_id, "approve")
    assert hitl_client.simulate_post("/api/v1/approve", headers=FORM,
                                     body=urlencode({"token": token})).status_code == 200
    late = browser.post(f"/dashboard/pending/{message_id}/approve",
                        {"csrf": csrf_of(page.text), "subject": "Too late"})
    assert late.status_code == 409 and "Already decided" in late.text
    assert len([m for m in released(hitl_reinjection) if m.rcpt_tos == [FRIEND]]) == 1
    # The draft's page says what became of it, with no form left.
    after = browser.get(f"/dashboard/pending/{message_id}").text
    assert 'id="edit"' not in after and ">sent<" in after


# -- protection (core/accounts/protection.py, as PUT /v1/agents/{email}/protection) --

PROTECTION_FORM = {
    "inbound_policy": "allowlist", "inbound_action": "review",
    "inbound_allowlist": "friend@example.org\nExample.COM", "inbound_sensitivity": "medium",
    "outbound_policy": "domain", "outbound_action": "block", "outbound_allowlist": "",
    "outbound_sensitivity": "high", "ttl_seconds": "3600", "on_expiry": "approve",
    "suppress_notifications": "on", "first_contact_enabled": "on", "trust_days": "30"}


def agent_row(cfg, agent_id: str) -> dict[str, Any]:
    with single_connection(cfg) as conn:
        return conn.execute("SELECT * FROM agents WHERE id = %s", (agent_id,)).fetchone()


def test_the_protection_form_saves_through_the_apis_check(hitl_cfg, hitl_client,
                                                         hitl_reinjection, owner):
    browser = signed_in(hitl_client, hitl_reinjection, owner.user["email"])
    path = f"/dashboard/agents/{owner.agent['id']}"
    page = browser.get(path)
    assert 'id="protection"' in page.text
    saved = browser.post(f"{path}/protection", {**PROTECTION_FORM, "csrf": csrf_of(page.text)})
    assert saved.status_code == 303
    view = hitl_client.simulate_get(f"/v1/agents/{owner.agent['email']}/protection",
                                    headers={"Authorization": f"Bearer {owner.key}"}).json
    assert view == {
        "inbound": {"gate": {"policy": "allowlist", "action": "review",
                             "allowlist": ["friend@example.org", "example.com"]},
                    "scan": {"sensitivity": "medium"}},
        "outbound": {"gate": {"policy": "domain", "action": "block", "allowlist": []},
                     "scan": {"sensitivity": "high"}},
        "holds": {"ttl_seconds": 3600, "on_expiry": "approve", "suppress_notifications": True},
        "first_contact": {"enabled": True, "trust_days": 30}}
    shown = browser.get(path).text
    assert "friend@example.org" in shown and 'value="3600"' in shown
    before = agent_row(hitl_cfg, owner.agent["id"])
    for bad in ({"inbound_sensitivity": "extreme"}, {"ttl_seconds": "0"},
                {"ttl_seconds": "soon"}, {"outbound_allowlist": "not an address!"},
                {"trust_days": "99999"}):
        refused = browser.post(f"{path}/protection",
                               {**PROTECTION_FORM, **bad, "csrf": csrf_of(page.text)})
        assert refused.status_code == 422, bad
        assert 'id="error"' in refused.text and 'id="protection"' in refused.text
        assert agent_row(hitl_cfg, owner.agent["id"]) == before, bad
    assert browser.post(f"{path}/protection", PROTECTION_FORM).status_code == 403
    assert agent_row(hitl_cfg, owner.agent["id"]) == before
    # A full allowlist fits the form's limit.
    many = "\n".join(f"sender{n}@example.org" for n in range(1000))
    full = browser.post(f"{path}/protection", {**PROTECTION_FORM, "inbound_allowlist": many,
                                               "csrf": csrf_of(page.text)})
    assert full.status_code == 303
    assert len(agent_row(hitl_cfg, owner.agent["id"])["protection"]["inbound"]["gate"][
        "allowlist"]) == 1000


def test_the_agents_list_shows_protection_and_the_pause(hitl_cfg, hitl_client,
                                                       hitl_reinjection, owner):
    browser = signed_in(hitl_client, hitl_reinjection, owner.user["email"])
    path = f"/dashboard/agents/{owner.agent['id']}"
    csrf = csrf_of(browser.get(path).text)
    browser.post(f"{path}/protection", {**PROTECTION_FORM, "csrf": csrf})
    listed = browser.get("/dashboard/agents").text
    assert "scan: medium in / high out" in listed and "paused" not in listed
    assert browser.post(f"{path}/brakes", {"paused": "on", "csrf": csrf}).status_code == 303
    view = hitl_client.simulate_get(f"/v1/agents/{owner.agent['email']}/brakes",
                                    headers={"Authorization": f"Bearer {owner.key}"}).json
    assert view["paused"] is True and view["paused_reason"] == "paused by its owner"
    assert "paused" in browser.get("/dashboard/agents").text
    assert 'id="resume"' in browser.get(path).text
    assert browser.post(f"{path}/brakes", {"csrf": csrf}).status_code == 303
    view = hitl_client.simulate_get(f"/v1/agents/{owner.agent['email']}/brakes",
                                    headers={"Authorization": f"Bearer {owner.key}"}).json
    assert view["paused"] is False
    assert browser.post(f"{path}/brakes", {"paused": "on"}).status_code == 403
    # Another user's agent: 404, nothing changed.
    other = make_tenant(hitl_cfg)
    theirs = f"/dashboard/agents/{other.agent['id']}"
    before = agent_row(hitl_cfg, other.agent["id"])
    for where, fields in (("protection", PROTECTION_FORM), ("brakes", {"paused": "on"})):
        assert browser.post(f"{theirs}/{where}", {**fields, "csrf": csrf}).status_code == 404
    assert agent_row(hitl_cfg, other.agent["id"]) == before
    with single_connection(hitl_cfg) as conn:
        assert conn.execute("SELECT * FROM agent_brakes WHERE agent_id = %s",
                            (other.agent["id"],)).fetchone() is None


SCAN_HOLD = {"type": "scan", "code": "inbound_scan", "summary": "a phishing link"}


def test_the_queue_says_why_and_holds_received_mail(hitl_cfg, hitl_client, hitl_reinjection,
                                                    owner):
    drafted = hold(hitl_client, owner, owner.agent, subject="Outgoing draft")
    received = insert_message(hitl_cfg, owner.agent, subject="Held inbound",
                              status="pending_approval", hold_reason=SCAN_HOLD, hold_ttl=3600)
    kept = insert_message(hitl_cfg, owner.agent, subject="Held too",
                          status="pending_approval", hold_reason=SCAN_HOLD, hold_ttl=7200)
    gated = insert_message(hitl_cfg, owner.agent, subject="Gated",
                           status="pending_approval", hold_ttl=7200, hold_reason={
                               "type": "gate", "code": "sender_gate", "summary": "not listed"})
    browser = signed_in(hitl_client, hitl_reinjection, owner.user["email"])
    page = browser.get("/dashboard/pending").text
    assert all(i in page for i in (drafted, received, kept, gated))
    assert "a phishing link" in page and "Protection scan finding" in page
    scans = browser.get("/dashboard/pending?reason=protection").text
    assert received in scans and kept in scans and drafted not in scans and gated not in scans
    gates_only = browser.get("/dashboard/pending?reason=gate").text
    assert gated in gates_only and received not in gates_only
    hitl_only = browser.get("/dashboard/pending?reason=hitl").text
    assert drafted in hitl_only and received not in hitl_only
    # A brake's hold (core/outbound/screening.brake_held) and first contact, by their code.
    assert pending.reason_of({"hold_reason": {"type": "send", "code": "brake"}}) == "brake"
    assert pending.reason_of({"hold_reason": {"type": "gate",
                                              "code": "first_contact"}}) == "first_contact"
    assert pending.reason_of({"hold_reason": None}) == "hitl"
    shown = browser.get(f"/dashboard/pending/{received}")
    assert shown.status_code == 200 and "Held inbound" in shown.text
    assert "a phishing link" in shown.text
    csrf = csrf_of(shown.text)
    # Another user cannot decide it.
    other = signed_in(hitl_client, hitl_reinjection, make_tenant(hitl_cfg).user["email"])
    other_csrf = csrf_of(other.get("/dashboard/pending").text)
    assert other.get(f"/dashboard/pending/{received}").status_code == 404
    assert other.post(f"/dashboard/pending/{received}/approve",
                      {"csrf": other_csrf}).status_code == 404
    assert browser.post(f"/dashboard/pending/{received}/approve", {}).status_code == 403
    assert message_row(hitl_cfg, received)["status"] == "pending_approval"
    done = browser.post(f"/dashboard/pending/{received}/approve", {"csrf": csrf})
    assert done.status_code == 303
    assert message_row(hitl_cfg, received)["status"] is None  # released to the agent
    inbox = browser.get(f"/dashboard/agents/{owner.agent['id']}/inbox").text
    assert "Held inbound" in inbox and "Held too" not in inbox
    refused = browser.post(f"/dashboard/pending/{kept}/reject",
                           {"csrf": csrf, "reason": "phishing"})
    assert refused.status_code == 303
    assert message_row(hitl_cfg, kept)["status"] == "rejected"
    again = browser.post(f"/dashboard/pending/{kept}/approve", {"csrf": csrf})
    assert again.status_code == 409
    assert message_row(hitl_cfg, drafted)["status"] == "pending_approval"


def test_recent_activity_shows_flagged_received_mail(hitl_cfg, hitl_client, hitl_reinjection,
                                                     owner):
    insert_message(hitl_cfg, owner.agent, subject="Looks phishy", flagged=True,
                   flag_reason="a link to a look-alike domain")
    insert_message(hitl_cfg, owner.agent, subject="Plain hello")
    browser = signed_in(hitl_client, hitl_reinjection, owner.user["email"])
    page = browser.get(f"/dashboard/agents/{owner.agent['id']}").text
    assert "Looks phishy" in page and "a link to a look-alike domain" in page
    assert "Plain hello" not in page
