"""View tables: the physical layout of `<root>/views/<name>` and its commits.

Layout: one Delta table per view, partitioned by `generation` (one per full build) and by
`bucket`, a stable hash (CRC-32) of `partition_id` modulo a fixed bucket count. Every bucket is
kept as one file and a refresh rewrites only the buckets its batch touched, so

- a refresh costs the batch plus the touched buckets, never the whole view;
- reading one partition's row opens one bucket file (`bucket = crc32(partition) % buckets`);
- a full scan opens `buckets` files, not one tiny file per partition (100k partitions fit).

The table's app transactions carry the bookkeeping, committed atomically with the rows:
`eventlake.view/<name>/v<version>` is the watermark (last seq folded for all partitions by the
generation built for that view version), `.../active` the generation readers see and
`.../active-version` the view version it was built for, `.../building` a generation under
construction with its target seq and finished bucket count, and `.../commits` a counter every
commit bumps, so any two concurrent view commits collide and one re-reads. Rows of a generation
that is not active are invisible to every query surface, so a rebuild proceeds bucket by bucket
and flips atomically at the end.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError

from eventlake.errors import ViewChangedError, ViewDefinitionError
from eventlake.model.columns import ColumnType
from eventlake.model.layout import bucket_of
from eventlake.model.views import (
    FAILURE,
    MISMATCHES,
    AggregateView,
    ReducerView,
    SqlView,
    View,
    definition_fingerprint,
)
from eventlake.store.datafiles import DataFile, PlannedFile, delete_files, write_files
from eventlake.store.deltalog import Commit, FileRemoval
from eventlake.store.storage import Snapshot, Storage, among, commit_on, retry_commit

__all__ = [
    "DEFAULT_BUCKETS",
    "TYPE_KEY",
    "ViewStore",
    "Watermarks",
    "arrow_type",
    "bucket_of",
    "row_schema",
    "view_app_id",
]

DEFAULT_BUCKETS = 32
TS_TYPE = pa.timestamp("us", tz="UTC")
_BUCKETS_KEY = "eventlake.buckets"


_ARROW = {"int64": pa.int64(), "float64": pa.float64(), "decimal": pa.decimal128(38, 0),
          "string": pa.string()}


def _agg_fields(view: AggregateView) -> list[pa.Field]:
    fields: list[pa.Field] = []
    for name, agg in view.aggs.items():
        if agg.fn == "count":
            fields.append(pa.field(name, pa.int64()))
        elif agg.fn in ("sum", "min", "max"):
            fields.append(pa.field(name, _ARROW[agg.kind]))
        elif agg.fn == "avg":
            total = pa.decimal128(38, 0) if agg.kind in ("int64", "decimal") else pa.float64()
            fields += [pa.field(name, pa.float64()), pa.field(f"_{name}__sum", total),
                       pa.field(f"_{name}__n", pa.int64())]
        else:  # first / last keep their value (JSON scalar text by default) and its seq
            fields += [pa.field(name, _ARROW[agg.kind]), pa.field(f"_{name}__seq", pa.int64())]
    return fields


def _sql_fields(view: SqlView) -> list[pa.Field]:
    """A SQL view's columns in SELECT order: a merge view's are its AggregateView's (the
    hidden partials of an aggregate right after it), a recompute one's DuckDB's output."""
    if view.aggregate is None:
        return [f.with_nullable(True) for f in view.output_schema() if f.name != "partition_id"]
    agg = view.aggregate
    order = {c: i for i, c in enumerate(view.columns)}
    fields = [pa.field(c, pa.string()) for c in agg.group_columns] + _agg_fields(agg)
    hidden = set(view.sum_counts.values())
    fields = [f.with_name(f"_{f.name}") if f.name in hidden else f for f in fields]
    return sorted(fields, key=lambda f: order[f.name[1:].rsplit("__", 1)[0]
                                              if f.name.startswith("_") else f.name])


TYPE_KEY = "eventlake.type"


def arrow_type(kind: ColumnType) -> pa.DataType:
    """The Arrow type of a typed reducer view's column (`json` is its text)."""
    if kind.item is not None:
        return pa.list_(arrow_type(kind.item))
    return {"int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_(),
            "string": pa.string(), "json": pa.string()}[kind.kind]


def row_schema(view: View) -> pa.Schema:
    """The physical columns of a view's rows (logical columns plus bookkeeping)."""
    head = [pa.field("partition_id", pa.string(), nullable=False)]
    if isinstance(view, ReducerView):
        typed = view.column_types
        if typed is None:
            body = [pa.field("state", pa.string(), nullable=False)]
        else:
            # Nullable: a key may hold None. The declared name rides along as field metadata
            # (SQL shows a `json` column as JSON, not as the text it is stored as).
            body = [pa.field(name, arrow_type(kind), metadata={TYPE_KEY: kind.name})
                    for name, kind in typed.items()]
        if view.skip_invalid:
            body += [pa.field("rejected", pa.int64(), nullable=False),
                     pa.field("last_rejected", pa.string())]
        if typed is not None and view.on_mismatch == "null":
            body.append(pa.field(MISMATCHES, pa.int64(), nullable=False))
    elif isinstance(view, SqlView):
        body = _sql_fields(view)
    else:
        body = [pa.field(c, pa.string()) for c in view.group_columns] + _agg_fields(view)
    tail = [
        # JSON text {"seq", "type", "error"} of the event a failed partition stopped at.
        pa.field(FAILURE, pa.string()),
        pa.field("last_seq", pa.int64(), nullable=False),
        pa.field("event_count", pa.int64(), nullable=False),
        pa.field("updated_at", TS_TYPE, nullable=False),
        pa.field("bucket", pa.int32(), nullable=False),
        pa.field("generation", pa.int64(), nullable=False),
    ]
    return pa.schema(head + body + tail)


def logical_columns(view: View) -> list[str]:
    return [f.name for f in row_schema(view)
            if not f.name.startswith("_") and f.name not in ("bucket", "generation")]


@dataclass(frozen=True)
class Watermarks:
    """The bookkeeping of one view table snapshot."""

    active: int | None
    active_version: int | None
    watermark: int
    building: int | None
    building_version: int | None
    target: int
    done: int
    commits: int
    fingerprint: int | None = None  # of the definition the active generation was built from
    building_fingerprint: int | None = None


def view_app_id(name: str) -> str:
    """The prefix of the Delta app ids that keep the bookkeeping of view `name`'s table
    (`<prefix>/v<version>` is its watermark, `<prefix>/active` its active generation, ...)."""
    return f"eventlake.view/{name}"


class ViewStore:
    """Read and write side of one view's table."""

    def __init__(self, storage: Storage, view: View) -> None:
        self.storage = storage
        self.view = view
        self.name = f"views/{view.name}"
        self.app = view_app_id(view.name)

    # -- bookkeeping ---------------------------------------------------------------------

    def exists(self) -> bool:
        return self.storage.exists(self.name)

    def ensure(self, *, buckets: int = DEFAULT_BUCKETS, retype: bool = False) -> None:
        """Create the table if missing; add columns a new version needs.

        A column whose type changes (an aggregate's dtype) cannot be altered in place: with
        `retype` (a rebuild is about to run) the table is reset, in one commit, to the new
        column types with no rows, and readers see an empty view until the rebuild is done;
        without it, `ViewDefinitionError`.
        """
        schema = row_schema(self.view)
        if not self.exists():
            try:
                # The bucket count is fixed for the table's life; it lives in its properties.
                DeltaTable.create(
                    self.storage.uri(self.name), schema=schema,
                    partition_by=["generation", "bucket"], name=self.view.name,
                    configuration={"delta.checkpointInterval": "20", _BUCKETS_KEY: str(buckets)},
                    storage_options=self.storage.options or None,
                    raise_if_key_not_exists=False,
                )
            except Exception:
                if not self.exists():
                    raise
            return
        stored = self.snapshot().arrow_schema
        current = {f.name: f.type for f in stored}
        missing = []
        retyped = []
        for f in schema:
            if f.name not in current:
                missing.append(f)
            elif current[f.name] != f.type:
                retyped.append(f)
        if retyped and not retype:
            f = retyped[0]
            raise ViewDefinitionError(
                f"view {self.view.name!r} v{self.view.version}: column {f.name!r} changes "
                f"type from {current[f.name]} to {f.type}; a rebuild resets the view table")
        if retyped:
            self._reset_types(retyped)
            return
        if missing:
            from deltalake.schema import Field as DeltaField

            self.storage.table(self.name).alter.add_columns(
                [DeltaField.from_arrow(f.with_nullable(True)) for f in missing])
        # A required column of another version (`state` of an untyped one, when the view is
        # typed now) gets nulls in this version's rows: it must allow them.
        for f in stored:
            if not f.nullable and f.name not in schema.names:
                self.storage.table(self.name).alter.drop_column_not_null(f.name)

    def _reset_types(self, retyped: list[pa.Field]) -> None:
        """One commit: no rows, the new column types, and "nothing built" bookkeeping."""
        wanted = {f.name: f for f in row_schema(self.view)}

        def attempt() -> None:
            snap = self.snapshot()
            old = snap.arrow_schema
            fields = [wanted[f.name] if f.name in wanted else f for f in old]
            fields += [f for f in wanted.values() if f.name not in old.names]
            empty = pa.schema(fields).empty_table()
            counter = (snap.transaction_version(f"{self.app}/commits") or 0) + 1
            marks = {"commits": counter, "active": 0, "active-version": 0, "building": 0}
            with self.storage.writing(self.name, base=snap.version,
                                      txn=(f"{self.app}/commits", counter)):
                write_deltalake(
                    snap.table, empty, mode="overwrite", schema_mode="overwrite",
                    partition_by=["generation", "bucket"],
                    commit_properties=CommitProperties(
                        app_transactions=[Transaction(app_id=f"{self.app}/{k}", version=v)
                                          for k, v in marks.items()],
                        max_commit_retries=0,
                        custom_metadata={
                            "eventlake.operation": "reset-view-column-types",
                            "eventlake.columns": ", ".join(f.name for f in retyped)}))

        retry_commit(attempt, what=f"reset of view {self.view.name!r} for new column types")

    def snapshot(self, *, version: int | None = None) -> Snapshot:
        return Snapshot.load(self.storage, self.name, version=version)

    def buckets(self, snap: Snapshot) -> int:
        return int(snap.configuration.get(_BUCKETS_KEY) or DEFAULT_BUCKETS)

    def marks(self, snap: Snapshot) -> Watermarks:
        def txn(suffix: str) -> int | None:
            return snap.transaction_version(f"{self.app}/{suffix}")

        building = txn("building") or None
        return Watermarks(
            active=txn("active"),
            active_version=txn("active-version"),
            watermark=txn(f"v{self.view.version}") or 0,
            building=building,
            building_version=txn("building-version") if building else None,
            target=(txn(f"g{building}/target") or 0) if building else 0,
            done=(txn(f"g{building}/done") or 0) if building else 0,
            commits=txn("commits") or 0,
            fingerprint=txn("fingerprint"),
            building_fingerprint=txn(f"g{building}/fingerprint") if building else None,
        )

    def watermark(self, snap: Snapshot | None = None) -> int:
        """The last seq folded into this view version's rows (`snap`, default the latest): 0
        while the active generation is another version's, none is built or no table exists.
        """
        if snap is None:
            if not self.exists():
                return 0
            snap = self.snapshot()
        marks = self.marks(snap)
        return marks.watermark if marks.active_version == self.view.version else 0

    # -- the definition ------------------------------------------------------------------

    def check_definition(self, snap: Snapshot, *, accept: bool = False) -> Snapshot:
        """Refuse to use rows built from another definition of this view version.

        The active generation records the fingerprint of the definition it was built from
        (`views.definition_fingerprint`). If that differs from this definition's while the
        version is the same, rows of two definitions would mix: `ViewChangedError`. With
        `accept`, the new fingerprint is recorded instead (one bookkeeping commit, no row
        changes) and the snapshot after it is returned. A generation built before
        fingerprints existed has none: it is taken as this definition, and the next refresh
        commit records it. A column whose type changed cannot be accepted: it needs a
        rebuild, so a version bump.
        """
        marks = self.marks(snap)
        view = self.view
        if marks.active is None or marks.active_version != view.version:
            return snap  # nothing built for this version: a rebuild records the fingerprint
        retyped = self.retyped_columns(snap)
        if retyped:
            raise ViewChangedError(view.name, view.version, detail=", ".join(retyped),
                                   acceptable=False)
        current = definition_fingerprint(view)
        if marks.fingerprint is None or marks.fingerprint == current:
            return snap
        if not accept:
            raise ViewChangedError(view.name, view.version)

        def record() -> None:
            latest = self.snapshot()
            now = self.marks(latest)
            if now.active is None or now.active_version != view.version:
                return
            self.commit_buckets(latest, pl.DataFrame(), buckets=[], generation=now.active,
                                marks={"fingerprint": current})

        retry_commit(record, what=f"recording the new definition of view {view.name!r}")
        return self.snapshot()

    def retyped_columns(self, snap: Snapshot) -> list[str]:
        """The columns whose type in the table differs from this definition's, described."""
        stored = {f.name: f.type for f in snap.arrow_schema}
        return [f"column {f.name!r} is {stored[f.name]} in the table, {f.type} in the "
                "definition" for f in row_schema(self.view)
                if f.name in stored and stored[f.name] != f.type]

    # -- reading -------------------------------------------------------------------------

    def read_buckets(self, snap: Snapshot, buckets: Sequence[int], *, generation: int,
                     partitions: Sequence[str] | None = None) -> pl.DataFrame:
        plan = snap.plan(equals={"generation": [generation], "bucket": list(buckets)})
        # The plan holds only that generation's files: no filter on it.
        frame = snap.scan(plan)
        if partitions is not None:
            frame = frame.filter(among("partition_id", partitions))
        return frame.collect()

    def active(self, snap: Snapshot) -> int | None:
        """The generation readers see, if it was built for this view's version."""
        generation = snap.transaction_version(f"{self.app}/active")
        version = snap.transaction_version(f"{self.app}/active-version")
        return generation if generation is not None and version == self.view.version else None

    def read_checkpoint(self, snap: Snapshot, partition: str
                        ) -> tuple[dict[str, Any] | None, int] | None:
        """(row or None, view watermark) from the active generation, or None without one."""
        generation = self.active(snap)
        if generation is None:
            return None
        watermark = snap.transaction_version(f"{self.app}/v{self.view.version}") or 0
        bucket = bucket_of(partition, self.buckets(snap))
        rows = self.read_buckets(snap, [bucket], generation=generation,
                                 partitions=[partition])
        return (rows.row(0, named=True) if rows.height else None), watermark

    def scan_logical(self, *, version: int | None = None) -> pl.LazyFrame:
        """One current row per partition (and group), without bookkeeping columns."""
        columns = logical_columns(self.view)
        if not self.exists():
            schema = pa.schema([f for f in row_schema(self.view) if f.name in columns])
            frame = pl.from_arrow(schema.empty_table())
            assert isinstance(frame, pl.DataFrame)
            return frame.lazy()
        snap = self.snapshot(version=version)
        active = self.marks(snap).active
        if active is None:
            plan = snap.plan(equals={"generation": [-1]})
            return _logical(snap.scan(plan), self.view, snap)
        plan = snap.plan(equals={"generation": [active]})
        return _logical(snap.scan(plan).filter(pl.col("generation") == active), self.view,
                        snap)

    def failed_rows(self, snap: Snapshot) -> pl.DataFrame:
        """partition_id, failure, last_seq of the active generation's failed partitions."""
        generation = self.active(snap)
        if generation is None or FAILURE not in snap.arrow_schema.names:
            return pl.DataFrame(schema={"partition_id": pl.String(), FAILURE: pl.String(),
                                        "last_seq": pl.Int64()})
        plan = snap.plan(equals={"generation": [generation]})
        return (snap.scan(plan).filter(pl.col("generation") == generation)
                .filter(pl.col(FAILURE).is_not_null())
                .select("partition_id", FAILURE, "last_seq").collect()
                .unique("partition_id", keep="first").sort("partition_id"))

    def read_partition(self, snap: Snapshot, partition: str) -> pl.DataFrame | None:
        """Every row of one partition in the active generation, or None without one."""
        generation = self.active(snap)
        if generation is None:
            return None
        bucket = bucket_of(partition, self.buckets(snap))
        return self.read_buckets(snap, [bucket], generation=generation,
                                 partitions=[partition])

    # -- writing -------------------------------------------------------------------------

    def commit_buckets(
        self, snap: Snapshot, rows: pl.DataFrame, *, buckets: Sequence[int], generation: int,
        marks: dict[str, int], drop_generation: int | None = None,
    ) -> None:
        """Replace whole buckets of `generation` with `rows` plus bookkeeping, in one commit.

        `marks` maps app-id suffixes (`v3`, `active`, `building`, ...) to their new values.
        Written on the pinned snapshot: if another writer committed since, the shared
        `commits` counter collides, Delta refuses, and the caller re-reads and refolds.
        """
        counter = (snap.transaction_version(f"{self.app}/commits") or 0) + 1
        with self.storage.writing(self.name, base=snap.version,
                                  txn=(f"{self.app}/commits", counter)):
            files = self._write(snap, rows, generation)
            self._commit(snap, files, counter=counter, marks=marks, removes=_files_of(
                snap, generation=generation, buckets=buckets,
                drop_generations=() if drop_generation is None else (drop_generation,)))

    def write_buckets(self, snap: Snapshot, rows: pl.DataFrame, *, generation: int
                      ) -> list[DataFile]:
        """Write `rows` as the bucket files of `generation` without committing them (a
        bucket task's share of a commit that `commit_files` makes). Files no commit takes
        are orphans: `doctor --fix` deletes them."""
        with self.storage.writing(self.name):
            return self._write(snap, rows, generation)

    def commit_files(self, snap: Snapshot, files: Sequence[DataFile], *, generation: int,
                     buckets: Sequence[int], marks: dict[str, int],
                     drop_generations: Sequence[int] = ()) -> None:
        """Commit files written by `write_buckets` (by any process) in place of `buckets` of
        `generation` and every file of `drop_generations`, with bookkeeping, as one commit
        on the pinned snapshot; `CommitFailedError` when another writer committed since
        (the files stay, for the caller to commit again or delete)."""
        counter = (snap.transaction_version(f"{self.app}/commits") or 0) + 1
        with self.storage.writing(self.name, base=snap.version,
                                  txn=(f"{self.app}/commits", counter)):
            self._commit(snap, files, counter=counter, marks=marks, keep=True,
                         removes=_files_of(snap, generation=generation, buckets=buckets,
                                           drop_generations=drop_generations))

    def delete_written(self, files: Sequence[DataFile]) -> None:
        """Delete files `write_buckets` wrote that no commit took."""
        delete_files(self.storage, self.name, files)

    def _write(self, snap: Snapshot, rows: pl.DataFrame, generation: int) -> list[DataFile]:
        arrow = _conform(rows, row_schema(self.view), snap.arrow_schema, generation)
        return write_files(self.storage, self.name, _bucket_files(arrow, generation),
                           stats_columns=(), statistics_columns=("partition_id", "last_seq"))

    def _commit(self, snap: Snapshot, files: Sequence[DataFile], *, counter: int,
                marks: dict[str, int], removes: list[FileRemoval], keep: bool = False) -> None:
        txns = [(f"{self.app}/commits", counter, False)]
        txns += [(f"{self.app}/{k}", int(v), False) for k, v in marks.items()]
        try:
            commit_on(self.storage, self.name, snap, Commit(
                adds=[f.action for f in files], removes=removes, txns=txns,
                mode="Overwrite"), partition_by=["generation", "bucket"])
        except CommitFailedError:
            if not keep:
                delete_files(self.storage, self.name, files)
            raise


def _files_of(snap: Snapshot, *, generation: int, buckets: Sequence[int],
              drop_generations: Sequence[int]) -> list[FileRemoval]:
    """The live files a bucket commit replaces: those of `buckets` in `generation`, and
    every file of `drop_generations`."""
    actions = snap.add_actions()
    if not actions.num_rows:
        return []
    generations = pc.cast(actions.column("partition.generation"), pa.int64())
    numbers = pc.cast(actions.column("partition.bucket"), pa.int64())
    mask = pc.and_(pc.equal(generations, generation),
                   pc.is_in(numbers, value_set=pa.array(sorted(set(buckets)), pa.int64())))
    if drop_generations:
        mask = pc.or_(mask, pc.is_in(generations, value_set=pa.array(
            sorted(set(drop_generations)), pa.int64())))
    chosen = actions.filter(pc.fill_null(mask, False))
    return [FileRemoval(path, {"generation": str(g), "bucket": str(b)}, size)
            for path, g, b, size in zip(
                chosen.column("path").to_pylist(),
                chosen.column("partition.generation").to_pylist(),
                chosen.column("partition.bucket").to_pylist(),
                chosen.column("size_bytes").to_pylist(), strict=True)]


def _bucket_files(rows: pa.Table, generation: int) -> list[PlannedFile]:
    """One file per bucket of `rows`, sorted by partition (a point read then prunes on the
    files' row-group statistics), without the partition columns."""
    if not rows.num_rows:
        return []
    ordered = rows.sort_by([("bucket", "ascending"), ("partition_id", "ascending")])
    numbers = ordered.column("bucket").to_numpy()
    cuts = [0, *(int(i) + 1 for i in (numbers[1:] != numbers[:-1]).nonzero()[0]),
            len(numbers)]
    body = ordered.drop_columns(["generation", "bucket"])
    return [PlannedFile({"generation": str(generation), "bucket": str(int(numbers[a]))},
                        body.slice(a, b - a))
            for a, b in itertools.pairwise(cuts)]


def _logical(frame: pl.LazyFrame, view: View, snap: Snapshot) -> pl.LazyFrame:
    """`frame` projected to the view's logical columns; a column the table lacks (a table
    written before it existed, not refreshed since) reads as nulls of its type."""
    present = set(snap.arrow_schema.names)
    wanted = [f for f in row_schema(view) if f.name in logical_columns(view)]
    missing = [f for f in wanted if f.name not in present]
    if missing:
        empty = pl.from_arrow(pa.schema(missing).empty_table())
        assert isinstance(empty, pl.DataFrame)
        frame = frame.with_columns(pl.lit(None, dtype=t).alias(n)
                                   for n, t in empty.schema.items())
    return frame.select([f.name for f in wanted])


def _conform(rows: pl.DataFrame, schema: pa.Schema, table_schema: pa.Schema,
             generation: int) -> pa.Table:
    """Arrow rows in the table's column order; columns of other versions stay null."""
    n = rows.height
    if not n:
        return table_schema.empty_table()
    now = pa.scalar(datetime.now(UTC), TS_TYPE)
    source = rows.to_arrow()
    columns = []
    for f in table_schema:
        if f.name in source.column_names:
            columns.append(source.column(f.name).cast(f.type))
        elif f.name == "updated_at":
            columns.append(pa.repeat(now, n))
        elif f.name == "generation":
            columns.append(pa.repeat(pa.scalar(generation, pa.int64()), n))
        else:
            if f.name in schema.names and not schema.field(f.name).nullable:
                raise ValueError(f"missing view column {f.name}")
            columns.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(columns, schema=table_schema)
