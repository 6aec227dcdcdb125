"""Today's published e2a SDK (5.x, the /v1 API), installed apart from our
code and from the 2.x SDK, driven through sdk5_driver.py in its own
interpreter."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sdk_session import SDK5_REQUIREMENT, SDK5_VERSION, Sdk, ensure_installed, start

# Beside the 2.x SDK's directory, named by version like it.
INSTALL_DIR = Path(sys.prefix) / f"e2a-sdk-{SDK5_VERSION}"
DRIVER = Path(__file__).with_name("sdk5_driver.py")


def install() -> str:
    return ensure_installed(INSTALL_DIR, SDK5_REQUIREMENT, SDK5_VERSION, needs="websockets")


class Sdk5Error(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error['type']} {error['status']} {error['code']}: "
                         f"{error['message']}")
        self.type = error["type"]
        self.code = error["code"]
        self.status = error["status"]
        self.request_id = error["request_id"]
        self.details = error["details"]


class Sdk5(Sdk):
    """An E2AClient of the real 5.x SDK in a child process; called with a
    dotted method path of the client (``sdk("messages.list", email)``)."""

    error_class = Sdk5Error

    def __init__(self, base_url: str, api_key: str) -> None:
        self._proc = start(DRIVER, base_url, api_key, install_dir=INSTALL_DIR,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)

    def __call__(self, call: str, *args: Any, **kwargs: Any) -> Any:
        return self._ask({"call": call, "args": list(args), "kwargs": kwargs})


@contextmanager
def session(base_url: str, api_key: str) -> Iterator[Sdk5]:
    """A client of SDK 5.x (installed first if missing), closed afterwards:
    what each module's ``sdk`` fixture yields."""
    version = install()
    if version != SDK5_VERSION:
        raise RuntimeError(f"SDK {SDK5_VERSION} wanted, {version} installed")
    client = Sdk5(base_url, api_key)
    try:
        yield client
    finally:
        client.close()
