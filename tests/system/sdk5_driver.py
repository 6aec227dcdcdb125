"""Drives the published e2a Python SDK 5.x (the /v1 API) for
test_sdk5_interop.py, in an interpreter of its own with the SDK alone on
its path (sdk_driver.py says why).

Usage: ``sdk5_driver.py BASE_URL API_KEY``. Then one JSON request per line
on stdin, ``{"call": "messages.list", "args": [...], "kwargs": {...}}`` (a
method of E2AClient reached by that dotted path; a pager's items are
collected), one JSON answer per line on stdout: ``{"ok": result}`` or
``{"error": {"type", "code", "status", "message", "request_id", "details"}}``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import BaseModel

from e2a.v1 import E2AClient, E2AError, SyncAutoPager

MAX_ITEMS = 1000


def plain(value: Any) -> Any:
    if isinstance(value, SyncAutoPager):
        return plain(value.to_list(limit=MAX_ITEMS))
    if isinstance(value, BaseModel):
        return plain(value.model_dump(by_alias=True, mode="json"))
    if isinstance(value, dict):
        # The generated models keep unknown keys apart; on the wire they are keys.
        extra = value.get("additional_properties") or {}
        return {str(k): plain(v) for k, v in {**value, **extra}.items()
                if k != "additional_properties"}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def handle(client: E2AClient, request: dict[str, Any]) -> Any:
    target: Any = client
    for name in request["call"].split("."):
        target = getattr(target, name)
    return target(*request.get("args", []), **request.get("kwargs", {}))


def main() -> None:
    base_url, api_key = sys.argv[1:3]
    with E2AClient(api_key=api_key, base_url=base_url, max_retries=0) as client:
        for line in sys.stdin:
            request = json.loads(line)
            try:
                answer: dict[str, Any] = {"ok": plain(handle(client, request))}
            except E2AError as exc:
                answer = {"error": {"type": type(exc).__name__, "code": exc.code,
                                    "status": exc.status, "message": exc.message,
                                    "request_id": exc.request_id, "details": exc.details}}
            except Exception as exc:  # reported to the test, which decides
                answer = {"error": {"type": type(exc).__name__, "code": None, "status": None,
                                    "message": str(exc), "request_id": None,
                                    "details": None}}
            print(json.dumps(answer, default=str), flush=True)


if __name__ == "__main__":
    main()
