"""What ``e2a postfix install`` changed, per Postfix configuration directory.

Uninstall reads it to take out exactly what install put in and to give back
the operator's own values; a second install reads it to tell our values from
theirs. One JSON file holds the records of every configuration directory
(``postfix -c`` instances), keyed by its absolute path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path("/var/lib/e2a/postfix-install.json")
VERSION = 1

# One directory's record:
#   {"params":   {name: {"before": str|None, "after": str, "added": [[word, ...], ...]}},
#    "services": {"name/type": {"before": str|None, "after": str}},
#    "backups":  [path, ...]}
Record = dict[str, Any]


class RecordError(RuntimeError):
    pass


class Records:
    def __init__(self, path: str | os.PathLike[str] = DEFAULT_PATH) -> None:
        self.path = Path(path)

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"version": VERSION, "postfix": {}}
        except (OSError, ValueError) as exc:
            raise RecordError(f"{self.path}: unreadable: {exc}") from None
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise RecordError(f"{self.path}: not a version {VERSION} install record")
        return data

    def get(self, directory: Path) -> Record | None:
        return self._load()["postfix"].get(str(directory))

    def directories(self) -> list[Path]:
        return [Path(d) for d in sorted(self._load()["postfix"])]

    def put(self, directory: Path, record: Record | None) -> None:
        """Store ``record`` for ``directory``; None forgets it. Atomic."""
        data = self._load()
        if record is None:
            data["postfix"].pop(str(directory), None)
        else:
            data["postfix"][str(directory)] = record
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.path)
