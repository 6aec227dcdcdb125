"""/v1 reply and forward beyond the legacy shapes: ``quote_history`` (the
original quoted under the reply), a forward that carries the original's
attachments (the caller's added after them, the limits over all), and the
SDK fields this server does not serve, refused by name rather than ignored."""

from __future__ import annotations

import base64
from email.message import EmailMessage

import pytest
from apisupport import insert_message, make_tenant
from submitsupport import sending_client
from v1support import assert_envelope, messages_path

PDF = b"%PDF-1.4 quarterly numbers"


@pytest.fixture(autouse=True)
def clean(postfix):
    postfix.reset()


@pytest.fixture(scope="module")
def client(cfg, postfix, tmp_path_factory):
    with sending_client(cfg, postfix, tmp_path_factory.mktemp("send5x")) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def tenant(cfg):
    return make_tenant(cfg)


def original(cfg, tenant) -> str:
    msg = EmailMessage()
    msg["From"], msg["To"] = "Alice <alice@example.org>", tenant.agent["email"]
    msg["Subject"], msg["Date"] = "Numbers", "Tue, 01 Dec 2026 09:30:00 +0000"
    msg.set_content("Line one\n\nLine <three>\n")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="q.pdf")
    raw = msg.as_bytes()
    return insert_message(cfg, tenant.agent, subject="Numbers", raw_message=raw,
                          size_bytes=len(raw))


def test_reply_with_quote_history_quotes_the_original(client, cfg, tenant, postfix):
    parent = original(cfg, tenant)
    path = f"{messages_path(tenant.agent['email'])}/{parent}/reply"
    result = client.simulate_post(path, headers=tenant.auth, json={
        "text": "Thanks!", "html": "<p>Thanks!</p>", "quote_history": True})
    assert result.status_code == 202, result.text
    got = postfix.only().message
    text = got.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text.startswith("Thanks!\n\nOn Tue, 01 Dec 2026 09:30:00 +0000, "
                           "Alice <alice@example.org> wrote:\n")
    assert "> Line one\n>\n> Line <three>" in text
    html = got.get_body(("html",)).get_content()
    assert html.startswith("<p>Thanks!</p>")
    assert "<blockquote" in html and "Line &lt;three&gt;" in html
    assert "<three>" not in html


def test_reply_without_quote_history_quotes_nothing(client, cfg, tenant, postfix):
    parent = original(cfg, tenant)
    path = f"{messages_path(tenant.agent['email'])}/{parent}/reply"
    client.simulate_post(path, headers=tenant.auth, json={"text": "Thanks!"})
    assert "wrote:" not in postfix.only().message.get_body(("plain",)).get_content()


def test_forward_carries_the_originals_attachments(client, cfg, tenant, postfix):
    parent = original(cfg, tenant)
    path = f"{messages_path(tenant.agent['email'])}/{parent}/forward"
    result = client.simulate_post(path, headers=tenant.auth, json={
        "to": ["desk@example.org"], "text": "FYI",
        "attachments": [{"filename": "note.txt", "content_type": "text/plain",
                         "data": base64.b64encode(b"mine").decode()}]})
    assert result.status_code == 202, result.text
    parts = [(p.get_filename(), p.get_content_type(), p.get_payload(decode=True))
             for p in postfix.only().message.iter_attachments()]
    assert parts == [("q.pdf", "application/pdf", PDF), ("note.txt", "text/plain", b"mine")]


def test_forward_limits_count_the_carried_attachments(client, cfg, tenant, postfix):
    parent = original(cfg, tenant)
    path = f"{messages_path(tenant.agent['email'])}/{parent}/forward"
    ten = [{"filename": f"f{n}.txt", "content_type": "text/plain", "data": "eA=="}
           for n in range(10)]
    result = client.simulate_post(path, headers=tenant.auth, json={
        "to": ["desk@example.org"], "text": "FYI", "attachments": ten})
    assert result.status_code == 400, result.text
    assert postfix.received == []


@pytest.mark.parametrize("field,value", [
    ("send_at", "2030-01-01T00:00:00Z"), ("template_id", "tmpl_x"),
    ("template_alias", "welcome"), ("template_data", {"a": 1}),
    ("reply_to", "other@example.org")])
def test_fields_not_served_are_refused_by_name(client, tenant, postfix, field, value):
    result = client.simulate_post(messages_path(tenant.agent["email"]), headers=tenant.auth,
                                  json={"to": ["bob@example.org"], "subject": "s", "text": "x",
                                        field: value})
    error = assert_envelope(result, 400, "invalid_request")
    assert error["details"]["fields"] == [{"location": f"body.{field}",
                                          "message": "not supported yet"}]
    assert postfix.received == []
