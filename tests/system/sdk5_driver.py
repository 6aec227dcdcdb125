"""Drives the published e2a Python SDK 5.x (the /v1 API) for
test_sdk5_interop.py, in an interpreter of its own with the SDK alone on
its path (sdk_driver.py says why).

Usage: ``sdk5_driver.py BASE_URL API_KEY``. Then one JSON request per line
on stdin, ``{"call": "messages.list", "args": [...], "kwargs": {...}}`` (a
method of E2AClient reached by that dotted path; a pager's items are
collected; two calls are the SDK's module functions rather than the client's:
``construct_event`` (body, header, secret) and ``listen.first`` (email,
timeout): the first event of ``client.listen(email)``), one JSON answer per
line on stdout: ``{"ok": result}`` or
``{"error": {"type", "code", "status", "message", "request_id", "details"}}``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
from typing import Any

from pydantic import BaseModel

from e2a.v1 import E2AClient, E2AError, SyncAutoPager, construct_event

MAX_ITEMS = 1000


def plain(value: Any) -> Any:
    if isinstance(value, SyncAutoPager):
        return plain(value.to_list(limit=MAX_ITEMS))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
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


def first_event(client: E2AClient, email: str, timeout: float) -> Any:
    """The first event listen() yields, within ``timeout`` seconds."""
    got: list[Any] = []

    def listen() -> None:
        try:
            for event in client.listen(email):
                got.append(event)
                return
        except Exception as exc:  # reported as the answer
            got.append(exc)

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    thread.join(timeout)
    if not got:
        raise TimeoutError(f"no event within {timeout} s")
    if isinstance(got[0], Exception):
        raise got[0]
    return got[0]


def handle(client: E2AClient, request: dict[str, Any]) -> Any:
    if request["call"] == "construct_event":
        return construct_event(*request["args"])
    if request["call"] == "listen.first":
        return first_event(client, *request["args"])
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
