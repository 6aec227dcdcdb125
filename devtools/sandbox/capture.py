"""The capture SMTP server: the sandbox's stand-in for the internet.

Postfix relays everything that leaves the sandbox here. Each message lands as
``<timestamp>-<n>.eml`` holding the exact bytes received (CRLF line ends,
dot-stuffing undone), next to ``<timestamp>-<n>.json`` with the envelope.
The ``.json`` is written first and the ``.eml`` appears by rename, so a
reader that sees a ``.eml`` always finds it complete and its envelope there.

Like a real peer it can refuse: a recipient whose local part starts with
``bounce-`` (bounce-me, bounce-42) gets 550 at RCPT (Postfix then writes the
DSN itself), one whose local part starts with ``defer-`` gets 450 (the
message stays queued), so a test picks each recipient's fate by its name.

Run as ``python -m sandbox.capture --dir D --listen 127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.message
import email.policy
import itertools
import json
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger("e2a.sandbox.capture")

# Postfix refuses a next hop that greets with its own myhostname, so the
# stand-in internet has a name of its own.
DEFAULT_HOSTNAME = "capture.sandbox.test"


@dataclass(frozen=True)
class Captured:
    path: Path
    data: bytes
    mail_from: str
    rcpt_tos: list[str]

    @property
    def message(self) -> email.message.EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        return parsed


class Store:
    """The capture directory: writes messages, lists them back."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._seq = itertools.count(1)

    def save(self, data: bytes, mail_from: str, rcpt_tos: list[str]) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
        stem = f"{stamp}-{next(self._seq)}"
        envelope = {"mail_from": mail_from, "rcpt_tos": rcpt_tos}
        (self.directory / f"{stem}.json").write_text(json.dumps(envelope) + "\n")
        partial = self.directory / f".{stem}.eml.partial"
        partial.write_bytes(data)
        final = self.directory / f"{stem}.eml"
        partial.replace(final)
        return final

    def messages(self) -> list[Captured]:
        """Every captured message, oldest first."""
        found = []
        for path in sorted(self.directory.glob("*.eml")):
            envelope = json.loads(path.with_suffix(".json").read_text())
            found.append(Captured(path, path.read_bytes(), envelope["mail_from"],
                                  envelope["rcpt_tos"]))
        return found

    def wait_for(self, match: Callable[[Captured], bool], timeout: float = 30.0) -> Captured:
        """The first captured message ``match`` accepts, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            for captured in self.messages():
                if match(captured):
                    return captured
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no matching message in {self.directory} after {timeout}s")
            time.sleep(0.1)


# Starts of local parts the stand-in internet refuses, and how.
REFUSALS = {
    "bounce-": "550 5.1.1 <{address}>: Recipient address rejected: the sandbox bounces it",
    "defer-": "450 4.2.0 <{address}>: Recipient address rejected: the sandbox defers it",
}


def refusal(address: str) -> str | None:
    """The RCPT reply for ``address`` when the sandbox refuses it."""
    local = address.rpartition("@")[0].lower()
    found = next((r for prefix, r in REFUSALS.items() if local.startswith(prefix)), None)
    return found.format(address=address) if found else None


class Handler:
    """aiosmtpd handler: accept every recipient but REFUSALS, store every message."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        refused = refusal(address)
        if refused:
            return refused
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session,
                          envelope: Envelope) -> str:
        data = envelope.original_content or b""
        path = self.store.save(data, envelope.mail_from or "", list(envelope.rcpt_tos))
        log.info("captured %s (%d bytes, %d recipients)", path.name, len(data),
                 len(envelope.rcpt_tos))
        return "250 2.0.0 captured"


async def serve(directory: Path, host: str, port: int,
                hostname: str = DEFAULT_HOSTNAME, stop: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set (or SIGTERM/SIGINT when no event is given)."""
    loop = asyncio.get_running_loop()
    handler = Handler(Store(directory))
    server = await loop.create_server(
        lambda: SMTP(handler, hostname=hostname, enable_SMTPUTF8=True), host, port)
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    log.info("capture listening on %s:%d as %s, writing to %s", host, port, hostname, directory)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
    log.info("capture stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--listen", required=True, help="host:port")
    parser.add_argument("--hostname", default=DEFAULT_HOSTNAME)
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    asyncio.run(serve(args.dir, host, int(port), args.hostname))


if __name__ == "__main__":
    main()
