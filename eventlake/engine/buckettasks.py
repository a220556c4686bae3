"""Bucket tasks: one view's rebuild or refresh step spread over an `Executor`, committed once.

A view's rows are independent by bucket, so a rebuild splits into tasks of consecutive
buckets, a retry of failed partitions into tasks of the buckets holding them, and a refresh
step into tasks of the buckets its window touched (each folds the
window's events of its partitions onto its buckets' prior rows, read at the version the
coordinator commits on). A task opens the lake itself (from plain data: `Workers.open_lake`,
a picklable callable holding the lake URI and storage options), folds (a rebuild's with
`materialize._fold_partitions`, in bounded chunks), writes its Parquet files and returns
their add actions; it commits nothing. The coordinator then commits every task's files, the
files they replace (a rebuild: the old generation) and the watermark in one Delta
transaction, so readers flip from the old rows to the new all at once, and a rebuild that
fails half way leaves the view as it was.

A task that raises something other than an `EventlakeError` (its worker died, its process
pool broke, an I/O error) is submitted again, up to `Workers.retries` times; the files of a
failed attempt are never committed (they are orphans, which `doctor --fix` deletes). Tasks
are top-level functions of frozen dataclasses, so a `ProcessPoolExecutor` (spawn context)
or a Dask `Client.get_executor()` runs them; the view travels pickled (its functions by
reference: the worker must be able to import the module that defines them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eventlake.engine.chunks import Chunk
from eventlake.errors import CommitConflictError, EventlakeError, RebuildSupersededError
from eventlake.model.progress import Progress, ProgressSink
from eventlake.model.views import View, definition_fingerprint
from eventlake.store.datafiles import DataFile
from eventlake.store.storage import Snapshot, retry_commit
from eventlake.store.viewstore import ViewStore

if TYPE_CHECKING:
    from eventlake.store.parts import LakeParts

__all__ = ["BucketOutput", "RebuildTask", "RefreshTask", "RetryTask", "Workers",
           "rebuild_buckets", "rebuild_on", "refresh_buckets", "refresh_on", "retry_buckets",
           "retry_on"]


@dataclass(frozen=True)
class Workers:
    """Where bucket tasks run: `executor`, each task opening the lake with `open_lake` (a
    picklable callable, e.g. `functools.partial(Lake.open, uri, storage_options=...)`).
    `tasks_per_worker` tasks per worker balance uneven buckets; `workers` defaults to what
    the executor says (`_max_workers`, a Dask client's thread count) or 2."""

    executor: Executor
    open_lake: Callable[[], LakeParts]
    retries: int = 2
    workers: int | None = None
    tasks_per_worker: int = 2
    # A refresh step of fewer events runs in the coordinator's process.
    min_events: int = 10_000
    # Tasks name the view instead of carrying it, and the worker takes it from the lake
    # `open_lake` opens (with the views module loaded there): for views loaded from a file,
    # whose functions no worker could import by name.
    by_name: bool = False

    def view(self, view: View) -> View | str:
        return view.name if self.by_name else view

    def count(self) -> int:
        if self.workers is not None:
            return max(1, self.workers)
        known = getattr(self.executor, "_max_workers", None)
        if isinstance(known, int) and known > 0:
            return known
        client = getattr(self.executor, "_client", None)
        if client is not None:
            try:
                return max(1, sum(client.nthreads().values()))
            except Exception:
                return 2
        return 2


@dataclass(frozen=True)
class RebuildTask:
    """One task of a rebuild: fold the partitions of `buckets` (`sizes` and `weights`: their
    events and decoded bytes) from the log up to `target` into `generation`'s files.

    Without `sizes` (a log aligned with the view's buckets) the task counts its buckets'
    partitions itself, from its log buckets alone: that read is spread over the workers
    instead of run by the coordinator before any task starts."""

    open_lake: Callable[[], LakeParts]
    view: View | str
    generation: int
    target: int
    buckets: tuple[int, ...]
    sizes: dict[str, int] | None
    weights: dict[str, float] | None
    chunk: Chunk


@dataclass(frozen=True)
class RefreshTask:
    """One task of a refresh step: fold the events in `(since, end]` of `partitions` onto
    the rows of `buckets` in `generation` (read at view-table version `version`)."""

    open_lake: Callable[[], LakeParts]
    view: View | str
    generation: int
    version: int
    since: int
    end: int
    buckets: tuple[int, ...]
    partitions: tuple[str, ...]
    chunk: Chunk
    log_version: int | None = None


@dataclass(frozen=True)
class RetryTask:
    """One task of a retry: fold the failed `partitions` of `buckets` again from where they
    stopped, up to `watermark`, onto the rows of `generation` (read at view-table version
    `version`)."""

    open_lake: Callable[[], LakeParts]
    view: View | str
    generation: int
    version: int
    watermark: int
    buckets: tuple[int, ...]
    partitions: tuple[str, ...]
    chunk: Chunk


@dataclass(frozen=True)
class BucketOutput:
    """What a bucket task wrote (not committed) and folded."""

    buckets: tuple[int, ...]
    files: tuple[DataFile, ...]
    partitions: tuple[str, ...]
    events: int
    failed: tuple[str, ...] = ()
    nulls: int = 0
    # The view-table version the task read its prior rows at (a refresh task).
    version: int | None = None


def _view_of(lake: LakeParts, view: View | str) -> View:
    if isinstance(view, str):
        return lake.view(view)
    return view


def _opened(task: RebuildTask | RefreshTask | RetryTask
            ) -> tuple[LakeParts, View, ViewStore, Snapshot]:
    """A task's lake, view, view store and the view table's latest snapshot."""
    lake = task.open_lake()
    view = _view_of(lake, task.view)
    store = ViewStore(lake.storage, view)
    return lake, view, store, store.snapshot()


def rebuild_buckets(task: RebuildTask) -> BucketOutput:
    """Run one rebuild task (in any process): fold, write the files, commit nothing."""
    from eventlake.engine.materialize import (
        _failed_set,
        _fold_partitions,
        _nulled,
        _placed,
        _Sizes,
    )

    lake, view, store, snap = _opened(task)
    sizes, weights = task.sizes, task.weights
    if sizes is None or weights is None:
        sizing = _Sizes(lake, task.target, store.buckets(snap))
        sizes = {p: n for b in task.buckets for p, n in sizing.members(b).items()}
        weights = {p: sizing.partition_bytes(b, p) for b in task.buckets
                   for p in sizing.members(b)}
    members = list(sizes)
    rows = _fold_partitions(lake, view, members, sizes, weights, task.target, task.chunk)
    failed = tuple(sorted(_failed_set(rows)))
    nulls = _nulled(rows)
    files: list[DataFile] = []
    if rows.height:
        files = store.write_buckets(snap, _placed(rows, store.buckets(snap)),
                                    generation=task.generation)
    return BucketOutput(task.buckets, tuple(files), tuple(members),
                        sum(sizes.values()), failed, nulls)


def refresh_buckets(task: RefreshTask) -> BucketOutput:
    """Run one refresh task (in any process): fold, write the files, commit nothing."""
    from eventlake.engine.materialize import (
        _newly_failed,
        _nulled,
        _replace_partitions,
        read_events,
    )
    from eventlake.fold.folds import event_columns
    from eventlake.fold.sqlfold import whole_history

    lake, view, store, snap = _opened(task)
    if snap.version != task.version:
        # The table moved on: the coordinator's commit would fail; say so without work.
        return BucketOutput(task.buckets, (), (), 0, version=snap.version)
    log = None if task.log_version is None else lake.log.snapshot(version=task.log_version)
    events = read_events(lake, task.partitions, since_seq=task.since, until_seq=task.end,
                         columns=event_columns(view), snapshot=log)
    prior = store.read_buckets(snap, task.buckets, generation=task.generation)
    recomputed = None
    if whole_history(view):
        from eventlake.engine.sqlrefresh import recompute_touched

        recomputed = recompute_touched(lake, view, list(task.partitions), task.end,
                                       chunk=task.chunk.events, snapshot=log)
    rows = _replace_partitions(store, snap, prior, events, new_rows=recomputed)
    files = store.write_buckets(snap, rows, generation=task.generation) if rows.height else []
    return BucketOutput(task.buckets, tuple(files), task.partitions, events.height,
                        tuple(sorted(_newly_failed(prior, rows))),
                        _nulled(rows) - _nulled(prior), version=snap.version)


def retry_buckets(task: RetryTask) -> BucketOutput:
    """Run one retry task (in any process): fold, write the files, commit nothing."""
    from eventlake.engine.materialize import _failed_set, _nulled, retried_rows

    lake, view, store, snap = _opened(task)
    if snap.version != task.version:
        return BucketOutput(task.buckets, (), (), 0, version=snap.version)
    prior = store.read_buckets(snap, task.buckets, generation=task.generation)
    rows, count = retried_rows(lake, view, prior, task.partitions, task.watermark,
                               task.chunk, store.buckets(snap))
    files = store.write_buckets(snap, rows, generation=task.generation) if rows.height else []
    return BucketOutput(task.buckets, tuple(files), task.partitions, count,
                        tuple(sorted(_failed_set(rows) & set(task.partitions))),
                        _nulled(rows) - _nulled(prior), version=snap.version)


def retry_on(workers: Workers, lake: LakeParts, store: ViewStore, chunk: Chunk
             ) -> tuple[set[str], int, int, set[str], int]:
    """`materialize._retry_failed` with the buckets holding failed partitions folded by
    bucket tasks and committed at once (the watermark does not move). Returns (retried,
    events folded, commits, failed again, values nulled)."""
    from eventlake.engine.materialize import _same_definition

    view = store.view

    def attempt() -> tuple[set[str], int, int, set[str], int]:
        snap = store.snapshot()
        marks = store.marks(snap)
        if marks.active is None or marks.active_version != view.version:
            return set(), 0, 0, set(), 0
        _same_definition(store, marks)
        failed = store.failed_rows(snap).get_column("partition_id").to_list()
        if not failed:
            return set(), 0, 0, set(), 0
        groups = _task_groups(workers, failed, store.buckets(snap))
        tasks = [RetryTask(workers.open_lake, workers.view(view), marks.active, snap.version,
                           marks.watermark, group, members, chunk)
                 for group, members in groups]
        outputs = _run(workers, retry_buckets, tasks, lambda _: None)
        retried, events, again, nulls = _commit_outputs(
            store, snap, outputs, generation=marks.active,
            buckets=[b for group, _ in groups for b in group],
            marks={"fingerprint": definition_fingerprint(view)})
        return retried, events, 1, again, nulls

    return retry_commit(attempt, what=f"retry of failed partitions of view {view.name!r}")


def refresh_on(workers: Workers, lake: LakeParts, store: ViewStore, snap: Snapshot, *,
               since: int, end: int, chunk: Chunk, snapshot: Snapshot | None
               ) -> tuple[set[str], int, set[str], int]:
    """Fold the events in `(since, end]` into the active generation of `store` with bucket
    tasks, committed as one step on `snap` (raises `CommitFailedError` for `retry_commit`
    when the table moved on). Returns (partitions, events, newly failed, values nulled)."""

    from eventlake.engine.materialize import read_events

    marks = store.marks(snap)
    assert marks.active is not None
    view = store.view
    owners = read_events(lake, since_seq=since, until_seq=end, columns=["partition_id"],
                         snapshot=snapshot).get_column("partition_id").unique().to_list()
    groups = _task_groups(workers, owners, store.buckets(snap))
    # Events up to `end` are immutable, so tasks read the log's latest version, not a pinned
    # one (which would cost each task a replay of the log on object storage).
    log_version = None
    tasks = [RefreshTask(workers.open_lake, workers.view(view), marks.active, snap.version,
                         since, end, group, members, chunk, log_version)
             for group, members in groups]
    outputs = _run(workers, refresh_buckets, tasks, lambda _: None)
    return _commit_outputs(store, snap, outputs, generation=marks.active,
                           buckets=[b for group, _ in groups for b in group],
                           marks={f"v{view.version}": end,
                                  "fingerprint": definition_fingerprint(view)})


def _task_groups(workers: Workers, partitions: Sequence[str], buckets: int
                 ) -> list[tuple[tuple[int, ...], tuple[str, ...]]]:
    """`partitions` by view bucket, in groups of consecutive buckets, a few per worker:
    each group's buckets and its partitions."""
    from eventlake.model.layout import bucket_of

    by_bucket: dict[int, list[str]] = {}
    for partition in sorted(partitions):
        by_bucket.setdefault(bucket_of(partition, buckets), []).append(partition)
    touched = sorted(by_bucket)
    size = max(1, math.ceil(len(touched) / (workers.count() * workers.tasks_per_worker)))
    return [(tuple(group), tuple(p for b in group for p in by_bucket[b]))
            for group in (touched[i:i + size] for i in range(0, len(touched), size))]


def _commit_outputs(store: ViewStore, snap: Snapshot, outputs: Sequence[BucketOutput], *,
                    generation: int, buckets: list[int], marks: dict[str, Any]
                    ) -> tuple[set[str], int, set[str], int]:
    """Commit the files of tasks that read their rows at `snap`, in place of those of
    `buckets`, with `marks` (raises `CommitFailedError` for `retry_commit` when the table
    moved on; the files are deleted then). Returns (partitions, events, failed, nulls)."""
    from deltalake.exceptions import CommitFailedError

    files = [f for output in outputs for f in output.files]
    if any(output.version != snap.version for output in outputs):
        store.delete_written(files)
        raise CommitFailedError("the view table moved on while its bucket tasks ran")
    try:
        store.commit_files(snap, files, generation=generation, buckets=buckets, marks=marks)
    except CommitFailedError:
        store.delete_written(files)
        raise
    return ({p for o in outputs for p in o.partitions}, sum(o.events for o in outputs),
            {p for o in outputs for p in o.failed}, sum(o.nulls for o in outputs))


def _run(workers: Workers, function: Callable[[Any], BucketOutput], tasks: Sequence[Any],
         progress: Callable[[int], None]) -> list[BucketOutput]:
    """Every task's output, in task order; a task failing on anything but an
    `EventlakeError` is submitted again (`Workers.retries` times)."""
    pending: dict[Future[BucketOutput], tuple[int, int]] = {
        workers.executor.submit(function, task): (index, 0)
        for index, task in enumerate(tasks)}
    done: dict[int, BucketOutput] = {}
    failure: BaseException | None = None
    while pending:
        finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
        for future in finished:
            index, attempt = pending.pop(future)
            try:
                done[index] = future.result()
            except EventlakeError as exc:
                failure = failure or exc
            except Exception as exc:
                if attempt >= workers.retries or failure is not None:
                    failure = failure or exc
                    continue
                pending[workers.executor.submit(function, tasks[index])] = (
                    index, attempt + 1)
            else:
                progress(len(tasks[index].buckets))
    if failure is not None:
        _forget(tasks, done.values())
        raise failure
    return [done[i] for i in range(len(tasks))]


def _forget(tasks: Sequence[Any], outputs: Any) -> None:
    """Delete the files of tasks whose rebuild will not commit (best effort)."""
    if not tasks:
        return
    store: ViewStore | None = None
    for output in outputs:
        if output.files:
            if store is None:
                lake = tasks[0].open_lake()
                store = ViewStore(lake.storage, _view_of(lake, tasks[0].view))
            store.delete_written(output.files)


def rebuild_on(workers: Workers, lake: LakeParts, store: ViewStore, *, chunk: Chunk,
               progress: ProgressSink | None) -> tuple[set[str], int, int, set[str], int]:
    """Rebuild `store`'s view with bucket tasks on `workers`, then activate the new
    generation in one commit. Returns what `materialize._rebuild` does."""
    from eventlake.engine.materialize import _bucket_groups, _Sizes

    view = store.view
    snap = store.snapshot()
    marks = store.marks(snap)
    started_active = marks.active
    generation = max(marks.active or 0, marks.building or 0, marks.commits) + 1
    target = lake.log.last_seq()
    buckets = store.buckets(snap)
    sizing = _Sizes(lake, target, buckets)
    most = max(1, math.ceil(buckets / (workers.count() * workers.tasks_per_worker)))
    tasks = []
    for group in _bucket_groups(sizing, chunk, most=most):
        sizes: dict[str, int] | None = None
        weights: dict[str, float] | None = None
        if not sizing.aligned:
            sizes = {p: n for b in group for p, n in sizing.members(b).items()}
            weights = {p: sizing.partition_bytes(b, p) for b in group
                       for p in sizing.members(b)}
        tasks.append(RebuildTask(workers.open_lake, workers.view(view), generation, target,
                                 tuple(group), sizes, weights, chunk))
    finished = 0

    def advanced(count: int) -> None:
        nonlocal finished
        finished += count
        if progress is not None:
            progress(Progress(view.name, finished, buckets, "buckets"))

    outputs = _run(workers, rebuild_buckets, tasks, advanced)
    files = [f for output in outputs for f in output.files]
    fingerprint = definition_fingerprint(view)

    def activate() -> None:
        latest = store.snapshot()
        now = store.marks(latest)
        if now.active != started_active or (now.active == generation):
            raise RebuildSupersededError(view.name)
        old = {g for g in (now.active, now.building) if g and g != generation}
        store.commit_files(latest, files, generation=generation, buckets=[],
                           drop_generations=sorted(old),
                           marks={"active": generation, "active-version": view.version,
                                  f"v{view.version}": target, "building": 0,
                                  "fingerprint": fingerprint})

    try:
        retry_commit(activate, what=f"rebuild of view {view.name!r}")
    except (RebuildSupersededError, CommitConflictError):
        store.delete_written(files)  # certainly not committed: nothing references them
        raise
    touched = {p for output in outputs for p in output.partitions}
    broken = {p for output in outputs for p in output.failed}
    return (touched, sum(o.events for o in outputs), 1, broken,
            sum(o.nulls for o in outputs))
