"""The CLI's own settings: ``~/.config/e2a/config.toml`` (or under
$XDG_CONFIG_HOME), written by ``e2a login`` and ``e2a config set``.

It holds an API key, so it is the user's alone: the directory is 0700, the
file 0600 and replaced atomically, never rewritten in place where another
user could read a half-written copy. Only flat string keys are kept, which
a TOML basic string (a JSON string is one) writes safely.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import click

KEYS = ("url", "api_key", "agent", "shared_domain")
MAX_BYTES = 64 * 1024  # a settings file, not a data file


def path(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "e2a" / "config.toml"


def load(file: Path | None = None) -> dict[str, str]:
    """The stored settings; {} when there is no file. A broken file is a
    one-line error, not a traceback."""
    file = file or path()
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise click.ClickException(f"cannot read {file}: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise click.ClickException(f"{file} is larger than {MAX_BYTES} bytes")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise click.ClickException(f"{file} is not valid TOML: {exc}") from None
    return {k: v for k, v in data.items() if k in KEYS and isinstance(v, str)}


def render(values: dict[str, str]) -> str:
    lines = ["# Written by `e2a login` / `e2a config set`."]
    lines += [f"{k} = {json.dumps(values[k])}" for k in KEYS if values.get(k)]
    return "\n".join(lines) + "\n"


def save(values: dict[str, str], file: Path | None = None) -> Path:
    file = file or path()
    file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = file.with_name(f".{file.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(render(values))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, file)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return file
