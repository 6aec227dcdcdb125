"""Identifiers: a kind prefix and 128 random bits, e.g. ``msg_<32 hex>``."""

from __future__ import annotations

import secrets

PREFIXES = frozenset({"usr", "key", "dom", "ag", "msg", "evt", "wh", "whd", "sec", "conv", "ws",
                      "lct"})


def new_id(prefix: str) -> str:
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    return f"{prefix}_{secrets.token_hex(16)}"
