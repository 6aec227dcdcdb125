"""/v1 attachments on a real database: an attachment's metadata with a
signed download URL, inline bytes up to 256 KB, and the URL itself: it
serves exactly that attachment to whoever holds it, for 15 minutes, and
nothing once tampered with, expired, or moved to another attachment,
message or tenant."""

from __future__ import annotations

import base64
import time
from email.message import EmailMessage
from urllib.parse import parse_qs, urlsplit

import pytest
from apisupport import agent_key, api_client, insert_message, make_tenant
from test_api_throttle import inside_one_window
from v1support import assert_envelope, messages_path

from e2a.core.crypto import serverkeys, tokens
from e2a.core.messages import attachments

PDF = b"%PDF-1.4 " + bytes(range(256)) * 4
BIG = b"x" * (256 * 1024 + 1)


@pytest.fixture(scope="module")
def client(cfg):
    with api_client(cfg) as test_client:
        yield test_client


def mail_with(*files: tuple[str, str, bytes]) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ada@example.org", "bot@example.net", "files"
    msg.set_content("see attached")
    for name, ctype, data in files:
        main, sub = ctype.split("/")
        msg.add_attachment(data, maintype=main, subtype=sub, filename=name)
    return msg.as_bytes()


@pytest.fixture
def tenant(cfg):
    return make_tenant(cfg)


def message_with_files(cfg, tenant) -> str:
    raw = mail_with(("report.pdf", "application/pdf", PDF), ("big.bin", "application/zip", BIG))
    return insert_message(cfg, tenant.agent, raw_message=raw, size_bytes=len(raw))


def attachment_path(tenant, message_id: str, index: int | str) -> str:
    return f"{messages_path(tenant.agent['email'])}/{message_id}/attachments/{index}"


def fetch(client, url: str):
    parts = urlsplit(url)
    return client.simulate_get(parts.path, query_string=parts.query)


def test_metadata_download_url_and_the_bytes(cfg, client, tenant):
    message_id = message_with_files(cfg, tenant)
    listed = client.simulate_get(f"{messages_path(tenant.agent['email'])}/{message_id}",
                                 headers=tenant.auth).json["attachments"]
    assert [(a["index"], a["filename"], a["size_bytes"]) for a in listed] == [
        (0, "report.pdf", len(PDF)), (1, "big.bin", len(BIG))]

    before = time.time()
    view = client.simulate_get(attachment_path(tenant, message_id, 0), headers=tenant.auth)
    assert view.status_code == 200, view.text
    body = view.json
    assert (body["index"], body["filename"], body["content_type"], body["size_bytes"]) == (
        0, "report.pdf", "application/pdf", len(PDF))
    assert "data" not in body
    assert body["download_url"].startswith(cfg.http.public_url.rstrip("/") + "/v1/agents/")
    expires = body["expires_at"]
    assert expires.endswith("Z")

    got = fetch(client, body["download_url"])  # no Authorization header
    assert got.status_code == 200, got.text
    assert got.content == PDF
    assert got.headers["content-type"] == "application/pdf"
    assert "report.pdf" in got.headers["content-disposition"]
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["X-Request-Id"]
    assert "sandbox" in got.headers["content-security-policy"]
    token = parse_qs(urlsplit(body["download_url"]).query)["token"][0]
    grant = attachments.open_grant(cfg, token)
    assert before + attachments.LIFETIME_SECONDS - 5 <= grant.expires_at


def test_inline_data_only_for_small_attachments(cfg, client, tenant):
    message_id = message_with_files(cfg, tenant)
    small = client.simulate_get(attachment_path(tenant, message_id, 0), headers=tenant.auth,
                                params={"inline": "true"}).json
    assert base64.b64decode(small["data"]) == PDF
    big = client.simulate_get(attachment_path(tenant, message_id, 1), headers=tenant.auth,
                              params={"inline": "true"})
    assert_envelope(big, 413, "attachment_too_large")


def test_missing_attachment_and_bad_index(cfg, client, tenant):
    message_id = message_with_files(cfg, tenant)
    assert_envelope(client.simulate_get(attachment_path(tenant, message_id, 2),
                                        headers=tenant.auth), 404, "attachment_not_found")
    assert_envelope(client.simulate_get(attachment_path(tenant, message_id, "x"),
                                        headers=tenant.auth), 400, "invalid_request")
    plain = insert_message(cfg, tenant.agent)
    assert_envelope(client.simulate_get(attachment_path(tenant, plain, 0),
                                        headers=tenant.auth), 404, "attachment_not_found")


def test_fetching_an_attachment_does_not_mark_the_message_read(cfg, client, tenant):
    message_id = message_with_files(cfg, tenant)
    client.simulate_get(attachment_path(tenant, message_id, 0), headers=tenant.auth)
    unread = client.simulate_get(messages_path(tenant.agent["email"]), headers=tenant.auth)
    assert message_id in [m["id"] for m in unread.json["items"]]


def test_an_agent_key_of_the_agent_may_fetch(cfg, client, tenant):
    message_id = message_with_files(cfg, tenant)
    key = agent_key(cfg, tenant, tenant.agent)
    result = client.simulate_get(attachment_path(tenant, message_id, 0),
                                 headers={"Authorization": f"Bearer {key}"})
    assert result.status_code == 200, result.text


def url_for(client, tenant, message_id: str, index: int) -> str:
    return client.simulate_get(attachment_path(tenant, message_id, index),
                               headers=tenant.auth).json["download_url"]


def with_token(url: str, token: str) -> str:
    return url.split("?")[0] + "?token=" + token


def test_tampered_moved_and_foreign_urls_are_refused(cfg, client, tenant):
    message_id = message_with_files(cfg, tenant)
    url = url_for(client, tenant, message_id, 0)
    token = parse_qs(urlsplit(url).query)["token"][0]
    body, mac = token.split(".")
    flipped = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    for bad in (with_token(url, f"{body}.{flipped}"), url.split("?")[0],
                with_token(url, "garbage"), with_token(url, "x" * 5000)):
        assert_envelope(fetch(client, bad), 403, "forbidden")
    # The grant is for attachment 0 of this message: not 1, not another message.
    assert_envelope(fetch(client, url.replace("/attachments/0/", "/attachments/1/")),
                    403, "forbidden")
    other_message = message_with_files(cfg, tenant)
    assert_envelope(fetch(client, url.replace(message_id, other_message)), 403, "forbidden")

    # Another tenant's grant for its own message says nothing about ours,
    # and a payload naming our owner under their signature is no grant.
    stranger = make_tenant(cfg)
    theirs = message_with_files(cfg, stranger)
    their_url = url_for(client, stranger, theirs, 0)
    their_token = parse_qs(urlsplit(their_url).query)["token"][0]
    forged_body = tokens.b64url(tokens.b64url_decode(their_token.split(".")[0]).replace(
        stranger.user["id"].encode(), tenant.user["id"].encode()).replace(
        theirs.encode(), message_id.encode()))
    assert_envelope(fetch(client, with_token(url, forged_body + "." + their_token.split(".")[1])),
                    403, "forbidden")
    # Their own URL, pointed at our agent's path, finds nothing.
    moved = their_url.replace(stranger.agent["email"].replace("@", "%40"),
                              tenant.agent["email"].replace("@", "%40"))
    moved = moved.replace(stranger.agent["email"], tenant.agent["email"])
    assert fetch(client, moved).status_code == 404


def test_an_expired_url_is_refused(cfg, client, tenant):
    message_id = message_with_files(cfg, tenant)
    old, _ = attachments.grant(cfg, tenant.user["id"], message_id, 0,
                               now=time.time() - attachments.LIFETIME_SECONDS - 1)
    url = url_for(client, tenant, message_id, 0)
    error = assert_envelope(fetch(client, with_token(url, old)), 403, "forbidden")
    assert "expired" in error["message"]


def test_the_key_is_its_own_purpose(cfg, tenant):
    """Not the deployment secret, not the magic-link key of the same owner."""
    own = serverkeys.for_owner(cfg, serverkeys.ATTACHMENT_DOWNLOAD, tenant.user["id"])
    assert own != serverkeys.for_owner(cfg, serverkeys.MAGIC_LINK, tenant.user["id"])
    assert own != cfg.secrets.hmac_secret.encode()
    token, _ = attachments.grant(cfg, tenant.user["id"], "msg_x", 0)
    with pytest.raises(tokens.TokenError):
        tokens.verify(serverkeys.for_owner(cfg, serverkeys.MAGIC_LINK, tenant.user["id"]),
                      token)


def test_downloads_are_limited_per_client_address(cfg, client, tenant, monkeypatch):
    from e2a.api.v1.resources import attachments as resource
    from e2a.core import ratelimit
    monkeypatch.setattr(resource, "DOWNLOADS", ratelimit.Limit(
        f"attachment-download-test-{tenant.user['id']}", per_window=2, window_seconds=60))
    message_id = message_with_files(cfg, tenant)
    url = url_for(client, tenant, message_id, 0)
    inside_one_window()
    assert [fetch(client, url).status_code for _ in range(2)] == [200, 200]
    refused = fetch(client, url)
    assert_envelope(refused, 429, "rate_limited")
    assert int(refused.headers["Retry-After"]) >= 1
