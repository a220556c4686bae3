"""The columnar payload screen (eventlake/_payloadscan.py).

The screen may flag a good payload (Python then decides it), never pass a bad one: these tests
compare the byte scan with Python's own parser on generated texts, and the whole screen with
the record checks it stands in for.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventlake.errors import InvalidEventError
from eventlake.model.jsoncodec import INT_LIMIT
from eventlake.validate import _payloadscan
from eventlake.validate._payloadscan import payload_suspects, scan_objects
from eventlake.validate.events import DEFAULT_LIMITS, normalize_batch

NAMES = ("target", "value", "options")


@pytest.fixture(autouse=True, scope="module")
def screen_every_batch():
    """Screen even the one-row columns these tests build (by default small ones skip it)."""
    saved = _payloadscan.SCREEN_FROM_ROWS
    _payloadscan.SCREEN_FROM_ROWS = 0
    yield
    _payloadscan.SCREEN_FROM_ROWS = saved

# Keys chosen to collide: equal bytes, equal first or last 8 bytes, escapes of one another,
# colons and commas that look like JSON structure, the names the scan reports.
keys = st.sampled_from(["a", "b", "", ":", ",", '"', "\\", "é", "a b", "target", "value",
                        "options", "abcdefgh", "abcdefghi", "abcdefgi", "0123456789abcdef",
                        "0123456789abcdef-1", "0123456789abcdef-2", "x" * 30, "x" * 31])
scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
           | st.floats(allow_nan=False, allow_infinity=False)
           | st.sampled_from(["", "s", ":x", "{y}", "a:b", '"q', "\\", "é", "\n", " "]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.lists(st.tuples(keys, inner), max_size=3).map(dict), max_leaves=6)
separators = st.sampled_from([(",", ":"), (", ", ": "), (" , ", " : "), (",", ":" + " " * 9),
                              ("," + " " * 9, ":"), ("\n", "\t:\r ")])


@st.composite
def object_texts(draw: st.DrawFn) -> tuple[str, list[tuple[str, object]]]:
    """The JSON text of an object that may repeat keys, written in varied styles."""
    pairs = draw(st.lists(st.tuples(keys, values), max_size=5))
    item, colon = draw(separators)
    ascii_only = draw(st.booleans())
    body = item.join(json.dumps(k, ensure_ascii=ascii_only) + colon
                     + json.dumps(v, ensure_ascii=ascii_only) for k, v in pairs)
    text = draw(st.sampled_from(["{", "{ ", " {", "{" + " " * 9])) + body + draw(
        st.sampled_from(["}", " }", "}\n"]))
    return text, pairs


noise = st.sampled_from(['{"a":1', '"a":1}', "[]", "", "{", '{"a" 1}', '{"a":"b"}}',
                         '{"x":1}{"y":2}', "null", '{"a":1,"a":2'])


def decoded_pairs(text: str) -> list[tuple[str, object]] | None:
    try:
        parsed = json.loads(text, object_pairs_hook=lambda pairs: pairs)
    except ValueError:
        return None
    return parsed if isinstance(parsed, list) and text.lstrip()[:1] == "{" else None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(object_texts() | noise.map(lambda t: (t, [])), min_size=1, max_size=12),
       split=st.integers(0, 12))
def test_scan_never_vouches_for_a_repeated_key_or_a_wrong_value(rows, split):
    texts = [text for text, _ in rows]
    # Chunk boundaries, slices and large offsets must not matter.
    column = pa.chunked_array([pa.array(texts[:split], pa.string()),
                               pa.array(texts[split:], pa.large_string()).cast(pa.string())])
    scan = scan_objects(column, names=NAMES)
    assert len(scan.unsure) == len(texts)
    for row, text in enumerate(texts):
        pairs = decoded_pairs(text)
        if pairs is None or scan.unsure[row] or scan.escaped[row]:
            continue
        names = [key for key, _ in pairs]
        if len(set(names)) != len(names):
            assert scan.repeated[row], text
            continue
        decoded = dict(pairs)
        for name in NAMES:
            start = scan.values[name]
            if name not in decoded:
                assert start.first[row] == 0, (name, text)
                continue
            value = decoded[name]
            assert start.first[row] == json.dumps(value).encode()[0], (name, text)
            if isinstance(value, str):
                assert (start.second[row] == ord('"')) == (value == ""), (name, text)


def test_scan_answers_the_plain_cases():
    texts = ['{"a":1,"a":2}', '{"a":1,"b":2}', '{"a" : 1, "a":2}', '{"x":"a","y":"a"}',
             '{"k":{"a":1}}', '{"k":"\\u0061"}', '{"target":"","value":[1]}',
             '{"target":"t","value":null}', "[1]", "", '{"a":"{"}', '{"a":"x:{"}',
             '{"a":[ {"b":1}]}']
    scan = scan_objects(pa.array(texts), names=NAMES)
    assert scan.repeated[:4].tolist() == [True, False, True, False]
    # Nested objects, and braces in strings that might be one, leave the row unsure.
    assert scan.unsure.tolist() == [False, False, False, False, True, False, False, False,
                                    True, True, False, True, True]
    assert scan.escaped.tolist() == [i == 5 for i in range(len(texts))]
    target, value = scan.values["target"], scan.values["value"]
    assert (target.first[6], target.second[6], value.first[6]) == (ord('"'), ord('"'), ord("["))
    assert (target.second[7], value.first[7]) == (ord("t"), ord("n"))
    assert scan.values["options"].first[6] == 0


def test_scan_of_an_empty_column_and_of_sliced_arrays():
    assert len(scan_objects(pa.chunked_array([], pa.string())).unsure) == 0
    array = pa.array(['{"a":1}', '{"b":1,"b":2}', '{"c":3}'])
    assert scan_objects(array.slice(1)).repeated.tolist() == [True, False]


def test_key_names_the_scan_reads_are_short_plain_strings():
    with pytest.raises(ValueError):
        scan_objects(pa.array(["{}"]), names=["longer_than_8"])


def record_outcome(kind: str, text: str) -> str | None:
    try:
        normalize_batch([{"type": kind, "payload": text, "partition": "p"}])
    except InvalidEventError as exc:
        return exc.field
    return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), kind=st.sampled_from(["set", "unset", "treePush", "deposit"]))
def test_screen_passes_only_payloads_the_record_checks_accept(data, kind):
    text = data.draw(object_texts().map(lambda pair: pair[0]) | noise | st.sampled_from([
        '{"target":"a","value":1}', '{"target":"a","value":NaN}', '{"target":"a","value":1,}',
        '{"target":"a","value":1e999}', '{"target":"\\ud800","value":1}',
        '{"target":5}', '{"target":"a","value":[1],"options":{"replace":true}}',
        '{"t\\u0061rget":"a","value":1}', '{"a":1,"\\u0061":2}', '{"target":"a"}']))
    suspects = payload_suspects(pa.chunked_array([[text]]), pa.chunked_array([[kind]]),
                                max_depth=DEFAULT_LIMITS.max_payload_depth)
    if not suspects[0]:
        assert record_outcome(kind, text) is None, text


def test_screen_flags_deep_nesting_and_long_digit_runs():
    deep = '{"a":' + "[" * 250 + "]" * 250 + "}"
    digits = '{"n":' + "1" * 400 + "}"
    plain = '{"a":1}'
    suspects = payload_suspects(pa.chunked_array([[deep, digits, plain]]),
                                pa.chunked_array([["x", "x", "x"]]), max_depth=200)
    assert suspects.tolist() == [True, True, False]


def test_screen_of_many_rows_flags_exactly_the_bad_ones():
    good = [json.dumps({"amount": i, "currency": "EUR", "n": i}) for i in range(5000)]
    kinds = ["deposit"] * 5000
    bad_at = {17: '{"amount":1,"amount":2}', 2500: '{"target":"","value":1}',
              4999: '{"x":1,"y":2,"x":3}'}
    for index, text in bad_at.items():
        good[index] = text
    kinds[2500] = "set"
    suspects = payload_suspects(pa.chunked_array([good]), pa.chunked_array([kinds]),
                                max_depth=200)
    assert np.flatnonzero(suspects).tolist() == sorted(bad_at)


def test_small_columns_are_left_to_python_and_large_ones_screened(monkeypatch):
    monkeypatch.setattr(_payloadscan, "SCREEN_FROM_ROWS", 256)
    texts = pa.chunked_array([['{"a":1}'] * 255])
    kinds = pa.chunked_array([["t"] * 255])
    assert payload_suspects(texts, kinds, max_depth=200).all()
    more = pa.chunked_array([['{"a":1}'] * 256])
    assert not payload_suspects(more, pa.chunked_array([["t"] * 256]), max_depth=200).any()


HOSTILE = ['{"a": NaN}', '{"a": -Infinity}', '{"a": 1e999}', '{"a": "\\ud800"}',
           '{"a": [1, 2,]}', '{"a": 1,}', '{"n": ' + "1" * 5000 + "}",
           '{"a": ' + "[" * 201 + "]" * 201 + "}", '{"a": {"b": 1, "b": 2}}',
           '{"a": [{"c": 1, "c": 1}]}', '{"a": 1, "\\u0061": 2}', "[]", '"text"', "{",
           " ", '{"a": 1} {"b": 2}', '{"a": "x\ny"}']


@pytest.mark.parametrize("text", HOSTILE)
def test_a_hostile_payload_among_many_good_ones_is_named(text):
    # A large column (no shortcut to Python): the screen itself must flag the one bad row.
    rows = 600
    records = [{"type": "deposit", "payload": {"n": i}, "partition": "p"} for i in range(rows)]
    columns = {"type": ["deposit"] * rows, "partition": ["p"] * rows,
               "payload": [json.dumps(r["payload"]) for r in records]}
    columns["payload"][rows - 7] = text
    with pytest.raises(InvalidEventError) as info:
        normalize_batch(pa.table(columns))
    # The field the record path names (the path inside the payload), for the same text.
    field = record_outcome("deposit", text)
    assert field is not None and field.split(".")[0] == "payload"
    assert (info.value.index, info.value.field) == (rows - 7, field), str(info.value)


@pytest.mark.parametrize("number", [INT_LIMIT, -INT_LIMIT, 10**400, INT_LIMIT * 10])
def test_screen_sends_integers_beyond_the_float_range_to_the_exact_check(number):
    # The screen cannot prove a long integer fits a float; the codec refuses the one that
    # does not, and the screen must not wave it through.
    rows = 600
    texts = [json.dumps({"n": INT_LIMIT - 1 - i}) for i in range(rows)]
    texts[rows - 3] = json.dumps({"n": number})
    kinds = pa.chunked_array([["deposit"] * rows])
    suspects = payload_suspects(pa.chunked_array([texts]), kinds, max_depth=200)
    assert suspects[rows - 3]
    with pytest.raises(InvalidEventError, match="too large for a float") as info:
        normalize_batch(pa.table({"type": ["deposit"] * rows, "partition": ["p"] * rows,
                                  "payload": texts}))
    assert (info.value.index, info.value.field) == (rows - 3, "payload.n")
