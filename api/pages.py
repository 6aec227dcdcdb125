"""HTML pages for people (the magic-link confirmation and its outcomes),
rendered from api/templates/ with Jinja2, autoescaped.

Every page goes out with headers that keep it to itself: not cached (it
shows a draft), not framed (no clickjacking of its button), no Referer (the
URL carries the token), and a Content-Security-Policy that allows no
script at all, only the page's own stylesheet (by its hash) and forms posted
back here.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import falcon
import jinja2

TEMPLATES = Path(__file__).resolve().parent / "templates"

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
)


def _style_hash() -> str:
    # base.html includes style.css as the whole <style> element's text.
    style = _ENV.get_template("style.css").render()
    return base64.b64encode(hashlib.sha256(style.encode()).digest()).decode("ascii")


CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_style_hash()}'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'")
HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
}


def render(resp: falcon.Response, status: int, template: str, **context: Any) -> None:
    resp.status = falcon.code_to_http_status(status)
    resp.content_type = "text/html; charset=utf-8"
    resp.set_headers(HEADERS)
    resp.text = _ENV.get_template(template).render(**context)


def problem(resp: falcon.Response, status: int, heading: str, text: str) -> None:
    """A page saying what went wrong, in words a person understands."""
    render(resp, status, "error.html", heading=heading, text=text)
