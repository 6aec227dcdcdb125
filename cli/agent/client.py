"""A small client of the /v1 API on ``requests``: where the URL and key come
from, the error envelope turned into one line and a distinct exit code, pages
followed. (The package is named ``e2a`` like the SDK's, so the SDK cannot be
imported next to it; this is all the CLI needs of it.)"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Any
from urllib.parse import quote

import click
import requests

from e2a.cli.agent import settings

TIMEOUT = 60.0  # a send waits for the mail server to take the message
MAX_PAGES = 1000  # a server that hands out cursors forever is not followed forever


class Exit(IntEnum):
    """What a script can tell apart without reading the message."""

    ERROR = 1
    USAGE = 2  # click's own for a usage error
    AUTH = 3  # no key, a wrong key, or a key that may not do this
    NOT_FOUND = 4
    HELD = 5  # sent to review, not yet out


class Failure(click.ClickException):
    """One line on stderr and an exit code that says what kind of failure."""

    def __init__(self, message: str, code: Exit = Exit.ERROR) -> None:
        super().__init__(message)
        self.exit_code = int(code)


def exit_code_for(status: int, code: str) -> Exit:
    if status in (401, 403) or code in ("unauthorized", "forbidden"):
        return Exit.AUTH
    if status in (404, 410) or code.endswith("_not_found") or code == "not_found":
        return Exit.NOT_FOUND
    return Exit.ERROR


def envelope_failure(status: int, body: Any) -> Failure:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return Failure(f"the API answered {status}", exit_code_for(status, ""))
    code = str(error.get("code") or "")
    message = " ".join(str(error.get("message") or "").split())
    fields = (error.get("details") or {}).get("fields") if isinstance(
        error.get("details"), dict) else None
    if isinstance(fields, list) and fields:
        message += " (" + "; ".join(f"{f.get('location')}: {f.get('message')}"
                                    for f in fields if isinstance(f, dict)) + ")"
    return Failure(f"{status} {code}: {message}", exit_code_for(status, code))


def path_segment(value: str) -> str:
    """An address or id as one path segment (``@`` and ``+`` encoded, as the SDK does)."""
    if value in (".", ".."):
        raise Failure(f"not an address or id: {value!r}", Exit.USAGE)
    return quote(value, safe="")


def agent_path(email: str) -> str:
    return f"/v1/agents/{path_segment(email)}"


@dataclass(frozen=True)
class Api:
    url: str
    key: str
    stored: dict[str, str]  # the settings file, for defaults (agent, shared domain)

    def request(self, method: str, path: str, *, auth: bool = True,
                idempotent: bool = False, **kwargs: Any) -> Any:
        if not self.url:
            raise Failure("no API URL: run `e2a login`, or give --url or E2A_API_URL",
                          Exit.USAGE)
        headers = dict(kwargs.pop("headers", {}))
        if auth:
            if not self.key:
                raise Failure("no API key: run `e2a login`, or give --api-key or E2A_API_KEY",
                              Exit.AUTH)
            headers["Authorization"] = f"Bearer {self.key}"
        if idempotent:
            # One key per command: a retry of the same command is a new send by intent.
            headers["Idempotency-Key"] = uuid.uuid4().hex
        base = self.url.rstrip("/")
        try:
            response = requests.request(method, base + path, headers=headers, timeout=TIMEOUT,
                                        **kwargs)
        except requests.RequestException as exc:
            detail = " ".join(str(exc).split())
            raise Failure(f"cannot reach the API at {base}: "
                          f"{type(exc).__name__}: {detail}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not response.ok:
            raise envelope_failure(response.status_code, body)
        if body is None:
            raise Failure(f"the API answered {response.status_code} without JSON")
        return body

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items()
                                                 if v not in (None, "")})

    def pages(self, path: str, most: int | None = None, **params: Any) -> Iterator[Any]:
        """Every item of a /v1 list (or the first ``most``), page after page."""
        seen: set[str] = set()
        cursor = ""
        count = 0
        for _ in range(MAX_PAGES):
            page = self.get(path, cursor=cursor, **params)
            for item in page.get("items") or []:
                yield item
                count += 1
                if most is not None and count >= most:
                    return
            cursor = page.get("next_cursor") or ""
            if not cursor or cursor in seen:
                return
            seen.add(cursor)

    # -- what several commands need ---------------------------------------

    @functools.cached_property
    def info(self) -> dict[str, Any]:
        return self.request("GET", "/v1/info", auth=False)

    def shared_domain(self) -> str:
        domain = self.stored.get("shared_domain") or self.info.get("shared_domain") or ""
        if not domain:
            raise Failure("this deployment has no shared domain: give a full address",
                          Exit.USAGE)
        return domain

    def address(self, slug_or_email: str) -> str:
        """A full address; a bare slug is an address on the shared domain."""
        value = slug_or_email.strip()
        return value if "@" in value else f"{value}@{self.shared_domain()}"

    def default_agent(self, given: str = "") -> str:
        """The agent a command means: the one given, the stored default, the
        one an agent key is for, or the account's only agent."""
        if given:
            return self.address(given)
        if self.stored.get("agent"):
            return self.address(self.stored["agent"])
        account = self.get("/v1/account")
        if account.get("agent_email"):
            return str(account["agent_email"])
        agents = list(self.pages("/v1/agents", most=2))
        if len(agents) == 1:
            return str(agents[0]["email"])
        raise Failure("which agent? give one (or `e2a config set agent ADDRESS`)", Exit.USAGE)


def make_api(url: str, key: str) -> Api:
    """Flags and environment first (click gives them as one), then the file."""
    stored = settings.load()
    return Api(url=url or stored.get("url", ""), key=key or stored.get("api_key", ""),
               stored=stored)


def api_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--url and --api-key (E2A_API_URL, E2A_API_KEY, as the SDK reads them),
    given to the command as ``api``."""

    @click.option("--url", "api_url", envvar="E2A_API_URL", default="", metavar="URL",
                  help="The API's base URL (E2A_API_URL; default: from `e2a login`).")
    @click.option("--api-key", "api_key", envvar="E2A_API_KEY", default="", metavar="KEY",
                  help="An API key (E2A_API_KEY; default: from `e2a login`).")
    @functools.wraps(command)
    def wrapper(*args: Any, api_url: str, api_key: str, **kwargs: Any) -> Any:
        return command(*args, api=make_api(api_url, api_key), **kwargs)

    return wrapper


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """Aligned columns (heading, key) for people; --json is for scripts."""
    cells = [[h.upper() for h, _ in columns]]
    cells += [[_cell(row.get(key)) for _, key in columns] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in cells)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    text = " ".join(str(value).split())
    return text[:60] + "…" if len(text) > 61 else text
