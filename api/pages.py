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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import falcon
import jinja2

from e2a.core.timefmt import rfc3339

TEMPLATES = Path(__file__).resolve().parent / "templates"
FORM = "application/x-www-form-urlencoded"


def utc(moment: datetime | None) -> str:
    """A moment as a person reads it in UTC (the dashboard's script shows it
    in the viewer's zone)."""
    return "-" if moment is None else rfc3339(moment).replace("T", " ").replace("Z", " UTC")


def time_left(moment: datetime | None, now: datetime | None = None) -> str:
    """How long until ``moment``, in words a person reads at a glance."""
    if moment is None:
        return "no expiry"
    seconds = int((moment - (now or datetime.now(UTC))).total_seconds())
    if seconds <= 0:
        return "expired"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if days:
        return f"{days} d {hours % 24} h"
    if hours:
        return f"{hours} h {minutes % 60} min"
    return f"{minutes} min" if minutes else "under a minute"


ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
)
ENV.filters["utc"] = utc
ENV.filters["rfc3339"] = lambda moment: rfc3339(moment) if moment else ""
ENV.filters["time_left"] = time_left


def form_fields(req: falcon.Request) -> dict[str, str]:
    """The posted form's single-valued fields; {} for any other body."""
    if not (req.content_type or "").lower().startswith(FORM):
        return {}
    form = req.get_media(default_when_empty={})
    return {key: value for key, value in form.items() if isinstance(value, str)}


def _style_hash() -> str:
    # base.html includes style.css as the whole <style> element's text.
    style = ENV.get_template("style.css").render()
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
    resp.text = ENV.get_template(template).render(**context)


def problem(resp: falcon.Response, status: int, heading: str, text: str) -> None:
    """A page saying what went wrong, in words a person understands."""
    render(resp, status, "error.html", heading=heading, text=text)
