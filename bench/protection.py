"""bench/protection: how fast the protection engine scores mail.

    bench/protection [--rounds 50] [--scale 1]

Scores the golden corpus (tests/fixtures/protection: inbound messages with
the inbound screening, outbound ones with the data-loss guard) ``--rounds``
times in this one process and prints, per direction and in total, the CPU
milliseconds per KB of raw message and messages per second: once for the
scan alone (messages parsed beforehand, as the milter and the filter hand
over a parsed message) and once for parse + scan. ``--scale K`` repeats each
message's body K times first, to show the cost grows linearly with size.
The goal is well under 1 ms per KB.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

from e2a.core.protection import inbound, outbound, parts

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "protection"


def load(direction: str, scale: int) -> list[bytes]:
    out = []
    for path in sorted((CORPUS / direction).glob("*.eml")):
        raw = path.read_bytes()
        if scale > 1:
            head, sep, body = raw.partition(b"\r\n\r\n")
            if body.startswith(b"--") or b"boundary=" in head:  # multipart: keep it whole
                out.append(raw)
                continue
            raw = head + sep + body * scale
        out.append(raw)
    return out


def measure(messages: list[bytes], scan: Callable[[EmailMessage], object], rounds: int,
            parse_too: bool) -> tuple[float, int, int]:
    """(CPU seconds, messages scored, bytes scored)."""
    parsed = [parts.parse(raw) for raw in messages]
    started = time.process_time()
    for _ in range(rounds):
        if parse_too:
            for raw in messages:
                scan(parts.parse(raw))
        else:
            for msg in parsed:
                scan(msg)
    return (time.process_time() - started, rounds * len(messages),
            rounds * sum(len(raw) for raw in messages))


def line(what: str, seconds: float, count: int, size: int) -> str:
    return (f"{what:32} {seconds * 1000 / (size / 1024):8.3f} ms/KB "
            f"{count / seconds:9.0f} msg/s  ({count} messages, {size / 1024:.0f} KB, "
            f"{seconds:.2f} s CPU)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--scale", type=int, default=1)
    args = parser.parse_args()
    inbound_mail = load("inbound", args.scale)
    outbound_mail = load("outbound", args.scale)
    print(f"corpus: {len(inbound_mail)} inbound, {len(outbound_mail)} outbound messages, "
          f"scale {args.scale}, {args.rounds} rounds")
    for parse_too in (False, True):
        label = "parse + scan" if parse_too else "scan"
        total = [0.0, 0, 0]
        for direction, mail, scan in (("inbound", inbound_mail, inbound.scan_inbound),
                                      ("outbound", outbound_mail, outbound.scan_outbound)):
            seconds, count, size = measure(mail, scan, args.rounds, parse_too)
            print(line(f"{direction} {label}", seconds, count, size))
            total = [total[0] + seconds, total[1] + count, total[2] + size]
        print(line(f"all {label}", total[0], int(total[1]), int(total[2])))


if __name__ == "__main__":
    main()
