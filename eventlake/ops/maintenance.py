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
  It also deletes the chunks a killed parallel ingest left under `<root>/_staging` once older
  than the retention (reported as the table `_staging`).

The library never runs maintenance on its own; the Prefect maintenance flow does, on a
schedule (see `flows/maintenance.py`), as does `eventlake maintain`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa
from deltalake import CommitProperties
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction

from eventlake.errors import CommitConflictError, CorruptLakeError, InvalidArgumentError
from eventlake.model.events import EVENT_SCHEMA
from eventlake.model.layout import BUCKET_COLUMN
from eventlake.store.datafiles import DataFile, PlannedFile, delete_files, write_files
from eventlake.store.deltalog import Commit, FileRemoval
from eventlake.store.log import EVENTS, TailCompaction
from eventlake.store.storage import Snapshot, commit_on, retry_commit
from eventlake.store.viewstore import ViewStore

if TYPE_CHECKING:
    from eventlake.store.parts import LakeParts

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
    """What one `compact_events` run did (or, with `dry_run`, would do).

    On a bucketed log the figures include the sorting of the tail into buckets: its files
    count as removed, the bucket files it wrote as added, its buckets among `partitions`.
    """

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


def view_watermarks(lake: LakeParts) -> dict[str, int]:
    """The last `seq` each registered view has folded (0 for a view never built)."""
    return {name: ViewStore(lake.storage, view).watermark()
            for name, view in lake.views.items()}


def min_watermark(lake: LakeParts) -> int:
    """The `seq` up to which every registered view has folded the log."""
    return min(view_watermarks(lake).values(), default=0)


# -- event compaction ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Bin:
    group: str                  # the partition (partition_id layout) or the bucket
    column: str                 # the Hive partition column the group is a value of
    paths: tuple[str, ...]      # add-action paths, as the Delta log spells them
    sizes: tuple[int, ...]
    rows: int
    low: int
    high: int


def _bins(snap: Snapshot, watermark: int, *, column: str, small_file_bytes: int,
          max_rows: int) -> list[_Bin]:
    """Runs of small, fully folded files per partition (or per bucket), two files or more.

    In seq order, a file that cannot be compacted (large, not yet folded, or without
    statistics) ends a run. A bucketed log's tail (no bucket yet) is never a group here: the
    log sorts it into buckets itself.
    """
    actions = snap.add_actions()
    if not actions.num_rows or "max.seq" not in actions.column_names:
        return []
    key = f"partition.{column}"
    rows = actions.select(["path", "size_bytes", "num_records", key, "min.seq", "max.seq"]
                          ).to_pylist()
    by_group: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row[key] is not None:
            by_group.setdefault(str(row[key]), []).append(row)
    found: list[_Bin] = []
    for group in sorted(by_group):
        files = sorted(by_group[group],
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
        found += [_Bin(group, column, tuple(r["path"] for r in run),
                       tuple(int(r["size_bytes"]) for r in run),
                       sum(int(r["num_records"]) for r in run),
                       min(int(r["min.seq"]) for r in run),
                       max(int(r["max.seq"]) for r in run))
                  for run in runs if len(run) >= 2]
    return found


def _write_bin(lake: LakeParts, snap: Snapshot, item: _Bin) -> tuple[AddAction, int]:
    """Write the rows of exactly the bin's files as one new file; its add action.

    Rows are in seq order (partition_id layout) or `(partition_id, seq)` order (a bucket), so
    the new file prunes like the ones it replaces.
    """
    frame = snap.scan(snap.plan(paths=item.paths)).collect()
    order = ["seq"] if item.column == "partition_id" else ["partition_id", "seq"]
    frame = frame.sort(order)
    names = [f.name for f in EVENT_SCHEMA if f.name != item.column]
    schema = pa.schema([EVENT_SCHEMA.field(n) for n in names])
    table = frame.to_arrow().select(names).cast(schema)
    stats = ("seq",) if item.column == "partition_id" else ("seq", "partition_id")
    written = write_files(lake.storage, EVENTS, [PlannedFile({item.column: item.group}, table)],
                          stats_columns=stats, data_change=False, tag="compacted",
                          dictionary_columns=("partition_id", "type", "batch_id"),
                          statistics_columns=("seq", "partition_id", "ts", "ingested_at"))
    return written[0].action, table.num_rows


def compact_events(lake: LakeParts, *, small_file_bytes: int = DEFAULT_SMALL_FILE_BYTES,
                   max_rows: int = DEFAULT_MAX_FILE_ROWS, dry_run: bool = False
                   ) -> CompactionResult:
    """Merge runs of small event files that every view has folded; see the module doc.

    Memory follows `max_rows` (one bin is read at a time). Readers are never disturbed: the
    commit only swaps files holding the same rows, and removed files stay on storage until a
    vacuum past its retention. A bucketed log's tail is sorted into its buckets first (a
    dry run counts the tail's files and rows, and the bins of the files as they are now).
    """
    watermark = min_watermark(lake)
    tail = _sort_tail(lake, dry_run=dry_run)
    tail_groups = {str(bucket) for bucket in tail.buckets}
    snap = lake.log.snapshot()
    column = lake.log.layout(snap).partition_column
    bins = _bins(snap, watermark, column=column, small_file_bytes=small_file_bytes,
                 max_rows=max_rows)
    groups = len({b.group for b in bins} | tail_groups)
    removed = sum(len(b.paths) for b in bins)
    if dry_run or not bins:
        return CompactionResult(watermark, groups, tail.files_removed + removed,
                                tail.files_added + len(bins),
                                tail.rows + sum(b.rows for b in bins), tail.version, dry_run)
    written: list[tuple[_Bin, AddAction]] = []
    rows = 0
    try:
        with lake.storage.writing(EVENTS):
            for item in bins:
                add, count = _write_bin(lake, snap, item)
                written.append((item, add))
                if count != item.rows:
                    raise CorruptLakeError(
                        f"compaction of {item.column} {item.group!r} read {count} rows where "
                        f"the log's statistics say {item.rows}; nothing was committed")
                rows += count
    except BaseException:
        _discard(lake, [add for _, add in written])  # written, never committed
        raise
    # Marks this run's commit, so a failure after it can be told from a commit that landed.
    attempt = uuid.uuid4().hex
    committed: list[AddAction] = []

    def commit() -> tuple[int, int, int | None]:
        current = lake.log.snapshot()
        active = set(current.add_actions().column("path").to_pylist())
        keep = [(b, a) for b, a in written if all(p in active for p in b.paths)]
        committed[:] = []
        if not keep:  # another compaction got there first
            return 0, 0, None
        removes = [FileRemoval(p, {item.column: item.group}, s)
                   for item, _ in keep for p, s in zip(item.paths, item.sizes, strict=True)]
        with lake.storage.writing(EVENTS, base=current.version,
                                  metadata=("eventlake.attempt", attempt)):
            version = commit_on(lake.storage, EVENTS, current, Commit(
                adds=[a for _, a in keep], removes=removes, operation="OPTIMIZE",
                data_change=False,
                info={"eventlake.operation": "compact-events",
                      "eventlake.watermark": str(watermark), "eventlake.attempt": attempt}),
                partition_by=[column])
        committed[:] = [add for _, add in keep]
        return len(keep), sum(len(b.paths) for b, _ in keep), version

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
    return CompactionResult(watermark, len({b.group for b, _ in written} | tail_groups),
                            tail.files_removed + files_removed, tail.files_added + files_added,
                            tail.rows + rows, tail.version if version is None else version)


def _sort_tail(lake: LakeParts, *, dry_run: bool) -> TailCompaction:
    """Sort a bucketed log's tail into its buckets; with `dry_run`, what that would do (one
    file per bucket its rows hash to; reads the tail's `partition_id` column)."""
    if lake.log.layout().kind != "buckets":
        return TailCompaction()
    if not dry_run:
        return lake.log.compact_tail()
    snap = lake.log.snapshot()
    plan = snap.plan(equals={BUCKET_COLUMN: [None]})
    if not plan.files:
        return TailCompaction()
    partitions = (snap.scan(plan).select(pl.col("partition_id").unique()).collect()
                  .get_column("partition_id").to_list())
    buckets = tuple(lake.log.layout(snap).buckets_for(partitions))
    return TailCompaction(len(plan.files), len(buckets), plan.rows, None, buckets)


def _discard(lake: LakeParts, adds: Sequence[AddAction]) -> None:
    """Delete event files this run wrote that no commit references (best effort)."""
    if adds:
        delete_files(lake.storage, EVENTS, [DataFile(add, 0) for add in adds])


# -- views, checkpoints, vacuum ------------------------------------------------------------


def _view_stores(lake: LakeParts, views: Sequence[str] | None) -> list[ViewStore]:
    chosen = [lake.view(name) for name in (views or list(lake.views))]
    return [store for store in (ViewStore(lake.storage, v) for v in chosen) if store.exists()]


def compact_views(lake: LakeParts, views: Sequence[str] | None = None
                  ) -> dict[str, dict[str, Any]]:
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


def _tables(lake: LakeParts, views: Sequence[str] | None) -> list[str]:
    return [EVENTS, *(store.name for store in _view_stores(lake, views))]


def checkpoint(lake: LakeParts, views: Sequence[str] | None = None) -> tuple[str, ...]:
    """Write a Delta checkpoint of the event log and of each view table."""
    names = _tables(lake, views)
    for name in names:
        table = lake.storage.table(name)
        with lake.storage.writing(name, note="the checkpoint was not written; the table is "
                                             "unchanged"):
            table.create_checkpoint()
    return tuple(names)


def vacuum(lake: LakeParts, *, retention_hours: float = DEFAULT_VACUUM_HOURS,
           dry_run: bool = True, views: Sequence[str] | None = None
           ) -> dict[str, VacuumResult]:
    """Delete files no table version of the last `retention_hours` references (dry run by
    default: only lists them)."""
    if retention_hours < 0:
        raise InvalidArgumentError("retention_hours", retention_hours, "0 or more")
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
    staged = _vacuum_staged(lake, retention_hours, dry_run=dry_run)
    if staged:
        from eventlake.store.staging import STAGING

        results[STAGING] = VacuumResult(STAGING, staged, dry_run)
    return results


def _vacuum_staged(lake: LakeParts, retention_hours: float, *, dry_run: bool
                   ) -> tuple[str, ...]:
    """The files under `<root>/_staging` older than the retention (a parallel ingest that
    was killed staged them; one still running deletes its own within minutes): deleted
    unless `dry_run`."""
    import time

    from eventlake.store.staging import staged_files

    now = time.time()
    old = [f.path for f in staged_files(lake.storage)
           if f.mtime is not None and now - f.mtime >= retention_hours * 3600]
    if not dry_run:
        for path in old:
            fs, relative = lake.storage.file_system_of(path)
            try:
                fs.delete_file(relative)
            except FileNotFoundError:
                pass
    return tuple(old)


def maintain(lake: LakeParts, *, retention_hours: float = DEFAULT_VACUUM_HOURS,
             dry_run: bool = True, small_file_bytes: int = DEFAULT_SMALL_FILE_BYTES
             ) -> MaintenanceResult:
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

