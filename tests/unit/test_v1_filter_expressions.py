"""The ``filter`` expression of the /v1 message list: the language as
upstream's docs/filtering.md gives it (precedence, quoting, dates as whole
UTC days, wildcards), its limits and errors with columns, and its meaning in
PostgreSQL checked against a plain Python reading of the same tree."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from apisupport import api_client, insert_message, make_tenant
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from v1support import assert_envelope, messages_path

from e2a.core.db import single_connection
from e2a.core.messages.filterexpr import MAX_DEPTH, MAX_NODES, FilterError, parse
from e2a.core.store import messages as message_store
from e2a.core.store.messages import AllOf, AnyOf, Match, Negated

DAY = datetime(2026, 7, 1, tzinfo=UTC)
NEXT_DAY = datetime(2026, 7, 2, tzinfo=UTC)


def label(name: str) -> Match:
    return Match("label", "has", name)


# -- the language -----------------------------------------------------------

def test_not_binds_tighter_than_or_tighter_than_space_tighter_than_and():
    assert parse("label:a OR label:b") == AnyOf((label("a"), label("b")))
    assert parse("label:a label:b OR label:c") == AllOf(
        (label("a"), AnyOf((label("b"), label("c")))))
    assert parse("label:a AND NOT label:b") == AllOf((label("a"), Negated(label("b"))))
    assert parse("-label:a OR label:b") == AnyOf((Negated(label("a")), label("b")))
    assert parse("label:a label:b AND label:c OR label:d") == AllOf(
        (AllOf((label("a"), label("b"))), AnyOf((label("c"), label("d")))))
    assert parse("(label:a OR label:b) label:c") == AllOf(
        (AnyOf((label("a"), label("b"))), label("c")))


def test_the_documented_examples():
    assert parse('(from:"alerts.example" OR subject:"release *") created>=2026-07-01') == \
        AllOf((AnyOf((Match("from", "like", "alerts.example"),
                      Match("subject", "like", "release *"))),
               Match("created", ">=", DAY)))
    assert parse("created=2026-07-01") == AllOf(
        (Match("created", ">=", DAY), Match("created", "<", NEXT_DAY)))


@pytest.mark.parametrize(("written", "meaning"), [
    ("created=2026-07-01", AllOf((Match("created", ">=", DAY), Match("created", "<", NEXT_DAY)))),
    ("created!=2026-07-01", AnyOf((Match("created", "<", DAY),
                                   Match("created", ">=", NEXT_DAY)))),
    ("created<2026-07-01", Match("created", "<", DAY)),
    ("created<=2026-07-01", Match("created", "<", NEXT_DAY)),
    ("created>2026-07-01", Match("created", ">=", NEXT_DAY)),
    ("created>=2026-07-01", Match("created", ">=", DAY)),
    ("created>2026-07-01T10:30:00+02:00",
     Match("created", ">", datetime(2026, 7, 1, 8, 30, tzinfo=UTC))),
])
def test_a_date_is_the_whole_utc_day(written, meaning):
    assert parse(written) == meaning


def test_values_unquoted_and_quoted():
    assert parse("from:ada@example.org") == Match("from", "like", "ada@example.org")
    assert parse("label:e2a:flagged") == label("e2a:flagged")
    assert parse('subject:"build \\"green\\" \\\\ ok"') == \
        Match("subject", "like", 'build "green" \\ ok')
    assert parse('subject = "Weekly report"') == Match("subject", "eq", "Weekly report")
    assert parse("from!=noreply@example.org") == Match("from", "ne", "noreply@example.org")
    assert parse('"label":x') == label("x")


@pytest.mark.parametrize(("written", "column", "says"), [
    ("", 1, "expected a field"),
    ("urgent", 7, "needs a comparator"),
    ("colour:red", 1, "unknown field"),
    ("label=x", 1, "does not take '='"),
    ("created:2026-07-01", 1, "does not take ':'"),
    ("label:Urgent", 7, "a label is"),
    ("created>=yesterday", 10, "RFC 3339"),
    ("created>=2026-02-30", 10, "no such date"),
    ("created>=2026-07-01T10:00:00", 10, "RFC 3339"),  # no zone
    ("(label:a", 9, "expected ')'"),
    ("label:a)", 8, "unexpected ')'"),
    ('subject:"open', 9, "unterminated string"),
    ('subject:"a\\nb"', 11, "escape"),
    ("label:a AND", 12, "expected a field"),
    ("OR label:a", 1, "needs an expression on each side"),
    ("label:", 7, "needs a value"),
    ("label:a\x00", 8, "NUL"),
])
def test_errors_say_what_and_where(written, column, says):
    with pytest.raises(FilterError) as caught:
        parse(written)
    assert caught.value.column == column, str(caught.value)
    assert says in str(caught.value)
    assert str(caught.value).endswith(f"at column {column}")


def test_limits_on_length_and_depth():
    parse("label:" + "a" * 64)
    with pytest.raises(FilterError, match="at most 500"):
        parse("label:a " * 62 + "label:bb")  # 504 characters
    parse("(" * MAX_DEPTH + "label:a" + ")" * MAX_DEPTH)
    with pytest.raises(FilterError, match="nesting deeper"):
        parse("(" * (MAX_DEPTH + 1) + "label:a" + ")" * (MAX_DEPTH + 1))


def test_the_node_limit_holds_whatever_the_length_limit(monkeypatch):
    # Within 500 characters no expression reaches 512 nodes (a node takes
    # 4 characters at least); the node limit is there should that change.
    from e2a.core.messages import filterexpr
    monkeypatch.setattr(filterexpr, "MAX_LENGTH", 10_000)
    parse(" ".join(["created=2026-07-01"] * 170))  # 3 * 170 + 1 = 511 nodes
    with pytest.raises(FilterError, match=f"more than {MAX_NODES}"):
        parse(" ".join(["created=2026-07-01"] * 171))


# -- in PostgreSQL, through the API ----------------------------------------

@pytest.fixture(scope="module")
def client(cfg):
    with api_client(cfg) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def mailbox(cfg):
    """An agent with messages that differ in labels, sender, subject (one
    empty) and day; the rows as Python sees them."""
    tenant = make_tenant(cfg)
    specs = [
        ("ada@alerts.example", "Release 1.0 is out", ["urgent"], "2026-06-30T23:59:59+00:00"),
        ("bob@example.org", "Weekly report", ["newsletter"], "2026-07-01T00:00:00+00:00"),
        ("carol@alerts.example", "release candidate", ["urgent", "follow-up"],
         "2026-07-01T12:00:00+00:00"),
        ("dave@example.org", "", [], "2026-07-02T00:00:00+00:00"),
        ("ALERTS@Example.ORG", "100% off_sale", ["e2a:flagged"], "2026-07-03T08:00:00+00:00"),
    ]
    rows = [{"id": insert_message(cfg, tenant.agent, sender=sender, subject=subject),
             "sender": sender, "subject": subject, "labels": labels,
             "created_at": datetime.fromisoformat(created)}
            for sender, subject, labels, created in specs]
    # After the inserts: an open transaction here would hold the row
    # insert_message's own connection needs.
    with single_connection(cfg) as conn:
        for row in rows:
            conn.execute("UPDATE messages SET subject = %s, labels = %s, created_at = %s "
                         "WHERE id = %s", (row["subject"], row["labels"], row["created_at"],
                                           row["id"]))
    return tenant, rows


def listed(client, tenant, written, **params) -> list[str]:
    result = client.simulate_get(messages_path(tenant.agent["email"]), headers=tenant.auth,
                                 params={"filter": written, "read_status": "all",
                                         "sort": "asc", **params})
    assert result.status_code == 200, result.text
    return [m["id"] for m in result.json["items"]]


def test_listing_by_expression(client, mailbox):
    tenant, rows = mailbox
    ids = [r["id"] for r in rows]
    assert listed(client, tenant, "label:urgent OR label:newsletter") == ids[:3]
    assert listed(client, tenant, "label:urgent AND NOT label:follow-up") == [ids[0]]
    assert listed(client, tenant, "created=2026-07-01") == ids[1:3]
    assert listed(client, tenant, "created<=2026-07-01") == ids[:3]
    assert listed(client, tenant, "created>2026-07-01") == ids[3:]
    assert listed(client, tenant, 'subject:"release *"') == [ids[0], ids[2]]
    assert listed(client, tenant, "from=alerts@example.org") == [ids[4]]
    # '%' and '_' are literal, never SQL wildcards.
    assert listed(client, tenant, 'subject:"0% off_"') == [ids[4]]
    assert listed(client, tenant, 'subject:"0_ off"') == []
    # A message without a subject has an empty one.
    assert ids[3] in listed(client, tenant, "subject!=x")
    assert ids[3] not in listed(client, tenant, "subject:release")
    assert ids[3] in listed(client, tenant, "NOT subject:release")
    # ANDed with the flat filters.
    assert listed(client, tenant, "label:urgent", **{"from": "carol"}) == [ids[2]]


def test_a_bad_expression_is_a_400_invalid_filter(client, mailbox):
    tenant, _ = mailbox
    result = client.simulate_get(messages_path(tenant.agent["email"]), headers=tenant.auth,
                                 params={"filter": "colour:red"})
    body = assert_envelope(result, 400, "invalid_filter")
    assert "at column 1" in body["message"]


def test_the_cursor_is_bound_to_the_expression(client, mailbox):
    tenant, rows = mailbox
    path = messages_path(tenant.agent["email"])
    first = client.simulate_get(path, headers=tenant.auth, params={
        "filter": "label:urgent", "read_status": "all", "sort": "asc", "limit": "1"})
    assert [m["id"] for m in first.json["items"]] == [rows[0]["id"]]
    cursor = first.json["next_cursor"]
    again = client.simulate_get(path, headers=tenant.auth, params={
        "filter": "label:urgent", "read_status": "all", "sort": "asc", "limit": "1",
        "cursor": cursor})
    assert [m["id"] for m in again.json["items"]] == [rows[2]["id"]]
    other = client.simulate_get(path, headers=tenant.auth, params={
        "filter": "label:newsletter", "read_status": "all", "sort": "asc", "cursor": cursor})
    assert_envelope(other, 400, "invalid_cursor")


# -- PostgreSQL means what Python means ---------------------------------------

def _holds(node, row) -> bool:
    if isinstance(node, AllOf):
        return all(_holds(item, row) for item in node.items)
    if isinstance(node, AnyOf):
        return any(_holds(item, row) for item in node.items)
    if isinstance(node, Negated):
        return not _holds(node.item, row)
    if node.field == "label":
        return node.value in row["labels"]
    if node.field == "created":
        at, value = row["created_at"], node.value
        return {"=": at == value, "!=": at != value, "<": at < value, "<=": at <= value,
                ">": at > value, ">=": at >= value}[node.op]
    text = row["sender" if node.field == "from" else "subject"]
    if text is None:
        return False
    if node.op == "like":
        return _glob(node.value.lower(), text.lower())
    same = text.lower() == node.value.lower()
    return same if node.op == "eq" else not same


def _glob(pattern: str, text: str) -> bool:
    """``*`` any run of characters, everything else itself, anywhere in ``text``."""
    regex = ".*" + ".*".join(re.escape(part) for part in pattern.split("*")) + ".*"
    return re.fullmatch(regex, text, re.DOTALL) is not None


_atoms = st.sampled_from([
    "label:urgent", "label:newsletter", "label:follow-up", "label:e2a:flagged",
    "from:alerts", "from:example.org", "from=bob@example.org", "from!=bob@example.org",
    'subject:"release *"', "subject:report", "subject:%", "subject=x", "subject!=x",
    "created=2026-07-01", "created!=2026-07-01", "created<2026-07-01", "created<=2026-07-01",
    "created>2026-07-01", "created>=2026-07-02", "created>2026-07-01T00:00:00Z",
])


def _expressions() -> st.SearchStrategy[str]:
    return st.recursive(_atoms, lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda p: f"{p[0]} OR {p[1]}"),
        st.tuples(inner, inner).map(lambda p: f"{p[0]} AND {p[1]}"),
        st.tuples(inner, inner).map(lambda p: f"{p[0]} {p[1]}"),
        inner.map(lambda e: f"NOT ({e})"),
        inner.map(lambda e: f"({e})"),
    ), max_leaves=8)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(written=_expressions())
def test_postgres_agrees_with_python(cfg, mailbox, written):
    tenant, rows = mailbox
    tree = parse(written)
    expected = [r["id"] for r in rows if _holds(tree, r)]
    with single_connection(cfg) as conn:
        found = message_store.list_for_agent(
            conn, tenant.agent["id"], message_store.MessageFilter(expression=tree),
            ascending=True, limit=100, after=None)
    assert [r["id"] for r in found] == expected, written
