"""``GET /metrics``: Prometheus text format, every API worker's values added up.

No authentication, like every Prometheus target: the API listens on loopback
by default, and an operator who exposes it keeps /metrics off the public
side (docs/operations.md, Monitoring).
"""

from __future__ import annotations

import falcon

from e2a.core.runtime import metrics


class Metrics:
    public = True

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = metrics.CONTENT_TYPE
        resp.cache_control = ["no-store"]
        resp.data = metrics.exposition()
