"""PATCH /api/v1/agents/{email}/messages/{id}: label deltas on a real
database, every rule's 400, the per-message cap, and no lost update when
several callers label one message at once."""

from __future__ import annotations

import threading

import pytest
from apisupport import api_client, insert_message, make_tenant
from inboxsupport import message_path, set_labels, stored


@pytest.fixture(scope="module")
def client(cfg):
    with api_client(cfg) as test_client:
        yield test_client


@pytest.fixture
def message(cfg):
    tenant = make_tenant(cfg)
    return tenant, insert_message(cfg, tenant.agent)


def patch(client, tenant, message_id, body=None, **kwargs):
    return client.simulate_patch(message_path(tenant.agent["email"], message_id),
                                 headers=tenant.auth, json=body, **kwargs)


def test_add_then_remove(cfg, client, message):
    tenant, message_id = message
    added = patch(client, tenant, message_id, {"add_labels": ["urgent", "billing", "urgent"]})
    assert added.status_code == 200, added.text
    assert added.json == {"message_id": message_id, "labels": ["billing", "urgent"]}
    assert stored(cfg, message_id)["labels"] == ["billing", "urgent"]
    removed = patch(client, tenant, message_id,
                    {"remove_labels": ["urgent", "never-there"], "add_labels": ["q1:2026"]})
    assert removed.json["labels"] == ["billing", "q1:2026"]
    # The listing and the detail show the same set.
    listed = client.simulate_get(tenant.messages_path, headers=tenant.auth).json["messages"]
    assert listed[0]["labels"] == ["billing", "q1:2026"]
    detail = client.simulate_get(message_path(tenant.agent["email"], message_id),
                                 headers=tenant.auth).json
    assert detail["labels"] == ["billing", "q1:2026"]


def test_remove_wins(client, message):
    tenant, message_id = message
    patch(client, tenant, message_id, {"add_labels": ["old"]})
    result = patch(client, tenant, message_id,
                   {"add_labels": ["both", "new"], "remove_labels": ["both", "old"]})
    assert result.json["labels"] == ["new"]


@pytest.mark.parametrize("body", [None, {}, {"add_labels": None, "remove_labels": None},
                                  {"add_labels": [], "remove_labels": []},
                                  {"unknown_field": 1}])
def test_empty_delta_is_a_no_op(cfg, client, message, body):
    tenant, message_id = message
    set_labels(cfg, message_id, ["kept"])
    result = patch(client, tenant, message_id, body)
    assert result.status_code == 200, result.text
    assert result.json == {"message_id": message_id, "labels": ["kept"]}


def test_system_labels_survive_user_writes(cfg, client, message):
    tenant, message_id = message
    set_labels(cfg, message_id, ["e2a:auto", "mine"])
    result = patch(client, tenant, message_id, {"add_labels": ["more"],
                                                "remove_labels": ["mine"]})
    assert result.json["labels"] == ["e2a:auto", "more"]


@pytest.mark.parametrize(("body", "param"), [
    ({"add_labels": ["Urgent"]}, "add_labels"),
    ({"add_labels": ["has space"]}, "add_labels"),
    ({"add_labels": [""]}, "add_labels"),
    ({"add_labels": ["x" * 65]}, "add_labels"),
    ({"add_labels": ["dot.ted"]}, "add_labels"),
    ({"add_labels": [7]}, "add_labels"),
    ({"add_labels": [None]}, "add_labels"),
    ({"add_labels": "urgent"}, "add_labels"),
    ({"add_labels": ["e2a:spam"]}, "add_labels"),
    ({"remove_labels": ["e2a:spam"]}, "remove_labels"),
    ({"remove_labels": ["BAD"]}, "remove_labels"),
    ({"remove_labels": {"a": 1}}, "remove_labels"),
    ({"add_labels": [f"l{i}" for i in range(51)]}, "add_labels"),
    ({"remove_labels": [f"l{i}" for i in range(51)]}, "remove_labels"),
])
def test_invalid_delta_is_400_and_changes_nothing(cfg, client, message, body, param):
    tenant, message_id = message
    set_labels(cfg, message_id, ["before"])
    result = patch(client, tenant, message_id, body)
    assert result.status_code == 400
    assert result.json["error"]["code"] == "invalid_request"
    assert result.json["error"]["details"] == {"param": param}
    assert stored(cfg, message_id)["labels"] == ["before"]


def test_limits_themselves_are_allowed(client, message):
    tenant, message_id = message
    fifty = [f"l{i:02}" for i in range(50)]
    result = patch(client, tenant, message_id, {"add_labels": [*fifty[:49], "x" * 64]})
    assert result.status_code == 200
    assert len(result.json["labels"]) == 50


def test_cap_of_one_hundred_per_message(cfg, client, message):
    tenant, message_id = message
    first = [f"a{i:02}" for i in range(50)]
    second = [f"b{i:02}" for i in range(50)]
    assert patch(client, tenant, message_id, {"add_labels": first}).status_code == 200
    full = patch(client, tenant, message_id, {"add_labels": second})
    assert full.status_code == 200
    assert len(full.json["labels"]) == 100
    over = patch(client, tenant, message_id, {"add_labels": ["one-more"]})
    assert over.status_code == 400
    assert "100" in over.json["error"]["message"]
    assert len(stored(cfg, message_id)["labels"]) == 100
    # At the cap, a swap (one out, one in) and a re-add still work.
    swapped = patch(client, tenant, message_id,
                    {"add_labels": ["one-more", "a00"], "remove_labels": ["a01"]})
    assert swapped.status_code == 200
    assert len(swapped.json["labels"]) == 100
    assert "one-more" in swapped.json["labels"]


@pytest.mark.parametrize(("body", "code"), [
    (b"{not json", "invalid_json"),
    (b"[\"urgent\"]", "invalid_request"),
    (b"\"urgent\"", "invalid_request"),
])
def test_body_that_is_not_a_json_object_is_400(client, message, body, code):
    tenant, message_id = message
    result = client.simulate_patch(message_path(tenant.agent["email"], message_id),
                                   headers={**tenant.auth, "Content-Type": "application/json"},
                                   body=body)
    assert result.status_code == 400
    assert result.json["error"]["code"] == code


def test_missing_message_is_404(cfg, client):
    tenant = make_tenant(cfg)
    result = patch(client, tenant, "msg_" + "f" * 32, {"add_labels": ["x"]})
    assert result.status_code == 404
    assert result.json["error"]["code"] == "not_found"


def test_concurrent_patches_lose_no_update(cfg, client, message):
    """Each thread adds its own labels at the same moment; every label lands.
    A read-modify-write without the row lock would drop some."""
    tenant, message_id = message
    threads_count, rounds = 8, 4
    barrier = threading.Barrier(threads_count)
    failures = []

    def worker(n):
        barrier.wait()
        for r in range(rounds):
            result = patch(client, tenant, message_id, {"add_labels": [f"t{n}-r{r}"]})
            if result.status_code != 200:
                failures.append(result.text)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    expected = sorted(f"t{n}-r{r}" for n in range(threads_count) for r in range(rounds))
    assert stored(cfg, message_id)["labels"] == expected
