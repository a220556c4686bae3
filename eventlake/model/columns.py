"""Declared column types of typed reducer views (`ReducerView(columns=...)`), pure.

A typed view stores each key of its state dict in a column of its own, so SQL and Polars see
real types instead of one JSON text. The type names are Arrow's (and Polars', lower-cased):

- `int64`: a Python int (not a bool) in the signed 64-bit range;
- `float64`: a Python float, finite (an int is not a float64: JSON tells `1` from `1.0`, and
  a state read back must be the one the reducer returned);
- `bool` (also `boolean`): True or False;
- `string` (also `str`, `utf8`): a Python str;
- `json`: any JSON value, stored as its JSON text (nested dicts and lists stay whole);
- `list[T]` (also `list<T>`): a list (or tuple) whose items are of type T, any of the above,
  `list[...]` included; items may be None.

Every column may hold None (SQL NULL). Names are matched case-insensitively, and aliases are
stored by their canonical name, so `"Int64"` and `"int64"` are one definition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from eventlake.errors import ViewDefinitionError

__all__ = ["COLUMN_TYPES", "ColumnType", "column_type"]

COLUMN_TYPES = ("int64", "float64", "bool", "string", "json", "list[T]")
_SCALARS = {"int64": "int64", "float64": "float64", "bool": "bool", "boolean": "bool",
            "string": "string", "str": "string", "utf8": "string", "json": "json"}
_LIST = re.compile(r"^list\s*(?:\[(.*)\]|<(.*)>)$")


@dataclass(frozen=True)
class ColumnType:
    """One declared column type: `kind` is a scalar name, or "list" with its `item` type."""

    kind: str
    item: ColumnType | None = None

    @property
    def name(self) -> str:
        """The canonical name (`list[string]`), what the definition fingerprint holds."""
        return f"list[{self.item.name}]" if self.item is not None else self.kind

    @property
    def holds_json(self) -> bool:
        """Whether the column stores JSON text (a `json` column, or a list of them)."""
        return self.kind == "json" or (self.item is not None and self.item.holds_json)


def column_type(spec: object, *, view: str = "?", column: str = "?") -> ColumnType:
    """Parse a declared type name; an unknown one is a `ViewDefinitionError` naming it."""
    if isinstance(spec, ColumnType):
        return spec
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text in _SCALARS:
            return ColumnType(_SCALARS[text])
        found = _LIST.match(text)
        if found is not None:
            inner = found.group(1) if found.group(1) is not None else found.group(2)
            try:
                return ColumnType("list", column_type(inner, view=view, column=column))
            except ViewDefinitionError:
                pass  # the message names the whole type, below
    raise ViewDefinitionError(
        f"view {view!r}: column {column!r} has unknown type {spec!r}; expected one of "
        f"{', '.join(COLUMN_TYPES)} (T any of these, e.g. 'list[string]')")
