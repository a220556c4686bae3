"""The refresh engine: read what changed, fold it with `folds`, commit rows and watermark.

Incremental refresh of a view: events above the view's watermark are read in seq-range chunks;
for each chunk only the buckets holding the touched partitions are read, folded and rewritten
in one commit that also advances the watermark. A rebuild (new view version, `rebuild=True`,
or a first build) writes a new generation bucket by bucket, reading only the events of the
partitions in those buckets, and flips readers to it in a final atomic commit.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow.compute as pc

from eventlake.errors import EventlakeError, ReducerError
from eventlake.folds import event_columns, fold_events, fold_view
from eventlake.storage import Snapshot, retry_commit
from eventlake.views import AggregateView, ReducerView, View
from eventlake.viewstore import ViewStore, bucket_of, buckets_of

if TYPE_CHECKING:
    from eventlake.lake import Lake

__all__ = ["DEFAULT_CHUNK_EVENTS", "EventWindow", "MaterializeError", "MaterializeResult",
           "materialize_views", "read_events", "read_state", "refresh_view"]

DEFAULT_CHUNK_EVENTS = 100_000
Progress = Callable[[str, int, int], None]


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


class MaterializeError(EventlakeError):
    """Some views failed to refresh; `failures` maps view name to its error, `results` holds
    the views that did refresh."""

    def __init__(self, failures: dict[str, EventlakeError],
                 results: dict[str, MaterializeResult]) -> None:
        self.failures = failures
        self.results = results
        first = next(iter(failures.values()))
        more = f" (and {len(failures) - 1} more views)" if len(failures) > 1 else ""
        super().__init__(f"{first}{more}")


def materialize_views(lake: Lake, views: Sequence[View], *, rebuild: bool = False,
                      chunk_events: int | None = None, progress: Progress | None = None
                      ) -> dict[str, MaterializeResult]:
    """Refresh each view; a failing view does not stop the others (they still commit)."""
    results: dict[str, MaterializeResult] = {}
    failures: dict[str, EventlakeError] = {}
    # Views usually stand at the same watermark: read each window of new events once for all.
    log = lake.log.snapshot()
    head = lake.log.last_seq(log)
    columns = {c: None for view in views for c in event_columns(view)}
    window = EventWindow(columns=list(columns), snapshot=log)
    for view in views:
        try:
            results[view.name] = refresh_view(lake, view, rebuild=rebuild,
                                              chunk_events=chunk_events, progress=progress,
                                              target_seq=head, window=window)
        except ReducerError as exc:
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

    def read(self, lake: Lake, since: int, until: int) -> pl.DataFrame:
        if self._key != (since, until) or self._events is None:
            self._events = read_events(lake, since_seq=since, until_seq=until,
                                       columns=self.columns, snapshot=self.snapshot,
                                       whole_files=2 * (until - since) + 10_000)
            self._key = (since, until)
        return self._events


def read_events(lake: Lake, partitions: Sequence[str] | None = None, *,
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
    scan = snap.scan(plan)
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


def refresh_view(lake: Lake, view: View, *, rebuild: bool = False,
                 chunk_events: int | None = None, progress: Progress | None = None,
                 target_seq: int | None = None, window: EventWindow | None = None
                 ) -> MaterializeResult:
    """Bring one view up to `target_seq` (default: the log's last seq)."""
    started = time.perf_counter()
    window = window or EventWindow(columns=event_columns(view))
    chunk = chunk_events or DEFAULT_CHUNK_EVENTS
    store = ViewStore(lake.storage, view)
    store.ensure()
    head = lake.log.last_seq() if target_seq is None else target_seq
    marks = store.marks(store.snapshot())
    old_watermark = marks.watermark if marks.active_version == view.version else 0
    partitions: set[str] = set()
    events = 0
    commits = 0
    rebuilt = False
    resume = marks.building is not None and marks.building_version == view.version
    if rebuild or resume or marks.active is None or marks.active_version != view.version:
        touched, folded, commits = _rebuild(lake, store, chunk=chunk, fresh=not resume,
                                            progress=progress)
        partitions |= touched
        events += folded
        rebuilt = True
    while True:
        step = retry_commit(lambda: _refresh_step(lake, store, head, chunk, window),
                            what=f"refresh of view {view.name!r}")
        final = step.watermark
        if not step.committed:
            break
        partitions |= step.touched
        events += step.events
        commits += 1
        if progress is not None:
            progress(view.name, final, head)
        if final >= head:
            break  # what the step committed is the watermark: no need to read it back
    return MaterializeResult(view.name, view.version, len(partitions), events, old_watermark,
                             final, time.perf_counter() - started, rebuilt, commits)


@dataclass(frozen=True)
class _Step:
    """One refresh step: whether it committed, what it folded, the watermark after it."""

    committed: bool
    watermark: int
    touched: frozenset[str] = frozenset()
    events: int = 0


def _refresh_step(lake: Lake, store: ViewStore, head: int, chunk: int, window: EventWindow
                  ) -> _Step:
    snap = store.snapshot()
    marks = store.marks(snap)
    assert marks.active is not None
    if marks.watermark >= head:
        return _Step(False, marks.watermark)
    end = min(head, marks.watermark + chunk)
    events = window.read(lake, marks.watermark, end)
    touched = sorted(set(events.get_column("partition_id").to_list()))
    buckets = sorted(set(buckets_of(touched, store.buckets(snap))))
    prior = store.read_buckets(snap, buckets, generation=marks.active) if buckets else None
    rows = _replace_partitions(store, snap, prior, events)
    store.commit_buckets(snap, rows, buckets=buckets, generation=marks.active,
                         marks={f"v{store.view.version}": end})
    return _Step(True, end, frozenset(touched), events.height)


def _replace_partitions(store: ViewStore, snap: Snapshot, prior: pl.DataFrame | None,
                        events: pl.DataFrame) -> pl.DataFrame:
    """All rows of the touched buckets: refolded rows of touched partitions, others as-is."""
    view = store.view
    buckets = store.buckets(snap)
    if prior is None or not prior.height:
        prior = pl.DataFrame()
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


def _placed(rows: pl.DataFrame, buckets: int) -> pl.DataFrame:
    """Rows with their bucket and the time they were (re)computed."""
    placed = pl.Series("bucket", buckets_of(rows.get_column("partition_id").to_list(), buckets),
                       dtype=pl.Int32)
    return rows.with_columns(placed, pl.lit(datetime.now(UTC)).cast(
        pl.Datetime("us", "UTC")).alias("updated_at"))


def _partition_sizes(lake: Lake, until_seq: int) -> dict[str, int]:
    """Events per partition from the log's file statistics (no data is read)."""
    actions = lake.log.snapshot().add_actions()
    if not actions.num_rows:
        return {}
    kept = actions.filter(pc.less_equal(actions.column("min.seq"), until_seq))
    sizes: dict[str, int] = defaultdict(int)
    for partition, rows in zip(kept.column("partition.partition_id").to_pylist(),
                               kept.column("num_records").to_pylist(), strict=True):
        sizes[partition] += int(rows or 0)
    return dict(sizes)


def _rebuild(lake: Lake, store: ViewStore, *, chunk: int, fresh: bool,
             progress: Progress | None) -> tuple[set[str], int, int]:
    """Build a new generation bucket by bucket, then make it the active one atomically."""
    view = store.view
    commits = 0

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
                                    f"g{generation}/target": target, f"g{generation}/done": 0})
        return generation, target, 0

    generation, target, done = retry_commit(start, what=f"rebuild of view {view.name!r}")
    commits += 1
    buckets = store.buckets(store.snapshot())
    sizes = _partition_sizes(lake, target)
    by_bucket: dict[int, list[str]] = defaultdict(list)
    for partition in sorted(sizes):
        by_bucket[bucket_of(partition, buckets)].append(partition)
    touched: set[str] = set()
    folded = 0
    bucket = done
    while bucket < buckets:
        # A group of consecutive buckets holding about `chunk` events (at least one bucket).
        group = [bucket]
        total = sum(sizes[p] for p in by_bucket[bucket])
        while group[-1] + 1 < buckets:
            extra = sum(sizes[p] for p in by_bucket[group[-1] + 1])
            if total + extra > chunk:
                break
            group.append(group[-1] + 1)
            total += extra
        members = [p for b in group for p in by_bucket[b]]
        rows = _fold_partitions(lake, view, members, sizes, target, chunk)
        if rows.height:
            rows = _placed(rows, buckets)
        end = group[-1] + 1

        def write(rows: pl.DataFrame = rows, group: list[int] = group, end: int = end) -> None:
            snap = store.snapshot()
            marks = store.marks(snap)
            if marks.building != generation or marks.done >= end:
                raise _Superseded()
            store.commit_buckets(snap, rows, buckets=group, generation=generation,
                                 marks={f"g{generation}/done": end})

        try:
            retry_commit(write, what=f"rebuild of view {view.name!r}")
        except _Superseded:
            raise EventlakeError(
                f"rebuild of view {view.name!r} was taken over by another materializer; "
                "run materialize again") from None
        commits += 1
        touched.update(members)
        folded += total
        bucket = end
        if progress is not None:
            progress(view.name, bucket, buckets)

    def activate() -> None:
        snap = store.snapshot()
        marks = store.marks(snap)
        if marks.building != generation:
            raise _Superseded()
        old = marks.active if marks.active != generation else None
        store.commit_buckets(snap, pl.DataFrame(), buckets=[], generation=generation,
                             drop_generation=old,
                             marks={"active": generation, "active-version": view.version,
                                    f"v{view.version}": target, "building": 0})

    try:
        retry_commit(activate, what=f"rebuild of view {view.name!r}")
    except _Superseded:
        raise EventlakeError(
            f"rebuild of view {view.name!r} was taken over by another materializer; run "
            "materialize again") from None
    return touched, folded, commits + 1


class _Superseded(Exception):
    """Another materializer owns the rebuild now."""


def _fold_partitions(lake: Lake, view: View, members: list[str], sizes: dict[str, int],
                     target: int, chunk: int) -> pl.DataFrame:
    """From-scratch rows of `members` using events up to `target`, in bounded slices."""
    if not members:
        return pl.DataFrame()
    parts: list[pl.DataFrame] = []
    small: list[str] = []
    for partition in members:
        if sizes.get(partition, 0) > chunk:
            parts.append(_fold_large(lake, view, partition, target, chunk))
        else:
            small.append(partition)
    if small:
        wanted = sum(sizes.get(p, 0) for p in small)
        events = read_events(lake, small, until_seq=target, columns=event_columns(view),
                             whole_files=2 * wanted + 10_000)
        if events.height:
            parts.append(fold_view(view, pl.DataFrame(), events))
    parts = [p for p in parts if p.height]
    if not parts:
        return pl.DataFrame()
    return pl.concat(parts, how="vertical_relaxed")


def _fold_large(lake: Lake, view: View, partition: str, target: int, chunk: int
                ) -> pl.DataFrame:
    """One partition with more events than a chunk: fold it slice by slice of seq."""
    rows = pl.DataFrame()
    after = 0
    while after < target:
        events = lake.events(partition, since_seq=after).head(chunk).collect()
        events = events.filter(pl.col("seq") <= target)
        if not events.height:
            break
        rows = fold_view(view, rows, events)
        after = int(events.get_column("seq").max())  # type: ignore[arg-type]
    return rows


def read_state(lake: Lake, view: View, partition: str, *, as_of_seq: int | None = None,
               history_depth: int = 25) -> Any:
    """Exact state of one partition: the stored row plus a fold of the events after it."""
    if not isinstance(view, ReducerView):
        raise EventlakeError(
            f"view {view.name!r} is an aggregate view: read it with lake.scan({view.name!r}) "
            "or lake.sql(...); lake.state serves reducer views")
    log = lake.log.snapshot()
    head = lake.log.last_seq(log)
    target = head if as_of_seq is None else max(0, min(as_of_seq, head))
    store = ViewStore(lake.storage, view)
    start = _checkpoint(store, partition, target, history_depth)
    if start is None:
        state, after = view.initial_state(), 0
    else:
        text, after = start
        state = view.initial_state() if text is None else json.loads(text)
    if target > after:
        events = lake.events(partition, since_seq=after, until_seq=target,
                             snapshot=log).collect()
        state, _, _ = fold_events(view, state, events, after_seq=after)
    return state


def _checkpoint(store: ViewStore, partition: str, target: int, depth: int
                ) -> tuple[str | None, int] | None:
    """The partition's stored state valid at some seq <= `target`, and that seq.

    A row of the active generation is exact up to the view's watermark, not only up to its
    own `last_seq`: the partition had no events in between. So a view that is up to date
    answers without reading the log at all, and a missing row there means the initial state.
    For reads in the past the view table's own history serves as checkpoints; when that
    history is gone (vacuumed) the caller folds from the start, which is exact too.
    """
    try:
        snap = store.snapshot()
    except EventlakeError:
        return None  # no view table yet
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
            return (None if row is None else str(row["state"]), min(target, watermark)
                    if watermark >= last else last)
        if snap.version == 0:
            return None
        try:
            snap = store.snapshot(version=snap.version - 1)
        except Exception:
            return None
    return None


def aggregate_view_rows(view: AggregateView, events: pl.DataFrame) -> pl.DataFrame:
    """From-scratch rows of an aggregate view (what verify and tests compare against)."""
    return fold_view(view, pl.DataFrame(), events)
