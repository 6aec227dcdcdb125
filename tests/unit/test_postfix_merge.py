"""Merging our main.cf values into the operator's, and taking them out again."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from e2a import postfix
from e2a.cli.postfix import merge

POLICY = ("check_policy_service", "unix:e2a/policy.sock")
MILTER = ("unix:e2a/milter.sock",)

word = st.sampled_from([
    "permit_mynetworks", "reject_unauth_destination", "permit", "inet:127.0.0.1:8891",
    "check_client_access", "hash:/etc/postfix/access", "{ inet:host:1, default_action=accept }",
    "reject_rbl_client", "zen.spamhaus.org", "{daemon_name}", "j", "_",
])
separator = st.sampled_from([" ", ", ", ",", "\t", ",\n    ", "  "])


@st.composite
def postfix_list(draw: st.DrawFn) -> str:
    words = draw(st.lists(word, max_size=6))
    seps = draw(st.lists(separator, min_size=len(words), max_size=len(words)))
    return "".join(s + w for s, w in zip(seps, words, strict=True)).lstrip()


def test_elements_split_on_commas_and_space_and_keep_braces_whole() -> None:
    value = "permit_mynetworks,reject_unauth_destination  { inet:a:1, default_action=accept }"
    assert merge.words(value) == ["permit_mynetworks", "reject_unauth_destination",
                                  "{ inet:a:1, default_action=accept }"]
    assert merge.words("j {daemon_name} v _") == ["j", "{daemon_name}", "v", "_"]


def test_policy_goes_before_the_first_permit_in_the_lists_own_style() -> None:
    assert (merge.insert("reject_unauth_destination, permit_mynetworks, permit", POLICY, True)
            == "reject_unauth_destination, check_policy_service unix:e2a/policy.sock, "
               "permit_mynetworks, permit")
    assert (merge.insert("permit_mynetworks reject", POLICY, True)
            == "check_policy_service unix:e2a/policy.sock permit_mynetworks reject")
    assert (merge.insert("reject_non_fqdn_recipient", POLICY, True)
            == "reject_non_fqdn_recipient check_policy_service unix:e2a/policy.sock")
    assert merge.insert("", POLICY, True) == "check_policy_service unix:e2a/policy.sock"


def test_milter_goes_last() -> None:
    assert merge.insert("inet:127.0.0.1:8891, permit", MILTER) == (
        "inet:127.0.0.1:8891, permit, unix:e2a/milter.sock")


@given(postfix_list(), st.booleans())
def test_strip_gives_back_exactly_what_insert_was_given(value: str, before: bool) -> None:
    for item in (POLICY, MILTER):
        if not merge.contains(value, item):
            assert merge.strip(merge.insert(value, item, before), item) == value


@given(postfix_list())
def test_merge_twice_adds_nothing_the_second_time(value: str) -> None:
    rule = merge.rule("smtpd_recipient_restrictions")
    ours = "check_policy_service unix:e2a/policy.sock"
    once, added = rule.merge(value, ours)
    assert merge.contains(once, POLICY) and not rule.missing(once, ours)
    assert rule.merge(once, ours) == (once, [])
    assert rule.unmerge(once, added) == value


def test_macro_lists_gain_only_what_they_lack() -> None:
    rule = merge.rule("milter_connect_macros")
    merged, added = rule.merge("j {daemon_name} v _", "j {daemon_name} {client_addr}")
    assert merged == "j {daemon_name} v _ {client_addr}"
    assert added == [("{client_addr}",)]


def test_single_values_are_replaced_and_reported_when_different() -> None:
    rule = merge.rule("message_size_limit")
    assert rule.merge("50000000", "10485760") == ("10485760", [])
    assert rule.missing("50000000", "10485760") == ["10485760"]
    assert rule.missing("10485760", "10485760") == []


def test_restriction_items_pair_a_check_with_its_argument() -> None:
    assert merge.items("check_policy_service unix:x reject_unlisted_recipient",
                       restrictions=True) == [("check_policy_service", "unix:x"),
                                              ("reject_unlisted_recipient",)]


def test_every_list_parameter_of_our_fragment_merges_as_a_list() -> None:
    """A list parameter replaced wholesale would drop the operator's milters,
    restrictions or macros: each one our main.cf sets has a list rule."""
    values = {name: "x" for name in postfix.placeholders("main.cf")}
    for name in postfix.main_cf_params(**values):
        if name.endswith(("_milters", "_macros", "_restrictions", "_classes", "_domains")):
            assert merge.rule(name).list, name


def test_relay_domains_keep_the_operators_and_gain_our_socketmap() -> None:
    ours = "socketmap:unix:e2a/socketmap.sock:relay_domains"
    value, added = merge.rule("relay_domains").merge("$mydestination, example.org", ours)
    assert value == f"$mydestination, example.org, {ours}"
    assert added == [(ours,)]
    assert merge.rule("relay_domains").merge(value, ours) == (value, [])
    assert merge.rule("relay_domains").unmerge(value, added) == "$mydestination, example.org"
    # Postfix 3's default (compatibility_level >= 2) is empty: ours alone.
    assert merge.rule("relay_domains").merge("", ours) == (ours, [(ours,)])
