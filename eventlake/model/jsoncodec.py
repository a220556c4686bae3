"""JSON text of payloads and view states: one strict, exact decoder and one canonical encoder.

Every path that turns payload or state text into values (validation, folds, reads, verify),
or values into that text, goes through here, so they all agree on which JSON is valid and on
the values it holds:

* strict: no NaN/Infinity, no key twice in one object at any depth (readers disagree on which
  one wins: Python keeps the last, DuckDB the first), no object key that is not a string when
  encoding (`{1: "x", "1": "y"}` would be stored with a key twice), no number too large for a
  float (DuckDB and Polars read numbers as doubles: it would be `inf` there), no lone UTF-16
  surrogate, raw or as a `\\uXXXX` escape (it is not valid UTF-8, which Parquet strings are);
* exact: integers are Python ints for the whole accepted range, |n| < 2**1024 - 2**970 (the
  integers that round to a finite float), also beyond 64 bits;
* without depth limits of its own: a view state may nest thousands of levels (a chain of
  `treePush` events builds a tree that deep). Callers that want a limit pass `max_depth`.

Decoding tries three decoders in order, each allowed to answer only where it provably gives
the answer of the last one, which is the authority on every refusal and its message:

1. orjson, when its own encoding of the value proves that no integer became a float (orjson
   turns integers beyond 64 bits into floats without an error) and that no object repeated a
   key (see `loads`);
2. Python's `json` decoder (C scanner, exact integers) with hooks that refuse what the rules
   refuse; it raises `RecursionError` near 1,000 levels;
3. `_parse`, an iterative parser of our own (any depth, paths in its errors).

A refusal is an `InvalidEventError` whose `field` is the dotted path inside the value (`a.1.b`;
None for the value itself) and whose reason says what is wrong; encoding and decoding word the
same problem alike, so a record gets the same message whether it arrived as Python objects or
as text.

What goes through here is the users' data: payload and view-state text, and the JSON Lines
records of inbox files, whose values must be read alike by every path. eventlake's other JSON
keeps the standard `json` module, because it is not user data and each has its own writer and
format: the Delta log's actions, statistics and `_last_checkpoint` (table-format metadata that
eventlake or delta-rs wrote, read as the Delta protocol spells it), storage options from the
environment, DuckDB's own parse trees, view fingerprints, an aggregate's `failure` note, and
quarantine entries, which must keep exactly the bad values this codec refuses.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Container, Iterator, Sequence
from decimal import Decimal
from typing import Any, Literal, NoReturn

import orjson

from eventlake.errors import InvalidEventError

__all__ = ["INT_LIMIT", "check_object_key", "dumps", "dumps_decoded", "equal",
           "first_difference", "kind_of", "loads", "loads_objects"]

# The smallest integer that rounds to an infinite float: 2**1024 - 2**971 is the largest
# double, and anything at or beyond the midpoint to 2**1024 rounds up to infinity.
INT_LIMIT = 2**1024 - 2**970
_INT_LIMIT_DIGITS = len(str(INT_LIMIT))

# orjson is exact for integers that fit 64 bits (signed or unsigned); every integer token it
# would turn into a float has at least 19 digits.
_LONG_DIGITS = re.compile(r"[0-9]{19}")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# The C encoder and decoder recurse: below this depth they are used, beyond it (or when they
# still raise RecursionError, on a deep call stack) the iterative code is.
_C_DEPTH = 400

_EXPECT_UNIQUE = "each key once per object"
_EXPECT_STRING_KEY = "string keys (JSON object keys are strings)"
_EXPECT_FINITE = "a finite number within the float range (magnitude below 1.8e308)"
_EXPECT_UNICODE = "valid Unicode text (surrogates only as pairs)"
_EXPECT_VALUE = "a JSON value: dict, list, str, int, float, bool or None"
_EXPECT_TEXT = "JSON text"

Path = list[Any]  # keys (strings, or what a map held) and array indexes
# Tuples, not `X | Y`: a union is built anew on every call, which the hot loops here feel.
_CONTAINERS = (dict, list, tuple)
_ARRAYS = (list, tuple)
_BOOL_STR = (bool, str)


def _field(path: Path) -> str | None:
    if not path:
        return None
    field = ".".join(map(str, path))
    # A key with a lone surrogate: the field is shown and written as UTF-8, so escape it.
    return field.encode("utf-8", "backslashreplace").decode("utf-8")


def _error(reason: str, path: Path, expected: str) -> InvalidEventError:
    return InvalidEventError(reason, field=_field(path), expected=expected)


def _duplicate(key: str, path: Path) -> InvalidEventError:
    return _error(f"key {key!r} appears twice in one object", path, _EXPECT_UNIQUE)


def _too_large(path: Path) -> InvalidEventError:
    return _error("number is too large for a float", path, _EXPECT_FINITE)


def _constant(name: str, path: Path) -> InvalidEventError:
    return _error(f"{name} is not valid JSON", path, _EXPECT_FINITE)


def _surrogate(text: str, path: Path) -> InvalidEventError:
    found = _SURROGATE.search(text)
    code = f" U+{ord(found.group()):04X}" if found is not None else ""
    return _error(f"string holds a lone surrogate{code} (not valid UTF-8)", path,
                  _EXPECT_UNICODE)


def _too_deep(limit: int) -> InvalidEventError:
    return InvalidEventError(f"nests objects/arrays more than {limit} levels deep",
                             expected=f"at most {limit} levels of nesting")


def kind_of(value: object) -> str:
    """What a decoded value is, in JSON's words ("a JSON number", "JSON null"), so a message
    reads alike whether the value came as Python objects or as JSON text."""
    if value is None:
        return "JSON null"
    if isinstance(value, bool):
        return "a JSON boolean"
    if isinstance(value, int | float):
        return "a JSON number"
    if isinstance(value, str):
        return "a JSON string"
    if isinstance(value, list | tuple):
        return "a JSON array"
    if isinstance(value, dict):
        return "a JSON object"
    return f"a {type(value).__name__}"


# -- decoding ------------------------------------------------------------------------------


# The hooks of the `json` decoder raise a bare ValueError, as the decoder itself does on bad
# text: either way the text breaks a rule, and `_parse` says how.


def _refuse(*_: object) -> NoReturn:
    raise ValueError


def _finite(token: str) -> float:
    value = float(token)
    if value - value != 0.0:  # inf (NaN cannot come from a number token)
        raise ValueError
    return value


def _bounded(token: str) -> int:
    if len(token) >= _INT_LIMIT_DIGITS:
        if len(token.lstrip("-")) > _INT_LIMIT_DIGITS:
            raise ValueError  # also spares int() the digit limit of Python 3.11
        value = int(token)
        if not -INT_LIMIT < value < INT_LIMIT:
            raise ValueError
        return value
    return int(token)


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        raise ValueError
    return value


_DECODER = json.JSONDecoder(parse_float=_finite, parse_int=_bounded, parse_constant=_refuse,
                            object_pairs_hook=_unique)


def _decimal_fraction(token: str) -> Decimal:
    _finite(token)  # the same numbers are valid in both modes
    return Decimal(token)


def _decimal_integer(token: str) -> Decimal:
    _bounded(token)
    return Decimal(token)


_DECIMAL_DECODER = json.JSONDecoder(parse_float=_decimal_fraction, parse_int=_decimal_integer,
                                    parse_constant=_refuse, object_pairs_hook=_unique)


def loads(text: str | bytes, *, max_depth: int | None = None,
          numbers: Literal["exact", "decimal"] = "exact") -> Any:
    """The value of JSON `text`, strictly and exactly (see the module docstring).

    Raises `InvalidEventError` (a `ValueError`) naming the path of the first problem.
    `max_depth` refuses objects/arrays nested deeper than that many levels.

    `numbers="decimal"` gives every number as the `Decimal` of its digits as written
    (`5.000000000000000000001` stays that, `1e3` is `Decimal("1E+3")`): the reading of a value
    that must not pass through a float, such as an integer aggregate's input. Which texts are
    valid does not change with the mode. It is slower (no orjson), for the few values that
    need it.
    """
    if not isinstance(text, str):
        text = _utf8(text)
    if numbers == "decimal":
        return _exact_loads(text, max_depth, decimal=True)
    try:
        value = orjson.loads(text)
        again = orjson.dumps(value)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        # Invalid, or nested beyond orjson's 255 levels: the exact decoders decide.
        return _exact_loads(text, max_depth)
    # What proves orjson's value exact, from C-speed checks of `again` (its orjson encoding);
    # a walk of the value in Python would cost more than the decode.
    #
    # Integers: orjson turns an integer beyond 64 bits into a float of magnitude 2**63 or more,
    # which it writes in exponent form (`9.2e+18`, checked at import): with such a float in
    # `again`, a text with a run of 19 digits takes the exact decoders.
    #
    # Keys: each key of the text is followed by one colon, and every other colon of the text
    # is inside a string; `again` has one colon per key of the value plus those of its strings.
    # A repeated key is kept once (with one of its values), so the text then has more colons
    # than `again`: equal counts prove that no object repeated a key. (A `\\u003a` escape is a
    # colon in a string that the text does not show: such texts take the exact decoders.)
    if (((_EXPONENT_MARK in again or not _EXPONENT_FORM) and _LONG_DIGITS.search(text))
            or text.count(":") != again.count(b":") or "\\u003" in text):
        return _exact_loads(text, max_depth)
    if max_depth is not None and text.count("[") + text.count("{") > max_depth and (
            _depth(value) > max_depth):
        raise _too_deep(max_depth)
    return value


def loads_objects(texts: Sequence[str]) -> list[dict[str, Any]] | None:
    """`[loads(t) for t in texts]` when every text is a JSON object that orjson provably
    decodes exactly, or None when that cannot be proven for all of them (then `loads` of each
    text decides, and words each refusal).

    The proof is `loads`' own, run once for the lot: each text's orjson value (which also
    shows that each text is one value on its own), one orjson encoding of them all, and the
    checks of `loads` over the texts together. They add up: a text never has fewer colons
    than the encoding of its value (a repeated key only removes some), so equal totals mean
    equal counts in each text. A window of payloads decodes at about one orjson parse each,
    where `loads` text by text paid for an encoding per text.
    """
    if not texts:
        return []
    try:
        values = list(map(orjson.loads, texts))
        again = orjson.dumps(values)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, TypeError):
        return None  # also a text that is not a str (orjson takes bytes: `loads` decides)
    if set(map(type, values)) != {dict}:
        return None
    # A newline between texts: a run of digits never spans two of them.
    joined = "\n".join(texts)
    if (((_EXPONENT_MARK in again or not _EXPONENT_FORM) and _LONG_DIGITS.search(joined))
            or joined.count(":") != again.count(b":") or "\\u003" in joined):
        return None
    return values


def _utf8(data: bytes | bytearray | memoryview) -> str:
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEventError(f"not UTF-8 (bad byte at offset {exc.start})",
                                expected=_EXPECT_TEXT) from None


def _exact_loads(text: str, max_depth: int | None, *, decimal: bool = False) -> Any:
    """`loads` where orjson could not prove its answer (or, with `decimal`, cannot give it):
    Python's `json` decoder when its hooks let the text pass (it recurses, and takes lone
    surrogates: both checked), else `_parse`, which decides and words every refusal."""
    try:
        value = (_DECIMAL_DECODER if decimal else _DECODER).decode(text)
    except (ValueError, RecursionError):
        return _parse(text, max_depth=max_depth, decimal=decimal)
    if (_SURROGATE_ESCAPE.search(text) or _SURROGATE.search(text)) and _has_surrogate(value):
        return _parse(text, max_depth=max_depth, decimal=decimal)
    if max_depth is not None and text.count("[") + text.count("{") > max_depth and (
            _depth(value) > max_depth):
        raise _too_deep(max_depth)
    return value


def _probe_exponent_form() -> bool:
    """Whether orjson writes every float of magnitude 2**63 or more with `e+`."""
    probes = (2.0**63, -(2.0**63), 2.0**64, 9.999999999999999e18, 1e19, 1.5e20, 1e300,
              1.7976931348623157e308)
    return all(_EXPONENT_MARK in orjson.dumps(x) for x in probes)


_EXPONENT_MARK = b"e+"
_EXPONENT_FORM = _probe_exponent_form()


def _has_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is str:
            if _SURROGATE.search(item):
                return True
        elif type(item) is dict:
            stack.extend(item.keys())
            stack.extend(item.values())
        elif type(item) is list:
            stack.extend(item)
    return False


def _depth(value: Any) -> int:
    """How many levels of objects/arrays `value` nests (0 for a scalar)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if type(item) is dict:
            children: Any = item.values()
        elif type(item) is list:
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children
                     if type(child) is dict or type(child) is list)
    return deepest


_WHITESPACE = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_PLAIN_STRING = re.compile(r'"([^"\\\x00-\x1f]*)"')
_STRING = re.compile(r'"[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*"')
_LITERALS = (("true", True), ("false", False), ("null", None))
_CONSTANTS = ("NaN", "Infinity", "-Infinity")


def _syntax(text: str, pos: int, what: str, path: Path) -> InvalidEventError:
    line = text.count("\n", 0, pos) + 1
    column = pos - text.rfind("\n", 0, pos)
    return _error(f"not valid JSON: {what} at line {line} column {column} (char {pos})", path,
                  _EXPECT_TEXT)


def _string_problem(text: str, pos: int) -> tuple[int, str]:
    """Where and why the string starting at `pos` does not match `_STRING`."""
    at = pos + 1
    while at < len(text):
        char = text[at]
        if char == '"':
            break
        if char < " ":
            return at, "control character in a string"
        if char == "\\":
            if re.match(r'\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})', text[at:at + 6]) is None:
                return at, "invalid escape"
            at += 6 if text[at + 1] == "u" else 2
            continue
        at += 1
    return pos, "unterminated string"


class _Frame:
    """An object or array being parsed: its value, and the key (or index) now being read."""

    __slots__ = ("key", "value")

    def __init__(self, value: dict[str, Any] | list[Any]) -> None:
        self.value = value
        self.key: str | int = 0


def _parse(text: str, *, max_depth: int | None = None, decimal: bool = False) -> Any:
    """The iterative parser: the value of `text`, or the refusal of its first problem; with
    `decimal`, each number as the `Decimal` of its token."""
    frames: list[_Frame] = []

    def path() -> Path:
        return [frame.key for frame in frames]

    def skip(at: int) -> int:
        found = _WHITESPACE.match(text, at)
        assert found is not None  # `*` matches the empty string too
        return found.end()

    def read_string(at: int, where: Path) -> tuple[str, int]:
        plain = _PLAIN_STRING.match(text, at)
        if plain is not None:
            return plain.group(1), plain.end()
        found = _STRING.match(text, at)
        if found is None:
            problem, what = _string_problem(text, at)
            raise _syntax(text, problem, what, where)
        return json.loads(found.group()), found.end()

    def read_key(at: int) -> int:
        frame = frames[-1]
        assert isinstance(frame.value, dict)
        where = path()[:-1]
        if not text.startswith('"', at):
            raise _syntax(text, at, "expecting a key (a string in double quotes)", where)
        key, at = read_string(at, where)
        if _SURROGATE.search(key):
            raise _surrogate(key, [*where, key])
        if key in frame.value:
            raise _duplicate(key, [*where, key])
        frame.key = key
        at = skip(at)
        if not text.startswith(":", at):
            raise _syntax(text, at, "expecting ':' after a key", [*where, key])
        return skip(at + 1)

    pos = skip(0)
    while True:
        # Read one value at `pos`; objects and arrays push a frame and read their first item.
        char = text[pos] if pos < len(text) else ""
        value: Any
        if char == "{" or char == "[":
            if max_depth is not None and len(frames) >= max_depth:
                raise _too_deep(max_depth)
            frame = _Frame({} if char == "{" else [])
            frames.append(frame)
            pos = skip(pos + 1)
            if text.startswith("}" if char == "{" else "]", pos):
                frames.pop()
                value, pos = frame.value, pos + 1
            elif char == "{":
                pos = read_key(pos)
                continue
            else:
                continue
        elif char == '"':
            value, pos = read_string(pos, path())
            if _SURROGATE.search(value):
                raise _surrogate(value, path())
        else:
            for name in _CONSTANTS:
                if text.startswith(name, pos):
                    raise _constant(name, path())
            number = _NUMBER.match(text, pos)
            if number is not None:
                token = number.group()
                if number.group(1) is None and number.group(2) is None:
                    if len(token.lstrip("-")) > _INT_LIMIT_DIGITS:
                        raise _too_large(path())
                    value = int(token)
                    if not -INT_LIMIT < value < INT_LIMIT:
                        raise _too_large(path())
                else:
                    value = float(token)
                    if math.isinf(value):
                        raise _too_large(path())
                if decimal:
                    value = Decimal(token)
                pos = number.end()
            else:
                for name, literal in _LITERALS:
                    if text.startswith(name, pos):
                        value, pos = literal, pos + len(name)
                        break
                else:
                    raise _syntax(text, pos, "expecting a value", path())
        # Store the value in its container; close every container that ends here.
        while True:
            if not frames:
                pos = skip(pos)
                if pos != len(text):
                    raise _syntax(text, pos, "extra data after the value", [])
                return value
            frame = frames[-1]
            container = frame.value
            if isinstance(container, dict):
                container[str(frame.key)] = value
            else:
                container.append(value)
            pos = skip(pos)
            char = text[pos] if pos < len(text) else ""
            if char == ",":
                pos = skip(pos + 1)
                if isinstance(container, dict):
                    pos = read_key(pos)
                else:
                    frame.key = len(container)
                break
            if char == ("}" if isinstance(container, dict) else "]"):
                frames.pop()
                value, pos = container, pos + 1
                continue
            closing = "'}'" if isinstance(container, dict) else "']'"
            raise _syntax(text, pos, f"expecting ',' or {closing}", path()[:-1])


# -- encoding ------------------------------------------------------------------------------


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                            check_circular=False)

# Where orjson's float text can differ from Python's: a negative exponent (`2.5e-7` against
# `2.5e-07`) or a small number written out (`0.00001` against `1e-05`). A string holding such
# a run only sends its value to the canonical encoder, which is always right.
_ORJSON_FLOAT_DIFFERS = re.compile(rb"[0-9]e-|0\.0000")


def _probe_orjson_canonical() -> bool:
    """Whether orjson writes these values as `dumps` does (else `dumps_decoded` never uses
    it): floats on either side of Python's switches to exponent form, escapes, non-ASCII."""
    probes: list[Any] = [0.0001, 0.00012, 1e15, 1e16, 1.5e16, 123456789012345680.0, 1e22,
                         -0.0, 0.1, 1e300, 2.0**63, 2**64 - 1, -(2**63),
                         {"k\u0000\n\t\"\\/\x7f\u2028é\U0001f600": [True, None, 1.0]}]
    return all(orjson.dumps(value) == _ENCODER.encode(value).encode("utf-8")
               for value in probes)


_ORJSON_CANONICAL = _probe_orjson_canonical()


def dumps(value: Any, *, max_depth: int | None = None, decoded: bool = False) -> str:
    """The canonical compact JSON text of `value` (no spaces, non-ASCII kept as is).

    Refuses, with `InvalidEventError` naming the path: object keys that are not strings,
    integers too large for a float, NaN and infinities, lone surrogates, anything that is not
    a JSON value (a tuple is an array), a value that contains itself, and (with `max_depth`)
    nesting deeper than that.

    `decoded=True` says `value` was returned by `loads` (and not changed since), which leaves
    nothing to refuse but depth: the checks are skipped (`max_depth` is then not enforced).
    """
    if decoded:
        try:
            return _ENCODER.encode(value)
        except RecursionError:
            return _encode(value)  # deeper than the C encoder goes
    depth = _check(value, max_depth)
    text: str | None = None
    if depth < _C_DEPTH:
        try:
            text = _ENCODER.encode(value)
        except RecursionError:
            text = None  # a deep call stack already: the iterative encoder has no limit
    if text is None:
        text = _encode(value)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            _locate_surrogate(value)
            raise  # pragma: no cover - _locate_surrogate finds it
    return text


def dumps_decoded(values: Sequence[Any]) -> list[str]:
    """`[dumps(v, decoded=True) for v in values]`, at about orjson's speed.

    For values `loads` returned, orjson's text equals the canonical one except where a float
    is written: below 1e-4 Python writes `1e-05` where orjson writes `0.00001` or `1e-5`
    (checked at import). A text of orjson's with such a float in it, or a value orjson cannot
    encode (an integer beyond 64 bits, nesting beyond 255 levels), takes `dumps`."""
    texts: list[str] = []
    for value in values:
        try:
            data = orjson.dumps(value)
        except orjson.JSONEncodeError:
            texts.append(dumps(value, decoded=True))
            continue
        if _ORJSON_FLOAT_DIFFERS.search(data) or not _ORJSON_CANONICAL:
            texts.append(dumps(value, decoded=True))
        else:
            texts.append(data.decode("utf-8"))
    return texts


def _scalar_problem(value: Any, path: Path) -> InvalidEventError | None:
    """Why a non-container `value` cannot be stored as JSON, or None when it can."""
    if value is None or isinstance(value, _BOOL_STR):
        return None
    if isinstance(value, int):
        return None if -INT_LIMIT < value < INT_LIMIT else _too_large(path)
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return _constant("NaN" if math.isnan(value) else "Infinity" if value > 0
                         else "-Infinity", path)
    return _error(f"a {type(value).__name__} is not a JSON value", path, _EXPECT_VALUE)


def _check(value: Any, max_depth: int | None) -> int:
    """Raise the first problem of `value` in document order; else return its depth."""
    if not isinstance(value, _CONTAINERS):
        problem = _scalar_problem(value, [])
        if problem is not None:
            raise problem
        return 0
    frames: list[tuple[bool, Iterator[tuple[Any, Any]]]] = [_open(value)]
    keys: Path = []  # keys[i]: where frames[i + 1] sits in frames[i]
    inside = {id(value)}  # ids of the containers on the path: a cycle would never end
    owners: list[int] = [id(value)]
    deepest = 1
    while frames:
        is_dict, items = frames[-1]
        for key, child in items:
            if is_dict and type(key) is not str and not isinstance(key, str):
                raise _bad_key(key, [*keys, key])
            kind = type(child)
            if kind is str or kind is bool or child is None:
                continue
            if kind is int:
                if -INT_LIMIT < child < INT_LIMIT:
                    continue
            elif kind is float:
                if child - child == 0.0:  # finite: inf - inf and NaN - NaN are NaN
                    continue
            elif isinstance(child, _CONTAINERS):
                if id(child) in inside:
                    raise _error("value contains itself (a cycle)", [*keys, key], _EXPECT_VALUE)
                if max_depth is not None and len(frames) >= max_depth:
                    raise _too_deep(max_depth)
                frames.append(_open(child))
                keys.append(key)
                inside.add(id(child))
                owners.append(id(child))
                deepest = max(deepest, len(frames))
                break
            problem = _scalar_problem(child, [*keys, key])
            if problem is not None:
                raise problem
        else:
            frames.pop()
            inside.discard(owners.pop())
            if keys:
                keys.pop()
    return deepest


def _open(value: dict[Any, Any] | list[Any] | tuple[Any, ...]
          ) -> tuple[bool, Iterator[tuple[Any, Any]]]:
    if isinstance(value, dict):
        return True, iter(value.items())
    return False, enumerate(value)


def check_object_key(key: object, seen: Container[object], *, path: Path) -> None:
    """Refuse `key` as the next key of the object at `path` that has the keys `seen`, as
    `loads` and `dumps` word it: for maps of other formats (an Arrow map) that can hold what
    JSON text cannot, a key twice or a key that is not a string."""
    if type(key) is not str and not isinstance(key, str):
        raise _bad_key(key, [*path, key])
    if key in seen:
        raise _duplicate(key, [*path, key])


def _bad_key(key: object, path: Path) -> InvalidEventError:
    return _error(f"key {key!r} ({type(key).__name__}) is not a string", path,
                  _EXPECT_STRING_KEY)


def _locate_surrogate(value: Any) -> None:
    """Raise the refusal of the first lone surrogate in `value` (a key or a string)."""
    frames: list[tuple[bool, Iterator[tuple[Any, Any]]]] = []
    keys: Path = []
    if isinstance(value, str):
        if _SURROGATE.search(value):
            raise _surrogate(value, [])
        return
    frames.append(_open(value))
    while frames:
        is_dict, items = frames[-1]
        for key, child in items:
            if is_dict and _SURROGATE.search(key):
                raise _surrogate(key, [*keys, key])
            if isinstance(child, str):
                if _SURROGATE.search(child):
                    raise _surrogate(child, [*keys, key])
            elif isinstance(child, _CONTAINERS):
                frames.append(_open(child))
                keys.append(key)
                break
        else:
            frames.pop()
            if keys:
                keys.pop()


def _encode(value: Any) -> str:
    """What `_ENCODER.encode(value)` gives, without recursion (for values `_check` passed)."""
    scalar = _ENCODER.encode
    if not isinstance(value, _CONTAINERS):
        return scalar(value)
    out: list[str] = []
    # Each frame: whether it is an object, its items, and whether an item was written.
    frames: list[list[Any]] = []

    def open_container(container: Any) -> None:
        is_dict, items = _open(container)
        out.append("{" if is_dict else "[")
        frames.append([is_dict, items, False])

    open_container(value)
    while frames:
        frame = frames[-1]
        is_dict, items = frame[0], frame[1]
        for key, child in items:
            if frame[2]:
                out.append(",")
            frame[2] = True
            if is_dict:
                out.append(scalar(key))
                out.append(":")
            if isinstance(child, _CONTAINERS):
                open_container(child)
                break
            out.append(scalar(child))
        else:
            out.append("}" if is_dict else "]")
            frames.pop()
    return "".join(out)


# -- comparing -----------------------------------------------------------------------------


def _same_scalar(a: Any, b: Any) -> bool:
    # Exact JSON equality: 1, 1.0 and True are three different values (Python's `==` equates
    # them, and 2**64 with the float it rounds to), and -0.0 is not 0.0.
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return bool(a == b and math.copysign(1.0, a) == math.copysign(1.0, b))
    return bool(a == b)


def first_difference(a: Any, b: Any, *, root: str = "state") -> str | None:
    """The path (`root.key[index]`) of the first place where two JSON values differ, or None
    when they are equal. Exact (`1 != 1.0`, `2**64 != float(2**64)`), object key order
    ignored, and iterative: it compares values nested to any depth."""
    pending: list[tuple[Any, Any, str]] = [(a, b, root)]
    while pending:
        x, y, where = pending.pop()
        if isinstance(x, dict) and isinstance(y, dict):
            if x.keys() != y.keys():
                missing = sorted(map(str, x.keys() ^ y.keys()))
                return f"{where}.{missing[0]}"
            # Reversed onto the stack, so the first key (in sorted order) is compared first.
            pending.extend((x[k], y[k], f"{where}.{k}") for k in sorted(x, reverse=True))
        elif isinstance(x, _ARRAYS) and isinstance(y, _ARRAYS):
            if len(x) != len(y):
                return where
            pending.extend((x[i], y[i], f"{where}[{i}]") for i in reversed(range(len(x))))
        elif isinstance(x, _CONTAINERS) or isinstance(y, _CONTAINERS) or (
                not _same_scalar(x, y)):
            return where
    return None


def equal(a: Any, b: Any) -> bool:
    """Whether two JSON values are exactly equal (see `first_difference`); any depth."""
    pending: list[tuple[Any, Any]] = [(a, b)]
    while pending:
        x, y = pending.pop()
        if isinstance(x, dict):
            if not isinstance(y, dict) or x.keys() != y.keys():
                return False
            pending.extend((value, y[key]) for key, value in x.items())
        elif isinstance(x, _ARRAYS):
            if not isinstance(y, _ARRAYS) or len(x) != len(y):
                return False
            pending.extend(zip(x, y, strict=True))
        elif isinstance(y, _CONTAINERS) or not _same_scalar(x, y):
            return False
    return True
