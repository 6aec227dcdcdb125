"""The legacy generation's documentation (``/api/v1``, e2a's v1 API as the
2.x SDKs call it): its operations (operations.py) and component schemas
(schemas.py)."""
