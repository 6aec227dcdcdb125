"""The Postfix configuration e2a needs, as templated main.cf / master.cf fragments.

Placeholders are written ``{{name}}``: single braces are taken by Postfix's
own milter macro names (``{daemon_name}``), which must pass through untouched.
"""

from __future__ import annotations

import re
from importlib import resources

PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


class FragmentError(ValueError):
    """A fragment cannot be rendered: a value is missing or unsafe."""


def template(name: str) -> str:
    """The raw text of a fragment shipped in this package (``main.cf``, ``master.cf``)."""
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def placeholders(name: str) -> set[str]:
    """The placeholder names a fragment needs."""
    return set(PLACEHOLDER.findall(template(name)))


def render(name: str, **values: str) -> str:
    """Fill every ``{{placeholder}}`` of fragment ``name``; extra values are ignored.

    A missing value would leave Postfix with a literal ``{{...}}`` it reports
    only at the first mail, and a newline in a value would smuggle in a
    parameter or service, so both fail here."""
    text = template(name)
    missing = sorted(set(PLACEHOLDER.findall(text)) - values.keys())
    if missing:
        raise FragmentError(f"postfix/{name}: no value for {', '.join(missing)}")
    for key, value in values.items():
        if not isinstance(value, str):
            raise FragmentError(f"postfix/{name}: {key} must be a str, got {value!r}")
        if "\n" in value or "\r" in value:
            raise FragmentError(f"postfix/{name}: {key} must be one line")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def _logical_lines(text: str) -> list[str]:
    """Postfix's own rules: ``#`` lines and blank lines are dropped, a line
    starting with whitespace continues the previous one."""
    lines: list[str] = []
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if raw[0].isspace() and lines:
            lines[-1] += " " + raw.strip()
        else:
            lines.append(raw.strip())
    return lines


def parse_main_cf(text: str) -> dict[str, str]:
    """``name = value`` lines of a main.cf text, in order."""
    params: dict[str, str] = {}
    for line in _logical_lines(text):
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise FragmentError(f"not a main.cf parameter line: {line!r}")
        params[name.strip()] = value.strip()
    return params


def main_cf_params(**values: str) -> dict[str, str]:
    """The main.cf parameters e2a needs, rendered with ``values``."""
    return parse_main_cf(render("main.cf", **values))


def master_cf_services(**values: str) -> dict[str, str]:
    """e2a's master.cf services, rendered, as ``{"name/type": "one-line entry"}``:
    the form ``postconf -M name/type="entry"`` takes."""
    services: dict[str, str] = {}
    for line in _logical_lines(render("master.cf", **values)):
        fields = line.split()
        if len(fields) < 8:
            raise FragmentError(f"not a master.cf service entry: {line!r}")
        services[f"{fields[0]}/{fields[1]}"] = line
    return services
