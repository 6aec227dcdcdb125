"""core.mailparts never fails a read: every fuzz fixture splits."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2a.core.mail import parts as mailparts

FUZZ = sorted((Path(__file__).parent.parent / "fixtures" / "mail" / "fuzz").glob("*.eml"))


@pytest.mark.parametrize("path", FUZZ, ids=[p.name for p in FUZZ])
def test_fuzz_fixture_splits(path):
    parts = mailparts.split(path.read_bytes())
    assert isinstance(parts.attachments, list)


def test_no_bytes():
    assert mailparts.split(None) == mailparts.Parts()


def test_attachments_are_the_listed_attachments_with_their_bytes():
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["Subject"] = "two files"
    msg.set_content("see both")
    msg.add_attachment(b"\x00\x01binary", maintype="application", subtype="octet-stream",
                       filename="a.bin")
    msg.add_attachment("some text\n", filename="b.txt")
    raw = msg.as_bytes()
    files = mailparts.attachments(raw)
    assert [meta for meta, _ in files] == mailparts.split(raw).attachments
    assert [(meta["index"], meta["filename"], data) for meta, data in files] == [
        (0, "a.bin", b"\x00\x01binary"), (1, "b.txt", b"some text\n")]
