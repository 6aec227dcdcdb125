"""A headless Chromium (Debian's chromium and chromium-driver packages)
driven through chromedriver with the W3C WebDriver protocol, spoken with
``requests``: enough of it to open a page, read elements, fill in a form,
press a button, read a cookie and take a screenshot.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from servicesupport import free_port

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"
# The W3C name under which an element reference travels.
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
TIMEOUT = 30.0


class WebDriverError(AssertionError):
    pass


class Browser:
    """One WebDriver session."""

    def __init__(self, base: str, session_id: str) -> None:
        self._url = f"{base}/session/{session_id}"

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = requests.request(method, self._url + path, json=body, timeout=TIMEOUT)
        value = response.json().get("value")
        if response.status_code != 200:
            raise WebDriverError(f"{method} {path}: {response.status_code} {value}")
        return value

    def open(self, url: str) -> None:
        self._call("POST", "/url", {"url": url})

    def current_url(self) -> str:
        return self._call("GET", "/url")

    def title(self) -> str:
        return self._call("GET", "/title")

    def find(self, css: str) -> str:
        """The element's reference; WebDriverError when there is none."""
        found = self._call("POST", "/element", {"using": "css selector", "value": css})
        return found[ELEMENT]

    def find_all(self, css: str) -> list[str]:
        found = self._call("POST", "/elements", {"using": "css selector", "value": css})
        return [item[ELEMENT] for item in found]

    def text(self, css: str) -> str:
        return self._call("GET", f"/element/{self.find(css)}/text")

    def click(self, css: str) -> None:
        self._call("POST", f"/element/{self.find(css)}/click", {})

    def type(self, css: str, text: str) -> None:
        """Replace the field's value with ``text``, keystroke by keystroke."""
        element = self.find(css)
        self._call("POST", f"/element/{element}/clear", {})
        self._call("POST", f"/element/{element}/value", {"text": text})

    def value(self, css: str) -> str:
        return self._call("GET", f"/element/{self.find(css)}/property/value")

    def cookie(self, name: str) -> dict[str, Any]:
        """The cookie as the browser holds it (HttpOnly ones too)."""
        return self._call("GET", f"/cookie/{name}")

    def resize(self, width: int, height: int) -> None:
        self._call("POST", "/window/rect", {"width": width, "height": height})

    def screenshot(self) -> bytes:
        """The viewport as PNG."""
        return base64.b64decode(self._call("GET", "/screenshot"))

    def source(self) -> str:
        return self._call("GET", "/source")

    def wait_for_text(self, css: str, timeout: float = TIMEOUT) -> str:
        """The element's text once it exists (a page still loading has none)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.text(css)
            except WebDriverError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)

    def wait_until_text(self, css: str, expected: str, timeout: float = TIMEOUT) -> None:
        """Until the element says ``expected``: after a click, the page it
        leads to may still be loading, and the old one may have the element."""
        deadline = time.monotonic() + timeout
        seen = ""
        while time.monotonic() < deadline:
            try:
                seen = self.text(css)
            except WebDriverError:
                seen = ""
            if seen == expected:
                return
            time.sleep(0.2)
        raise WebDriverError(f"{css} says {seen!r}, not {expected!r}, after {timeout}s")

    def quit(self) -> None:
        self._call("DELETE", "")


def _wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise WebDriverError(f"chromedriver exited: {log.read_text(errors='replace')}")
        try:
            if requests.get(f"{base}/status", timeout=2).json()["value"]["ready"]:
                return
        except (requests.RequestException, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise WebDriverError(f"chromedriver not ready after {TIMEOUT}s")


@contextmanager
def headless_chromium() -> Iterator[Browser]:
    """A browser session, and chromedriver and Chromium stopped afterwards."""
    root = Path(tempfile.mkdtemp(prefix="e2a-chromium-"))
    log = root / "chromedriver.log"
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen([CHROMEDRIVER, f"--port={port}", f"--log-path={log}"],
                                stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    browser = None
    try:
        _wait_ready(base, proc, log)
        response = requests.post(f"{base}/session", timeout=TIMEOUT * 2, json={
            "capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": ["--headless", "--no-sandbox", "--disable-gpu",
                             "--disable-background-networking", "--disable-dev-shm-usage",
                             f"--user-data-dir={root / 'profile'}"],
                },
            }}})
        if response.status_code != 200:
            raise WebDriverError(f"no session: {response.text}")
        browser = Browser(base, response.json()["value"]["sessionId"])
        yield browser
    finally:
        try:
            if browser is not None:
                browser.quit()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            shutil.rmtree(root, ignore_errors=True)
