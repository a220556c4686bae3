"""Events: the columns of the log, and turning user input into a valid Arrow batch.

Everything a caller hands to `Lake.append` passes through `normalize_batch`, which checks every
record before anything is written and raises `InvalidEventError` naming the record index, the
field, the bad value and what was expected. Validation is columnar for Arrow and Polars input
(Arrow compute; payload texts through the screen of `_payloadscan`: a byte scan, DuckDB's JSON
parser and a regex), so a million-row batch costs a fraction of its write.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from eventlake._payloadscan import payload_suspects
from eventlake.actions import ACTION_TYPES, check_action
from eventlake.errors import InvalidEventError

__all__ = [
    "DEFAULT_LIMITS",
    "EVENT_SCHEMA",
    "INPUT_COLUMNS",
    "Limits",
    "NormalizedBatch",
    "check_partition",
    "decode_payload",
    "normalize_batch",
]

TS_TYPE = pa.timestamp("us", tz="UTC")

# Column order of the event table. `seq`, `ingested_at` and `batch_id` are assigned at commit.
EVENT_SCHEMA = pa.schema(
    [
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("partition_id", pa.string(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("payload", pa.string(), nullable=False),
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("ts", TS_TYPE, nullable=False),
        pa.field("ingested_at", TS_TYPE, nullable=False),
        pa.field("batch_id", pa.string(), nullable=False),
    ]
)

INPUT_COLUMNS = ("type", "payload", "partition", "partition_id", "event_id", "ts")


@dataclass(frozen=True)
class Limits:
    """Size limits enforced on every event; each breach is an `InvalidEventError`."""

    max_payload_bytes: int = 1_048_576
    # Nesting of objects and arrays in a payload: every reader (Python's json, folds, DuckDB)
    # must be able to parse and rebuild it without running out of stack.
    max_payload_depth: int = 200
    # A partition names a folder `partition_id=<percent-encoded value>`; besides this limit
    # that folder name must fit a file system's 255 bytes (see `PARTITION_FOLDER_BYTES`).
    max_partition_chars: int = 200
    max_type_chars: int = 256
    max_event_id_chars: int = 256
    max_batch_events: int = 50_000_000


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class NormalizedBatch:
    """A validated batch without its log-assigned columns.

    `table` has `partition_id`, `type`, `payload` (JSON object text), `event_id` (null where the
    caller gave none) and `ts` (null where the caller gave none).
    """

    table: pa.Table

    @property
    def count(self) -> int:
        return self.table.num_rows


# A partition value becomes a folder name: nothing that could climb out of, or split, that
# folder; no control characters, which break file systems and terminals alike.
_BAD_PARTITION = re.compile(r"[/\\\x00-\x1f\x7f]|\.\.")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BAD_PARTITION_ARROW = r"[/\\\x00-\x1f\x7f]|\.\."
_CONTROL_ARROW = r"[\x00-\x1f\x7f]"
# Any UTF-16 surrogate, high (D800-DBFF) or low (DC00-DFFF).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# The event log's folder for a partition is `partition_id=` + the value percent-encoded (every
# byte but ASCII letters, digits and `-_.~` becomes `%XX`); one folder name holds 255 bytes.
PARTITION_FOLDER_BYTES = 255 - len("partition_id=")
_UNRESERVED_ARROW = r"[A-Za-z0-9_.~-]"
_PAYLOAD_EXPECTED = "a JSON object (dict) or the JSON text of one, without NaN/Infinity"
_RECORD_KEYS = frozenset(INPUT_COLUMNS)


def _label_problem(value: object, *, max_chars: int, partition: bool = False) -> str | None:
    """Why `value` is not a usable label (type, partition, event id), or None if it is."""
    if value is None:
        return "is missing (null)"
    if not isinstance(value, str):
        return f"is a {type(value).__name__}, not a string"
    if not value:
        return "is empty"
    if len(value) > max_chars:
        return f"is {len(value)} characters long, more than {max_chars}"
    found = (_BAD_PARTITION if partition else _CONTROL).search(value)
    if found is not None:
        return f"contains {found.group()!r}"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "holds a lone surrogate (not valid UTF-8)"
    if partition:
        encoded = len(quote(value, safe=""))
        if encoded > PARTITION_FOLDER_BYTES:
            return (f"is {encoded} bytes percent-encoded as a folder name, more than "
                    f"{PARTITION_FOLDER_BYTES}")
    return None


def _partition_expected(limits: Limits) -> str:
    return (f"a non-empty string of at most {limits.max_partition_chars} characters "
            f"({PARTITION_FOLDER_BYTES} bytes percent-encoded) without '/', '\\', '..' or "
            "control characters")


def _label_expected(max_chars: int) -> str:
    return f"a non-empty string of at most {max_chars} characters without control characters"


def check_partition(value: object, *, index: int | None = None,
                    limits: Limits = DEFAULT_LIMITS) -> str:
    """Return `value` if it is a usable partition id, else raise `InvalidEventError`."""
    problem = _label_problem(value, max_chars=limits.max_partition_chars, partition=True)
    if problem is not None:
        raise InvalidEventError(f"partition {problem}", index=index, field="partition",
                                value=value, expected=_partition_expected(limits))
    assert isinstance(value, str)
    return value


def _check_label(value: object, *, field: str, index: int, max_chars: int) -> str:
    problem = _label_problem(value, max_chars=max_chars)
    if problem is not None:
        raise InvalidEventError(f"{field} {problem}", index=index, field=field, value=value,
                                expected=_label_expected(max_chars))
    assert isinstance(value, str)
    return value


def _reject_constant(token: str) -> NoReturn:
    raise ValueError(f"{token} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:40]} is too large for a float")
    return value


def decode_payload(text: str) -> dict[str, Any]:
    """Parse payload JSON text strictly (no NaN/Infinity); the result must be an object."""
    value = json.loads(text, parse_constant=_reject_constant)
    if not isinstance(value, dict):
        raise ValueError(f"JSON {type(value).__name__} is not an object")
    return value


def _nesting_beyond(value: object, limit: int) -> bool:
    """Whether objects/arrays in `value` nest deeper than `limit` (iterative: no recursion,
    and it stops at the limit, so a circular structure ends too)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Iterable[object] = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _check_depth(value: object, text: object, index: int, limits: Limits) -> None:
    if _nesting_beyond(value, limits.max_payload_depth):
        raise InvalidEventError(
            f"payload nests objects/arrays more than {limits.max_payload_depth} levels deep",
            index=index, field="payload", value=text,
            expected=f"at most {limits.max_payload_depth} levels of nesting")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Readers disagree on a repeated key (Python keeps the last, DuckDB the first).
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"key {key!r} appears twice in one object")
            seen.add(key)
    return value


def _check_json_text(text: str) -> dict[str, Any]:
    """Raise ValueError unless `text` is strict JSON of an object every reader decodes alike."""
    value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float,
                       object_pairs_hook=_unique_keys)
    if not isinstance(value, dict):
        kind = "array" if isinstance(value, list) else type(value).__name__
        raise ValueError(f"JSON {kind} is not an object")
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("it escapes a lone surrogate (not valid UTF-8)") from None
    return value


def _encode_payload(value: object, index: int, limits: Limits) -> str:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidEventError("payload holds a lone surrogate (not valid UTF-8)",
                                    index=index, field="payload", value=value,
                                    expected=_PAYLOAD_EXPECTED) from None
        try:
            parsed = _check_json_text(value)
        except RecursionError:
            raise InvalidEventError(
                f"payload nests objects/arrays more than {limits.max_payload_depth} levels "
                "deep", index=index, field="payload", value=value,
                expected=f"at most {limits.max_payload_depth} levels of nesting") from None
        except ValueError as exc:
            raise InvalidEventError(f"payload is not a JSON object: {exc}", index=index,
                                    field="payload", value=value,
                                    expected=_PAYLOAD_EXPECTED) from None
        _check_depth(parsed, value, index, limits)
        text = value
    elif isinstance(value, Mapping):
        _check_depth(value, value, index, limits)
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError, RecursionError) as exc:
            raise InvalidEventError(f"payload cannot be encoded as JSON: {exc}", index=index,
                                    field="payload", value=value,
                                    expected=_PAYLOAD_EXPECTED) from None
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidEventError("payload holds a lone surrogate (not valid UTF-8)",
                                    index=index, field="payload", value=value,
                                    expected=_PAYLOAD_EXPECTED) from None
    else:
        kind = "null" if value is None else type(value).__name__
        raise InvalidEventError(f"payload is a {kind}, not a JSON object", index=index,
                                field="payload", value=value, expected=_PAYLOAD_EXPECTED)
    size = len(text.encode("utf-8"))
    if size > limits.max_payload_bytes:
        raise InvalidEventError(f"payload is {size} bytes, larger than "
                                f"{limits.max_payload_bytes}", index=index, field="payload",
                                value=f"{size} bytes of JSON",
                                expected=f"at most {limits.max_payload_bytes} bytes of JSON")
    return text


def _check_action_payload(kind: str, payload: object, index: int) -> None:
    """Refuse a state action whose payload could never apply (see `actions.check_action`).

    Such an event would otherwise land and then fail, or be skipped, in every fold of the
    document view; refusing it here names the record while the producer can still fix it.
    """
    if kind not in ACTION_TYPES:
        return
    if isinstance(payload, str):
        payload = json.loads(payload)
    try:
        check_action(kind, payload)
    except InvalidEventError as exc:
        raise exc.within("payload", index=index) from None


def _parse_ts(value: object, index: int) -> datetime:
    expected = "a datetime or an ISO-8601 timestamp (naive means UTC)"
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidEventError("unparseable ts", index=index, field="ts", value=value,
                                    expected=expected) from None
    else:
        raise InvalidEventError(f"ts is a {type(value).__name__}, not a timestamp",
                                index=index, field="ts", value=value, expected=expected)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise InvalidEventError("ts is out of range in UTC", index=index, field="ts",
                                value=value, expected=expected) from None


def _from_records(records: Iterable[object], limits: Limits) -> pa.Table:
    partitions: list[str] = []
    types: list[str] = []
    payloads: list[str] = []
    event_ids: list[str | None] = []
    stamps: list[datetime | None] = []
    for index, record in enumerate(records):
        if index >= limits.max_batch_events:
            raise InvalidEventError(f"batch has more than {limits.max_batch_events} events",
                                    index=index, expected="a smaller batch")
        if not isinstance(record, Mapping):
            raise InvalidEventError(f"record is a {type(record).__name__}, not a mapping",
                                    index=index, value=record,
                                    expected="a dict with type, payload and partition")
        unknown = [key for key in record if key not in _RECORD_KEYS]
        if unknown:
            raise InvalidEventError(f"unknown key {unknown[0]!r}", index=index,
                                    field=str(unknown[0]), value=record[unknown[0]],
                                    expected=f"only the keys {', '.join(INPUT_COLUMNS)}")
        if "partition" in record and "partition_id" in record:
            raise InvalidEventError("both 'partition' and 'partition_id' given", index=index,
                                    field="partition", expected="exactly one of them")
        if "partition" in record:
            partition = record["partition"]
        elif "partition_id" in record:
            partition = record["partition_id"]
        else:
            raise InvalidEventError("missing partition", index=index, field="partition",
                                    expected="a 'partition' (or 'partition_id') key")
        partitions.append(check_partition(partition, index=index, limits=limits))
        if "type" not in record:
            raise InvalidEventError("missing type", index=index, field="type",
                                    expected="a 'type' key")
        types.append(_check_label(record["type"], field="type", index=index,
                                  max_chars=limits.max_type_chars))
        if "payload" not in record:
            raise InvalidEventError("missing payload", index=index, field="payload",
                                    expected="a 'payload' key holding a JSON object")
        payloads.append(_encode_payload(record["payload"], index, limits))
        # The stored text, not the caller's object: a tuple there is an array once stored.
        _check_action_payload(types[-1], payloads[-1], index)
        event_id = record.get("event_id")
        event_ids.append(None if event_id is None else _check_label(
            event_id, field="event_id", index=index, max_chars=limits.max_event_id_chars))
        ts = record.get("ts")
        stamps.append(None if ts is None else _parse_ts(ts, index))
    return pa.table(
        {
            "partition_id": pa.array(partitions, pa.string()),
            "type": pa.array(types, pa.string()),
            "payload": pa.array(payloads, pa.string()),
            "event_id": pa.array(event_ids, pa.string()),
            "ts": pa.array(stamps, TS_TYPE),
        }
    )


# -- columnar validation (Arrow and Polars input) ------------------------------------------
#
# Each check finds the first bad row with Arrow compute (or DuckDB), then re-checks that one
# value with the same scalar code the record path uses, so both paths raise the same error.


def _first_true(mask: pa.ChunkedArray | pa.Array) -> int | None:
    filled = pc.fill_null(mask, True)
    if not pc.any(filled).as_py():
        return None
    return int(pc.index(filled, True).as_py())


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind)
                or pa.types.is_string_view(kind))


def _as_text(table: pa.Table, column: str, *, field: str, allow_null_type: bool = False
             ) -> pa.ChunkedArray:
    """Column `column` as `string`, accepting large/view strings and string dictionaries
    (Polars categoricals); any other type is an error naming the first row."""
    array = table.column(column)
    kind = array.type
    if pa.types.is_dictionary(kind) and _is_text(kind.value_type):
        array = pc.cast(array, kind.value_type)
        kind = array.type
    if pa.types.is_null(kind) and allow_null_type:
        return pa.chunked_array([pa.nulls(len(array), pa.string())])
    if not _is_text(kind):
        first = array[0].as_py() if len(array) else None
        raise InvalidEventError(f"column {column!r} has type {kind}", index=0 if len(array)
                                else None, field=field, value=first,
                                expected="a string column")
    return pc.cast(array, pa.string())


def _check_label_column(array: pa.ChunkedArray, *, field: str, max_chars: int,
                        pattern: str, expected: str, nullable: bool = False,
                        partition: bool = False) -> None:
    if not nullable:
        # Partitions and types repeat a lot: check each distinct value once, then find the
        # first row holding a bad one.
        distinct = pc.unique(array)
        if len(distinct) * 4 < len(array):
            bad_values = distinct.filter(_bad_labels(distinct, max_chars, pattern, nullable,
                                                     partition=partition))
            if len(bad_values) == 0:
                return
            array_bad = pc.is_in(array, value_set=bad_values, skip_nulls=False)
            _raise_first(array, array_bad, field=field, max_chars=max_chars,
                         expected=expected, partition=partition)
            return
    _raise_first(array, _bad_labels(array, max_chars, pattern, nullable, partition=partition),
                 field=field,
                 max_chars=max_chars, expected=expected, partition=partition)


def _bad_labels(array: pa.ChunkedArray | pa.Array, max_chars: int, pattern: str,
                nullable: bool, *, partition: bool = False) -> pa.ChunkedArray | pa.Array:
    lengths = pc.utf8_length(array)
    bad = pc.or_(pc.equal(lengths, 0), pc.greater(lengths, max_chars))
    bad = pc.or_(bad, pc.match_substring_regex(array, pattern))
    if partition:
        # Percent-encoded size of the folder name: 3 bytes per UTF-8 byte but unreserved ASCII.
        encoded = pc.subtract(pc.multiply(pc.binary_length(array), 3), pc.multiply(
            pc.count_substring_regex(array, _UNRESERVED_ARROW), 2))
        bad = pc.or_(bad, pc.greater(encoded, PARTITION_FOLDER_BYTES))
    if nullable:
        return pc.and_(pc.is_valid(array), pc.fill_null(bad, False))
    # True for a null, not null: the distinct-values check filters on this mask, and a null
    # there would drop the null value from the bad ones.
    return pc.or_(pc.is_null(array), pc.fill_null(bad, False))


def _raise_first(array: pa.ChunkedArray, bad: pa.ChunkedArray | pa.Array, *, field: str,
                 max_chars: int, expected: str, partition: bool) -> None:
    index = _first_true(bad)
    if index is None:
        return
    value = array[index].as_py()
    problem = _label_problem(value, max_chars=max_chars, partition=partition) or "is not valid"
    raise InvalidEventError(f"{field} {problem}", index=index, field=field, value=value,
                            expected=expected)


def _check_payload_column(table: pa.Table, kind: pa.ChunkedArray, limits: Limits
                          ) -> pa.ChunkedArray:
    array = table.column("payload")
    if pa.types.is_struct(array.type) or pa.types.is_map(array.type):
        # Nested payloads (Arrow structs, Polars structs): encode row by row, which names the
        # row and refuses NaN (Polars' own JSON encoder would quietly turn it into null).
        rows = array.to_pylist()
        if pa.types.is_map(array.type):
            rows = [None if r is None else dict(r) for r in rows]
        encoded = pa.chunked_array([pa.array(
            [_encode_payload(v, i, limits) for i, v in enumerate(rows)], pa.string()
        )])
        for row, (action, payload) in enumerate(zip(kind.to_pylist(), rows, strict=True)):
            _check_action_payload(action, payload, row)
        return encoded
    if not _is_text(array.type):
        first = array[0].as_py() if len(array) else None
        raise InvalidEventError(f"column 'payload' has type {array.type}",
                                index=0 if len(array) else None, field="payload", value=first,
                                expected="JSON object text (string column) or a struct column")
    array = pc.cast(array, pa.string())
    index = _first_true(pc.is_null(array))
    if index is not None:
        _encode_payload(None, index, limits)
    sizes = pc.binary_length(array)
    index = _first_true(pc.greater(sizes, limits.max_payload_bytes))
    if index is not None:
        _encode_payload(array[index].as_py(), index, limits)
    # The columnar screen flags every row that might fail; each flagged row is decided by the
    # record path's own checks, so both paths raise the same error for the same record.
    suspects = payload_suspects(array, kind, max_depth=limits.max_payload_depth)
    for index in np.flatnonzero(suspects).tolist():
        text = array[index].as_py()
        _encode_payload(text, index, limits)
        _check_action_payload(kind[index].as_py(), text, index)
    return array


def _check_ts_column(table: pa.Table) -> pa.ChunkedArray:
    array = table.column("ts")
    expected = "a timestamp or ISO-8601 string column"
    if pa.types.is_null(array.type):
        return pa.chunked_array([pa.nulls(len(array), TS_TYPE)])
    if pa.types.is_timestamp(array.type):
        if array.type.tz is None:
            array = pc.assume_timezone(array, "UTC")
        # Nanoseconds are truncated to the log's microseconds; other units convert exactly.
        try:
            return pc.cast(array, TS_TYPE, safe=array.type.unit != "ns")
        except pa.ArrowInvalid as exc:
            raise InvalidEventError(f"ts out of range: {exc}", field="ts",
                                    expected=expected) from None
    if pa.types.is_dictionary(array.type) or _is_text(array.type):
        values = _as_text(table, "ts", field="ts").to_pylist()
        return pa.chunked_array([pa.array(
            [None if v is None else _parse_ts(v, i) for i, v in enumerate(values)], TS_TYPE
        )])
    first = array[0].as_py() if len(array) else None
    raise InvalidEventError(f"column 'ts' has type {array.type}", index=0 if len(array)
                            else None, field="ts", value=first, expected=expected)


def _from_table(table: pa.Table, limits: Limits) -> pa.Table:
    names = table.column_names
    columns = f"columns type, payload, partition and optionally event_id, ts; got {names}"
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise InvalidEventError(f"column {twice[0]!r} appears twice", field=twice[0],
                                expected=columns)
    if "partition" in names and "partition_id" in names:
        raise InvalidEventError("both 'partition' and 'partition_id' columns given",
                                field="partition", expected="exactly one of them")
    unknown = [n for n in names if n not in INPUT_COLUMNS]
    if unknown:
        raise InvalidEventError(f"unknown column {unknown[0]!r}", field=unknown[0],
                                value=unknown, expected=columns)
    if "partition" in names:
        table = table.rename_columns(["partition_id" if n == "partition" else n for n in names])
    for required in ("partition_id", "type", "payload"):
        if required not in table.column_names:
            field = "partition" if required == "partition_id" else required
            raise InvalidEventError(f"missing column {field!r}", field=field, expected=columns)
    if table.num_rows > limits.max_batch_events:
        raise InvalidEventError(f"batch has {table.num_rows} events", index=limits.max_batch_events,
                                expected=f"at most {limits.max_batch_events}")
    partition = _as_text(table, "partition_id", field="partition")
    _check_label_column(partition, field="partition", max_chars=limits.max_partition_chars,
                        pattern=_BAD_PARTITION_ARROW, expected=_partition_expected(limits),
                        partition=True)
    kind = _as_text(table, "type", field="type")
    _check_label_column(kind, field="type", max_chars=limits.max_type_chars,
                        pattern=_CONTROL_ARROW, expected=_label_expected(limits.max_type_chars))
    payload = _check_payload_column(table, kind, limits)
    n = table.num_rows
    if "event_id" in table.column_names:
        event_id = _as_text(table, "event_id", field="event_id", allow_null_type=True)
        _check_label_column(event_id, field="event_id", max_chars=limits.max_event_id_chars,
                            pattern=_CONTROL_ARROW, nullable=True,
                            expected=_label_expected(limits.max_event_id_chars))
    else:
        event_id = pa.chunked_array([pa.nulls(n, pa.string())])
    ts = _check_ts_column(table) if "ts" in table.column_names else pa.chunked_array(
        [pa.nulls(n, TS_TYPE)])
    return pa.table({"partition_id": partition, "type": kind, "payload": payload,
                     "event_id": event_id, "ts": ts})


def _check_unique_event_ids(table: pa.Table) -> None:
    ids = table.column("event_id")
    if ids.null_count == len(ids):
        return
    present = pc.drop_null(ids)
    if pc.count_distinct(present).as_py() == len(present):
        return
    seen: dict[str, int] = {}
    for index, value in enumerate(ids.to_pylist()):
        if value is None:
            continue
        if value in seen:
            raise InvalidEventError(f"duplicate event_id (also record {seen[value]})",
                                    index=index, field="event_id", value=value,
                                    expected="event ids unique within a batch")
        seen[value] = index


def normalize_batch(events: object, *, limits: Limits = DEFAULT_LIMITS) -> NormalizedBatch:
    """Validate `events` and return them as one Arrow table, or raise `InvalidEventError`.

    Accepts an iterable of dicts, a pyarrow Table or RecordBatch, or a polars DataFrame
    (or LazyFrame). Nothing is written here; every check runs before the log is touched.
    """
    if isinstance(events, pa.RecordBatch):
        events = pa.Table.from_batches([events])
    if isinstance(events, pa.Table):
        table = _from_table(events, limits)
    elif type(events).__module__.startswith("polars"):
        import polars as pl

        if isinstance(events, pl.LazyFrame):
            events = events.collect()
        if not isinstance(events, pl.DataFrame):
            raise InvalidEventError(f"unsupported polars input {type(events).__name__}",
                                    expected="a polars DataFrame")
        table = _from_table(events.to_arrow(), limits)
    elif isinstance(events, Mapping | str | bytes):
        raise InvalidEventError("events must be a collection of records",
                                value=type(events).__name__,
                                expected="an iterable of dicts, a pyarrow Table or a polars "
                                         "DataFrame")
    elif isinstance(events, Iterable):
        table = _from_records(events, limits)
    else:
        raise InvalidEventError("unsupported events input", value=type(events).__name__,
                                expected="an iterable of dicts, a pyarrow Table or a polars "
                                         "DataFrame")
    _check_unique_event_ids(table)
    return NormalizedBatch(table)
