"""Dashboard → Account: API keys (a new key is shown once), signing secrets
(likewise), webhooks with their recent deliveries, and domains with the DNS
records to publish and a verify button.

The same core calls as the account endpoints of the APIs. A new key or
secret is shown on the answer to the POST that made it, never behind a
URL: a redirect would have to carry it, or keep it somewhere to show.
"""

from __future__ import annotations

from typing import Any

import falcon

from e2a.api.dashboard import web
from e2a.core.accounts import domaindns, domainname, domains, signing_secrets
from e2a.core.accounts import registration as accounts
from e2a.core.accounts.registration import AccountError
from e2a.core.store import agents as agent_store
from e2a.core.store import deliveries as delivery_store
from e2a.core.store import domains as domain_store
from e2a.core.store import keys as key_store
from e2a.core.store import signing as signing_store
from e2a.core.store import webhooks as webhook_store
from e2a.core.webhooks import subscriptions

RECENT_DELIVERIES = 25
MAX_NAME = 200
_NOTICES = {"revoked": "The key is revoked: it opens nothing any more.",
            "deleted": "The signing secret is deleted."}


class Account(web.Page):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.show(req, resp)

    def show(self, req: falcon.Request, resp: falcon.Response, status: int = 200, *,
             new_key: str = "", new_secret: str = "", error: str = "") -> None:
        user = self.user(req)
        with self._pool.connection() as conn:
            agents = {a["id"]: a for a in agent_store.agents_for_user(conn, user["user_id"])}
            keys = [k for k in key_store.keys_for_user(conn, user["user_id"])
                    if k["revoked_at"] is None]
            secrets = signing_store.list_secrets(conn, user["user_id"])
            hooks = webhook_store.webhooks_for_user(conn, user["user_id"])
            owned = domain_store.domains_for_user(conn, user["user_id"])
        self.render(req, resp, "dashboard/account.html", status=status, section="account",
                    agents=agents, keys=keys, secrets=secrets, webhooks=hooks, domains=owned,
                    new_key=new_key, new_secret=new_secret, error=error,
                    notice=_NOTICES.get(req.get_param("done") or "", ""))


class ApiKeys(Account):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise web.Redirect(web.url("/account"))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        user = self.user(req)
        fields = self.checked_form(req)
        name = fields.get("name", "").strip()[:MAX_NAME]
        agent_id = fields.get("agent", "") or None
        with self._pool.connection() as conn:
            if agent_id is not None:
                agent = agent_store.agent_by_id(conn, agent_id)
                if agent is None or agent["user_id"] != user["user_id"]:
                    web.not_found("agent")
            with conn.transaction():
                key = accounts.issue_key(conn, user["user_id"], name=name, agent_id=agent_id)
        self.show(req, resp, 201, new_key=key.key)


class ApiKeyRevocation(web.Page):
    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        user = self.user(req)
        self.checked_form(req)
        with self._pool.connection() as conn, conn.transaction():
            row = key_store.key_by_id(conn, id)
            if row is None or row["user_id"] != user["user_id"] or row["revoked_at"]:
                web.not_found("API key")
            key_store.revoke_key(conn, id)
        web.redirect(resp, web.url("/account", done="revoked"))


class SigningSecrets(Account):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise web.Redirect(web.url("/account"))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        user = self.user(req)
        fields = self.checked_form(req)
        try:
            with self._pool.connection() as conn:
                created = signing_secrets.create(conn, user["user_id"],
                                                 fields.get("name", "").strip()[:MAX_NAME])
        except AccountError as exc:
            self.show(req, resp, 422, error=str(exc))
            return
        self.show(req, resp, 201, new_secret=created.secret)


class SigningSecretDeletion(Account):
    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        user = self.user(req)
        self.checked_form(req)
        try:
            with self._pool.connection() as conn, conn.transaction():
                signing_secrets.delete(conn, user["user_id"], id)
        except AccountError as exc:
            if exc.code == "not_found":
                web.not_found("signing secret")
            self.show(req, resp, 422, error=str(exc))
            return
        web.redirect(resp, web.url("/account", done="deleted"))


class WebhookDetail(web.Page):
    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        user = self.user(req)
        with self._pool.connection() as conn:
            try:
                hook = subscriptions.owned(conn, user["user_id"], id)
            except AccountError:
                web.not_found("webhook")
            deliveries = delivery_store.list_for_webhook(conn, id, None, RECENT_DELIVERIES)
        self.render(req, resp, "dashboard/webhook.html", section="account", webhook=hook,
                    deliveries=deliveries)


class _DomainPage(web.Page):
    def domain(self, user: dict[str, str], name: str) -> dict[str, Any]:
        try:
            normalized = domainname.normalize(name)
        except domainname.DomainNameError:
            web.not_found("domain")
        with self._pool.connection() as conn:
            row = domain_store.domain_for_user(conn, user["user_id"], normalized)
        if row is None:
            web.not_found("domain")
        return row

    def show(self, req: falcon.Request, resp: falcon.Response, row: dict[str, Any],
             status: int = 200, probe: domaindns.Probe | None = None, error: str = "") -> None:
        self.render(req, resp, "dashboard/domain.html", status=status, section="account",
                    domain=row, records=domaindns.records(self._cfg, row), probe=probe,
                    error=error)


class DomainDetail(_DomainPage):
    def on_get(self, req: falcon.Request, resp: falcon.Response, domain: str) -> None:
        self.show(req, resp, self.domain(self.user(req), domain))


class DomainVerify(_DomainPage):
    def on_get(self, req: falcon.Request, resp: falcon.Response, domain: str) -> None:
        raise web.Redirect(web.url(f"/account/domains/{domain}"))

    def on_post(self, req: falcon.Request, resp: falcon.Response, domain: str) -> None:
        user = self.user(req)
        self.checked_form(req)
        row = self.domain(user, domain)
        try:
            checked, probe = domains.verify(self._pool, self._cfg, row)
        except domaindns.DnsUnavailable as exc:
            self.show(req, resp, row, 503, error=f"{exc}. Try again in a minute.")
            return
        if checked is None:
            web.not_found("domain")
        self.show(req, resp, checked, probe=probe)
