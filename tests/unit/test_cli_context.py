"""The CLI sees what the services see: /etc/default/e2a's settings, and the
database as the e2a user, when it runs as root on the packaged configuration."""

from __future__ import annotations

import pwd
from pathlib import Path

import pytest

from e2a.cli import context
from e2a.core import config

SECRET = "f3b1c9d2e4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9"


def test_environment_file_syntax() -> None:
    text = ("# comment\n; another\n\nE2A_HMAC_SECRET=abc\nexport E2A_DATABASE_URL="
            "'postgresql:///e2a'\nE2A_PUBLIC_URL=\"https://x.example\"\nnot a line\n")
    assert context.parse_environment_file(text) == {
        "E2A_HMAC_SECRET": "abc", "E2A_DATABASE_URL": "postgresql:///e2a",
        "E2A_PUBLIC_URL": "https://x.example"}


def test_the_packaged_configuration_gets_the_units_environment(tmp_path: Path) -> None:
    defaults = tmp_path / "e2a"
    defaults.write_text(f"E2A_HMAC_SECRET={SECRET}\nE2A_LOG_LEVEL=debug\nOTHER=x\n")
    merged = context.service_environment({"E2A_LOG_LEVEL": "warning"}, defaults)
    # What the process sets itself wins, as a unit's Environment= would.
    assert merged == {"E2A_HMAC_SECRET": SECRET, "E2A_LOG_LEVEL": "warning"}
    # Another configuration (a sandbox, a test) keeps its own settings.
    other = {"E2A_CONFIG": str(tmp_path / "e2a.toml")}
    assert context.service_environment(other, defaults) == other
    # Unreadable or missing: nothing added.
    assert context.service_environment({}, tmp_path / "missing") == {}


def _cfg(tmp_path: Path, url: str) -> config.Config:
    path = tmp_path / "e2a.toml"
    path.write_text(f'[database]\nurl = "{url}"\n[secrets]\nhmac_secret = "{SECRET}"\n')
    return config.load(path, env={})


@pytest.mark.parametrize(("url", "as_e2a"), [
    ("postgresql:///e2a", True),
    ("postgresql://e2a@/e2a", True),
    ("postgresql:///e2a?host=/var/run/postgresql", True),
    ("postgresql://other@/e2a", False),
    ("postgresql://e2a:secret@/e2a", False),
    ("postgresql://e2a@db.example.com/e2a", False),
])
def test_root_connects_as_e2a_only_over_the_local_socket(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, as_e2a: bool) -> None:
    monkeypatch.setattr(context.os, "geteuid", lambda: 0)
    monkeypatch.delenv("E2A_CONFIG", raising=False)
    monkeypatch.setattr(context.pwd, "getpwnam",
                        lambda name: pwd.struct_passwd((name, "x", 999, 999, "", "/", "/")))
    assert context.peer_as_service_user(_cfg(tmp_path, url)) is as_e2a
    monkeypatch.setenv("E2A_CONFIG", str(tmp_path / "e2a.toml"))
    assert context.peer_as_service_user(_cfg(tmp_path, url)) is False


def test_not_root_never_switches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(context.os, "geteuid", lambda: 1000)
    monkeypatch.delenv("E2A_CONFIG", raising=False)
    assert context.peer_as_service_user(_cfg(tmp_path, "postgresql:///e2a")) is False
