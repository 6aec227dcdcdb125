"""GET /api/v1/agents/{email}/conversations[/{id}] on a real database: the
aggregates, their order, since/until, page_size, and the detail's unions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from apisupport import add_agent, api_client, insert_message, make_tenant
from inboxsupport import conversations_path, make_outbound, mark_read, set_created_at, set_labels

from e2a.api.resources.conversations import MAX_CONVERSATION_MESSAGES

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
SUMMARY_FIELDS = {"conversation_id", "first_message_at", "last_message_at", "message_count",
                  "inbound_count", "outbound_count", "has_unread", "latest_subject",
                  "latest_sender"}


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def iso(hours: float) -> str:
    return at(hours).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def client(cfg):
    with api_client(cfg) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def threads(cfg):
    """conv_read: two read inbound and a reply of ours, latest at +5h.
    conv_unread: one unread inbound at +3h.
    conv_sent: only our own message, at +1h.
    Plus a message in no conversation, the newest of all."""
    tenant = make_tenant(cfg)
    agent = tenant.agent
    ids: dict[str, list[str]] = {}

    def put(conv, hours, *, sender="alice@example.org", subject="s", outbound=False,
            read=False, labels=(), cc=()):
        message_id = insert_message(cfg, agent, sender=sender, subject=subject,
                                    conversation_id=conv, cc=list(cc))
        set_created_at(cfg, message_id, at(hours))
        if labels:
            set_labels(cfg, message_id, list(labels))
        if outbound:
            make_outbound(cfg, message_id)
        elif read:
            mark_read(cfg, message_id)
        ids.setdefault(conv or "", []).append(message_id)

    put("conv_read", 0, subject="Question", read=True, labels=("support",),
        sender="Alice@Example.ORG", cc=("Carol@example.net",))
    put("conv_read", 2, sender=agent["email"], subject="Re: Question", outbound=True,
        labels=("e2a:sent",))
    put("conv_read", 5, subject="Re: Re: Question", read=True, labels=("support", "done"),
        sender="bob@example.org")
    put("conv_unread", 3, subject="New thing", sender="dave@example.com")
    put("conv_sent", 1, sender=agent["email"], subject="Cold outreach", outbound=True)
    put(None, 9, subject="No thread")
    return tenant, ids


def listing(client, tenant, **params):
    result = client.simulate_get(conversations_path(tenant.agent["email"]),
                                 headers=tenant.auth, params=params)
    assert result.status_code == 200, result.text
    return result.json["conversations"]


def test_summaries(client, threads):
    tenant, _ = threads
    conversations = listing(client, tenant)
    assert [c["conversation_id"] for c in conversations] == [
        "conv_read", "conv_unread", "conv_sent"]
    for summary in conversations:
        assert set(summary) == SUMMARY_FIELDS
    by_id = {c["conversation_id"]: c for c in conversations}
    assert by_id["conv_read"] == {
        "conversation_id": "conv_read", "first_message_at": iso(0),
        "last_message_at": iso(5), "message_count": 3, "inbound_count": 2,
        "outbound_count": 1, "has_unread": False, "latest_subject": "Re: Re: Question",
        "latest_sender": "bob@example.org"}
    assert by_id["conv_unread"]["has_unread"] is True
    assert by_id["conv_unread"]["message_count"] == 1
    # Our own message does not make a thread unread.
    assert by_id["conv_sent"] == {
        "conversation_id": "conv_sent", "first_message_at": iso(1),
        "last_message_at": iso(1), "message_count": 1, "inbound_count": 0,
        "outbound_count": 1, "has_unread": False, "latest_subject": "Cold outreach",
        "latest_sender": tenant.agent["email"]}


@pytest.mark.parametrize(("params", "expected"), [
    ({"since": iso(3)}, ["conv_read", "conv_unread"]),
    ({"since": iso(3.5)}, ["conv_read"]),
    ({"until": iso(5)}, ["conv_unread", "conv_sent"]),
    ({"since": iso(1), "until": iso(3)}, ["conv_sent"]),
    ({"since": iso(6)}, []),
    ({"page_size": "2"}, ["conv_read", "conv_unread"]),
    ({"page_size": "1000"}, ["conv_read", "conv_unread", "conv_sent"]),
])
def test_window_and_page_size(client, threads, params, expected):
    tenant, _ = threads
    assert [c["conversation_id"] for c in listing(client, tenant, **params)] == expected


@pytest.mark.parametrize(("params", "param"), [
    ({"since": "last week"}, "since"), ({"until": "2026-04-01T09:00:00"}, "until"),
    ({"page_size": "0"}, "page_size"), ({"page_size": "many"}, "page_size"),
])
def test_bad_parameters_are_400(client, threads, params, param):
    tenant, _ = threads
    result = client.simulate_get(conversations_path(tenant.agent["email"]),
                                 headers=tenant.auth, params=params)
    assert result.status_code == 400
    assert result.json["error"]["details"] == {"param": param}


def test_list_is_capped_at_one_hundred(cfg, client):
    tenant = make_tenant(cfg)
    for i in range(101):
        insert_message(cfg, tenant.agent, conversation_id=f"conv_many_{i:03}")
    assert len(listing(client, tenant)) == 100
    assert len(listing(client, tenant, page_size="500")) == 100


def test_detail_shows_the_newest_members_up_to_a_cap(cfg, client):
    """Anyone can add to a conversation by mailing the agent in its thread:
    the detail must not grow with it."""
    tenant = make_tenant(cfg)
    ids = [insert_message(cfg, tenant.agent, conversation_id="conv_long", subject=f"n{i}")
           for i in range(MAX_CONVERSATION_MESSAGES + 2)]
    for n, message_id in enumerate(ids):
        set_created_at(cfg, message_id, datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=n))
    detail = client.simulate_get(conversations_path(tenant.agent["email"], "conv_long"),
                                 headers=tenant.auth).json
    assert detail["message_count"] == len(ids)
    assert [m["message_id"] for m in detail["messages"]] == ids[-MAX_CONVERSATION_MESSAGES:]


def test_detail(client, threads):
    tenant, ids = threads
    email = tenant.agent["email"]
    result = client.simulate_get(conversations_path(email, "conv_read"), headers=tenant.auth)
    assert result.status_code == 200, result.text
    detail = result.json
    summary = next(c for c in listing(client, tenant) if c["conversation_id"] == "conv_read")
    assert {k: detail[k] for k in SUMMARY_FIELDS} == summary
    assert set(detail) == SUMMARY_FIELDS | {"participants", "labels", "messages"}
    assert detail["participants"] == sorted(
        ["alice@example.org", "bob@example.org", "carol@example.net", email])
    assert detail["labels"] == ["done", "e2a:sent", "support"]
    assert [m["message_id"] for m in detail["messages"]] == ids["conv_read"]  # oldest first
    assert [m["direction"] for m in detail["messages"]] == ["inbound", "outbound", "inbound"]
    assert [m["status"] for m in detail["messages"]] == ["read", "", "read"]
    listed = client.simulate_get(tenant.messages_path, headers=tenant.auth,
                                 params={"conversation_id": "conv_read", "sort": "asc",
                                         "direction": "all"}).json["messages"]
    assert detail["messages"] == listed


def test_detail_has_unread_counts_inbound_only(cfg, client, threads):
    tenant, _ = threads
    email = tenant.agent["email"]
    unread = client.simulate_get(conversations_path(email, "conv_unread"), headers=tenant.auth)
    assert unread.json["has_unread"] is True
    assert unread.json["labels"] == []
    sent = client.simulate_get(conversations_path(email, "conv_sent"), headers=tenant.auth)
    assert sent.json["has_unread"] is False
    # Our address as sender and (in this fixture) as To: once.
    assert sent.json["participants"] == [email]


@pytest.mark.parametrize("conversation_id", ["conv_nope", "conv", "%", "conv_rea_"])
def test_unknown_conversation_is_404(client, threads, conversation_id):
    tenant, _ = threads
    result = client.simulate_get(conversations_path(tenant.agent["email"], conversation_id),
                                 headers=tenant.auth)
    assert result.status_code == 404
    assert result.json["error"]["code"] == "not_found"


def test_conversation_of_a_sibling_agent_is_404(cfg, client, threads):
    tenant, _ = threads
    sibling = add_agent(cfg, tenant)
    insert_message(cfg, sibling, conversation_id="conv_sibling")
    assert client.simulate_get(conversations_path(tenant.agent["email"], "conv_sibling"),
                               headers=tenant.auth).status_code == 404
    assert client.simulate_get(conversations_path(sibling["email"], "conv_sibling"),
                               headers=tenant.auth).status_code == 200
