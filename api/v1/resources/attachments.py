"""``/v1/agents/{email}/messages/{id}/attachments/{index}[/download]``: one
attachment of a message. The first (any key that may read the message)
answers its metadata with a download URL good for 15 minutes, and its bytes
inline when small; the second serves the bytes to whoever holds that URL
(core/messages/attachments: the grant is the credential, no API key)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import falcon
from psycopg_pool import ConnectionPool

from e2a.api.clientaddr import ClientAddress
from e2a.api.errors import ApiError, rate_limited
from e2a.api.v1 import access, params
from e2a.api.v1.errors import error, invalid, not_found
from e2a.core import ratelimit
from e2a.core.config import Config
from e2a.core.crypto import tokens
from e2a.core.mail import parts as mailparts
from e2a.core.messages import attachments
from e2a.core.store import agents as agent_store
from e2a.core.store import messages as message_store
from e2a.core.timefmt import rfc3339

MAX_INLINE = 256 * 1024
# Downloads need no key, so they are counted per client address instead.
DOWNLOADS = ratelimit.Limit("attachment-download-ip", per_window=120, window_seconds=60)
MAX_INDEX_DIGITS = 4  # a message has far fewer parts; bounds what is parsed


def _index(value: str) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > MAX_INDEX_DIGITS:
        raise invalid("path.index", "must be a 0-based attachment index")
    return int(value)


def _missing(index: int) -> ApiError:
    return error(404, "attachment_not_found", f"the message has no attachment {index}")


def _found(row: dict[str, Any] | None, id: str, index: int) -> tuple[dict[str, Any], bytes]:
    if row is None:
        raise not_found(f"message {id} not found")
    raw = bytes(row["raw_message"]) if row["raw_message"] is not None else None
    found = mailparts.attachment(raw, index)
    if found is None:
        raise _missing(index)
    return found


class Attachment:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._cfg = cfg
        self._pool = pool

    def on_get(self, req: falcon.Request, resp: falcon.Response, email: str, id: str,
               index: str) -> None:
        number = _index(index)
        inline = params.boolean(req, "inline")
        with self._pool.connection() as conn:
            agent = access.agent(conn, req, email)
            # Fetching an attachment is not reading the message: no read mark.
            row = message_store.peek_for_agent(conn, agent["id"], id)
        meta, data = _found(row, id, number)
        if inline and len(data) > MAX_INLINE:
            raise error(413, "attachment_too_large", f"inline data is for attachments of at "
                        f"most {MAX_INLINE} bytes; use download_url", max_bytes=MAX_INLINE,
                        actual_bytes=len(data))
        token, expires_at = attachments.grant(self._cfg, agent["user_id"], id, number)
        path = (f"/v1/agents/{quote(agent['email'], safe='@')}/messages/{quote(id, safe='')}"
                f"/attachments/{number}/download")
        view = {**meta, "download_url": self._cfg.http.public_url.rstrip("/") + path + "?"
                + urlencode({"token": token}),
                "expires_at": rfc3339(datetime.fromtimestamp(expires_at, UTC))}
        if inline:
            view["data"] = base64.b64encode(data).decode("ascii")
        resp.cache_control = ["private", "no-store"]
        resp.media = view


class AttachmentDownload:
    """The bytes, to the holder of a grant. Every refusal of a grant (forged,
    another message's, expired) is the same 403 whatever exists, so the URL
    space tells nothing to someone without a valid one."""

    public = True

    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._cfg = cfg
        self._pool = pool
        self._client = ClientAddress(cfg.http.trusted_proxies)

    def on_get(self, req: falcon.Request, resp: falcon.Response, email: str, id: str,
               index: str) -> None:
        number = _index(index)
        with self._pool.connection() as conn:
            outcome = ratelimit.hit(conn, DOWNLOADS, self._client.of(req))
        if not outcome.allowed:
            raise rate_limited(f"at most {DOWNLOADS.per_window} downloads a minute from one "
                               "address", outcome.retry_after_seconds)
        try:
            grant = attachments.open_grant(self._cfg, req.get_param("token") or "")
        except tokens.TokenExpired as exc:
            raise error(403, "forbidden", str(exc)) from None
        except (tokens.TokenError, ValueError):
            raise error(403, "forbidden", "not a valid download link") from None
        if (grant.message_id, grant.index) != (id, number):
            raise error(403, "forbidden", "not a valid download link")
        with self._pool.connection() as conn:
            agent = agent_store.agent_for_user(conn, grant.owner_id, email)
            row = (message_store.peek_for_agent(conn, agent["id"], id)
                   if agent is not None else None)
        meta, data = _found(row, id, number)
        resp.content_type = meta.get("content_type") or "application/octet-stream"
        resp.downloadable_as = meta.get("filename") or f"attachment-{number}"
        # The bytes are the sender's: never run or sniffed on our origin, and
        # the token in the URL goes nowhere else.
        resp.set_headers({"X-Content-Type-Options": "nosniff",
                          "Content-Security-Policy": "sandbox; default-src 'none'",
                          "Referrer-Policy": "no-referrer",
                          "Cache-Control": "private, no-store"})
        resp.data = data
