"""What every dashboard page shares: the session cookie, CSRF checks, the
page headers and rendering, and the answers for a page that cannot be shown.

The dashboard takes no API key at all (``public``: the Authentication
middleware leaves it alone): its one credential is the session cookie
(core/accounts/signin.py), so no key, account-wide or agent-scoped, reaches
it. Every id in a URL is looked up under the signed-in user; another user's
is a 404, like one that does not exist.
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime
from typing import Any, NoReturn
from urllib.parse import urlencode

import falcon
from psycopg_pool import ConnectionPool

from e2a.api import pages
from e2a.core.accounts import signin
from e2a.core.config import Config

PREFIX = "/dashboard"
SESSION_COOKIE = "e2a_session"
# Binds the forms shown before sign-in (the login form, the sign-in button)
# to the browser that asked for them.
BROWSER_COOKIE = "e2a_browser"
BROWSER_COOKIE_SECONDS = 24 * 3600
# The edit form carries a draft's bodies; every other form is small.
MAX_FORM_BYTES = 4 * 1024 * 1024
MAX_SMALL_FORM_BYTES = 16 * 1024


def _hash(template: str) -> str:
    text = pages.ENV.get_template(template).render()
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode("ascii")


# The magic-link pages' policy, plus the one script (times in the viewer's
# zone; the pages work without it) and the sandboxed frame of an HTML body.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_hash('style.css')}'; "
    f"script-src 'sha256-{_hash('dashboard/localtime.js')}'; frame-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {**pages.HEADERS, "Content-Security-Policy": CONTENT_SECURITY_POLICY}
# An HTML body someone else wrote, shown in a frame of ours: no script, no
# form, no fetch, a unique origin (sandbox), nothing loaded from anywhere
# but inline images and styles.
FRAME_HEADERS = {
    **pages.HEADERS,
    "X-Frame-Options": "SAMEORIGIN",
    "Content-Security-Policy": "sandbox; default-src 'none'; img-src data:; "
                               "style-src 'unsafe-inline'; frame-ancestors 'self'",
}


class PageError(Exception):
    """A page that says what went wrong; nothing changed."""

    def __init__(self, status: int, heading: str, text: str) -> None:
        super().__init__(heading)
        self.status, self.heading, self.text = status, heading, text


class Redirect(Exception):
    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


def not_found(what: str = "page") -> NoReturn:
    raise PageError(404, "Not found", f"There is no such {what} in your account.")


def install(app: falcon.App) -> None:
    app.add_error_handler(PageError, _page_error)
    app.add_error_handler(Redirect, _redirect)


def _page_error(req: falcon.Request, resp: falcon.Response, exc: PageError,
                params: dict[str, Any]) -> None:
    # No navigation: the handler does not know who is signed in.
    pages.render(resp, exc.status, "dashboard/error.html", heading=exc.heading,
                 text=exc.text, user=None, csrf="", prefix=PREFIX)
    resp.set_headers(HEADERS)


def _redirect(req: falcon.Request, resp: falcon.Response, exc: Redirect,
              params: dict[str, Any]) -> None:
    redirect(resp, exc.location)


def redirect(resp: falcon.Response, location: str) -> None:
    """303: after a POST, the browser GETs the page that shows the outcome."""
    resp.status = falcon.HTTP_303
    resp.location = location
    resp.set_headers(HEADERS)
    resp.text = ""


# Where to go after sign-in: a dashboard path of plain segments, nothing
# that could lead off the site (no scheme, no //, no backslash, no dots).
_NEXT = re.compile(r"^/dashboard(/[A-Za-z0-9_-]+)*$")


def safe_next(path: str) -> str:
    return path if _NEXT.match(path) and len(path) <= 200 else ""


def url(path: str, **query: str) -> str:
    given = {k: v for k, v in query.items() if v}
    return PREFIX + path + ("?" + urlencode(given) if given else "")


def form(req: falcon.Request) -> dict[str, str]:
    """The posted form's single-valued fields; {} for any other body."""
    return pages.form_fields(req)


def cookie(req: falcon.Request, name: str) -> str:
    values = req.get_cookie_values(name) or []
    return values[0] if values else ""


class Page:
    """A dashboard resource. ``max_body_bytes``: api/middleware.RequestShape's
    limit for its forms (413 as a page)."""

    public = True
    page = True
    max_body_bytes = MAX_SMALL_FORM_BYTES

    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._cfg = cfg
        self._pool = pool
        self._secure = cfg.http.public_url.lower().startswith("https:")

    # -- who is asking -----------------------------------------------------------

    def session(self, req: falcon.Request) -> tuple[str, dict[str, str]] | None:
        """(the cookie's token, the signed-in user) or None."""
        token = cookie(req, SESSION_COOKIE)
        if not token:
            return None
        with self._pool.connection() as conn:
            user = signin.signed_in(conn, self._cfg, token)
        return (token, user) if user is not None else None

    def user(self, req: falcon.Request) -> dict[str, str]:
        """The signed-in user; else the browser goes to the sign-in page."""
        found = self.session(req)
        if found is None:
            # Back to this page after sign-in (a notification's link, say).
            raise Redirect(url("/login", next=safe_next(req.path) if req.method == "GET"
                               else ""))
        req.context.session_token, req.context.user = found
        return found[1]

    def browser_binding(self, req: falcon.Request, resp: falcon.Response) -> str:
        """The pre-sign-in cookie, set now when the browser has none."""
        token = cookie(req, BROWSER_COOKIE)
        if not signin.well_formed(token):
            token = signin.new_token()
            self.set_cookie(resp, BROWSER_COOKIE, token, BROWSER_COOKIE_SECONDS)
        return token

    def set_cookie(self, resp: falcon.Response, name: str, value: str, max_age: int) -> None:
        resp.set_cookie(name, value, max_age=max_age, path=PREFIX, secure=self._secure,
                        http_only=True, same_site="Strict")

    def clear_cookie(self, resp: falcon.Response, name: str) -> None:
        resp.unset_cookie(name, path=PREFIX, same_site="Strict")

    # -- forms -----------------------------------------------------------------------

    def csrf(self, req: falcon.Request) -> str:
        """The CSRF token for forms shown to this signed-in browser."""
        return signin.csrf_token(self._cfg, req.context.session_token)

    def checked_form(self, req: falcon.Request, binding: str | None = None) -> dict[str, str]:
        """The posted form, once its CSRF token matches ``binding`` (the
        session's token when not given); else a 403 that changes nothing."""
        fields = form(req)
        bound = binding if binding is not None else req.context.session_token
        if not signin.csrf_valid(self._cfg, bound, fields.get("csrf", "")):
            raise PageError(403, "This form has expired",
                            "The page it came from is too old, or from another sign-in. "
                            "Go back, reload the page and try again.")
        return fields

    # -- answers ---------------------------------------------------------------------

    def render(self, req: falcon.Request, resp: falcon.Response, template: str,
               status: int = 200, **context: Any) -> None:
        user = getattr(req.context, "user", None)
        csrf = self.csrf(req) if user is not None else context.pop("csrf", "")
        pages.render(resp, status, template, user=user, csrf=csrf, prefix=PREFIX,
                     now=datetime.now(UTC), **context)
        resp.set_headers(HEADERS)
