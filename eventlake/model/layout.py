"""Physical layouts of the event log, and the stable hash that places a partition in a bucket.

Two layouts exist, fixed when a lake is created and changed only by a relayout:

- `partition_id`: one Hive folder per partition (`events/partition_id=<value>/`). The literal
  shape: a partition's history is its folder. Right for up to ~10k partitions with large
  batches; a batch writes one file per partition it touches.
- `buckets`: Hive folders `events/bucket=<crc32(partition_id) % N>/`, rows sorted by
  `(partition_id, seq)` inside each file. A batch writes at most N files however many
  partitions it touches, and the bucket of a partition is the same hash and N as the view
  tables use, so a view rebuild of bucket `b` reads log bucket `b` only.

In both, `partition_id` is a column of the table and the `seq`/`partition_id` statistics of
every file are in the Delta log, so any engine reads either layout as a plain Delta table.

This module is pure: no I/O. Where the layout of a table is recorded, and read back, is the
event log's business (`eventlake.store.log`).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from eventlake.errors import InvalidEventError

__all__ = [
    "BUCKET_COLUMN",
    "DEFAULT_LOG_BUCKETS",
    "LAYOUTS",
    "MAX_BUCKETS",
    "RELAYOUT_ADVICE_PARTITIONS",
    "Layout",
    "LayoutName",
    "bucket_ids",
    "bucket_of",
    "buckets_of",
    "relayout_advice",
]

LayoutName = Literal["partition_id", "buckets"]
LAYOUTS: tuple[str, ...] = ("partition_id", "buckets")
BUCKET_COLUMN = "bucket"
# Few enough that a small batch touching every bucket stays a handful of files, enough that a
# bucket of a 1M-partition log is a small slice of it. `eventlake bench` measures both ends.
DEFAULT_LOG_BUCKETS = 64
MAX_BUCKETS = 65_536
# Past this many partitions the partition_id layout's one folder per partition costs more than
# it gives: `info` and `doctor` suggest the buckets layout.
RELAYOUT_ADVICE_PARTITIONS = 10_000


def relayout_advice(layout: str, partitions: int) -> str | None:
    """A suggestion for a log of `partitions` partitions in `layout`, when the figures call
    for one (`LakeInfo.advice`, `doctor`)."""
    if layout == "partition_id" and partitions > RELAYOUT_ADVICE_PARTITIONS:
        return (f"{partitions:,} partitions in the partition_id layout (one folder "
                "each): the buckets layout keeps appends and reads cheap at this size; "
                "move with `eventlake maintain --relayout buckets`")
    return None


def bucket_of(partition: str, buckets: int) -> int:
    """The bucket of `partition`: CRC-32 of its UTF-8 bytes modulo `buckets`.

    CRC-32 is fixed by the format (zlib's, IEEE 802.3 polynomial), so every process, version
    and engine agrees on it: `crc32(encode(partition_id, 'utf-8')) % N` in any SQL engine
    that has one.
    """
    return zlib.crc32(partition.encode("utf-8")) % buckets


def buckets_of(partitions: Iterable[str], buckets: int) -> list[int]:
    return [zlib.crc32(p.encode("utf-8")) % buckets for p in partitions]


def bucket_ids(partitions: pa.Array | pa.ChunkedArray, buckets: int) -> np.ndarray:
    """The bucket of every value of a string column, as int32.

    Each distinct partition is hashed once: batches repeat partitions, and hashing in Python
    costs per call.
    """
    encoded = pc.dictionary_encode(partitions)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    dictionary = encoded.dictionary.to_pylist()
    table = np.fromiter((zlib.crc32(p.encode("utf-8")) % buckets for p in dictionary),
                        dtype=np.int32, count=len(dictionary))
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    return table[indices] if len(table) else np.zeros(len(indices), np.int32)


@dataclass(frozen=True)
class Layout:
    """The physical layout of one event log: its kind and, for `buckets`, the bucket count."""

    kind: LayoutName = "partition_id"
    buckets: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in LAYOUTS:
            raise InvalidEventError(f"unknown layout {self.kind!r}", field="layout",
                                    value=self.kind, expected=" or ".join(LAYOUTS))
        if self.kind == "buckets":
            count = DEFAULT_LOG_BUCKETS if self.buckets is None else self.buckets
            if isinstance(count, bool) or not isinstance(count, int) or not (
                    1 <= count <= MAX_BUCKETS):
                raise InvalidEventError("bad bucket count", field="buckets", value=count,
                                        expected=f"an int from 1 to {MAX_BUCKETS}")
            object.__setattr__(self, "buckets", count)
        elif self.buckets is not None:
            raise InvalidEventError("a bucket count is only for the 'buckets' layout",
                                    field="buckets", value=self.buckets,
                                    expected="no bucket count with layout 'partition_id'")

    @classmethod
    def named(cls, kind: str, *, buckets: int | None = None) -> Layout:
        return cls(kind, buckets)  # type: ignore[arg-type]

    @classmethod
    def parse(cls, text: str) -> Layout:
        """A layout from its setting text: `partition_id`, `buckets` or `buckets:<N>`."""
        kind, _, count = text.strip().partition(":")
        if not count:
            return cls.named(kind)
        try:
            number = int(count)
        except ValueError:
            raise InvalidEventError("bad bucket count", field="buckets", value=count,
                                    expected="an integer, as in buckets:256") from None
        return cls.named(kind, buckets=number)

    @property
    def partition_column(self) -> str:
        """The Hive partition column of the log's files."""
        return "partition_id" if self.kind == "partition_id" else BUCKET_COLUMN

    @property
    def bucket_count(self) -> int:
        if self.buckets is None:
            raise ValueError("the partition_id layout has no buckets")
        return self.buckets

    def describe(self) -> str:
        return self.kind if self.kind == "partition_id" else f"buckets ({self.buckets})"

    def buckets_for(self, partitions: Sequence[str]) -> list[int]:
        """The distinct buckets holding `partitions`, sorted."""
        return sorted(set(buckets_of(partitions, self.bucket_count)))
