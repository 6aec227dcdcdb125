"""``wait=sent`` on a /v1 send: held until the message left (Postfix's
reinjection took it: 200 ``sent`` with its queue id) or the wait ran out
(202 ``accepted`` as without it). The fake submit service has no content
filter behind it, so the test plays the filter's part."""

from __future__ import annotations

import threading
import time

import pytest
from apisupport import make_tenant
from submitsupport import sending_client
from v1support import assert_envelope, messages_path

from e2a.api.v1.resources import sending as v1_sending
from e2a.core.db import single_connection
from e2a.core.outbound import delivery


@pytest.fixture(autouse=True)
def clean(postfix):
    postfix.reset()


@pytest.fixture(scope="module")
def client(cfg, postfix, tmp_path_factory):
    with sending_client(cfg, postfix, tmp_path_factory.mktemp("sendwait")) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def tenant(cfg):
    return make_tenant(cfg)


def send(client, tenant, wait: str):
    return client.simulate_post(messages_path(tenant.agent["email"]), headers=tenant.auth,
                                params={"wait": wait},
                                json={"to": ["bob@example.org"], "subject": "Hi",
                                      "text": "hello"})


def test_wait_sent_answers_sent_once_the_message_left(cfg, client, tenant, postfix):
    def filter_passes_it_on() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with single_connection(cfg) as conn:
                row = conn.execute(
                    "SELECT id FROM messages WHERE agent_id = %s AND direction = 'outbound' "
                    "AND delivery_status = 'queued' ORDER BY created_at DESC LIMIT 1",
                    (tenant.agent["id"],)).fetchone()
                if row:
                    delivery.passed_on(conn, row["id"], "4QREINJ")
                    return
            time.sleep(0.05)

    helper = threading.Thread(target=filter_passes_it_on)
    helper.start()
    result = send(client, tenant, "sent")
    helper.join()
    assert result.status_code == 200, result.text
    assert (result.json["status"], result.json["provider_message_id"]) == ("sent", "4QREINJ")


def test_wait_sent_gives_up_with_accepted(client, tenant, postfix, monkeypatch):
    monkeypatch.setattr(v1_sending, "WAIT_SECONDS", 0.5)
    started = time.monotonic()
    result = send(client, tenant, "sent")
    assert result.status_code == 202, result.text
    assert result.json["status"] == "accepted"
    assert 0.5 <= time.monotonic() - started < 5
    assert postfix.only()  # submitted all the same, once


def test_wait_takes_only_sent(client, tenant, postfix):
    assert_envelope(send(client, tenant, "delivered"), 400, "invalid_request")
    assert postfix.received == []  # refused before anything was recorded or sent
