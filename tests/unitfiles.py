"""Reading systemd unit files the way the tests need them: sections of
``Key=Value`` lines, a key possibly repeated (systemd appends)."""

from __future__ import annotations

from pathlib import Path

UNIT_DIR = Path(__file__).resolve().parent.parent / "systemd"
SERVICES = ("milter", "policy", "filter", "api", "worker")


def parse(path: Path) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def service(name: str, unit_dir: Path = UNIT_DIR) -> dict[str, list[str]]:
    """The [Service] section of e2a-NAME.service."""
    return parse(unit_dir / f"e2a-{name}.service")["Service"]


def environment_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines of an EnvironmentFile (comments and blanks skipped)."""
    env: dict[str, str] = {}
    if not path.exists():
        return env
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip().strip('"')
    return env
