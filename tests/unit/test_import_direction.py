"""The direction of imports (docs/ARCHITECTURE "the house"): core imports no
process package, process packages never import each other, and only the CLI
may start any of them.

Walks the source tree with ast (nothing is imported), so a new edge fails here
before it tangles the layers. Imports inside functions count too: a lazy
import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# The process packages: one per `e2a serve NAME`.
PROCESSES = ("milter", "policy", "filter", "api", "worker")
# Package directory → its import name.
PACKAGES = {name: f"e2a.{name}" for name in ("core", *PROCESSES, "cli")}


def _allowed(importer: str, imported: str) -> bool:
    """May package `importer` (first part below e2a) import `imported`?"""
    if importer == imported or imported in ("core", "sql", "postfix"):
        return True
    if importer == "cli":
        # `e2a serve NAME` starts each process; `e2a pending` talks to the API
        # over HTTP, not by import.
        return imported in PROCESSES
    return False


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["e2a", *parts])


def _imports(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    tree = ast.parse(path.read_text(), str(path))
    here = _module_name(path).split(".")
    if path.name != "__init__.py":
        here = here[:-1]  # the package a relative import starts from
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.append((node.lineno, module))
    return found


def edges() -> list[str]:
    """Every import that goes the wrong way, as 'file:line imports module'."""
    wrong = []
    for directory in PACKAGES:
        for path in sorted((REPO / directory).rglob("*.py")):
            importer = directory
            for line, module in _imports(path):
                parts = module.split(".")
                if parts[0] != "e2a" or len(parts) < 2:
                    continue
                if not _allowed(importer, parts[1]):
                    wrong.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    return wrong


def test_no_package_imports_upward_or_sideways() -> None:
    assert edges() == []


def test_the_sandbox_is_not_part_of_the_product() -> None:
    # devtools/ is the checkout's, never installed: nothing installed imports it.
    for directory in PACKAGES:
        for path in (REPO / directory).rglob("*.py"):
            for line, module in _imports(path):
                if module.split(".")[0] == "sandbox":
                    # `e2a dev` imports it lazily, from the checkout, on purpose.
                    assert path.relative_to(REPO).as_posix() == "cli/dev.py", (
                        f"{path.relative_to(REPO)}:{line} imports the sandbox")


def test_the_walk_sees_a_wrong_edge() -> None:
    # The checker itself: a core module importing a process package is caught.
    assert not _allowed("core", "policy")
    assert not _allowed("api", "worker")
    assert not _allowed("milter", "cli")
    assert _allowed("cli", "filter")
    assert _allowed("filter", "core")
