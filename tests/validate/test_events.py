"""Validation and normalization of event batches (eventlake/events.py).

Every kind of bad input must raise `InvalidEventError` naming the record index, the field and
the bad value, for dict input and for the columnar (pyarrow / polars) path alike, and nothing
may be written to the lake.
"""

from __future__ import annotations

import json
import math
import os
import re
from datetime import UTC, datetime, timedelta, timezone

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventlake as el
from eventlake.validate import _payloadscan
from eventlake.validate.events import DEFAULT_LIMITS, Limits, check_partition, normalize_batch

N_VALID = 6  # records in each batch; the bad one sits at BAD_AT
BAD_AT = 3


# -- helpers -------------------------------------------------------------------------------


def valid_record(i: int) -> dict:
    return {"type": "deposit", "payload": {"n": i, "amount": 10 * i}, "partition": f"acct-{i % 3}"}


def batch_with(bad: dict, *, at: int = BAD_AT, n: int = N_VALID) -> list[dict]:
    records = [valid_record(i) for i in range(n)]
    records.insert(at, bad)
    return records


def as_arrow(records: list[dict]) -> pa.Table:
    columns: dict[str, list] = {}
    keys: list[str] = []
    for record in records:
        for key in record:
            if key not in keys:
                keys.append(key)
    for key in keys:
        values = [r.get(key) for r in records]
        if key == "payload":
            values = [v if isinstance(v, str) or v is None else json.dumps(v) for v in values]
        columns[key] = values
    return pa.table(columns)


def as_polars(records: list[dict]) -> pl.DataFrame:
    frame = pl.from_arrow(as_arrow(records))
    assert isinstance(frame, pl.DataFrame)
    return frame


def lake_fingerprint(lake) -> tuple[int, int, int, int]:
    """What must not move when a batch is refused: seq, Delta version, rows, data files."""
    snap = lake.log.snapshot()
    files = 0
    for _, _, names in os.walk(os.path.join(lake.root, "events")):
        files += sum(1 for name in names if name.endswith(".parquet"))
    rows = sum(snap.add_actions().column("num_records").to_pylist())
    return lake.log.last_seq(snap), snap.version, rows, files


@pytest.fixture(autouse=True, scope="module")
def screen_every_batch():
    """Batches below `SCREEN_FROM_ROWS` rows skip the columnar screen (Python checks each
    payload); the batches here are small, so make each go through the screen under test."""
    saved = _payloadscan.SCREEN_FROM_ROWS
    _payloadscan.SCREEN_FROM_ROWS = 0
    yield
    _payloadscan.SCREEN_FROM_ROWS = saved


@pytest.fixture(scope="module")
def seeded_lake(tmp_path_factory):
    lake = el.Lake.open(tmp_path_factory.mktemp("events") / "lake")
    lake.append([valid_record(i) for i in range(5)])
    return lake


def assert_refused(lake, events, *, index, field, value=None, check_value=True):
    before = lake_fingerprint(lake)
    with pytest.raises(el.InvalidEventError) as info:
        lake.append(events)
    err = info.value
    assert isinstance(err, ValueError)  # InvalidEventError is also a ValueError
    assert err.index == index, str(err)
    assert err.field == field, str(err)
    message = str(err)
    if index is not None:
        assert f"record {index}" in message
    assert repr(field) in message
    if check_value:
        if isinstance(value, float) and math.isnan(value):
            assert err.value is not None
        else:
            assert err.value == value, (err.value, value)
            if value is not None:
                # the bad value (or the start of it) is quoted in the message
                assert repr(value)[:40] in message
    assert lake_fingerprint(lake) == before
    return err


# -- bad input, record by record, for each input kind --------------------------------------

TOO_LONG = "p" * (DEFAULT_LIMITS.max_partition_chars + 1)

# (id, field, key, bad value): a string-typed bad value representable in every input kind
STRING_CASES = [
    ("empty-type", "type", "type", ""),
    ("control-type", "type", "type", "dep\nosit"),
    ("long-type", "type", "type", "t" * (DEFAULT_LIMITS.max_type_chars + 1)),
    ("empty-partition", "partition", "partition", ""),
    ("slash-partition", "partition", "partition", "a/b"),
    ("backslash-partition", "partition", "partition", "a\\b"),
    ("dotdot-partition", "partition", "partition", ".."),
    ("dotdot-inside-partition", "partition", "partition", "x/../y"),
    ("nul-partition", "partition", "partition", "a\x00b"),
    ("newline-partition", "partition", "partition", "a\nb"),
    ("del-partition", "partition", "partition", "a\x7fb"),
    ("long-partition", "partition", "partition", TOO_LONG),
    ("array-text-payload", "payload", "payload", "[1, 2, 3]"),
    ("not-json-payload", "payload", "payload", "this is not json"),
    ("number-text-payload", "payload", "payload", "42"),
    ("string-json-payload", "payload", "payload", '"just a string"'),
    ("null-text-payload", "payload", "payload", "null"),
    ("bare-nan-payload", "payload", "payload", "NaN"),
    ("nan-in-payload-text", "payload.x", "payload", '{"x": NaN}'),
    ("lower-nan-in-payload-text", "payload.x", "payload", '{"x": nan}'),
    ("infinity-in-payload-text", "payload.x.1", "payload", '{"x": [1, -Infinity]}'),
    ("overflow-number-payload", "payload.x", "payload", '{"x": 1e400}'),
    ("huge-int-payload", "payload.x", "payload", '{"x": ' + "9" * 5000 + "}"),
    ("trailing-comma-payload", "payload", "payload", '{"x": 1,}'),
    ("comment-payload", "payload", "payload", '{/* c */ "x": 1}'),
    ("truncated-payload", "payload.x", "payload", '{"x": '),
    ("escaped-lone-surrogate", "payload.x", "payload", '{"x": "\\ud800"}'),
    ("control-char-in-string", "payload.x", "payload", '{"x": "a\x01b"}'),
    ("two-objects-payload", "payload", "payload", '{"a": 1} {"b": 2}'),
    ("unparseable-ts", "ts", "ts", "yesterday at noon"),
    ("bad-month-ts", "ts", "ts", "2024-13-01T00:00:00"),
    ("control-event-id", "event_id", "event_id", "id\t1"),
    ("empty-event-id", "event_id", "event_id", ""),
]


# Payload texts refused for a problem inside them: the field is its path, and the message
# holds no value (the path and the reason say it, alike for a dict, text or a struct column).
INSIDE_PAYLOAD = {c[3] for c in STRING_CASES if c[1].startswith("payload.")} | {
    "this is not json", "NaN", '{/* c */ "x": 1}', '{"x": 1,}', '{"a": 1} {"b": 2}'}


def bad_record(key: str, value: object) -> dict:
    record = valid_record(99)
    record[key] = value
    return record


@pytest.mark.parametrize(("field", "key", "value"), [c[1:] for c in STRING_CASES],
                         ids=[c[0] for c in STRING_CASES])
@pytest.mark.parametrize("kind", ["dicts", "arrow", "polars"])
def test_bad_string_values_are_refused_with_index_field_and_value(seeded_lake, kind, field,
                                                                  key, value):
    records = batch_with(bad_record(key, value))
    events = {"dicts": records, "arrow": as_arrow(records), "polars": as_polars(records)}[kind]
    assert_refused(seeded_lake, events, index=BAD_AT, field=field,
                   value=None if value in INSIDE_PAYLOAD else value)


@pytest.mark.parametrize(("field", "key", "value"), [
    ("type", "type", None),
    ("type", "type", 7),
    ("partition", "partition", None),
    ("partition", "partition", 12),
    ("partition", "partition", ["a"]),
    ("partition", "partition", "\ud800"),
    ("type", "type", "\udfff"),
    ("payload", "payload", [1, 2]),
    ("payload", "payload", 42),
    ("payload", "payload", None),
    ("payload", "payload", "\ud800"),
    ("payload.x", "payload", {"x": float("nan")}),
    ("payload.x.y.0", "payload", {"x": {"y": [float("inf")]}}),
    ("payload.x", "payload", {"x": -float("inf")}),
    ("payload.x", "payload", {"x": "lone \ud800 surrogate"}),
    ("payload.\\udc00", "payload", {"\udc00": 1}),
    ("payload.x", "payload", {"x": object()}),
    ("payload.1", "payload", {1: "x", "1": "y"}),
    ("payload.True", "payload", {True: 1, "true": 2}),
    ("payload.None", "payload", {None: 1, "null": 2}),
    ("payload.n", "payload", {"n": 10**400}),
    ("ts", "ts", 1700000000),
    ("ts", "ts", "2024-02-30"),
    ("event_id", "event_id", 5),
], ids=lambda v: re.sub(r" at 0x[0-9a-f]+", "", repr(v))[:30])  # the same in every process
def test_bad_python_values_in_dicts(seeded_lake, field, key, value):
    records = batch_with(bad_record(key, value))
    inside = isinstance(value, dict) or (key == "payload" and value == "\ud800")
    assert_refused(seeded_lake, records, index=BAD_AT, field=field,
                   value=None if inside else value)


def test_missing_keys_and_unknown_keys_in_dicts(seeded_lake):
    for key in ("type", "payload", "partition"):
        record = valid_record(1)
        del record[key]
        assert_refused(seeded_lake, batch_with(record), index=BAD_AT, field=key,
                       check_value=False)
    record = valid_record(1) | {"amount": 5}
    err = assert_refused(seeded_lake, batch_with(record), index=BAD_AT, field="amount",
                         value=5)
    assert "unknown" in str(err)
    record = valid_record(1) | {"partition_id": "acct-1"}
    assert_refused(seeded_lake, batch_with(record), index=BAD_AT, field="partition",
                   check_value=False)
    before = lake_fingerprint(seeded_lake)
    with pytest.raises(el.InvalidEventError) as info:
        seeded_lake.append(batch_with("not a dict"))  # type: ignore[arg-type]
    assert info.value.index == BAD_AT and f"record {BAD_AT}" in str(info.value)
    assert lake_fingerprint(seeded_lake) == before


@pytest.mark.parametrize("kind", ["dicts", "arrow", "polars"])
def test_duplicate_event_id_within_a_batch(seeded_lake, kind):
    records = [valid_record(i) | {"event_id": f"e-{i}"} for i in range(6)]
    records[4]["event_id"] = "e-1"
    events = {"dicts": records, "arrow": as_arrow(records), "polars": as_polars(records)}[kind]
    err = assert_refused(seeded_lake, events, index=4, field="event_id", value="e-1")
    assert "record 1" in str(err)  # names the first holder of the id too


@pytest.mark.parametrize("kind", ["arrow", "polars"])
def test_table_level_problems(seeded_lake, kind):
    records = [valid_record(i) for i in range(4)]
    convert = as_arrow if kind == "arrow" else as_polars
    # unknown column
    table = as_arrow(records).append_column("amount", pa.array([1, 2, 3, 4]))
    events = table if kind == "arrow" else pl.from_arrow(table)
    err = assert_refused(seeded_lake, events, index=None, field="amount", check_value=False)
    assert "unknown column" in str(err) and "amount" in str(err)
    # missing columns
    for column in ("type", "payload", "partition"):
        table = as_arrow(records).drop_columns([column])
        events = table if kind == "arrow" else pl.from_arrow(table)
        err = assert_refused(seeded_lake, events, index=None, field=column, check_value=False)
        assert "missing" in str(err)
    # a non-string type column: the first row is named, with its value
    table = as_arrow(records).set_column(0, "type", pa.array([1, 2, 3, 4]))
    events = table if kind == "arrow" else pl.from_arrow(table)
    assert_refused(seeded_lake, events, index=0, field="type", value=1)
    # nulls inside string columns name their row
    for key in ("type", "partition", "payload"):
        bad = [dict(r) for r in records]
        bad[2][key] = None
        assert_refused(seeded_lake, convert(bad), index=2, field=key, check_value=False)


def test_payload_too_large_each_path(seeded_lake):
    big = "x" * (DEFAULT_LIMITS.max_payload_bytes + 10)
    records = batch_with(bad_record("payload", {"blob": big}))
    err = assert_refused(seeded_lake, records, index=BAD_AT, field="payload", check_value=False)
    assert "larger than" in str(err)
    text_records = batch_with(bad_record("payload", json.dumps({"blob": big})))
    for events in (text_records, as_arrow(text_records), as_polars(text_records)):
        err = assert_refused(seeded_lake, events, index=BAD_AT, field="payload",
                             check_value=False)
        assert "larger than" in str(err)
    # multi-byte characters count in bytes, not characters
    limits = Limits(max_payload_bytes=100)
    assert normalize_batch([bad_record("payload", {"s": "é" * 40})], limits=limits).count == 1
    with pytest.raises(el.InvalidEventError):
        normalize_batch([bad_record("payload", {"s": "é" * 50})], limits=limits)


def test_struct_payloads_reject_nan_instead_of_writing_null(seeded_lake):
    frame = pl.DataFrame({
        "type": ["a", "a", "a"],
        "payload": [{"x": 1.5}, {"x": float("nan")}, {"x": 2.0}],
        "partition": ["p", "p", "p"],
    })
    assert_refused(seeded_lake, frame, index=1, field="payload.x", check_value=False)
    table = pa.table({"type": ["a", "a"], "payload": [{"x": 1.0}, {"x": float("inf")}],
                      "partition": ["p", "p"]})
    assert_refused(seeded_lake, table, index=1, field="payload.x", check_value=False)


def test_non_batch_inputs_are_refused(seeded_lake):
    for events in ({"type": "a", "payload": {}, "partition": "p"}, "abc", b"abc", 42):
        before = lake_fingerprint(seeded_lake)
        with pytest.raises(el.InvalidEventError):
            seeded_lake.append(events)
        assert lake_fingerprint(seeded_lake) == before


# -- valid input is normalized faithfully --------------------------------------------------


def test_partition_check_accepts_ordinary_and_unicode_names():
    for name in ("acct-1", "a b", "a=b", "50%", "ünïcödé", "客户", "🙂", "a.b", ".hidden"):
        assert check_partition(name) == name


def test_equivalent_inputs_normalize_to_the_same_table():
    records = [
        {"type": "set", "payload": {"target": "a", "value": [1, {"b": None}],
                                    "options": {"replace": True}},
         "partition": "p1", "event_id": "e1", "ts": "2024-05-01T10:00:00+02:00"},
        {"type": "deposit", "payload": '{"amount": 5}', "partition": "p2"},
    ]
    from_dicts = normalize_batch(records).table
    from_arrow = normalize_batch(as_arrow(records)).table
    from_polars = normalize_batch(as_polars(records)).table
    for table in (from_arrow, from_polars):
        assert table.column("partition_id").to_pylist() == ["p1", "p2"]
        assert table.column("type").to_pylist() == ["set", "deposit"]
        assert table.column("event_id").to_pylist() == ["e1", None]
        assert table.column("ts").to_pylist() == from_dicts.column("ts").to_pylist()
        assert [json.loads(p) for p in table.column("payload").to_pylist()] == [
            json.loads(p) for p in from_dicts.column("payload").to_pylist()]
    assert from_dicts.column("ts")[0].as_py() == datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def test_timestamps_of_every_accepted_form_become_utc():
    instant = datetime(2024, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    forms = [
        instant,
        instant.astimezone(timezone(timedelta(hours=-7))),
        instant.replace(tzinfo=None),  # naive means UTC
        "2024-03-01T12:30:15.123456Z",
        "2024-03-01T14:30:15.123456+02:00",
        "2024-03-01 12:30:15.123456",
    ]
    records = [valid_record(i) | {"ts": ts} for i, ts in enumerate(forms)]
    assert normalize_batch(records).table.column("ts").to_pylist() == [instant] * len(forms)
    frame = pl.DataFrame({"type": ["a"] * 2, "payload": ["{}"] * 2, "partition": ["p"] * 2,
                          "ts": [instant, instant]}).with_columns(
        pl.col("ts").dt.convert_time_zone("Asia/Tokyo"))
    assert normalize_batch(frame).table.column("ts").to_pylist() == [instant] * 2
    nanos = pl.DataFrame({"type": ["a"], "payload": ["{}"], "partition": ["p"],
                          "ts": pl.Series([1_700_000_000_123_456_789]).cast(
                              pl.Datetime("ns"))})
    got = normalize_batch(nanos).table.column("ts")[0].as_py()
    assert got == datetime.fromtimestamp(1_700_000_000.123456, UTC)


def test_categorical_and_large_string_columns_are_accepted():
    frame = pl.DataFrame({"type": ["a", "b"], "payload": ['{"k": 1}', "{}"],
                          "partition": ["p1", "p2"]}).with_columns(
        pl.col("partition").cast(pl.Categorical), pl.col("type").cast(pl.Categorical))
    table = normalize_batch(frame).table
    assert table.column("partition_id").to_pylist() == ["p1", "p2"]
    assert table.column("type").to_pylist() == ["a", "b"]


def test_suspicious_looking_but_valid_payload_text_is_accepted():
    texts = ['{"word": "information, NaN and Infinity are words"}', '{"x": [1, 2], "y": {}}',
             '{"s": "\\ud83d\\ude00"}', '{"e": 1e300, "small": 1e-300}',
             '{"n": ' + "1" * 299 + "}", '{\n  "pretty": true\n}']
    for events in (as_arrow([valid_record(0) | {"payload": t} for t in texts]),
                   [valid_record(0) | {"payload": t} for t in texts]):
        table = normalize_batch(events).table
        assert [json.loads(t) for t in table.column("payload").to_pylist()] == [
            json.loads(t) for t in texts]


@pytest.mark.parametrize("column", ["partition", "type"])
def test_null_label_among_repeated_values_is_refused(seeded_lake, column):
    # Repeated labels are checked once per distinct value; a null is one of those values.
    records = [valid_record(i) | {"partition": "acct-1"} for i in range(40)]
    table = as_arrow(records)
    values = table.column(column).to_pylist()
    values[17] = None
    table = table.set_column(table.schema.get_field_index(column), column,
                             pa.array(values, pa.string()))
    err = assert_refused(seeded_lake, table, index=17, field=column, value=None)
    assert "missing (null)" in str(err)


# -- property: one bad record anywhere in a valid batch ------------------------------------

safe_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | safe_text)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(safe_text, inner, max_size=3), max_leaves=8)
payloads = st.dictionaries(safe_text, json_values, max_size=4)
partitions = st.text(st.characters(whitelist_categories=("L", "N"), whitelist_characters="-_ "),
                     min_size=1, max_size=20)
set_payloads = st.builds(lambda target, value: {"target": target, "value": value},
                        st.from_regex(r"[a-z]{1,5}(\.[a-z]{1,5}){0,2}", fullmatch=True),
                        json_scalars | st.dictionaries(safe_text, json_values, max_size=3))
good_records = (
    st.builds(lambda t, p, part: {"type": t, "payload": p, "partition": part},
              st.sampled_from(["deposit", "comment.added"]), payloads, partitions)
    | st.builds(lambda p, part: {"type": "set", "payload": p, "partition": part},
                set_payloads, partitions))

# (field, key, bad value) usable in every input kind (strings in a string column)
BAD_STRINGS = [(c[1], c[2], c[3]) for c in STRING_CASES
               if c[2] in ("type", "partition", "payload")]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(good_records, min_size=0, max_size=25), data=st.data(),
       kind=st.sampled_from(["dicts", "arrow", "polars"]))
def test_property_one_bad_record_is_named_and_nothing_is_written(property_lake, records, data,
                                                                 kind):
    position = data.draw(st.integers(min_value=0, max_value=len(records)), label="position")
    field, key, value = data.draw(st.sampled_from(BAD_STRINGS), label="bad")
    bad = data.draw(good_records, label="base") | {key: value}
    batch = [*records[:position], bad, *records[position:]]
    events = {"dicts": batch, "arrow": as_arrow(batch), "polars": as_polars(batch)}[kind]
    before = lake_fingerprint(property_lake)
    with pytest.raises(el.InvalidEventError) as info:
        property_lake.append(events)
    assert info.value.index == position, str(info.value)
    assert info.value.field == field
    assert f"record {position}" in str(info.value)
    assert lake_fingerprint(property_lake) == before
    # and the same batch without the bad record is valid
    assert normalize_batch([*records[:position], *records[position:]]).count == len(records)


@pytest.fixture(scope="module")
def property_lake(tmp_path_factory):
    lake = el.Lake.open(tmp_path_factory.mktemp("property") / "lake")
    lake.append([valid_record(0)])
    return lake


# -- state actions whose payload can never apply -------------------------------------------

BAD_ACTIONS = [
    ("set", {"value": 1}, "payload.target"),
    ("set", {"target": "", "value": 1}, "payload.target"),
    ("set", {"target": "a"}, "payload.value"),
    ("set", {"target": "a", "value": [1]}, "payload.value"),
    ("set", {"target": "a", "value": 1, "options": None}, "payload.options"),
    ("unset", {"target": 5}, "payload.target"),
    ("init", {"value": []}, "payload.value"),
    ("treePush", {"target": "t", "value": {"id": ""}}, "payload.value.id"),
    ("treePush", {"value": {"id": "x"}}, "payload.target"),
    ("treeDelete", {"target": "t", "options": {}}, "payload.options.id"),
    ("treeMove", {"target": "t"}, "payload.options"),
    ("treeUpdate", {"target": "t", "options": {"id": "x"}}, "payload.value"),
]


@pytest.mark.parametrize("kind", ["dicts", "arrow", "polars"])
@pytest.mark.parametrize(("action", "payload", "field"), BAD_ACTIONS)
def test_state_action_that_can_never_apply_is_refused(seeded_lake, kind, action, payload,
                                                      field):
    batch = batch_with({"type": action, "payload": payload, "partition": "acct-1"})
    events = {"dicts": batch, "arrow": as_arrow(batch), "polars": as_polars(batch)}[kind]
    before = lake_fingerprint(seeded_lake)
    with pytest.raises(el.InvalidEventError) as info:
        seeded_lake.append(events)
    assert (info.value.index, info.value.field) == (BAD_AT, field), str(info.value)
    assert f"record {BAD_AT}" in str(info.value) and action in str(info.value)
    assert lake_fingerprint(seeded_lake) == before


@pytest.mark.parametrize("kind", ["dicts", "arrow", "polars"])
@pytest.mark.parametrize(("text", "field"), [('{"a": 1, "a": 2}', "payload.a"),
                                           ('{"a": {"b": 1, "b": 2}}', "payload.a.b"),
                                           ('{"a": [{"c": 1, "c": 1}]}', "payload.a.0.c")])
def test_duplicate_keys_are_refused_in_every_input_path(seeded_lake, kind, text, field):
    # DuckDB reads the first of two equal keys and Python the last: SQL and folds would differ.
    batch = batch_with({"type": "deposit", "payload": text, "partition": "acct-1"})
    events = {"dicts": batch, "arrow": as_arrow(batch), "polars": as_polars(batch)}[kind]
    with pytest.raises(el.InvalidEventError) as info:
        seeded_lake.append(events)
    assert (info.value.index, info.value.field) == (BAD_AT, field)
    assert "appears twice" in str(info.value)


action_payloads = st.dictionaries(
    st.sampled_from(["target", "value", "options", "id", "x"]),
    st.none() | st.sampled_from(["", "a", "a.b", "t"]) | st.integers(0, 2) | st.lists(
        st.integers(0, 2), max_size=2) | st.dictionaries(
        st.sampled_from(["id", "replace", "parent", "position", "x"]),
        st.none() | st.booleans() | st.sampled_from(["", "n1", "_root", "last"]), max_size=3),
    max_size=4)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["init", "set", "unset", "treePush", "treeDelete", "treeUpdate",
                             "treeMove", "deposit"]), payload=action_payloads)
def test_columnar_action_check_agrees_with_the_record_check(kind, payload):
    # The columnar path lets DuckDB wave through payloads it can prove fine; it must never
    # accept one the record path refuses, nor refuse one with another field.
    records = [valid_record(0), {"type": kind, "payload": payload, "partition": "p"}]

    def outcome(events: object) -> tuple[int | None, str | None] | str:
        try:
            normalize_batch(events)
        except el.InvalidEventError as exc:
            return exc.index, exc.field
        return "ok"

    assert outcome(as_arrow(records)) == outcome(records)


def test_struct_and_map_payloads_that_json_text_cannot_hold_are_refused(seeded_lake):
    # Arrow can hold a struct with two fields of one name, or a map with a key twice or keys
    # that are not strings: `to_pylist` would keep one of two equal keys without a word.
    cases = [
        (pa.array([[("k", 1), ("k", 2)]], pa.map_(pa.string(), pa.int64())), "payload.k",
         "appears twice"),
        (pa.array([[("k", 1), ("k", 2)]], pa.map_(pa.string(), pa.int64())), "payload.k",
         "appears twice"),
        (pa.array([{"m": [(7, "x")]}], pa.struct([("m", pa.map_(pa.int64(), pa.string()))])),
         "payload.m.7", "key 7 (int) is not a string"),
    ]
    for payload, field, reason in cases:
        table = pa.table({"type": ["a"], "partition": ["p"], "payload": payload})
        err = assert_refused(seeded_lake, table, index=0, field=field, check_value=False)
        assert reason in err.reason
    # A struct type with a field twice: no row could pass, the column is refused.
    twice = pa.struct([("a", pa.int64()), ("b", pa.struct([("c", pa.int8()), ("c", pa.int8())]))])
    payload = pa.StructArray.from_arrays(
        [pa.array([1]), pa.StructArray.from_arrays([pa.array([1], pa.int8())] * 2,
                                                   fields=list(twice.field(1).type))],
        fields=list(twice))
    table = pa.table({"type": ["a"], "partition": ["p"], "payload": payload})
    err = assert_refused(seeded_lake, table, index=None, field="payload.b.c", check_value=False)
    assert "twice" in err.reason
