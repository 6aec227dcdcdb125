"""Helpers for the /v1 API tests: paths and the error envelope."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote


def agent_path(email: str) -> str:
    return "/v1/agents/" + quote(email, safe="")


def messages_path(email: str) -> str:
    return agent_path(email) + "/messages"


def assert_envelope(result: Any, status: int, code: str) -> dict[str, Any]:
    """The error of a /v1 response that must be this status and code, in the
    envelope, with the request id both in the body and the header."""
    assert result.status_code == status, result.text
    error = result.json["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    assert error["request_id"] == result.headers["X-Request-Id"]
    return error
