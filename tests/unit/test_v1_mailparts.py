"""core.mailparts never fails a read: every fuzz fixture splits."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2a.core import mailparts

FUZZ = sorted((Path(__file__).parent.parent / "fixtures" / "mail" / "fuzz").glob("*.eml"))


@pytest.mark.parametrize("path", FUZZ, ids=[p.name for p in FUZZ])
def test_fuzz_fixture_splits(path):
    parts = mailparts.split(path.read_bytes())
    assert isinstance(parts.attachments, list)


def test_no_bytes():
    assert mailparts.split(None) == mailparts.Parts()
