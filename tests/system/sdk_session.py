"""The published e2a SDK, installed apart from our code and driven through
sdk_driver.py in its own interpreter (that module's docstring says why)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# Exact versions: a release of the SDK must not change what these tests
# prove between two runs of the same commit. Raise them on purpose.
# The legacy generation (/api/v1); [ws]: listen() needs the websockets package.
SDK2_VERSION = "2.5.0"
REQUIREMENT = f"e2a[ws]=={SDK2_VERSION}"
# The current generation (/v1), for the tests of that API.
SDK5_VERSION = "5.8.1"
# [ws]: websockets, for listen().
SDK5_REQUIREMENT = f"e2a[ws]=={SDK5_VERSION}"
# Beside the virtualenv it is installed for, so it goes when the venv goes;
# named by version, so a new pin installs afresh.
INSTALL_DIR = Path(sys.prefix) / f"e2a-sdk-{SDK2_VERSION}"
DRIVER = Path(__file__).with_name("sdk_driver.py")


def installed_version(target: Path = INSTALL_DIR) -> str | None:
    found = sorted(target.glob("e2a-*.dist-info"))
    return found[-1].name.removeprefix("e2a-").removesuffix(".dist-info") if found else None


def ensure_installed(target: Path = INSTALL_DIR, requirement: str = REQUIREMENT,
                     version: str = SDK2_VERSION, needs: str = "websockets") -> str:
    """The installed SDK's version (always ``version``); installs it with
    pip on first use. ``needs``: a package directory whose absence means a
    partial install."""
    found = installed_version(target)
    if found != version or not (target / needs).is_dir():
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--target", str(target), requirement],
            capture_output=True, text=True, timeout=300, check=False)
        found = installed_version(target)
        if done.returncode != 0 or found != version:
            raise RuntimeError(f"pip install {requirement!r} into {target} failed:\n"
                               f"{done.stderr or done.stdout}")
    return found


def start(script: Path, *args: str, install_dir: Path = INSTALL_DIR,
          **popen: Any) -> subprocess.Popen[str]:
    """``script`` in a child interpreter with the SDK alone on its path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("E2A_", "PYTHON"))}
    env["PYTHONPATH"] = str(install_dir)
    # -S: no site-packages (ours); -P: not the script's directory either.
    return subprocess.Popen([sys.executable, "-S", "-P", str(script), *args], env=env,
                            text=True, **popen)


class SdkError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error['type']} ({error['status_code']}): {error['message']}")
        self.type = error["type"]
        self.status_code = error["status_code"]
        self.message = error["message"]


class Sdk:
    """An E2AClient of the real SDK in a child process; each call is one
    request and answer over its stdin and stdout."""

    def __init__(self, base_url: str, api_key: str, agent_email: str) -> None:
        self._proc = start(DRIVER, base_url, api_key, agent_email, stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    error_class: type[Exception] = SdkError

    def _ask(self, request: dict[str, Any]) -> Any:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError(f"the SDK driver died: {self._stderr()}")
        answer = json.loads(line)
        if "error" in answer:
            raise self.error_class(answer["error"])
        return answer["ok"]

    def call(self, method: str, *args: Any, target: str = "client", **kwargs: Any) -> Any:
        return self._ask({"op": "call", "target": target, "method": method, "args": list(args),
                          "kwargs": kwargs})

    def info(self) -> Any:
        return self._ask({"op": "info"})

    def verify(self, message_id: str, secret: str) -> Any:
        return self._ask({"op": "verify", "message_id": message_id, "secret": secret})

    def parse_webhook(self, body: bytes, secret: str) -> Any:
        """The SDK's own webhook entry point on a POST body as it arrived."""
        return self._ask({"op": "parse_webhook", "body": base64.b64encode(body).decode(),
                          "secret": secret})

    def _stderr(self) -> str:
        return self._proc.stderr.read() if self._proc.stderr else ""

    def close(self) -> None:
        if self._proc.stdin and not self._proc.stdin.closed:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
