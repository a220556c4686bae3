"""View definitions: pure descriptions of what to maintain, with no I/O.

Two kinds exist. A `ReducerView` folds a partition's events one by one through a Python
`reduce(state, event)`, keeping a JSON state per partition. An `AggregateView` keeps
decomposable aggregates per (partition, group) that merge without replaying history, computed
vectorized with Polars. The built-in `document` view is the reducer of the insieme actions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from eventlake.actions import ACTION_TYPES, apply_action, is_state_action
from eventlake.errors import InvalidEventError, ViewDefinitionError

__all__ = [
    "AGG_FUNCTIONS",
    "DOCUMENT_VIEW",
    "EVENT_COLUMNS",
    "Agg",
    "AggregateView",
    "ReducerView",
    "View",
    "document_view",
    "fold",
    "reducer_view",
]

AggFunction = Literal["count", "sum", "min", "max", "avg", "first", "last"]
AGG_FUNCTIONS: tuple[str, ...] = ("count", "sum", "min", "max", "avg", "first", "last")
# Event columns a group key may name directly; anything else is a payload path.
EVENT_COLUMNS = ("type", "partition_id", "event_id", "batch_id")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
# Column names the view tables use themselves.
RESERVED_COLUMNS = frozenset(
    {"partition_id", "bucket", "view_version", "state", "last_seq", "event_count",
     "updated_at", "rejected", "last_rejected"})

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
    """

    name: str
    version: int
    initial_state: Callable[[], Any]
    reduce: Reduce
    description: str = ""
    skip_invalid: bool = False
    types: Sequence[str] | None = None

    def __post_init__(self) -> None:
        _check_identity(self.name, self.version)
        if not callable(self.initial_state) or not callable(self.reduce):
            raise ViewDefinitionError(
                f"view {self.name!r}: initial_state and reduce must be callables")
        if self.types is not None:
            object.__setattr__(self, "types", _event_types(self.name, self.types))

    @property
    def kind(self) -> str:
        return "reducer"


def _event_types(view: str, types: object) -> tuple[str, ...]:
    kinds = (types,) if isinstance(types, str) else tuple(types)  # type: ignore[arg-type]
    if not kinds or not all(isinstance(k, str) and k for k in kinds):
        raise ViewDefinitionError(
            f"view {view!r}: types must be event type names (non-empty strings), got {types!r}")
    return kinds


def reducer_view(
    name: str, *, version: int = 1, initial_state: Callable[[], Any] = dict,
    description: str = "", skip_invalid: bool = False, types: Sequence[str] | None = None,
) -> Callable[[Reduce], ReducerView]:
    """Decorator form: `@reducer_view("balances", version=2)` over a reduce function."""

    def wrap(reduce: Reduce) -> ReducerView:
        return ReducerView(name=name, version=version, initial_state=initial_state,
                           reduce=reduce, description=description or (reduce.__doc__ or ""),
                           skip_invalid=skip_invalid, types=types)

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
DOCUMENT_VIEW = ReducerView(
    name="document",
    version=2,
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

    sum/min/max/avg read the field as a float (non-numbers are ignored like SQL NULLs);
    first/last keep it as JSON scalar text, ordered by `seq`; count with a field counts the
    events where the field is present and not null.
    """

    fn: AggFunction
    field: str | None = None

    def __post_init__(self) -> None:
        if self.fn not in AGG_FUNCTIONS:
            raise ViewDefinitionError(
                f"unknown aggregate {self.fn!r}; expected one of {', '.join(AGG_FUNCTIONS)}")
        if self.field is None and self.fn != "count":
            raise ViewDefinitionError(f"aggregate {self.fn!r} needs a payload field")
        if self.field is not None and not _PATH.match(_strip_payload(self.field)):
            raise ViewDefinitionError(
                f"bad payload path {self.field!r}: expected dot-separated identifiers")

    @property
    def path(self) -> str | None:
        return None if self.field is None else _strip_payload(self.field)


def _strip_payload(path: str) -> str:
    return path.removeprefix("payload.")


def _as_agg(name: str, spec: object) -> Agg:
    if isinstance(spec, Agg):
        return spec
    if isinstance(spec, str):
        return Agg(spec)  # type: ignore[arg-type]
    if isinstance(spec, tuple | list) and len(spec) == 2:
        return Agg(spec[0], spec[1])
    raise ViewDefinitionError(
        f"aggregate {name!r}: expected Agg(fn, field), (fn, field) or 'count', got {spec!r}")


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


View = ReducerView | AggregateView
