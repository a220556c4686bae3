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

import bisect
import gc
import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import polars as pl

from eventlake.errors import (
    ColumnMismatchError,
    InvalidEventError,
    PartitionFailedError,
    ReducerError,
)
from eventlake.fold.aggregates import FAILURE, failure_text, fold_aggregate, rows_before
from eventlake.fold.sqlfold import fold_sql
from eventlake.fold.typed import StateCodec, codec_for
from eventlake.model import jsoncodec
from eventlake.model.events import decode_payload
from eventlake.model.views import MISMATCHES, ReducerView, SqlView, View

__all__ = [
    "FAILURE",
    "encode_state",
    "event_columns",
    "fold_events",
    "fold_reducer",
    "fold_view",
    "rows_for",
    "start_state",
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
    """The event columns of `frame` as Python lists, payloads decoded (`_payloads`)."""
    return [_timestamps(frame.get_column(c)) if c == "ts" else
            _payloads(frame.get_column(c).to_list()) if c == "payload" else
            frame.get_column(c).to_list() for c in _EVENT_COLUMNS]


_DECODE_GROUP_CHARS = 1 << 18


def _payloads(texts: list[str]) -> list[Any]:
    """The payloads of a window, decoded a group at a time by `jsoncodec.loads_objects`: the
    same strict and exact decoder, whose checks then run once per group instead of once per
    event (decoding event by event cost about as much as the rest of a fold). A group holds
    up to 256k characters, so what is built for its checks stays small next to the window
    itself (a bounded-memory rebuild runs under a tight cap).

    A group holding a payload the codec refuses (the log never holds such payloads: appends
    check them) keeps its texts, and each of those events decodes its own (`_event`), failing
    at that event as it always did.
    """
    out: list[Any] = []
    if not texts:
        return out
    # Group ends from the running length, found by bisection: a Python step per event to
    # sum the sizes cost more than the decode itself.
    ends = list(itertools.accumulate(map(len, texts)))
    start = 0
    while start < len(texts):
        # Up to and with the text that brings the group to the limit.
        reach = (ends[start - 1] if start else 0) + _DECODE_GROUP_CHARS
        stop = min(bisect.bisect_left(ends, reach, lo=start) + 1, len(texts))
        out += _decoded(texts[start:stop])
        start = stop
    return out


def _decoded(texts: list[str]) -> list[Any]:
    """One group of `_payloads`: the decoded payloads, or the texts as they are.

    A group the fast proof does not cover (an integer beyond 64 bits, nesting deeper than
    orjson goes) decodes text by text with `jsoncodec.loads`, exact; one whose texts do not
    all decode to objects stays text."""
    values = jsoncodec.loads_objects(texts)
    if values is not None:
        return values
    try:
        slow = [jsoncodec.loads(text) for text in texts]
    except (ValueError, RecursionError):
        return texts
    return slow if all(type(value) is dict for value in slow) else texts


def _event(seq: int, partition: str, kind: str, payload: Any, ts: Any, event_id: str
           ) -> dict[str, Any]:
    # `payload` is decoded already (a dict), or its text when the window's was not.
    return {"seq": seq, "partition": partition, "type": kind,
            "payload": payload if type(payload) is dict else _payload(payload),
            "ts": ts, "event_id": event_id}


_gc_lock = threading.Lock()
_gc_holders = 0
_gc_was_enabled = False


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a window of events is decoded and folded.

    A window makes a few container objects per event (payload dicts, row tuples, the event
    dicts `reduce` gets) that all live until the window is folded, so the collector kept
    walking them as they piled up: with it running, a window folded in about 1.6 times
    the time (5.0 against 3.1 µs/event for the sample `balances` reducer). Nothing a fold
    makes needs the collector to be freed; a reducer that makes reference cycles has them
    collected once the window is done. Folds in several threads share the pause: the last
    one to finish turns the collector back on, if it was.
    """
    global _gc_holders, _gc_was_enabled
    with _gc_lock:
        if _gc_holders == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_holders += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_holders -= 1
            if _gc_holders == 0 and _gc_was_enabled:
                gc.enable()


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


def _fitted(view: ReducerView, codec: StateCodec, fit: Callable[[Any], Any], state: Any,
            row: tuple[Any, ...]) -> Any:
    """`fit(state)` after the event of `row`; a state that does not fit (on_mismatch="error")
    stops the fold with `ColumnMismatchError` naming that event."""
    fitted = fit(state)
    if fitted is None:
        raise _mismatch_error(view, codec, state, partition=row[1], seq=row[0], kind=row[2])
    return fitted


def _mismatch_error(view: ReducerView, codec: StateCodec, state: Any, *, partition: str,
                    seq: int, kind: str) -> ColumnMismatchError:
    misfit = codec.misfit(state)
    assert misfit is not None
    return ColumnMismatchError(view=view.name, partition=partition, seq=seq, event_type=kind,
                               column=misfit.column, value=misfit.value,
                               expected=misfit.expected, problem=misfit.problem)


def _initial(view: ReducerView, codec: StateCodec, partition: str) -> Any:
    """The fitted initial state of `partition` (its own error when it does not fit)."""
    state, fitted = codec.initial()
    if fitted is None:
        raise _mismatch_error(view, codec, state, partition=partition, seq=0,
                              kind="(initial state)")
    return fitted


def start_state(view: ReducerView, partition: str, row: dict[str, Any] | None) -> Any:
    """The state a stored view row holds (the initial state without a row): what a fold of
    the partition's newer events starts from."""
    codec = codec_for(view)
    if row is None:
        return _initial(view, codec, partition)
    return codec.load(tuple(row.get(column) for column in codec.columns))


def fold_events(view: ReducerView, state: Any, events: pl.DataFrame, *,
                after_seq: int = 0) -> tuple[Any, int, int]:
    """Fold one partition's events (seq order) above `after_seq`; returns state, last, count.

    `last` and `count` cover every event above `after_seq`, also those outside the view's
    `types` that `reduce` never sees. An event the reducer fails on (and may not skip) raises
    `PartitionFailedError` naming it, as reading a partition the view marked failed does;
    a state that does not fit a typed view's columns raises `ColumnMismatchError` (with
    on_mismatch="error"). `state` is a stored one (`start_state`).
    """
    frame = events.select(_EVENT_COLUMNS).filter(pl.col("seq") > after_seq).sort("seq")
    if not frame.height:
        return state, after_seq, 0
    codec = codec_for(view)
    fit = codec.fit
    reduce = view.reduce
    start, folded = state, False
    rows = list(zip(*_columns(_reduced(view, frame)), strict=True))
    for row in rows:
        try:
            new = reduce(state, _event(*row))
        except Exception as exc:
            if not _skips(view, exc):
                raise PartitionFailedError(view=view.name, partition=row[1], seq=row[0],
                                           event_type=row[2], cause=exc) from exc
            continue
        state = new if fit is None else _fitted(view, codec, fit, new, row)
        folded = True
    if folded:
        try:
            codec.store(state)  # what the view could not store, a read does not return
        except _UNSTORABLE as exc:
            _, seq, kind = _unstorable(view, codec, stored=None, start=start, rows=rows)
            raise PartitionFailedError(view=view.name, partition=str(frame["partition_id"][0]),
                                       seq=seq, event_type=kind, cause=exc) from exc
    return state, int(frame.get_column("seq")[-1]), frame.height


# What storing a state can raise: not JSON, too deep for the encoder, not UTF-8.
_UNSTORABLE = (TypeError, ValueError, OverflowError, RecursionError)


def _unstorable(view: ReducerView, codec: StateCodec, *, stored: Cells | None, start: Any,
                rows: list[tuple[Any, ...]]) -> tuple[Cells | None, int, str]:
    """Refold `rows` (one partition's events, seq order) storing after every event: the
    cells of the last state that stores, and the seq and type of the event whose result
    does not."""
    partition = str(rows[0][1]) if rows else ""
    state = (start if start is not None else _initial(view, codec, partition)
             if stored is None else codec.load(stored))
    cells = stored
    if cells is None and start is None:
        # A new partition that fails at its first event keeps its initial state.
        cells = _stored_initial(view, codec, state, partition, rows[0][0] if rows else 0)
    reduce = view.reduce
    fit = codec.fit
    for row in rows:
        try:
            new = reduce(state, _event(*row))
        except Exception as exc:
            if _skips(view, exc):
                continue
            raise  # the caller met this event already; it never gets here
        if fit is not None:
            new = _fitted(view, codec, fit, new, row)
        try:
            cells = codec.store(new)
        except _UNSTORABLE:
            return cells, row[0], row[2]
        state = new
    raise AssertionError("every state stored on the second fold")


Cells = tuple[Any, ...]


def _stored_initial(view: ReducerView, codec: StateCodec, initial: Any, partition: str,
                    seq: int) -> Cells:
    """The cells of a (fitted) initial state; one that cannot be stored stops the view."""
    try:
        return codec.store(initial)
    except _UNSTORABLE as exc:
        raise ReducerError(view=view.name, partition=partition, seq=seq,
                           event_type="(initial state encoding)", cause=exc) from exc


@dataclass
class _Outcome:
    """What folding one partition's new events gave."""

    cells: Cells | None
    rejected: int
    refusal: str | None
    failure: tuple[int, str, str] | None = None
    nulled: int = 0


def _fold_partition(view: ReducerView, codec: StateCodec, stored: Cells | None,
                    rejected: int, refusal: str | None, nulled: int,
                    rows: list[tuple[Any, ...]]) -> _Outcome:
    """Fold one partition's rows (seq order) onto its stored state cells.

    A reducer exception stops the partition at that event (unless the view skips it): the
    state stays the one before it. So does a state that cannot be stored; finding which
    event made it needs a second fold that stores after each event (rare). A typed view
    fits every state the reducer returns to its columns (`StateCodec.fit`).
    """
    codec.nulled = nulled
    partition = str(rows[0][1]) if rows else ""
    state = _initial(view, codec, partition) if stored is None else codec.load(stored)
    reduce = view.reduce
    fit = codec.fit
    failure = None
    start_rejected, start_refusal = rejected, refusal
    # The hot loop of every refresh and rebuild: `_event` and `_fitted` inline, the row
    # unpacked once, where each call and index showed.
    for count, (seq, key, kind, payload, ts, event_id) in enumerate(rows):
        try:
            new = reduce(state, {
                "seq": seq, "partition": key, "type": kind,
                "payload": payload if type(payload) is dict else _payload(payload),
                "ts": ts, "event_id": event_id})
        except Exception as exc:
            if _skips(view, exc):
                refusal = _refusal(seq, kind, exc)
                rejected += 1
                continue
            failure = (seq, kind, _error_text(exc))
            rows = rows[:count]
            break
        if fit is None:
            state = new
            continue
        state = fit(new)
        if state is None:
            raise _mismatch_error(view, codec, new, partition=key, seq=seq, kind=kind)
    try:
        return _Outcome(codec.store(state), rejected, refusal, failure, codec.nulled)
    except _UNSTORABLE as exc:
        good, seq, kind = _unstorable(view, codec, stored=stored, start=None, rows=rows)
        refolded = _fold_partition(view, codec, stored, start_rejected, start_refusal, nulled,
                                   [r for r in rows if r[0] < seq])
        what = "as JSON" if not codec.typed else "in its columns"
        error = f"the state after this event cannot be stored {what}: {_error_text(exc)}"
        return _Outcome(good, refolded.rejected, refolded.refusal, (seq, kind, error),
                        refolded.nulled)


@dataclass(frozen=True)
class _Stored:
    """One partition's stored row, as the fold reads it."""

    cells: Cells | None
    last_seq: int = 0
    event_count: int = 0
    rejected: int = 0
    last_rejected: str | None = None
    failure: str | None = None
    nulled: int = 0


_NEW = _Stored(None)


def _stored_rows(view: ReducerView, codec: StateCodec, prior: pl.DataFrame
                 ) -> dict[str, _Stored]:
    """partition -> its stored row (state cells, counters, failure)."""
    if not prior.height:
        return {}
    n = prior.height

    def column(name: str, default: Any) -> list[Any]:
        return prior.get_column(name).to_list() if name in prior.columns else [default] * n

    cells = zip(*(column(c, None) for c in codec.columns), strict=True)
    skips, counts = view.skip_invalid, view.on_mismatch == "null"
    return {
        partition: _Stored(state, last, count, refused or 0, why, failure, nulled or 0)
        for partition, state, last, count, refused, why, failure, nulled in zip(
            prior.get_column("partition_id").to_list(), cells,
            prior.get_column("last_seq").to_list(), prior.get_column("event_count").to_list(),
            column("rejected", 0) if skips else [0] * n,
            column("last_rejected", None) if skips else [None] * n,
            column(FAILURE, None), column(MISMATCHES, 0) if counts else [0] * n, strict=True)
    }


def fold_reducer(view: ReducerView, prior: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """New rows (partition_id, state or typed columns, failure, last_seq, event_count) for
    every partition in `events`.

    `prior` holds the stored rows of (at least) those partitions; events at or below a row's
    `last_seq` were folded already and are skipped, so re-running a step never double-applies.
    `last_seq` and `event_count` count every event of the partition; `reduce` gets only the
    events of the view's `types`, one partition after the other in seq order, and a partition
    whose new events it does not get keeps its stored state as it is.

    A partition the reducer fails on stops at that event: its row keeps the state before it,
    `last_seq`/`event_count` cover the events before it, and `failure` names it. A stored row
    with a `failure` is returned as it is (the caller clears the failure to retry it). A
    state that does not fit a typed view's columns (on_mismatch="error") raises
    `ColumnMismatchError`: no rows at all.
    """
    skips = view.skip_invalid
    codec = codec_for(view)
    counts = view.on_mismatch == "null"
    stored = _stored_rows(view, codec, prior)
    frame = events.select(_EVENT_COLUMNS)
    partitions = frame.get_column("partition_id").unique().sort().to_list()
    if stored:
        done = pl.DataFrame({"partition_id": list(stored),
                             "_done": [row.last_seq if row.failure is None else None
                                       for row in stored.values()],
                             "_held": [row.failure is not None for row in stored.values()]},
                            schema={"partition_id": pl.String(), "_done": pl.Int64(),
                                    "_held": pl.Boolean()})
        frame = frame.join(done, on="partition_id", how="left").filter(
            pl.col("_held").is_null() | ~pl.col("_held")).filter(
            pl.col("_done").is_null() | (pl.col("seq") > pl.col("_done"))).drop(
            "_done", "_held")
    reduced, ranges = _by_partition(_reduced(view, frame))
    outcomes: dict[str, _Outcome] = {}
    with _collector_paused():
        # One list of rows for the window; a partition's rows are a slice of it.
        window = list(zip(*_columns(reduced), strict=True))
        for partition, (lo, hi) in ranges.items():
            row = stored.get(partition, _NEW)
            outcomes[partition] = _fold_partition(
                view, codec, row.cells, row.rejected, row.last_rejected, row.nulled,
                window[lo:hi])
        del window
    failures = {p: o.failure for p, o in outcomes.items() if o.failure is not None}
    counted = rows_before(frame, {p: f[0] for p, f in failures.items()})
    news: dict[str, tuple[int, int]] = {
        partition: (n, last) for partition, n, last in counted.group_by("partition_id").agg(
            pl.len(), pl.col("seq").max()).iter_rows()}
    # The column order of the view table (`viewstore.row_schema`).
    schema: dict[str, pl.DataType] = {"partition_id": pl.String(), **codec.columns}
    if skips:
        schema |= {"rejected": pl.Int64(), "last_rejected": pl.String()}
    if counts:
        schema |= {MISMATCHES: pl.Int64()}
    schema |= {FAILURE: pl.String(), "last_seq": pl.Int64(), "event_count": pl.Int64()}
    out: dict[str, list[Any]] = {column: [] for column in schema}
    cell_lists = [out[column] for column in codec.columns]
    for partition in partitions:
        row = stored.get(partition, _NEW)
        cells, rejected, refusal, failure, nulled = (
            row.cells, row.rejected, row.last_rejected, row.failure, row.nulled)
        added, newest = news.get(partition, (0, row.last_seq))
        if failure is None:
            outcome = outcomes.get(partition)
            if outcome is not None:
                cells, rejected, refusal = outcome.cells, outcome.rejected, outcome.refusal
                nulled = outcome.nulled
                failure = None if outcome.failure is None else failure_text(*outcome.failure)
            elif cells is None:
                codec.nulled = 0
                cells = _stored_initial(view, codec, _initial(view, codec, partition),
                                        partition, newest)
                nulled = codec.nulled
        else:
            added, newest = 0, row.last_seq
        out["partition_id"].append(partition)
        for values, cell in zip(cell_lists, cells or (None,) * len(cell_lists), strict=True):
            values.append(cell)
        out[FAILURE].append(failure)
        out["last_seq"].append(max(row.last_seq, newest))
        out["event_count"].append(row.event_count + added)
        if skips:
            out["rejected"].append(rejected)
            out["last_rejected"].append(refusal)
        if counts:
            out[MISMATCHES].append(nulled)
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
