"""Moving an event log between its physical layouts in one atomic commit.

`relayout(lake, layout)` rewrites every event into the files of the other layout (or the same
layout with another bucket count) and swaps them in with one commit that removes every old
file, adds the new ones and records the new partitioning, all with `dataChange=false` (rows
move, none is added: a Delta stream or change feed reads nothing new). Nothing logical changes:
every `seq`, event id, batch id, batch key and view watermark stays as it was, so views need no
rebuild.

- **Bounded memory.** Events are read and written in chunks of whole partitions (about
  `chunk_events` events; one partition is never split), grouped so that every file of the new
  layout is written once: for a bucketed target, chunks are runs of whole target buckets.
- **Readers and crashes.** Readers see the old layout until the commit; a crash before it
  leaves the old layout intact plus unreferenced new files (`eventlake doctor --fix` or a vacuum
  deletes them), a crash after it a finished relayout. An error raised after the commit landed
  (an interrupt) keeps the new files: the commit is found by a mark in its commit info.
- **Writers.** The commit is made on exactly the version that was read. On a local lake it is
  eventlake's own put-if-absent commit (`eventlake.store.deltalog`), so an append that lands during
  the relayout makes it fail cleanly (`RelayoutError`, nothing changed; run it again). On object
  storage delta-rs writes the commit and cannot be told which version it must follow: stop
  writers first there (as for `restore`).
- **Time travel** to versions before the relayout keeps working (their files are removed from
  the table, not deleted, until a vacuum past its retention).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import polars as pl
import pyarrow as pa
from deltalake import CommitProperties, Transaction
from deltalake.exceptions import CommitFailedError
from deltalake.schema import Schema as DeltaSchema
from deltalake.transaction import AddAction, create_table_with_add_actions

from eventlake.errors import RelayoutError
from eventlake.model.events import EVENT_SCHEMA
from eventlake.model.layout import Layout, bucket_of
from eventlake.model.progress import Progress, ProgressSink
from eventlake.store.datafiles import DataFile, delete_files
from eventlake.store.deltalog import Commit, FileRemoval
from eventlake.store.log import (
    EVENTS,
    LAYOUT_APP_ID,
    LAYOUT_BUCKETS_KEY,
    LAYOUT_KEY,
    EventLog,
    log_schema,
    plan_files,
)
from eventlake.store.storage import Snapshot, commit_on
from eventlake.store.storage_failures import landed

__all__ = ["DEFAULT_RELAYOUT_CHUNK", "RelayoutResult", "relayout"]

DEFAULT_RELAYOUT_CHUNK = 1_000_000


@dataclass(frozen=True)
class RelayoutResult:
    """What one relayout did: the layouts, the events and files moved, the new version."""

    before: str
    after: str
    events: int
    files_removed: int
    files_added: int
    version: int | None
    seconds: float

    @property
    def changed(self) -> bool:
        return self.version is not None


def _chunks(sizes: dict[str, int], target: Layout, chunk: int) -> list[list[str]]:
    """Partitions in groups of about `chunk` events: runs of whole target buckets for a
    bucketed target (each target bucket written once), else runs of whole partitions."""
    if target.kind == "buckets":
        by_bucket: dict[int, list[str]] = {}
        for partition in sorted(sizes):
            by_bucket.setdefault(bucket_of(partition, target.bucket_count), []).append(partition)
        units = [by_bucket[b] for b in sorted(by_bucket)]
    else:
        units = [[p] for p in sorted(sizes)]
    groups: list[list[str]] = []
    current: list[str] = []
    total = 0
    for unit in units:
        size = sum(sizes[p] for p in unit)
        if current and total + size > chunk:
            groups.append(current)
            current, total = [], 0
        current += unit
        total += size
    if current:
        groups.append(current)
    return groups


def _metadata(snap: Snapshot, target: Layout) -> dict[str, object]:
    """The `metaData` action of the relaid table: same id, the target's schema, partition
    column and configuration."""
    table = snap.table
    old = table.metadata()
    configuration = {k: v for k, v in snap.configuration.items()
                     if k not in (LAYOUT_KEY, LAYOUT_BUCKETS_KEY)}
    configuration[LAYOUT_KEY] = target.kind
    if target.buckets is not None:
        configuration[LAYOUT_BUCKETS_KEY] = str(target.buckets)
    return {"id": old.id, "name": old.name, "description": old.description,
            "format": {"provider": "parquet", "options": {}},
            "schemaString": DeltaSchema.from_arrow(log_schema(target)).to_json(),
            "partitionColumns": [target.partition_column],
            "configuration": configuration,
            "createdTime": old.created_time or int(time.time() * 1000)}


def relayout(log: EventLog, target: Layout, *, chunk_events: int = DEFAULT_RELAYOUT_CHUNK,
             progress: ProgressSink | None = None) -> RelayoutResult:
    """Rewrite the log into `target`'s layout in one commit; see the module doc."""
    started = time.perf_counter()
    snap = log.snapshot()
    current = log.layout(snap)
    if current == target:
        return RelayoutResult(current.describe(), target.describe(), 0, 0, 0, None,
                              time.perf_counter() - started)
    actions = snap.add_actions()
    sizes = log.partition_sizes(snap)
    groups = _chunks(sizes, target, max(1, chunk_events))
    written: list[DataFile] = []
    moved = 0
    # Marks the commit, so a failure after it can tell whether it landed (see below).
    mark = ("eventlake.relayout", uuid.uuid4().hex)
    committing = False
    try:
        with log.storage.writing(EVENTS, note="the log keeps its old layout"):
            for number, members in enumerate(groups, start=1):
                plan = log.plan(partitions=members, snapshot=snap)
                rows = (snap.scan(plan).select(EVENT_SCHEMA.names)
                        .filter(pl.col("partition_id").is_in(members)).collect().to_arrow())
                rows = rows.cast(EVENT_SCHEMA)
                expected = sum(sizes[p] for p in members)
                if rows.num_rows != expected:
                    raise RelayoutError(
                        f"relayout read {rows.num_rows} events of {len(members)} partitions "
                        f"where the log holds {expected}; nothing was committed")
                planned = plan_files(rows.sort_by("seq"), target, tail=False)
                written += log._write(planned, target, data_change=False)
                moved += rows.num_rows
                if progress is not None:
                    progress(Progress("relayout", number, len(groups), "chunks"))
        removes = _removals(snap, actions)
        txns = [(LAYOUT_APP_ID, target.buckets or 0, False)]
        info = {"eventlake.operation": "relayout", "eventlake.layout": target.describe(),
                mark[0]: mark[1]}
        adds = [f.action for f in written]
        committing = True
        with log.storage.writing(EVENTS, base=snap.version, metadata=mark):
            if snap.on_table_log:
                version = commit_on(log.storage, EVENTS, snap, Commit(
                    adds=adds, removes=removes, txns=txns, info=info, operation="RELAYOUT",
                    mode="Overwrite", data_change=False, metadata=_metadata(snap, target)),
                    partition_by=[target.partition_column])
            else:
                version = _commit_remote(log, snap, target, adds, txns, info)
    except CommitFailedError as exc:
        delete_files(log.storage, EVENTS, written)
        raise RelayoutError(
            f"another writer committed to the event log during the relayout ({exc}); nothing "
            "was changed: run it again (with writers stopped, it cannot be beaten)") from None
    except BaseException:
        # Files a landed commit references are the log's now (an interrupt can come after
        # the commit's file is in place): only those of a commit that did not land go.
        if not (committing and landed(log.storage, EVENTS, snap.version + 1, txn=None,
                                      metadata=mark)):
            delete_files(log.storage, EVENTS, written)
        raise
    return RelayoutResult(current.describe(), target.describe(), moved, actions.num_rows,
                          len(written), version, time.perf_counter() - started)


def _removals(snap: Snapshot, actions: pa.Table) -> list[FileRemoval]:
    """A remove action for every live file of `snap` (its path, partition values, size)."""
    columns = {column: actions.column(f"partition.{column}").to_pylist()
               for column in snap.partition_columns}
    return [FileRemoval(path, {column: None if values[index] is None else str(values[index])
                               for column, values in columns.items()}, size)
            for index, (path, size) in enumerate(zip(
                actions.column("path").to_pylist(), actions.column("size_bytes").to_pylist(),
                strict=True))]


def _commit_remote(log: EventLog, snap: Snapshot, target: Layout, adds: list[AddAction],
                   txns: list[tuple[str, int, bool]], info: dict[str, str]) -> int:
    """Object storage: delta-rs replaces the table's files and partitioning in one commit
    (its own check that the log did not move is the best available; stop writers first)."""
    latest = log.storage.table(EVENTS)
    if latest.version() != snap.version:
        raise CommitFailedError(f"the log moved from version {snap.version} to "
                                f"{latest.version()}")
    old = latest.metadata()
    configuration = {k: v for k, v in snap.configuration.items() if k.startswith("delta.")}
    create_table_with_add_actions(
        log.storage.uri(EVENTS), DeltaSchema.from_arrow(log_schema(target)),
        adds,
        mode="overwrite", partition_by=[target.partition_column], name=old.name,
        description=old.description, configuration=configuration,
        storage_options=log.storage.options or None,
        commit_properties=CommitProperties(
            max_commit_retries=0, custom_metadata=info,
            app_transactions=[Transaction(app_id=a, version=v) for a, v, _ in txns]))
    return snap.version + 1

