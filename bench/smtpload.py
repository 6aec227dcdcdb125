"""A small SMTP load client: N sessions sending given messages, for the
signed workload smtp-source cannot send (it only generates its own bodies).

Each session sends its share one transaction after another on one
connection, waiting for each reply, as smtp-source does without -P. Any
reply other than the expected one fails the run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence


class SmtpLoadError(Exception):
    pass


async def _reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise SmtpLoadError("connection closed")
        lines.append(line)
        if line[3:4] != b"-":
            return int(line[:3]), b"".join(lines)


async def _expect(reader: asyncio.StreamReader, code: int, step: str) -> None:
    got, text = await _reply(reader)
    if got != code:
        raise SmtpLoadError(f"{step}: {text.decode(errors='replace').strip()}")


def _stuffed(raw: bytes) -> bytes:
    """The DATA payload: CRLF lines, leading dots doubled, the final dot."""
    body = raw.replace(b"\r\n.", b"\r\n..")
    if body.startswith(b"."):
        body = b"." + body
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


async def _session(host: str, port: int, mail_from: str, rcpt: str,
                   todo: list[bytes]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        await _expect(reader, 220, "greeting")
        writer.write(b"EHLO load.bench.example\r\n")
        await _expect(reader, 250, "EHLO")
        while todo:
            data = todo.pop()
            writer.write(f"MAIL FROM:<{mail_from}>\r\n".encode())
            await _expect(reader, 250, "MAIL FROM")
            writer.write(f"RCPT TO:<{rcpt}>\r\n".encode())
            await _expect(reader, 250, "RCPT TO")
            writer.write(b"DATA\r\n")
            await _expect(reader, 354, "DATA")
            writer.write(data)
            await _expect(reader, 250, "end of data")
        writer.write(b"QUIT\r\n")
        await writer.drain()
    finally:
        writer.close()


async def _run(host: str, port: int, mail_from: str, rcpt: str, messages: Sequence[bytes],
               sessions: int) -> None:
    todo = [_stuffed(m) for m in reversed(messages)]  # pop() sends them in order
    await asyncio.gather(*(_session(host, port, mail_from, rcpt, todo)
                           for _ in range(sessions)))


def send(port: int, mail_from: str, rcpt: str, messages: Sequence[bytes], *, sessions: int,
         timeout: float, host: str = "127.0.0.1") -> float:
    """Seconds it took to have every message accepted."""
    started = time.monotonic()
    asyncio.run(asyncio.wait_for(_run(host, port, mail_from, rcpt, messages, sessions),
                                 timeout))
    return time.monotonic() - started
