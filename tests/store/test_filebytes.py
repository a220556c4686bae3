"""Decoded sizes of data files from their Parquet footers."""

from __future__ import annotations

import eventlake as el
from eventlake.store import filebytes


def test_decoded_bytes_read_footers_and_sample_them(tmp_path):
    # One file per event: files alike in content, each its own footer.
    lake = el.Lake.open(tmp_path / "lake", layout="partition_id")
    for number in range(6):
        lake.append([{"type": "note", "payload": {"text": "x" * 4_000},
                      "partition": f"p{i}"} for i in range(number * 10, number * 10 + 10)])
    snap = lake.log.snapshot()
    actions = snap.add_actions()
    paths = actions.column("path").to_pylist()
    stored = actions.column("size_bytes").to_pylist()
    filebytes._KNOWN.clear()
    exact = filebytes.decoded_bytes(snap, paths, stored)
    # Each file holds one event of a 4 KB payload, which compresses far below that.
    assert len(paths) == 60
    assert all(size > 4_000 for size in exact)
    assert all(size > logged for size, logged in zip(exact, stored, strict=True))
    filebytes._KNOWN.clear()
    sampled = filebytes.decoded_bytes(snap, paths, stored, sample=5)
    assert len(filebytes._KNOWN) == 5  # only the sample's footers were read
    # The others are estimated at the sample's highest ratio: alike files, alike sizes.
    assert all(0.8 * e <= s <= 1.25 * e for s, e in zip(sampled, exact, strict=True))
    # A file that is gone counts as its logged size.
    assert filebytes.decoded_bytes(snap, ["missing.parquet"], [123]) == [123]
