"""The event log: an append-only Delta table with a gap-free global `seq`.

How `seq` stays gap-free with many writers and no lock service: the last assigned seq is kept
as the version of one Delta app transaction (`SEQ_APP_ID`). Every append reads it from a pinned
snapshot, numbers its rows from there, and commits *on that snapshot* carrying the same app id.
Delta refuses a commit whose app transaction was changed by a commit it did not see, so a writer
that lost the race re-reads and renumbers; it never writes a duplicate or leaves a hole.
(The one hole there can be is deliberate: `eventlake.ops.erase` removes a partition's events
and records their seq ranges in `eventlake.store.erasures`, which gap checks accept.)

Exactly-once batches use the same mechanism: `(producer, batch_no)` becomes its own app id whose
version is the batch's last seq, checked before writing and made conflict-safe by the commit.
A batch key carries the time it was written, and the table's
`delta.setTransactionRetentionDuration` (`BATCH_KEY_RETENTION`, 7 days) lets Delta forget it
after that: a batch re-sent within the retention of landing is recognized as a duplicate, and
the log's snapshot does not grow with every batch ever written. The seq counter never expires.

The physical layout (`eventlake.layout`) is chosen when the log is created: Hive folders per
`partition_id`, or per `bucket` of a stable hash of it. In the `buckets` layout a batch too small
to fill its buckets (fewer than `TAIL_ROWS_PER_BUCKET` rows per bucket) is written as one file
in the *tail*, the rows whose `bucket` is still null; once the tail holds `TAIL_FILES` (64)
files, the append that finds it so sorts it into the buckets (`compact_tail`), in a commit of
its own that changes no row. The data files of a commit are written by eventlake
(`eventlake.store.datafiles`), in parallel, and deleted again when their commit loses a race; on a
local lake the commit itself is eventlake's own put-if-absent write of the next log version
(`eventlake.store.deltalog`), elsewhere it is delta-rs's (`create_write_transaction` with no
retries), with the same outcome.
"""

from __future__ import annotations

import re
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError

from eventlake._settings import Origin, Spec, resolve
from eventlake.errors import (
    CommitConflictError,
    InvalidEventError,
    LakeNotFoundError,
    MarkedError,
    StaleLogError,
    StorageWarning,
)
from eventlake.model.events import EVENT_SCHEMA, TS_TYPE, NormalizedBatch
from eventlake.model.layout import BUCKET_COLUMN, Layout, bucket_ids
from eventlake.store.datafiles import DataFile, PlannedFile, delete_files, write_files
from eventlake.store.deltalog import Commit, FileRemoval
from eventlake.store.storage import ScanPlan, Snapshot, Storage, commit_on, retry_commit

__all__ = [
    "BATCH_APP_PREFIX",
    "BATCH_KEY_RETENTION",
    "EVENTS",
    "LAYOUT",
    "LAYOUT_APP_ID",
    "SEQ_APP_ID",
    "TAIL_FILES",
    "AppendResult",
    "EventLog",
    "StaleLogError",
    "TailCompaction",
    "batch_app_id",
    "check_batch_key",
    "default_layout",
    "log_schema",
    "plan_files",
]

EVENTS = "events"
SEQ_APP_ID = "eventlake.seq"
# Every batch key's app id starts so (`batch_app_id`); `restore` finds them by it.
BATCH_APP_PREFIX = "eventlake.batch/"
# A relayout records the bucket count it wrote as this app transaction (table properties
# cannot change in the same commit); it wins over the `eventlake.layout.buckets` property.
LAYOUT_APP_ID = "eventlake.layout/buckets"
LAYOUT_KEY = "eventlake.layout"
LAYOUT_BUCKETS_KEY = "eventlake.layout.buckets"
BATCH_KEY_RETENTION = "interval 7 days"
# A batch with fewer rows than this per bucket goes to the tail as one file.
TAIL_ROWS_PER_BUCKET = 256
# The append that finds this many tail files sorts them into their buckets: fewer, larger
# sorts cost less per event; more tail files cost a partition's reads more files.
TAIL_FILES = 64
_TABLE_CONFIGURATION: dict[str, str | None] = {
    # Checkpoints keep opening the log cheap as commits pile up.
    "delta.checkpointInterval": "50",
    "delta.setTransactionRetentionDuration": BATCH_KEY_RETENTION,
    # delta-rs would otherwise list the whole `_delta_log` after every commit to look for
    # expired files; eventlake cleans them up at each checkpoint instead.
    "delta.enableExpiredLogCleanup": "false",
}
_MAX_KEY_CHARS = 512
_BAD_PRODUCER = re.compile(r"[/\x00-\x1f\x7f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# Payloads and event ids are nearly unique per row: dictionary pages and min/max statistics on
# them cost more write time than the whole rest of the batch and never prune a read. Labels
# repeat, so they are dictionary-encoded; `seq` (and, in bucket files, `partition_id`) keep their
# statistics, which incremental and per-partition reads prune on.
_DICTIONARY_COLUMNS = ("partition_id", "type", "batch_id")
_STATISTICS_COLUMNS = ("seq", "partition_id", "ts", "ingested_at")


def _layout_text(raw: Any, origin: Origin) -> Layout:
    return Layout.parse(raw)


# No pyproject.toml key: `Lake.open` is a library call, which the working folder's project
# file must not steer.
LAYOUT: Spec[Layout] = Spec(name="layout", flag="--layout", env="EVENTLAKE_LAYOUT", key=None,
                            parse=_layout_text, default=Layout)


def default_layout(layout: Layout | None = None) -> Layout:
    """The layout of a new lake: `layout`, else `$EVENTLAKE_LAYOUT` (`partition_id`,
    `buckets` or `buckets:<N>`), else `partition_id`."""
    return resolve(LAYOUT, layout).value


def log_schema(layout: Layout) -> pa.Schema:
    """The event log table's schema: the event columns, plus `bucket` for that layout
    (nullable: rows of the tail have none yet)."""
    if layout.kind == "partition_id":
        return EVENT_SCHEMA
    return EVENT_SCHEMA.append(pa.field(BUCKET_COLUMN, pa.int32(), nullable=True))


def batch_app_id(producer: str, batch_no: int | str) -> str:
    """The Delta app id that records that `(producer, batch_no)` has landed.

    Unambiguous because a producer never contains '/' (`check_batch_key` enforces it).
    """
    return f"{BATCH_APP_PREFIX}{producer}/{batch_no}"


def _check_marks(marks: Mapping[str, int] | None) -> list[tuple[str, int]]:
    if not marks:
        return []
    for app, version in marks.items():
        if (not app or app.startswith(BATCH_APP_PREFIX) or app == SEQ_APP_ID
                or _CONTROL.search(app)) or isinstance(version, bool) or not isinstance(
                    version, int) or version < 0:
            raise InvalidEventError("bad mark", field="marks", value=(app, version),
                                    expected="an app id outside the batch keys and a "
                                             "version >= 0")
    return sorted(marks.items())


def check_batch_key(producer: object, batch_no: object) -> tuple[str, int | str] | None:
    """Validate an exactly-once key; None when neither part is given."""
    if producer is None and batch_no is None:
        return None
    if producer is None or batch_no is None:
        missing = "producer" if producer is None else "batch_no"
        raise InvalidEventError(f"{missing} is missing: producer and batch_no go together",
                                field=missing, expected="both or neither")
    if (not isinstance(producer, str) or not producer or len(producer) > _MAX_KEY_CHARS
            or _BAD_PRODUCER.search(producer)):
        raise InvalidEventError("bad producer", field="producer", value=producer,
                                expected=f"a non-empty string of at most {_MAX_KEY_CHARS} "
                                         "characters without '/' or control characters")
    if isinstance(batch_no, bool) or not isinstance(batch_no, int | str) or (
            isinstance(batch_no, str) and (not batch_no or len(batch_no) > _MAX_KEY_CHARS
                                           or _CONTROL.search(batch_no))):
        raise InvalidEventError("bad batch_no", field="batch_no", value=batch_no,
                                expected=f"an int, or a non-empty string of at most "
                                         f"{_MAX_KEY_CHARS} characters without control "
                                         "characters")
    return producer, batch_no


@dataclass(frozen=True)
class TailCompaction:
    """What one `compact_tail` did: tail files removed, bucket files added (one per bucket
    in `buckets`), the rows they hold, and the version of its commit (None: no commit)."""

    files_removed: int = 0
    files_added: int = 0
    rows: int = 0
    version: int | None = None
    buckets: tuple[int, ...] = ()


@dataclass(frozen=True)
class AppendResult:
    """What one `append` did.

    `partitions` are the distinct partitions of the batch, sorted; `version` is the Delta
    version of the commit. For a duplicate `(producer, batch_no)` nothing was written: `count`
    is 0, `first_seq` and `version` are None, `partitions` is empty and `last_seq` is the last
    seq of the batch that landed first.
    """

    first_seq: int | None
    last_seq: int | None
    count: int
    partitions: tuple[str, ...]
    duplicate: bool
    batch_id: str
    version: int | None


class EventLog:
    """Read and write side of `<root>/events`."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    @classmethod
    def open(cls, storage: Storage, *, create: bool = True, layout: Layout | None = None
             ) -> EventLog:
        """The log of `storage`; a missing one is created (unless `create=False`) with
        `layout` (default: `partition_id`). An existing log keeps its own layout: asking for
        another one is an error that points at `relayout`."""
        log = cls(storage)
        if not storage.exists(EVENTS):
            if not create:
                raise LakeNotFoundError(f"no event log at {storage.uri(EVENTS)}")
            chosen = default_layout(layout)
            configuration = dict(_TABLE_CONFIGURATION)
            configuration[LAYOUT_KEY] = chosen.kind
            if chosen.buckets is not None:
                configuration[LAYOUT_BUCKETS_KEY] = str(chosen.buckets)
            try:
                DeltaTable.create(
                    storage.uri(EVENTS),
                    schema=log_schema(chosen),
                    partition_by=[chosen.partition_column],
                    name="events",
                    description="eventlake event log",
                    configuration=configuration,
                    storage_options=storage.options or None,
                    raise_if_key_not_exists=False,
                )
            except Exception as exc:
                # Another process created it first; that is as good as creating it.
                if not storage.exists(EVENTS):
                    raise exc
        if layout is not None:
            current = log.layout()
            if current != layout:
                raise InvalidEventError(
                    f"the lake at {storage.root} has the {current.describe()} layout, not "
                    f"{layout.describe()}: move it with `eventlake maintain --relayout "
                    f"{layout.kind}` (lake.relayout)", field="layout", value=layout.kind,
                    expected=current.kind)
        return log

    def snapshot(self, *, version: int | None = None) -> Snapshot:
        return Snapshot.load(self.storage, EVENTS, version=version)

    def layout(self, snapshot: Snapshot | None = None) -> Layout:
        """The layout of the log at `snapshot` (default: the latest version)."""
        snap = snapshot or self.snapshot()
        if BUCKET_COLUMN not in snap.partition_columns:
            return Layout()
        count = snap.transaction_version(LAYOUT_APP_ID)
        if count is None or count < 1:
            # None: never relaid; below 1: a restore revoked the relayout that wrote it.
            count = int(snap.configuration.get(LAYOUT_BUCKETS_KEY) or 0) or None
        if count is None:
            raise LakeNotFoundError(f"the event log at {self.storage.uri(EVENTS)} is bucketed "
                                    "but records no bucket count")
        return Layout("buckets", count)

    def partitions(self, snapshot: Snapshot | None = None) -> list[str]:
        """Every partition with an event, sorted. The `partition_id` layout knows them from
        the Delta log; a bucketed log reads its `partition_id` column (one column, streamed)."""
        snap = snapshot or self.snapshot()
        actions = snap.add_actions()
        if not actions.num_rows:
            return []
        if BUCKET_COLUMN not in snap.partition_columns:
            return sorted(set(actions.column("partition.partition_id").to_pylist()))
        import polars as pl

        return sorted(snap.scan(snap.plan()).select(pl.col("partition_id").unique())
                      .collect().get_column("partition_id").to_list())

    def partition_sizes(self, snapshot: Snapshot | None = None, *,
                        until_seq: int | None = None, plan: ScanPlan | None = None
                        ) -> dict[str, int]:
        """Events per partition (up to `until_seq`), in the files of `plan` (default: all).

        The `partition_id` layout counts from the Delta log's statistics (no data is read;
        files holding events past `until_seq` count whole); a bucketed log reads the
        `partition_id` and `seq` columns of the files.
        """
        snap = snapshot or self.snapshot()
        if BUCKET_COLUMN not in snap.partition_columns and plan is None:
            actions = snap.add_actions()
            if until_seq is not None and actions.num_rows:
                actions = actions.filter(pc.less_equal(actions.column("min.seq"), until_seq))
            sizes: dict[str, int] = {}
            for partition, rows in zip(actions.column("partition.partition_id").to_pylist(),
                                       actions.column("num_records").to_pylist(), strict=True):
                sizes[partition] = sizes.get(partition, 0) + int(rows or 0)
            return sizes
        import polars as pl

        chosen = plan if plan is not None else snap.plan(max_seq=until_seq)
        if not chosen.files:
            return {}
        frame = snap.scan(chosen).select("partition_id", "seq")
        if until_seq is not None:
            frame = frame.filter(pl.col("seq") <= until_seq)
        counts = frame.group_by("partition_id").agg(pl.len()).collect()
        return dict(zip(counts.get_column("partition_id").to_list(),
                        counts.get_column("len").to_list(), strict=True))

    def last_seq(self, snapshot: Snapshot | None = None) -> int:
        snap = snapshot or self.snapshot()
        return snap.transaction_version(SEQ_APP_ID) or 0

    def landed(self, producer: str, batch_no: int | str, *,
               snapshot: Snapshot | None = None) -> int | None:
        """The last seq of the log when batch `(producer, batch_no)` landed, or None if it
        has not (or a restore took it out again)."""
        snap = snapshot or self.snapshot()
        landed = snap.transaction_version(batch_app_id(producer, batch_no))
        # A Delta app transaction cannot be deleted: `eventlake.ops.restore` revokes the key
        # of a batch it took out of the log by setting it to a negative version.
        return landed if landed is not None and landed >= 0 else None

    def mark(self, app_id: str, *, snapshot: Snapshot | None = None) -> int | None:
        """The version of mark `app_id` (see `append(marks=...)`), None when it was never
        set or a restore took it out again."""
        snap = snapshot or self.snapshot()
        found = snap.transaction_version(app_id)
        return found if found is not None and found >= 0 else None

    def append(
        self, batch: NormalizedBatch, *, producer: str | None = None,
        batch_no: int | str | None = None, expected_last_seq: int | None = None,
        marks: Mapping[str, int] | None = None,
        expect_marks: Mapping[str, int | None] | None = None,
    ) -> AppendResult:
        """Commit `batch` in one Delta commit, numbering it after the log's last seq.

        With `producer` and `batch_no` the batch lands at most once (a repeat returns
        `duplicate=True`). With `expected_last_seq` it lands only if the log's last seq is
        exactly that when it commits, else `StaleLogError` is raised and nothing is written.
        `marks` are more app transactions (`app id -> version`, ids outside the batch-key
        prefix) committed with the batch, so what they record holds exactly when it landed
        (a file ingest records its chunking and the content of a file name this way); read
        them back with `mark`. They expire with the batch keys.

        With `expect_marks` (`app id -> version`, None for a mark not set) the batch lands
        only while each of those marks holds the version given, checked on the version it
        commits on (a lost race checks again): else `MarkedError` names the marks that
        differ, and nothing is written. Expecting the marks it sets unset, or as the writer
        last read them, claims them: of writers racing for one, exactly one lands.
        """
        key = check_batch_key(producer, batch_no)
        extra = _check_marks(marks)
        batch_key = None if key is None else batch_app_id(*key)
        batch_id = (f"{key[0]}/{key[1]}" if key is not None
                    else f"anonymous/{uuid.uuid4().hex}")
        table = batch.table
        count = table.num_rows
        ingested_at = datetime.now(UTC)
        # Fixed before the retry loop, so a renumbered retry carries the same event ids.
        event_ids = _fill_event_ids(table.column("event_id"), batch_id)
        # Sorted in Arrow (UTF-8 byte order is code point order, Python's): a batch over a
        # million partitions holds hundreds of thousands of distinct ones.
        distinct = pc.unique(table.column("partition_id"))
        partitions = tuple(distinct.take(pc.array_sort_indices(distinct)).to_pylist())
        tail_used = False

        def attempt() -> AppendResult:
            nonlocal tail_used
            snap = self.snapshot()
            if key is not None:
                landed = self.landed(*key, snapshot=snap)
                if landed is not None:
                    return AppendResult(None, landed, 0, (), True, batch_id, None)
            if expect_marks:
                moved = sorted(app for app, version in expect_marks.items()
                               if self.mark(app, snapshot=snap) != version)
                if moved:
                    raise MarkedError(moved)
            last = snap.transaction_version(SEQ_APP_ID) or 0
            if expected_last_seq is not None and last != expected_last_seq:
                raise StaleLogError(expected=expected_last_seq, actual=last)
            if count == 0 and batch_key is None:
                return AppendResult(None, last, 0, (), False, batch_id, None)
            layout = self.layout(snap)
            rows = _with_log_columns(table, first_seq=last + 1, event_ids=event_ids,
                                     ingested_at=ingested_at, batch_id=batch_id)
            planned = plan_files(rows, layout)
            tail_used = layout.kind == "buckets" and any(
                f.partition.get(BUCKET_COLUMN) is None for f in planned)
            txns = [(SEQ_APP_ID, last + count, False)]
            if batch_key is not None:
                txns.append((batch_key, last + count, True))
            txns.extend((app, version, True) for app, version in extra)
            info = {"eventlake.batch_id": batch_id, "eventlake.first_seq": str(last + 1),
                    "eventlake.count": str(count)}
            # A full disk or a store that does not answer becomes one StorageError; a commit
            # that landed before a later step failed counts as landed (see Storage.writing).
            with self.storage.writing(EVENTS, base=snap.version,
                                      txn=(SEQ_APP_ID, last + count)) as written:
                files = self._write(planned, layout)
                version = self._commit(snap, layout, Commit(
                    adds=[f.action for f in files], txns=txns, info=info), files)
            return AppendResult(
                last + 1 if count else None, last + count, count, partitions, False, batch_id,
                version if written.landed_at is None else written.landed_at,
            )

        result = retry_commit(attempt, what=f"append of batch {batch_id}")
        if tail_used and not result.duplicate:
            self._tidy_tail()
        return result

    def _write(self, planned: Sequence[PlannedFile], layout: Layout, *,
               data_change: bool = True) -> list[DataFile]:
        """Write the planned files of `layout`; `data_change=False` for files that only move
        rows already in the log (tail compaction, relayout), so change readers skip them."""
        stats = ("seq",) if layout.kind == "partition_id" else ("seq", "partition_id")
        return write_files(self.storage, EVENTS, planned, stats_columns=stats,
                           dictionary_columns=_DICTIONARY_COLUMNS,
                           statistics_columns=_STATISTICS_COLUMNS, data_change=data_change)

    def _commit(self, snap: Snapshot, layout: Layout, commit: Commit,
                files: Sequence[DataFile]) -> int:
        """Commit on exactly `snap` (no retries): `CommitFailedError` when another writer
        committed first, after deleting `files`, which then no commit references."""
        try:
            return commit_on(self.storage, EVENTS, snap, commit,
                             partition_by=[layout.partition_column])
        except CommitFailedError:
            delete_files(self.storage, EVENTS, files)
            raise

    def plan(self, *, partitions: list[str] | None = None, since_seq: int | None = None,
             until_seq: int | None = None, snapshot: Snapshot | None = None) -> ScanPlan:
        """The files that can hold events of `partitions` in `(since_seq, until_seq]`."""
        snap = snapshot or self.snapshot()
        low = None if since_seq is None else since_seq + 1
        if partitions is None:
            return snap.plan(min_seq=low, max_seq=until_seq)
        layout = self.layout(snap)
        if layout.kind == "partition_id":
            return snap.plan(partitions=partitions, min_seq=low, max_seq=until_seq)
        # A partition's events are in its bucket, or still in the tail.
        return snap.plan(equals={BUCKET_COLUMN: [*layout.buckets_for(partitions), None]},
                         key_range=(min(partitions), max(partitions)),
                         min_seq=low, max_seq=until_seq)

    # -- the tail of a bucketed log --------------------------------------------------------

    def _tidy_tail(self) -> None:
        """After an append to the tail: compact the tail once it holds `TAIL_FILES` files.

        The append has committed by then; a compaction that fails or loses its race only
        leaves the tail for the next append (it is a warning, never the append's error).
        """
        try:
            snap = self.snapshot()
            if self.tail_files(snap) >= TAIL_FILES:
                self.compact_tail()
        except Exception as exc:  # the append itself has landed: do not fail it
            warnings.warn(StorageWarning(
                f"the append landed; compaction of the event log's tail was put off: {exc}"),
                stacklevel=3)

    def tail_files(self, snapshot: Snapshot | None = None) -> int:
        snap = snapshot or self.snapshot()
        if BUCKET_COLUMN not in snap.partition_columns:
            return 0
        actions = snap.add_actions()
        return int(pc.sum(pc.is_null(actions.column(f"partition.{BUCKET_COLUMN}"))).as_py()
                   or 0)

    def compact_tail(self) -> TailCompaction:
        """Sort every tail file into the buckets, in one commit that changes no row.

        Says what it did: nothing (all zero) when another writer compacted the tail first.
        """

        def attempt() -> TailCompaction:
            snap = self.snapshot()
            layout = self.layout(snap)
            if layout.kind != "buckets":
                return TailCompaction()
            actions = snap.add_actions()
            tail = actions.filter(pc.is_null(actions.column(f"partition.{BUCKET_COLUMN}")))
            if not tail.num_rows:
                return TailCompaction()
            plan = snap.plan(equals={BUCKET_COLUMN: [None]})
            rows = snap.scan(plan).collect().to_arrow()
            expected = int(pc.sum(tail.column("num_records")).as_py() or 0)
            if rows.num_rows != expected:
                raise CommitConflictError(
                    f"the event log's tail read {rows.num_rows} rows where its files log "
                    f"{expected}; nothing was committed")
            rows = rows.select(EVENT_SCHEMA.names).cast(EVENT_SCHEMA)
            planned = plan_files(rows, layout, tail=False)
            removes = [FileRemoval(path, {BUCKET_COLUMN: None}, size) for path, size in zip(
                tail.column("path").to_pylist(), tail.column("size_bytes").to_pylist(),
                strict=True)]
            with self.storage.writing(EVENTS, base=snap.version,
                                      note="the tail stays as it was"):
                files = self._write(planned, layout, data_change=False)
                version = self._commit(snap, layout, Commit(
                    adds=[f.action for f in files], removes=removes,
                    info={"eventlake.operation": "compact-tail"}, operation="OPTIMIZE",
                    mode="Append", data_change=False), files)
            return TailCompaction(tail.num_rows, len(files), rows.num_rows, version,
                                  tuple(int(str(f.partition[BUCKET_COLUMN])) for f in planned))

        return retry_commit(attempt, what="compaction of the event log's tail", attempts=5)


def plan_files(rows: pa.Table, layout: Layout, *, tail: bool = True) -> list[PlannedFile]:
    """The files of a batch: one per partition, or one per bucket (rows sorted by
    `(partition_id, seq)`), or, for a batch too small for its buckets, one tail file."""
    if not rows.num_rows:
        return []
    if layout.kind == "partition_id":
        return _runs(rows, "partition_id", lambda value: {"partition_id": value})
    count = layout.bucket_count
    if tail and rows.num_rows < count * TAIL_ROWS_PER_BUCKET:
        ordered = rows.sort_by([("partition_id", "ascending"), ("seq", "ascending")])
        return [PlannedFile({BUCKET_COLUMN: None}, ordered)]
    bucketed = rows.append_column(BUCKET_COLUMN, pa.array(bucket_ids(
        rows.column("partition_id"), count), pa.int32()))
    bucketed = bucketed.sort_by([(BUCKET_COLUMN, "ascending"), ("partition_id", "ascending"),
                                 ("seq", "ascending")])
    return _runs(bucketed, BUCKET_COLUMN, lambda value: {BUCKET_COLUMN: str(value)})


def _runs(rows: pa.Table, column: str, partition: Any) -> list[PlannedFile]:
    """One planned file per run of equal `column` values (sorted first, stably, so each
    file keeps the rows' order); the column itself is the file's Hive partition value."""
    keys = rows.column(column)
    if column == "partition_id":
        order = pc.sort_indices(rows, sort_keys=[(column, "ascending")])
        rows = rows.take(order)
        keys = rows.column(column)
    values = keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys
    body = rows.drop_columns([column])
    encoded = pc.dictionary_encode(values).indices.to_numpy(zero_copy_only=False)
    cuts = np.flatnonzero(np.diff(encoded)) + 1 if len(encoded) > 1 else np.array([], int)
    starts = np.concatenate([[0], cuts]).astype(int)
    ends = np.concatenate([cuts, [len(encoded)]]).astype(int)
    return [PlannedFile(partition(values[int(a)].as_py()), body.slice(int(a), int(b - a)))
            for a, b in zip(starts, ends, strict=True)]


def _fill_event_ids(ids: pa.ChunkedArray, batch_id: str) -> pa.Array:
    n = len(ids)
    generated = pc.binary_join_element_wise(
        pa.scalar(f"{batch_id}/"), pc.cast(pa.array(np.arange(n, dtype=np.int64)), pa.string()),
        ""
    )
    if ids.null_count == 0:
        return ids.combine_chunks()
    if ids.null_count == n:
        return generated
    filled = pc.coalesce(ids.combine_chunks(), generated)
    if pc.count_distinct(filled).as_py() != n:
        # A caller-supplied id equals an id generated for another record of the batch.
        seen: dict[str, int] = {}
        for index, value in enumerate(filled.to_pylist()):
            if value in seen:
                raise InvalidEventError(
                    f"event_id is also the id of record {seen[value]} (one of the two was "
                    "generated)", index=index, field="event_id", value=value,
                    expected="event ids unique within a batch")
            seen[value] = index
    return filled


def _with_log_columns(table: pa.Table, *, first_seq: int, event_ids: pa.Array,
                      ingested_at: datetime, batch_id: str) -> pa.Table:
    n = table.num_rows
    stamp = pa.scalar(ingested_at, TS_TYPE)
    ingested = pa.repeat(stamp, n)
    ts = table.column("ts")
    if ts.null_count:
        ts = pc.coalesce(ts, stamp)
    return pa.table(
        {
            "seq": pa.array(np.arange(first_seq, first_seq + n, dtype=np.int64)),
            "partition_id": table.column("partition_id"),
            "type": table.column("type"),
            "payload": table.column("payload"),
            "event_id": event_ids,
            "ts": ts,
            "ingested_at": ingested,
            "batch_id": pa.repeat(pa.scalar(batch_id, pa.string()), n),
        },
        schema=EVENT_SCHEMA,
    )
