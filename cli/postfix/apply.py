"""Carrying out a plan with postconf: on a staging copy for the diff, for real
after a backup."""

from __future__ import annotations

import difflib
import shutil
import tempfile
import time
from pathlib import Path

from e2a.cli.postfix.plan import Change
from e2a.cli.postfix.postconf import Postconf


def apply(pc: Postconf, changes: list[Change]) -> None:
    """The changes, through postconf, into ``pc``'s main.cf and master.cf."""
    main = [c for c in changes if c.file == "main.cf"]
    master = [c for c in changes if c.file == "master.cf"]
    pc.set_params({c.name: c.target for c in main if c.target is not None})
    pc.remove_params([c.name for c in main if c.target is None])
    pc.remove_services([c.name for c in master if c.target is None])
    pc.set_services({c.name: c.target for c in master if c.target is not None})


def preview(pc: Postconf, changes: list[Change]) -> str:
    """A unified diff of main.cf and master.cf as the changes would leave
    them: postconf itself edits copies, so the diff is exactly what it will do."""
    with tempfile.TemporaryDirectory(prefix="e2a-postconf-") as tmp:
        staged = Postconf(tmp)
        for src, dest in ((pc.main_cf, staged.main_cf), (pc.master_cf, staged.master_cf)):
            shutil.copyfile(src, dest)
        apply(staged, changes)
        return "".join(_diff(src, dest) for src, dest in
                       ((pc.main_cf, staged.main_cf), (pc.master_cf, staged.master_cf)))


def _diff(before: Path, after: Path) -> str:
    return "".join(difflib.unified_diff(
        before.read_text().splitlines(keepends=True), after.read_text().splitlines(keepends=True),
        fromfile=str(before), tofile=f"{before} (after e2a)"))


def backup(pc: Postconf) -> list[str]:
    """Copies of main.cf and master.cf beside them, named by the UTC time."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    made = []
    for src in (pc.main_cf, pc.master_cf):
        dest, n = src.with_name(f"{src.name}.e2a-backup-{stamp}"), 1
        while dest.exists():
            dest, n = src.with_name(f"{src.name}.e2a-backup-{stamp}.{n}"), n + 1
        shutil.copy2(src, dest)
        made.append(str(dest))
    return made
