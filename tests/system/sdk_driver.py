"""Drives the published e2a Python SDK (2.x) for test_sdk_interop.py, in an
interpreter of its own.

Why a separate process: the SDK's top-level package is named ``e2a``, like
ours. Installed next to ours, its ``e2a/__init__.py`` would run on every
``import e2a.core...`` of every service, loading httpx, pydantic and ssl into
the milter and into the API master before gevent patches. So the SDK lives in
its own directory, and this script runs as ``python -S -P`` with only that
directory on the path: what it imports as ``e2a`` is the SDK alone.

Usage: ``sdk_driver.py BASE_URL API_KEY AGENT_EMAIL``. Then one JSON request
per line on stdin, one JSON answer per line on stdout:

- ``{"op": "call", "target": "client" | "api", "method": str, "args": [...],
  "kwargs": {...}}``: a method of E2AClient or of its raw E2AApi;
- ``{"op": "info"}``: e2a.fetch_info(BASE_URL), without a key;
- ``{"op": "verify", "message_id": str, "secret": str}``: get_message, then
  the SDK's own X-E2A-Auth check (InboundEmail.verify_signature);
- ``{"op": "parse_webhook", "body": base64, "secret": str}``: the SDK's
  webhook handler entry (E2AClient.parse_webhook: parse and verify), and
  what the verified email then reads.

Answers: ``{"ok": result}`` (models as their JSON, bytes as base64) or
``{"error": {"type", "status_code", "message"}}``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import sys
from typing import Any

from pydantic import BaseModel

from e2a.v1 import E2AApiError, E2AClient, InboundEmail, fetch_info


def plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True, mode="json")
    if isinstance(value, InboundEmail):
        return {**value.unverified_payload, "verified": value.verified,
                "is_verified": value.is_verified, "auth": dataclasses.asdict(value.auth),
                "raw_message": plain(value.raw_message)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def handle(client: E2AClient, base_url: str, request: dict[str, Any]) -> Any:
    op = request["op"]
    if op == "info":
        return fetch_info(base_url)
    if op == "verify":
        email = client.get_message(request["message_id"])
        return {"valid": email.verify_signature(request["secret"]),
                "auth": dataclasses.asdict(email.auth)}
    if op == "parse_webhook":
        email = client.parse_webhook(base64.b64decode(request["body"]), request["secret"])
        return {"verified": email.verified, "message_id": email.message_id,
                "conversation_id": email.conversation_id, "sender": email.sender,
                "recipient": email.recipient, "to": email.to, "subject": email.subject,
                "text_body": email.text_body, "auth": dataclasses.asdict(email.auth)}
    if op == "call":
        target = client if request.get("target", "client") == "client" else client.api
        method = getattr(target, request["method"])
        return method(*request.get("args", []), **request.get("kwargs", {}))
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    base_url, api_key, agent_email = sys.argv[1:4]
    with E2AClient(api_key=api_key, agent_email=agent_email, base_url=base_url,
                   timeout=30) as client:
        for line in sys.stdin:
            request = json.loads(line)
            try:
                answer: dict[str, Any] = {"ok": plain(handle(client, base_url, request))}
            except E2AApiError as exc:
                answer = {"error": {"type": "E2AApiError", "status_code": exc.status_code,
                                    "message": exc.message}}
            except Exception as exc:  # reported to the test, which decides
                answer = {"error": {"type": type(exc).__name__, "status_code": None,
                                    "message": str(exc)}}
            print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
