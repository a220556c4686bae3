"""Table maintenance: compaction of small files, Delta checkpoints and vacuum.

Every ingest batch adds one small Parquet file per partition it touches, and every view refresh
rewrites the buckets it touched, leaving the old files behind as tombstones. This module keeps
both tables healthy without changing what any reader sees:

- `compact_events` merges runs of adjacent small event files of a partition into one file,
  but only files that every registered view has already folded (a file's max `seq` is at or
  below the *minimum* watermark of all views). Rows are written in `seq` order and the new
  file carries `numRecords` and `seq` min/max statistics, so incremental reads keep pruning
  by `seq` and never open a compacted file. The removes and the add commit in one Delta
  transaction with `dataChange=false`; a lost commit race re-checks and re-commits the files
  already written. The new files are eventlake's own, so none is left behind as an orphan:
  a bin whose files another compaction took first, a run that keeps losing the race
  (`CommitConflictError`) and a write that fails part way (a full disk) delete exactly the
  files this run wrote and no commit references.
- `compact_views` runs Delta's `optimize.compact` on each view table (each bucket is normally
  one file already; this merges leftovers).
- `checkpoint` writes a Delta checkpoint of every table, so opening it reads one Parquet
  file instead of replaying JSON commits.
- `vacuum` deletes files no table version younger than `retention_hours` references. It is a
  dry run unless `dry_run=False`. Retention below Delta's 7-day default is allowed
  (`enforce_retention_duration=False`) because eventlake readers pin a snapshot only for the
  length of one read or refresh; the default here is `DEFAULT_VACUUM_HOURS` (24 h), which also
  bounds how far back time travel on a table version (`lake.scan(view, as_of_version=...)`)
  is guaranteed to work. `lake.state(..., as_of_seq=...)` stays exact after a vacuum: it falls
  back to folding the event log.

The library never runs maintenance on its own; the Prefect maintenance flow does, on a
schedule (see `flows/maintenance.py`), as does `eventlake maintain`.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction, RemoveAction

from eventlake.datafiles import DataFile, delete_files
from eventlake.errors import CommitConflictError, CorruptLakeError
from eventlake.events import EVENT_SCHEMA
from eventlake.log import EVENTS
from eventlake.storage import Snapshot, retry_commit
from eventlake.viewstore import ViewStore

if TYPE_CHECKING:
    from eventlake.lake import Lake

__all__ = [
    "DEFAULT_MAX_FILE_ROWS",
    "DEFAULT_SMALL_FILE_BYTES",
    "DEFAULT_VACUUM_HOURS",
    "CompactionResult",
    "MaintenanceResult",
    "VacuumResult",
    "checkpoint",
    "compact_events",
    "compact_views",
    "maintain",
    "min_watermark",
    "vacuum",
    "view_watermarks",
]

DEFAULT_VACUUM_HOURS = 24
# Files at or above this size are left alone; a compacted file holds at most this many rows.
DEFAULT_SMALL_FILE_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_FILE_ROWS = 2_000_000
_FILE_SCHEMA = pa.schema([f for f in EVENT_SCHEMA if f.name != "partition_id"])


@dataclass(frozen=True)
class CompactionResult:
    """What one `compact_events` run did (or, with `dry_run`, would do)."""

    watermark: int
    partitions: int
    files_removed: int
    files_added: int
    rows: int
    version: int | None
    dry_run: bool = False


@dataclass(frozen=True)
class VacuumResult:
    """Files a vacuum deleted (or, in a dry run, would delete) from one table."""

    table: str
    files: tuple[str, ...]
    dry_run: bool


@dataclass(frozen=True)
class MaintenanceResult:
    """One `maintain` run: event compaction, view compaction, checkpoints, vacuum."""

    events: CompactionResult
    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkpoints: tuple[str, ...] = ()
    vacuumed: dict[str, VacuumResult] = field(default_factory=dict)


# -- watermarks ----------------------------------------------------------------------------


def view_watermarks(lake: Lake) -> dict[str, int]:
    """The last `seq` each registered view has folded (0 for a view never built)."""
    marks: dict[str, int] = {}
    for name, view in lake.views.items():
        store = ViewStore(lake.storage, view)
        if not store.exists():
            marks[name] = 0
            continue
        current = store.marks(store.snapshot())
        marks[name] = current.watermark if current.active_version == view.version else 0
    return marks


def min_watermark(lake: Lake) -> int:
    """The `seq` up to which every registered view has folded the log."""
    return min(view_watermarks(lake).values(), default=0)


# -- event compaction ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Bin:
    partition: str
    paths: tuple[str, ...]      # add-action paths, as the Delta log spells them
    sizes: tuple[int, ...]
    rows: int
    low: int
    high: int


def _bins(snap: Snapshot, watermark: int, *, small_file_bytes: int, max_rows: int
          ) -> list[_Bin]:
    """Runs of adjacent small, fully folded files per partition, at least two files each."""
    actions = snap.add_actions()
    if not actions.num_rows or "max.seq" not in actions.column_names:
        return []
    rows = actions.select(["path", "size_bytes", "num_records", "partition.partition_id",
                           "min.seq", "max.seq"]).to_pylist()
    by_partition: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_partition.setdefault(row["partition.partition_id"], []).append(row)
    found: list[_Bin] = []
    for partition in sorted(by_partition):
        # Files of one partition hold disjoint seq ranges; in seq order, a file that cannot be
        # compacted (large, not yet folded, or without statistics) ends a run.
        files = sorted(by_partition[partition],
                       key=lambda r: (r["min.seq"] is None, r["min.seq"] or 0))
        runs: list[list[dict[str, Any]]] = [[]]
        for row in files:
            fits = (row["max.seq"] is not None and row["min.seq"] is not None
                    and row["max.seq"] <= watermark
                    and int(row["size_bytes"]) < small_file_bytes
                    and row["num_records"] is not None)
            if not fits:
                runs.append([])
                continue
            if sum(int(r["num_records"]) for r in runs[-1]) + int(row["num_records"]) > max_rows:
                runs.append([])
            runs[-1].append(row)
        found += [_Bin(partition, tuple(r["path"] for r in run),
                       tuple(int(r["size_bytes"]) for r in run),
                       sum(int(r["num_records"]) for r in run),
                       int(run[0]["min.seq"]), int(run[-1]["max.seq"]))
                  for run in runs if len(run) >= 2]
    return found


def _write_bin(lake: Lake, snap: Snapshot, item: _Bin) -> tuple[AddAction, int]:
    """Write the bin's rows, sorted by seq, as one new file; the add action for it."""
    # Files of a partition hold disjoint seq ranges, so the bin's range selects its files;
    # the row count check below catches anything else.
    plan = snap.plan(partitions=[item.partition], min_seq=item.low, max_seq=item.high)
    frame = (snap.scan(plan).filter(pl.col("seq").is_between(item.low, item.high))
             .drop("partition_id").sort("seq").collect())
    table = frame.to_arrow().select(_FILE_SCHEMA.names).cast(_FILE_SCHEMA)
    folder = item.paths[0].rsplit("/", 1)[0]
    name = f"part-00000-{uuid.uuid4()}-c000.compacted.zstd.parquet"
    path = f"{folder}/{name}"
    physical = unquote(path)
    if lake.storage.is_local:
        target = lake.storage.local_path(EVENTS, physical)
        # On a failure (a full disk) pyarrow deletes the half-written file itself.
        pq.write_table(table, target, compression="zstd")
        size = os.path.getsize(target)
    else:
        from deltalake.fs import DeltaStorageHandler
        from pyarrow.fs import PyFileSystem

        fs = PyFileSystem(DeltaStorageHandler(lake.storage.uri(EVENTS),
                                              lake.storage.options or None))
        # An object store keeps no half-written object: an upload lands whole or not at all.
        pq.write_table(table, physical, compression="zstd", filesystem=fs)
        size = int(fs.get_file_info(physical).size or 0)
    seqs = table.column("seq")
    low, high = int(seqs[0].as_py()), int(seqs[-1].as_py())
    stats = {"numRecords": table.num_rows, "minValues": {"seq": low},
             "maxValues": {"seq": high}, "nullCount": {"seq": 0}}
    # delta-rs percent-encodes action paths once more when it writes them to the log, so the
    # actions carry the decoded (storage) path.
    add = AddAction(path=physical, size=size, partition_values={"partition_id": item.partition},
                    modification_time=int(time.time() * 1000), data_change=False,
                    stats=json.dumps(stats))
    return add, table.num_rows


def compact_events(lake: Lake, *, small_file_bytes: int = DEFAULT_SMALL_FILE_BYTES,
                   max_rows: int = DEFAULT_MAX_FILE_ROWS, dry_run: bool = False
                   ) -> CompactionResult:
    """Merge runs of small event files that every view has folded; see the module doc.

    Memory follows `max_rows` (one bin is read at a time). Readers are never disturbed: the
    commit only swaps files holding the same rows, and removed files stay on storage until a
    vacuum past its retention.
    """
    watermark = min_watermark(lake)
    snap = lake.log.snapshot()
    bins = _bins(snap, watermark, small_file_bytes=small_file_bytes, max_rows=max_rows)
    partitions = len({b.partition for b in bins})
    removed = sum(len(b.paths) for b in bins)
    if dry_run or not bins:
        return CompactionResult(watermark, partitions, removed, len(bins),
                                sum(b.rows for b in bins), None, dry_run)
    written: list[tuple[_Bin, AddAction]] = []
    rows = 0
    try:
        with lake.storage.writing(EVENTS):
            for item in bins:
                add, count = _write_bin(lake, snap, item)
                written.append((item, add))
                if count != item.rows:
                    raise CorruptLakeError(
                        f"compaction of partition {item.partition!r} read {count} rows where "
                        f"the log's statistics say {item.rows}; nothing was committed")
                rows += count
    except BaseException:
        _discard(lake, [add for _, add in written])  # written, never committed
        raise
    # Marks this run's commit, so a failure after it can be told from a commit that landed.
    attempt = uuid.uuid4().hex
    committed: list[AddAction] = []

    def commit() -> tuple[int, int, int | None]:
        table = lake.storage.table(EVENTS)
        active = set(pa.table(table.get_add_actions(flatten=False)).column("path").to_pylist())
        keep = [(b, a) for b, a in written if all(p in active for p in b.paths)]
        committed[:] = []
        if not keep:  # another compaction got there first
            return 0, 0, None
        now = int(time.time() * 1000)
        actions: list[AddAction | RemoveAction] = []
        for item, add in keep:
            actions.append(add)
            actions += [RemoveAction(path=unquote(p), data_change=False, deletion_timestamp=now,
                                     size=s, partition_values={"partition_id": item.partition})
                        for p, s in zip(item.paths, item.sizes, strict=True)]
        base = table.version()
        with lake.storage.writing(EVENTS, base=base, metadata=("eventlake.attempt", attempt)):
            table.create_write_transaction(
                actions, mode="append", schema=table.schema(), partition_by=["partition_id"],
                commit_properties=CommitProperties(
                    max_commit_retries=0,
                    custom_metadata={"eventlake.operation": "compact-events",
                                     "eventlake.watermark": str(watermark),
                                     "eventlake.attempt": attempt}))
        committed[:] = [add for _, add in keep]
        return len(keep), sum(len(b.paths) for b, _ in keep), base + 1

    try:
        files_added, files_removed, version = retry_commit(
            commit, what="compaction of the event log")
    except CommitConflictError:
        # Every attempt lost its race, so no commit references any file of this run. (After
        # any other failure of the commit itself it may have landed: the files stay, and
        # `eventlake doctor --fix` or a vacuum deletes them if it did not.)
        _discard(lake, [add for _, add in written])
        raise
    # Bins whose files another compaction merged first: their new files were never committed.
    landed = {add.path for add in committed}
    _discard(lake, [add for _, add in written if add.path not in landed])
    return CompactionResult(watermark, len({b.partition for b, _ in written}), files_removed,
                            files_added, rows, version)


def _discard(lake: Lake, adds: Sequence[AddAction]) -> None:
    """Delete event files this run wrote that no commit references (best effort)."""
    if adds:
        delete_files(lake.storage, EVENTS, [DataFile(add, 0) for add in adds])


# -- views, checkpoints, vacuum ------------------------------------------------------------


def _view_stores(lake: Lake, views: Sequence[str] | None) -> list[ViewStore]:
    chosen = [lake.view(name) for name in (views or list(lake.views))]
    return [store for store in (ViewStore(lake.storage, v) for v in chosen) if store.exists()]


def compact_views(lake: Lake, views: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """`optimize.compact` on each view table; returns Delta's metrics per view.

    A refresh committing meanwhile makes the compaction of that view lose the race; it is
    skipped (reported with `"skipped": "commit conflict"`) and the next run picks it up.
    """
    metrics: dict[str, dict[str, Any]] = {}
    for store in _view_stores(lake, views):
        table = lake.storage.table(store.name)
        attempt = uuid.uuid4().hex
        try:
            with lake.storage.writing(store.name, base=table.version(),
                                      metadata=("eventlake.attempt", attempt)) as written:
                metrics[store.view.name] = dict(table.optimize.compact(
                    commit_properties=CommitProperties(
                        max_commit_retries=0,
                        custom_metadata={"eventlake.operation": "compact-view",
                                         "eventlake.attempt": attempt})))
            if written.landed_at is not None:
                metrics[store.view.name] = {"version": written.landed_at}
        except CommitFailedError:
            metrics[store.view.name] = {"skipped": "commit conflict"}
    return metrics


def _tables(lake: Lake, views: Sequence[str] | None) -> list[str]:
    return [EVENTS, *(store.name for store in _view_stores(lake, views))]


def checkpoint(lake: Lake, views: Sequence[str] | None = None) -> tuple[str, ...]:
    """Write a Delta checkpoint of the event log and of each view table."""
    names = _tables(lake, views)
    for name in names:
        table = lake.storage.table(name)
        with lake.storage.writing(name, note="the checkpoint was not written; the table is "
                                             "unchanged"):
            table.create_checkpoint()
    return tuple(names)


def vacuum(lake: Lake, *, retention_hours: float = DEFAULT_VACUUM_HOURS, dry_run: bool = True,
           views: Sequence[str] | None = None) -> dict[str, VacuumResult]:
    """Delete files no table version of the last `retention_hours` references (dry run by
    default: only lists them)."""
    if retention_hours < 0:
        raise ValueError(f"retention_hours must be 0 or more, got {retention_hours}")
    results: dict[str, VacuumResult] = {}
    for name in _tables(lake, views):
        # full: also files no commit ever referenced (left by crashed writers and by commit
        # attempts that lost a race), once older than the retention.
        table = lake.storage.table(name)
        with lake.storage.writing(name, note="the vacuum did not finish; no file the table "
                                             "references was deleted"):
            files = table.vacuum(
                retention_hours=int(retention_hours), dry_run=dry_run,
                enforce_retention_duration=False, full=True)
        results[name] = VacuumResult(name, tuple(sorted(files)), dry_run)
    return results


def maintain(lake: Lake, *, retention_hours: float = DEFAULT_VACUUM_HOURS, dry_run: bool = True,
             small_file_bytes: int = DEFAULT_SMALL_FILE_BYTES) -> MaintenanceResult:
    """Compact events and views, checkpoint, then vacuum: the whole maintenance pass.

    With `dry_run=True` (the default) nothing is written: it reports what compaction would
    merge and which files a vacuum would delete.
    """
    events = compact_events(lake, small_file_bytes=small_file_bytes, dry_run=dry_run)
    if dry_run:
        return MaintenanceResult(events, vacuumed=vacuum(lake, retention_hours=retention_hours,
                                                         dry_run=True))
    views = compact_views(lake)
    checkpoints = checkpoint(lake)
    vacuumed = vacuum(lake, retention_hours=retention_hours, dry_run=False)
    return MaintenanceResult(events, views, checkpoints, vacuumed)

