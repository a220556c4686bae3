"""The JSON codec: strict, exact, any depth; compared against Python's `json` module.

Python's `json` is the reference wherever it is exact: it reads integers as Python ints, and
with hooks it refuses what the codec refuses. The codec must agree with it on every text it
can read (value and type: `1`, `1.0` and `True` are different), refuse everything hostile
with the path of the problem, and read and write values nested far beyond what `json` and
orjson can.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventlake.errors import InvalidEventError
from eventlake.model import jsoncodec
from eventlake.model.jsoncodec import INT_LIMIT, dumps, equal, first_difference, loads

BOUNDARY_INTS = [0, -1, 2**53, 2**53 + 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1,
                 2**64, -(2**64), 2**64 + 1, 10**19, -(10**19), 10**300, -(10**300),
                 INT_LIMIT - 1, -(INT_LIMIT - 1)]
ints = st.one_of(st.integers(), st.integers(min_value=-(INT_LIMIT - 1), max_value=INT_LIMIT - 1),
                 st.sampled_from(BOUNDARY_INTS))
floats = st.floats(allow_nan=False, allow_infinity=False)
# Text without lone surrogates (category Cs): those are refused, see below.
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
keys = st.one_of(texts, st.sampled_from(["a", ":", "a:b", "\\u003a", "\"", "."]))
scalars = st.one_of(st.none(), st.booleans(), ints, floats, texts)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=5)), max_leaves=25)


def exact(a: Any, b: Any) -> bool:
    """Type-strict equality by a second route: Python's `==` plus equal type structure."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(exact(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(exact(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


def escaped(value: Any) -> str:
    """JSON text of `value` with every character of every string as a `\\uXXXX` escape (a
    colon too: the codec must not be fooled by colons it cannot see)."""
    if isinstance(value, str):
        units = value.encode("utf-16-be")
        return '"' + "".join(f"\\u{units[i]:02x}{units[i + 1]:02x}"
                             for i in range(0, len(units), 2)) + '"'
    if isinstance(value, dict):
        return "{" + ",".join(f"{escaped(k)}:{escaped(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(escaped(v) for v in value) + "]"
    return json.dumps(value)


def formats(value: Any) -> st.SearchStrategy[str]:
    return st.sampled_from([
        json.dumps(value),
        json.dumps(value, ensure_ascii=False),
        json.dumps(value, ensure_ascii=False, separators=(",", ":")),
        json.dumps(value, indent=2),
        json.dumps(value, indent="\t", separators=(" , ", " : ")),
        escaped(value),
    ])


# -- agreement with Python's json -------------------------------------------------------


@given(st.data())
def test_loads_equals_python_json_on_every_format(data: st.DataObject) -> None:
    value = data.draw(values)
    text = data.draw(formats(value))
    got = loads(text)
    assert exact(got, json.loads(text))
    assert exact(got, value)
    assert equal(got, value) and first_difference(got, value) is None


@given(values)
def test_dumps_is_pythons_canonical_compact_json(value: Any) -> None:
    text = dumps(value)
    assert text == json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    assert exact(loads(text), value)


small_floats = st.builds(lambda mantissa, exponent: mantissa * 10.0**exponent,
                         st.floats(-10, 10, allow_nan=False), st.integers(-40, 25))


@given(st.lists(st.one_of(values, small_floats, st.lists(small_floats, max_size=3)),
                max_size=6))
def test_dumps_decoded_is_the_canonical_text_of_each_value(batch: list[Any]) -> None:
    # Floats below 1e-4 and integers past 64 bits are where orjson's text is not the
    # canonical one: the lot must still come out as `dumps` writes each value.
    decoded = [loads(dumps(value)) for value in batch]
    assert jsoncodec.dumps_decoded(decoded) == [dumps(value) for value in decoded]


def test_orjson_agrees_with_the_canonical_encoder_where_dumps_decoded_uses_it() -> None:
    assert jsoncodec._ORJSON_CANONICAL
    # The floats the pattern lets through are written alike by both encoders.
    for exponent in range(-330, 309):
        for mantissa in (1.0, 2.5, 9.999999999999999, 1.2345678901234567):
            number = mantissa * 10.0**exponent
            if math.isfinite(number):
                data = orjson.dumps(number)
                if not jsoncodec._ORJSON_FLOAT_DIFFERS.search(data):
                    assert data.decode() == dumps(number), number


@given(st.lists(st.sampled_from(BOUNDARY_INTS), min_size=1, max_size=8))
def test_integers_beyond_64_bits_are_exact(numbers: list[int]) -> None:
    # orjson alone returns floats for these; every one must come back an int, equal.
    for text in (json.dumps(numbers), json.dumps({"n": numbers}), json.dumps(numbers[0])):
        got = loads(text)
        assert exact(got, json.loads(text))


@given(st.floats(min_value=2.0**63, allow_infinity=False)
       | st.floats(max_value=-(2.0**63), allow_infinity=False))
def test_orjson_writes_floats_past_64_bits_in_exponent_form(number: float) -> None:
    # `loads` relies on it to see that orjson turned a long integer into a float.
    assert jsoncodec._EXPONENT_FORM
    assert b"e+" in orjson.dumps(number)


def test_integer_limit_is_where_floats_end() -> None:
    assert math.isfinite(float(INT_LIMIT - 1))
    with pytest.raises(OverflowError):
        float(INT_LIMIT)
    for number in (INT_LIMIT - 1, -(INT_LIMIT - 1)):
        assert loads(str(number)) == number and dumps(number) == str(number)
    for number in (INT_LIMIT, -INT_LIMIT, 10**400):
        with pytest.raises(InvalidEventError, match="too large for a float"):
            loads(str(number))
        with pytest.raises(InvalidEventError, match="too large for a float"):
            dumps(number)


# -- depth -------------------------------------------------------------------------------


def nest(depth: int, leaf: Any, shape: list[str]) -> tuple[Any, str]:
    """A value `depth` levels deep (objects and arrays as `shape` cycles), and its text."""
    value, text = leaf, dumps(leaf)
    for level in range(depth):
        if shape[level % len(shape)] == "object":
            value, text = {"k": value, "n": level}, f'{{"k":{text},"n":{level}}}'
        else:
            value, text = [level, value], f"[{level},{text}]"
    return value, text


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=250, max_value=6000), scalars,
       st.lists(st.sampled_from(["object", "array"]), min_size=1, max_size=3))
def test_deep_values_without_recursion_limits(depth: int, leaf: Any, shape: list[str]) -> None:
    value, text = nest(depth, leaf, shape)
    assert dumps(value) == text
    got = loads(text)
    assert equal(got, value)
    assert first_difference(got, value) is None
    assert loads(text, max_depth=depth) is not None
    with pytest.raises(InvalidEventError, match=f"more than {depth - 1} levels"):
        loads(text, max_depth=depth - 1)
    with pytest.raises(InvalidEventError, match=f"more than {depth - 1} levels"):
        dumps(value, max_depth=depth - 1)


def test_deep_difference_is_found() -> None:
    a, _ = nest(5000, 1, ["object"])
    b, _ = nest(5000, 1.0, ["object"])
    assert not equal(a, b)
    where = first_difference(a, b)
    assert where is not None and where.count(".k") == 5000


# -- hostile input, refused with its path ------------------------------------------------

# Each: the poison as JSON text, the same poison as a Python value (None: it has no Python
# form, such as a float token too large), and the reason both must give.
POISONS = [
    ("NaN", math.nan, "NaN is not valid JSON"),
    ("Infinity", math.inf, "Infinity is not valid JSON"),
    ("-Infinity", -math.inf, "-Infinity is not valid JSON"),
    ("1" + "0" * 400, 10**400, "too large for a float"),
    (str(INT_LIMIT), INT_LIMIT, "too large for a float"),
    ("-" + str(INT_LIMIT), -INT_LIMIT, "too large for a float"),
    ("1e400", None, "too large for a float"),
    ("-2.5E309", None, "too large for a float"),
    ('"\\ud800"', "\ud800", "lone surrogate U+D800"),
    ('"x\\udfff"', "x\udfff", "lone surrogate U+DFFF"),
    ('"\\ude00\\ud83d"', "\ude00\ud83d", "lone surrogate U+DE00"),
    ('{"k":1,"k":2}', None, "key 'k' appears twice"),
    ('{"k":1,"\\u006b":2}', None, "key 'k' appears twice"),
]

steps = st.lists(st.one_of(
    st.tuples(st.just("key"), keys, st.dictionaries(keys, scalars, max_size=2)),
    st.tuples(st.just("index"), st.integers(0, 3), st.none())), max_size=6)


def place(poison_text: str, poison: Any, path: list[tuple[str, Any, Any]]
          ) -> tuple[str, Any, list[str | int]]:
    """The poison wrapped in objects/arrays along `path` (with valid siblings *after* it in
    objects and before it in arrays), as text and as a Python value, and its field path."""
    text, value, where = poison_text, poison, []
    for kind, key, siblings in reversed(path):
        if kind == "key":
            others = {k: v for k, v in siblings.items() if k != key}
            text = "{" + ",".join([f"{json.dumps(key)}:{text}"] + [
                f"{json.dumps(k)}:{json.dumps(v)}" for k, v in others.items()]) + "}"
            value = {key: value, **others}
        else:
            text = "[" + ",".join(["0"] * key + [text]) + "]"
            value = [0] * key + [value]
        where.insert(0, key)
    return text, value, where


@given(st.sampled_from(POISONS), steps)
def test_hostile_text_and_values_are_refused_at_their_path(
        case: tuple[str, Any, str], path: list[tuple[str, Any, Any]]) -> None:
    poison_text, poison, reason = case
    text, value, where = place(poison_text, poison, path)
    if poison_text.startswith("{"):  # the repeated key is one level further in
        where = [*where, "k"]
    field = ".".join(map(str, where)) if where else None
    field = None if field is None else field.encode("utf-8", "backslashreplace").decode()
    with pytest.raises(InvalidEventError) as from_text:
        loads(text)
    assert reason in from_text.value.reason
    assert from_text.value.field == field
    if poison is not None:
        with pytest.raises(InvalidEventError) as from_value:
            dumps(value)
        assert from_value.value.reason == from_text.value.reason
        assert from_value.value.field == from_text.value.field


@pytest.mark.parametrize(("value", "field"), [
    ({1: "x", "1": "y"}, "1"),
    ({True: 1, "true": 2}, "True"),
    ({None: 1, "null": 2}, "None"),
    ({"a": {"b": [{2.5: 0}]}}, "a.b.0.2.5"),
    ({"a": {1, 2}}, "a"),
    ({"a": b"bytes"}, "a"),
    ({"\ud800": 1}, "\\ud800"),
])
def test_dumps_refuses_what_json_text_cannot_hold(value: Any, field: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        dumps(value)
    assert caught.value.field == field


def test_a_value_that_contains_itself_is_refused() -> None:
    cycle: list[Any] = []
    cycle.append({"again": cycle})
    with pytest.raises(InvalidEventError, match="contains itself"):
        dumps(cycle)


@pytest.mark.parametrize("text", [
    "", " ", "[1,]", '{"a":1,}', "{'a':1}", '{"a" 1}', "[1 2]", "01", "1.", ".5", "+1", "0x10",
    '"\x01"', '"\\x"', '"abc', "[", "{", "nan", "inf", "\ufeff{}", '{"a":1}x', "true false",
    '"\\ud800"', '{"\\udc00":1}', "\"\ud800\"", "[" * 3000, "[" * 3000 + "]" * 2999,
])
def test_malformed_texts_are_refused_like_python_json_refuses_them(text: str) -> None:
    with pytest.raises(InvalidEventError):
        loads(text)


# -- the layers agree with the reference on arbitrary texts ------------------------------


class _Strict(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({k for k, _ in pairs}) != len(pairs):
        raise _Strict
    return dict(pairs)


def _finite(token: str) -> float:
    number = float(token)
    if math.isinf(number):
        raise _Strict
    return number


def _bounded(token: str) -> int:
    number = int(token)
    if abs(number) >= INT_LIMIT:
        raise _Strict
    return number


def reference(text: str) -> tuple[bool, Any]:
    """Python's `json` with the codec's rules as hooks: (accepted, value)."""
    try:
        value = json.loads(text, object_pairs_hook=_pairs, parse_float=_finite,
                           parse_int=_bounded, parse_constant=lambda _: (_ for _ in ()).throw(
                               _Strict()))
        # Lone surrogates fail UTF-8 (the texts here are shallow enough for `json`).
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        return False, None
    return True, value


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_texts_get_the_verdict_of_the_reference(data: st.DataObject) -> None:
    text = data.draw(formats(data.draw(values)))
    for _ in range(data.draw(st.integers(0, 3))):
        at = data.draw(st.integers(0, len(text)))
        edit = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = data.draw(st.sampled_from([*'{}[]:,"\\ -0123456789.eE+tfnul', "NaN", "Infinity",
                                           "1e999", "\\ud800", "\\u003a", "\x00", "\u2028"]))
        if edit == "insert":
            text = text[:at] + piece + text[at:]
        elif edit == "delete":
            text = text[:at] + text[at + 1:]
        else:
            text = text[:at] + piece + text[at + 1:]
    accepted, value = reference(text)
    if accepted:
        assert exact(loads(text), value)
        assert exact(jsoncodec._parse(text), value)
    else:
        with pytest.raises(InvalidEventError):
            loads(text)
        with pytest.raises(InvalidEventError):
            jsoncodec._parse(text)


@given(st.data())
def test_repeated_keys_are_refused_however_they_are_spelled(data: st.DataObject) -> None:
    obj = data.draw(st.dictionaries(keys, values, min_size=1, max_size=4))
    key = data.draw(st.sampled_from(sorted(obj)))
    again = data.draw(values)
    pairs = [*obj.items(), (key, again)]
    spelled = data.draw(st.sampled_from(["plain", "escaped"]))
    encode = json.dumps if spelled == "plain" else escaped
    text = "{" + ",".join(f"{encode(k)}:{json.dumps(v)}" for k, v in pairs) + "}"
    with pytest.raises(InvalidEventError, match="appears twice") as caught:
        loads(text)
    assert caught.value.field == key.encode("utf-8", "backslashreplace").decode()


# -- equality ------------------------------------------------------------------------------


@given(values, values)
def test_equal_is_exact_equality(a: Any, b: Any) -> None:
    assert equal(a, b) == exact(a, b)
    assert (first_difference(a, b) is None) == exact(a, b)
    assert equal(a, a) and first_difference(a, loads(dumps(a))) is None


@pytest.mark.parametrize(("a", "b"), [
    (1, 1.0), (1, True), (0, False), (2**64, float(2**64)), (0.0, -0.0), ({"a": 1}, {"a": 1.0}),
    ([1, [2]], [1, [2.0]]), ({}, []), (None, 0),
])
def test_equal_tells_apart_what_python_equates(a: Any, b: Any) -> None:
    assert not equal(a, b)
    assert first_difference(a, b) is not None


# -- numbers="decimal" ---------------------------------------------------------------------


def same_decimal(a: Any, b: Any) -> bool:
    """Type-strict equality where numbers are Decimals compared digit for digit (`as_tuple`:
    5.0 and 5 differ, as a float that rounded would)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, Decimal):
        return a.as_tuple() == b.as_tuple()
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_decimal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_decimal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def as_decimals(value: Any) -> Any:
    """`value` with each number as the Decimal of the token `json.dumps` writes for it."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return Decimal(json.dumps(value))
    if isinstance(value, dict):
        return {k: as_decimals(v) for k, v in value.items()}
    return [as_decimals(v) for v in value]


number_tokens = st.builds(
    lambda sign, whole, fraction, exponent: f"{sign}{whole}{fraction}{exponent}",
    st.sampled_from(["", "-"]),
    st.one_of(st.just("0"), st.integers(min_value=1, max_value=10**60).map(str)),
    st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=40).map(lambda d: "." + d)),
    st.one_of(st.just(""), st.integers(min_value=-300, max_value=250).map(lambda e: f"e{e}")),
)


@given(number_tokens, st.sampled_from([1, 3, 500]))
def test_decimal_numbers_keep_every_digit(token: str, depth: int) -> None:
    # Depth 500 takes the iterative parser (past the C decoder's recursion), 1 and 3 the C one.
    text = '{"n":' + token + "}"
    for _ in range(depth - 1):
        text = '{"a":[' + text + "]}"
    value = loads(text, numbers="decimal")
    for _ in range(depth - 1):
        value = value["a"][0]
    assert same_decimal(value["n"], Decimal(token))


@pytest.mark.parametrize("token", ["5.000000000000000000001", "18446744073709551617",
                                   "123456789012345678901234567890.5", "2.5e0", "1e3", "-0.0"])
def test_decimal_numbers_do_not_round(token: str) -> None:
    value = loads('{"n": ' + token + "}", numbers="decimal")["n"]
    assert value.as_tuple() == Decimal(token).as_tuple()
    # The exact mode reads fractions as floats: 5.000000000000000000001 becomes 5.0 there.
    plain = loads('{"n": ' + token + "}")["n"]
    assert isinstance(plain, int | float)


@given(values)
def test_decimal_mode_reads_the_same_values(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False)
    assert same_decimal(loads(text, numbers="decimal"), as_decimals(loads(text)))


@pytest.mark.parametrize("text", ['{"a": 1, "a": 2}', '{"a": NaN}', '{"a": [1e400]}',
                                  '{"a": ' + str(10**400) + "}", '{"a": "\\ud800"}', "{",
                                  '{"a": 1} x', '[' * 30 + ']' * 30])
def test_decimal_mode_refuses_what_the_exact_mode_refuses(text: str) -> None:
    outcomes = []
    for numbers in ("exact", "decimal"):
        try:
            loads(text, numbers=numbers, max_depth=20)  # type: ignore[arg-type]
            outcomes.append(None)
        except InvalidEventError as exc:
            outcomes.append((exc.reason, exc.field, exc.expected))
    assert outcomes[0] is not None and outcomes[0] == outcomes[1]


# -- many texts at once ---------------------------------------------------------------------


def _one_by_one(texts: list[str]) -> list[Any] | None:
    """What `loads` makes of each text, or None when it refuses one or one is no object."""
    try:
        found = [loads(t) for t in texts]
    except InvalidEventError:
        return None
    return found if all(type(v) is dict for v in found) else None


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_loads_objects_is_loads_of_each_text_or_declines(data: st.DataObject) -> None:
    # Objects in every format, some mutated (repeated keys, big integers, broken text, a
    # scalar or array instead of an object): the batch gives exactly `loads` of each text,
    # or None, and None whenever a text would be refused or is not an object.
    texts = []
    for _ in range(data.draw(st.integers(0, 6))):
        kind = data.draw(st.sampled_from(["object", "repeated", "big", "mutated", "other"]))
        if kind == "object":
            texts.append(data.draw(formats(data.draw(st.dictionaries(keys, values,
                                                                       max_size=4)))))
        elif kind == "repeated":
            texts.append('{"k":1,"a":{"x":2},"k":' + json.dumps(data.draw(values)) + "}")
        elif kind == "big":
            texts.append('{"n":' + str(data.draw(st.sampled_from(BOUNDARY_INTS))) + "}")
        elif kind == "mutated":
            text = json.dumps(data.draw(st.dictionaries(keys, values, max_size=3)))
            at = data.draw(st.integers(0, len(text)))
            piece = data.draw(st.sampled_from([*'{}[]:,"\\0e', "\\ud800", "\\u003a", "1e999"]))
            texts.append(text[:at] + piece + text[at:])
        else:
            texts.append(json.dumps(data.draw(values)))
    got = jsoncodec.loads_objects(texts)
    expected = _one_by_one(texts)
    if got is not None:
        assert expected is not None
        assert len(got) == len(texts) and all(exact(a, b) for a, b in zip(got, expected,
                                                                          strict=True))


def test_loads_objects_declines_texts_that_only_joined_look_like_objects() -> None:
    # Neither is one JSON value, but joined into an array they would read as two objects.
    assert jsoncodec.loads_objects(['{"a":"', '"},{"b":1}']) is None
    assert jsoncodec.loads_objects(['{"a":1}', '{"a":1,"a":2}']) is None  # repeated key
    assert jsoncodec.loads_objects(['{"n":123456789012345678901234567890}']) is None  # > 64 bits
    assert jsoncodec.loads_objects(['{"a":1}', '[1]']) is None
    assert jsoncodec.loads_objects(['{"a":"x:y"}', '{"b":[1.5,null]}']) == [
        {"a": "x:y"}, {"b": [1.5, None]}]
    assert jsoncodec.loads_objects([]) == []
