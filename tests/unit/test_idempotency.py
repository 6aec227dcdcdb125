"""core/idempotency on the real database: claims, replays, mismatches, the
24 h window, dead claims, and one winner when requests race."""

from __future__ import annotations

import secrets
import threading
from datetime import timedelta

import pytest
from apisupport import make_tenant

from e2a.core import idempotency
from e2a.core.db import single_connection
from e2a.core.idempotency import ClaimOutcome

HASH_A = idempotency.request_hash(b"POST", b"/api/v1/send", b'{"a":1}')
HASH_B = idempotency.request_hash(b"POST", b"/api/v1/send", b'{"a":2}')


@pytest.fixture(scope="module")
def user_id(cfg):
    return make_tenant(cfg).user["id"]


def key() -> str:
    return f"key-{secrets.token_hex(8)}"


def claim(cfg, user_id, k, digest=HASH_A):
    with single_connection(cfg) as conn:
        return idempotency.claim(conn, user_id, k, digest)


def record(cfg, user_id, k, status=200, response=None):
    with single_connection(cfg) as conn:
        idempotency.record(conn, user_id, k, status, response or {"message_id": "msg_1"})


def age(cfg, user_id, k, by: timedelta):
    with single_connection(cfg) as conn:
        conn.execute("UPDATE idempotency_keys SET created_at = created_at - %s "
                     "WHERE user_id = %s AND key = %s", (by, user_id, k))


def test_first_claims_then_in_progress_then_replay(cfg, user_id):
    k = key()
    assert claim(cfg, user_id, k).outcome is ClaimOutcome.CLAIMED
    assert claim(cfg, user_id, k).outcome is ClaimOutcome.IN_PROGRESS
    record(cfg, user_id, k, 200, {"message_id": "msg_1", "status": "sent"})
    again = claim(cfg, user_id, k)
    assert again.outcome is ClaimOutcome.REPLAY
    assert (again.status_code, again.response) == (200, {"message_id": "msg_1",
                                                         "status": "sent"})


def test_other_request_same_key_is_a_mismatch(cfg, user_id):
    k = key()
    claim(cfg, user_id, k)
    assert claim(cfg, user_id, k, HASH_B).outcome is ClaimOutcome.MISMATCH
    record(cfg, user_id, k)
    assert claim(cfg, user_id, k, HASH_B).outcome is ClaimOutcome.MISMATCH


def test_released_key_can_be_claimed_again(cfg, user_id):
    k = key()
    claim(cfg, user_id, k)
    with single_connection(cfg) as conn:
        idempotency.release(conn, user_id, k)
    assert claim(cfg, user_id, k, HASH_B).outcome is ClaimOutcome.CLAIMED


def test_release_leaves_an_answered_key_alone(cfg, user_id):
    k = key()
    claim(cfg, user_id, k)
    record(cfg, user_id, k)
    with single_connection(cfg) as conn:
        idempotency.release(conn, user_id, k)
    assert claim(cfg, user_id, k).outcome is ClaimOutcome.REPLAY


def test_keys_are_per_user(cfg, user_id):
    k = key()
    other = make_tenant(cfg).user["id"]
    claim(cfg, user_id, k)
    record(cfg, user_id, k)
    assert claim(cfg, other, k, HASH_B).outcome is ClaimOutcome.CLAIMED


def test_after_24_hours_a_key_is_new(cfg, user_id):
    k = key()
    claim(cfg, user_id, k)
    record(cfg, user_id, k)
    age(cfg, user_id, k, idempotency.KEPT - timedelta(minutes=1))
    assert claim(cfg, user_id, k, HASH_B).outcome is ClaimOutcome.MISMATCH
    age(cfg, user_id, k, timedelta(minutes=2))
    assert claim(cfg, user_id, k, HASH_B).outcome is ClaimOutcome.CLAIMED
    assert claim(cfg, user_id, k, HASH_B).outcome is ClaimOutcome.IN_PROGRESS


def test_a_dead_claim_is_taken_over_after_it_goes_stale(cfg, user_id):
    k = key()
    claim(cfg, user_id, k)
    age(cfg, user_id, k, idempotency.STALE - timedelta(seconds=30))
    assert claim(cfg, user_id, k).outcome is ClaimOutcome.IN_PROGRESS
    age(cfg, user_id, k, timedelta(minutes=1))
    assert claim(cfg, user_id, k).outcome is ClaimOutcome.CLAIMED


def test_racing_requests_one_claims(cfg, user_id):
    k = key()
    outcomes: list[ClaimOutcome] = []
    start = threading.Barrier(8)

    def race() -> None:
        with single_connection(cfg) as conn:
            start.wait()
            outcomes.append(idempotency.claim(conn, user_id, k, HASH_A).outcome)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(o.value for o in outcomes) == ["claimed"] + ["in_progress"] * 7


@pytest.mark.parametrize(("value", "ok"), [
    ("a", True), ("x" * 255, True), ("550e8400-e29b-41d4-a716-446655440000", True),
    ("", False), ("x" * 256, False), ("caf\u00e9", False), ("a\x00b", False), ("a\nb", False),
])
def test_valid_key(value, ok):
    assert idempotency.valid_key(value) is ok


def test_request_hash_keeps_the_parts_apart():
    assert idempotency.request_hash(b"ab", b"c") != idempotency.request_hash(b"a", b"bc")
    assert idempotency.request_hash(b"a", b"b") == idempotency.request_hash(b"a", b"b")
