"""The refresh engine: read what changed, fold it with `folds`, commit rows and watermark.

Incremental refresh of a view: events above the view's watermark are read in seq-range chunks
(of at most `chunks.Chunk` decoded bytes or events, whichever comes first);
for each chunk only the buckets holding the touched partitions are read, folded and rewritten
in one commit that also advances the watermark. A rebuild (new view version, `rebuild=True`,
or a first build) writes a new generation bucket by bucket, reading only the events of the
partitions in those buckets, and flips readers to it in a final atomic commit.
"""

from __future__ import annotations

import json
import time
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow.compute as pc

from eventlake.engine.chunks import DEFAULT_CHUNK_BYTES, DEFAULT_CHUNK_EVENTS, Chunk, SeqBytes
from eventlake.errors import (
    CorruptLakeError,
    EventlakeError,
    MaterializeError,
    PartitionFailedError,
    RebuildSupersededError,
    ReducerError,
    StorageWarning,
    ViewChangedError,
    ViewDefinitionError,
)
from eventlake.fold.folds import FAILURE, event_columns, fold_events, fold_view, start_state
from eventlake.fold.sqlfold import whole_history
from eventlake.model.events import EVENT_SCHEMA
from eventlake.model.layout import BUCKET_COLUMN, bucket_ids, bucket_of, buckets_of
from eventlake.model.progress import Progress, ProgressSink
from eventlake.model.views import MISMATCHES, AggregateView, SqlView, View, definition_fingerprint
from eventlake.store.filebytes import decoded_bytes
from eventlake.store.refreshrecords import (
    RefreshRecord,
    read_refresh_record,
    write_refresh_record,
)
from eventlake.store.storage import Snapshot, retry_commit
from eventlake.store.viewstore import (
    DEFAULT_BUCKETS,
    ViewStore,
    logical_columns,
)

if TYPE_CHECKING:
    from eventlake.engine.buckettasks import Workers
    from eventlake.store.parts import LakeParts

__all__ = ["DEFAULT_CHUNK_BYTES", "DEFAULT_CHUNK_EVENTS", "Chunk", "EventWindow",
           "MaterializeError", "MaterializeResult", "PartitionFailure", "failed_partitions",
           "materialize_views", "read_events", "read_state", "refresh_view"]


@dataclass(frozen=True)
class MaterializeResult:
    """What one view's refresh did."""

    view: str
    version: int
    partitions: int
    events: int
    old_watermark: int
    new_watermark: int
    seconds: float
    rebuilt: bool
    commits: int
    # Partitions that failed in this refresh (their rows stopped at the failing event and
    # committed; see `failed_partitions` for all of a view's), and those a retry brought
    # current again.
    failed: tuple[str, ...] = ()
    recovered: tuple[str, ...] = ()
    # A typed view with on_mismatch="null": values this refresh stored as null (or dropped,
    # for a key not declared) because they did not fit the columns. Each row counts its own
    # in its `mismatches` column.
    nulls: int = 0


@dataclass(frozen=True)
class PartitionFailure:
    """A partition a view stopped folding: the event its reducer (or an aggregate's value)
    failed on. Its row holds the state before that event, folded up to `last_seq`."""

    view: str
    partition: str
    seq: int
    event_type: str
    error: str
    last_seq: int

    def error_object(self) -> PartitionFailedError:
        return PartitionFailedError(view=self.view, partition=self.partition, seq=self.seq,
                                    event_type=self.event_type, cause=self.error)


def materialize_views(lake: LakeParts, views: Sequence[View], *, rebuild: bool = False,
                      chunk_events: int | None = None, chunk_bytes: int | None = None,
                      progress: ProgressSink | None = None,
                      retry_failed: bool = False, accept_changed_definition: bool = False,
                      workers: Workers | None = None) -> dict[str, MaterializeResult]:
    """Refresh each view; a failing view does not stop the others (they still commit).

    With `workers`, a view's rebuild runs as bucket tasks on their executor
    (`engine.buckettasks`), committed once.

    A partition that fails does not fail its view (see `MaterializeResult.failed`); a view
    fails when its definition changed under the same version (`ViewChangedError`) or its
    `initial_state` cannot be stored. Storage errors and lost commit races propagate.
    """
    results: dict[str, MaterializeResult] = {}
    failures: dict[str, EventlakeError] = {}
    # Views usually stand at the same watermark: read each window of new events once for all.
    log = lake.log.snapshot()
    head = lake.log.last_seq(log)
    columns = {c: None for view in views for c in event_columns(view)}
    window = EventWindow(columns=list(columns), snapshot=log)
    for view in views:
        try:
            results[view.name] = refresh_view(
                lake, view, rebuild=rebuild, chunk_events=chunk_events,
                chunk_bytes=chunk_bytes, progress=progress,
                target_seq=head, window=window, retry_failed=retry_failed,
                accept_changed_definition=accept_changed_definition, workers=workers)
        except (ReducerError, ViewDefinitionError) as exc:
            failures[view.name] = exc
    if failures:
        raise MaterializeError(failures, results)
    return results


class EventWindow:
    """The last window of events read, `(since, until]`, shared by the views of one refresh.

    `columns` are the event columns to read (default: all); they must cover what every view
    sharing the window folds (`folds.event_columns`). `snapshot` pins the log version read
    (default: the latest at each read); it must hold every seq a window asks for.
    """

    def __init__(self, *, columns: Sequence[str] | None = None,
                 snapshot: Snapshot | None = None) -> None:
        self.columns = None if columns is None else tuple(columns)
        self.snapshot = snapshot
        self._key: tuple[int, int] | None = None
        self._events: pl.DataFrame | None = None

    def read(self, lake: LakeParts, since: int, until: int, *, whole: bool = True
             ) -> pl.DataFrame:
        """Events in `(since, until]`; `whole=False` reads only those rows of each file
        (when the files hold much more than the window, in bytes)."""
        if self._key != (since, until) or self._events is None:
            self._events = read_events(lake, since_seq=since, until_seq=until,
                                       columns=self.columns, snapshot=self.snapshot,
                                       whole_files=2 * (until - since) + 10_000 if whole else 0)
            self._key = (since, until)
        return self._events


def read_events(lake: LakeParts, partitions: Sequence[str] | None = None, *,
                since_seq: int | None = None, until_seq: int | None = None,
                columns: Sequence[str] | None = None, snapshot: Snapshot | None = None,
                whole_files: int = 2 * DEFAULT_CHUNK_EVENTS) -> pl.DataFrame:
    """`lake.events(...).collect()` (only `columns`, if given), read the cheaper way.

    Polars pushes the `seq` bounds into the read of every file, and on a window spread over
    many small files (a batch over 1,000 partitions writes 1,000) that cost more than reading
    the files whole: the plan already kept only files whose seq range overlaps. So files are
    read whole and filtered after, unless they hold more than `whole_files` rows (compacted
    history), where the pushed-down filter keeps memory to the rows wanted.
    """
    snap = snapshot or lake.log.snapshot()
    plan = lake.log.plan(partitions=None if partitions is None else list(partitions),
                         since_seq=since_seq, until_seq=until_seq, snapshot=snap)
    if plan.rows > whole_files:
        frame = lake.events(partitions, since_seq=since_seq, until_seq=until_seq, snapshot=snap)
        return (frame if columns is None else frame.select(columns)).collect()
    # The event columns only, as `lake.events` gives them (a bucketed log also has `bucket`).
    scan = snap.scan(plan).select(EVENT_SCHEMA.names)
    if columns is not None:
        scan = scan.select(list(dict.fromkeys([*columns, "seq", "partition_id"])))
    # One chunk per file comes back; every later step on a thousand tiny chunks pays for each.
    events = scan.collect().rechunk()
    keep = []
    if partitions is not None:
        keep.append(pl.col("partition_id").is_in(list(partitions)))
    if since_seq is not None:
        keep.append(pl.col("seq") > since_seq)
    if until_seq is not None:
        keep.append(pl.col("seq") <= until_seq)
    events = (events.filter(*keep) if keep else events).sort("seq")
    return events if columns is None else events.select(columns)


def refresh_view(lake: LakeParts, view: View, *, rebuild: bool = False,
                 chunk_events: int | None = None, chunk_bytes: int | None = None,
                 progress: ProgressSink | None = None,
                 target_seq: int | None = None, window: EventWindow | None = None,
                 retry_failed: bool = False, accept_changed_definition: bool = False,
                 workers: Workers | None = None) -> MaterializeResult:
    """Bring one view up to `target_seq` (default: the log's last seq).

    A view whose definition changed while its version did not is refused before anything is
    written (`ViewChangedError`), unless `accept_changed_definition` records the new one;
    `rebuild=True` rebuilds it from the new definition. `retry_failed` first folds the
    failed partitions again from where they stopped. Each step reads at most `chunk_bytes`
    decoded bytes of events (default `DEFAULT_CHUNK_BYTES`) or `chunk_events` events
    (default `DEFAULT_CHUNK_EVENTS`), whichever limit it reaches first.

    Every run, whether it folded anything, found nothing to do or failed, leaves the view's
    refresh record (`store.refreshrecords`), which freshness reports read.
    """
    previous = read_refresh_record(lake.storage, view.name)
    record = (previous if previous is not None and previous.version == view.version
              else RefreshRecord(view.name, view.version))
    try:
        result = _refresh_view(lake, view, rebuild=rebuild,
                               chunk=Chunk.of(events=chunk_events, bytes=chunk_bytes),
                               progress=progress, target_seq=target_seq, window=window,
                               retry_failed=retry_failed,
                               accept_changed_definition=accept_changed_definition,
                               workers=workers)
    except Exception as exc:
        _keep_record(lake, record.failed(at=datetime.now(UTC),
                                         error=f"{type(exc).__name__}: {exc}"[:2000]),
                     quiet=True)
        raise
    _keep_record(lake, record.succeeded(at=datetime.now(UTC), seconds=result.seconds,
                                        watermark=result.new_watermark, events=result.events))
    return result


def _keep_record(lake: LakeParts, record: RefreshRecord, *, quiet: bool = False) -> None:
    # The refresh's outcome stands whatever happens to its record: a record that cannot be
    # written is said, not raised (the next run writes it again); after a failed refresh the
    # refresh's own error is what matters (a full disk fails both), so nothing is added.
    try:
        write_refresh_record(lake.storage, record)
    except Exception as exc:
        if quiet:
            return
        warnings.warn(f"could not record the refresh of view {record.view!r}: {exc}",
                      RuntimeWarning, stacklevel=3)


def _refresh_view(lake: LakeParts, view: View, *, rebuild: bool,
                  chunk: Chunk, progress: ProgressSink | None,
                  target_seq: int | None, window: EventWindow | None,
                  retry_failed: bool, accept_changed_definition: bool,
                  workers: Workers | None = None) -> MaterializeResult:
    started = time.perf_counter()
    window = window or EventWindow(columns=event_columns(view))
    store = ViewStore(lake.storage, view)
    fingerprint = definition_fingerprint(view)
    due = True
    if store.exists():
        snap = store.snapshot()
        if not rebuild:
            snap = store.check_definition(snap, accept=accept_changed_definition)
        before = store.marks(snap)
        due = rebuild or before.active is None or before.active_version != view.version
    # A new view table on a bucketed log takes the log's bucket count: view bucket b is then
    # log bucket b, and a rebuild of one reads only the other.
    store.ensure(retype=due, buckets=lake.log.layout().buckets or DEFAULT_BUCKETS)
    head = lake.log.last_seq() if target_seq is None else target_seq
    built = store.snapshot()
    marks = store.marks(built)
    old_watermark = store.watermark(built)
    partitions: set[str] = set()
    failed: set[str] = set()
    recovered: tuple[str, ...] = ()
    events = 0
    commits = 0
    nulls = 0
    rebuilt = False
    resume = (marks.building is not None and marks.building_version == view.version
              and marks.building_fingerprint in (None, fingerprint) and not rebuild)
    if rebuild or resume or marks.active is None or marks.active_version != view.version:
        if workers is not None:
            from eventlake.engine.buckettasks import rebuild_on

            touched, folded, commits, broken, nulls = rebuild_on(
                workers, lake, store, chunk=chunk, progress=progress)
        else:
            touched, folded, commits, broken, nulls = _rebuild(
                lake, store, chunk=chunk, fresh=not resume, progress=progress)
        partitions |= touched
        failed |= broken
        events += folded
        rebuilt = True
    elif retry_failed:
        if workers is not None:
            from eventlake.engine.buckettasks import retry_on

            touched, folded, steps, broken, nulls = retry_on(workers, lake, store, chunk)
        else:
            touched, folded, steps, broken, nulls = _retry_failed(lake, store, chunk)
        recovered = tuple(sorted(touched - broken))
        partitions |= touched
        failed |= broken
        events += folded
        commits += steps
    while True:
        step = retry_commit(lambda: _refresh_step(lake, store, head, chunk, window)
                            if workers is None else _refresh_step_on(workers, lake, store, head,
                                                                     chunk, window),
                            what=f"refresh of view {view.name!r}")
        final = step.watermark
        if not step.committed:
            break
        partitions |= step.touched
        failed |= step.failed
        events += step.events
        nulls += step.nulls
        commits += 1
        if progress is not None:
            progress(Progress(view.name, final, head, "seq"))
        if final >= head:
            break  # what the step committed is the watermark: no need to read it back
    return MaterializeResult(view.name, view.version, len(partitions), events, old_watermark,
                             final, time.perf_counter() - started, rebuilt, commits,
                             tuple(sorted(failed)), recovered, nulls)


@dataclass(frozen=True)
class _Step:
    """One refresh step: whether it committed, what it folded, the watermark after it."""

    committed: bool
    watermark: int
    touched: frozenset[str] = frozenset()
    events: int = 0
    failed: frozenset[str] = frozenset()
    nulls: int = 0


def _same_definition(store: ViewStore, marks: Any) -> None:
    """Refuse to commit onto rows another definition of this version wrote meanwhile."""
    stored = marks.fingerprint
    if stored is not None and stored != definition_fingerprint(store.view):
        raise ViewChangedError(store.view.name, store.view.version)


def _refresh_step(lake: LakeParts, store: ViewStore, head: int, chunk: Chunk,
                  window: EventWindow) -> _Step:
    snap = store.snapshot()
    marks = store.marks(snap)
    assert marks.active is not None
    if marks.watermark >= head:
        return _Step(False, marks.watermark)
    _same_definition(store, marks)
    since = marks.watermark
    end, sized = _window_end(lake, window, since, head, chunk)
    # Files holding many more bytes than the window are read only for its rows.
    events = window.read(lake, since, end, whole=sized.files_to(end).within(2 * chunk.bytes))
    touched = sorted(set(events.get_column("partition_id").to_list()))
    buckets = sorted(set(buckets_of(touched, store.buckets(snap))))
    prior = store.read_buckets(snap, buckets, generation=marks.active) if buckets else None
    recomputed = None
    if touched and whole_history(store.view):
        from eventlake.engine.sqlrefresh import recompute_touched

        recomputed = recompute_touched(lake, store.view, touched, end,
                                       chunk=chunk.events_at(sized.per_event),
                                       snapshot=window.snapshot)
    rows = _replace_partitions(store, snap, prior, events, new_rows=recomputed)
    store.commit_buckets(snap, rows, buckets=buckets, generation=marks.active,
                         marks={f"v{store.view.version}": end,
                                "fingerprint": definition_fingerprint(store.view)})
    return _Step(True, end, frozenset(touched), events.height, _newly_failed(prior, rows),
                 _nulled(rows) - _nulled(prior))


def _window_end(lake: LakeParts, window: EventWindow, since: int, head: int, chunk: Chunk
                ) -> tuple[int, SeqBytes]:
    """Where the refresh step after `since` ends: within `chunk` and `head`; and the sizes
    of the files it reads."""
    limit = min(head, since + chunk.events)
    sized = SeqBytes.of_files(window.snapshot or lake.log.snapshot(), since=since, until=limit)
    return sized.end(since, limit, chunk.bytes), sized


def _refresh_step_on(workers: Workers, lake: LakeParts, store: ViewStore, head: int,
                     chunk: Chunk, window: EventWindow) -> _Step:
    """`_refresh_step` with the touched buckets folded by bucket tasks (small windows, below
    `workers.min_events`, stay in this process: a task costs more than they do)."""
    from eventlake.engine.buckettasks import refresh_on

    snap = store.snapshot()
    marks = store.marks(snap)
    assert marks.active is not None
    if marks.watermark >= head:
        return _Step(False, marks.watermark)
    end, _ = _window_end(lake, window, marks.watermark, head, chunk)
    if end - marks.watermark < workers.min_events:
        return _refresh_step(lake, store, head, chunk, window)
    _same_definition(store, marks)
    done = refresh_on(workers, lake, store, snap, since=marks.watermark, end=end, chunk=chunk,
                      snapshot=window.snapshot)
    touched, events, failed, nulls = done
    return _Step(True, end, frozenset(touched), events, frozenset(failed), nulls)


def _failed_set(rows: pl.DataFrame | None) -> set[str]:
    if rows is None or not rows.height or FAILURE not in rows.columns:
        return set()
    return set(rows.filter(pl.col(FAILURE).is_not_null()).get_column("partition_id").to_list())


def _newly_failed(prior: pl.DataFrame | None, rows: pl.DataFrame) -> frozenset[str]:
    return frozenset(_failed_set(rows) - _failed_set(prior))


def _nulled(rows: pl.DataFrame | None) -> int:
    """The values `rows` stored as null for not fitting a typed view's columns (their
    `mismatches`): the rows a commit writes minus those it replaces is what it added."""
    if rows is None or not rows.height or MISMATCHES not in rows.columns:
        return 0
    return int(rows.get_column(MISMATCHES).sum())


def _replace_partitions(store: ViewStore, snap: Snapshot, prior: pl.DataFrame | None,
                        events: pl.DataFrame, *, new_rows: pl.DataFrame | None = None
                        ) -> pl.DataFrame:
    """All rows of the touched buckets: refolded rows of touched partitions (or `new_rows`,
    computed already), others as-is."""
    view = store.view
    buckets = store.buckets(snap)
    if prior is None or not prior.height:
        prior = pl.DataFrame()
    if new_rows is None:
        new_rows = fold_view(view, prior, events) if events.height else pl.DataFrame()
    if not new_rows.height and not prior.height:
        return new_rows
    if new_rows.height:
        new_rows = _placed(new_rows, buckets)
    if not prior.height:
        return new_rows
    touched = events.get_column("partition_id").unique().implode()
    keep = prior.filter(~pl.col("partition_id").is_in(touched))
    if not new_rows.height:
        return keep
    return pl.concat([keep.select(new_rows.columns), new_rows], how="vertical_relaxed")


def _retry_failed(lake: LakeParts, store: ViewStore, chunk: Chunk
                  ) -> tuple[set[str], int, int, set[str], int]:
    """Fold the failed partitions again from where they stopped, up to the watermark.

    Their failure is cleared and their events above their `last_seq` are folded in slices
    of at most `chunk`, bucket group by bucket group, each group one commit (the
    watermark does not move). A partition that fails again is marked again, maybe at a
    later event. Returns (retried, events folded, commits, failed again, values nulled).
    """
    view = store.view
    snap = store.snapshot()
    failed = store.failed_rows(snap)
    if not failed.height:
        return set(), 0, 0, set(), 0
    buckets = store.buckets(snap)
    by_bucket: dict[int, list[str]] = defaultdict(list)
    for partition in failed.get_column("partition_id").to_list():
        by_bucket[bucket_of(partition, buckets)].append(partition)
    retried: set[str] = set()
    again: set[str] = set()
    folded = commits = nulls = 0
    for bucket, members in sorted(by_bucket.items()):

        def attempt(bucket: int = bucket, members: list[str] = members
                    ) -> tuple[int, set[str], int]:
            snap = store.snapshot()
            marks = store.marks(snap)
            if marks.active is None or marks.active_version != view.version:
                return 0, set(), 0
            _same_definition(store, marks)
            prior = store.read_buckets(snap, [bucket], generation=marks.active)
            rows, count = retried_rows(lake, view, prior, members, marks.watermark, chunk,
                                       buckets)
            store.commit_buckets(snap, rows, buckets=[bucket], generation=marks.active,
                                 marks={"fingerprint": definition_fingerprint(view)})
            return count, _failed_set(rows) & set(members), _nulled(rows) - _nulled(prior)

        count, still, nulled = retry_commit(attempt, what=f"retry of failed partitions of view "
                                                          f"{view.name!r}")
        retried.update(members)
        again |= still
        folded += count
        nulls += nulled
        commits += 1
    return retried, folded, commits, again, nulls


def retried_rows(lake: LakeParts, view: View, prior: pl.DataFrame, members: Sequence[str],
                 watermark: int, chunk: Chunk, buckets: int) -> tuple[pl.DataFrame, int]:
    """`prior` (the rows of some buckets) with the failed partitions `members` folded again
    from where they stopped up to `watermark`, their failure cleared first; and how many
    events that read. Rows of other partitions stay as they are."""
    mine = pl.col("partition_id").is_in(list(members))
    rows = prior.filter(mine).with_columns(pl.lit(None, dtype=pl.String).alias(FAILURE))
    rows, count = _fold_slices(lake, view, rows, list(members), watermark, chunk)
    kept = prior.filter(~mine)
    if not rows.height:
        return kept, count
    rows = _placed(rows, buckets)
    return pl.concat([kept.select(rows.columns), rows], how="vertical_relaxed"), count


def _fold_slices(lake: LakeParts, view: View, rows: pl.DataFrame, partitions: list[str],
                 target: int, chunk: Chunk) -> tuple[pl.DataFrame, int]:
    """`rows` of `partitions` with their events above their `last_seq` up to `target`
    folded on, reading at most `chunk` at a time; also how many events were read.

    A slice's seq range is sized from the bytes of the files holding those partitions (a
    bucket file shared with other partitions counts whole: slices come out smaller, never
    bigger), and cut short at `chunk.events` events.
    """
    after = int(rows.get_column("last_seq").min() or 0) if rows.height else 0  # type: ignore[arg-type]
    snap = lake.log.snapshot()
    layout = lake.log.layout(snap)
    equals: dict[str, Sequence[str | int | None]] = (
        {"partition_id": partitions} if layout.kind == "partition_id"
        else {BUCKET_COLUMN: [*layout.buckets_for(partitions), None]})
    sized = SeqBytes.of_files(snap, since=after, until=target, equals=equals)
    count = 0
    while after < target:
        end = sized.end(after, target, chunk.bytes)
        events = lake.events(partitions, since_seq=after, until_seq=end, snapshot=snap).head(
            chunk.events).collect()
        if not events.height:
            after = end
            continue
        count += events.height
        new = fold_view(view, rows, events)
        touched = events.get_column("partition_id").unique().implode()
        rows = pl.concat([rows.filter(~pl.col("partition_id").is_in(touched)).select(
            new.columns), new], how="vertical_relaxed") if rows.height else new
        # A slice cut short by the event limit resumes after its last event.
        after = (int(events.get_column("seq").max())  # type: ignore[arg-type]
                 if events.height >= chunk.events else end)
    return rows, count


def _placed(rows: pl.DataFrame, buckets: int) -> pl.DataFrame:
    """Rows with their bucket and the time they were (re)computed."""
    # Hashed per distinct partition: a refresh rewrites every row of the buckets it touches.
    placed = pl.Series("bucket", bucket_ids(rows.get_column("partition_id").to_arrow(), buckets),
                       dtype=pl.Int32)
    return rows.with_columns(placed, pl.lit(datetime.now(UTC)).cast(
        pl.Datetime("us", "UTC")).alias("updated_at"))


class _Sizes:
    """How many events up to a rebuild's target each partition has, and about how many
    decoded bytes (`store.filebytes`), by view bucket.

    On a bucketed log whose bucket count is the view's, view bucket `b` is log bucket `b`
    (same hash), so the sizes of one bucket come from that bucket's files alone (their
    `partition_id` column), plus the tail's rows of its partitions: a rebuild of bucket `b`
    reads only log bucket `b`. Otherwise the log's `partition_sizes` serve (from statistics
    on a `partition_id` log). Bytes are exact per file; a partition sharing its files with
    others (a bucketed log) is given its share of them by event count.
    """

    def __init__(self, lake: LakeParts, target: int, buckets: int) -> None:
        self.log = lake.log
        self.target = target
        self.buckets = buckets
        self.snap = lake.log.snapshot()
        layout = lake.log.layout(self.snap)
        self.aligned = layout.kind == "buckets" and layout.bucket_count == buckets
        self._by_bucket: dict[int, dict[str, int]] = {}
        self._totals: dict[int, int] = defaultdict(int)
        self._bytes: dict[int, float] = defaultdict(float)
        self._partition_bytes: dict[str, float] = {}
        self._tail: dict[int, dict[str, int]] = defaultdict(dict)
        actions = self.snap.add_actions()
        if actions.num_rows:
            actions = actions.filter(pc.fill_null(
                pc.less_equal(actions.column("min.seq"), target), True))
        # A rebuild reads every file anyway; a few hundred footers size it well enough.
        decoded = decoded_bytes(self.snap, actions.column("path").to_pylist(),
                                actions.column("size_bytes").to_pylist(), sample=256
                                ) if actions.num_rows else []
        records = actions.column("num_records").to_pylist() if actions.num_rows else []
        if not self.aligned:
            sizes = lake.log.partition_sizes(self.snap, until_seq=target)
            if layout.kind == "partition_id":
                owners = actions.column("partition.partition_id").to_pylist()
                for owner, size in zip(owners, decoded, strict=True):
                    self._partition_bytes[owner] = self._partition_bytes.get(owner, 0) + size
            else:
                rows = sum(int(n or 0) for n in records)
                per_event = sum(decoded) / rows if rows else 0.0
                self._partition_bytes = {p: n * per_event for p, n in sizes.items()}
            for partition in sorted(sizes):
                b = bucket_of(partition, buckets)
                self._by_bucket.setdefault(b, {})[partition] = sizes[partition]
                self._totals[b] += sizes[partition]
                self._bytes[b] += self._partition_bytes.get(partition, 0.0)
            return
        tail = lake.log.partition_sizes(self.snap, until_seq=target, plan=self.snap.plan(
            equals={BUCKET_COLUMN: [None]}, max_seq=target))
        numbers = (actions.column(f"partition.{BUCKET_COLUMN}").to_pylist()
                   if actions.num_rows else [])
        tail_rows = sum(int(n or 0) for b, n in zip(numbers, records, strict=True) if b is None)
        tail_bytes = sum(d for b, d in zip(numbers, decoded, strict=True) if b is None)
        tail_per_event = tail_bytes / tail_rows if tail_rows else 0.0
        for partition, n in tail.items():
            b = bucket_of(partition, buckets)
            self._tail[b][partition] = n
            self._totals[b] += n
            self._bytes[b] += n * tail_per_event
        for b, rows, size in zip(numbers, records, decoded, strict=True):
            if b is not None:
                self._totals[int(b)] += int(rows or 0)
                self._bytes[int(b)] += size

    def total(self, bucket: int) -> int:
        """About how many events view bucket `bucket` holds (from statistics when aligned)."""
        return self._totals.get(bucket, 0)

    def bytes(self, bucket: int) -> float:
        """About how many decoded bytes the events of view bucket `bucket` hold."""
        return self._bytes.get(bucket, 0.0)

    def partition_bytes(self, bucket: int, partition: str) -> float:
        """About how many decoded bytes the events of `partition` (in `bucket`) hold."""
        if partition in self._partition_bytes:
            return self._partition_bytes[partition]
        total = self.total(bucket)
        return self.bytes(bucket) * self.members(bucket).get(partition, 0) / total if total else 0

    def members(self, bucket: int) -> dict[str, int]:
        """The partitions of view bucket `bucket` and their events, sorted by partition."""
        if bucket not in self._by_bucket:
            if not self.aligned:
                return {}
            found = self.log.partition_sizes(self.snap, until_seq=self.target,
                                             plan=self.snap.plan(equals={BUCKET_COLUMN: [bucket]},
                                                                 max_seq=self.target))
            for partition, n in self._tail.get(bucket, {}).items():
                found[partition] = found.get(partition, 0) + n
            self._by_bucket[bucket] = {p: found[p] for p in sorted(found)}
        return self._by_bucket[bucket]


def _bucket_groups(sizing: _Sizes, chunk: Chunk, *, start: int = 0, most: int | None = None
                   ) -> list[list[int]]:
    """Consecutive buckets from `start` on, grouped within `chunk` (and at most `most`
    buckets a group), one bucket at least."""
    groups: list[list[int]] = []
    bucket = start
    while bucket < sizing.buckets:
        group = [bucket]
        total, size = sizing.total(bucket), sizing.bytes(bucket)
        while group[-1] + 1 < sizing.buckets and (most is None or len(group) < most):
            following = group[-1] + 1
            if not chunk.fits(total + sizing.total(following), size + sizing.bytes(following)):
                break
            group.append(following)
            total += sizing.total(following)
            size += sizing.bytes(following)
        groups.append(group)
        bucket = group[-1] + 1
    return groups


def _rebuild(lake: LakeParts, store: ViewStore, *, chunk: Chunk, fresh: bool,
             progress: ProgressSink | None) -> tuple[set[str], int, int, set[str], int]:
    """Build a new generation bucket by bucket, then make it the active one atomically.

    Returns (partitions, events folded, commits, partitions that failed, values nulled)."""
    view = store.view
    fingerprint = definition_fingerprint(view)
    commits = 0
    nulls = 0
    broken: set[str] = set()

    def start() -> tuple[int, int, int]:
        snap = store.snapshot()
        marks = store.marks(snap)
        if not fresh and marks.building and marks.building_version == view.version:
            return marks.building, marks.target, marks.done
        generation = max(marks.active or 0, marks.building or 0,
                         marks.commits) + 1
        target = lake.log.last_seq()
        store.commit_buckets(snap, pl.DataFrame(), buckets=[], generation=generation,
                             drop_generation=generation,
                             marks={"building": generation, "building-version": view.version,
                                    f"g{generation}/target": target, f"g{generation}/done": 0,
                                    f"g{generation}/fingerprint": fingerprint})
        return generation, target, 0

    generation, target, done = retry_commit(start, what=f"rebuild of view {view.name!r}")
    commits += 1
    buckets = store.buckets(store.snapshot())
    sizing = _Sizes(lake, target, buckets)
    touched: set[str] = set()
    folded = 0
    for group in _bucket_groups(sizing, chunk, start=done):
        sizes = {p: n for b in group for p, n in sizing.members(b).items()}
        weights = {p: sizing.partition_bytes(b, p) for b in group for p in sizing.members(b)}
        members = list(sizes)
        total = sum(sizes.values())
        rows = _fold_partitions(lake, view, members, sizes, weights, target, chunk)
        broken |= _failed_set(rows)
        nulls += _nulled(rows)
        if rows.height:
            rows = _placed(rows, buckets)
        end = group[-1] + 1

        def write(rows: pl.DataFrame = rows, group: list[int] = group, end: int = end) -> None:
            snap = store.snapshot()
            marks = store.marks(snap)
            if marks.building != generation or marks.done >= end:
                raise RebuildSupersededError(view.name)
            store.commit_buckets(snap, rows, buckets=group, generation=generation,
                                 marks={f"g{generation}/done": end})

        retry_commit(write, what=f"rebuild of view {view.name!r}")
        commits += 1
        touched.update(members)
        folded += total
        if progress is not None:
            progress(Progress(view.name, end, buckets, "buckets"))

    def activate() -> None:
        snap = store.snapshot()
        marks = store.marks(snap)
        if marks.building != generation:
            raise RebuildSupersededError(view.name)
        old = marks.active if marks.active != generation else None
        store.commit_buckets(snap, pl.DataFrame(), buckets=[], generation=generation,
                             drop_generation=old,
                             marks={"active": generation, "active-version": view.version,
                                    f"v{view.version}": target, "building": 0,
                                    "fingerprint": fingerprint})

    retry_commit(activate, what=f"rebuild of view {view.name!r}")
    return touched, folded, commits + 1, broken, nulls


def _fold_partitions(lake: LakeParts, view: View, members: list[str], sizes: dict[str, int],
                     weights: dict[str, float], target: int, chunk: Chunk) -> pl.DataFrame:
    """From-scratch rows of `members` using events up to `target`, reading at most `chunk`
    at a time: partitions in groups within it, one bigger than it slice by slice of seq.
    `sizes` and `weights` are each partition's events and decoded bytes."""
    if not members:
        return pl.DataFrame()
    parts: list[pl.DataFrame] = []
    groups: list[list[str]] = [[]]
    total = size = 0.0
    for partition in members:
        count, weight = sizes.get(partition, 0), weights.get(partition, 0.0)
        if not chunk.fits(count, weight) and not whole_history(view):
            parts.append(_fold_slices(lake, view, pl.DataFrame(), [partition], target,
                                      chunk)[0])
            continue
        if groups[-1] and not chunk.fits(int(total) + count, size + weight):
            groups.append([])
            total = size = 0.0
        groups[-1].append(partition)
        total += count
        size += weight
    columns = event_columns(view)
    for group in groups:
        if not group:
            continue
        wanted = sum(sizes.get(p, 0) for p in group)
        per_event = sum(weights.get(p, 0.0) for p in group) / wanted if wanted else 0.0
        # Files shared with other partitions are read whole only when that adds at most
        # about a chunk.
        events = read_events(lake, group, until_seq=target, columns=columns,
                             whole_files=2 * wanted + min(10_000, chunk.events_at(per_event)))
        if events.height:
            parts.append(fold_view(view, pl.DataFrame(), events))
    parts = [p for p in parts if p.height]
    if not parts:
        return pl.DataFrame()
    return pl.concat(parts, how="vertical_relaxed")


def read_state(lake: LakeParts, view: View, partition: str, *, as_of_seq: int | None = None,
               history_depth: int = 25, accept_changed_definition: bool = False) -> Any:
    """Exact state of one partition: the stored row plus a fold of the events after it.

    For an aggregate view, the partition's rows (one per group) as dicts of their logical
    columns, without `partition_id`. A partition failed at an event at or before the seq
    read raises `PartitionFailedError` naming the event.
    """
    log = lake.log.snapshot()
    head = lake.log.last_seq(log)
    target = head if as_of_seq is None else max(0, min(as_of_seq, head))
    store = ViewStore(lake.storage, view)
    snap: Snapshot | None = None
    if store.exists():
        try:
            snap = store.snapshot()
        except CorruptLakeError as exc:
            # The answer stays exact (folded from the log alone), but never silently: the
            # damage is named, for `doctor --fix` or a rebuild.
            warnings.warn(StorageWarning(f"state of {partition!r} in view {view.name!r} folded "
                                         f"from the event log alone: {exc}"), stacklevel=2)
    if snap is not None:
        snap = store.check_definition(snap, accept=accept_changed_definition)
    if isinstance(view, AggregateView):
        return _aggregate_state(lake, store, snap, partition, target, log)
    if isinstance(view, SqlView):
        from eventlake.engine.sqlrefresh import sql_state

        return sql_state(lake, store, snap, partition, target, log)
    start = None if snap is None else _checkpoint(store, snap, partition, target,
                                                  history_depth)
    if start is None:
        state, after = start_state(view, partition, None), 0
    else:
        row, after, failure = start
        if failure is not None:
            raise failure.error_object()
        state = start_state(view, partition, row)
    if target > after:
        events = lake.events(partition, since_seq=after, until_seq=target,
                             snapshot=log).collect()
        state, _, _ = fold_events(view, state, events, after_seq=after)
    return state


def _failure(view: View, partition: str, row: dict[str, Any]) -> PartitionFailure | None:
    text = row.get(FAILURE)
    if text is None:
        return None
    info = json.loads(str(text))
    return PartitionFailure(view.name, partition, int(info["seq"]), str(info["type"]),
                            str(info["error"]), int(row["last_seq"]))


def _checkpoint(store: ViewStore, snap: Snapshot, partition: str, target: int, depth: int
                ) -> tuple[dict[str, Any] | None, int, PartitionFailure | None] | None:
    """The partition's stored row valid at some seq <= `target`, and that seq.

    A row of the active generation is exact up to the view's watermark, not only up to its
    own `last_seq`: the partition had no events in between. So a view that is up to date
    answers without reading the log at all, and a missing row there means the initial state.
    A failed row is exact only up to the event before its failure: reading at or after that
    event returns the failure. For reads in the past the view table's own history serves as
    checkpoints; when that history is gone (vacuumed) the caller folds from the start,
    which is exact too.
    """
    for _ in range(depth):
        try:
            found = store.read_checkpoint(snap, partition)
        except (OSError, EventlakeError, pl.exceptions.ComputeError):
            return None
        if found is None:
            return None
        row, watermark = found
        last = 0 if row is None else int(row["last_seq"])
        if last <= target:
            if row is None:
                return None, min(target, watermark), None
            failure = _failure(store.view, partition, row)
            if failure is not None:
                if target >= failure.seq:
                    return row, last, failure
                return row, target, None
            return row, (min(target, watermark) if watermark >= last else last), None
        if snap.version == 0:
            return None
        try:
            snap = store.snapshot(version=snap.version - 1)
        except Exception:
            return None
    return None


def _aggregate_state(lake: LakeParts, store: ViewStore, snap: Snapshot | None, partition: str,
                     target: int, log: Snapshot) -> list[dict[str, Any]]:
    """One partition's rows of an aggregate view at `target`: stored rows plus a fold of
    newer events (from scratch when reading before the stored rows)."""
    view = store.view
    assert isinstance(view, AggregateView)
    rows = store.read_partition(snap, partition) if snap is not None else None
    base, after = pl.DataFrame(), 0
    if rows is not None:
        watermark = store.marks(snap).watermark if snap is not None else 0
        done = int(rows.get_column("last_seq").max() or 0) if rows.height else 0  # type: ignore[arg-type]
        if done <= target:
            base = rows
            after = min(target, watermark) if watermark >= done else done
    if base.height and target > after:
        failure = _failure(view, partition, base.row(0, named=True))
        if failure is None or failure.seq > target:
            events = lake.events(partition, since_seq=after, until_seq=target,
                                 snapshot=log).collect()
            base = fold_view(view, base, events) if events.height else base
    elif target > after:
        events = lake.events(partition, since_seq=after, until_seq=target,
                             snapshot=log).collect()
        base = fold_view(view, pl.DataFrame(), events) if events.height else base
    if not base.height:
        return []
    failure = _failure(view, partition, base.row(0, named=True))
    if failure is not None and failure.seq <= target:
        raise failure.error_object()
    columns = [c for c in logical_columns(view)
               if c not in ("partition_id", "updated_at", FAILURE)]
    kept = base.filter(pl.col("event_count") > 0).sort(list(view.group_columns) or "last_seq",
                                                       nulls_last=True)
    return kept.select(columns).to_dicts()


def failed_partitions(lake: LakeParts, view: View) -> list[PartitionFailure]:
    """The view's failed partitions, by partition id (reads the failure column only)."""
    store = ViewStore(lake.storage, view)
    if not store.exists():
        return []
    rows = store.failed_rows(store.snapshot())
    return [f for f in (_failure(view, r["partition_id"], r) for r in rows.iter_rows(named=True))
            if f is not None]
