"""No body, key or secret in any log record: a message through the milter and
an agent reading it through the API, everything logged at DEBUG."""

from __future__ import annotations

import base64
import logging
import secrets
from urllib.parse import quote

import Milter
import pytest
from apisupport import api_client, make_tenant
from mailworld import zones_served
from milterdriver import feed, installed

from e2a.core.runtime import logs


@pytest.fixture(scope="module")
def zones(tmp_path_factory):
    with zones_served(tmp_path_factory.mktemp("zones")) as server:
        yield server


def rendered(record: logging.LogRecord) -> str:
    """Everything a record could put on a log line, in both formats (extras included)."""
    return "\n".join((logs.JsonFormatter().format(record), logs.TextFormatter().format(record),
                      repr(vars(record))))


def test_no_body_key_or_secret_reaches_the_log(cfg, zones, caplog):
    tenant = make_tenant(cfg)
    body_text = "Confidential-" + secrets.token_hex(8)
    wrong_key = "e2a_" + secrets.token_hex(32)
    raw = (f"From: Alice <alice@example.org>\r\nTo: {tenant.agent['email']}\r\n"
           f"Subject: quiet\r\nMessage-ID: <{secrets.token_hex(6)}@example.org>\r\n\r\n"
           f"{body_text}\r\n").encode()
    caplog.set_level(logging.DEBUG)
    with api_client(cfg) as client:
        created = client.simulate_post("/api/v1/users/me/signing-secrets",
                                       json={"name": "logs"}, headers=tenant.auth)
        assert created.status_code in (200, 201)
        signing_secret = created.json["secret"]
        with installed(cfg):
            out = feed(raw, "alice@example.org", [tenant.agent["email"]], queue_id="LOGQ1")
        assert out.code == Milter.DISCARD
        listing = client.simulate_get(tenant.messages_path, headers=tenant.auth)
        [summary] = listing.json["messages"]
        path = f"{tenant.messages_path}/{quote(summary['message_id'])}"
        detail = client.simulate_get(path, headers=tenant.auth)
        # The API did hand out the message (raw, base64)...
        assert body_text.encode() in base64.b64decode(detail.json["raw_message"])
        refused = client.simulate_get(tenant.messages_path,
                                      headers={"Authorization": f"Bearer {wrong_key}"})
        assert refused.status_code == 401
    lines = [rendered(record) for record in caplog.records]
    # ...and the mail lines name the queue id and our message id.
    assert any("LOGQ1" in line and summary["message_id"] in line for line in lines)
    for secret in (body_text, tenant.key, wrong_key, cfg.secrets.hmac_secret, signing_secret):
        assert not [line for line in lines if secret in line], secret
