"""SQL view folds: a merge view folds as the AggregateView it compiles to; a recompute-touched
view runs its SELECT over the events it is given, which the engine makes the whole history of
the partitions it refreshes (a row depends on its own partition's events alone, so those rows
equal the SELECT over the whole log).

Pure: the in-memory DuckDB connection only computes, it reads and writes nothing.
"""

from __future__ import annotations

from typing import TypeGuard

import polars as pl

from eventlake.errors import SqlViewError
from eventlake.fold.aggregates import FAILURE, _cursor, fold_aggregate
from eventlake.model.sqlview import SqlView

__all__ = ["fold_sql", "select_rows", "whole_history"]


def whole_history(view: object) -> TypeGuard[SqlView]:
    """Whether a fold of `view` needs each partition's whole history (not only new events)."""
    return isinstance(view, SqlView) and view.aggregate is None


def select_rows(view: SqlView, events: pl.DataFrame) -> pl.DataFrame:
    """The rows of `view`'s SELECT with `events` as the `events` table (DuckDB's answer)."""
    import duckdb

    cursor = _cursor()
    try:
        cursor.register("events", events.to_arrow())
        try:
            table = cursor.sql(view.sql).to_arrow_table()
        except duckdb.Error as exc:
            raise SqlViewError(view.name, str(exc).splitlines()[0]) from None
    finally:
        cursor.close()
    # In the types the view table stores (a Delta table holds no "Etc/UTC" zone, no HUGEINT).
    frame = pl.from_arrow(table.cast(view.output_schema()))
    assert isinstance(frame, pl.DataFrame)
    return frame


def fold_sql(view: SqlView, prior: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """Rows of every partition in `events`: merged onto `prior` for a merge view; for a
    recompute-touched one, the SELECT over `events` (their partitions' whole history), with
    each partition's `last_seq` and `event_count` (all its events, whatever the query keeps).
    """
    if view.aggregate is not None:
        counts = view.sum_counts
        hidden = {f"_{c}": c for c in counts.values() if f"_{c}" in prior.columns}
        rows = fold_aggregate(view.aggregate, prior.rename(hidden), events)
        return rows.with_columns(
            pl.when(pl.col(count) > 0).then(pl.col(total)).alias(total)
            for total, count in counts.items()).rename({c: f"_{c}" for c in counts.values()})
    rows = select_rows(view, events)
    seen = events.group_by("partition_id").agg(pl.col("seq").max().alias("last_seq"),
                                               pl.len().cast(pl.Int64).alias("event_count"))
    return rows.join(seen, on="partition_id", how="left").with_columns(
        pl.lit(None, dtype=pl.String).alias(FAILURE))
