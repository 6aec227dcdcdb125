"""Prometheus metrics: the one list of what e2a counts, and how it is served.

Names are stable (dashboards and alerts depend on them). Only what
prometheus-client 0.16 (Debian 12) offers is used.

Each mail-side service serves its own process's values on a loopback port
(``metrics.<service>_listen``). The API runs several gunicorn workers: there
``e2a serve api`` sets PROMETHEUS_MULTIPROC_DIR before any worker imports
this module, every worker writes its values to files there, and GET /metrics
adds up all workers' files (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)

from e2a.core.net import addresses

log = logging.getLogger("e2a.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# What generate_latest writes for our names on every client version (newer
# clients' CONTENT_TYPE_LATEST announces 1.0.0, which 0.16 does not know).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Label values, spelled once.
VERIFIED, UNVERIFIED = "verified", "unverified"
STORED, DUPLICATE, TEMPFAIL, REJECTED = "stored", "duplicate", "tempfail", "rejected"
SENT, HELD = "sent", "held"
DELIVERED, FAILED, RETRY = "delivered", "failed", "retry"

inbound_messages = Counter(
    "e2a_inbound_messages", "Inbound messages for agents, by sender verification and outcome",
    ["verdict", "result"])
outbound_messages = Counter(
    "e2a_outbound_messages", "Outbound messages through the content filter, by outcome",
    ["status"])
holds = Counter("e2a_holds", "Outbound messages held for approval")
protection_decisions = Counter(
    "e2a_protection_decisions", "Protection screening outcomes, by direction, action "
    "(pass|flag|hold|block) and what decided (gate, scan, first contact)",
    ["direction", "action", "source"])
suppressed_sends = Counter(
    "e2a_suppressed_sends", "Outbound messages refused for a suppressed recipient")
brake_decisions = Counter(
    "e2a_brake_decisions", "Loop and abuse brake decisions on agents' mail, by brake and action",
    ["brake", "action"])
approvals = Counter("e2a_approvals", "Decisions on held messages", ["action"])
webhook_deliveries = Counter(
    "e2a_webhook_deliveries", "Webhook delivery attempts, by target kind and outcome",
    ["kind", "result"])
stage_seconds = Histogram(
    "e2a_stage_seconds", "Time spent per processing stage", ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0))


@contextmanager
def timed(stage: str) -> Iterator[None]:
    """Observes the block's duration under ``stage``, whether it raises or not."""
    started = time.perf_counter()
    try:
        yield
    finally:
        stage_seconds.labels(stage=stage).observe(time.perf_counter() - started)


def exposition() -> bytes:
    """This service's metrics in Prometheus text format; every worker's
    together in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def serve(listen: str, service: str) -> None:
    """Serve /metrics on ``listen`` (host:port; empty: off) from a daemon
    thread. A port that cannot be bound is logged, not fatal: mail must flow
    even when nobody can watch it."""
    if not listen:
        return
    address = addresses.parse(listen)
    if not isinstance(address, addresses.InetAddress):
        raise ValueError(f"metrics listen must be host:port, not {listen!r}")
    try:
        start_http_server(address.port, addr=address.host)
    except OSError as exc:
        log.warning("%s: cannot serve metrics on %s: %s", service, listen, exc.strerror)
        return
    log.info("%s metrics on http://%s/metrics", service, listen)
