"""What a WebSocket session remembers of the frames it sent (api/wsession.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from e2a.api.wsession import SentIds

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_remembers_what_a_repeat_could_still_name():
    sent = SentIds(timedelta(seconds=120))
    for i in range(100):
        sent.add(f"msg_{i}", at(i))
    assert all(f"msg_{i}" in sent for i in range(100))
    assert "msg_other" not in sent


def test_lets_go_of_messages_far_older_than_the_newest_sent():
    sent = SentIds(timedelta(seconds=120))
    sent.add("old", at(0))
    sent.add("middle", at(100))
    sent.add("new", at(121))
    assert "old" not in sent
    assert "middle" in sent and "new" in sent
    # An old message sent late (a catch-up) is kept until newer ones push it out.
    sent.add("late", at(50))
    assert "late" in sent


def test_memory_stays_bounded_for_a_long_lived_client():
    sent = SentIds(timedelta(seconds=120))
    for i in range(100_000):
        sent.add(f"msg_{i}", at(i))  # one a second for a day and more
    assert len(sent) <= 121
