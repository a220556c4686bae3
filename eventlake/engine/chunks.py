"""How much one step of a refresh or rebuild reads: a limit in bytes and one in events.

Memory follows the bytes of the events in hand, not their count (100k events of 8 KB payloads
are 800 MB, of 100 bytes 10 MB), so a step stops at whichever limit it reaches first: about
`bytes` of decoded event data (`store.filebytes`: the files' uncompressed Parquet data), or
`events` events. The bytes of a seq range are estimated from the files that hold it, each
taken to spread its bytes evenly over its seq range: exact for a range that covers whole
files, and close for one that cuts a file (the events of one batch are of one size, give or
take).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from eventlake.store.filebytes import decoded_bytes
from eventlake.store.storage import Snapshot

__all__ = ["DEFAULT_CHUNK_BYTES", "DEFAULT_CHUNK_EVENTS", "Chunk", "SeqBytes"]

DEFAULT_CHUNK_EVENTS = 100_000
# Decoded event bytes per step. A step holds its events about three times over at its peak
# (the Arrow read, the frame it is filtered and sorted into, the payloads a fold decodes).
# Measured on a rebuild of 8 KB payloads (README, "Bounded memory"): 16 MB peaks at about
# 100 MB of RSS above start-up and 150-190 MB of address space, 64 MB at about 220 MB and
# 170-240 MB, so 16 MB keeps well within 300 MB of address space.
DEFAULT_CHUNK_BYTES = 16 * 2**20
# More than a log file decodes to per byte stored: snappy expands at most about 21-fold, and
# every event carries a random event id that does not compress. Only used to skip reading
# footers of files too small to matter.
MAX_RATIO = 32
# Footers read per step at most; the other files are estimated from them
# (`filebytes.decoded_bytes`).
FOOTER_SAMPLE = 16


@dataclass(frozen=True)
class Chunk:
    """The most one step reads: `events` events or `bytes` decoded bytes, whichever first."""

    events: int = DEFAULT_CHUNK_EVENTS
    bytes: int = DEFAULT_CHUNK_BYTES

    def __post_init__(self) -> None:
        if self.events < 1 or self.bytes < 1:
            raise ValueError(f"a chunk needs at least one event and one byte, not {self}")

    @classmethod
    def of(cls, *, events: int | None = None, bytes: int | None = None) -> Chunk:
        """The chunk of the given limits, the defaults for those not given."""
        return cls(events or DEFAULT_CHUNK_EVENTS, bytes or DEFAULT_CHUNK_BYTES)

    def events_at(self, bytes_per_event: float) -> int:
        """How many events of `bytes_per_event` bytes a step may read (at least one)."""
        if bytes_per_event <= 0:
            return self.events
        return max(1, min(self.events, int(self.bytes / bytes_per_event)))

    def fits(self, events: int, size: float) -> bool:
        return events <= self.events and size <= self.bytes


class SeqBytes:
    """The decoded bytes of the events in any seq range, estimated from the files holding
    them.

    Footers are read only when the answer needs them: files whose logged (compressed) sizes
    add up to less than a budget over `MAX_RATIO` fit it however well they compressed, so a
    small refresh reads no footer.
    """

    def __init__(self, snap: Snapshot | None, paths: list[str], low: np.ndarray,
                 high: np.ndarray, stored: np.ndarray, rows: np.ndarray) -> None:
        self._snap = snap
        self._paths = paths
        self.low = low.astype(np.float64)
        self.high = high.astype(np.float64)
        self.stored = stored.astype(np.float64)
        self.rows = rows.astype(np.float64)
        self._size: np.ndarray | None = None

    @classmethod
    def of_files(cls, snap: Snapshot, *, since: int | None = None, until: int | None = None,
                 equals: dict[str, Sequence[str | int | None]] | None = None) -> SeqBytes:
        """The files of `snap` that can hold seqs in `(since, until]` (and whose partition
        column `c` is among `equals[c]`, `None` accepting a null value)."""
        actions = snap.add_actions()
        names = actions.column_names
        if actions.num_rows and "min.seq" in names:
            if since is not None:
                actions = actions.filter(pc.fill_null(
                    pc.greater(actions.column("max.seq"), since), True))
            if until is not None:
                actions = actions.filter(pc.fill_null(
                    pc.less_equal(actions.column("min.seq"), until), True))
        for column, accepted in (equals or {}).items():
            if not actions.num_rows:
                break
            values = pc.cast(actions.column(f"partition.{column}"), pa.string())
            wanted = pa.array([str(v) for v in accepted if v is not None], pa.string())
            keep = pc.fill_null(pc.is_in(values, value_set=wanted), False)
            if any(v is None for v in accepted):
                keep = pc.or_(keep, pc.is_null(values))
            actions = actions.filter(keep)
        if not actions.num_rows or "min.seq" not in names:
            empty = np.zeros(0)
            return cls(None, [], empty, empty, empty, empty)
        return cls(snap, actions.column("path").to_pylist(),
                   actions.column("min.seq").fill_null(0).to_numpy(),
                   actions.column("max.seq").fill_null(np.iinfo(np.int64).max).to_numpy(),
                   actions.column("size_bytes").fill_null(0).to_numpy(),
                   actions.column("num_records").fill_null(0).to_numpy())

    def _subset(self, keep: np.ndarray) -> SeqBytes:
        picked = SeqBytes(self._snap, [p for p, k in zip(self._paths, keep, strict=True) if k],
                          self.low[keep], self.high[keep], self.stored[keep], self.rows[keep])
        if self._size is not None:
            picked._size = self._size[keep]
        return picked

    @property
    def size(self) -> np.ndarray:
        """Each file's decoded bytes."""
        if self._size is None:
            if self._snap is None or not self._paths:
                self._size = np.zeros(len(self._paths))
            else:
                self._size = np.array(decoded_bytes(self._snap, self._paths,
                                                    self.stored.astype(np.int64).tolist(),
                                                    sample=FOOTER_SAMPLE),
                                      dtype=np.float64)
        return self._size

    def _fits(self, budget: float) -> bool:
        """Whether the files fit `budget` whole, by their stored sizes alone."""
        return float(np.sum(self.stored)) * MAX_RATIO <= budget

    def within(self, budget: float) -> bool:
        """Whether the files whole hold at most `budget` decoded bytes."""
        return self._fits(budget) or float(np.sum(self.size)) <= budget

    def files_to(self, end: int) -> SeqBytes:
        """Only the files holding seqs at or before `end`."""
        return self._subset(self.low <= end)

    @property
    def per_event(self) -> float:
        """The files' decoded bytes per event (0 without files)."""
        rows = float(np.sum(self.rows))
        return float(np.sum(self.size)) / rows if rows else 0.0

    def between(self, since: int, until: int) -> float:
        """The estimated decoded bytes of the events in `(since, until]`."""
        if not len(self.low) or until <= since:
            return 0.0
        span = self.high - self.low + 1
        overlap = np.clip(np.minimum(self.high, until) - np.maximum(self.low, since + 1) + 1,
                          0, None)
        return float(np.sum(self.size * np.minimum(overlap / span, 1.0)))

    def end(self, since: int, until: int, budget: float) -> int:
        """The largest seq `end` in `(since, until]` whose range `(since, end]` holds at most
        `budget` bytes, but at least `since + 1` (one step always makes progress)."""
        if until <= since or self._fits(budget) or self.between(since, until) <= budget:
            return until
        low, high = since + 1, until  # between(since, low) may exceed: progress first
        while low < high:
            middle = (low + high + 1) // 2
            if self.between(since, middle) <= budget:
                low = middle
            else:
                high = middle - 1
        return low
