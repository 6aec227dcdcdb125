"""What one send costs the database: the statements (each a round trip,
BEGIN and COMMIT included), transactions and pool checkouts of a plain send
through either API generation, counted on the real connections of the app's
pool against the real test PostgreSQL. Pinned exactly, so a change that adds
a round trip to every send is seen; the list on failure says which.

Today, one send (no Idempotency-Key, a new conversation):
- the key and the request limit: one checkout, two statements each its own
  transaction (the key's last_used_at is written at most once a minute,
  not on every request);
- the sending agent: one read, no BEGIN and COMMIT around it;
- its checks (suppressed recipients, the send rate, the brakes): one
  checkout, one transaction, refusals decided inside and raised after;
- the row, then Postfix's 250 confirmed: one checkout, two transactions.
Before (7dced46): 9 transactions (10 through /v1), 33 statements (36),
8 checkouts (9).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from apisupport import make_tenant
from falcon import testing
from psycopg import pq
from psycopg.rows import dict_row
from sendsupport import SEND
from submitsupport import sending_config
from v1support import messages_path

from e2a.api.app import create_app
from e2a.core import db
from e2a.core.db import Pool, open_pool


@dataclass
class Tally:
    """What went to the server: every statement's first words, in order."""

    statements: list[str] = field(default_factory=list)
    checkouts: int = 0
    alone: int = 0  # statements outside BEGIN … COMMIT: each its own transaction
    longest: int = 0  # characters

    @property
    def transactions(self) -> int:
        return self.alone + sum(1 for s in self.statements if s == "BEGIN")

    def reset(self) -> None:
        self.statements.clear()
        self.checkouts = self.alone = self.longest = 0


TALLY = Tally()


def _head(query: Any) -> str:
    text = query.decode() if isinstance(query, bytes) else str(query)
    return " ".join(text.split()[:4])


class CountingCursor(psycopg.Cursor[Any]):
    # Noted after the call: a BEGIN it sends first is noted inside it.
    def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        self._note(query)
        try:
            return super().execute(query, *args, **kwargs)
        finally:
            TALLY.statements.append(_head(query))

    def executemany(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        self._note(query)
        try:
            return super().executemany(query, *args, **kwargs)
        finally:
            TALLY.statements.append(_head(query))

    def _note(self, query: Any) -> None:
        TALLY.longest = max(TALLY.longest, len(query))
        conn = self.connection
        if conn.autocommit and conn.info.transaction_status == pq.TransactionStatus.IDLE:
            TALLY.alone += 1


class CountingConnection(psycopg.Connection[Any]):
    """BEGIN, COMMIT, ROLLBACK and SAVEPOINT go through here, not a cursor."""

    def _exec_command(self, command: Any, *args: Any, **kwargs: Any) -> Any:
        TALLY.statements.append(_head(command))
        return super()._exec_command(command, *args, **kwargs)


class CountingPool(Pool):
    def getconn(self, timeout: float | None = None) -> psycopg.Connection:
        TALLY.checkouts += 1
        return super().getconn(timeout)


@contextmanager
def counting_client(cfg: Any) -> Iterator[testing.TestClient]:
    """The whole app over a pool like the API's (core/db/pool.open_pool),
    its connections counting."""
    pool = CountingPool(cfg.database.url, min_size=1, max_size=4,
                        connection_class=CountingConnection,
                        kwargs={"row_factory": dict_row, "cursor_factory": CountingCursor,
                                "autocommit": False, "application_name": "e2a-test-count"},
                        open=False)
    pool.open(wait=True)
    try:
        yield testing.TestClient(create_app(cfg, pool))
    finally:
        pool.close()


@pytest.fixture(scope="module")
def client(cfg, postfix, tmp_path_factory):
    send_cfg = sending_config(cfg, tmp_path_factory.mktemp("count") / "e2a.toml",
                              postfix.address)
    with counting_client(send_cfg) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def tenant(cfg):
    return make_tenant(cfg)


def _counted(send: Any) -> Tally:
    send()  # the key's last_used_at is written on its first use
    TALLY.reset()
    result = send()
    assert result.status_code in (200, 202), result.text
    return Tally(list(TALLY.statements), TALLY.checkouts, TALLY.alone, TALLY.longest)


# Every statement in order, BEGIN … COMMIT around those that commit together.
EXPECTED = [
    # The API key, then the request counted (api/middleware.Authentication).
    "SELECT k.*, u.email AS", "WITH h0 AS (INSERT",
    # The sending agent.
    "SELECT a.*, d.domain, d.verified",
    # Suppressions, the send rate, the brakes (api/resources/send.Outbox).
    "BEGIN", "SELECT address, 'account' AS", "WITH h0 AS (INSERT",
    "WITH h AS (INSERT", "COMMIT",
    # The row (core/outbound/send), then Postfix's 250 confirmed.
    "BEGIN", "INSERT INTO messages (", "INSERT INTO message_lifecycle (id,", "COMMIT",
    "BEGIN", "WITH old AS (SELECT", "INSERT INTO message_lifecycle (id,",
    "WITH queued AS (", "COMMIT",
]


# psycopg parses a query string once only up to this length (its
# MAX_CACHED_STATEMENT_LENGTH); a longer one is parsed on every execution.
PARSED_ONCE = 4096


def test_a_legacy_send(client, tenant, postfix):
    postfix.reset()
    body = {"from": tenant.agent["email"], "to": ["bob@example.org"], "subject": "Hi",
            "body": "hello"}
    tally = _counted(lambda: client.simulate_post(SEND, headers=tenant.auth, json=body))
    assert tally.statements == EXPECTED
    assert (len(tally.statements), tally.transactions, tally.checkouts) == (17, 6, 4)
    assert tally.longest <= PARSED_ONCE


def test_a_v1_send_costs_as_much(client, tenant, postfix):
    postfix.reset()
    body = {"to": ["bob@example.org"], "subject": "Hi", "text": "hello"}
    path = messages_path(tenant.agent["email"])
    tally = _counted(lambda: client.simulate_post(path, headers=tenant.auth, json=body))
    assert tally.statements == EXPECTED
    assert (len(tally.statements), tally.transactions, tally.checkouts) == (17, 6, 4)
    assert tally.longest <= PARSED_ONCE


def test_an_autocommit_checkout_goes_back_transactional(cfg):
    """db.autocommit lends the pool's connection in autocommit: the next
    borrower gets it transactional again, after a failed statement too."""
    pool = open_pool(cfg, name="test-autocommit", max_size=1, wait=True)
    try:
        with db.autocommit(pool) as conn:
            conn.execute("SELECT 1")
            assert conn.info.transaction_status == pq.TransactionStatus.IDLE
        with pytest.raises(psycopg.errors.DivisionByZero), db.autocommit(pool) as conn:
            conn.execute("SELECT 1 / 0")
        with pool.connection() as again:
            assert again is conn and not again.autocommit
            again.execute("SELECT 1")
            assert again.info.transaction_status == pq.TransactionStatus.INTRANS
    finally:
        pool.close()
