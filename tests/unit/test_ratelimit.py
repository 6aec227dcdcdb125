"""Fixed-window rate limits counted in the real PostgreSQL."""

from __future__ import annotations

import secrets
import threading
from datetime import UTC, datetime, timedelta

from e2a.core import ratelimit
from e2a.core.db import open_pool, single_connection

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)  # a window boundary for any window <= 1 h


def _limit(per_window: int, window_seconds: int = 60) -> ratelimit.Limit:
    # Each test its own scope: the database is shared by the whole run.
    return ratelimit.Limit(f"test-{secrets.token_hex(4)}", per_window, window_seconds)


def test_allows_the_limit_and_refuses_the_next(cfg):
    limit = _limit(3)
    with single_connection(cfg) as conn:
        outcomes = [ratelimit.hit(conn, limit, "k", at=T0 + timedelta(seconds=i))
                    for i in range(5)]
    assert [o.allowed for o in outcomes] == [True, True, True, False, False]
    assert [o.hits for o in outcomes] == [1, 2, 3, 4, 5]
    assert outcomes[3].limit == 3


def test_a_new_window_starts_from_zero(cfg):
    limit = _limit(2, window_seconds=10)
    with single_connection(cfg) as conn:
        def hit(seconds: float) -> ratelimit.HitOutcome:
            return ratelimit.hit(conn, limit, "k", at=T0 + timedelta(seconds=seconds))

        assert [hit(s).allowed for s in (0, 5, 9.999)] == [True, True, False]
        # Fixed windows: 10 s after the boundary, not 10 s after the first hit.
        assert [hit(s).allowed for s in (10, 19, 19.5)] == [True, True, False]
        assert hit(20).hits == 1


def test_retry_after_is_the_rest_of_the_window(cfg):
    limit = _limit(1, window_seconds=60)
    with single_connection(cfg) as conn:
        ratelimit.hit(conn, limit, "k", at=T0 + timedelta(seconds=20))
        refused = ratelimit.hit(conn, limit, "k", at=T0 + timedelta(seconds=45.5))
    assert not refused.allowed
    assert abs(refused.retry_after - 14.5) < 0.01
    assert refused.retry_after_seconds == 15


def test_keys_and_scopes_count_apart(cfg):
    a, b = _limit(1), _limit(1)
    with single_connection(cfg) as conn:
        assert ratelimit.hit(conn, a, "k1", at=T0).allowed
        assert ratelimit.hit(conn, a, "k2", at=T0).allowed
        assert ratelimit.hit(conn, b, "k1", at=T0).allowed
        assert not ratelimit.hit(conn, a, "k1", at=T0).allowed


def test_cost_counts_several_hits_at_once(cfg):
    limit = _limit(10)
    with single_connection(cfg) as conn:
        assert ratelimit.hit(conn, limit, "k", cost=10, at=T0).allowed
        assert not ratelimit.hit(conn, limit, "k", cost=1, at=T0).allowed


def test_the_database_clock_decides_the_window(cfg):
    limit = _limit(5, window_seconds=3600)
    with single_connection(cfg) as conn:
        first = ratelimit.hit(conn, limit, "k")
        conn.commit()
        second = ratelimit.hit(conn, limit, "k")
    assert (first.hits, second.hits) == (1, 2)
    assert 0 < second.retry_after <= 3600


def test_concurrent_hits_from_many_connections_all_count(cfg):
    """What several MX hosts do at once: no hit is lost, none counted twice."""
    limit = _limit(1000)
    pool = open_pool(cfg, name="test-ratelimit", min_size=8, max_size=8, wait=True)
    seen: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            with pool.connection() as conn:
                outcome = ratelimit.hit(conn, limit, "k", at=T0)
            with lock:
                seen.append(outcome.hits)

    try:
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        pool.close()
    # Every hit saw a different running total: the UPSERT is atomic.
    assert sorted(seen) == list(range(1, 201))


def test_first_refusal_stops_counting_at_the_refusing_limit(cfg):
    first, second = _limit(2), _limit(10)
    with single_connection(cfg) as conn:
        def both() -> tuple[ratelimit.Limit, ratelimit.HitOutcome] | None:
            return ratelimit.first_refusal(conn, [(first, "a"), (second, "b")], at=T0)

        assert both() is None
        assert both() is None
        refused = both()
        assert refused is not None and refused[0] is first and refused[1].hits == 3
        # The refused hit did not count against the second limit.
        assert ratelimit.hit(conn, second, "b", at=T0).hits == 3


def test_first_refusal_names_a_later_limit(cfg):
    first, second = _limit(10), _limit(1)
    with single_connection(cfg) as conn:
        assert ratelimit.first_refusal(conn, [(first, "a"), (second, "b")], at=T0) is None
        limit, outcome = ratelimit.first_refusal(conn, [(first, "a"), (second, "b")], at=T0)
        assert limit is second and not outcome.allowed and outcome.hits == 2
        assert ratelimit.hit(conn, first, "a", at=T0).hits == 3  # both counted
