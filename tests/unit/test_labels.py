"""core/messages/labels.py: the label rules and how a delta applies, without a database."""

from __future__ import annotations

import pytest

from e2a.core.messages import labels
from e2a.core.messages.labels import Delta, LabelError


@pytest.mark.parametrize("label", ["a", "urgent", "follow-up", "q1:2026", "x_y", "0",
                                   "e2a:spam", "z" * 64])
def test_well_formed_labels(label):
    assert labels.check(label, "f") == label


@pytest.mark.parametrize("label", ["", "Urgent", "has space", "tab\t", "ümlaut", "a/b",
                                   "a.b", "z" * 65, 7, None, ["a"]])
def test_malformed_labels(label):
    with pytest.raises(LabelError) as caught:
        labels.check(label, "add_labels")
    assert caught.value.field == "add_labels"


def test_delta_applies_sorted_and_deduplicated():
    delta = Delta.parse(["b", "a", "b"], ["c"])
    assert delta.apply(["c", "z", "a"]) == ["a", "b", "z"]


def test_remove_wins_over_add():
    delta = Delta.parse(["keep", "both"], ["both"])
    assert delta.apply([]) == ["keep"]
    assert delta.apply(["both"]) == ["keep"]


def test_absent_lists_change_nothing():
    assert Delta.parse(None, None).apply(["b", "a"]) == ["a", "b"]


@pytest.mark.parametrize(("add", "remove", "field"), [
    (["e2a:spam"], None, "add_labels"),
    (None, ["e2a:spam"], "remove_labels"),
    ("urgent", None, "add_labels"),
    (None, {"a": 1}, "remove_labels"),
    ([f"l{i}" for i in range(51)], None, "add_labels"),
    (None, [f"l{i}" for i in range(51)], "remove_labels"),
    (["ok", "Bad"], None, "add_labels"),
])
def test_bad_deltas(add, remove, field):
    with pytest.raises(LabelError) as caught:
        Delta.parse(add, remove)
    assert caught.value.field == field


def test_fifty_per_list_is_allowed():
    fifty = [f"l{i:02}" for i in range(50)]
    assert Delta.parse(fifty, fifty).apply([]) == []
    assert len(Delta.parse(fifty, None).apply([])) == 50


def test_cap_per_message():
    full = [f"x{i:03}" for i in range(labels.MAX_PER_MESSAGE)]
    with pytest.raises(LabelError):
        Delta.parse(["one-more"], None).apply(full)
    # No growth is fine at the cap: re-adding, swapping, removing.
    assert Delta.parse([full[0]], None).apply(full) == full
    assert Delta.parse(["new"], [full[0]]).apply(full) == sorted([*full[1:], "new"])
    # Over the cap (server-applied labels, say) a caller may still trim.
    over = [*full, "e2a:extra"]
    assert len(Delta.parse(None, [full[0]]).apply(over)) == labels.MAX_PER_MESSAGE
