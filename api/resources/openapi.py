"""``GET /api/openapi.json``: the OpenAPI 3 document of this very app
(api/openapi/builder.py), built once on first use, when every route is in place."""

from __future__ import annotations

import json

import falcon

from e2a.api.openapi import builder as openapi


class OpenApiDocument:
    public = True

    def __init__(self, app: falcon.App, public_url: str) -> None:
        self._app = app
        self._public_url = public_url
        self._body: bytes | None = None

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self._body is None:
            document = openapi.build(self._app, server_url=self._public_url)
            self._body = json.dumps(document, separators=(",", ":")).encode()
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self._body
