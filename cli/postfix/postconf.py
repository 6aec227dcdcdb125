"""Postfix's own configuration tool, run against one configuration directory.

Every read and every change of main.cf and master.cf goes through
``postconf``: it knows Postfix's syntax (continuation lines, comments,
defaults) and edits the files in place, leaving every line it does not touch
as it was.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

POSTCONF = "postconf"
TIMEOUT = 60.0


class PostconfError(RuntimeError):
    """postconf failed; str() is its complaint, one line."""


class Postconf:
    def __init__(self, config_directory: str | os.PathLike[str]) -> None:
        # postconf -c with a relative directory would resolve it against our
        # cwd, then Postfix's daemons against theirs.
        self.directory = Path(config_directory).resolve()

    @property
    def main_cf(self) -> Path:
        return self.directory / "main.cf"

    @property
    def master_cf(self) -> Path:
        return self.directory / "master.cf"

    def _run(self, *args: str) -> str:
        # MAIL_CONFIG would override -c for some Postfix commands.
        env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
        try:
            done = subprocess.run([POSTCONF, "-c", str(self.directory), *args], check=False,
                                  capture_output=True, text=True, env=env, cwd="/",
                                  timeout=TIMEOUT)
        except FileNotFoundError:
            raise PostconfError("postconf not found: is Postfix installed?") from None
        # Warnings (an unused parameter, say) go to stderr with status 0.
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            raise PostconfError(lines[-1] if lines else f"postconf {' '.join(args)} failed")
        return done.stdout

    # -- main.cf --------------------------------------------------------

    def explicit(self) -> dict[str, str]:
        """Parameters main.cf sets, raw (``$name`` unexpanded, continuation
        lines joined), as ``postconf -n`` shows them."""
        params = _name_values(self._run("-n"))
        # -c makes postconf report config_directory as if main.cf set it.
        if params.get("config_directory") == str(self.directory):
            params.pop("config_directory")
        return params

    def effective(self, *names: str) -> dict[str, str]:
        """Raw values in force: main.cf's, else Postfix's defaults."""
        return _name_values(self._run(*names)) if names else {}

    def defaults(self, *names: str) -> dict[str, str]:
        return _name_values(self._run("-d", *names)) if names else {}

    def set_params(self, values: dict[str, str]) -> None:
        if values:
            self._run("-e", *(f"{name}={value}" for name, value in values.items()))

    def remove_params(self, names: list[str]) -> None:
        if names:
            self._run("-X", *names)

    # -- master.cf ------------------------------------------------------

    def services(self) -> dict[str, str]:
        """master.cf's services as ``{"name/type": "the entry on one line"}``."""
        services: dict[str, str] = {}
        for line in self._run("-M").splitlines():
            fields = line.split()
            if len(fields) >= 8:
                services[f"{fields[0]}/{fields[1]}"] = line.strip()
        return services

    def set_services(self, entries: dict[str, str]) -> None:
        if entries:
            self._run("-M", *(f"{key}={entry}" for key, entry in entries.items()))

    def remove_services(self, keys: list[str]) -> None:
        if keys:
            self._run("-MX", *keys)


def _name_values(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(" = ")
        if sep:
            values[name.strip()] = value
        elif line.endswith(" ="):
            values[line[:-2].strip()] = ""
    return values


def same_entry(a: str | None, b: str | None) -> bool:
    """Two master.cf entries alike but for spacing (postconf realigns columns)."""
    if a is None or b is None:
        return a is b
    return a.split() == b.split()


def field(entry: str, index: int) -> str:
    """One column of a master.cf entry (0 service, 1 type, ... 4 chroot, 7 command)."""
    fields = entry.split()
    return fields[index] if index < len(fields) else ""
