"""The sending endpoints' refusals, on a real database with a real SMTP
server for Postfix: header injection and bad input (400, nothing submitted or
stored), Idempotency-Key (replay, 422, 409, release on failure), the
per-agent send rate (429) and Postfix unreachable or refusing (503, nothing
recorded)."""

from __future__ import annotations

import base64
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from apisupport import add_agent, agent_key, api_client, assert_error, make_tenant
from sendsupport import (
    SEND,
    forward_path,
    named_agent,
    outbound_rows,
    received,
    reply_path,
    sent_events_of_user,
)
from submitsupport import free_port, sending_config

from e2a.api.idempotent import HEADER, REPLAYED
from e2a.core import apikeys
from e2a.core.db import single_connection
from e2a.core.store import keys as key_store

LIMITS = {"max_attachments": 2, "max_attachment_bytes": 1000,
          "max_attachments_total_bytes": 1500}


@pytest.fixture(autouse=True)
def clean(postfix):
    postfix.reset()


@pytest.fixture(scope="module")
def send_cfg(cfg, postfix, tmp_path_factory):
    return sending_config(cfg, tmp_path_factory.mktemp("rules") / "e2a.toml", postfix.address,
                          **LIMITS)


@pytest.fixture(scope="module")
def client(send_cfg):
    with api_client(send_cfg) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def tenant(cfg):
    return make_tenant(cfg)


@pytest.fixture(scope="module")
def agent(cfg, tenant):
    return named_agent(cfg, tenant)


def post(client, tenant, path, body, key=None):
    headers = {**tenant.auth, **({HEADER: key} if key is not None else {})}
    return client.simulate_post(path, json=body, headers=headers)


def message(agent, **overrides):
    body = {"from": agent["email"], "to": ["alice@example.org"], "subject": "Hello",
            "body": "Hi"}
    body.update(overrides)
    return body


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Nothing:
    """Asserts that nothing was submitted, stored or announced meanwhile."""

    def __init__(self, cfg, tenant, agent, postfix) -> None:
        self.cfg, self.tenant, self.agent, self.postfix = cfg, tenant, agent, postfix

    def __enter__(self) -> None:
        self.submitted = len(self.postfix.received)
        self.rows = len(outbound_rows(self.cfg, self.agent["id"]))
        self.events = sent_events_of_user(self.cfg, self.tenant.user["id"])

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            assert len(self.postfix.received) == self.submitted
            assert len(outbound_rows(self.cfg, self.agent["id"])) == self.rows
            assert sent_events_of_user(self.cfg, self.tenant.user["id"]) == self.events


@pytest.fixture
def nothing(cfg, tenant, agent, postfix):
    return Nothing(cfg, tenant, agent, postfix)


# -- header injection and bad input ----------------------------------------------------

INJECTIONS = [
    ({"subject": "Hello\r\nBcc: victim@example.org"}, "subject"),
    ({"subject": "Hello\nX-Evil: 1"}, "subject"),
    ({"subject": "Hello\u2028X-Evil: 1"}, "subject"),
    ({"subject": "=?utf-8?q?Hello=0D=0ABcc:_victim@example.org?="}, "subject"),
    ({"to": ["alice@example.org\r\nBcc: victim@example.org"]}, "to"),
    ({"to": ["Alice\r\nBcc: victim@example.org <alice@example.org>"]}, "to"),
    ({"cc": ["Carol <carol@example.org>\nX-Evil: 1"]}, "cc"),
    ({"bcc": ["hidden@example.org\r\n"]}, "bcc"),
    ({"conversation_id": "conv_1\r\nBcc: victim@example.org"}, "conversation_id"),
    ({"attachments": [{"filename": "a.txt\r\nX-Evil: 1", "content_type": "text/plain",
                       "data": b64(b"x")}]}, "attachments[0].filename"),
    ({"attachments": [{"filename": "a.txt", "content_type": "text/plain\r\nX-Evil: 1",
                       "data": b64(b"x")}]}, "attachments[0].content_type"),
]


@pytest.mark.parametrize(("overrides", "param"), INJECTIONS)
def test_header_injection_is_refused_and_nothing_leaves(client, tenant, agent, nothing,
                                                        overrides, param):
    with nothing:
        error = assert_error(post(client, tenant, SEND, message(agent, **overrides)), 400,
                             "invalid_request")
    assert error["details"] == {"param": param}


def test_reply_and_forward_refuse_injection_too(cfg, client, tenant, agent, nothing):
    parent = received(cfg, agent)
    with nothing:
        for path, body in (
            (reply_path(agent["email"], parent), {"body": "x", "cc": ["a@b.org\r\nX: 1"]}),
            (reply_path(agent["email"], parent), {"body": "x", "conversation_id": "a\nb"}),
            (forward_path(agent["email"], parent), {"to": ["x@example.org\nBcc: y@z.org"]}),
        ):
            assert_error(post(client, tenant, path, body), 400, "invalid_request")


BAD_INPUT = [
    ({"from": None}, "from"),
    ({"from": 7}, "from"),
    ({"to": []}, "to"),
    ({"to": "not-an-address"}, "to"),
    ({"to": [["nested@example.org"]]}, "to"),
    ({"to": {"alice@example.org": 1}}, "to"),
    ({"to": [f"p{n}@example.org" for n in range(40)],
      "cc": [f"c{n}@example.org" for n in range(11)]}, "to"),  # 51 > mail.max_recipients
    ({"body": "", "html_body": None}, "body"),
    ({"body": 5}, "body"),
    ({"body": "nul\x00"}, "body"),
    ({"subject": ["x"]}, "subject"),
    ({"attachments": "file"}, "attachments"),
    ({"attachments": ["file"]}, "attachments[0]"),
    ({"attachments": [{"filename": "a", "data": "!!not base64!!"}]}, "attachments[0].data"),
    ({"attachments": [{"filename": "a", "data": "\u00e9\u00e9\u00e9\u00e9"}]},
     "attachments[0].data"),
    ({"attachments": [{"filename": "", "data": b64(b"x")}]}, "attachments[0].filename"),
    ({"attachments": [{"filename": "a", "data": 12}]}, "attachments[0].data"),
    ({"attachments": [{"filename": "big", "data": b64(b"x" * 1001)}]}, "attachments[0].data"),
    ({"attachments": [{"filename": "huge", "data": b64(b"x" * 100_000)}]},
     "attachments[0].data"),
    ({"attachments": [{"filename": f"{n}", "data": b64(b"x")} for n in range(3)]},
     "attachments"),
    ({"attachments": [{"filename": "a", "data": b64(b"x" * 1000)},
                      {"filename": "b", "data": b64(b"x" * 501)}]}, "attachments"),
]


@pytest.mark.parametrize(("overrides", "param"), BAD_INPUT)
def test_bad_input_is_a_400_naming_the_field(client, tenant, agent, nothing, overrides, param):
    with nothing:
        error = assert_error(post(client, tenant, SEND, message(agent, **overrides)), 400,
                             "invalid_request")
    assert error["details"] == {"param": param}


def test_attachments_at_the_limits_go_out(client, tenant, agent, postfix):
    files = [{"filename": "a.bin", "data": b64(b"a" * 1000)},
             {"filename": "b.bin", "content_type": None, "data": b64(b"b" * 500)}]
    assert post(client, tenant, SEND, message(agent, attachments=files)).status_code == 200
    attached = list(postfix.only().message.iter_attachments())
    assert [a.get_payload(decode=True) for a in attached] == [b"a" * 1000, b"b" * 500]
    assert [a.get_content_type() for a in attached] == ["application/octet-stream"] * 2


def test_a_body_that_is_not_a_json_object(client, tenant, nothing):
    with nothing:
        assert_error(client.simulate_post(SEND, body="[1, 2]", headers={
            **tenant.auth, "Content-Type": "application/json"}), 400, "invalid_request")
        assert_error(client.simulate_post(SEND, body="{broken", headers={
            **tenant.auth, "Content-Type": "application/json"}), 400, "invalid_json")


# -- Idempotency-Key ----------------------------------------------------------------


def test_same_key_and_body_replays_the_first_answer(cfg, client, tenant, agent, postfix):
    first = post(client, tenant, SEND, message(agent), key="order-1")
    assert first.status_code == 200
    assert REPLAYED not in first.headers
    # The same body in another spelling (key order, spacing) is the same request.
    again = client.simulate_post(SEND, body=(
        '{"body": "Hi", "subject": "Hello", "to": ["alice@example.org"], '
        f'"from": "{agent["email"]}"}}'), headers={**tenant.auth, HEADER: "order-1",
                                                  "Content-Type": "application/json"})
    assert again.status_code == 200
    assert again.json == first.json
    assert again.headers[REPLAYED] == "true"
    assert len(postfix.received) == 1
    assert [r["id"] for r in outbound_rows(cfg, agent["id"])].count(first.json["message_id"]) == 1


def test_same_key_other_body_is_422(client, tenant, agent, nothing):
    assert post(client, tenant, SEND, message(agent), key="order-2").status_code == 200
    with nothing:
        assert_error(post(client, tenant, SEND, message(agent, subject="Other"),
                          key="order-2"), 422, "idempotency_key_reused")
        # The same key on another endpoint is another request too.
        assert_error(post(client, tenant, "/api/v1/send", message(agent, body="Hi!"),
                          key="order-2"), 422, "idempotency_key_reused")


def test_keys_are_per_user(cfg, client, tenant, agent, postfix):
    other = make_tenant(cfg)
    assert post(client, tenant, SEND, message(agent), key="shared-key").status_code == 200
    theirs = post(client, other, SEND, message(other.agent), key="shared-key")
    assert theirs.status_code == 200
    assert REPLAYED not in theirs.headers
    assert len(postfix.received) == 2


def test_while_the_first_is_running_the_second_gets_409(client, tenant, agent, postfix):
    postfix.hold = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(post, client, tenant, SEND, message(agent), "order-3")
        assert postfix.data_started.wait(10)
        assert_error(post(client, tenant, SEND, message(agent), key="order-3"), 409,
                     "idempotency_key_in_progress")
        postfix.hold.set()
        assert first.result(30).status_code == 200
    replay = post(client, tenant, SEND, message(agent), key="order-3")
    assert replay.headers[REPLAYED] == "true"
    assert replay.json == first.result().json
    assert len(postfix.received) == 1


def test_a_failed_send_frees_its_key(client, tenant, agent, postfix, nothing):
    postfix.data_reply = "451 4.3.0 Error: queue file write error"
    with nothing:
        assert_error(post(client, tenant, SEND, message(agent), key="order-4"), 503,
                     "submit_unavailable")
    postfix.data_reply = ""
    retried = post(client, tenant, SEND, message(agent), key="order-4")
    assert retried.status_code == 200
    assert REPLAYED not in retried.headers
    assert len(postfix.received) == 1
    # So does a refusal: the key is free for the corrected request.
    assert_error(post(client, tenant, SEND, message(agent, to=[]), key="order-5"), 400,
                 "invalid_request")
    assert post(client, tenant, SEND, message(agent), key="order-5").status_code == 200


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9"])
def test_malformed_keys_are_refused(client, tenant, agent, nothing, key):
    with nothing:
        error = assert_error(post(client, tenant, SEND, message(agent), key=key), 400,
                             "invalid_request")
    assert error["details"] == {"param": HEADER}


def test_a_key_of_255_characters_is_fine(client, tenant, agent):
    assert post(client, tenant, SEND, message(agent), key="k" * 255).status_code == 200


def test_reply_and_forward_are_idempotent_too(cfg, client, tenant, agent, postfix):
    parent = received(cfg, agent)
    for path, body in ((reply_path(agent["email"], parent), {"body": "ok"}),
                       (forward_path(agent["email"], parent), {"to": ["x@example.org"]})):
        key = f"key-{path[-7:]}"
        first = post(client, tenant, path, body, key=key)
        again = post(client, tenant, path, body, key=key)
        assert (first.status_code, again.status_code) == (200, 200)
        assert again.json == first.json and again.headers[REPLAYED] == "true"
    assert len(postfix.received) == 2


def _as(client, key, path, body, idempotency_key):
    return client.simulate_post(path, json=body, headers={
        "Authorization": f"Bearer {key}", HEADER: idempotency_key})


def test_a_replay_comes_only_after_the_current_key_is_authorized(cfg, client, tenant,
                                                                 agent, postfix):
    """Keys are per user, so a key of the same user scoped to another agent
    (or a key revoked since) must not get the stored answer: authorization
    comes first, whatever the Idempotency-Key."""
    mine = agent_key(cfg, tenant, agent)
    other = agent_key(cfg, tenant, add_agent(cfg, tenant))
    parent = received(cfg, agent)
    for path, body in ((SEND, message(agent)),
                       (reply_path(agent["email"], parent), {"body": "ok"}),
                       (forward_path(agent["email"], parent), {"to": ["x@example.org"]})):
        key = f"scoped-{path[-7:]}"
        first = _as(client, mine, path, body, key)
        assert first.status_code == 200, first.text
        theirs = _as(client, other, path, body, key)
        assert_error(theirs, 404, "not_found")
        assert REPLAYED not in theirs.headers
        assert first.json["message_id"] not in theirs.text
    with single_connection(cfg) as conn:
        key_id = conn.execute("SELECT id FROM api_keys WHERE key_hash = %s",
                              (apikeys.digest(mine),)).fetchone()["id"]
        assert key_store.revoke_key(conn, key_id)
    revoked = _as(client, mine, SEND, message(agent), f"scoped-{SEND[-7:]}")
    assert_error(revoked, 401, "unauthorized")
    assert len(postfix.received) == 3


# -- the send rate -----------------------------------------------------------------


def test_the_per_agent_rate_is_a_429_with_retry_after(cfg, postfix, tmp_path_factory):
    limited = sending_config(cfg, tmp_path_factory.mktemp("rate") / "e2a.toml",
                             postfix.address, rate_per_agent=2)
    tenant = make_tenant(cfg)
    agent = named_agent(cfg, tenant)
    with api_client(limited) as client:
        for _ in range(2):
            assert post(client, tenant, SEND, message(agent)).status_code == 200
        with Nothing(cfg, tenant, agent, postfix):
            refused = post(client, tenant, SEND, message(agent))
        error = assert_error(refused, 429, "rate_limited")
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert error["details"]["retry_after_seconds"] == int(refused.headers["Retry-After"])
        # Per agent: the user's other agent still sends.
        assert post(client, tenant, SEND, message(tenant.agent)).status_code == 200
    assert len(postfix.received) == 3


# -- Postfix unreachable or refusing -----------------------------------------------------


def test_postfix_down_is_a_503_and_nothing_is_recorded(cfg, tmp_path_factory, postfix):
    down = sending_config(cfg, tmp_path_factory.mktemp("down") / "e2a.toml",
                          f"127.0.0.1:{free_port()}")
    tenant = make_tenant(cfg)
    agent = named_agent(cfg, tenant)
    parent = received(cfg, agent)
    with api_client(down) as client, Nothing(cfg, tenant, agent, postfix):
        for path, body in ((SEND, message(agent)),
                           (reply_path(agent["email"], parent), {"body": "x"}),
                           (forward_path(agent["email"], parent), {"to": ["x@example.org"]}),
                           (f"/api/v1/agents/{agent['email']}/test", None)):
            result = client.simulate_post(path, json=body, headers=tenant.auth)
            assert_error(result, 503, "submit_unavailable")
            assert result.headers["Retry-After"] == "30"


def test_postfix_refusing_is_a_503_and_nothing_is_recorded(client, tenant, agent, postfix,
                                                            nothing):
    with nothing:
        postfix.refuse_recipients = {"alice@example.org"}
        assert_error(post(client, tenant, SEND, message(agent)), 503, "submit_unavailable")
        postfix.refuse_recipients = set()
        postfix.data_reply = "554 5.7.1 Error: message content rejected"
        assert_error(post(client, tenant, SEND, message(agent)), 503, "submit_unavailable")


def test_a_database_failure_after_postfixs_250_neither_sends_twice_nor_drops(
        cfg, client, tenant, agent, postfix):
    """The database fails once Postfix has taken the message (here: it
    refuses any change to the row, as a commit lost after the 250 would):
    the client hears an error, but the message and its key's answer were
    committed before Postfix was asked, so a retry with the key sends
    nothing again."""
    from e2a.core.db import single_connection

    subject = "lost commit"
    with single_connection(cfg, autocommit=True) as conn:
        conn.execute("""
            CREATE OR REPLACE FUNCTION test_lost_commit() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION 'the database failed after Postfix''s 250'; END
            $$ LANGUAGE plpgsql""")
        conn.execute(f"""
            CREATE OR REPLACE TRIGGER test_lost_commit BEFORE UPDATE ON messages
            FOR EACH ROW WHEN (OLD.subject = '{subject}') EXECUTE FUNCTION test_lost_commit()""")
    try:
        body = message(agent, subject=subject)
        first = post(client, tenant, SEND, body, key="lost-commit")
        assert first.status_code >= 500, first.text
        assert len(postfix.received) == 1  # Postfix has it
        [row] = [r for r in outbound_rows(cfg, agent["id"]) if r["subject"] == subject]
        # Recorded, with the marker the filter takes away when it meets the message.
        assert (row["status"], row["delivery_status"]) == ("sent", "submitting")
        retried = post(client, tenant, SEND, body, key="lost-commit")
        assert retried.status_code == 409, retried.text
        assert len(postfix.received) == 1  # not sent twice
    finally:
        with single_connection(cfg, autocommit=True) as conn:
            conn.execute("DROP TRIGGER IF EXISTS test_lost_commit ON messages")
