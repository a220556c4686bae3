"""The JavaScript value semantics insieme's actions rely on, for JSON values in Python.

insieme (yuusoft-org/insieme) is JavaScript: it branches on truthiness, compares with `===`
and keys objects by `String(value)`. The actions (`eventlake.actions`) need exactly those
rules to reach insieme's states; they live here, apart from the actions, because they are
about values, not about state changes. Nothing here recurses.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, Final

__all__ = ["INHERITED_NAMES", "MISSING", "js_key", "same", "truthy"]

# Stands for JavaScript's `undefined`, which a JSON value can never be.
MISSING: Final = object()
# What every plain JavaScript object inherits from Object.prototype (`__proto__` aside, which
# the actions refuse): insieme reads these names as functions where Python sees no key.
INHERITED_NAMES: Final = frozenset({
    "constructor", "hasOwnProperty", "isPrototypeOf", "propertyIsEnumerable",
    "toLocaleString", "toString", "valueOf", "__defineGetter__", "__defineSetter__",
    "__lookupGetter__", "__lookupSetter__",
})


def truthy(value: object) -> bool:
    """JavaScript truthiness: 0, "", NaN, null, false and undefined are falsy; [] and {} not."""
    if value is None or value is False or value is MISSING:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value == value and value != 0
    if isinstance(value, str):
        return value != ""
    return True


def same(a: object, b: object) -> bool:
    """JavaScript `===`: scalars by value, objects and arrays by identity.

    Python's `==` would also equate True with 1, and recurse into containers; two JSON
    values read from text never share a container, so containers are never `===`.
    """
    if a is None or b is None or isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return False


def _js_number(value: float) -> str:
    """JavaScript's Number::toString: shortest round-trip digits, JS exponent thresholds."""
    if value == 0:
        return "0"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    sign, digits_tuple, exponent = Decimal(repr(value)).normalize().as_tuple()
    minus = "-" if sign else ""
    digits = "".join(map(str, digits_tuple))
    k = len(digits)
    n = int(exponent) + k  # the decimal point sits after n digits
    if k <= n <= 21:
        return minus + digits + "0" * (n - k)
    if 0 < n <= 21:
        return f"{minus}{digits[:n]}.{digits[n:]}"
    if -6 < n <= 0:
        return minus + "0." + "0" * -n + digits
    mantissa = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
    return f"{minus}{mantissa}e{'+' if n >= 1 else '-'}{abs(n - 1)}"


def js_key(value: object) -> str:
    """The property key JavaScript makes of `value` (`items[value]`): String(value)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        return _js_scalar_text(value)
    # Array.prototype.join(","), nested arrays joined in place; null becomes "". Iterative.
    parts: list[str] = []
    pending: list[Iterator[Any]] = [iter(value)]
    first = [True]
    while pending:
        item = next(pending[-1], MISSING)
        if item is MISSING:
            pending.pop()
            first.pop()
            continue
        if not first[-1]:
            parts.append(",")
        first[-1] = False
        if isinstance(item, list):
            pending.append(iter(item))
            first.append(True)
        elif item is not None:
            parts.append(item if isinstance(item, str) else _js_scalar_text(item))
    return "".join(parts)


def _js_scalar_text(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if -(2**53) <= value <= 2**53:
            return str(value)
        try:
            return _js_number(float(value))  # a JS number holds the nearest double
        except OverflowError:
            return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, float):
        return _js_number(value)
    if isinstance(value, dict):
        return "[object Object]"
    return str(value)
