"""The Debian package keeps up with the code: every library the code needs is
a Debian package it depends on, every module and data file gets installed,
and the versions agree. (Building and installing it: tests/system/test_deb_install.py.)"""

from __future__ import annotations

import ast
import configparser
import fnmatch
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Python distribution (setup.cfg install_requires) -> Debian 12 package.
DISTRIBUTIONS = {
    "pymilter": "python3-milter", "dkimpy": "python3-dkim", "pyspf": "python3-spf",
    "psycopg": "python3-psycopg", "psycopg-pool": "python3-psycopg-pool",
    "falcon": "python3-falcon", "gunicorn": "python3-gunicorn", "gevent": "python3-gevent",
    "gevent-websocket": "python3-gevent-websocket", "requests": "python3-requests",
    "click": "python3-click", "dnspython": "python3-dnspython",
    "authheaders": "python3-authheaders", "aiosmtpd": "python3-aiosmtpd",
    "jinja2": "python3-jinja2", "prometheus-client": "python3-prometheus-client",
    "cryptography": "python3-cryptography", "idna": "python3-idna",
    "publicsuffix2": "python3-publicsuffix2", "urllib3": "python3-urllib3",
    "websocket-client": "python3-websocket",
}
# Top-level module the code imports -> Debian 12 package.
MODULES = {
    "Milter": "python3-milter", "milter": "python3-milter", "dkim": "python3-dkim",
    "spf": "python3-spf", "psycopg": "python3-psycopg", "psycopg_pool": "python3-psycopg-pool",
    "falcon": "python3-falcon", "gunicorn": "python3-gunicorn", "gevent": "python3-gevent",
    "geventwebsocket": "python3-gevent-websocket", "requests": "python3-requests",
    "click": "python3-click", "dns": "python3-dnspython", "authheaders": "python3-authheaders",
    "aiosmtpd": "python3-aiosmtpd", "jinja2": "python3-jinja2",
    "prometheus_client": "python3-prometheus-client", "cryptography": "python3-cryptography",
    "idna": "python3-idna", "publicsuffix2": "python3-publicsuffix2",
    "urllib3": "python3-urllib3", "websocket": "python3-websocket",
}


def setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    return parser


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def package_dirs() -> dict[str, Path]:
    """Import name -> directory, from setup.cfg's package_dir mapping."""
    mapping = {}
    for line in _lines(setup_cfg()["options"]["package_dir"]):
        name, _, directory = line.partition("=")
        mapping[name.strip()] = REPO / directory.strip()
    return mapping


def depends() -> set[str]:
    control = (REPO / "debian" / "control").read_text()
    binary = control.split("\nPackage: e2a-postfix\n", 1)[1]
    field = re.search(r"^Depends:(.*?)^\S", binary, re.S | re.M)
    assert field is not None
    names = (item.strip().split()[0] for item in field.group(1).split(",") if item.strip())
    return {n for n in names if not n.startswith("#") and not n.startswith("$")}


def test_every_requirement_is_a_debian_dependency() -> None:
    wanted = depends()
    for requirement in _lines(setup_cfg()["options"]["install_requires"]):
        name = re.split(r"[<>=!~ ;\[]", requirement, maxsplit=1)[0].lower()
        assert name in DISTRIBUTIONS, (
            f"{name}: which Debian package provides it? add it here and to debian/control")
        assert DISTRIBUTIONS[name] in wanted, f"debian/control lacks {DISTRIBUTIONS[name]}"


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_every_library_the_code_imports_is_a_debian_dependency() -> None:
    wanted = depends()
    for directory in package_dirs().values():
        for path in directory.rglob("*.py"):
            for module in _imports(path) - set(sys.stdlib_module_names) - {"e2a"}:
                assert module in MODULES, (
                    f"{path.relative_to(REPO)} imports {module}: which Debian package "
                    "provides it? add it here, to debian/control and to install_requires")
                assert MODULES[module] in wanted, f"debian/control lacks {MODULES[module]}"


def test_every_package_directory_is_listed_in_setup_cfg() -> None:
    listed = set(_lines(setup_cfg()["options"]["packages"]))
    for name, directory in package_dirs().items():
        for init in directory.rglob("__init__.py"):
            sub = init.parent.relative_to(directory).parts
            assert ".".join((name, *sub)) in listed, f"setup.cfg packages lacks {init.parent}"


def test_every_data_file_is_covered_by_package_data() -> None:
    patterns: dict[str, list[str]] = {}
    for name, value in setup_cfg()["options.package_data"].items():
        # As setuptools reads it: one pattern per line when the value has
        # several lines (commas are then part of a pattern), else commas.
        value = value.strip()
        split = value.splitlines() if "\n" in value else value.split(",")
        patterns[name] = [p.strip() for p in split if p.strip()]
    for name, directory in package_dirs().items():
        for path in directory.rglob("*"):
            if path.is_dir() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
                continue
            # A pattern of the file's package, or of a package above it with
            # the path below (e2a.api = templates/*.html).
            parts = path.relative_to(directory).parts
            assert any(fnmatch.fnmatch("/".join(parts[i:]), p)
                       for i in range(len(parts))
                       for p in patterns.get(".".join((name, *parts[:i])), [])), (
                f"{path.relative_to(REPO)} would be missing from the package: "
                "add it to [options.package_data]")


def test_the_package_version_is_the_projects() -> None:
    first = (REPO / "debian" / "changelog").read_text().splitlines()[0]
    version = re.match(r"e2a-postfix \(([^)]+)\)", first)
    assert version is not None
    assert version.group(1) == setup_cfg()["metadata"]["version"]
