"""`Lake`: the public face of one lake root (event log plus view tables)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

from eventlake.errors import EventlakeError, UnknownViewError, ViewDefinitionError
from eventlake.model.events import DEFAULT_LIMITS, EVENT_SCHEMA, Limits, NormalizedBatch
from eventlake.model.layout import Layout, LayoutName, relayout_advice
from eventlake.model.views import DOCUMENT_VIEW, View
from eventlake.store.log import EVENTS, AppendResult, EventLog
from eventlake.store.storage import Snapshot, Storage, among
from eventlake.validate.events import normalize_batch

if TYPE_CHECKING:
    from concurrent.futures import Executor
    from datetime import datetime

    import duckdb

    from eventlake.engine.materialize import MaterializeResult, PartitionFailure
    from eventlake.engine.relayout import RelayoutResult
    from eventlake.ops.erase import EraseResult
    from eventlake.ops.freshness import Freshness
    from eventlake.ops.restore import RestoreResult

__all__ = ["AppendResult", "Lake", "LakeInfo"]


@dataclass(frozen=True)
class LakeInfo:
    root: str
    events: int
    last_seq: int
    partitions: int
    version: int
    files: int
    size_bytes: int
    views: tuple[str, ...]
    layout: str = "partition_id"
    buckets: int | None = None
    # Files of a bucketed log's tail (recent small batches not yet sorted into buckets).
    tail_files: int = 0

    @property
    def advice(self) -> str | None:
        """A suggestion for this lake's layout, when the figures call for one."""
        return relayout_advice(self.layout, self.partitions)


class Lake:
    """An event log at `<root>/events` and one Delta table per view at `<root>/views/<name>`.

    Open with `Lake.open(root)`; the document view is always registered, more come from
    `views=`.
    """

    def __init__(self, storage: Storage, log: EventLog, views: Sequence[View],
                 limits: Limits) -> None:
        self.storage = storage
        self.log = log
        self.limits = limits
        registered: dict[str, View] = {}
        for view in [DOCUMENT_VIEW, *views]:
            if view.name in registered and registered[view.name] is not view:
                if view.name == DOCUMENT_VIEW.name:
                    raise ViewDefinitionError(
                        "the view name 'document' is taken by the built-in document view")
                raise ViewDefinitionError(f"two views are named {view.name!r}")
            registered[view.name] = view
        self._views = registered

    @classmethod
    def open(
        cls,
        root: str | os.PathLike[str] = "data/lake",
        *,
        views: Sequence[View] = (),
        storage_options: Mapping[str, str] | None = None,
        create: bool = True,
        limits: Limits = DEFAULT_LIMITS,
        layout: LayoutName | None = None,
        buckets: int | None = None,
    ) -> Lake:
        """Open the lake at `root`, creating an empty one if missing (unless `create=False`).

        `layout` is the physical layout of a new lake's event log: `"partition_id"` (the
        default: one folder per partition) or `"buckets"` (`buckets` hash buckets, default
        64; see `eventlake.layout`). An existing lake keeps its layout; naming another one
        is an error (move a lake with `Lake.relayout`).

        `root` is a folder or an object-store URI (`s3://bucket/prefix`). For S3 the options
        come from the AWS environment variables (`AWS_ENDPOINT_URL`, `AWS_REGION`,
        `AWS_ACCESS_KEY_ID`, ...) overlaid with `storage_options`; commits use conditional
        PUTs (`aws_conditional_put=etag`) unless told otherwise. See the README's "Running on
        object storage".
        """
        storage = Storage.at(root, storage_options)
        if create:
            storage.ensure_root()
        chosen = None
        if layout is not None or buckets is not None:
            chosen = Layout.named(layout or "buckets", buckets=buckets)
        log = EventLog.open(storage, create=create, layout=chosen)
        return cls(storage, log, views, limits)

    @property
    def root(self) -> str:
        return self.storage.root

    @property
    def views(self) -> dict[str, View]:
        return dict(self._views)

    def view(self, name: str) -> View:
        try:
            return self._views[name]
        except KeyError:
            raise UnknownViewError(name, tuple(self._views)) from None

    # -- writing ---------------------------------------------------------------------------

    def append(self, events: Iterable[dict[str, Any]] | Any, *, producer: str | None = None,
               batch_no: int | str | None = None,
               expected_last_seq: int | None = None, materialize: bool = False
               ) -> AppendResult:
        """Validate every event, then commit the whole batch atomically with fresh `seq`s.

        The same `(producer, batch_no)` appended again is a no-op returning `duplicate=True`.
        With `expected_last_seq` the batch lands only if the log's last seq is exactly that
        when it commits, else `StaleLogError` is raised and nothing is written (the
        repository's optimistic writes). `materialize=True` then refreshes every view
        (`materialize()`; its errors propagate, the batch has landed): off by default, so
        landing events never waits on, or fails with, a view.
        """
        # A batch `normalize_batch` already checked (the repository checks its records with
        # these limits before it writes) is not checked twice.
        batch = events if isinstance(events, NormalizedBatch) else normalize_batch(
            events, limits=self.limits)
        result = self.log.append(batch, producer=producer, batch_no=batch_no,
                                 expected_last_seq=expected_last_seq)
        if materialize:
            self.materialize()
        return result

    # -- reading events --------------------------------------------------------------------

    def events(self, partition: str | Sequence[str] | None = None, since_seq: int | None = None,
               until_seq: int | None = None, *, snapshot: Snapshot | None = None
               ) -> pl.LazyFrame:
        """Events as a polars LazyFrame in `seq` order; `payload` stays JSON text.

        `since_seq` is exclusive, `until_seq` inclusive. Only the files that can hold matching
        rows are opened. `snapshot` pins the log version to read (default: the latest).

        Those files are checked when the frame is built: a missing, truncated or garbage one
        raises `CorruptLakeError` naming it here, not a Polars error at `collect()`.
        """
        partitions = [partition] if isinstance(partition, str) else (
            None if partition is None else list(partition))
        snap = snapshot or self.log.snapshot()
        plan = self.log.plan(partitions=partitions, since_seq=since_seq, until_seq=until_seq,
                             snapshot=snap)
        frame = snap.scan(plan).select(EVENT_SCHEMA.names)
        if partitions is not None:
            frame = frame.filter(among("partition_id", partitions))
        if since_seq is not None:
            frame = frame.filter(pl.col("seq") > since_seq)
        if until_seq is not None:
            frame = frame.filter(pl.col("seq") <= until_seq)
        return frame.sort("seq")

    def last_seq(self) -> int:
        return self.log.last_seq()

    @property
    def layout(self) -> Layout:
        """The physical layout of the event log (see `eventlake.layout`)."""
        return self.log.layout()

    def info(self) -> LakeInfo:
        """Figures of the event log. On a bucketed log the partition count reads the
        `partition_id` column (the Delta log knows only buckets)."""
        snap = self.log.snapshot()
        actions = snap.add_actions()
        import pyarrow.compute as pc

        layout = self.log.layout(snap)
        rows = int(pc.sum(actions.column("num_records")).as_py() or 0)
        size = int(pc.sum(actions.column("size_bytes")).as_py() or 0)
        partitions = len(self.log.partitions(snap))
        return LakeInfo(self.storage.root, rows, self.log.last_seq(snap), partitions,
                        snap.version, actions.num_rows, size, tuple(self._views),
                        layout.kind, layout.buckets, self.log.tail_files(snap))

    # -- views -----------------------------------------------------------------------------

    def materialize(self, views: Sequence[str] | None = None, *, rebuild: bool = False,
                    chunk_events: int | None = None, chunk_bytes: int | None = None,
                    retry_failed: bool = False, accept_changed_definition: bool = False,
                    executor: Executor | None = None) -> dict[str, MaterializeResult]:
        """Bring views up to date by folding only events above each view's watermark.

        With `executor` (a `concurrent.futures.Executor`: threads, a `ProcessPoolExecutor`
        with the spawn context, a Dask `Client.get_executor()`), a view's rebuild runs as
        bucket tasks on it, each opening this lake from its URI and storage options, and
        commits once (see `eventlake.engine.buckettasks`). A view defined outside the
        built-ins must be importable by the workers (its functions are pickled by name).

        Memory is bounded by the step: each reads at most `chunk_bytes` decoded bytes of
        events (default 16 MB) or `chunk_events` events (default 100,000), whichever
        comes first.

        A partition whose reducer raises (or whose aggregate meets a value its dtype refuses)
        does not stop the others: its row stops at that event, is listed by
        `failed_partitions(view)` and in `MaterializeResult.failed`, and is folded again by
        `retry_failed=True`. A view changed under the same version is refused
        (`ViewChangedError` in `MaterializeError.failures`) unless
        `accept_changed_definition=True` records its new definition.
        """
        from eventlake.engine.materialize import materialize_views

        chosen = [self.view(name) for name in (views or list(self._views))]
        workers = None
        if executor is not None:
            from functools import partial

            from eventlake.engine.buckettasks import Workers

            workers = Workers(executor, partial(Lake.open, self.root, create=False,
                                                storage_options=self.storage.options))
        with self._damage_named([f"views/{view.name}" for view in chosen]):
            return materialize_views(self, chosen, rebuild=rebuild, chunk_events=chunk_events,
                                     chunk_bytes=chunk_bytes, retry_failed=retry_failed,
                                     accept_changed_definition=accept_changed_definition,
                                     workers=workers)

    def freshness(self, views: Sequence[str] | None = None, *, partitions: int = 5
                  ) -> Freshness:
        """How far behind the log each view is: watermark, lag in events, in event time and
        in ingest time, the `partitions` partitions with the oldest unfolded events, and the
        last refresh (when, how long) and last error (see `eventlake.ops.freshness`)."""
        from eventlake.ops.freshness import freshness

        chosen = [self.view(name) for name in (views or list(self._views))]
        with self._damage_named(["events", *(f"views/{view.name}" for view in chosen)]):
            return freshness(self, chosen, partitions=partitions)

    def changes(self, view: str, since_version: int | None = None,
                until_version: int | None = None, *, cursor: str | None = None
                ) -> pl.LazyFrame:
        """The row changes (`insert`/`update`/`delete`, and `reset` at a rebuild) of `view`'s
        table in versions (`since_version`, `until_version`], with the rows before and after,
        the table version, the view version and the event-log watermark of each (see
        `eventlake.query.changes`). With `cursor`, `since_version` defaults to where consumer
        `cursor` stopped (`commit_cursor`)."""
        from eventlake.query.changes import cursor_position, view_changes

        chosen = self.view(view)
        if cursor is not None and since_version is None:
            since_version = cursor_position(self, chosen, cursor)
        with self._damage_named([f"views/{chosen.name}"]):
            return view_changes(self, chosen, since_version=since_version,
                                until_version=until_version)

    def commit_cursor(self, view: str, cursor: str, version: int) -> None:
        """Record that consumer `cursor` has every change of `view` up to table `version`
        (the largest `version` of the changes it took): `changes(view, cursor=cursor)` then
        starts after it. A sink that commits its own position with its own writes can keep it
        there instead and pass `since_version`: delivery is then exactly once."""
        from eventlake.query.changes import commit_cursor

        commit_cursor(self, self.view(view), cursor, version)

    def failed_partitions(self, view: str) -> list[PartitionFailure]:
        """The partitions `view` stopped folding, each with the event it failed on."""
        from eventlake.engine.materialize import failed_partitions

        chosen = self.view(view)
        with self._damage_named([f"views/{chosen.name}"]):
            return failed_partitions(self, chosen)

    def relayout(self, layout: LayoutName, *, buckets: int | None = None,
                 chunk_events: int | None = None) -> RelayoutResult:
        """Move the event log to `layout` (`"buckets"` with `buckets` buckets, default 64, or
        `"partition_id"`) in one atomic commit; every seq, event id, batch key and view
        watermark stays. Readers see the old layout until the commit; see
        `eventlake.engine.relayout`."""
        from eventlake.engine.relayout import DEFAULT_RELAYOUT_CHUNK, relayout

        return relayout(self.log, Layout.named(layout, buckets=buckets),
                        chunk_events=chunk_events or DEFAULT_RELAYOUT_CHUNK)

    def erase(self, partition: str, *, reason: str, vacuum: bool = False) -> EraseResult:
        """Remove every event of `partition` from the event log's files and its rows from
        every view table; with `vacuum`, delete the old files that still hold them. Other
        events keep their seq; the erased seqs are recorded (`<root>/erasures`) as the one
        kind of gap `doctor` accepts. See `eventlake.ops.erase`."""
        from eventlake.ops.erase import erase

        return erase(self, partition, reason=reason, vacuum=vacuum)

    def restore(self, *, version: int | None = None,
                timestamp: datetime | str | None = None) -> RestoreResult:
        """Restore the event log to an earlier Delta version (or the newest one committed at
        or before `timestamp`) with its seq counter and batch keys; every view table is reset
        and rebuilt by the next `materialize()`. Stop writers first; see `eventlake.ops.restore`.
        """
        from eventlake.ops.restore import restore_log

        return restore_log(self, version=version, timestamp=timestamp)

    def state(self, partition: str, *, view: str = "document",
              as_of_seq: int | None = None, accept_changed_definition: bool = False) -> Any:
        """The exact state of one partition: stored row plus a fold of newer events.

        For an aggregate view, the partition's rows (one dict per group). A partition failed
        at or before the seq read raises `PartitionFailedError` naming the event.
        """
        from eventlake.engine.materialize import read_state

        chosen = self.view(view)
        with self._damage_named([f"views/{chosen.name}"]):
            return read_state(self, chosen, partition, as_of_seq=as_of_seq,
                              accept_changed_definition=accept_changed_definition)

    def check_definitions(self, views: Iterable[str] | None = None, *,
                          accept_changed_definition: bool = False) -> None:
        """Refuse (`ViewChangedError`) the named views (default: all) whose definition
        changed since they were built under the same version, or record the new one."""
        from eventlake.store.viewstore import ViewStore

        for name in (list(self._views) if views is None else views):
            store = ViewStore(self.storage, self.view(name))
            if store.exists():
                store.check_definition(store.snapshot(), accept=accept_changed_definition)

    @contextmanager
    def _damage_named(self, tables: Sequence[str]) -> Iterator[None]:
        """Turn a read failure caused by a damaged file into `CorruptLakeError` naming it.

        Reads are lazy, so Polars, Delta and the OS raise their own errors, often without
        the file; this checks the tables' files and names the damaged one. An error that
        no damaged file explains propagates unchanged.
        """
        from deltalake.exceptions import DeltaError

        try:
            yield
        except EventlakeError:
            raise
        except (pl.exceptions.PolarsError, OSError, DeltaError) as exc:
            from eventlake.ops.doctor import diagnose

            error = diagnose(self, exc, tables=tables)
            if error is None:
                raise
            raise error from exc

    def scan(self, view: str, *, as_of_version: int | None = None,
             accept_changed_definition: bool = False) -> pl.LazyFrame:
        """The logical view (one current row per partition, or per partition and group).

        A view changed under the same version is refused (`ViewChangedError`), unless
        `accept_changed_definition=True` records its new definition; `as_of_version` reads
        an old table version as it was, without that check.

        Its files are checked when the frame is built: a missing, truncated or garbage one
        raises `CorruptLakeError` naming it here, not a Polars error at `collect()`.
        """
        from eventlake.store.viewstore import ViewStore

        store = ViewStore(self.storage, self.view(view))
        if store.exists() and as_of_version is None:
            # Time travel reads the rows as they were, whatever definition built them.
            store.check_definition(store.snapshot(), accept=accept_changed_definition)
        return store.scan_logical(version=as_of_version)

    def sql(self, query: str, *, params: Sequence[Any] | dict[str, Any] | None = None,
            accept_changed_definition: bool = False) -> duckdb.DuckDBPyRelation:
        """Run DuckDB SQL with `events` and every view available as tables.

        The tables read the latest committed snapshot of each Delta table as of this call
        (exactly its active files); the relation keeps its own connection alive. Payload fields
        work with DuckDB's JSON operators, e.g. `payload->>'$.amount'`; pass values with
        `params` (`$1` / `$name` placeholders) rather than formatting them into `query`.

        Only the tables the query reads are defined, as DuckDB's parser lists them: a query of
        one view never plans or checks the event log's files (see `eventlake.query.sql.run_sql`).
        Their data files are checked first: a missing, truncated or garbage file raises
        `CorruptLakeError` naming it (see `Snapshot.check`). So is each view's definition, as
        `scan` does.
        """
        from eventlake.query.sql import run_sql

        return run_sql(self, query, params=params,
                       accept_changed_definition=accept_changed_definition)

    def __repr__(self) -> str:
        return f"Lake({self.storage.root!r}, views={list(self._views)})"


__all__ += ["EVENTS"]
