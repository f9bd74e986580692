"""training.parquet_footer: the row count of an untrusted parquet file, in pure Python."""

from __future__ import annotations

import io
import random

import pytest

from tests.training.test_api_upload_checks import PARQUET_NO_ROWS, PARQUET_TWO_ROWS
from training import parquet_footer
from training.parquet_footer import NotParquet, parquet_rows


def _rows(content: bytes) -> int | None:
    return parquet_rows(io.BytesIO(content), len(content))


def test_the_footers_row_count_is_read():
    assert (_rows(PARQUET_TWO_ROWS), _rows(PARQUET_NO_ROWS)) == (2, 0)


def test_a_corrupt_footer_is_not_parquet_never_a_crash_or_a_hang():
    """Bytes of the footer changed at random (a fixed seed, so a failure can be replayed)."""
    chance = random.Random(20261205)
    footer_start = len(PARQUET_TWO_ROWS) - 8 - int.from_bytes(PARQUET_TWO_ROWS[-8:-4], "little")
    outcomes = set()
    for _ in range(3000):
        content = bytearray(PARQUET_TWO_ROWS)
        for _ in range(chance.randint(1, 4)):
            content[chance.randrange(footer_start, len(content) - 8)] = chance.randrange(256)
        try:
            outcomes.add(type(_rows(bytes(content))).__name__)
        except NotParquet:
            outcomes.add("NotParquet")
    assert outcomes <= {"int", "NotParquet"} and "NotParquet" in outcomes


def test_a_footer_too_large_to_read_here_is_left_to_the_run(monkeypatch):
    monkeypatch.setattr(parquet_footer, "MAX_FOOTER_BYTES", 10)
    assert _rows(PARQUET_TWO_ROWS) is None


def test_the_file_is_left_at_its_start():
    stream = io.BytesIO(b"not parquet at all")
    with pytest.raises(NotParquet):
        parquet_rows(stream, len(stream.getvalue()))
    assert stream.tell() == 0
