"""The log layouts and the partition -> bucket hash (eventlake/layout.py)."""

from __future__ import annotations

import zlib

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventlake.errors import InvalidEventError
from eventlake.model.layout import DEFAULT_LOG_BUCKETS, Layout, bucket_ids, bucket_of, buckets_of

labels = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


@given(st.lists(labels, max_size=200), st.integers(1, 5000))
@settings(max_examples=200, deadline=None)
def test_bucket_ids_hash_every_value_like_bucket_of(values, buckets):
    array = pa.chunked_array([pa.array(values[: len(values) // 2], pa.string()),
                              pa.array(values[len(values) // 2:], pa.string())])
    got = bucket_ids(array, buckets).tolist()
    assert got == [bucket_of(v, buckets) for v in values]
    assert got == buckets_of(values, buckets)
    assert all(0 <= b < buckets for b in got)


def test_bucket_is_crc32_of_utf8_bytes():
    # The hash is part of the format: other engines must be able to compute it.
    assert bucket_of("acct-1", 64) == zlib.crc32(b"acct-1") % 64
    assert bucket_of("é", 7) == zlib.crc32("é".encode()) % 7


def test_layouts_and_their_checks():
    assert Layout().kind == "partition_id" and Layout().buckets is None
    assert Layout("buckets").buckets == DEFAULT_LOG_BUCKETS
    assert Layout.named("buckets", buckets=256).partition_column == "bucket"
    assert Layout().partition_column == "partition_id"
    assert Layout("buckets", 8).buckets_for(["a", "b", "a"]) == sorted(
        {bucket_of("a", 8), bucket_of("b", 8)})
    for bad in (0, -1, 70_000, True, 2.5):
        with pytest.raises(InvalidEventError) as caught:
            Layout("buckets", bad)  # type: ignore[arg-type]
        assert caught.value.field == "buckets"
    with pytest.raises(InvalidEventError):
        Layout.named("hash")
    with pytest.raises(InvalidEventError):
        Layout("partition_id", 16)
