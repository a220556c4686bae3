"""Pure folds: prior view rows + new events -> new view rows. No I/O here.

The engine (`materialize`) reads rows and events around these functions and commits what they
return; `verify` and the tests call the same functions from an empty start to get the
from-scratch answer every stored row must equal.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import polars as pl

from eventlake.errors import InvalidEventError, ReducerError
from eventlake.events import decode_payload
from eventlake.views import AggregateView, ReducerView, View

__all__ = [
    "aggregate_partials",
    "encode_state",
    "fold_events",
    "fold_reducer",
    "iter_events",
    "merge_aggregates",
]


def encode_state(state: Any) -> str:
    return json.dumps(state, ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                      sort_keys=False)


_EVENT_COLUMNS = ("seq", "partition_id", "type", "payload", "ts", "event_id")


def iter_events(events: pl.DataFrame, *, after_seq: int = 0) -> Iterator[dict[str, Any]]:
    """Events as the dicts reducers get: seq, partition, type, payload (dict), ts, event_id."""
    columns = [events.get_column(c).to_list() for c in _EVENT_COLUMNS]
    for seq, partition, kind, payload, ts, event_id in zip(*columns, strict=True):
        if seq > after_seq:
            yield {"seq": seq, "partition": partition, "type": kind,
                   "payload": decode_payload(payload), "ts": ts, "event_id": event_id}


def _refused(view: ReducerView, event: dict[str, Any], exc: Exception) -> str:
    """The `last_rejected` text for an event the view skips; raises if it may not skip it."""
    if not (view.skip_invalid and isinstance(exc, InvalidEventError)):
        raise ReducerError(view=view.name, partition=event["partition"], seq=event["seq"],
                           event_type=event["type"], cause=exc) from exc
    return encode_state({"seq": event["seq"], "type": event["type"], "error": str(exc)})


def fold_events(view: ReducerView, state: Any, events: pl.DataFrame, *,
                after_seq: int = 0) -> tuple[Any, int, int]:
    """Fold one partition's events (seq order) above `after_seq`; returns state, last, count."""
    last = after_seq
    count = 0
    reduce = view.reduce
    for event in iter_events(events, after_seq=after_seq):
        try:
            state = reduce(state, event)
        except Exception as exc:
            _refused(view, event, exc)
        last = event["seq"]
        count += 1
    return state, last, count


def fold_reducer(view: ReducerView, prior: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """New rows (partition_id, state, last_seq, event_count) for every partition in `events`.

    `prior` holds the stored rows of (at least) those partitions; events at or below a row's
    `last_seq` were folded already and are skipped, so re-running a step never double-applies.
    One pass over the events sorted by (partition, seq): no per-partition frame operations.
    """
    skips = view.skip_invalid
    stored: dict[str, tuple[str, int, int, int, str | None]] = {}
    if prior.height:
        for partition, text, last, count, refused, why in zip(
            prior.get_column("partition_id").to_list(), prior.get_column("state").to_list(),
            prior.get_column("last_seq").to_list(), prior.get_column("event_count").to_list(),
            prior.get_column("rejected").to_list() if skips else [0] * prior.height,
            prior.get_column("last_rejected").to_list() if skips else [None] * prior.height,
            strict=True,
        ):
            stored[partition] = (text, last, count, refused or 0, why)
    ordered = events.sort(["partition_id", "seq"])
    # The column order of the view table (`viewstore.row_schema`).
    schema: dict[str, pl.DataType] = {"partition_id": pl.String(), "state": pl.String()}
    if skips:
        schema |= {"rejected": pl.Int64(), "last_rejected": pl.String()}
    schema |= {"last_seq": pl.Int64(), "event_count": pl.Int64()}
    out: dict[str, list[Any]] = {column: [] for column in schema}

    def finish(partition: str, state: Any, last: int, count: int, rejected: int,
               refusal: str | None) -> None:
        try:
            encoded = encode_state(state)
        except (TypeError, ValueError) as exc:
            raise ReducerError(view=view.name, partition=partition, seq=last,
                               event_type="(state encoding)", cause=exc) from exc
        out["partition_id"].append(partition)
        out["state"].append(encoded)
        out["last_seq"].append(last)
        out["event_count"].append(count)
        if skips:
            out["rejected"].append(rejected)
            out["last_rejected"].append(refusal)

    reduce = view.reduce
    current: str | None = None
    state: Any = None
    last = count = rejected = 0
    refusal: str | None = None
    for event in iter_events(ordered):
        partition = event["partition"]
        if partition != current:
            if current is not None:
                finish(current, state, last, count, rejected, refusal)
            current = partition
            if partition in stored:
                text, last, count, rejected, refusal = stored[partition]
                state = json.loads(text)
            else:
                state, last, count, rejected, refusal = view.initial_state(), 0, 0, 0, None
        if event["seq"] <= last:
            continue
        try:
            state = reduce(state, event)
        except Exception as exc:
            refusal = _refused(view, event, exc)
            rejected += 1
        last = event["seq"]
        count += 1
    if current is not None:
        finish(current, state, last, count, rejected, refusal)
    return pl.DataFrame(out, schema=schema)


def _field(path: str) -> pl.Expr:
    return pl.col("payload").str.json_path_match(f"$.{path}")


def _group_exprs(view: AggregateView) -> list[pl.Expr]:
    exprs = []
    for key, column in zip(view.group_by, view.group_columns, strict=True):
        if key == column and key in ("type", "event_id", "batch_id"):
            exprs.append(pl.col(key).cast(pl.String).alias(column))
        else:
            exprs.append(_field(key.removeprefix("payload.")).alias(column))
    return exprs


def aggregate_partials(view: AggregateView, events: pl.DataFrame) -> pl.DataFrame:
    """Per (partition, group) partial aggregates of `events`, in the view's stored columns."""
    keys = ["partition_id", *view.group_columns]
    partition_last = events.group_by("partition_id").agg(pl.col("seq").max().alias("_plast"))
    frame = events
    if view.where is not None:
        frame = frame.filter(pl.col("type").is_in(list(view.where)))
    values: list[pl.Expr] = []
    for name, agg in view.aggs.items():
        if agg.path is None:
            continue
        raw = _field(agg.path)
        if agg.fn in ("first", "last"):
            values.append(raw.alias(f"_{name}__raw"))
        else:
            values.append(raw.cast(pl.Float64, strict=False).alias(f"_{name}__num"))
            values.append(raw.is_not_null().alias(f"_{name}__present"))
    frame = frame.sort("seq").select(
        "partition_id", "seq", *_group_exprs(view), *values)
    aggs: list[pl.Expr] = [pl.len().cast(pl.Int64).alias("event_count")]
    for name, agg in view.aggs.items():
        num = pl.col(f"_{name}__num")
        if agg.fn == "count":
            aggs.append((pl.len() if agg.path is None
                         else pl.col(f"_{name}__present").sum()).cast(pl.Int64).alias(name))
        elif agg.fn == "sum":
            aggs.append(num.sum().alias(name))
        elif agg.fn == "min":
            aggs.append(num.min().alias(name))
        elif agg.fn == "max":
            aggs.append(num.max().alias(name))
        elif agg.fn == "avg":
            aggs += [num.sum().alias(f"_{name}__sum"),
                     num.count().cast(pl.Int64).alias(f"_{name}__n")]
        else:
            raw = pl.col(f"_{name}__raw")
            pick = raw.drop_nulls().first() if agg.fn == "first" else raw.drop_nulls().last()
            seq = pl.col("seq").filter(raw.is_not_null())
            aggs += [pick.alias(name),
                     (seq.min() if agg.fn == "first" else seq.max()).alias(f"_{name}__seq")]
    partials = frame.group_by(keys, maintain_order=True).agg(aggs)
    return _finish(view, partials.join(partition_last, on="partition_id", how="left")
                   .rename({"_plast": "last_seq"}))


def merge_aggregates(view: AggregateView, stored: pl.DataFrame, partials: pl.DataFrame,
                     partition_last: pl.DataFrame) -> pl.DataFrame:
    """Merge stored rows with new partials; `last_seq` becomes the partition's newest.

    `partition_last` (partition_id, last_seq) covers events the `where` filter dropped too, so
    every row of a touched partition records how far that partition was folded.
    """
    keys = ["partition_id", *view.group_columns]
    columns = [c for c in partials.columns]
    both = pl.concat([stored.select(columns), partials.select(columns)], how="vertical_relaxed")
    aggs: list[pl.Expr] = [pl.col("event_count").sum(), pl.col("last_seq").max()]
    for name, agg in view.aggs.items():
        if agg.fn in ("count", "sum"):
            aggs.append(pl.col(name).sum())
        elif agg.fn == "min":
            aggs.append(pl.col(name).min())
        elif agg.fn == "max":
            aggs.append(pl.col(name).max())
        elif agg.fn == "avg":
            aggs += [pl.col(f"_{name}__sum").sum(), pl.col(f"_{name}__n").sum()]
        else:
            seq = f"_{name}__seq"
            if agg.fn == "first":
                aggs += [pl.col(name).sort_by(seq, nulls_last=True).first(),
                         pl.col(seq).min()]
            else:
                aggs += [pl.col(name).sort_by(seq, nulls_last=False).last(),
                         pl.col(seq).max()]
    merged = both.group_by(keys, maintain_order=True).agg(aggs)
    newest = merged.group_by("partition_id").agg(pl.col("last_seq").max().alias("_plast"))
    newest = pl.concat([newest, partition_last.select(
        "partition_id", pl.col("last_seq").alias("_plast"))]).group_by("partition_id").agg(
        pl.col("_plast").max())
    merged = merged.join(newest, on="partition_id").with_columns(
        pl.col("_plast").alias("last_seq")).drop("_plast")
    return _finish(view, merged)


def _finish(view: AggregateView, frame: pl.DataFrame) -> pl.DataFrame:
    """Derive final avg values and fix the column order of the stored rows."""
    derived = []
    for name, agg in view.aggs.items():
        if agg.fn == "avg":
            n = pl.col(f"_{name}__n")
            derived.append(pl.when(n > 0).then(pl.col(f"_{name}__sum") / n)
                           .otherwise(None).cast(pl.Float64).alias(name))
    if derived:
        frame = frame.with_columns(derived)
    order = ["partition_id", *view.group_columns]
    for name, agg in view.aggs.items():
        order.append(name)
        if agg.fn == "avg":
            order += [f"_{name}__sum", f"_{name}__n"]
        elif agg.fn in ("first", "last"):
            order.append(f"_{name}__seq")
    order += ["last_seq", "event_count"]
    return frame.select(order)


def fold_view(view: View, prior: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """Rows for every partition in `events`, merged onto `prior` (that view's stored rows)."""
    if isinstance(view, ReducerView):
        return fold_reducer(view, prior, events)
    # Skip what a partition's rows have folded already (a re-run after an interrupted step).
    if prior.height:
        done = prior.group_by("partition_id").agg(pl.col("last_seq").max().alias("_done"))
        events = events.join(done, on="partition_id", how="left").filter(
            pl.col("_done").is_null() | (pl.col("seq") > pl.col("_done"))).drop("_done")
    partials = aggregate_partials(view, events)
    touched = events.get_column("partition_id").unique()
    stored = (prior.filter(pl.col("partition_id").is_in(touched.implode())) if prior.height
              else prior)
    if not stored.height:
        return partials
    partition_last = events.group_by("partition_id").agg(pl.col("seq").max().alias("last_seq"))
    return merge_aggregates(view, stored, partials, partition_last)


def rows_for(view: View, events: pl.DataFrame, partitions: Sequence[str] | None = None
             ) -> pl.DataFrame:
    """From-scratch rows: the reference every stored row must equal."""
    if partitions is not None:
        events = events.filter(pl.col("partition_id").is_in(list(partitions)))
    empty = pl.DataFrame()
    if isinstance(view, ReducerView):
        return fold_reducer(view, empty, events)
    return aggregate_partials(view, events)
