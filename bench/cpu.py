"""CPU time per process group, from /proc, for the benches.

A group is the process trees under some root PIDs (a Postfix master, the
postmaster, a service's pidfile). Each process counts utime+stime plus
cutime+cstime: the CPU of children it has reaped, so an smtpd that exits
between two snapshots still counts (in its master's total) and nothing is
counted twice. Only our own trees are read: other engineers' processes on
the same machine are in no group.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
GROUPS = ("Postfix", "milter", "policy", "PostgreSQL", "worker", "filter", "api", "others")


def _stats() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, total ticks) for every process now."""
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        # fields[0] is state (stat field 3): ppid is field 4, utime..cstime 14..17.
        ppid = int(fields[1])
        out[int(entry.name)] = (ppid, sum(int(f) for f in fields[11:15]))
    return out


def pidfile(path: Path) -> int | None:
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class Meter:
    """Snapshots of CPU ticks per group; ``roots`` maps group -> root PIDs."""

    def __init__(self, roots: Mapping[str, Iterable[int | None]]) -> None:
        self.roots = {group: [p for p in pids if p] for group, pids in roots.items()}

    def snapshot(self) -> dict[str, int]:
        stats = _stats()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in stats.items():
            children.setdefault(ppid, []).append(pid)
        totals = dict.fromkeys(self.roots, 0)
        seen: set[int] = set()
        for group, roots in self.roots.items():
            todo = [p for p in roots if p in stats]
            while todo:
                pid = todo.pop()
                if pid in seen:
                    continue
                seen.add(pid)
                totals[group] += stats[pid][1]
                todo.extend(children.get(pid, []))
        return totals


def per_message_ms(before: Mapping[str, int], after: Mapping[str, int],
                   messages: int) -> dict[str, float]:
    return {g: (after[g] - before[g]) * 1000 / TICKS / messages for g in before}


def table_line(label: str, ms: Mapping[str, float], groups: Iterable[str] = GROUPS) -> str:
    cells = "".join(f" {ms.get(g, 0.0):>{max(10, len(g))}.2f}" for g in groups)
    return f"{label:34}{cells} {sum(ms.values()):>8.2f}"


def table_header(groups: Iterable[str] = GROUPS) -> str:
    """``groups``: the columns, GROUPS unless a bench meters others too."""
    return (f"{'CPU ms per message':34}" + "".join(f" {g:>10}" for g in groups)
            + f" {'total':>8}")
