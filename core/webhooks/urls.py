"""Which webhook URLs we accept, at the moment a user gives us one.

The server POSTs mail to these URLs, so a URL is a request we will make on
the user's behalf from inside the deployment's network. Refused here: any
scheme but https, credentials in the URL (they would end up in logs and in
the row), IP literals in any spelling (cloud metadata at 169.254.169.254,
private ranges, loopback), single-label and ``localhost`` names, control
characters and whitespace (header injection), and absurd lengths.

What a name resolves to can change after it was accepted, so the delivery
path checks the addresses again when it connects; this module is the syntax
half and the one place the rules live.

``allow_loopback`` (config ``webhooks.allow_loopback``, for the sandbox and
tests only) additionally admits plain http and https to ``localhost``,
127.0.0.0/8 and ::1, where a local receiver listens.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from e2a.core.accounts import domainname

MAX_LENGTH = 2048
LOOPBACK_NAMES = ("localhost",)


class WebhookUrlError(ValueError):
    """A URL we will not call; str() says why."""


def check(url: object, *, allow_loopback: bool = False) -> str:
    """``url`` when it is acceptable, else WebhookUrlError."""
    if not isinstance(url, str) or not url:
        raise WebhookUrlError("webhook_url must be a non-empty string")
    if len(url) > MAX_LENGTH:
        raise WebhookUrlError(f"webhook_url is longer than {MAX_LENGTH} characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise WebhookUrlError("webhook_url must not contain whitespace or control characters")
    if not url.isascii():
        raise WebhookUrlError("webhook_url must be ASCII (use the xn-- form of the host)")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise WebhookUrlError("webhook_url must be an https:// URL")
    if "@" in parts.netloc:
        raise WebhookUrlError("webhook_url must not carry credentials")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        raise WebhookUrlError("webhook_url has an invalid port") from None
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise WebhookUrlError("webhook_url needs a host")
    loopback = _is_loopback(host)
    if loopback and allow_loopback:
        return url
    if scheme != "https":
        raise WebhookUrlError("webhook_url must be an https:// URL")
    if loopback or _is_ip(host):
        raise WebhookUrlError("webhook_url must name a host, not an IP address or localhost")
    try:
        domainname.normalize(host)
    except domainname.DomainNameError as exc:
        raise WebhookUrlError(f"webhook_url host: {exc}") from None
    return url


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_loopback(host: str) -> bool:
    host = host.lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
