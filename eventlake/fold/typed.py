"""How a reducer view's state is stored in its row: one JSON text, or typed columns. Pure.

`codec_for(view)` gives the `StateCodec` a fold uses around `reduce`:

- `fit(state)` runs after every event (and on `initial_state()`): for a typed view it checks
  that the state fits the declared columns. A state that fits comes back as it is; one that
  does not gives None with `on_mismatch="error"` (a fitted state is always a dict; `misfit`
  then says what is wrong) and, with `on_mismatch="null"`, the fitted state (None for a
  missing key or a value of the wrong type, undeclared keys dropped), counting each change
  in `nulled`. Untyped views have no `fit` (None): no cost per event.
- `store(state)` gives the cells of the row (a tuple, one per column), `load(cells)` the state
  back. A fitted state survives `load(store(state))` exactly, which is what makes a refresh
  (that loads the stored row and folds on) equal a fold from scratch.

A typed state's value that is its column's type but cannot be stored (a lone surrogate in a
string, a `json` value that is not JSON) raises from `store` as an untyped state that cannot
be encoded does: the fold fails that partition at the event that made it.
"""

from __future__ import annotations

import functools
import math
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from eventlake.model import jsoncodec
from eventlake.model.columns import ColumnType
from eventlake.model.views import ReducerView

__all__ = ["Misfit", "StateCodec", "codec_for", "polars_type"]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_ARRAYS = (list, tuple)


@dataclass(frozen=True)
class Misfit:
    """What does not fit: the column, its value, the type expected and what is wrong."""

    column: str
    value: Any
    expected: str
    problem: str


def polars_type(kind: ColumnType) -> pl.DataType:
    """The Polars type of a column (`json` is its text)."""
    if kind.item is not None:
        return pl.List(polars_type(kind.item))
    return {"int64": pl.Int64(), "float64": pl.Float64(), "bool": pl.Boolean(),
            "string": pl.String(), "json": pl.String()}[kind.kind]


def _problem(kind: ColumnType, value: Any) -> str | None:
    """Why `value` does not fit a column of `kind` (None when it does)."""
    if value is None:
        return None
    name = kind.kind
    if name == "int64":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"holds a {type(value).__name__}, not an int"
        if not _INT64_MIN <= value <= _INT64_MAX:
            return "holds an int beyond the signed 64-bit range"
        return None
    if name == "float64":
        if not isinstance(value, float):
            return (f"holds a {type(value).__name__}, not a float (write 0.0, not 0: a "
                    "float64 column keeps floats only)")
        return None if math.isfinite(value) else "holds a float that is not finite"
    if name == "bool":
        return None if isinstance(value, bool) else f"holds a {type(value).__name__}, not a bool"
    if name == "string":
        return None if isinstance(value, str) else f"holds a {type(value).__name__}, not a str"
    if name == "json":
        return None  # any value: whether it is JSON shows when it is stored
    assert kind.item is not None
    if not isinstance(value, _ARRAYS):
        return f"holds a {type(value).__name__}, not a list"
    for index, item in enumerate(value):
        why = _problem(kind.item, item)
        if why is not None:
            return f"item {index} {why}"
    return None


# Cheap tests that are True only for values that fit (False: `_problem` says why, or finds
# that a subclass fits after all), as expressions of `v`.
_FAST = {
    "int64": "({v} is None or (type({v}) is int and _MIN <= {v} <= _MAX))",
    "float64": "({v} is None or (type({v}) is float and _finite({v})))",
    "bool": "({v} is None or type({v}) is bool)",
    "string": "({v} is None or type({v}) is str)",
    "json": "True",
}


def _compile_fit(columns: dict[str, ColumnType], refit: Callable[[Any], Any]
                 ) -> Callable[[Any], Any]:
    """`fit`'s common case as one generated function: a dict of exactly the declared keys
    whose values pass their column's test comes back as it is; anything else goes to
    `refit`. It runs after every event, where calling a test per column cost as much as a
    small reducer itself. Only indexes go into the source; names and tests are constants."""
    namespace: dict[str, Any] = {"_MIN": _INT64_MIN, "_MAX": _INT64_MAX,
                                 "_finite": math.isfinite, "_refit": refit}
    tests = []
    for index, (name, kind) in enumerate(columns.items()):
        namespace[f"_k{index}"] = name
        if kind.kind in _FAST:
            tests.append(_FAST[kind.kind].format(v=f"v{index}"))
        else:
            namespace[f"_t{index}"] = lambda v, kind=kind: _problem(kind, v) is None
            tests.append(f"_t{index}(v{index})")
    count = len(columns)
    reads = "\n".join(f"            v{i} = state[_k{i}]" for i in range(count))
    source = (
        "def fit(state):\n"
        f"    if type(state) is dict and len(state) == {count}:\n"
        "        try:\n"
        f"{reads}\n"
        "        except KeyError:\n"
        "            return _refit(state)\n"
        f"        if {' and '.join(tests)}:\n"
        "            return state\n"
        "    return _refit(state)\n")
    exec(_compiled(source), namespace)
    fit: Callable[[Any], Any] = namespace["fit"]
    return fit


@functools.lru_cache(maxsize=256)
def _compiled(source: str) -> types.CodeType:
    # A codec is made per fold and per state read; compiling is the costly part, and the
    # source depends only on the column types.
    return compile(source, "<eventlake typed view fit>", "exec")


def _storer(kind: ColumnType) -> Callable[[Any], Any] | None:
    """The cell of a value (None: the value is its own cell)."""
    if kind.kind == "json":
        return lambda v: None if v is None else jsoncodec.dumps(v)
    if kind.kind == "string":
        return _utf8
    if kind.item is not None:
        item = _storer(kind.item)
        if item is None:
            return lambda v: None if v is None else list(v)
        return lambda v: None if v is None else [item(x) for x in v]
    return None


def _utf8(value: str | None) -> str | None:
    # Parquet strings are UTF-8: a lone surrogate cannot be stored (JSON states refuse it too).
    if value is not None and not value.isascii():
        value.encode("utf-8")
    return value


def _loader(kind: ColumnType) -> Callable[[Any], Any] | None:
    """The value of a cell (None: the cell is its own value)."""
    if kind.kind == "json":
        return lambda c: None if c is None else jsoncodec.loads(c)
    if kind.item is not None:
        item = _loader(kind.item)
        if item is not None:
            return lambda c: None if c is None else [item(x) for x in c]
    return None


class StateCodec:
    """Stores a reducer view's states in its row; see the module docstring."""

    def __init__(self, view: ReducerView) -> None:
        self.view = view
        typed = view.column_types
        self.typed = typed is not None
        self.nulled = 0
        if typed is None:
            self.columns: dict[str, pl.DataType] = {"state": pl.String()}
            self.fit: Callable[[Any], Any] | None = None
            return
        self.types = typed
        self.columns = {name: polars_type(kind) for name, kind in typed.items()}
        self._keys = frozenset(typed)
        self._names = tuple(typed)
        self._storers = tuple(_storer(kind) for kind in typed.values())
        self._loaders = tuple((name, _loader(kind)) for name, kind in typed.items())
        self._null = view.on_mismatch == "null"
        self.fit = _compile_fit(typed, self._refit)

    def _refit(self, state: Any) -> Any:
        """The slow path: None (on_mismatch="error") or the fitted state ("null")."""
        if not self._null:
            return None if self.misfit(state) is not None else state
        if not isinstance(state, dict):
            self.nulled += len(self._names)
            return dict.fromkeys(self._names)
        fitted: dict[str, Any] = {}
        for name, kind in self.types.items():
            value = state.get(name)
            if name not in state or _problem(kind, value) is not None:
                self.nulled += 1
                value = None
            fitted[name] = value
        self.nulled += sum(1 for key in state if key not in self._keys)
        return fitted

    def misfit(self, state: Any) -> Misfit | None:
        """The first thing about `state` that does not fit the columns (None: it fits)."""
        names = ", ".join(self._names)
        if not isinstance(state, dict):
            return Misfit("(state)", state, f"a dict with keys {names}",
                          f"is a {type(state).__name__}, not a dict")
        for name, kind in self.types.items():
            if name not in state:
                return Misfit(name, None, kind.name, "is missing from the state")
            why = _problem(kind, state[name])
            if why is not None:
                return Misfit(name, state[name], kind.name, why)
        for key in state:
            if key not in self._keys:
                return Misfit(str(key), state[key], f"only the keys {names}",
                              "is not a declared column")
        return None

    def store(self, state: Any) -> tuple[Any, ...]:
        """The row cells of a state (`fit` already passed it, for a typed view)."""
        if not self.typed:
            # Strict and any depth: a state nests as deep as its events make it.
            return (jsoncodec.dumps(state),)
        return tuple(state[name] if store is None else store(state[name])
                     for name, store in zip(self._names, self._storers, strict=True))

    def load(self, cells: tuple[Any, ...]) -> Any:
        """The state of a row's cells (what `store` gave, read back)."""
        if not self.typed:
            return jsoncodec.loads(cells[0])
        return {name: cell if load is None else load(cell)
                for (name, load), cell in zip(self._loaders, cells, strict=True)}

    def initial(self) -> tuple[Any, Any]:
        """(`initial_state()`, its fitted state: None when it does not fit)."""
        state = self.view.initial_state()
        return state, (state if self.fit is None else self.fit(state))


def codec_for(view: ReducerView) -> StateCodec:
    return StateCodec(view)
