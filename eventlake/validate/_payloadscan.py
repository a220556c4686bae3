"""Which payload texts of a column surely pass the record checks: the columnar screen.

`normalize_batch` checks a column of payload texts by screening it here, then deciding every
row the screen flags with the same Python code the record path runs (`events._encode_payload`,
`events._check_action_payload`), so both paths refuse a record with the same error. The screen
may flag a good row (it costs a Python check), never pass a bad one. What it proves for a row it
does not flag:

* the text is valid JSON (DuckDB's `json_valid`) without what DuckDB accepts and Python does
  not: NaN/Infinity, trailing commas, numbers a float cannot hold, surrogate escapes (a regex
  flags anything that looks like them), nor nesting deeper than the limit;
* it is an object with no top-level key twice (DuckDB reads the first of two equal keys, Python
  the last; nested objects are left to Python), and a `set`/`unset` payload of a shape that
  `actions.check_action` accepts (other state actions are left to Python).

The key checks are the expensive part in DuckDB (a list of keys per row), so for most rows a
byte-level scan decides them (`scan_objects`), in a few vectorized numpy passes:

* flat objects: the text starts with `{` and no other `{` follows a `:`, `[` or `,` (as a
  nested object's brace must), so every key is a top-level key (a row with a nested object,
  or with such a brace inside a string, is `unsure`);
* without a backslash: no quote hides inside a string, and comparing keys byte for byte is
  comparing them decoded (rows with a backslash are `escaped`: DuckDB checks their keys).

The scan errs on the safe side too: a row may be called `repeated` when it is not (two keys
longer than 8 bytes whose fingerprints collide), never the reverse. It does not check that a
text is JSON; its answers hold for rows that are, and a text that is not can only make it mark
rows unsure or repeated, or report a wrong value for a row that `json_valid` refuses anyway.

Why the key scan is exact on a valid, flat, backslash-free row: strings hold no `"`, so quotes
alternate open/close, and a quote followed (after whitespace) by `:` closes a key whose opening
quote is the quote before it. An opening quote followed by `:` (a string that starts with a
colon) looks like a key end too; the "key" it yields is the structural text between two strings
(`:`, `,`, a number, `true`), which matches no real key name and can only add a false repeat.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from eventlake.model.actions import ACTION_TYPES

__all__ = ["SCREEN_FROM_ROWS", "ObjectScan", "ValueStart", "payload_suspects", "scan_objects"]

Mask = npt.NDArray[np.bool_]
Bytes = npt.NDArray[np.uint8]
Positions = npt.NDArray[np.int64]
Words = npt.NDArray[np.uint64]
RowsOf = Callable[[Positions], Positions]

_QUOTE, _COLON, _BRACE, _BACKSLASH, _SPACE = 0x22, 0x3A, 0x7B, 0x5C, 0x20
_WHITESPACE = np.zeros(256, dtype=np.bool_)
_WHITESPACE[[0x09, 0x0A, 0x0D, 0x20]] = True
# Whitespace runs longer than this (around a colon, or after an object's brace) make the row
# unsure instead of costing more vectorized steps.
_MAX_GAP = 8
# Keys of one object are compared with their next `_MAX_NEIGHBOURS` keys; an object with more
# keys is checked by sorting its fingerprints instead.
_MAX_NEIGHBOURS = 16
_PAD = 16
_OPENS_VALUE = np.array([ord(":"), ord("["), ord(",")], dtype=np.uint8)
# `_KEEP_BYTES[k]` keeps the low k bytes of a little-endian word.
_KEEP_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)
_MIX = np.uint64(0x9E3779B97F4A7C15)


# What DuckDB's JSON parser takes and Python's does not (or decodes differently): NaN/Infinity
# (any case, signed), trailing commas, exponents a float cannot hold (1e999 would turn into
# inf), surrogate escapes (Python takes a lone one, which then fails UTF-8). Digit runs of 300
# and more (Python refuses > 4300 digits) and deep nesting need long texts: they are looked
# for in texts longer than `_LONG_TEXT` only.
_LENIENT_REGEX = r"(?i)[:\[,]\s*[+-]?(nan|inf)|,\s*[\]}]|e[+-]?[0-9]{3}|\\u[d][89a-f]"
_LONG_DIGITS_REGEX = r"[0-9]{300}"
_LONG_TEXT = 299
_NESTING_REGEX = r"[\[{]"
_NAMES = ("target", "value", "options")
_OTHER_ACTIONS = tuple(a for a in ACTION_TYPES if a not in ("set", "unset"))
# For rows with a backslash, where the byte scan cannot compare keys: the same two checks in
# SQL. CASE, not AND: DuckDB evaluates both sides of AND, and json_keys raises on malformed
# text; the escaped branch runs on those rows only.
_VERDICT_SQL = f"""select coalesce(case
    when not json_valid(payload) then false
    when contains(payload, '\\') then
        len(json_keys(payload)) = list_unique(json_keys(payload)) and (case
            when type = 'set' then json_type(payload, '$.target') = 'VARCHAR'
                and payload->>'$.target' <> ''
                and json_type(payload, '$.value') <> 'ARRAY'
                and json_type(payload, '$.options') is null
            when type = 'unset' then json_type(payload, '$.target') = 'VARCHAR'
            when type in ({", ".join(f"'{a}'" for a in _OTHER_ACTIONS)}) then false
            else true end)
    else true end, false) from checked"""

# Below this many rows, checking every row in Python costs less than a DuckDB query and two
# threads (about 10 ms): the screen then flags them all.
SCREEN_FROM_ROWS = 256
# From this many rows the three screens run side by side on threads.
_THREADED_FROM_ROWS = 20_000

_duckdb_lock = threading.Lock()
_duckdb_database: tuple[int, Any] | None = None


def payload_suspects(payload: pa.ChunkedArray, kind: pa.ChunkedArray, *, max_depth: int
                     ) -> npt.NDArray[np.bool_]:
    """The rows of `payload` (JSON texts, no nulls) that might fail the record checks for
    their `kind` (event type); every other row surely passes them."""
    if len(payload) < SCREEN_FROM_ROWS:
        return np.ones(len(payload), dtype=np.bool_)
    if len(payload) < _THREADED_FROM_ROWS:
        # Small batches: starting threads costs more than the overlap saves.
        verdict, loose = _duckdb_verdict(payload, kind), _lenient(payload, max_depth)
        return ~(_screen(payload, kind) & verdict & ~loose)
    # DuckDB parses on its own threads and Arrow's regex kernel releases the GIL, so both run
    # beside the byte scan: on two cores that hides most of their time.
    with ThreadPoolExecutor(max_workers=2) as pool:
        parsed = pool.submit(_duckdb_verdict, payload, kind)
        lenient = pool.submit(_lenient, payload, max_depth)
        sure = _screen(payload, kind)
        sure &= parsed.result()
        sure &= ~lenient.result()
    suspects: npt.NDArray[np.bool_] = ~sure
    return suspects


def _screen(payload: pa.ChunkedArray, kind: pa.ChunkedArray) -> npt.NDArray[np.bool_]:
    """The rows the byte scan proves free of repeated keys and of a bad set/unset shape."""
    kinds = _ActionRows.of(kind)
    # Value starts are only read for `set`/`unset` rows: skip that work without any.
    scan = scan_objects(payload, names=_NAMES if kinds.reads_values else ())
    flat = ~scan.repeated & kinds.shape_ok(scan)
    sure: npt.NDArray[np.bool_] = ~scan.unsure & (scan.escaped | flat)
    return sure


@dataclass(frozen=True)
class _ActionRows:
    """Which rows are `set`, `unset` or another state action."""

    set: npt.NDArray[np.bool_]
    unset: npt.NDArray[np.bool_]
    other: npt.NDArray[np.bool_]

    @classmethod
    def of(cls, kind: pa.ChunkedArray) -> _ActionRows:
        def rows(mask: pa.ChunkedArray) -> npt.NDArray[np.bool_]:
            return np.asarray(mask.to_numpy(zero_copy_only=False), dtype=np.bool_)

        return cls(rows(pc.equal(kind, "set")), rows(pc.equal(kind, "unset")),
                   rows(pc.is_in(kind, pa.array(_OTHER_ACTIONS))))

    @property
    def reads_values(self) -> bool:
        return bool(self.set.any() or self.unset.any())

    def shape_ok(self, scan: ObjectScan) -> npt.NDArray[np.bool_]:
        """Whether a flat payload surely passes `actions.check_action` for its type: `set`
        needs a non-empty string target, a value that is no array (an array needs
        options.replace) and no options; `unset` a string target; other state actions are
        left to Python."""
        if not self.reads_values:
            return ~self.other
        target, value, options = (scan.values[name] for name in _NAMES)
        string_target = target.first == _QUOTE
        set_ok = (string_target & (target.second != _QUOTE) & (value.first != 0)
                  & (value.first != ord("[")) & (options.first == 0))
        shape: npt.NDArray[np.bool_] = np.where(
            self.set, set_ok, np.where(self.unset, string_target, ~self.other))
        return shape


def _duckdb_verdict(payload: pa.ChunkedArray, kind: pa.ChunkedArray) -> npt.NDArray[np.bool_]:
    con = _duckdb_cursor()
    try:
        con.register("checked", pa.table({"type": kind, "payload": payload}))
        relation = con.sql(_VERDICT_SQL)
        # DuckDB 2.x names it to_arrow_table; older releases only have fetch_arrow_table.
        fetch = getattr(relation, "to_arrow_table", None) or relation.fetch_arrow_table
        verdict = fetch().column(0)
    finally:
        con.close()
    return np.asarray(verdict.to_numpy(), dtype=np.bool_)


def _duckdb_cursor() -> Any:
    """A new connection to one in-memory DuckDB database kept per process: connecting costs
    about 50 ms, which a small batch would pay many times over; a cursor costs nothing."""
    global _duckdb_database
    import duckdb

    with _duckdb_lock:
        # A database made before a fork is not the child's to use.
        if _duckdb_database is None or _duckdb_database[0] != os.getpid():
            _duckdb_database = (os.getpid(), duckdb.connect())
        return _duckdb_database[1].cursor()


def _lenient(payload: pa.ChunkedArray, max_depth: int) -> npt.NDArray[np.bool_]:
    flagged = np.asarray(pc.match_substring_regex(payload, _LENIENT_REGEX).to_numpy(
        zero_copy_only=False), dtype=np.bool_)
    long_rows = np.flatnonzero(pc.greater(pc.binary_length(payload), min(max_depth, _LONG_TEXT))
                               .to_numpy(zero_copy_only=False))
    if len(long_rows):
        texts = payload.take(pa.array(long_rows))
        deep = pc.greater(pc.count_substring_regex(texts, _NESTING_REGEX), max_depth)
        digits = pc.match_substring_regex(texts, _LONG_DIGITS_REGEX)
        flagged[long_rows] |= np.asarray(pc.or_(deep, digits).to_numpy(zero_copy_only=False),
                                         dtype=np.bool_)
    return flagged


@dataclass(frozen=True)
class ValueStart:
    """The first two bytes of the value of one top-level key, per row; 0 where the key is
    absent. A string value starts with `"`, and is the empty string when its second byte is
    `"` too."""

    first: Bytes
    second: Bytes


@dataclass(frozen=True)
class ObjectScan:
    """What the bytes of each row prove; meaningful only for rows neither `unsure` nor
    `escaped`. `repeated` rows may repeat a top-level key. `values` holds the value starts of
    the key names asked for."""

    unsure: Mask
    escaped: Mask
    repeated: Mask
    values: dict[str, ValueStart]


def scan_objects(column: pa.ChunkedArray | pa.Array, *, names: Sequence[str] = ()
                 ) -> ObjectScan:
    """Scan a string column of JSON object texts (null rows are unsure).

    `names` are top-level keys whose value starts to report: 1 to 8 bytes each, without a
    quote or backslash.
    """
    for name in names:
        if not 0 < len(name.encode()) <= 8 or '"' in name or "\\" in name:
            raise ValueError(f"key name {name!r}: 1 to 8 bytes without quote or backslash")
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    parts = [_scan_chunk(chunk, names) for chunk in chunks if len(chunk)]
    if len(parts) == 1:
        return parts[0]
    nothing = np.zeros(0, dtype=np.uint8)
    return ObjectScan(
        np.concatenate([p.unsure for p in parts] or [nothing.astype(np.bool_)]),
        np.concatenate([p.escaped for p in parts] or [nothing.astype(np.bool_)]),
        np.concatenate([p.repeated for p in parts] or [nothing.astype(np.bool_)]),
        {name: ValueStart(np.concatenate([p.values[name].first for p in parts] or [nothing]),
                          np.concatenate([p.values[name].second for p in parts] or [nothing]))
         for name in names},
    )


def _scan_chunk(chunk: pa.Array, names: Sequence[str]) -> ObjectScan:
    width: type[np.int32] | type[np.int64]
    if pa.types.is_string(chunk.type):
        width = np.int32
    elif pa.types.is_large_string(chunk.type):
        width = np.int64
    else:
        raise TypeError(f"scan_objects reads string columns, not {chunk.type}")
    n = len(chunk)
    _, offset_buffer, data_buffer = chunk.buffers()
    offsets = np.frombuffer(offset_buffer, dtype=width, count=n + 1,
                            offset=chunk.offset * np.dtype(width).itemsize).astype(np.int64)
    base = int(offsets[0])
    size = int(offsets[-1]) - base
    # A private copy, padded so that every read below (up to 16 bytes past a position in the
    # text) stays inside it; the scan also writes into it.
    data = np.zeros(size + _PAD, dtype=np.uint8)
    if size:
        data[:size] = np.frombuffer(data_buffer, dtype=np.uint8, count=size, offset=base)
    text = data[:size]
    # The 8 bytes starting at each position, little-endian (numpy reads unaligned items).
    eights: Words = np.ndarray(shape=(size + _PAD - 7,), dtype="<u8", buffer=data,
                               strides=(1,))
    starts = offsets[:-1] - base

    def rows_of(positions: Positions) -> Positions:
        return np.searchsorted(starts, positions, side="right") - 1

    unsure = np.diff(offsets) < 2
    if chunk.null_count:
        unsure |= np.asarray(chunk.is_null(), dtype=np.bool_)
    opened = starts[~unsure]
    unsure[~unsure] = data[opened] != _BRACE
    # Blank each row's opening brace: a '{' left over opens a nested object or sits in a
    # string, and a key preceded by the blank is the first key of its row.
    data[opened] = 0
    # A nested object's '{' follows (after whitespace) the ':' of its key or the '[' or ',' of
    # its array; any other '{' is inside a string. Rows with one that might nest are unsure.
    braces = np.flatnonzero(text == _BRACE)
    if len(braces):
        before_brace = data[braces - 1]
        _resolve_gaps(data, braces - 1, before_brace, unsure, rows_of, step=-1)
        unsure[rows_of(braces[np.isin(before_brace, _OPENS_VALUE)])] = True
    escaped = np.zeros(n, dtype=np.bool_)
    escaped[rows_of(np.flatnonzero(text == _BACKSLASH))] = True

    quotes = np.flatnonzero(text == _QUOTE)
    after = data[quotes + 1]
    _resolve_gaps(data, quotes + 1, after, unsure, rows_of, step=1)
    ends = np.flatnonzero(after == _COLON)
    ends = ends[ends > 0]
    close = quotes[ends]
    start = quotes[ends - 1] + 1
    length = close - start

    # A key whose opening quote follows the blanked brace starts a new object: keys between
    # two such starts belong to one row (a row of invalid text can only merge its keys into
    # the object before, which adds false repeats, never hides one).
    before = data[start - 2]
    _resolve_gaps(data, start - 2, before, unsure, rows_of, step=-1)
    first_key = before == 0

    # A key's fingerprint: its bytes when it has at most 8 (a key holds no NUL byte, so these
    # are distinct for distinct keys), else its first and last 8 bytes mixed (equal keys
    # always agree; distinct ones rarely collide, which only costs a false repeat).
    head = eights[start] & _KEEP_BYTES[np.minimum(length, 8)]
    fingerprint = head.copy()
    long_keys = np.flatnonzero(length > 8)
    fingerprint[long_keys] ^= (eights[close[long_keys] - 8] * _MIX) ^ length[long_keys].astype(
        np.uint64)
    clash = _repeats(first_key, fingerprint)
    repeated = np.zeros(n, dtype=np.bool_)
    repeated[rows_of(close[clash])] = True

    values: dict[str, ValueStart] = {}
    for name in names:
        raw = name.encode()
        # A longer key can share the first 8 bytes of an 8-byte name, not a shorter one's.
        match = np.flatnonzero(head == np.uint64(int.from_bytes(raw, "little")))
        if len(raw) == 8:
            match = match[length[match] == 8]
        first = np.zeros(n, dtype=np.uint8)
        second = np.zeros(n, dtype=np.uint8)
        if len(match):
            # The colon follows the key's closing quote after at most `_MAX_GAP` blanks.
            colon = close[match] + 1
            found = data[colon]
            _resolve_gaps(data, colon, found, unsure, rows_of, step=1)
            at = colon + 1
            value = data[at]
            _resolve_gaps(data, at, value, unsure, rows_of, step=1)
            rows = rows_of(close[match])
            first[rows] = value
            second[rows] = data[at + 1]
        values[name] = ValueStart(first, second)
    return ObjectScan(unsure, escaped, repeated, values)


def _resolve_gaps(data: Bytes, at: Positions, found: Bytes, unsure: Mask,
                  rows_of: RowsOf, *, step: int) -> None:
    """Move each position in `at` past whitespace (forward or back), updating `at` and
    `found` (the byte there) in place; rows with a longer gap than `_MAX_GAP` become unsure."""
    pending = np.flatnonzero(found <= _SPACE)
    pending = pending[_WHITESPACE[found[pending]]]
    for _ in range(_MAX_GAP):
        if not len(pending):
            return
        at[pending] += step
        found[pending] = data[at[pending]]
        pending = pending[_WHITESPACE[found[pending]]]
    if len(pending):
        unsure[rows_of(at[pending])] = True


def _repeats(first_key: Mask, fingerprint: Words) -> Positions:
    """Indexes of keys whose fingerprint equals that of an earlier key of the same object;
    an object's keys run from one `first_key` to the next."""
    count = len(fingerprint)
    clashes: list[Positions] = []
    # `joined[i]`: keys i and i + distance belong to one object.
    joined = ~first_key[1:]
    distance = 1
    while distance <= _MAX_NEIGHBOURS and joined.any():
        same = joined & (fingerprint[distance:] == fingerprint[:-distance])
        clashes.append(np.flatnonzero(same) + distance)
        distance += 1
        joined = joined[:-1] & ~first_key[distance:]
    if distance > _MAX_NEIGHBOURS and joined.any():
        # Objects with more keys than neighbours compared: sort their fingerprints.
        group = np.cumsum(first_key, dtype=np.int64)
        wide = np.flatnonzero(np.isin(group, group[np.flatnonzero(joined)]))
        order = wide[np.lexsort((fingerprint[wide], group[wide]))]
        equal = (group[order[1:]] == group[order[:-1]]) & (
            fingerprint[order[1:]] == fingerprint[order[:-1]])
        clashes.append(order[1:][equal])
    if not clashes or count < 2:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(clashes)
