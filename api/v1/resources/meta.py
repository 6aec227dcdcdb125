"""``GET /v1/info``: what a client needs to know about this deployment."""

from __future__ import annotations

import falcon

from e2a.api.v1 import views
from e2a.core.config import Config


class Info:
    public = True

    def __init__(self, cfg: Config) -> None:
        shared = cfg.mail.shared_domain
        self._body = {"version": views.VERSION, "shared_domain": shared,
                      "slug_registration_enabled": bool(shared)}
        if cfg.http.public_url:
            self._body["public_url"] = cfg.http.public_url

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self._body
