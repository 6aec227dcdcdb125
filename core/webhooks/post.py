"""One webhook POST, through the SSRF guard, within a hard time limit.

Every connection goes through e2a.core.webhooks.ssrf.Guard.connect (the address check
and the connect are one step, so DNS rebinding cannot slip between them);
TLS still verifies the certificate for the URL's host name (SNI and Host are
the name, not the address). Redirects are not followed, proxies from the
environment are not used, and the attempt as a whole (connect, send, the
answer's status line and headers) is cut off after ``timeout`` seconds even
if the receiver trickles bytes, so that a delivery never outlives the lease
its worker holds on it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import requests
import requests.adapters
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions

from e2a.core.webhooks import ssrf
from e2a.core.webhooks import urls as webhookurl

USER_AGENT = "e2a-postfix-webhooks/1"


@dataclass(frozen=True)
class PostOutcome:
    status_code: int | None  # None: no HTTP answer
    error: str  # "" when the receiver took it (2xx)

    @property
    def ok(self) -> bool:
        return not self.error


class _Attempt:
    """The sockets of one attempt, so a timer can cut them off."""

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []
        self.expired = False
        self._lock = threading.Lock()

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            if self.expired:
                sock.close()
                raise TimeoutError("attempt timed out")
            self.sockets.append(sock)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self.sockets:
                with contextlib.suppress(OSError):  # already closed
                    sock.shutdown(socket.SHUT_RDWR)


_current = threading.local()


def _pinned_connection(base: type, guard: ssrf.Guard) -> type:
    """``base`` (urllib3's HTTP or HTTPS connection) connecting through ``guard``."""

    def _new_conn(self: Any) -> socket.socket:
        timeout = self.timeout if isinstance(self.timeout, int | float) else None
        try:
            sock = guard.connect(self._dns_host, self.port, timeout, self.socket_options or ())
        except ssrf.AddressRefused as exc:
            raise urllib3.exceptions.NewConnectionError(self, f"refused: {exc}") from exc
        except TimeoutError as exc:
            raise urllib3.exceptions.ConnectTimeoutError(
                self, f"connection to {self.host} timed out") from exc
        except OSError as exc:
            raise urllib3.exceptions.NewConnectionError(
                self, f"cannot connect to {self.host}: {exc.strerror or exc}") from exc
        attempt = getattr(_current, "attempt", None)
        if attempt is not None:
            attempt.add(sock)
        return sock

    return type(f"Pinned{base.__name__}", (base,), {"_new_conn": _new_conn})


class _PinnedAdapter(requests.adapters.HTTPAdapter):
    def __init__(self, guard: ssrf.Guard) -> None:
        http = _pinned_connection(urllib3.connection.HTTPConnection, guard)
        https = _pinned_connection(urllib3.connection.HTTPSConnection, guard)
        self._pools = {
            "http": type("PinnedHTTPPool", (urllib3.connectionpool.HTTPConnectionPool,),
                         {"ConnectionCls": http}),
            "https": type("PinnedHTTPSPool", (urllib3.connectionpool.HTTPSConnectionPool,),
                          {"ConnectionCls": https}),
        }
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps (causes, contexts, urllib3's reasons)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        todo += [e for e in (item.__cause__, item.__context__, getattr(item, "reason", None))
                 if isinstance(e, BaseException)]
        todo += [a for a in item.args if isinstance(a, BaseException)]


def _reason(exc: Exception, attempt: _Attempt, timeout: float) -> str:
    if attempt.expired:
        return f"timed out after {timeout:g} s"
    causes = list(_causes(exc))
    for cause in causes:
        if isinstance(cause, ssrf.AddressRefused):
            return f"refused: {cause}"
    if isinstance(exc, requests.Timeout):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed (certificate not valid for the host?)"
    for cause in causes:
        if isinstance(cause, urllib3.exceptions.NewConnectionError):
            # Its text begins with the connection object's repr; keep ours.
            return str(cause).split(": ", 1)[-1]
    return f"connection failed ({type(exc).__name__})"


def _header_value(value: str) -> str | bytes:
    """http.client sends str header values as Latin-1 and fails on anything
    else; an address in an X-E2A-Auth-* header may be UTF-8 (SMTPUTF8)."""
    return value if value.isascii() else value.encode()


class Client:
    def __init__(self, *, allow_loopback: bool = False, timeout: float = 15.0,
                 resolve: ssrf.Resolver | None = None, verify: bool | str = True) -> None:
        """``resolve`` and ``verify`` (a CA bundle path) are for tests."""
        guard = ssrf.Guard(allow_loopback=allow_loopback,
                           **({"resolve": resolve} if resolve else {}))
        self.allow_loopback = allow_loopback
        self.timeout = timeout
        self._verify = verify
        self._adapter = _PinnedAdapter(guard)

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> PostOutcome:
        """POST ``body`` to ``url``; what came of it. Never raises for the
        receiver's faults (unreachable, refused, slow, non-2xx)."""
        try:
            webhookurl.check(url, allow_loopback=self.allow_loopback)
        except webhookurl.WebhookUrlError as exc:
            return PostOutcome(None, f"refused: {exc}")
        attempt = _Attempt()
        timer = threading.Timer(self.timeout, attempt.expire)
        timer.daemon = True
        _current.attempt = attempt
        timer.start()
        try:
            # The adapter alone, no Session: a Session would follow
            # redirects and read proxies from the environment.
            request = requests.Request("POST", url, data=body, headers={
                "User-Agent": USER_AGENT, "Content-Type": "application/json",
                **{name: _header_value(value) for name, value in headers.items()}})
            # stream: the status line and headers are all we read.
            resp = self._adapter.send(request.prepare(), stream=True, proxies={},
                                      verify=self._verify,
                                      timeout=(self.timeout, self.timeout))
            code = resp.status_code
            resp.close()
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            return PostOutcome(None, _reason(exc, attempt, self.timeout))
        finally:
            timer.cancel()
            _current.attempt = None
        if 200 <= code < 300:
            return PostOutcome(code, "")
        if 300 <= code < 400:
            return PostOutcome(code, f"HTTP {code} (redirects are not followed)")
        return PostOutcome(code, f"HTTP {code}")

    def close(self) -> None:
        self._adapter.close()
