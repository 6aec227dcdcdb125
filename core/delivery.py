"""Delivering webhooks: the worker's ``deliver`` job.

Each run records the attempts that have finished, then claims as many due
deliveries as there are free sending threads (core/store/deliveries.claim_due:
FOR UPDATE SKIP LOCKED, the attempt counted and a lease set, committed before
anything is sent) and hands them to the threads. No transaction and no lock
is held while a POST is on the wire; several workers never take the same
delivery, and one killed mid-POST leaves it to whoever comes after the lease.
An attempt whose outcome is not known (the worker died, the answer timed
out) counts as failed and is tried again: receivers dedupe by event id.

Failed attempts are retried after 1m, 5m, 15m, 1h, 4h, 8h, 16h and 24h, then
the delivery has failed. A test delivery (POST /webhooks/{id}/test) gets one
attempt. A cloud agent's message carries the state of its own delivery
(``webhook_status`` pending | delivered | failed, ``webhook_error``,
``webhook_attempts``). A subscription that keeps failing is switched off
(store.webhooks.record_failure); its pending deliveries wait until it is
switched on again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg_pool import ConnectionPool

from e2a.core import metrics, v1events, webhookhttp, webhookpayload
from e2a.core.config import Config
from e2a.core.store import deliveries as delivery_store
from e2a.core.store import signing as signing_store
from e2a.core.store import webhooks as webhook_store

log = logging.getLogger("e2a.delivery")

RETRY_SCHEDULE: tuple[timedelta, ...] = (
    timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15), timedelta(hours=1),
    timedelta(hours=4), timedelta(hours=8), timedelta(hours=16), timedelta(hours=24))
NEVER = 2**31 - 1
# How long a stopping worker waits for the POSTs on the wire.
FINISH_WAIT = 5.0


def retry_in(attempts: int, origin: str = "dispatch") -> timedelta | None:
    """How long after its ``attempts``-th failed attempt a delivery is tried
    again; None when that was its last."""
    if origin == "test" or attempts > len(RETRY_SCHEDULE):
        return None
    return RETRY_SCHEDULE[attempts - 1]


def lease(cfg: Config) -> timedelta:
    """How long a claimed delivery is left alone: the longest an attempt
    can take (name lookups, then the POST), twice, and a margin."""
    return timedelta(seconds=2 * (cfg.webhooks.timeout + cfg.dns.timeout) + 5)


@dataclass
class Attempt:
    delivery: dict[str, Any]  # the claimed row
    url: str = ""
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    refused: str = ""  # set: nothing to send, and it is final

    @property
    def host(self) -> str:
        # Hosts only in logs: paths and queries can carry the receiver's tokens.
        return urlsplit(self.url).hostname or "-"


class Deliverer:
    def __init__(self, cfg: Config, *, client: webhookhttp.Client | None = None,
                 on_done: Callable[[], None] = lambda: None) -> None:
        hooks = cfg.webhooks
        self._client = client or webhookhttp.Client(allow_loopback=hooks.allow_loopback,
                                                    timeout=hooks.timeout)
        self._deployment_secret = cfg.secrets.hmac_secret
        self._disable_after = hooks.disable_after_failures or NEVER
        self._disable_window = timedelta(seconds=hooks.disable_after_seconds)
        self._lease = lease(cfg)
        self._slots = hooks.concurrency
        self._executor = ThreadPoolExecutor(max_workers=self._slots,
                                            thread_name_prefix="e2a-webhook")
        self._finished: queue.SimpleQueue[tuple[Attempt, webhookhttp.Outcome]] = \
            queue.SimpleQueue()
        self._busy = 0
        self._lock = threading.Lock()
        self._on_done = on_done

    @property
    def busy(self) -> int:
        """Attempts on the wire now."""
        with self._lock:
            return self._busy

    # -- the job ------------------------------------------------------------

    def run(self, conn: psycopg.Connection) -> int:
        done = self.record_finished(conn)
        with self._lock:
            free = self._slots - self._busy
        if free <= 0:
            return done
        with conn.transaction():
            claimed = delivery_store.claim_due(conn, free, self._lease)
            attempts = self._prepare(conn, claimed) if claimed else []
        for attempt in attempts:
            if attempt.refused:
                self._finished.put((attempt, webhookhttp.Outcome(None, attempt.refused)))
                continue
            with self._lock:
                self._busy += 1
            self._executor.submit(self._send, attempt)
        return done + len(claimed)

    def finish(self, pool: ConnectionPool) -> None:
        """At shutdown: give the POSTs on the wire a moment to end, then
        record what ended. The rest is tried again after its lease."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + FINISH_WAIT
        while self._busy and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._finished.empty():
            return
        try:
            with pool.connection(timeout=2.0) as conn:
                self.record_finished(conn)
        except psycopg.Error as exc:
            log.warning("could not record the last webhook attempts: %s", type(exc).__name__)

    # -- preparing --------------------------------------------------------

    def _prepare(self, conn: psycopg.Connection,
                 claimed: list[dict[str, Any]]) -> list[Attempt]:
        hooks = delivery_store.webhook_targets(
            conn, [d["webhook_id"] for d in claimed if d["webhook_id"]])
        agents = delivery_store.agent_targets(
            conn, [d["agent_id"] for d in claimed if d["agent_id"]])
        out = []
        for row in claimed:
            if row["webhook_id"]:
                hook = hooks.get(row["webhook_id"])
                out.append(self._for_subscription(row, hook) if hook else
                           Attempt(row, refused="the webhook no longer exists"))
            else:
                out.append(self._for_agent(conn, row, agents.get(row["agent_id"])))
        return out

    def _for_subscription(self, row: dict[str, Any], hook: dict[str, Any]) -> Attempt:
        # The subscription's generation decides the words, not the event: one
        # stored event reaches legacy and /v1 subscribers alike.
        if hook.get("generation") == "v1":
            envelope = v1events.envelope(row["event_id"], row["type"], row["event_created_at"],
                                         row["data"] or {}, row.get("event_agent_email"))
            body = webhookpayload.encode(envelope)
            type_ = envelope["type"]
        else:
            body = webhookpayload.event_envelope(row["event_id"], row["type"],
                                                 row["schema_version"],
                                                 row["event_created_at"], row["data"])
            type_ = row["type"]
        secrets = [hook["secret"]] + ([hook["previous_secret"]] if hook["previous_secret"]
                                      else [])
        headers = webhookpayload.subscription_headers(body, secrets, row["event_id"],
                                                      type_, int(time.time()))
        if hook.get("generation") == "v1":
            headers.update(webhookpayload.V1_HEADERS)
        return Attempt(row, hook["url"], body, headers)

    def _for_agent(self, conn: psycopg.Connection, row: dict[str, Any],
                   agent: dict[str, Any] | None) -> Attempt:
        if agent is None or agent["agent_mode"] != "cloud" or not agent["webhook_url"]:
            return Attempt(row, refused="the agent is no longer in cloud mode with a webhook_url")
        message = (delivery_store.message_for_payload(conn, row["message_id"])
                   if row["message_id"] else None)
        if message is None:
            return Attempt(row, agent["webhook_url"], refused="the message no longer exists")
        secret = signing_store.newest_secret(conn, agent["user_id"]) or self._deployment_secret
        auth = webhookpayload.resigned(message["auth_headers"] or {}, secret,
                                       datetime.now(UTC))
        return Attempt(row, agent["webhook_url"], webhookpayload.agent_payload(message, auth),
                       dict(auth))

    # -- sending ----------------------------------------------------------

    def _send(self, attempt: Attempt) -> None:
        try:
            with metrics.timed("webhook_post"):
                outcome = self._client.post(attempt.url, attempt.body, attempt.headers)
        except Exception:  # a bug must not lose the attempt's slot or outcome
            log.exception("webhook attempt %s failed unexpectedly", attempt.delivery["id"])
            outcome = webhookhttp.Outcome(None, "internal error")
        self._finished.put((attempt, outcome))
        with self._lock:
            self._busy -= 1
        self._on_done()

    # -- recording ----------------------------------------------------------

    def record_finished(self, conn: psycopg.Connection) -> int:
        done: list[tuple[Attempt, webhookhttp.Outcome]] = []
        while True:
            try:
                done.append(self._finished.get_nowait())
            except queue.Empty:
                break
        if not done:
            return 0
        try:
            with conn.transaction():
                for attempt, outcome in done:
                    self._record(conn, attempt, outcome)
        except BaseException:
            # Not recorded: keep them for the next run (their leases still hold).
            for item in done:
                self._finished.put(item)
            raise
        return len(done)

    def _record(self, conn: psycopg.Connection, attempt: Attempt,
                outcome: webhookhttp.Outcome) -> None:
        row = attempt.delivery
        number = row["attempts"]
        if outcome.ok:
            current = delivery_store.record_delivered(conn, row["id"], number,
                                                      outcome.status_code)
            retry = None
        else:
            retry = None if attempt.refused else retry_in(number, row["origin"])
            current = delivery_store.record_failed_attempt(
                conn, row["id"], number, outcome.status_code, outcome.error, retry)
        if not current:
            return  # the lease ran out and a later attempt owns the row now
        metrics.webhook_deliveries.labels(
            kind="subscription" if row["webhook_id"] else "agent",
            result=metrics.DELIVERED if outcome.ok else metrics.RETRY if retry
            else metrics.FAILED).inc()
        log.info("delivery %s of %s to %s, attempt %d: %s", row["id"], row["event_id"],
                 attempt.host, number,
                 f"HTTP {outcome.status_code}" if outcome.ok else
                 f"{outcome.error}; " + (f"retry in {retry}" if retry else "gave up"))
        if row["webhook_id"]:
            self._record_subscription(conn, row, outcome)
        elif row["message_id"]:
            status = "delivered" if outcome.ok else "pending" if retry else "failed"
            delivery_store.set_message_webhook_state(conn, row["message_id"], status,
                                                     outcome.error, number)

    def _record_subscription(self, conn: psycopg.Connection, row: dict[str, Any],
                             outcome: webhookhttp.Outcome) -> None:
        if outcome.ok:
            webhook_store.record_success(conn, row["webhook_id"])
        elif row["origin"] != "test" and webhook_store.record_failure(
                conn, row["webhook_id"], disable_after=self._disable_after,
                disable_window=self._disable_window):  # a test's failure says nothing new
            delivery_store.park_pending(conn, row["webhook_id"])
            log.warning("webhook %s switched off after repeated failures", row["webhook_id"])
