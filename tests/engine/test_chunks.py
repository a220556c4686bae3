"""Chunk limits and the byte estimate of a seq range."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventlake.engine.chunks import Chunk, SeqBytes


def _files(*spec: tuple[int, int, float]) -> SeqBytes:
    low, high, size = (np.array(column, dtype=np.float64) for column in zip(*spec, strict=True))
    # Stored at a sixteenth of their decoded size (within `MAX_RATIO`).
    sized = SeqBytes(None, [f"f{i}" for i in range(len(spec))], low, high, size / 16,
                     high - low + 1)
    sized._size = size  # the decoded sizes, as if read from the footers
    return sized


def test_chunk_limits():
    assert Chunk.of() == Chunk()
    assert Chunk.of(events=5, bytes=None) == Chunk(5, Chunk().bytes)
    chunk = Chunk(100, 1_000)
    assert chunk.events_at(10) == 100 and chunk.events_at(100) == 10
    assert chunk.events_at(10**9) == 1  # a step always makes progress
    assert chunk.fits(100, 1_000) and not chunk.fits(101, 10) and not chunk.fits(1, 1_001)
    with pytest.raises(ValueError, match="at least one"):
        Chunk(0, 10)


def test_a_range_is_cut_where_its_bytes_reach_the_budget():
    # Two files: seqs 1-100 of 10 bytes each, 101-200 of 1,000 bytes each.
    sized = _files((1, 100, 1_000.0), (101, 200, 100_000.0))
    assert sized.between(0, 100) == pytest.approx(1_000)
    assert sized.between(0, 150) == pytest.approx(51_000)
    assert sized.end(0, 200, 2_000) == 101
    assert sized.end(0, 200, 10**9) == 200
    assert sized.end(150, 200, 1) == 151  # at least one seq
    assert sized.end(0, 50, 100) == 10


@given(sizes=st.lists(st.integers(0, 10_000), min_size=1, max_size=20),
       budget=st.integers(1, 50_000), since=st.integers(0, 30))
def test_end_is_the_furthest_seq_within_budget(sizes, budget, since):
    # One file per seq: the estimate is exact, so `end` is the greedy cut.
    sized = _files(*((i + 1, i + 1, float(n)) for i, n in enumerate(sizes)))
    until = len(sizes)
    if until <= since:
        assert sized.end(since, until, budget) == until
        return
    end = sized.end(since, until, budget)
    assert since < end <= until
    assert end == since + 1 or sized.between(since, end) <= budget
    if end < until:
        assert sized.between(since, end + 1) > budget
