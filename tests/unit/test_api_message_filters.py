"""The listing's search filters (from, subject_contains, conversation_id,
since, until, labels) on a real database: each alone and combined against a
plain-Python oracle, paged, sealed into next_token, and their bad values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from apisupport import api_client, insert_message, make_tenant
from inboxsupport import make_outbound, set_created_at, set_labels

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


@dataclass
class Spec:
    sender: str
    subject: str
    conversation_id: str | None = None
    labels: tuple[str, ...] = ()
    hours: float = 0  # created_at = T0 + hours
    outbound: bool = False
    id: str = ""

    @property
    def created_at(self) -> datetime:
        return T0 + timedelta(hours=self.hours)


SPECS = [
    Spec("alice@example.org", "Invoice 2026", "conv_a", ("billing",), 0),
    Spec("Alice.Smith@Example.COM", "invoice reminder", "conv_a", ("billing", "urgent"), 1),
    Spec("bob@example.org", "50% discount", None, ("promo",), 2),
    Spec("100%off@deals.example", "Re: hello", "conv_ab", (), 3),
    Spec("under_score@example.org", "snake_case topic", "conv_b", ("urgent",), 4),
    Spec("underXscore@example.org", "snakeXcase topic", "conv_b", ("urgent", "billing"), 5),
    Spec("carol@example.net", "back\\slash subject", None, ("e2a:spam",), 6),
    Spec("carol@example.net", "Weekly report", "conv_a", ("billing", "urgent", "q1"), 7),
    # Same second as the previous one: the id breaks the tie in the keyset.
    Spec("dave@example.org", "Weekly report", None, (), 7),
    Spec("alice@example.org", "Sent by the agent", "conv_a", ("billing",), 8, outbound=True),
]


@pytest.fixture(scope="module")
def client(cfg):
    with api_client(cfg) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def inbox(cfg):
    tenant = make_tenant(cfg)
    specs = [Spec(**{**s.__dict__}) for s in SPECS]
    for spec in specs:
        spec.id = insert_message(cfg, tenant.agent, subject=spec.subject, sender=spec.sender,
                                 conversation_id=spec.conversation_id)
        set_created_at(cfg, spec.id, spec.created_at)
        if spec.labels:
            set_labels(cfg, spec.id, sorted(spec.labels))
        if spec.outbound:
            make_outbound(cfg, spec.id)
    return tenant, specs


def expected(specs, *, direction="inbound", sender="", subject="", conversation_id="",
             since=None, until=None, labels=(), sort="desc"):
    """What the listing must answer, computed without SQL."""
    picked = [
        s for s in specs
        if (direction == "all" or (direction == "outbound") == s.outbound)
        and sender.lower() in s.sender.lower()
        and subject.lower() in s.subject.lower()
        and (not conversation_id or s.conversation_id == conversation_id)
        and (since is None or s.created_at >= since)
        and (until is None or s.created_at < until)
        and set(labels) <= set(s.labels)
    ]
    picked.sort(key=lambda s: (s.created_at, s.id), reverse=sort == "desc")
    return [s.id for s in picked]


def walk(client, tenant, params):
    seen, token = [], None
    for _ in range(50):
        result = client.simulate_get(tenant.messages_path, headers=tenant.auth,
                                     params={**params, **({"token": token} if token else {})})
        assert result.status_code == 200, result.text
        seen += [m["message_id"] for m in result.json["messages"]]
        token = result.json["next_token"]
        if not token:
            return seen
    raise AssertionError("paging never ended")


def iso(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


CASES = [
    # (query parameters, oracle arguments)
    ({"from": "alice"}, {"sender": "alice"}),
    ({"from": "ALICE.smith@example.com"}, {"sender": "alice.smith@example.com"}),
    ({"from": "@example.org"}, {"sender": "@example.org"}),
    ({"subject_contains": "INVOICE"}, {"subject": "invoice"}),
    ({"subject_contains": "weekly"}, {"subject": "weekly"}),
    ({"conversation_id": "conv_a"}, {"conversation_id": "conv_a"}),
    ({"conversation_id": "conv_b"}, {"conversation_id": "conv_b"}),
    ({"conversation_id": "conv"}, {"conversation_id": "conv"}),  # exact: none
    ({"since": iso(3)}, {"since": T0 + timedelta(hours=3)}),
    ({"until": iso(3)}, {"until": T0 + timedelta(hours=3)}),
    ({"since": iso(1), "until": iso(5)},
     {"since": T0 + timedelta(hours=1), "until": T0 + timedelta(hours=5)}),
    ({"since": "2026-03-01T12:00:00+02:00"}, {"since": T0}),  # an offset is honoured
    ({"labels": "billing"}, {"labels": ("billing",)}),
    ({"labels": "billing,urgent"}, {"labels": ("billing", "urgent")}),
    ({"labels": ["urgent", "billing"]}, {"labels": ("billing", "urgent")}),
    ({"labels": "e2a:spam"}, {"labels": ("e2a:spam",)}),
    ({"labels": "nobody-uses-this"}, {"labels": ("nobody-uses-this",)}),
    ({"from": "example.org", "labels": "urgent"}, {"sender": "example.org", "labels": ("urgent",)}),
    ({"subject_contains": "report", "since": iso(7), "sort": "asc"},
     {"subject": "report", "since": T0 + timedelta(hours=7), "sort": "asc"}),
    ({"conversation_id": "conv_a", "labels": "billing", "direction": "all"},
     {"conversation_id": "conv_a", "labels": ("billing",), "direction": "all"}),
    ({"conversation_id": "conv_a", "direction": "outbound"},
     {"conversation_id": "conv_a", "direction": "outbound"}),
    ({"from": "a", "subject_contains": "e", "until": iso(7), "labels": "urgent"},
     {"sender": "a", "subject": "e", "until": T0 + timedelta(hours=7), "labels": ("urgent",)}),
]


@pytest.mark.parametrize(("params", "oracle"), CASES)
def test_filter_matches_the_oracle(client, inbox, params, oracle):
    tenant, specs = inbox
    result = client.simulate_get(tenant.messages_path, headers=tenant.auth, params=params)
    assert result.status_code == 200, result.text
    assert [m["message_id"] for m in result.json["messages"]] == expected(specs, **oracle)


def test_every_case_is_a_real_narrowing(inbox):
    """Guards the table above: most cases must select some but not all rows."""
    _, specs = inbox
    sizes = [len(expected(specs, **oracle)) for _, oracle in CASES]
    inbound = len(expected(specs))
    assert sum(0 < n < inbound for n in sizes) >= len(CASES) - 4


@pytest.mark.parametrize(("params", "oracle"), [c for c in CASES if len(c[1]) > 1 or
                                                "sender" in c[1]])
@pytest.mark.parametrize("page_size", [1, 2, 3])
def test_paging_with_filters_has_no_gaps_or_duplicates(client, inbox, params, oracle,
                                                       page_size):
    tenant, specs = inbox
    assert walk(client, tenant, {**params, "page_size": page_size}) == expected(specs, **oracle)


@pytest.mark.parametrize(("field", "value", "matches"), [
    ("from", "%", ["100%off@deals.example"]),
    ("from", "_", ["under_score@example.org"]),
    ("from", "0%o", ["100%off@deals.example"]),
    ("subject_contains", "%", ["50% discount"]),
    ("subject_contains", "_", ["snake_case topic"]),
    ("subject_contains", "snake_case", ["snake_case topic"]),
    ("subject_contains", "\\", ["back\\slash subject"]),
    ("subject_contains", "k\\s", ["back\\slash subject"]),
])
def test_wildcards_match_only_themselves(client, inbox, field, value, matches):
    tenant, _ = inbox
    result = client.simulate_get(tenant.messages_path, headers=tenant.auth,
                                 params={field: value})
    assert result.status_code == 200
    key = "from" if field == "from" else "subject"
    assert [m[key] for m in result.json["messages"]] == matches


def test_status_all_is_no_status_filter(client, inbox):
    tenant, specs = inbox
    result = client.simulate_get(tenant.messages_path, headers=tenant.auth,
                                 params={"status": "all"})
    assert [m["message_id"] for m in result.json["messages"]] == expected(specs)


@pytest.mark.parametrize(("issued", "used"), [
    ({"from": "example"}, {"from": "example.org"}),
    ({"from": "example"}, {}),
    ({"subject_contains": "e"}, {"subject_contains": "E"}),
    ({"conversation_id": "conv_a"}, {"conversation_id": "conv_b"}),
    ({"since": iso(0)}, {"since": iso(1)}),
    ({"until": iso(8)}, {}),
    ({"labels": "billing"}, {"labels": "billing,urgent"}),
    ({}, {"labels": "billing"}),
])
def test_token_with_other_filters_is_400(client, inbox, issued, used):
    tenant, _ = inbox
    first = client.simulate_get(tenant.messages_path, headers=tenant.auth,
                                params={**issued, "page_size": 1, "direction": "all"})
    token = first.json["next_token"]
    assert token
    result = client.simulate_get(tenant.messages_path, headers=tenant.auth,
                                 params={**used, "page_size": 1, "direction": "all",
                                         "token": token})
    assert result.status_code == 400
    assert result.json["error"]["details"] == {"param": "token"}
    assert "filters" in result.json["error"]["message"]


@pytest.mark.parametrize(("issued", "used"), [
    ({"since": "2026-03-01T10:00:00Z"}, {"since": "2026-03-01T10:00:00+00:00"}),
    ({"since": "2026-03-01T10:00:00Z"}, {"since": "2026-03-01T12:00:00+02:00"}),
    ({"labels": "urgent,billing"}, {"labels": ["billing", "urgent"]}),
    ({"status": "all"}, {}),
])
def test_same_filter_spelled_differently_continues(client, inbox, issued, used):
    tenant, _ = inbox
    first = client.simulate_get(tenant.messages_path, headers=tenant.auth,
                                params={**issued, "page_size": 1})
    token = first.json["next_token"]
    assert token
    result = client.simulate_get(tenant.messages_path, headers=tenant.auth,
                                 params={**used, "page_size": 1, "token": token})
    assert result.status_code == 200, result.text


@pytest.mark.parametrize(("params", "param"), [
    ({"since": "yesterday"}, "since"),
    ({"since": "2026-13-01T00:00:00Z"}, "since"),
    ({"since": "2026-03-01T10:00:00"}, "since"),  # no zone: ambiguous
    ({"until": "2026-03-01"}, "until"),
    ({"until": "1700000000"}, "until"),
    ({"from": "x" * 201}, "from"),
    ({"subject_contains": "x" * 201}, "subject_contains"),
    ({"conversation_id": "c" * 256}, "conversation_id"),
    ({"labels": "Urgent"}, "labels"),
    ({"labels": "has space"}, "labels"),
    ({"labels": "x" * 65}, "labels"),
    ({"labels": ",".join(f"l{i}" for i in range(51))}, "labels"),
])
def test_bad_filter_values_are_400(client, inbox, params, param):
    tenant, _ = inbox
    result = client.simulate_get(tenant.messages_path, headers=tenant.auth, params=params)
    assert result.status_code == 400
    assert result.json["error"]["code"] == "invalid_request"
    assert result.json["error"]["details"] == {"param": param}


def test_longest_allowed_search_is_fine(client, inbox):
    tenant, _ = inbox
    for field in ("from", "subject_contains"):
        result = client.simulate_get(tenant.messages_path, headers=tenant.auth,
                                     params={field: "x" * 200})
        assert result.status_code == 200
        assert result.json["messages"] == []
