"""The statements a piece of code sends to the real test PostgreSQL, from
libpq's own trace of the wire protocol (PQtrace): what reaches the server,
BEGIN and COMMIT included, each a round trip. A test hands ``StatementLog``
to the code under test in place of its pool and pins how many statements
one operation costs."""

from __future__ import annotations

import ctypes
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import pq
from psycopg.pq import _pq_ctypes as libpq
from psycopg_pool import ConnectionPool

_libc = ctypes.CDLL(None)
_libc.fclose.argtypes = [libpq.FILE_ptr]

# One traced protocol message: direction, length, type, the rest.
_MESSAGE = re.compile(r"^([FB])\t\d+\t(\w+)\t?(.*)\Z", re.DOTALL)
_PARSE = re.compile(r'^ "([^"]*)" "(.*)" \d+( NNNN)*\Z', re.DOTALL)
_BIND = re.compile(r'^ "[^"]*" "([^"]*)"')
_QUERY = re.compile(r'^ "(.*)"\Z', re.DOTALL)


def statements_in(trace: str) -> list[str]:
    """The SQL of each statement the client executed, in order, from a
    trace written with SUPPRESS_TIMESTAMPS | REGRESS_MODE."""
    prepared: dict[str, str] = {}
    bound = ""
    found: list[str] = []
    for part in re.split(r"\n(?=[FB]\t\d+\t)", trace.strip()):
        message = _MESSAGE.match(part)
        if message is None or message.group(1) != "F":
            continue
        kind, rest = message.group(2), message.group(3)
        if kind == "Query":
            query = _QUERY.match(rest)
            found.append(" ".join((query.group(1) if query else rest).split()))
        elif kind == "Parse":
            parse = _PARSE.match(rest)
            if parse:
                prepared[parse.group(1)] = " ".join(parse.group(2).split())
        elif kind == "Bind":
            bind = _BIND.match(rest)
            bound = prepared.get(bind.group(1), "") if bind else ""
        elif kind == "Execute":
            found.append(bound)
    return found


class StatementLog:
    """A stand-in for a ConnectionPool that records every statement sent on
    the connections taken from it (``statements``)."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.statements: list[str] = []

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[psycopg.Connection]:
        with self.pool.connection(timeout=timeout) as conn, tempfile.TemporaryFile() as out:
            stream = libpq.fdopen(os.dup(out.fileno()), b"w")
            libpq.PQtrace(conn.pgconn._pgconn_ptr, stream)  # type: ignore[attr-defined]
            conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
            try:
                yield conn
            finally:
                conn.pgconn.untrace()
                _libc.fclose(stream)
                out.seek(0)
                self.statements += statements_in(out.read().decode("utf-8", "replace"))

    def clear(self) -> None:
        self.statements.clear()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pool, name)

    def __len__(self) -> int:
        return len(self.statements)

    def listing(self) -> str:
        """One statement a line, shortened: for an assertion's message."""
        return "\n".join(s[:160] for s in self.statements)
