"""View definitions: pure descriptions of what to maintain, with no I/O.

Two kinds exist. A `ReducerView` folds a partition's events one by one through a Python
`reduce(state, event)`, keeping a JSON state per partition. An `AggregateView` keeps
decomposable aggregates per (partition, group) that merge without replaying history, computed
vectorized with Polars. The built-in `document` view is the reducer of the insieme actions.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import field as dataclass_field
from typing import Any, Literal

from eventlake.errors import InvalidEventError, ViewDefinitionError
from eventlake.model.actions import ACTION_TYPES, apply_action, is_state_action
from eventlake.model.columns import ColumnType, column_type
from eventlake.model.sqlview import SqlView

__all__ = [
    "AGG_FUNCTIONS",
    "DOCUMENT_VIEW",
    "EVENT_COLUMNS",
    "FAILURE",
    "MISMATCHES",
    "Agg",
    "AggregateView",
    "ReducerView",
    "SqlView",
    "View",
    "definition_fingerprint",
    "document_view",
    "fold",
    "reducer_view",
]

AggFunction = Literal["count", "sum", "min", "max", "avg", "first", "last"]
AGG_FUNCTIONS: tuple[str, ...] = ("count", "sum", "min", "max", "avg", "first", "last")
AggDtype = Literal["int64", "float64", "decimal", "string"]
# The dtypes each function allows; the first one is its default.
_DTYPES: dict[str, tuple[AggDtype, ...]] = {
    "count": ("int64",),
    "sum": ("int64", "float64", "decimal"),
    "min": ("int64", "float64", "decimal"),
    "max": ("int64", "float64", "decimal"),
    "avg": ("float64", "int64", "decimal"),
    "first": ("string", "int64", "float64", "decimal"),
    "last": ("string", "int64", "float64", "decimal"),
}
# Event columns a group key may name directly; anything else is a payload path.
EVENT_COLUMNS = ("type", "partition_id", "event_id", "batch_id")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
# The column of a view row that holds why its partition stopped folding (null when it did not).
FAILURE = "failure"
# The column of a typed view row (on_mismatch="null") counting values it stored as null.
MISMATCHES = "mismatches"
# Column names the view tables use themselves.
RESERVED_COLUMNS = frozenset(
    {"partition_id", "bucket", "view_version", "state", "last_seq", "event_count",
     "updated_at", "rejected", "last_rejected", FAILURE, MISMATCHES, "generation"})
OnMismatch = Literal["error", "null"]

Event = dict[str, Any]
Reduce = Callable[[Any, Event], Any]


def _check_identity(name: object, version: object) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ViewDefinitionError(
            f"bad view name {name!r}: expected a letter or underscore then letters, digits or "
            "underscores (at most 63 characters), so it is safe as a folder and a SQL table name")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ViewDefinitionError(f"view {name!r}: version must be an int >= 1, got {version!r}")


@dataclass(frozen=True)
class ReducerView:
    """One JSON state per partition, folded event by event with `reduce(state, event)`.

    `reduce` gets the event as a dict with `seq`, `partition`, `type`, `payload` (a dict) and
    `ts`; it must return the new state (JSON-serializable) and should not mutate its input.
    Bump `version` whenever `reduce` or `initial_state` changes meaning: the view is then
    rebuilt from the whole log.

    With `skip_invalid`, an event whose `reduce` raises `InvalidEventError` leaves the state as
    it was instead of stopping the view; each row then also counts such events (`rejected`)
    and describes the newest one (`last_rejected`, JSON text with seq, type and error).

    With `types`, `reduce` gets only events of those types: the others are not decoded at all,
    which is cheaper than a `reduce` that returns them unchanged. `last_seq` and
    `event_count` still count every event of the partition.

    With `columns` (state key -> type name, see `eventlake.model.columns`) the state is a
    dict whose keys are stored as typed columns instead of one JSON text: every state the
    reducer returns (and `initial_state()`) must have exactly those keys, each value of its
    column's type or None. One that does not fit follows `on_mismatch`: "error" stops the
    refresh (`ColumnMismatchError`, nothing of it committed); "null" stores None for a
    missing key or a value of the wrong type, drops a key not declared, and counts each such
    value in the row's `mismatches` column. Either way the check runs after every event, so
    the next event sees the state as it is stored and a refresh equals a rebuild however the
    events were split.
    """

    name: str
    version: int
    initial_state: Callable[[], Any]
    reduce: Reduce
    description: str = ""
    skip_invalid: bool = False
    types: Sequence[str] | None = None
    columns: Mapping[str, str | ColumnType] | None = dataclass_field(default=None,
                                                                     kw_only=True)
    on_mismatch: OnMismatch = dataclass_field(default="error", kw_only=True)

    def __post_init__(self) -> None:
        _check_identity(self.name, self.version)
        if not callable(self.initial_state) or not callable(self.reduce):
            raise ViewDefinitionError(
                f"view {self.name!r}: initial_state and reduce must be callables")
        if self.types is not None:
            object.__setattr__(self, "types", _event_types(self.name, self.types))
        if self.on_mismatch not in ("error", "null"):
            raise ViewDefinitionError(
                f"view {self.name!r}: on_mismatch must be 'error' or 'null', got "
                f"{self.on_mismatch!r}")
        if self.columns is not None:
            object.__setattr__(self, "columns", _typed_columns(self.name, self.columns))
        elif self.on_mismatch != "error":
            raise ViewDefinitionError(
                f"view {self.name!r}: on_mismatch={self.on_mismatch!r} needs columns=...")

    @property
    def kind(self) -> str:
        return "reducer"


    @property
    def column_types(self) -> dict[str, ColumnType] | None:
        """The parsed `columns` (None for an untyped view, whose state is one JSON text)."""
        return None if self.columns is None else dict(self.columns)  # type: ignore[arg-type]


def _typed_columns(view: str, columns: object) -> dict[str, ColumnType]:
    if not isinstance(columns, Mapping) or not columns:
        raise ViewDefinitionError(
            f"view {view!r}: columns must map state keys to type names, e.g. "
            f"{{'balance': 'int64'}}, got {columns!r}")
    parsed: dict[str, ColumnType] = {}
    for name, spec in columns.items():
        if (not isinstance(name, str) or not _NAME.match(name) or name in RESERVED_COLUMNS
                or name.startswith("_")):
            raise ViewDefinitionError(
                f"view {view!r}: column name {name!r} is not allowed (reserved, starts with "
                "'_' or not an identifier)")
        parsed[name] = column_type(spec, view=view, column=name)
    return parsed


def _event_types(view: str, types: object) -> tuple[str, ...]:
    kinds = (types,) if isinstance(types, str) else tuple(types)  # type: ignore[arg-type]
    if not kinds or not all(isinstance(k, str) and k for k in kinds):
        raise ViewDefinitionError(
            f"view {view!r}: types must be event type names (non-empty strings), got {types!r}")
    return kinds


def reducer_view(
    name: str, *, version: int = 1, initial_state: Callable[[], Any] = dict,
    description: str = "", skip_invalid: bool = False, types: Sequence[str] | None = None,
    columns: Mapping[str, str | ColumnType] | None = None, on_mismatch: OnMismatch = "error",
) -> Callable[[Reduce], ReducerView]:
    """Decorator form: `@reducer_view("balances", version=2)` over a reduce function."""

    def wrap(reduce: Reduce) -> ReducerView:
        return ReducerView(name=name, version=version, initial_state=initial_state,
                           reduce=reduce, description=description or (reduce.__doc__ or ""),
                           skip_invalid=skip_invalid, types=types, columns=columns,
                           on_mismatch=on_mismatch)

    return wrap


def fold(view: ReducerView, state: Any, events: Iterable[Event]) -> Any:
    """Pure fold of `events` onto `state` (the reference every stored row must equal)."""
    reduce = view.reduce
    types = view.types
    for event in events:
        if types is not None and event["type"] not in types:
            continue
        try:
            state = reduce(state, event)
        except InvalidEventError:
            if not view.skip_invalid:
                raise
    return state


def _document_reduce(state: Any, event: Event) -> Any:
    kind = event["type"]
    if not is_state_action(kind):
        return state
    return apply_action(state, kind, event["payload"])


# v2: an action the state refuses is skipped and counted instead of stopping the view.
# v3: the actions match insieme on numeric node ids and refuse what insieme throws on (rows
# folded by v2 can differ from a refold, and the reducer's own code did not change, so its
# fingerprint would not notice).
DOCUMENT_VIEW = ReducerView(
    name="document",
    version=3,
    initial_state=dict,
    reduce=_document_reduce,
    description="insieme document state: state actions applied in seq order; other event "
                "types leave it unchanged, and so does an action the state refuses (counted "
                "in `rejected`)",
    skip_invalid=True,
    # Other events leave the state as it is: the fold need not even decode them.
    types=ACTION_TYPES,
)


def document_view() -> ReducerView:
    return DOCUMENT_VIEW


@dataclass(frozen=True)
class Agg:
    """One aggregate: `fn` over payload path `field` (None only for `count` of events).

    `dtype` is the type of the view column, known from the definition because a column has
    one type (default per function: count, sum, min, max -> "int64"; avg -> "float64";
    first, last -> "string", the JSON scalar text):

    - "int64": integer fields, exact. A number counts when it is integral (5, 5.0, 1e3
      count as 5, 5, 1000); a number with a fraction (2.5), or a value or running sum
      outside the Int64 range, is an error for that partition (see `materialize`).
    - "decimal": Decimal(38, 0), for integer sums too large for Int64; the same rules.
    - "float64": any number, read as a float (integers beyond 2**53 round).
    - avg's dtype is the type of the values it reads; the mean is always a float64. With
      "int64" or "decimal" the running sum is exact (kept as Decimal(38, 0)), so a refresh
      and a rebuild give the same mean however the events were split; a float64 sum rounds
      at every step, and with large values of both signs the rounding depends on the split.
    - "string" (first/last only): the value as JSON scalar text, numbers included.

    Values that are not numbers (strings, even "12", booleans, objects) are ignored by the
    numeric dtypes like SQL NULLs; count with a field counts the events where the field is
    present and not null.
    """

    fn: AggFunction
    field: str | None = None
    dtype: AggDtype | None = dataclass_field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if self.fn not in AGG_FUNCTIONS:
            raise ViewDefinitionError(
                f"unknown aggregate {self.fn!r}; expected one of {', '.join(AGG_FUNCTIONS)}")
        if self.field is None and self.fn != "count":
            raise ViewDefinitionError(f"aggregate {self.fn!r} needs a payload field")
        if self.field is not None and not _PATH.match(_strip_payload(self.field)):
            raise ViewDefinitionError(
                f"bad payload path {self.field!r}: expected dot-separated identifiers")
        allowed = _DTYPES[self.fn]
        if self.dtype is None:
            object.__setattr__(self, "dtype", allowed[0])
        elif self.dtype not in allowed:
            raise ViewDefinitionError(
                f"aggregate {self.fn!r} of {self.field!r}: dtype {self.dtype!r} is not "
                f"possible; expected one of {', '.join(allowed)}")

    @property
    def path(self) -> str | None:
        return None if self.field is None else _strip_payload(self.field)

    @property
    def kind(self) -> AggDtype:
        """`dtype` with its default filled in (what the column holds)."""
        assert self.dtype is not None
        return self.dtype


def _strip_payload(path: str) -> str:
    return path.removeprefix("payload.")


def _as_agg(name: str, spec: object) -> Agg:
    if isinstance(spec, Agg):
        return spec
    if isinstance(spec, str):
        return Agg(spec)  # type: ignore[arg-type]
    if isinstance(spec, tuple | list) and len(spec) == 2:
        return Agg(spec[0], spec[1])
    if isinstance(spec, tuple | list) and len(spec) == 3:
        return Agg(spec[0], spec[1], dtype=spec[2])
    raise ViewDefinitionError(
        f"aggregate {name!r}: expected Agg(fn, field, dtype=...), (fn, field), "
        f"(fn, field, dtype) or 'count', got {spec!r}")


@dataclass(frozen=True)
class AggregateView:
    """Decomposable aggregates per (partition, group), merged incrementally.

    `group_by` names event columns (`type`) or payload paths (`currency`, `payload.meta.region`);
    the output column of a payload path is the path with dots replaced by `_`. `aggregates`
    maps output column names to `Agg(fn, field)` (or `(fn, field)` tuples, or `"count"`).
    `where` keeps only the listed event types.
    """

    name: str
    version: int
    group_by: Sequence[str] = ()
    aggregates: Mapping[str, Agg | tuple[str, str | None] | str] = field(default_factory=dict)
    where: Sequence[str] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        _check_identity(self.name, self.version)
        object.__setattr__(self, "group_by", tuple(self.group_by))
        aggs = {name: _as_agg(name, spec) for name, spec in dict(self.aggregates).items()}
        if not aggs:
            raise ViewDefinitionError(f"view {self.name!r}: at least one aggregate is needed")
        object.__setattr__(self, "aggregates", aggs)
        if self.where is not None:
            kinds = (self.where,) if isinstance(self.where, str) else tuple(self.where)
            object.__setattr__(self, "where", kinds)
        seen: set[str] = set()
        for column in [*self.group_columns, *aggs]:
            if not _NAME.match(column) or column in RESERVED_COLUMNS or column.startswith("_"):
                raise ViewDefinitionError(
                    f"view {self.name!r}: column name {column!r} is not allowed (reserved, "
                    "starts with '_' or not an identifier)")
            if column in seen:
                raise ViewDefinitionError(f"view {self.name!r}: column {column!r} twice")
            seen.add(column)
        for key in self.group_by:
            if key not in EVENT_COLUMNS and not _PATH.match(_strip_payload(key)):
                raise ViewDefinitionError(
                    f"view {self.name!r}: group key {key!r} is neither an event column "
                    f"({', '.join(EVENT_COLUMNS)}) nor a payload path")
            if key == "partition_id":
                raise ViewDefinitionError(
                    f"view {self.name!r}: rows are per partition already; drop 'partition_id' "
                    "from group_by")

    @property
    def kind(self) -> str:
        return "aggregate"

    @property
    def group_columns(self) -> tuple[str, ...]:
        return tuple(k if k in EVENT_COLUMNS else _strip_payload(k).replace(".", "_")
                     for k in self.group_by)

    @property
    def aggs(self) -> dict[str, Agg]:
        return dict(self.aggregates)  # type: ignore[arg-type]


View = ReducerView | AggregateView | SqlView


# -- definition fingerprints -----------------------------------------------------------------


def definition_fingerprint(view: View) -> int:
    """A stable 62-bit hash of what `view` computes, stored with every generation built.

    A view changed under the same `version` would merge rows of two definitions, so the
    engine refuses it (`ViewStore.check_definition`). What counts:

    - aggregate view: group keys, each aggregate's name, function, payload path and dtype,
      and `where` (the order of aggregates and of `where` types is not meaning);
    - reducer view: the code of `reduce` and `initial_state` (bytecode, constants including
      nested functions, the global and attribute names used, defaults, closure values),
      `types`, `skip_invalid`, and for a typed view its `columns` (names and canonical
      types, in any order) and `on_mismatch`. Not the functions it calls or the globals it
      reads: bump the version when those change meaning. Bytecode differs between Python
      versions, so a Python upgrade reads as a change (accept it once).

    Names, descriptions, docstrings and line numbers do not count. The value is the same in
    every process (no `hash()`, which is salted per process); 62 bits keep it a positive
    int64, the type of a Delta app-transaction version, where it is stored.
    """
    cached = view.__dict__.get("_fingerprint")
    if cached is not None:
        return int(cached)
    if isinstance(view, SqlView):
        spec: Any = view.fingerprint_spec()
    elif isinstance(view, AggregateView):
        spec = {
            "kind": "aggregate",
            "group_by": [k if k in EVENT_COLUMNS else _strip_payload(k) for k in view.group_by],
            "aggregates": sorted([name, agg.fn, agg.path, agg.kind]
                                 for name, agg in view.aggs.items()),
            "where": None if view.where is None else sorted(set(view.where)),
        }
    else:
        spec = {
            "kind": "reducer",
            "reduce": _callable_shape(view.reduce),
            "initial_state": _callable_shape(view.initial_state),
            "types": None if view.types is None else sorted(set(view.types)),
            "skip_invalid": bool(view.skip_invalid),
        }
        typed = view.column_types
        if typed is not None:  # absent for untyped views: their fingerprints stay as they were
            spec["columns"] = sorted([name, kind.name] for name, kind in typed.items())
            spec["on_mismatch"] = view.on_mismatch
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    digest = hashlib.sha256(text.encode("ascii")).digest()
    value = (int.from_bytes(digest[:8], "big") >> 2) or 1
    object.__setattr__(view, "_fingerprint", value)
    return value


def _callable_shape(fn: object, depth: int = 0) -> Any:
    """A JSON-able description of a callable's code that is equal across processes."""
    if depth > 8:
        return ["deep", _qualified(fn)]
    if isinstance(fn, functools.partial):
        return ["partial", _callable_shape(fn.func, depth + 1),
                [_value_shape(a, depth + 1) for a in fn.args],
                sorted([k, _value_shape(v, depth + 1)] for k, v in fn.keywords.items())]
    func = getattr(fn, "__func__", fn)  # a bound method: its function
    code = getattr(func, "__code__", None)
    if not isinstance(code, types.CodeType):
        call = vars(type(fn)).get("__call__")  # a callable object: its class's method
        if not isinstance(fn, type) and getattr(call, "__code__", None) is not None:
            return ["instance", _qualified(type(fn)), _callable_shape(call, depth + 1)]
        return ["named", _qualified(fn)]  # a builtin or a class such as `dict`
    doc = getattr(func, "__doc__", None)
    cells = getattr(func, "__closure__", None) or ()
    closure = []
    for cell in cells:
        try:
            closure.append(_value_shape(cell.cell_contents, depth + 1))
        except ValueError:  # an empty cell
            closure.append(None)
    return ["function", _code_shape(code, doc, depth),
            _value_shape(getattr(func, "__defaults__", None), depth + 1),
            _value_shape(getattr(func, "__kwdefaults__", None), depth + 1), closure]


def _code_shape(code: types.CodeType, doc: object, depth: int) -> Any:
    consts = list(code.co_consts)
    if doc is not None and consts and consts[0] == doc:
        consts[0] = None  # the docstring is not meaning
    return ["code", code.co_code.hex(), code.co_argcount, code.co_posonlyargcount,
            code.co_kwonlyargcount, list(code.co_names),
            [_value_shape(c, depth + 1) for c in consts]]


def _value_shape(value: object, depth: int) -> Any:
    if isinstance(value, types.CodeType):
        return _code_shape(value, None, depth + 1)
    if value is None or isinstance(value, bool | int | str):
        return [type(value).__name__, value if not isinstance(value, int) or isinstance(
            value, bool) else str(value)]
    if isinstance(value, float | complex | bytes) or value is Ellipsis:
        return [type(value).__name__, repr(value)]
    if isinstance(value, tuple | list):
        return [type(value).__name__, [_value_shape(v, depth + 1) for v in value]]
    if isinstance(value, frozenset | set):
        # Set order follows string hashing, which is salted per process: sort the shapes.
        return [type(value).__name__, sorted((_value_shape(v, depth + 1) for v in value),
                                             key=lambda s: json.dumps(s, sort_keys=True))]
    if isinstance(value, dict):
        return ["dict", sorted(([_value_shape(k, depth + 1), _value_shape(v, depth + 1)]
                                for k, v in value.items()),
                               key=lambda s: json.dumps(s, sort_keys=True))]
    if callable(value):
        return _callable_shape(value, depth + 1)
    # Other objects: their type only (a repr may hold a memory address).
    return ["object", _qualified(type(value))]


def _qualified(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
