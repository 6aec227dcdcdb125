"""``/u/{token}``: managed unsubscribe (RFC 8058; core/outbound/unsubscribe.py).

GET shows a confirmation page and changes nothing (link scanners open
links). POST acts: a mail client's one-click body ``List-Unsubscribe=One-Click``
gets 200 with an empty body, the page's own form a page saying it is done.
Either way the recipient is suppressed for the sending agent, once. Errors
are plain text: 404 for a token that is not ours, 400 for a body that is
neither (or over 1 KiB), 429 past 600 requests a minute from one address.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs

import falcon
from psycopg_pool import ConnectionPool

from e2a.api import pages
from e2a.api.clientaddr import ClientAddress
from e2a.core import ratelimit
from e2a.core.config import Config
from e2a.core.outbound import unsubscribe

log = logging.getLogger("e2a.api")

MAX_BODY = 1024
# Per client address, as upstream: guessing tokens (256 bits) is hopeless,
# but each guess costs a lookup.
PER_CLIENT = ratelimit.Limit("unsubscribe-ip", per_window=600, window_seconds=60)
_FORM = "application/x-www-form-urlencoded"
_MULTIPART = "multipart/form-data"


def _plain(resp: falcon.Response, status: int, text: str) -> None:
    resp.status = falcon.code_to_http_status(status)
    resp.content_type = "text/plain; charset=utf-8"
    resp.set_headers(pages.HEADERS)
    resp.text = text


def _one_click(content_type: str, body: bytes) -> bool | None:
    """True for RFC 8058's one-click body, False for the page's own form,
    None for anything else."""
    if content_type.startswith(_FORM):
        fields = parse_qs(body.decode("ascii", "replace"), keep_blank_values=True)
        if fields.get("List-Unsubscribe") == ["One-Click"]:
            return True
        return False if fields.get("confirm") == ["yes"] else None
    if content_type.startswith(_MULTIPART):
        # RFC 8058 allows multipart too; one field, read as bytes.
        return (b'name="List-Unsubscribe"' in body and b"One-Click" in body) or None
    return None


class Unsubscribe:
    public = True

    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._cfg = cfg
        self._pool = pool
        self._client = ClientAddress(cfg.http.trusted_proxies)

    def _limited(self, req: falcon.Request, resp: falcon.Response) -> bool:
        with self._pool.connection() as conn:
            outcome = ratelimit.hit(conn, PER_CLIENT, self._client.of(req))
        if outcome.allowed:
            return False
        _plain(resp, 429, "too many requests; retry later")
        resp.set_header("Retry-After", str(outcome.retry_after_seconds))
        return True

    def on_get(self, req: falcon.Request, resp: falcon.Response, token: str) -> None:
        if self._limited(req, resp):
            return
        with self._pool.connection() as conn:
            row = unsubscribe.lookup(conn, self._cfg, token)
        if row is None:
            _plain(resp, 404, "unknown unsubscribe link")
            return
        pages.render(resp, 200, "unsubscribe.html", done=row["used_at"] is not None,
                     agent_email=row["agent_email"], address=row["address"], token=token)

    def on_post(self, req: falcon.Request, resp: falcon.Response, token: str) -> None:
        if self._limited(req, resp):
            return
        body = req.bounded_stream.read(MAX_BODY + 1)
        kind = None if len(body) > MAX_BODY else _one_click(
            (req.content_type or "").lower(), body)
        with self._pool.connection() as conn:
            if unsubscribe.lookup(conn, self._cfg, token) is None:
                _plain(resp, 404, "unknown unsubscribe link")
                return
            if kind is None:
                _plain(resp, 400, "expected List-Unsubscribe=One-Click (RFC 8058)")
                return
            row = unsubscribe.unsubscribe(conn, self._cfg, token)
        assert row is not None  # looked up above; tokens are never deleted
        log.info("unsubscribed", extra={"agent": row["agent_email"],
                                        "message_id": row["message_id"]})
        if kind:
            _plain(resp, 200, "")
            return
        pages.render(resp, 200, "unsubscribe.html", done=True, agent_email=row["agent_email"],
                     address=row["address"], token=token)
