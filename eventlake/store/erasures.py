"""Erasure records: `<root>/erasures`, the lake's durable list of erased partitions.

`seq` is gap-free except where a partition was erased (`eventlake.ops.erase`): these records
list those ranges, so a gap check accepts exactly them and still flags any other gap. Each
erase appends a `started` row before it changes any table (with every seq range it is about
to remove) and a `done` row once every table is rewritten (and vacuumed, if asked). A
`started` row without its `done` row is an erase that did not finish: `doctor` reports it,
and running the erase again (or `doctor --fix`) finishes it.

Why a Delta table of its own and not the event log's commit metadata: commit info lives only
in the JSON commit files, which Delta's log retention deletes after 30 days (checkpoints keep
no commit info), and one erase can leave thousands of ranges (a partition's events
interleaved with others'), too many for a table property. A small append-only Delta table is
as durable as the lake, atomic per row, and readable from SQL by any engine. It keeps the
partition's name and the reason (the audit trail of what was erased and why), never a payload.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import pyarrow as pa

from eventlake.store.storage import Snapshot, Storage

__all__ = ["ERASURES", "ErasureRecord", "erased_ranges", "merge_ranges", "read_records",
           "seq_ranges", "unfinished", "write_record"]

ERASURES = "erasures"
RecordState = Literal["started", "done"]
_RANGE = pa.struct([pa.field("first", pa.int64(), nullable=False),
                    pa.field("last", pa.int64(), nullable=False)])
_SCHEMA = pa.schema([
    pa.field("erase_id", pa.string(), nullable=False),
    pa.field("state", pa.string(), nullable=False),
    pa.field("partition_id", pa.string(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("seq_ranges", pa.list_(_RANGE), nullable=False),
    pa.field("events", pa.int64(), nullable=False),
    pa.field("vacuum", pa.bool_(), nullable=False),
    pa.field("recorded_at", pa.timestamp("us", tz="UTC"), nullable=False),
])


@dataclass(frozen=True)
class ErasureRecord:
    """One row of `<root>/erasures`: an erase started or finished."""

    erase_id: str
    state: RecordState
    partition: str
    reason: str
    seq_ranges: tuple[tuple[int, int], ...]
    events: int
    vacuum: bool
    recorded_at: datetime


def seq_ranges(seqs: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """Sorted seqs as inclusive runs `(first, last)`: [1, 2, 3, 7] -> ((1, 3), (7, 7))."""
    runs: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if runs and seq == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return tuple(runs)


def merge_ranges(*lists: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Inclusive seq ranges merged into sorted, disjoint, non-adjacent ones."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted(r for ranges in lists for r in ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(last, merged[-1][1]))
        else:
            merged.append((first, last))
    return tuple(merged)


def erased_ranges(records: Sequence[ErasureRecord]) -> tuple[tuple[int, int], ...]:
    """Every seq range any record names, merged: a `started` row counts too, because it is
    written before its erase removes anything."""
    return merge_ranges(*(record.seq_ranges for record in records))


def unfinished(records: Sequence[ErasureRecord]) -> list[ErasureRecord]:
    """The newest `started` row of each erase that has no `done` row, oldest erase first."""
    done = {r.erase_id for r in records if r.state == "done"}
    newest: dict[str, ErasureRecord] = {}
    for record in records:
        if record.state == "started" and record.erase_id not in done:
            newest[record.erase_id] = record
    return sorted(newest.values(), key=lambda r: r.recorded_at)


def read_records(storage: Storage) -> list[ErasureRecord]:
    """Every erasure record, in the order written (none when no erase ever ran)."""
    if not storage.exists(ERASURES):
        return []
    snap = Snapshot.load(storage, ERASURES)
    rows = snap.scan(snap.plan()).collect().sort("recorded_at", maintain_order=True)
    return [ErasureRecord(row["erase_id"], row["state"], row["partition_id"], row["reason"],
                          tuple((int(r["first"]), int(r["last"])) for r in row["seq_ranges"]),
                          int(row["events"]), bool(row["vacuum"]), row["recorded_at"])
            for row in rows.iter_rows(named=True)]


def write_record(storage: Storage, *, erase_id: str, state: RecordState, partition: str,
                 reason: str, ranges: Sequence[tuple[int, int]], vacuum: bool) -> None:
    """Append one record (creating the table on first use), in one Delta commit."""
    from deltalake import CommitProperties, write_deltalake

    row = pa.Table.from_pylist([{
        "erase_id": erase_id, "state": state, "partition_id": partition, "reason": reason,
        "seq_ranges": [{"first": a, "last": b} for a, b in ranges],
        "events": sum(b - a + 1 for a, b in ranges), "vacuum": vacuum,
        "recorded_at": datetime.now(UTC)}], schema=_SCHEMA)
    with storage.writing(ERASURES, note="the erasure was not recorded; nothing was erased "
                                        "by this step"):
        write_deltalake(storage.uri(ERASURES), row, mode="append",
                        storage_options=storage.options or None,
                        commit_properties=CommitProperties(custom_metadata={
                            "eventlake.operation": f"erase-{state}",
                            "eventlake.erase": erase_id}))
