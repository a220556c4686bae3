"""Reads of SQL views: one partition's rows, from the view table when they are current, else
the SELECT run over that partition's events alone.

A refresh of a SQL view is `materialize`'s: a merge view folds as its AggregateView, and a
recompute-touched view (`fold.sqlfold.whole_history`) gets the whole history of the
partitions a batch touched, read through the log's partition pruning, and its rows replace
those partitions' rows in the same commit as the watermark.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import polars as pl

from eventlake.engine.materialize import _failure, read_events
from eventlake.fold.folds import FAILURE, event_columns, fold_view
from eventlake.fold.sqlfold import select_rows
from eventlake.model.views import SqlView
from eventlake.store.storage import Snapshot
from eventlake.store.viewstore import ViewStore

if TYPE_CHECKING:
    from eventlake.store.parts import LakeParts

__all__ = ["recompute_touched", "sql_rows", "sql_state"]


def recompute_touched(lake: LakeParts, view: SqlView, touched: list[str], end: int, *,
                      chunk: int, snapshot: Snapshot | None = None) -> pl.DataFrame:
    """New rows of the `touched` partitions of a recompute-touched view: its SELECT over
    their whole history up to `end`, and nobody else's.

    Partitions go in groups of about `chunk` events of history (a partition larger than that
    alone), so memory follows `chunk` and the largest partition, not the batch's reach; the
    caller commits all groups' rows in one commit.
    """
    snap = snapshot or lake.log.snapshot()
    columns = event_columns(view)
    plan = lake.log.plan(partitions=touched, until_seq=end, snapshot=snap)
    groups = [touched]
    if len(touched) > 1 and plan.rows > chunk:
        # The files hold more than a chunk: count each partition's events to split them.
        sizes = lake.log.partition_sizes(snap, until_seq=end, plan=plan)
        groups, total = [[]], 0
        for partition in touched:
            size = sizes.get(partition, 0)
            if groups[-1] and total + size > chunk:
                groups.append([])
                total = 0
            groups[-1].append(partition)
            total += size
    parts = []
    for group in groups:
        events = read_events(lake, group, until_seq=end, columns=columns, snapshot=snap)
        if events.height:
            parts.append(fold_view(view, pl.DataFrame(), events))
    return pl.concat(parts, how="vertical_relaxed") if parts else pl.DataFrame()


def sql_rows(view: SqlView, rows: pl.DataFrame) -> list[dict[str, Any]]:
    """A partition's rows as `lake.state` gives them: the SELECT's columns but
    `partition_id`, ordered by the group keys."""
    columns = [c for c in view.columns if c != "partition_id"]
    if not rows.height:
        return []
    if view.group_columns:
        rows = rows.sort(list(view.group_columns), nulls_last=True)
    return rows.select(columns).to_dicts()


def sql_state(lake: LakeParts, store: ViewStore, snap: Snapshot | None, partition: str,
              target: int, log: Snapshot) -> list[dict[str, Any]]:
    """One partition's rows of a SQL view as of `target`.

    The stored rows answer when the view's watermark is at `target`, or below it with no
    event of the partition in between; otherwise (a read in the past, or a stale view) the
    SELECT runs over the partition's events up to `target`, which is the definition itself.
    """
    view = store.view
    assert isinstance(view, SqlView)
    if snap is not None and store.active(snap) is not None:
        watermark = store.watermark(snap)
        current = watermark == target or (watermark < target and not lake.events(
            partition, since_seq=watermark, until_seq=target, snapshot=log).select(
            "seq").head(1).collect().height)
        if current:
            rows = store.read_partition(snap, partition)
            if rows is not None and rows.height and FAILURE in rows.columns:
                failed = rows.filter(pl.col(FAILURE).is_not_null())
                failure = _failure(view, partition, failed.row(0, named=True)
                                   ) if failed.height else None
                if failure is not None:
                    raise failure.error_object()
            return sql_rows(view, rows if rows is not None else pl.DataFrame())
    events = lake.events(partition, until_seq=target, snapshot=log).collect()
    return sql_rows(view, select_rows(view, events) if events.height else pl.DataFrame())
