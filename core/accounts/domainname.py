"""Mail domain names as users type them, turned into the one form we store.

The stored form is what DNS and Postfix use: lowercase ASCII, internationalized
labels as A-labels (``bücher.example`` -> ``xn--bcher-kva.example``), no
trailing dot. Host names only: letters, digits and inner hyphens per label, at
least two labels, and a last label that is not all digits, which also turns
away IP addresses in every spelling (``10.0.0.1``, ``0x7f.1``, ``2130706433``).
"""

from __future__ import annotations

import ipaddress
import re

import idna

MAX_LENGTH = 253  # the longest name DNS carries, without the trailing dot
MAX_LABEL = 63
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")


class DomainNameError(ValueError):
    """Not a domain name we accept; str() says why."""


def normalize(value: str) -> str:
    """The stored form of ``value``, or DomainNameError."""
    name = value.strip().lower()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise DomainNameError("domain is empty")
    if len(name) > 4 * MAX_LENGTH:  # refuse before any IDNA work on huge input
        raise DomainNameError("domain is too long")
    if _is_ip_literal(name):
        raise DomainNameError("an IP address is not a domain name")
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise DomainNameError(f"not a valid internationalized domain name: {exc}") from None
    labels = name.split(".")
    if len(labels) < 2:
        raise DomainNameError("domain needs at least two labels, such as example.com")
    for label in labels:
        if not label:
            raise DomainNameError("domain has an empty label")
        if len(label) > MAX_LABEL:
            raise DomainNameError(f"a label is longer than {MAX_LABEL} characters")
        if not _LABEL.match(label):
            raise DomainNameError(
                "labels hold letters, digits and inner hyphens only")
        if label.startswith("xn--"):
            _check_a_label(label)
    if labels[-1].isdigit():
        raise DomainNameError("an IP address is not a domain name")
    if len(name) > MAX_LENGTH:
        raise DomainNameError(f"domain is longer than {MAX_LENGTH} characters")
    return name


def is_within(name: str, parent: str) -> bool:
    """``name`` is ``parent`` or a name under it (both in stored form)."""
    return bool(parent) and (name == parent or name.endswith("." + parent))


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False
    return True


def _check_a_label(label: str) -> None:
    try:
        idna.decode(label)
    except (idna.IDNAError, UnicodeError):
        raise DomainNameError(f"{label} is not a valid internationalized label") from None
