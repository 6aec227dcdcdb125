"""The account endpoints over HTTP against gunicorn: the export streams the
mail Postfix delivered, byte for byte; deleting the account ends its key and
its mail; the OpenAPI document is served."""

from __future__ import annotations

import base64
import secrets

import pytest
import requests
from sandbox_harness import RunningSandbox, compose, smtp_send, wait_until

pytestmark = pytest.mark.system


def test_export_then_delete_over_http(sandbox: RunningSandbox) -> None:
    tag = secrets.token_hex(4)
    access = sandbox.box.bootstrap(user_email=f"leaving-{tag}@sandbox.test", slug=f"leave-{tag}")
    auth = {"Authorization": f"Bearer {access.api_key}"}
    sender = "ada@sandbox.test"
    data = compose(sender, access.agent_email, f"export {tag}", "Keep a copy of this.\n")
    assert smtp_send(sandbox.smtp_port, sender, access.agent_email, data).code == 250
    messages_url = f"{sandbox.api_url}{sandbox.agent_path(access.agent_email)}/messages"
    [listed] = wait_until(
        lambda: requests.get(messages_url, headers=auth, timeout=15).json()["messages"],
        timeout=10, what="the delivered message")

    exported = requests.get(f"{sandbox.api_url}/api/v1/users/me/export", headers=auth,
                            timeout=30)
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("application/json")
    body = exported.json()
    assert body["user"]["email"] == access.user_email
    [message] = body["messages"]
    assert message["id"] == listed["message_id"]
    raw = base64.b64decode(message["raw_message"])
    # The stored copy is what Postfix handed the milter, with the verdict on top.
    assert raw.startswith(b"Authentication-Results: ")
    assert raw.endswith(data.partition(b"\r\n\r\n")[2])
    assert message["auth_headers"]["X-E2A-Auth-Message-Id"] == message["id"]
    assert access.api_key not in exported.text

    deleted = requests.delete(f"{sandbox.api_url}/api/v1/users/me",
                              params={"confirm": "DELETE"}, headers=auth, timeout=30)
    assert deleted.status_code == 200, deleted.text
    assert (deleted.json()["messages_deleted"], deleted.json()["agents_deleted"],
            deleted.json()["user_deleted"]) == (1, 1, True)
    after = requests.get(f"{sandbox.api_url}/api/v1/users/me/limits", headers=auth, timeout=15)
    assert after.status_code == 401
    # The address is free again: mail for it is now refused as for anyone unknown.
    late = smtp_send(sandbox.smtp_port, sender, access.agent_email,
                     compose(sender, access.agent_email, f"late {tag}", "Too late.\n"))
    assert late.code >= 500, late


def test_openapi_document_is_served(sandbox: RunningSandbox) -> None:
    result = requests.get(f"{sandbox.api_url}/api/openapi.json", timeout=15)
    assert result.status_code == 200
    document = result.json()
    assert document["servers"] == [{"url": sandbox.api_url}]
    assert "/api/v1/users/me/export" in document["paths"]
    assert "get" in document["paths"]["/api/v1/agents/{email}/messages"]
