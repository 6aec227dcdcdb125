"""Signing in and out: ``/dashboard/login`` (ask for a link),
``/dashboard/signin`` (open it: a button, whose POST uses it up and starts
the session) and ``/dashboard/logout``.

Opening the link does nothing by itself (mail scanners fetch links); the
POST does. The login answer is one page whether or not the address has an
account, and the mail leaves after the answer is written, in the
background, so its time does not tell either.
"""

from __future__ import annotations

import logging
import threading

import falcon
from psycopg_pool import ConnectionPool

from e2a.api.clientaddr import ClientAddress
from e2a.api.dashboard import web
from e2a.core.accounts import signin
from e2a.core.config import Config
from e2a.core.mta.reinject import ReinjectError

log = logging.getLogger("e2a.api")


class Login(web.Page):
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        super().__init__(cfg, pool)
        self._client = ClientAddress(cfg.http.trusted_proxies)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.session(req) is not None:
            raise web.Redirect(web.url("/pending"))
        binding = self.browser_binding(req, resp)
        self.render(req, resp, "dashboard/login.html",
                    csrf=signin.csrf_token(self._cfg, binding),
                    signed_out=req.get_param("signed_out") == "1",
                    next=web.safe_next(req.get_param("next") or ""))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        fields = self.checked_form(req, binding=web.cookie(req, web.BROWSER_COOKIE))
        address = fields.get("email", "")
        try:
            with self._pool.connection() as conn, conn.transaction():
                mail = signin.request_link(conn, self._cfg, address, self._client.of(req),
                                           then=web.safe_next(fields.get("next", "")))
        except signin.RateLimited as exc:
            resp.set_header("Retry-After", str(exc.retry_after))
            raise web.PageError(429, "Too many sign-in requests",
                                "Wait a few minutes, then ask for a new link.") from None
        if mail is not None:
            threading.Thread(target=self._send, args=(mail,), daemon=True).start()
        self.render(req, resp, "dashboard/sent.html")

    def _send(self, mail: signin.SignInMail) -> None:
        try:
            with self._pool.connection() as conn:
                signin.send(conn, self._cfg, mail)
        except (ReinjectError, OSError) as exc:
            # The person asks again; the unused link expires on its own.
            log.warning("sign-in mail not sent: %s", exc)
        except Exception:
            log.exception("sign-in mail not sent")


class SignIn(web.Page):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        token = req.get_param("token") or ""
        if not signin.well_formed(token):
            raise _refused()
        binding = self.browser_binding(req, resp)
        self.render(req, resp, "dashboard/signin.html", token=token,
                    csrf=signin.csrf_token(self._cfg, binding),
                    next=web.safe_next(req.get_param("next") or ""))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        fields = self.checked_form(req, binding=web.cookie(req, web.BROWSER_COOKIE))
        try:
            with self._pool.connection() as conn, conn.transaction():
                session = signin.redeem(conn, self._cfg, fields.get("token", ""))
        except signin.LinkRefused:
            raise _refused() from None
        self.set_cookie(resp, web.SESSION_COOKIE, session.token, signin.SESSION_TTL_SECONDS)
        web.redirect(resp, web.safe_next(fields.get("next", "")) or web.url("/pending"))


def _refused() -> web.PageError:
    return web.PageError(410, "This sign-in link is no longer valid",
                         "Each link works once, for 15 minutes. Ask for a new one at the "
                         "sign-in page.")


class SignOut(web.Page):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.user(req)
        self.checked_form(req)
        with self._pool.connection() as conn:
            signin.sign_out(conn, self._cfg, req.context.session_token)
        self.clear_cookie(resp, web.SESSION_COOKIE)
        web.redirect(resp, web.url("/login", signed_out="1"))


class Home(web.Page):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise web.Redirect(web.url("/pending"))
