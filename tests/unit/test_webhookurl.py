"""Webhook URLs: what the server agrees to call on a user's behalf."""

from __future__ import annotations

import pytest

from e2a.core.webhooks.urls import MAX_LENGTH, WebhookUrlError, check

GOOD = ["https://hooks.example.com/e2a", "https://hooks.example.com:8443/a?b=c#d",
        "https://xn--bcher-kva.example/in", "HTTPS://Hooks.Example.com/x"]
HOSTILE = [
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "https://169.254.169.254/",
    "https://10.0.0.5/hook", "https://[::1]/hook", "https://[fd00::1]/hook",
    "https://2130706433/", "https://0x7f.1/", "https://127.1/",  # IPs in disguise
    "https://localhost/hook", "https://api.localhost/hook", "https://intranet/hook",
    "https://user:pw@hooks.example.com/", "https://user@hooks.example.com/",
    "javascript:alert(1)", "data:text/html,hi", "file:///etc/passwd", "ftp://x.example/",
    "gopher://hooks.example.com/", "//hooks.example.com/x", "hooks.example.com/x",
    "http://hooks.example.com/plain-http",
    "https://hooks.example.com/\r\nX-Injected: 1", "https://hooks.example.com/a b",
    "https://hooks.example.com/\x00", "https://hooks.example.com:99999/",
    "https://hooks.example.com:x/", "https:///nohost", "https://bücher.example/",
    "https://hooks.example.com/" + "a" * 10_000, "", None, 42, ["https://x.example"],
]


@pytest.mark.parametrize("url", GOOD)
def test_accepted(url):
    assert check(url) == url


@pytest.mark.parametrize("url", HOSTILE)
def test_refused(url):
    with pytest.raises(WebhookUrlError):
        check(url)


def test_length_limit_is_exact():
    base = "https://hooks.example.com/"
    assert check(base + "a" * (MAX_LENGTH - len(base)))
    with pytest.raises(WebhookUrlError, match="longer"):
        check(base + "a" * (MAX_LENGTH - len(base) + 1))


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "https://127.0.0.1/hook",
                                 "http://localhost:9/x", "http://[::1]:8080/"])
def test_loopback_only_when_allowed(url):
    with pytest.raises(WebhookUrlError):
        check(url)
    assert check(url, allow_loopback=True) == url


@pytest.mark.parametrize("url", ["http://169.254.169.254/", "http://10.0.0.1/",
                                 "http://hooks.example.com/", "http://u:p@127.0.0.1/"])
def test_allowing_loopback_allows_nothing_else(url):
    with pytest.raises(WebhookUrlError):
        check(url, allow_loopback=True)
