"""Erasing a partition end to end: its events, its view rows and, with `vacuum`, its old files.

`erase(lake, partition, reason=...)` works in this order, each step one Delta commit per table:

1. **Record** (`eventlake.store.erasures`): a `started` row naming the partition, the reason
   and every seq range of its events, written before anything else changes, so a gap the
   erase leaves is always recorded first.
2. **Views**: in every table under `<root>/views/` (registered or not), each live file of the
   partition's bucket (every generation: a rebuild in progress holds the partition too) is
   rewritten without the partition's rows; one commit per table removes those files and adds
   the rewritten ones, with the view's watermark unchanged. The commit bumps the table's
   commit counter, so a refresh that read the old rows loses its race and re-reads.
3. **Event log**: the live files that can hold the partition (its folder on the `partition_id`
   layout; its bucket's files and the tail on `buckets`) are rewritten without its rows (a
   folder's files are only removed), in one commit made on exactly the version read. An
   append that lands meanwhile makes it re-read (and record any new seqs first; the views
   then get a second pass, in case a refresh folded those events in between). Every other
   event keeps its `seq`: the erased ones are the recorded gap.
4. **Vacuum** (optional): every file of these tables that is not live and holds the
   partition's rows is deleted, whoever removed it (this erase, an earlier refresh, compaction
   or relayout) and orphans too; nothing else is touched (a Delta vacuum with retention 0
   would also delete the files of writers in flight and every other table version's files).
5. **Record** a `done` row.

Crash safety: a kill before step 2 commits changes nothing readers see; a kill between the
first view commit and step 5 leaves a state that `doctor` reports as an unfinished erase, and
running the erase again (or `doctor --fix`) finishes it from where it stopped: each step
skips what holds no row of the partition any more. Readers never see a half-rewritten table.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc

from eventlake.errors import InvalidArgumentError, UnknownPartitionError
from eventlake.model.layout import BUCKET_COLUMN, bucket_of
from eventlake.store.datafiles import (
    DataFile,
    PlannedFile,
    delete_files,
    delete_unreferenced,
    write_files,
)
from eventlake.store.deltalog import Commit, FileRemoval
from eventlake.store.erasures import (
    ERASURES,
    ErasureRecord,
    erased_ranges,
    merge_ranges,
    read_records,
    seq_ranges,
    unfinished,
    write_record,
)
from eventlake.store.log import EVENTS, SEQ_APP_ID
from eventlake.store.storage import Snapshot, Storage, commit_on, retry_commit
from eventlake.store.tablefiles import join_path, list_files, relative_path
from eventlake.store.viewstore import _BUCKETS_KEY as BUCKETS_KEY  # where a view table keeps N
from eventlake.store.viewstore import DEFAULT_BUCKETS, view_app_id

if TYPE_CHECKING:
    from eventlake.store.parts import LakeParts

__all__ = ["ERASURES", "EraseResult", "TableErasure", "erase", "erased_ranges",
           "finish_unfinished", "preview", "read_records", "unfinished_erasures"]

_VIEWS = "views"


@dataclass(frozen=True)
class TableErasure:
    """What an erase did to one table: the version of its commit (None: no live file held
    the partition), the files it replaced (as the Delta log names them), how many files it
    wrote in their place and the rows it removed."""

    table: str
    version: int | None
    files_removed: tuple[str, ...]
    files_added: int
    rows_removed: int


@dataclass(frozen=True)
class EraseResult:
    """One erase: the partition, the events and seq ranges taken out of the log (the
    recorded gap), what each table's commit did, which views lost rows, the files a vacuum
    deleted, and the files that still hold the partition, reachable by time travel (and by
    the change feed's history) until a vacuum deletes them (empty after `vacuum=True`)."""

    partition: str
    erase_id: str
    reason: str
    events: int
    seq_ranges: tuple[tuple[int, int], ...]
    tables: tuple[TableErasure, ...]
    views: tuple[str, ...]
    vacuumed: tuple[str, ...]
    retained: tuple[str, ...]
    resumed: bool
    seconds: float

    @property
    def files_rewritten(self) -> dict[str, int]:
        """Table -> number of live files the erase replaced."""
        return {t.table: len(t.files_removed) for t in self.tables}

    def to_json(self) -> dict[str, Any]:
        return {"partition": self.partition, "erase_id": self.erase_id, "reason": self.reason,
                "events": self.events, "seq_ranges": [list(r) for r in self.seq_ranges],
                "tables": [{"table": t.table, "version": t.version,
                            "files_removed": len(t.files_removed),
                            "files_added": t.files_added, "rows_removed": t.rows_removed}
                           for t in self.tables],
                "views": list(self.views), "vacuumed": list(self.vacuumed),
                "retained": list(self.retained), "resumed": self.resumed,
                "seconds": round(self.seconds, 3)}


def preview(lake: LakeParts, partition: str, *, vacuum: bool = False) -> tuple[int, bool]:
    """(events of `partition` in the log, whether an unfinished erase of it waits), or the
    `UnknownPartitionError` that `erase` would raise."""
    pending, seqs = _start(lake, partition, vacuum=vacuum)
    return len(seqs), bool(pending)


def _start(lake: LakeParts, partition: str, *, vacuum: bool
           ) -> tuple[list[ErasureRecord], list[int]]:
    """The unfinished erases of `partition` and the seqs of its events now, or
    `UnknownPartitionError` when there is nothing to do."""
    records = read_records(lake.storage)
    pending = [r for r in unfinished(records) if r.partition == partition]
    seqs = _seqs_of(lake, lake.log.snapshot(), partition)
    erased_before = any(r.partition == partition and r.state == "done" for r in records)
    # Vacuuming after an erase that did not vacuum is the one reason to name it again.
    if not seqs and not pending and not (vacuum and erased_before):
        raise UnknownPartitionError(partition, erased=erased_before)
    return pending, seqs


def unfinished_erasures(lake: LakeParts) -> list[ErasureRecord]:
    """Erases that started and did not finish (`doctor` reports them)."""
    return unfinished(read_records(lake.storage))


def finish_unfinished(lake: LakeParts) -> list[EraseResult]:
    """Run every unfinished erase again, with its own reason and vacuum choice."""
    return [erase(lake, record.partition, reason=record.reason, vacuum=record.vacuum)
            for record in unfinished_erasures(lake)]


def erase(lake: LakeParts, partition: str, *, reason: str, vacuum: bool = False
          ) -> EraseResult:
    """Remove every event and view row of `partition`; see the module doc."""
    started = time.perf_counter()
    if not isinstance(partition, str) or not partition:
        raise InvalidArgumentError("partition", partition, "a non-empty string")
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidArgumentError("reason", reason, "a non-empty text saying why")
    storage = lake.storage
    pending, seqs = _start(lake, partition, vacuum=vacuum)
    resumed = bool(pending)
    erase_id = pending[-1].erase_id if pending else uuid.uuid4().hex
    vacuum = vacuum or any(r.vacuum for r in pending)
    known = erased_ranges(pending)
    recorded = bool(pending)

    def record_seqs(found: Sequence[int]) -> None:
        # A started row must name every seq before a commit removes it.
        nonlocal known, recorded
        ranges = merge_ranges(known, seq_ranges(found))
        if ranges != known or not recorded:
            write_record(storage, erase_id=erase_id, state="started", partition=partition,
                         reason=reason, ranges=ranges, vacuum=vacuum)
            known, recorded = ranges, True

    record_seqs(seqs)
    views = {name: _erase_view_table(storage, name, partition, erase_id)
             for name in view_tables(storage)}
    planned = known
    tables = [_erase_log(lake, partition, erase_id, record_seqs)]
    if known != planned:
        # Events of the partition landed during the erase, and a refresh may have folded them
        # into a view before the log's commit took them out: one more pass over the views.
        for name in view_tables(storage):
            views[name] = _merged(views.get(name), _erase_view_table(storage, name, partition,
                                                                      erase_id))
    tables += views.values()
    names = [t.table for t in tables]
    vacuumed: list[str] = []
    retained: list[str] = []
    for name in names:
        holding = _dead_files_holding(storage, name, partition)
        if vacuum:
            vacuumed += delete_unreferenced(storage, name, holding)
        else:
            retained += [storage.shown(name, path) for path in holding]
    write_record(storage, erase_id=erase_id, state="done", partition=partition, reason=reason,
                 ranges=known, vacuum=vacuum)
    return EraseResult(
        partition, erase_id, reason, sum(b - a + 1 for a, b in known), known, tuple(tables),
        tuple(t.table.removeprefix(f"{_VIEWS}/") for t in tables[1:] if t.rows_removed),
        tuple(vacuumed), tuple(retained), resumed, time.perf_counter() - started)


def _merged(first: TableErasure | None, second: TableErasure) -> TableErasure:
    """Two erase passes over one table as one entry (the version of the last commit)."""
    if first is None:
        return second
    return TableErasure(first.table, first.version if second.version is None else
                        second.version, first.files_removed + second.files_removed,
                        first.files_added + second.files_added,
                        first.rows_removed + second.rows_removed)


def view_tables(storage: Storage) -> list[str]:
    """Every view table under `<root>/views/`, registered or not, sorted."""
    import pyarrow.fs as pafs

    fs, base = storage.file_system(_VIEWS)
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=False,
                                                   allow_not_found=True))
    except FileNotFoundError:
        return []
    names = sorted(relative_path(base, i.path) for i in infos
                   if i.type == pafs.FileType.Directory)
    return [f"{_VIEWS}/{n}" for n in names if storage.exists(_VIEWS, n)]


# -- reading ---------------------------------------------------------------------------------


def _seqs_of(lake: LakeParts, snap: Snapshot, partition: str) -> list[int]:
    """The seqs of `partition`'s events in `snap` (exact name match)."""
    import polars as pl

    frame = lake.events(partition=partition, snapshot=snap).select("seq", "partition_id")
    rows = frame.filter(pl.col("partition_id") == partition).collect()
    return rows.get_column("seq").to_list()


def _read_file(storage: Storage, table: str, logged: str,
               columns: Sequence[str] | None = None) -> pa.Table:
    """The physical rows of one data file (no Hive partition columns)."""
    import pyarrow.parquet as pq

    fs, base = storage.file_system(table)
    relative = logged if "://" in logged else unquote(logged)
    with fs.open_input_file(join_path(base, relative)) as handle:
        return pq.read_table(handle, columns=list(columns) if columns else None)


def _holds(rows: pa.Table, partition: str) -> pa.Array:
    return pc.fill_null(pc.equal(rows.column("partition_id"), partition), False)


# -- rewriting -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    path: str
    values: dict[str, str | None]
    size: int | None


def _candidates(snap: Snapshot, keep: Callable[[dict[str, Any]], bool]) -> list[_Candidate]:
    actions = snap.add_actions()
    columns = [c for c in actions.column_names if c.startswith(("partition.", "min.", "max."))]
    found = []
    for row in actions.select(["path", "size_bytes", *columns]).to_pylist():
        if keep(row):
            values = {c: None if row[f"partition.{c}"] is None else str(row[f"partition.{c}"])
                      for c in snap.partition_columns}
            found.append(_Candidate(row["path"], values, row["size_bytes"]))
    return found


def _rewrite(storage: Storage, table: str, snap: Snapshot, candidates: Sequence[_Candidate],
             partition: str, *, whole: bool,
             write: Callable[[list[PlannedFile]], list[DataFile]]
             ) -> tuple[list[FileRemoval], list[DataFile], int, list[int]]:
    """Each candidate file that holds rows of `partition`, rewritten without them.

    Returns the removes, the files written, the rows removed and their seqs (event log).
    `whole`: every candidate holds only the partition (its own folder): removed, not read.
    """
    removes: list[FileRemoval] = []
    planned: list[PlannedFile] = []
    removed = 0
    seqs: list[int] = []
    for item in candidates:
        if whole:
            rows = _read_file(storage, table, item.path, ["seq"])
            seqs += rows.column("seq").to_pylist()
            removed += rows.num_rows
            removes.append(FileRemoval(item.path, item.values, item.size))
            continue
        rows = _read_file(storage, table, item.path)
        mask = _holds(rows, partition)
        hits = int(pc.sum(mask).as_py() or 0)
        if not hits:
            continue
        if "seq" in rows.column_names and table == EVENTS:
            seqs += rows.filter(mask).column("seq").to_pylist()
        removed += hits
        removes.append(FileRemoval(item.path, item.values, item.size))
        rest = rows.filter(pc.invert(mask))
        if rest.num_rows:
            planned.append(PlannedFile(item.values, rest))
    return removes, write(planned) if planned else [], removed, seqs


def _commit(storage: Storage, table: str, snap: Snapshot, removes: list[FileRemoval],
            files: list[DataFile], txns: list[tuple[str, int, bool]], erase_id: str) -> int:
    from deltalake.exceptions import CommitFailedError

    try:
        return commit_on(storage, table, snap, Commit(
            adds=[f.action for f in files], removes=removes, txns=txns,
            info={"eventlake.operation": "erase", "eventlake.erase": erase_id},
            operation="DELETE", mode="Overwrite"), partition_by=snap.partition_columns)
    except CommitFailedError:
        delete_files(storage, table, files)
        raise


def _erase_view_table(storage: Storage, table: str, partition: str, erase_id: str
                      ) -> TableErasure:
    app = view_app_id(table.removeprefix(f"{_VIEWS}/"))

    def attempt() -> TableErasure:
        snap = Snapshot.load(storage, table)
        buckets = int(snap.configuration.get(BUCKETS_KEY) or DEFAULT_BUCKETS)
        bucket = str(bucket_of(partition, buckets))
        candidates = _candidates(snap, lambda row: str(row["partition.bucket"]) == bucket)

        def write(planned: list[PlannedFile]) -> list[DataFile]:
            return write_files(storage, table, planned, stats_columns=(),
                               statistics_columns=("partition_id", "last_seq"))

        with storage.writing(table, note="the view keeps the partition's rows"):
            removes, files, rows, _ = _rewrite(storage, table, snap, candidates, partition,
                                               whole=False, write=write)
            if not removes:
                return TableErasure(table, None, (), 0, 0)
            counter = (snap.transaction_version(f"{app}/commits") or 0) + 1
            version = _commit(storage, table, snap, removes, files,
                              [(f"{app}/commits", counter, False)], erase_id)
        return TableErasure(table, version, tuple(r.path for r in removes), len(files), rows)

    return retry_commit(attempt, what=f"erase of a partition from {table}")


def _erase_log(lake: LakeParts, partition: str, erase_id: str,
               record_seqs: Callable[[Sequence[int]], None]) -> TableErasure:
    storage = lake.storage

    def attempt() -> TableErasure:
        snap = lake.log.snapshot()
        layout = lake.log.layout(snap)
        if layout.kind == "partition_id":
            candidates = _candidates(snap, lambda row: row["partition.partition_id"] == partition)
        else:
            bucket = str(bucket_of(partition, layout.bucket_count))

            def keep(row: dict[str, Any]) -> bool:
                value = row[f"partition.{BUCKET_COLUMN}"]
                low, high = row.get("min.partition_id"), row.get("max.partition_id")
                inside = low is None or high is None or low <= partition <= high
                return (value is None or str(value) == bucket) and inside

            candidates = _candidates(snap, keep)

        def write(planned: list[PlannedFile]) -> list[DataFile]:
            return lake.log._write(planned, layout)

        with storage.writing(EVENTS, note="the event log keeps the partition's events"):
            removes, files, rows, seqs = _rewrite(
                storage, EVENTS, snap, candidates, partition,
                whole=layout.kind == "partition_id", write=write)
            if not removes:
                return TableErasure(EVENTS, None, (), 0, 0)
            try:
                record_seqs(seqs)
            except BaseException:
                delete_files(storage, EVENTS, files)
                raise
            # The seq counter, unchanged: an append landing meanwhile (which sets it) makes
            # this commit fail on every store, so its events are never left half erased.
            last = snap.transaction_version(SEQ_APP_ID) or 0
            version = _commit(storage, EVENTS, snap, removes, files,
                              [(SEQ_APP_ID, last, False)], erase_id)
        return TableErasure(EVENTS, version, tuple(r.path for r in removes), len(files), rows)

    return retry_commit(attempt, what="erase of a partition from the event log")


# -- vacuum ----------------------------------------------------------------------------------


def _dead_files_holding(storage: Storage, table: str, partition: str) -> list[str]:
    """Data files of `table` (relative paths) that its current version does not reference and
    that hold rows of `partition`: kept for time travel until a vacuum, or orphans."""
    import pyarrow.parquet as pq

    if not storage.exists(table):
        return []
    snap = Snapshot.load(storage, table)
    live = {unquote(p) for p in snap.add_actions().column("path").to_pylist()}
    fs, base = storage.file_system(table)
    found = []
    for info in list_files(fs, base):
        relative = relative_path(base, info.path)
        parts = relative.split("/")
        if relative in live or any(part.startswith(("_", ".")) for part in parts):
            continue
        owner = [unquote(p.split("=", 1)[1]) for p in parts[:-1]
                 if p.startswith("partition_id=")]
        if owner:
            if owner[0] == partition:
                found.append(relative)
            continue
        try:
            with fs.open_input_file(info.path) as handle:
                parquet = pq.ParquetFile(handle)
                if "partition_id" not in parquet.schema_arrow.names:
                    continue
                if _outside(parquet.metadata, partition):
                    continue
                rows = parquet.read(columns=["partition_id"])
        except Exception:
            continue  # not a readable Parquet file: doctor reports it
        if pc.any(_holds(rows, partition)).as_py():
            found.append(relative)
    return sorted(found)


def _outside(metadata: Any, partition: str) -> bool:
    """Whether every row group's `partition_id` statistics exclude `partition`."""
    index = metadata.schema.to_arrow_schema().get_field_index("partition_id")
    for number in range(metadata.num_row_groups):
        stats = metadata.row_group(number).column(index).statistics
        if stats is None or not stats.has_min_max:
            return False
        if stats.min <= partition <= stats.max:
            return False
    return True


