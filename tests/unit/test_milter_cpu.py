"""CPU-time guard: hostile header sections through the real milter handler
(driven byte for byte as Postfix sends them, real DNS zones, real database)
each cost well under a second of CPU, and each is answered for good: stored
or refused with a 5xx, never 451. The header limit that bounds them."""

from __future__ import annotations

import resource
import secrets
from collections.abc import Callable
from email import policy
from typing import Any

import Milter
import pytest
from mailworld import SENDER_NET_IP, eml
from milterdriver import agent_of_a_new_owner, feed

from e2a.core.db import single_connection
from e2a.core.mail import headers

AGENT = "cpu@agents.test.example"
# Generous: the work is well under a second alone (0.65 s for the largest,
# huge_subject_of_encoded_words); late in the whole suite, with its heap
# alive, the same work measured 1.3 s. This only has to tell linear from
# quadratic, which costs tens of seconds here.
CPU_BUDGET = 2.0

pytestmark = pytest.mark.usefixtures("own_heap")


@pytest.fixture(scope="module")
def agent(cfg, milter_world) -> dict[str, Any]:
    return agent_of_a_new_owner(cfg, "cpu")


def thread_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime


def message(extra: bytes, tag: str) -> bytes:
    return (b"From: alice@good.example\r\nTo: " + AGENT.encode() + b"\r\n" + extra +
            f"Message-ID: <cpu-{tag}@fixtures.example>\r\n\r\nhello\r\n".encode())


def nested_ar() -> bytes:
    depth = 49_990
    return message(b"Authentication-Results: " + b"(" * depth + b")" * depth +
                   b" mx.test.example; dkim=pass header.d=bank.example\r\n", "nested")


def signatures(count: int) -> Callable[[], bytes]:
    def build() -> bytes:
        raw = eml("dkim_pass")  # as signed: a unique envelope sender tells copies apart
        signature = raw[:raw.index(b"\r\nFrom:") + 2]
        assert signature.startswith(b"DKIM-Signature:")
        return signature * (count - 1) + raw
    return build


def wide_signature() -> bytes:
    """One signature over a published key whose h= lists 20,000 names no
    header has, above a thousand headers: dkimpy looks each name up."""
    raw = eml("dkim_pass").replace(b"<dkim_pass@", b"<dkim_wide@")
    names = b":".join(b"x%d" % i for i in range(20_000))
    signature = raw[:raw.index(b"\r\nFrom:") + 2].replace(b" h=from", b" h=" + names + b":from", 1)
    filler = b"".join(b"X-Filler-%d: v\r\n" % i for i in range(900))
    return signature + filler + raw[raw.index(b"\r\nFrom:") + 2:]


def many_headers() -> bytes:
    return message(b"".join(b"X-H: v\r\n" for _ in range(50_000)), "many")


def huge_header(name: bytes, unit: bytes, fold: bytes = b" ") -> Callable[[], bytes]:
    def build() -> bytes:
        count = 99_000 // (len(unit) + len(fold))
        value = fold.join([unit] * count)
        return message(name + b": " + value + b"\r\n", name.decode().lower())
    return build


HOSTILE: dict[str, Callable[[], bytes]] = {
    "nested_parens_authentication_results": nested_ar,
    "two_thousand_dkim_signatures": signatures(2000),
    "nine_hundred_dkim_signatures": signatures(900),
    "dkim_signature_naming_twenty_thousand_headers": wide_signature,
    "fifty_thousand_headers": many_headers,
    "huge_subject_of_encoded_words": huge_header(b"Subject", b"=?utf-8?q?a?=", b"\r\n "),
    "huge_references": huge_header(b"References", b"<a@b>", b"\r\n "),
    "huge_to": huge_header(b"Cc", b"\"a(b\" <c@d>,", b"\r\n "),
    "huge_content_type": huge_header(b"Content-Type", b"text/plain; a*0*=x''y;"),
    "huge_folded_header": huge_header(b"X-Folded", b"a", b"\r\n "),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_headers_cost_well_under_a_second(cfg, agent, name: str) -> None:
    raw = HOSTILE[name]()
    started = thread_cpu()
    queue_id = f"QCPU{secrets.token_hex(4)}"
    out = feed(raw, f"cpu-{secrets.token_hex(4)}@good.example", [AGENT],
               client_ip=SENDER_NET_IP, queue_id=queue_id)
    spent = thread_cpu() - started
    print(f"{name}: {spent:.3f} s CPU, code {out.code}, reply {out.reply}")
    assert out.code in (Milter.DISCARD, Milter.REJECT), out.reply
    if out.code == Milter.REJECT:
        assert out.reply is not None and out.reply[0].startswith("5")
    assert spent < CPU_BUDGET, f"{name}: {spent:.2f} s of CPU"
    with single_connection(cfg) as conn:
        stored = conn.execute("SELECT raw_message FROM messages WHERE queue_id = %s",
                              (queue_id,)).fetchall()
    assert len(stored) == (1 if out.code == Milter.DISCARD else 0)


def test_the_nested_forgery_is_removed_and_the_signatures_beyond_five_not_checked(
        cfg, agent) -> None:
    out = feed(nested_ar(), "alice@good.example", [AGENT], client_ip=SENDER_NET_IP,
               queue_id="QCPUNEST")
    assert out.code == Milter.DISCARD
    with single_connection(cfg) as conn:
        row = conn.execute("SELECT * FROM messages WHERE queue_id = 'QCPUNEST'").fetchone()
    assert b"dkim=pass header.d=bank.example" not in bytes(row["raw_message"])
    out = feed(signatures(900)(), f"cpu-{secrets.token_hex(4)}@good.example", [AGENT],
               queue_id="QCPU900")
    assert out.code == Milter.DISCARD
    with single_connection(cfg) as conn:
        row = conn.execute("SELECT * FROM messages WHERE queue_id = 'QCPU900'").fetchone()
    assert row["dkim"] == "pass"
    head = bytes(row["raw_message"]).split(b"\r\nDKIM-Signature:", 1)[0]
    assert head.count(b"dkim=pass header.d=good.example header.s=sel1") == 5
    assert b'dkim=policy reason="895 more signatures not verified (at most 5 are)"' in head


def test_a_declared_size_in_other_digits_is_no_declared_size(cfg, agent) -> None:
    out = feed(message(b"", "size-digits"), "alice@good.example", [AGENT],
               client_ip=SENDER_NET_IP, mail_params=("SIZE=\u00b2",), queue_id="QCPUSIZE")
    assert out.code == Milter.DISCARD


def fields(count: int) -> bytes:
    """``count`` fields more than message() has (From, To, Message-ID)."""
    return b"".join(b"X-N: %d\r\n" % i for i in range(count))


def field_of(size: int) -> bytes:
    """One field of ``size`` bytes, CRLF included."""
    return b"X-Big: " + b"a" * (size - 9) + b"\r\n"


@pytest.mark.parametrize("at_limit, over_limit", [
    (fields(headers.MAX_HEADER_FIELDS - 3), fields(headers.MAX_HEADER_FIELDS - 2)),
    (field_of(headers.MAX_HEADER_BYTES), field_of(headers.MAX_HEADER_BYTES + 1)),
], ids=["fields", "bytes"])
def test_a_header_over_the_limit_is_refused_for_good(cfg, agent, caplog, at_limit: bytes,
                                                     over_limit: bytes) -> None:
    caplog.set_level("INFO", logger="e2a.milter")
    out = feed(message(over_limit, "over-limit"), "alice@good.example", [AGENT],
               queue_id="QHDRMAX")
    assert out.code == Milter.REJECT
    assert out.reply == ("552", "5.3.4", "Message header exceeds fixed limit")
    assert [r.getMessage() for r in caplog.records if getattr(r, "queue_id", "") == "QHDRMAX"]
    tag = f"at-limit-{len(at_limit)}"
    assert feed(message(at_limit, tag), "alice@good.example", [AGENT]).code == Milter.DISCARD


def test_each_address_field_of_a_message_is_parsed_once(cfg, agent, monkeypatch) -> None:
    """Authentication, sender identities, screening and storing all read the
    From addresses: the email package's address parser runs once for them."""
    parsed: list[tuple[str, ...]] = []
    real = headers.getaddresses

    def counting(values: Any) -> Any:
        parsed.append(tuple(values))
        return real(values)

    monkeypatch.setattr(headers, "getaddresses", counting)
    tag = secrets.token_hex(4)
    raw = (f"From: Alice <alice-{tag}@good.example>\r\nTo: {AGENT}\r\n"
           f"Cc: carol-{tag}@good.example\r\nSubject: once\r\n"
           f"Message-ID: <once-{tag}@good.example>\r\n\r\nhello\r\n").encode()
    out = feed(raw, f"alice-{tag}@good.example", [AGENT], client_ip=SENDER_NET_IP,
               queue_id=f"QONCE{tag}")
    assert out.code == Milter.DISCARD
    assert any(f"alice-{tag}@good.example" in v for values in parsed for v in values)
    assert len(parsed) == len(set(parsed)), parsed


def test_each_header_field_of_a_message_is_parsed_once(cfg, agent, monkeypatch) -> None:
    """Its Subject and Content-Type are read by the auto-reply classification
    and by storing: the email package's header parser runs once for each."""
    parsed: list[tuple[str, str]] = []
    real = policy.EmailPolicy.header_fetch_parse

    def counting(self: Any, name: str, value: str) -> Any:
        parsed.append((name, value))
        return real(self, name, value)

    monkeypatch.setattr(policy.EmailPolicy, "header_fetch_parse", counting)
    tag = secrets.token_hex(4)
    raw = (f"From: alice-{tag}@good.example\r\nTo: {AGENT}\r\nSubject: once {tag}\r\n"
           f"Content-Type: text/plain; charset=utf-8; x-tag={tag}\r\n"
           f"Message-ID: <fields-{tag}@good.example>\r\n\r\nhello\r\n").encode()
    out = feed(raw, f"alice-{tag}@good.example", [AGENT], client_ip=SENDER_NET_IP,
               queue_id=f"QFIELDS{tag}")
    assert out.code == Milter.DISCARD
    assert ("Subject", f"once {tag}") in parsed
    assert len(parsed) == len(set(parsed)), parsed
