"""Pure folds: prior view rows + new events -> new view rows. No I/O here.

The engine (`materialize`) reads rows and events around these functions and commits what they
return; `verify` and the tests call the same functions from an empty start to get the
from-scratch answer every stored row must equal. Reducer views fold here, event by event;
aggregate views fold vectorized in `eventlake.fold.aggregates`.

One partition never blocks the others: an exception from `reduce` (any `Exception`, also
`RecursionError`) stops only that partition, at that event; its row keeps the state before
the event and a `failure` naming it, and every other partition folds on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from eventlake.errors import InvalidEventError, PartitionFailedError, ReducerError
from eventlake.fold.aggregates import FAILURE, failure_text, fold_aggregate, rows_before
from eventlake.fold.sqlfold import fold_sql
from eventlake.model import jsoncodec
from eventlake.model.events import decode_payload
from eventlake.model.views import ReducerView, SqlView, View

__all__ = [
    "FAILURE",
    "encode_state",
    "event_columns",
    "fold_events",
    "fold_reducer",
    "fold_view",
    "rows_for",
]


def encode_state(state: Any) -> str:
    # Strict and any depth: a state nests as deep as its events make it (a treePush chain).
    return jsoncodec.dumps(state)


_EVENT_COLUMNS = ("seq", "partition_id", "type", "payload", "ts", "event_id")


def event_columns(view: View) -> list[str]:
    """The event columns a fold of `view` reads."""
    if isinstance(view, ReducerView):
        return list(_EVENT_COLUMNS)
    if isinstance(view, SqlView):
        return event_columns(view.aggregate) if view.aggregate else list(view.reads)
    extra = [c for c in ("event_id", "batch_id") if c in view.group_by]
    return ["seq", "partition_id", "type", "payload", *extra]


def _payload(text: str) -> dict[str, Any]:
    """Decode a payload: `model.events.decode_payload`, the strict codec (orjson where it proves
    exact, integers beyond 64 bits included)."""
    return decode_payload(text)


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


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _skips(view: ReducerView, exc: Exception) -> bool:
    """Whether the view skips (and counts) an event whose fold raised `exc`."""
    return view.skip_invalid and isinstance(exc, InvalidEventError)


def _refusal(seq: int, kind: str, exc: Exception) -> str:
    """The `last_rejected` text of an event the view skipped."""
    return encode_state({"seq": seq, "type": kind, "error": str(exc)})


def fold_events(view: ReducerView, state: Any, events: pl.DataFrame, *,
                after_seq: int = 0) -> tuple[Any, int, int]:
    """Fold one partition's events (seq order) above `after_seq`; returns state, last, count.

    `last` and `count` cover every event above `after_seq`, also those outside the view's
    `types` that `reduce` never sees. An event the reducer fails on (and may not skip) raises
    `PartitionFailedError` naming it, as reading a partition the view marked failed does.
    """
    frame = events.select(_EVENT_COLUMNS).filter(pl.col("seq") > after_seq).sort("seq")
    if not frame.height:
        return state, after_seq, 0
    reduce = view.reduce
    start, folded = state, False
    for row in zip(*_columns(_reduced(view, frame)), strict=True):
        try:
            state = reduce(state, _event(*row))
            folded = True
        except Exception as exc:
            if not _skips(view, exc):
                raise PartitionFailedError(view=view.name, partition=row[1], seq=row[0],
                                           event_type=row[2], cause=exc) from exc
    if folded:
        try:
            encode_state(state)  # what the view could not store, a read does not return
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            _, seq, kind = _unencodable(view, state_text=None, start=start, frame=frame)
            raise PartitionFailedError(view=view.name, partition=str(frame["partition_id"][0]),
                                       seq=seq, event_type=kind, cause=exc) from exc
    return state, int(frame.get_column("seq")[-1]), frame.height


def _unencodable(view: ReducerView, *, state_text: str | None, start: Any,
                 frame: pl.DataFrame) -> tuple[str | None, int, str]:
    """Refold `frame` (one partition) encoding after every event: the text of the last
    state that encodes, and the seq and type of the event whose result does not."""
    state = (start if start is not None else view.initial_state() if state_text is None
             else jsoncodec.loads(state_text))
    text = state_text
    reduce = view.reduce
    for row in zip(*_columns(_reduced(view, frame)), strict=True):
        try:
            new = reduce(state, _event(*row))
        except Exception as exc:
            if _skips(view, exc):
                continue
            raise  # the caller met this event already; it never gets here
        try:
            text = encode_state(new)
        except (TypeError, ValueError, OverflowError, RecursionError):
            return text, row[0], row[2]
        state = new
    raise AssertionError("every state encoded on the second fold")


@dataclass
class _Outcome:
    """What folding one partition's new events gave."""

    text: str | None
    rejected: int
    refusal: str | None
    failure: tuple[int, str, str] | None = None


def _fold_partition(view: ReducerView, text: str | None, rejected: int, refusal: str | None,
                    rows: Iterable[tuple[Any, ...]]) -> _Outcome:
    """Fold one partition's rows (seq order) onto its stored state text.

    A reducer exception stops the partition at that event (unless the view skips it): the
    state stays the one before it. So does a state that cannot be stored as JSON; finding
    which event made it needs a second fold that encodes after each event (rare).
    """
    rows = list(rows)
    state = view.initial_state() if text is None else jsoncodec.loads(text)
    reduce = view.reduce
    failure = None
    start_rejected, start_refusal = rejected, refusal
    for count, row in enumerate(rows):
        try:
            state = reduce(state, _event(*row))
        except Exception as exc:
            if _skips(view, exc):
                refusal = _refusal(row[0], row[2], exc)
                rejected += 1
                continue
            failure = (row[0], row[2], _error_text(exc))
            rows = rows[:count]
            break
    try:
        return _Outcome(encode_state(state), rejected, refusal, failure)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        frame = pl.DataFrame([list(column) for column in zip(*rows, strict=True)],
                             schema=dict(zip(_EVENT_COLUMNS, _ROW_TYPES, strict=True)),
                             orient="col")
        good, seq, kind = _unencodable(view, state_text=text, start=None, frame=frame)
        refolded = _fold_partition(view, text, start_rejected, start_refusal,
                                   [r for r in rows if r[0] < seq])
        error = f"the state after this event cannot be stored as JSON: {_error_text(exc)}"
        return _Outcome(good, refolded.rejected, refolded.refusal, (seq, kind, error))


_ROW_TYPES = (pl.Int64(), pl.String(), pl.String(), pl.String(), pl.Datetime("us", "UTC"),
              pl.String())


def _stored_rows(view: ReducerView, prior: pl.DataFrame
                 ) -> dict[str, tuple[str, int, int, int, str | None, str | None]]:
    """partition -> (state text, last_seq, event_count, rejected, last_rejected, failure)."""
    if not prior.height:
        return {}
    n = prior.height

    def column(name: str, default: Any) -> list[Any]:
        return prior.get_column(name).to_list() if name in prior.columns else [default] * n

    return {
        partition: (text, last, count, refused or 0, why, failure)
        for partition, text, last, count, refused, why, failure in zip(
            prior.get_column("partition_id").to_list(), prior.get_column("state").to_list(),
            prior.get_column("last_seq").to_list(), prior.get_column("event_count").to_list(),
            column("rejected", 0) if view.skip_invalid else [0] * n,
            column("last_rejected", None) if view.skip_invalid else [None] * n,
            column(FAILURE, None), strict=True)
    }


def fold_reducer(view: ReducerView, prior: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """New rows (partition_id, state, failure, last_seq, event_count) for every partition in
    `events`.

    `prior` holds the stored rows of (at least) those partitions; events at or below a row's
    `last_seq` were folded already and are skipped, so re-running a step never double-applies.
    `last_seq` and `event_count` count every event of the partition; `reduce` gets only the
    events of the view's `types`, one partition after the other in seq order, and a partition
    whose new events it does not get keeps its stored state text as it is.

    A partition the reducer fails on stops at that event: its row keeps the state before it,
    `last_seq`/`event_count` cover the events before it, and `failure` names it. A stored row
    with a `failure` is returned as it is (the caller clears the failure to retry it).
    """
    skips = view.skip_invalid
    stored = _stored_rows(view, prior)
    frame = events.select(_EVENT_COLUMNS)
    partitions = frame.get_column("partition_id").unique().sort().to_list()
    if stored:
        done = pl.DataFrame({"partition_id": list(stored),
                             "_done": [row[1] if row[5] is None else None
                                       for row in stored.values()],
                             "_held": [row[5] is not None for row in stored.values()]},
                            schema={"partition_id": pl.String(), "_done": pl.Int64(),
                                    "_held": pl.Boolean()})
        frame = frame.join(done, on="partition_id", how="left").filter(
            pl.col("_held").is_null() | ~pl.col("_held")).filter(
            pl.col("_done").is_null() | (pl.col("seq") > pl.col("_done"))).drop(
            "_done", "_held")
    reduced, ranges = _by_partition(_reduced(view, frame))
    columns = _columns(reduced)
    outcomes: dict[str, _Outcome] = {}
    for partition, (lo, hi) in ranges.items():
        text, _, _, rejected, refusal, _ = stored.get(partition, (None, 0, 0, 0, None, None))
        outcomes[partition] = _fold_partition(
            view, text, rejected, refusal, zip(*(c[lo:hi] for c in columns), strict=True))
    failures = {p: o.failure for p, o in outcomes.items() if o.failure is not None}
    counted = rows_before(frame, {p: f[0] for p, f in failures.items()})
    news: dict[str, tuple[int, int]] = {
        partition: (n, last) for partition, n, last in counted.group_by("partition_id").agg(
            pl.len(), pl.col("seq").max()).iter_rows()}
    # The column order of the view table (`viewstore.row_schema`).
    schema: dict[str, pl.DataType] = {"partition_id": pl.String(), "state": pl.String()}
    if skips:
        schema |= {"rejected": pl.Int64(), "last_rejected": pl.String()}
    schema |= {FAILURE: pl.String(), "last_seq": pl.Int64(), "event_count": pl.Int64()}
    out: dict[str, list[Any]] = {column: [] for column in schema}
    for partition in partitions:
        text, last, count, rejected, refusal, failure = stored.get(
            partition, (None, 0, 0, 0, None, None))
        added, newest = news.get(partition, (0, last))
        if failure is None:
            outcome = outcomes.get(partition)
            if outcome is not None:
                text, rejected, refusal = outcome.text, outcome.rejected, outcome.refusal
                failure = None if outcome.failure is None else failure_text(*outcome.failure)
            elif text is None:
                try:
                    text = encode_state(view.initial_state())
                except (TypeError, ValueError, OverflowError, RecursionError) as exc:
                    raise ReducerError(view=view.name, partition=partition, seq=newest,
                                       event_type="(initial state encoding)",
                                       cause=exc) from exc
        else:
            added, newest = 0, last
        out["partition_id"].append(partition)
        out["state"].append(text)
        out[FAILURE].append(failure)
        out["last_seq"].append(max(last, newest))
        out["event_count"].append(count + added)
        if skips:
            out["rejected"].append(rejected)
            out["last_rejected"].append(refusal)
    return pl.DataFrame(out, schema=schema)


def fold_view(view: View, prior: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """Rows for every partition in `events`, merged onto `prior` (that view's stored rows)."""
    if isinstance(view, ReducerView):
        return fold_reducer(view, prior, events)
    if isinstance(view, SqlView):
        return fold_sql(view, prior, events)
    return fold_aggregate(view, prior, events)


def rows_for(view: View, events: pl.DataFrame, partitions: Sequence[str] | None = None
             ) -> pl.DataFrame:
    """From-scratch rows: the reference every stored row must equal."""
    if partitions is not None:
        events = events.filter(pl.col("partition_id").is_in(list(partitions)))
    return fold_view(view, pl.DataFrame(), events)
