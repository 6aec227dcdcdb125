"""The current e2a API, ``/v1`` (SDK 5.x): a thin adapter over the same core
as the legacy ``/api/v1``. The route table is ``routes.ROUTES``."""
