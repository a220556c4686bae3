"""Lazy package names: a package's `__getattr__` imports the module defining a name on first use.

`eventlake` and `eventlake.flows` keep `import` cheap this way (no deltalake, polars, duckdb or
Prefect until a name that needs them is touched). Each package holds a table of name -> module
(absolute, or relative to the package) and hands its own module `__getattr__` to `attribute`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, MutableMapping
from typing import Any

__all__ = ["attribute"]


def attribute(namespace: MutableMapping[str, Any], table: Mapping[str, str], name: str) -> Any:
    """The value of `name` in the package whose globals are `namespace`, imported from the
    module `table` names for it and kept in `namespace`, so the next access is a plain
    lookup; `AttributeError` for a name the table does not hold."""
    package = namespace["__name__"]
    module = table.get(name)
    if module is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, package), name)
    namespace[name] = value
    return value
