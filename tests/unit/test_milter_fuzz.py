"""Poison messages: whatever the parsers cannot decode, the milter answers
for good. A fixed corpus (tests/fixtures/mail/fuzz/) and a derandomized
hypothesis generator go through the real handler, byte for byte as Postfix
hands them over, onto a real database: never a 4xx (the sender would retry
for days), and a message taken is one stored row."""

from __future__ import annotations

import itertools
import secrets
from pathlib import Path
from typing import Any

import Milter
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mailworld import MAIL, SENDER_NET_IP
from milterdriver import agent_of_a_new_owner, feed

from e2a.core.db import single_connection

AGENT = "fuzz@agents.test.example"
CORPUS = sorted((MAIL / "fuzz").glob("*.eml"))
_serial = itertools.count()


@pytest.fixture(scope="module")
def agent(cfg, milter_world) -> dict[str, Any]:
    return agent_of_a_new_owner(cfg, "fuzz")


def answered_for_good(cfg, raw: bytes) -> None:
    n = next(_serial)
    queue_id = f"QFUZZ{n}X{secrets.token_hex(3)}"
    # A sender of its own: equal messages are not taken for one retried.
    out = feed(raw, f"fuzz-{n}-{secrets.token_hex(3)}@good.example", [AGENT],
               client_ip=SENDER_NET_IP, queue_id=queue_id)
    assert out.code in (Milter.DISCARD, Milter.REJECT), (out.code, out.reply)
    with single_connection(cfg) as conn:
        stored = conn.execute("SELECT raw_message FROM messages WHERE queue_id = %s",
                              (queue_id,)).fetchall()
    if out.code == Milter.REJECT:
        assert out.reply is not None and out.reply[0].startswith("5"), out.reply
        assert stored == []
    else:
        assert len(stored) == 1
        assert bytes(stored[0]["raw_message"]).startswith(b"Authentication-Results: ")


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 15


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_a_hostile_message_is_stored_or_refused_for_good(cfg, agent, path: Path) -> None:
    answered_for_good(cfg, path.read_bytes())


# -- generated ------------------------------------------------------------------

CHARSETS = ["utf-8", "idna", "punycode", "utf-16", "utf-7", "x-no-such", "", "us-ascii*en",
            "iso-8859-1", "utf-8'", "b\xe9"]
NAMES = ["Subject", "From", "To", "Cc", "Reply-To", "Message-ID", "In-Reply-To",
         "References", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition",
         "MIME-Version", "Authentication-Results", "DKIM-Signature", "Date", "X-Fuzz"]
JUNK = st.binary(max_size=60).map(lambda b: b.replace(b"\r\n", b"\n"))
encoded_word = st.builds(
    lambda cs, enc, text: b"=?%s?%s?%s?=" % (cs.encode("latin-1"), enc, text),
    st.sampled_from(CHARSETS), st.sampled_from([b"q", b"b", b"Q", b"x", b""]),
    st.binary(max_size=20).filter(lambda b: b"?=" not in b))
parameter = st.builds(
    lambda name, star, cs, value: b"; %s%s=%s''%s" % (name, star, cs.encode("latin-1"), value),
    st.sampled_from([b"charset", b"boundary", b"filename", b"name"]),
    st.sampled_from([b"", b"*", b"*0*", b"*1", b"*99*"]),
    st.sampled_from(CHARSETS), st.binary(max_size=12))
fragment = st.one_of(JUNK, encoded_word, parameter,
                     st.sampled_from([b"(", b")", b"\"", b"\\", b"<", b">", b"@", b",", b";",
                                      b"\x00", b"\r", b"\n", b"\r\n ", b"multipart/mixed",
                                      b"text/plain", b"mx.test.example", b"base64"]))
# A line break inside a value stays a fold: Postfix would take a line that is
# no header field for the start of the body, and the driver cannot send it.
value = st.lists(fragment, max_size=12).map(
    lambda parts: b" " + b"".join(parts).replace(b"\r\n", b"\r\n "))
field = st.tuples(st.sampled_from(NAMES), value).map(
    lambda f: f[0].encode() + b":" + f[1] + b"\r\n")


def multipart(depth: int, boundary: bytes) -> bytes:
    inner = b"Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n" % boundary
    return (b"--" + boundary + b"\r\n" + inner) * depth


body = st.one_of(
    st.binary(max_size=300),
    st.builds(multipart, st.integers(0, 60), st.binary(min_size=0, max_size=8)))
message = st.builds(lambda fields, payload: b"".join(fields) + b"\r\n" + payload,
                    st.lists(field, min_size=1, max_size=15), body)


@settings(derandomize=True, database=None, deadline=None, max_examples=60,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=message)
def test_generated_hostile_messages_are_stored_or_refused_for_good(cfg, agent, raw) -> None:
    answered_for_good(cfg, raw)
