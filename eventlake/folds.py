"""Pure folds: prior view rows + new events -> new view rows. No I/O here.

The engine (`materialize`) reads rows and events around these functions and commits what they
return; `verify` and the tests call the same functions from an empty start to get the
from-scratch answer every stored row must equal.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import polars as pl

from eventlake.errors import InvalidEventError, ReducerError
from eventlake.events import decode_payload
from eventlake.views import AggregateView, ReducerView, View

__all__ = [
    "aggregate_partials",
    "encode_state",
    "event_columns",
    "fold_events",
    "fold_reducer",
    "iter_events",
    "merge_aggregates",
]


def encode_state(state: Any) -> str:
    return json.dumps(state, ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                      sort_keys=False)


_EVENT_COLUMNS = ("seq", "partition_id", "type", "payload", "ts", "event_id")


def event_columns(view: View) -> list[str]:
    """The event columns a fold of `view` reads."""
    if isinstance(view, ReducerView):
        return list(_EVENT_COLUMNS)
    extra = [c for c in ("event_id", "batch_id") if c in view.group_by]
    return ["seq", "partition_id", "type", "payload", *extra]


def _payload(text: str) -> dict[str, Any]:
    """Decode a payload as `events.decode_payload` does, only faster.

    Payloads in the log are validated strict JSON objects, which orjson reads to equal values
    about 1.7 times as fast as `json`; what orjson refuses (integers beyond 64 bits, lone
    surrogates, and anything invalid) goes to `decode_payload`, which has the last word.
    """
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return decode_payload(text)
    if type(value) is not dict:
        return decode_payload(text)  # raises its "not an object" error
    return value


def _timestamps(column: pl.Series) -> list[Any]:
    """The values of a timestamp column as Python datetimes.

    Making a tz-aware datetime is the costliest step of building an event dict, and events of
    one batch often share their `ts` (it defaults to the ingest time): when values repeat,
    each distinct one is converted once and shared (datetimes are immutable).
    """
    if column.len() < 64 or column.n_unique() * 4 > column.len():
        return column.to_list()
    distinct = column.unique()
    lookup = dict(zip(distinct.to_physical().to_list(), distinct.to_list(), strict=True))
    return list(map(lookup.__getitem__, column.to_physical().to_list()))


def _columns(frame: pl.DataFrame) -> list[list[Any]]:
    """The event columns of `frame` as Python lists, payloads still JSON text."""
    return [_timestamps(frame.get_column(c)) if c == "ts" else frame.get_column(c).to_list()
            for c in _EVENT_COLUMNS]


def _event(seq: int, partition: str, kind: str, text: str, ts: Any, event_id: str
           ) -> dict[str, Any]:
    return {"seq": seq, "partition": partition, "type": kind, "payload": _payload(text),
            "ts": ts, "event_id": event_id}


def iter_events(events: pl.DataFrame, *, after_seq: int = 0) -> Iterator[dict[str, Any]]:
    """Events as the dicts reducers get: seq, partition, type, payload (dict), ts, event_id."""
    frame = events.select(_EVENT_COLUMNS)
    if after_seq:
        frame = frame.filter(pl.col("seq") > after_seq)
    for row in zip(*_columns(frame), strict=True):
        yield _event(*row)


def _reduced(view: ReducerView, events: pl.DataFrame) -> pl.DataFrame:
    """The events `view.reduce` gets: those of the view's `types` (all without `types`)."""
    if view.types is None:
        return events
    return events.filter(pl.col("type").is_in(list(view.types)))


def _by_partition(events: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, tuple[int, int]]]:
    """`events` with each partition's rows together in seq order, and each one's row range.

    A sort on (partition_id, seq) row-encodes the string key and took about ten times as long
    as grouping row numbers by partition, one hash pass. The gather needs one chunk per
    column, else it crawls.
    """
    frame = events.sort("seq").rechunk()
    groups = (frame.select("partition_id", pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"))
              .group_by("partition_id").agg(pl.col("_row").sort()))
    rows = groups.get_column("_row")
    ranges: dict[str, tuple[int, int]] = {}
    start = 0
    for partition, size in zip(groups.get_column("partition_id").to_list(),
                               rows.list.len().to_list(), strict=True):
        ranges[partition] = (start, start + size)
        start += size
    return frame[rows.explode()], ranges


def _refused(view: ReducerView, event: dict[str, Any], exc: Exception) -> str:
    """The `last_rejected` text for an event the view skips; raises if it may not skip it."""
    if not (view.skip_invalid and isinstance(exc, InvalidEventError)):
        raise ReducerError(view=view.name, partition=event["partition"], seq=event["seq"],
                           event_type=event["type"], cause=exc) from exc
    return encode_state({"seq": event["seq"], "type": event["type"], "error": str(exc)})


def fold_events(view: ReducerView, state: Any, events: pl.DataFrame, *,
                after_seq: int = 0) -> tuple[Any, int, int]:
    """Fold one partition's events (seq order) above `after_seq`; returns state, last, count.

    `last` and `count` cover every event above `after_seq`, also those outside the view's
    `types` that `reduce` never sees.
    """
    frame = events.select(_EVENT_COLUMNS).filter(pl.col("seq") > after_seq).sort("seq")
    if not frame.height:
        return state, after_seq, 0
    reduce = view.reduce
    for row in zip(*_columns(_reduced(view, frame)), strict=True):
        event = _event(*row)
        try:
            state = reduce(state, event)
        except Exception as exc:
            _refused(view, event, exc)
    return state, int(frame.get_column("seq")[-1]), frame.height


def fold_reducer(view: ReducerView, prior: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """New rows (partition_id, state, last_seq, event_count) for every partition in `events`.

    `prior` holds the stored rows of (at least) those partitions; events at or below a row's
    `last_seq` were folded already and are skipped, so re-running a step never double-applies.
    `last_seq` and `event_count` count every event of the partition; `reduce` gets only the
    events of the view's `types`, one partition after the other in seq order, and a partition
    whose new events it does not get keeps its stored state text as it is.
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
    frame = events.select(_EVENT_COLUMNS)
    partitions = frame.get_column("partition_id").unique().sort().to_list()
    if stored:
        done = pl.DataFrame({"partition_id": list(stored),
                             "_done": [row[1] for row in stored.values()]},
                            schema={"partition_id": pl.String(), "_done": pl.Int64()})
        frame = frame.join(done, on="partition_id", how="left").filter(
            pl.col("_done").is_null() | (pl.col("seq") > pl.col("_done"))).drop("_done")
    news: dict[str, tuple[int, int]] = {
        partition: (n, last) for partition, n, last in frame.group_by("partition_id").agg(
            pl.len(), pl.col("seq").max()).iter_rows()}
    reduced, ranges = _by_partition(_reduced(view, frame))
    seqs, parts, kinds, texts, stamps, ids = _columns(reduced)
    # The column order of the view table (`viewstore.row_schema`).
    schema: dict[str, pl.DataType] = {"partition_id": pl.String(), "state": pl.String()}
    if skips:
        schema |= {"rejected": pl.Int64(), "last_rejected": pl.String()}
    schema |= {"last_seq": pl.Int64(), "event_count": pl.Int64()}
    out: dict[str, list[Any]] = {column: [] for column in schema}
    reduce = view.reduce
    for partition in partitions:
        if partition in stored:
            text, last, count, rejected, refusal = stored[partition]
        else:
            text, last, count, rejected, refusal = None, 0, 0, 0, None
        added, newest = news.get(partition, (0, last))
        if partition in ranges:
            lo, hi = ranges[partition]
            state = view.initial_state() if text is None else json.loads(text)
            for i in range(lo, hi):
                event = _event(seqs[i], parts[i], kinds[i], texts[i], stamps[i], ids[i])
                try:
                    state = reduce(state, event)
                except Exception as exc:
                    refusal = _refused(view, event, exc)
                    rejected += 1
            text = None
        elif text is not None:
            state = None  # unchanged: the stored text is kept as it is
        else:
            state = view.initial_state()
        if text is None:
            try:
                text = encode_state(state)
            except (TypeError, ValueError) as exc:
                raise ReducerError(view=view.name, partition=partition, seq=max(last, newest),
                                   event_type="(state encoding)", cause=exc) from exc
        out["partition_id"].append(partition)
        out["state"].append(text)
        out["last_seq"].append(max(last, newest))
        out["event_count"].append(count + added)
        if skips:
            out["rejected"].append(rejected)
            out["last_rejected"].append(refusal)
    return pl.DataFrame(out, schema=schema)


def _field(path: str) -> pl.Expr:
    return pl.col("payload").str.json_path_match(f"$.{path}")


def _group_exprs(view: AggregateView, raw: dict[str, str]) -> list[pl.Expr]:
    exprs = []
    for key, column in zip(view.group_by, view.group_columns, strict=True):
        if key == column and key in ("type", "event_id", "batch_id"):
            exprs.append(pl.col(key).cast(pl.String).alias(column))
        else:
            exprs.append(pl.col(raw[key.removeprefix("payload.")]).alias(column))
    return exprs


def _payload_paths(view: AggregateView) -> list[str]:
    """The distinct payload paths the view reads (group keys first, then aggregates)."""
    paths = [key.removeprefix("payload.") for key, column in zip(
        view.group_by, view.group_columns, strict=True)
        if not (key == column and key in ("type", "event_id", "batch_id"))]
    paths += [agg.path for agg in view.aggs.values() if agg.path is not None]
    return list(dict.fromkeys(paths))


def aggregate_partials(view: AggregateView, events: pl.DataFrame) -> pl.DataFrame:
    """Per (partition, group) partial aggregates of `events`, in the view's stored columns."""
    keys = ["partition_id", *view.group_columns]
    partition_last = events.group_by("partition_id").agg(pl.col("seq").max().alias("_plast"))
    frame = events
    if view.where is not None:
        frame = frame.filter(pl.col("type").is_in(list(view.where)))
    # Each payload path is matched once: JSON path matching is the costly step, and a path
    # an avg and a sum share would otherwise be matched for each use.
    raw = {path: f"__path{i}" for i, path in enumerate(_payload_paths(view))}
    frame = frame.with_columns(_field(path).alias(column) for path, column in raw.items())
    values: list[pl.Expr] = []
    for name, agg in view.aggs.items():
        if agg.path is None:
            continue
        text = pl.col(raw[agg.path])
        if agg.fn in ("first", "last"):
            values.append(text.alias(f"_{name}__raw"))
        else:
            values.append(text.cast(pl.Float64, strict=False).alias(f"_{name}__num"))
            values.append(text.is_not_null().alias(f"_{name}__present"))
    frame = frame.sort("seq").select(
        "partition_id", "seq", *_group_exprs(view, raw), *values)
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
            kept = pl.col(f"_{name}__raw")
            pick = kept.drop_nulls().first() if agg.fn == "first" else kept.drop_nulls().last()
            seq = pl.col("seq").filter(kept.is_not_null())
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
