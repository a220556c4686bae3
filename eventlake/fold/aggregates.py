"""Aggregate views, folded vectorized: exact payload values, partials merged onto stored rows.

Payload values are extracted with DuckDB's JSON functions over the Arrow data (one parse of
each payload for every path a view reads). DuckDB keeps integers beyond 64 bits as their
digits and quotes strings, so an integer is read exactly and the JSON string "12" is never
the number 12; Polars' `json_path_match` rounds the first and unquotes the second. It was
also about four times slower for three paths.

Each aggregate's column has the dtype its `Agg` declares (see `views.Agg`). In an "int64"
or "decimal" aggregate an integral number counts exactly; a number with a fraction, a value
outside the dtype's range, or a sum whose running total leaves that range is an error for
the partition: its rows stay as they were before that event, carry a `failure` (JSON text
with the event's seq, type and the error), and are not folded further until retried. The
running total is checked event by event in seq order, so where a partition fails does not
depend on how the events were split into refreshes.

Pure: the in-memory DuckDB connection only computes, it reads and writes nothing.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import polars as pl

from eventlake.model import jsoncodec
from eventlake.model.views import FAILURE, Agg, AggregateView

__all__ = ["FAILURE", "failure_text", "fold_aggregate", "rows_before", "stored_dtype"]

_INT64 = (-(2**63), 2**63 - 1)
_DECIMAL = (-(10**38 - 1), 10**38 - 1)
_LIMITS = {"int64": _INT64, "decimal": _DECIMAL}
_RANGE_NAMES = {"int64": "Int64", "decimal": "Decimal(38, 0)"}
_WIDER = {"int64": "decimal", "decimal": "float64"}
# Sums are computed in Int128: its wrapping arithmetic is exact modulo 2**128, so a total
# that fits (every checked total fits in Decimal(38, 0) < 2**127) comes out exact even if a
# partial on the way wrapped.
_WORK = pl.Int128()
_EVENT_KEYS = ("type", "event_id", "batch_id")
# A group's values cannot reach the range's edge when the float sum of their magnitudes
# stays this far inside it (float rounding is far smaller); otherwise it is checked exactly.
_MARGIN = 1e-6


def stored_dtype(dtype: str) -> pl.DataType:
    """The Polars type of an aggregate column of `dtype` in the view table."""
    return {"int64": pl.Int64(), "decimal": pl.Decimal(38, 0), "float64": pl.Float64(),
            "string": pl.String()}[dtype]


def failure_text(seq: int, event_type: str, error: str) -> str:
    """The `failure` column: JSON text naming the event a partition stopped at, and why."""
    return json.dumps({"seq": seq, "type": event_type, "error": error[:2000]},
                      ensure_ascii=False, separators=(",", ":"))


# -- extraction ------------------------------------------------------------------------------

_duck_lock = threading.Lock()
_duck: tuple[int, Any] | None = None


def _cursor() -> Any:
    """A cursor of one in-memory DuckDB per process (a forked child makes its own)."""
    global _duck
    import duckdb

    with _duck_lock:
        if _duck is None or _duck[0] != os.getpid():
            _duck = (os.getpid(), duckdb.connect(config={"preserve_insertion_order": True}))
        return _duck[1].cursor()


def _extract(payloads: pl.Series, json_paths: list[str], text_paths: list[str]
             ) -> dict[str, pl.Series]:
    """The values at payload paths, row-aligned with `payloads`.

    For a path in `json_paths`: `j:<path>`, its JSON text (strings quoted, integers with all
    their digits); for one in `text_paths`: `t:<path>`, the JSON scalar text (strings
    unquoted, JSON null as null), what group keys and first/last strings hold.
    """
    paths = list(dict.fromkeys([*json_paths, *text_paths]))
    if not paths:
        return {}
    listing = ", ".join(f"'$.{path}'" for path in paths)  # paths are dotted identifiers
    columns = []
    for i, path in enumerate(paths, start=1):
        if path in json_paths:
            columns.append(f'CAST(v[{i}] AS VARCHAR) AS "j{i}"')
        if path in text_paths:
            columns.append(f"""(v[{i}] ->> '$') AS "t{i}\"""")
    cursor = _cursor()
    try:
        cursor.register("__payloads", pl.DataFrame({"payload": payloads}).to_arrow())
        # DuckDB keeps the input order of a query without ORDER BY (preserve_insertion_order).
        out = cursor.sql(f"SELECT {', '.join(columns)} FROM (SELECT json_extract(payload, "
                         f"[{listing}]) AS v FROM __payloads)").pl()
    finally:
        cursor.close()
    result: dict[str, pl.Series] = {}
    for i, path in enumerate(paths, start=1):
        if path in json_paths:
            result[f"j:{path}"] = out.get_column(f"j{i}").cast(pl.String)
        if path in text_paths:
            result[f"t:{path}"] = out.get_column(f"t{i}").cast(pl.String)
    return result


def _exact_number(payload: str, path: str) -> Decimal:
    """The number at `path` exactly as written (DuckDB re-prints non-integers as doubles)."""
    value: Any = jsoncodec.loads(payload, numbers="decimal")
    for key in path.split("."):
        value = value[key]
    assert isinstance(value, Decimal)
    return value


def _numbers(text: pl.Series, dtype: str, payloads: pl.Series, path: str
             ) -> tuple[pl.Series, pl.Series]:
    """(values, problem) of one aggregate's JSON texts under `dtype`.

    Values are Float64 for "float64", else Int128; null where the text is not a number (or
    is a bad one). `problem` is 0 for fine, 1 for a number with a fraction where an integer
    is needed, 2 for a number outside the dtype's range.
    """
    frame = pl.DataFrame({"text": text})
    number = pl.col("text").str.contains(r"^-?[0-9]").fill_null(False)
    if dtype == "float64":
        values = frame.select(pl.when(number).then(
            pl.col("text").cast(pl.Float64, strict=False))).to_series()
        return values, pl.Series([0] * len(text), dtype=pl.Int8)
    integer = pl.col("text").str.contains(r"^-?[0-9]+$").fill_null(False)
    parsed = frame.select(
        pl.when(integer).then(pl.col("text").cast(_WORK, strict=False)).alias("value"),
        (number & ~integer).alias("other"), integer.alias("integer"))
    values = parsed.get_column("value")
    problem = parsed.select(pl.when(pl.col("integer") & pl.col("value").is_null()).then(2)
                            .otherwise(0).cast(pl.Int8)).to_series()
    # Numbers with a fraction or an exponent (5.0, 1e3, 2.5) are rare in integer fields:
    # read them from the payload text exactly, one by one.
    rows = parsed.get_column("other").arg_true()
    if len(rows):
        fixed: list[int | None] = []
        codes: list[int] = []
        for row in rows.to_list():
            exact = _exact_number(payloads[row], path)
            if exact != exact.to_integral_value():
                fixed.append(None)
                codes.append(1)
            elif not _DECIMAL[0] <= exact <= _DECIMAL[1]:
                fixed.append(None)
                codes.append(2)
            else:
                fixed.append(int(exact))
                codes.append(0)
        values = values.scatter(rows, pl.Series(fixed, dtype=_WORK))
        problem = problem.scatter(rows, pl.Series(codes, dtype=pl.Int8))
    lo, hi = _LIMITS[dtype]
    outside = ((values < lo) | (values > hi)).fill_null(False)
    if outside.any():
        problem = pl.select(pl.when(outside).then(2).otherwise(problem)).to_series()
        values = pl.select(pl.when(~outside).then(values)).to_series()
    return values, problem


# -- the fold --------------------------------------------------------------------------------


def _keys(view: AggregateView) -> list[str]:
    return ["partition_id", *view.group_columns]


def _payload_keys(view: AggregateView) -> list[tuple[str, str]]:
    """(group column, payload path) of the group keys read from the payload."""
    return [(column, key.removeprefix("payload."))
            for key, column in zip(view.group_by, view.group_columns, strict=True)
            if not (key == column and key in _EVENT_KEYS)]


def _values(view: AggregateView, events: pl.DataFrame) -> pl.DataFrame:
    """One row per event: partition_id, seq, _type, group columns, then per aggregate its
    value column(s) and `_<name>__problem`."""
    aggs = view.aggs
    numeric = [a.path for a in aggs.values()
               if a.path is not None and (a.fn not in ("first", "last") or a.kind != "string")]
    texts = [path for _, path in _payload_keys(view)]
    texts += [a.path for a in aggs.values()
              if a.path is not None and a.fn in ("first", "last") and a.kind == "string"]
    json_paths = list(dict.fromkeys(p for p in numeric if p is not None))
    json_paths += [a.path for a in aggs.values() if a.fn == "count" and a.path is not None
                   and a.path not in json_paths]
    payloads = events.get_column("payload")
    found = _extract(payloads, json_paths, list(dict.fromkeys(texts)))
    # `_type`: the event type, whatever the group columns are called (`type` may be one).
    columns: list[pl.Series] = [events.get_column("partition_id"), events.get_column("seq"),
                                events.get_column("type").alias("_type")]
    for key, column in zip(view.group_by, view.group_columns, strict=True):
        if key == column and key in _EVENT_KEYS:
            columns.append(events.get_column(key).cast(pl.String).alias(column))
    for column, path in _payload_keys(view):
        columns.append(found[f"t:{path}"].alias(column))
    parsed: dict[tuple[str, str], tuple[pl.Series, pl.Series]] = {}
    for name, agg in aggs.items():
        if agg.path is None:
            continue
        if agg.fn == "count":
            text = found[f"j:{agg.path}"]
            columns.append((text.is_not_null() & (text != "null")).fill_null(False)
                           .alias(f"_{name}__present"))
            continue
        if agg.fn in ("first", "last") and agg.kind == "string":
            columns.append(found[f"t:{agg.path}"].alias(f"_{name}__raw"))
            continue
        kind = agg.kind
        if (agg.path, kind) not in parsed:
            parsed[(agg.path, kind)] = _numbers(found[f"j:{agg.path}"], kind, payloads,
                                                agg.path)
        values, problem = parsed[(agg.path, kind)]
        suffix = "__raw" if agg.fn in ("first", "last") else "__num"
        columns += [values.alias(f"_{name}{suffix}"), problem.alias(f"_{name}__problem")]
        if (problem > 0).any():  # the text of refused values, for the error
            columns.append(found[f"j:{agg.path}"].alias(f"_{name}__text"))
    return pl.DataFrame(columns)


def _describe(name: str, agg: Agg) -> str:
    return f"aggregate {name!r} ({agg.fn} of payload.{agg.path}, {agg.kind})"


def _advice(agg: Agg, dtype: str) -> str:
    return (f"declare Agg({agg.fn!r}, {agg.path!r}, dtype={dtype!r}) and bump the view's "
            "version")


def _value_failures(view: AggregateView, values: pl.DataFrame) -> dict[str, tuple[int, str, str]]:
    """Partition -> (seq, type, error) of its first event with a value its dtype refuses."""
    found: dict[str, tuple[int, str, str]] = {}
    for name, agg in view.aggs.items():
        column = f"_{name}__problem"
        if column not in values.columns:
            continue
        bad = values.filter(pl.col(column) > 0)
        if not bad.height:
            continue
        firsts = bad.sort("seq").unique("partition_id", keep="first", maintain_order=True)
        for partition, seq, kind, code, text in zip(
            firsts.get_column("partition_id").to_list(), firsts.get_column("seq").to_list(),
            firsts.get_column("_type").to_list(), firsts.get_column(column).to_list(),
            firsts.get_column(f"_{name}__text").to_list(), strict=True,
        ):
            if partition in found and found[partition][0] <= seq:
                continue
            shown = text if len(text) <= 60 else text[:57] + "..."
            if code == 1:
                error = (f"{_describe(name, agg)}: {shown} is not an integer; "
                         f"{_advice(agg, 'float64')}")
            else:
                error = (f"{_describe(name, agg)}: {shown} does not fit in "
                         f"{_RANGE_NAMES[agg.kind]}; {_advice(agg, _WIDER[agg.kind])}")
            found[partition] = (seq, kind, error)
    return found


def _sum_failures(view: AggregateView, values: pl.DataFrame, stored: pl.DataFrame | None
                  ) -> dict[str, tuple[int, str, str]]:
    """Partition -> (seq, type, error) of the first event whose integer running sum leaves
    the aggregate's range (starting from the stored sum)."""
    keys = _keys(view)
    found: dict[str, tuple[int, str, str]] = {}
    for name, agg in view.aggs.items():
        if agg.fn not in ("sum", "avg") or agg.kind not in _LIMITS:
            continue
        # avg keeps its running sum as Decimal(38, 0), whatever the dtype of its values.
        limit = "decimal" if agg.fn == "avg" else agg.kind
        total_column = f"_{name}__sum" if agg.fn == "avg" else name
        lo, hi = _LIMITS[limit]
        num = f"_{name}__num"
        # Usually no group can come near the edge: the largest stored sum plus every new
        # magnitude stays far inside. Then there is nothing to check group by group.
        spread = float(values.get_column(num).cast(pl.Float64).abs().sum() or 0.0)
        if stored is not None and stored.height:
            spread += float(stored.get_column(total_column).cast(pl.Float64).abs().max()  # type: ignore[arg-type]
                            or 0.0)
        if spread < float(hi) * (1 - _MARGIN):
            continue
        reach = values.group_by(keys).agg(
            pl.col(num).cast(pl.Float64).abs().sum().alias("_reach"))
        if stored is not None and stored.height:
            base = stored.select(*keys, pl.col(total_column).cast(_WORK).alias("_base"))
            reach = reach.join(base, on=keys, how="left", nulls_equal=True)
        else:
            reach = reach.with_columns(pl.lit(None, dtype=_WORK).alias("_base"))
        reach = reach.with_columns(pl.col("_base").fill_null(0))
        risky = reach.filter(pl.col("_reach") + pl.col("_base").cast(pl.Float64).abs()
                             >= float(hi) * (1 - _MARGIN))
        if not risky.height:
            continue
        # Near the edge: walk those groups' values in seq order with exact Python ints.
        for group in risky.iter_rows(named=True):
            match = [(pl.col(k) == group[k]) if group[k] is not None else pl.col(k).is_null()
                     for k in keys]
            rows = values.filter(*match).sort("seq").select("seq", "_type", num)
            total = int(group["_base"])
            for seq, kind, value in rows.iter_rows():
                if value is None:
                    continue
                total += int(value)
                if not lo <= total <= hi:
                    partition = group["partition_id"]
                    if partition not in found or found[partition][0] > seq:
                        found[partition] = (seq, kind, (
                            f"{_describe(name, agg)}: the sum leaves "
                            f"{_RANGE_NAMES[limit]} at this event (it would be {total}); "
                            f"{_advice(agg, _WIDER[limit])}"))
                    break
    return found


def _partial_exprs(view: AggregateView) -> list[pl.Expr]:
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
    return aggs


def _merge_exprs(view: AggregateView) -> list[pl.Expr]:
    aggs: list[pl.Expr] = [pl.col("event_count").sum()]
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
                aggs += [pl.col(name).sort_by(seq, nulls_last=True).first(), pl.col(seq).min()]
            else:
                aggs += [pl.col(name).sort_by(seq, nulls_last=False).last(), pl.col(seq).max()]
    return aggs


def _work_types(view: AggregateView) -> dict[str, pl.DataType]:
    """The in-memory types of the value columns (integers in Int128 until stored)."""
    types: dict[str, pl.DataType] = {"event_count": pl.Int64()}
    for name, agg in view.aggs.items():
        if agg.fn == "count":
            types[name] = pl.Int64()
        elif agg.fn == "avg":
            types[f"_{name}__sum"] = _WORK if agg.kind in _LIMITS else pl.Float64()
            types[f"_{name}__n"] = pl.Int64()
        else:
            types[name] = _WORK if agg.kind in _LIMITS else stored_dtype(agg.kind)
            if agg.fn in ("first", "last"):
                types[f"_{name}__seq"] = pl.Int64()
    return types


def _order(view: AggregateView) -> list[str]:
    order = _keys(view)
    for name, agg in view.aggs.items():
        order.append(name)
        if agg.fn == "avg":
            order += [f"_{name}__sum", f"_{name}__n"]
        elif agg.fn in ("first", "last"):
            order.append(f"_{name}__seq")
    return [*order, FAILURE, "last_seq", "event_count"]


def _finish(view: AggregateView, frame: pl.DataFrame) -> pl.DataFrame:
    """Final avg values, stored dtypes and the column order of the view table's rows."""
    exprs = []
    for name, agg in view.aggs.items():
        if agg.fn == "avg":
            n = pl.col(f"_{name}__n")
            total = pl.col(f"_{name}__sum")
            exprs += [pl.when(n > 0).then(total / n).otherwise(None).cast(pl.Float64).alias(name),
                      total.cast(_avg_sum_dtype(agg))]
        elif agg.fn != "count":
            exprs.append(pl.col(name).cast(stored_dtype(agg.kind)))
    return frame.with_columns(exprs).select(_order(view))


def _avg_sum_dtype(agg: Agg) -> pl.DataType:
    """The stored type of an avg's running sum: exact for integral dtypes."""
    return pl.Decimal(38, 0) if agg.kind in _LIMITS else pl.Float64()


def _empty_rows(view: AggregateView) -> pl.DataFrame:
    schema: dict[str, pl.DataType] = dict.fromkeys(_keys(view), pl.String())
    for name, agg in view.aggs.items():
        schema[name] = pl.Int64() if agg.fn == "count" else (
            pl.Float64() if agg.fn == "avg" else stored_dtype(agg.kind))
        if agg.fn == "avg":
            schema |= {f"_{name}__sum": _avg_sum_dtype(agg), f"_{name}__n": pl.Int64()}
        elif agg.fn in ("first", "last"):
            schema[f"_{name}__seq"] = pl.Int64()
    schema |= {FAILURE: pl.String(), "last_seq": pl.Int64(), "event_count": pl.Int64()}
    return pl.DataFrame(schema=schema).select(_order(view))


def fold_aggregate(view: AggregateView, prior: pl.DataFrame, events: pl.DataFrame
                   ) -> pl.DataFrame:
    """Rows of every partition in `events`, merged onto `prior` (stored rows, any extra).

    Events at or below a partition's stored `last_seq` were folded already and are skipped
    (a re-run never double-applies). A partition whose stored rows carry a `failure` is
    returned as stored: it is folded again only once the caller clears the failure (retry).
    """
    keys = _keys(view)
    if not events.height:
        return _empty_rows(view)
    stored: pl.DataFrame | None = None
    held: pl.DataFrame | None = None  # rows of failed partitions, returned unchanged
    if prior.height:
        touched = events.get_column("partition_id").unique()
        prior = prior.filter(pl.col("partition_id").is_in(touched.implode()))
        if FAILURE not in prior.columns:
            prior = prior.with_columns(pl.lit(None, dtype=pl.String).alias(FAILURE))
        stored = prior.select(_order(view))
        done = stored.group_by("partition_id").agg(
            pl.col("last_seq").max().alias("_done"),
            pl.col(FAILURE).is_not_null().any().alias("_failed"))
        events = events.join(done, on="partition_id", how="left").filter(
            pl.col("_done").is_null()
            | ((pl.col("seq") > pl.col("_done")) & ~pl.col("_failed"))).drop(
            "_done", "_failed")
        if done.get_column("_failed").any():
            failed = done.filter(pl.col("_failed")).get_column("partition_id").implode()
            held = stored.filter(pl.col("partition_id").is_in(failed))
            stored = stored.filter(~pl.col("partition_id").is_in(failed))
        # Marker rows (a failed partition with no group yet) hold no aggregates; how far
        # their partition was folded is in `done`.
        stored = stored.filter(pl.col("event_count") > 0)
    events = events.sort("seq")
    kept = events if view.where is None else events.filter(
        pl.col("type").is_in(list(view.where)))
    values = _values(view, kept) if kept.height else None
    # Where each partition stops, if it does: its first refused value, else the first event
    # whose running sum leaves the range (counted on the events before that value only).
    cuts: dict[str, tuple[int, str, str]] = {}
    if values is not None:
        cuts = _value_failures(view, values)
        before = rows_before(values, _seqs(cuts))
        for partition, cut in _sum_failures(view, before, stored).items():
            if partition not in cuts or cut[0] < cuts[partition][0]:
                cuts[partition] = cut
        values = rows_before(values, _seqs(cuts))
    events = rows_before(events, _seqs(cuts))
    partition_last = events.group_by("partition_id").agg(pl.col("seq").max().alias("_plast"))
    types = _work_types(view)
    parts: list[pl.DataFrame] = []
    if stored is not None:
        parts.append(stored.select(*keys, *[pl.col(c).cast(t) for c, t in types.items()]))
        partition_last = pl.concat([partition_last, done.select(
            "partition_id", pl.col("_done").alias("_plast"))]).group_by("partition_id").agg(
            pl.col("_plast").max())
    if values is not None and values.height:
        partials = values.group_by(keys, maintain_order=True).agg(_partial_exprs(view))
        parts.append(partials.select(*keys, *[pl.col(c).cast(t) for c, t in types.items()]))
    if parts:
        both = pl.concat(parts, how="vertical_relaxed")
        merged = (both.group_by(keys, maintain_order=True).agg(_merge_exprs(view))
                  if len(parts) > 1 else both)
    else:
        merged = pl.DataFrame(schema={**dict.fromkeys(keys, pl.String()), **types})
    merged = merged.join(partition_last, on="partition_id", how="left").rename(
        {"_plast": "last_seq"}).with_columns(pl.lit(None, dtype=pl.String).alias(FAILURE))
    if cuts:
        merged = _mark_failures(view, merged, cuts, partition_last, types)
    rows = _finish(view, merged)
    if held is not None and held.height:
        rows = pl.concat([rows, held.select(rows.columns)], how="vertical_relaxed")
    return rows


def rows_before(frame: pl.DataFrame, cuts: Mapping[str, int]) -> pl.DataFrame:
    """`frame` without the events of each cut partition from its cut seq on."""
    if not cuts:
        return frame
    limits = pl.DataFrame({"partition_id": list(cuts), "_cut": list(cuts.values())},
                          schema={"partition_id": pl.String(), "_cut": pl.Int64()})
    return frame.join(limits, on="partition_id", how="left").filter(
        pl.col("_cut").is_null() | (pl.col("seq") < pl.col("_cut"))).drop("_cut")


def _seqs(cuts: Mapping[str, tuple[int, str, str]]) -> dict[str, int]:
    return {partition: cut[0] for partition, cut in cuts.items()}


def _mark_failures(view: AggregateView, merged: pl.DataFrame,
                   cuts: dict[str, tuple[int, str, str]], partition_last: pl.DataFrame,
                   types: dict[str, pl.DataType]) -> pl.DataFrame:
    """Set `failure` on every row of a failed partition; one without rows gets a marker row
    (null groups, no events) to carry it."""
    texts = pl.DataFrame({"partition_id": list(cuts),
                          "_failure": [failure_text(*cut) for cut in cuts.values()]},
                         schema={"partition_id": pl.String(), "_failure": pl.String()})
    merged = merged.join(texts, on="partition_id", how="left").with_columns(
        pl.col("_failure").alias(FAILURE)).drop("_failure")
    have = set(merged.get_column("partition_id").unique().to_list())
    lonely = [p for p in cuts if p not in have]
    if not lonely:
        return merged
    last = dict(partition_last.iter_rows())
    markers = pl.DataFrame(
        {"partition_id": lonely, "event_count": [0] * len(lonely),
         "last_seq": [last.get(p, 0) for p in lonely],
         FAILURE: [failure_text(*cuts[p]) for p in lonely]},
        schema={"partition_id": pl.String(), "event_count": pl.Int64(),
                "last_seq": pl.Int64(), FAILURE: pl.String()})
    markers = markers.with_columns(
        *[pl.lit(None, dtype=pl.String).alias(c) for c in view.group_columns],
        *[pl.lit(None, dtype=t).alias(c) for c, t in types.items() if c != "event_count"])
    return pl.concat([merged, markers.select(merged.columns)], how="vertical_relaxed")
