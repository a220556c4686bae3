"""Event batch checks: turning user input into a valid Arrow batch.

The shapes checked against (the log's columns, `Limits`, `NormalizedBatch`) are the model's,
`eventlake.model.events`; they are re-exported here, where README and `eventlake.events` name
them.

Everything a caller hands to `Lake.append` passes through `normalize_batch`, which checks every
record before anything is written and raises `InvalidEventError` naming the record index, the
field, the bad value and what was expected. Validation is columnar for Arrow and Polars input
(Arrow compute; payload texts through the screen of `_payloadscan`: a byte scan, DuckDB's JSON
parser and a regex), so a million-row batch costs a fraction of its write.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from eventlake.errors import InvalidEventError
from eventlake.model import jsoncodec
from eventlake.model.actions import ACTION_TYPES, check_action
from eventlake.model.events import (
    DEFAULT_LIMITS,
    EVENT_SCHEMA,
    INPUT_COLUMNS,
    PARTITION_FOLDER_BYTES,
    PAYLOAD_EXPECTED,
    TS_TYPE,
    Limits,
    NormalizedBatch,
    decode_payload,
)
from eventlake.validate._payloadscan import payload_suspects

__all__ = [
    "DEFAULT_LIMITS",
    "EVENT_SCHEMA",
    "INPUT_COLUMNS",
    "Limits",
    "NormalizedBatch",
    "check_columns",
    "check_partition",
    "check_payload_type",
    "decode_payload",
    "normalize_batch",
    "payload_from_arrow",
]

# A partition value becomes a folder name: nothing that could climb out of, or split, that
# folder; no control characters, which break file systems and terminals alike.
_BAD_PARTITION = re.compile(r"[/\\\x00-\x1f\x7f]|\.\.")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BAD_PARTITION_ARROW = r"[/\\\x00-\x1f\x7f]|\.\."
_CONTROL_ARROW = r"[\x00-\x1f\x7f]"
_UNRESERVED_ARROW = r"[A-Za-z0-9_.~-]"
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


def _payload_error(exc: InvalidEventError, index: int | None) -> InvalidEventError:
    """A codec refusal of a payload as the record's error: its path under `payload`.

    The value is left out of the message: the same record reads the same whether its payload
    came as a dict, as text or from a struct column, and the path says where the problem is.
    """
    field = "payload" if exc.field is None else f"payload.{exc.field}"
    return InvalidEventError(exc.reason, index=index, field=field, expected=exc.expected)


def _encode_payload(value: object, index: int, limits: Limits) -> str:
    """The stored text of a payload (a dict, or the JSON text of an object), or the record's
    `InvalidEventError`: the one payload check of every path and format."""
    if isinstance(value, str):
        try:
            parsed = jsoncodec.loads(value, max_depth=limits.max_payload_depth)
        except InvalidEventError as exc:
            raise _payload_error(exc, index) from None
        if type(parsed) is not dict:
            raise InvalidEventError(f"payload is {jsoncodec.kind_of(parsed)}, not an object",
                                    index=index, field="payload", value=value,
                                    expected=PAYLOAD_EXPECTED)
        text = value
    elif isinstance(value, Mapping):
        try:
            text = jsoncodec.dumps(value if isinstance(value, dict) else dict(value),
                                   max_depth=limits.max_payload_depth)
        except InvalidEventError as exc:
            raise _payload_error(exc, index) from None
    else:
        raise InvalidEventError(f"payload is {jsoncodec.kind_of(value)}, not an object",
                                index=index, field="payload", value=value,
                                expected=PAYLOAD_EXPECTED)
    size = len(text) if text.isascii() else len(text.encode("utf-8"))
    if size > limits.max_payload_bytes:
        raise InvalidEventError(f"payload is {size} bytes, larger than "
                                f"{limits.max_payload_bytes}", index=index, field="payload",
                                value=f"{size} bytes of JSON",
                                expected=f"at most {limits.max_payload_bytes} bytes of JSON")
    return text


def payload_from_arrow(value: object, kind: pa.DataType, *, limits: Limits = DEFAULT_LIMITS
                       ) -> object:
    """A payload cell of a struct or map column (as `to_pylist` gives it) as the value it
    stands for, or `InvalidEventError` naming its path under `payload`.

    Arrow holds what JSON text cannot: a map whose keys repeat or are not strings, a struct
    with two fields of one name. `to_pylist` would quietly keep one of two equal keys; here
    each map becomes an object through `jsoncodec.object_from_pairs`, which refuses both, as
    `jsoncodec.dumps` refuses a dict with a non-string key.
    """
    if _type_depth(kind) > limits.max_payload_depth:
        # The values nest at most as deep as the type; a deeper type is refused whole, before
        # the recursion below could meet it.
        raise InvalidEventError(
            f"nests objects/arrays more than {limits.max_payload_depth} levels deep",
            field="payload", expected=f"at most {limits.max_payload_depth} levels of nesting")
    try:
        return _from_arrow(value, kind, [])
    except InvalidEventError as exc:
        raise _payload_error(exc, None) from None


def check_payload_type(kind: pa.DataType, *, source: str | None = None) -> None:
    """Refuse a struct/map payload column whose type no row of could pass: a struct with two
    fields of one name (Arrow allows it; `to_pylist` cannot even convert it). The field is the
    path of struct field names to it."""
    stack: list[tuple[pa.DataType, list[str]]] = [(kind, [])]
    while stack:
        item, path = stack.pop()
        names = [item.field(i).name for i in range(item.num_fields)]
        if pa.types.is_struct(item):
            twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
            if twice is not None:
                where = ".".join(["payload", *path, twice])
                raise InvalidEventError(
                    f"column 'payload' has a struct with the field {twice!r} twice, so every "
                    f"row's key {twice!r} appears twice in one object", field=where,
                    expected="struct fields of distinct names", source=source)
        for i in range(item.num_fields):
            child = item.field(i)
            stack.append((child.type, [*path, child.name] if pa.types.is_struct(item) else path))


def _type_depth(kind: pa.DataType) -> int:
    deepest = 0
    stack = [(kind, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((item.field(i).type, depth + 1) for i in range(item.num_fields))
    return deepest


def _from_arrow(value: object, kind: pa.DataType, path: list[str | int]) -> object:
    # Recursion follows the column's type, which `payload_from_arrow` bounded.
    if value is None:
        return None
    if pa.types.is_map(kind) or pa.types.is_struct(kind):
        if pa.types.is_map(kind):
            assert isinstance(value, list)
            pairs = [(key, item, kind.item_type) for key, item in value]
        else:
            assert isinstance(value, dict)
            # Two fields of one name are one key of `value`: the check below refuses them.
            fields = [kind.field(i) for i in range(kind.num_fields)]
            pairs = [(f.name, value[f.name], f.type) for f in fields]
        result: dict[str, object] = {}
        for key, item, item_kind in pairs:
            jsoncodec.check_object_key(key, result, path=path)
            result[key] = _from_arrow(item, item_kind, [*path, key])
        return result
    if isinstance(value, list) and kind.num_fields == 1:  # list, large list, fixed size, view
        item_kind = kind.field(0).type
        return [_from_arrow(v, item_kind, [*path, i]) for i, v in enumerate(value)]
    return value


def _check_action_payload(kind: str, payload: object, index: int) -> None:
    """Refuse a state action whose payload could never apply (see `actions.check_action`).

    Such an event would otherwise land and then fail, or be skipped, in every fold of the
    document view; refusing it here names the record while the producer can still fix it.
    """
    if kind not in ACTION_TYPES:
        return
    if isinstance(payload, str):
        payload = jsoncodec.loads(payload)
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
        # Counting the unreserved characters costs more than every other check together, and
        # only a value whose every byte encoded would pass the limit needs it.
        long = pc.greater(pc.multiply(pc.binary_length(array), 3), PARTITION_FOLDER_BYTES)
        if pc.any(long).as_py():
            encoded = pc.subtract(pc.multiply(pc.binary_length(array), 3), pc.multiply(
                pc.count_substring_regex(array, _UNRESERVED_ARROW), 2))
            bad = pc.or_(bad, pc.and_(long, pc.greater(encoded, PARTITION_FOLDER_BYTES)))
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
        # Nested payloads (Arrow structs and maps, Polars structs): row by row, as the record
        # path checks a dict, which names the row and refuses NaN (Polars' own JSON encoder
        # would quietly turn it into null) and a map's repeated or non-string key.
        check_payload_type(array.type)
        texts: list[str] = []
        for row, (action, cell) in enumerate(zip(kind.to_pylist(), array.to_pylist(),
                                                 strict=True)):
            try:
                value = None if cell is None else payload_from_arrow(cell, array.type,
                                                                     limits=limits)
            except InvalidEventError as exc:
                raise InvalidEventError(exc.reason, index=row, field=exc.field,
                                        expected=exc.expected) from None
            texts.append(_encode_payload(value, row, limits))
            _check_action_payload(action, texts[-1], row)
        return pa.chunked_array([pa.array(texts, pa.string())])
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


_COLUMNS_EXPECTED = ("columns type, payload, partition (or partition_id) and optionally "
                     "event_id, ts")


def check_columns(names: Sequence[str], *, source: str | None = None) -> None:
    """Raise `InvalidEventError` unless `names` (of an Arrow or Polars table, a CSV header, a
    Parquet file) are event columns: the one column check of every tabular input."""
    names = list(names)
    expected = f"{_COLUMNS_EXPECTED}; got {names}"
    if len(set(names)) != len(names):
        twice = next(name for i, name in enumerate(names) if name in names[:i])
        raise InvalidEventError(f"column {twice!r} appears twice", field=twice,
                                expected=expected, source=source)
    if "partition" in names and "partition_id" in names:
        raise InvalidEventError("both 'partition' and 'partition_id' columns given",
                                field="partition", expected="exactly one of them", source=source)
    unknown = [n for n in names if n not in INPUT_COLUMNS]
    if unknown:
        # An unknown column would be dropped on the floor; refuse the table instead.
        raise InvalidEventError(f"unknown column {unknown[0]!r}", field=unknown[0],
                                expected=expected, source=source)
    for required in ("partition", "type", "payload"):
        if required not in names and not (required == "partition" and "partition_id" in names):
            raise InvalidEventError(f"missing column {required!r}", field=required,
                                    expected=expected, source=source)


def _from_table(table: pa.Table, limits: Limits) -> pa.Table:
    names = table.column_names
    check_columns(names)
    if "partition" in names:
        table = table.rename_columns(["partition_id" if n == "partition" else n for n in names])
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
