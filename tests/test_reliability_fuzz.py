"""Hostile input: generated bad records through the validator, `lake.append`, inbox files and
the CLI. Each gets a clear `InvalidEventError` (naming record and field) or a quarantine entry;
good records next to them are handled as documented (API: the whole batch is rejected and
nothing is written; inbox and `--quarantine`: good land, bad are quarantined, counts add up);
the lake stays valid (`seq` gap-free, `verify` ok).

Every choice the fuzz makes (which records are bad, which batches are retried, which lines of
an inbox file are good) is drawn from Hypothesis, never from `random`, so a failing case can
be replayed and shrunk (and Hypothesis does not warn about `random` in strategies).

The full 10,000-record run is slow-marked; the unmarked tests run a CI-sized sample.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventlake as el
from eventlake.cli import main
from eventlake.errors import InvalidEventError
from eventlake.ingest.inbox import ingest_file, read_quarantine
from eventlake.ops.verify import verify_view
from eventlake.validate.events import PARTITION_FOLDER_BYTES, Limits, normalize_batch

# Small limits keep oversized records cheap to generate; a few real 1 MiB+ payloads are tested
# against the default limits separately.
LIMITS = Limits(max_payload_bytes=4096, max_payload_depth=50, max_partition_chars=64,
                max_type_chars=64, max_event_id_chars=64)
FIELDS = ("type", "partition", "payload", "event_id", "ts")


def good(i: int, partition: str = "good") -> dict[str, Any]:
    # Not a state action: a bad record that rendering as JSON makes valid (bytes become a
    # string) must not turn into an action the document view cannot apply.
    return {"type": "note", "partition": partition, "payload": {"n": i}}


def _nested(depth: int, *, array: bool) -> Any:
    """An object nesting `depth` levels (the outer object counts as one)."""
    value: Any = 1
    for _ in range(depth - 1 if array else depth):
        value = [value] if array else {"a": value}
    return {"a": value} if array else value


def _nested_text(depth: int) -> str:
    return '{"a":' + "[" * depth + "]" * depth + "}"


# -- generated bad records: (record, field the error must name or None) ----------------------


class Case(tuple):  # type: ignore[type-arg]
    """(record, field); its repr stays short, so Hypothesis can print a 10,000-deep case."""

    def __repr__(self) -> str:
        try:
            text = repr(self[0])
        except (RecursionError, ValueError):
            text = f"<{type(self[0]).__name__} too deep to show>"
        return f"Case({text[:300]}, field={self[1]!r})"

junk = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(),
                 st.lists(st.integers(), max_size=3), st.binary(min_size=1, max_size=8),
                 st.tuples(st.integers()))


@st.composite
def wrong_type(draw: Any) -> Case:
    record = good(0)
    name = draw(st.sampled_from(FIELDS))
    value = draw(junk)
    if name == "payload" and isinstance(value, tuple):
        value = [1]
    record[name] = value
    return Case((record, name))


@st.composite
def oversized(draw: Any) -> Case:
    record = good(0)
    kind = draw(st.sampled_from(["payload", "partition", "partition-bytes", "type", "event_id"]))
    extra = draw(st.integers(1, 200))
    if kind == "payload":
        record["payload"] = {"blob": "x" * (LIMITS.max_payload_bytes + extra)}
        if draw(st.booleans()):
            record["payload"] = json.dumps(record["payload"])
        return Case((record, "payload"))
    if kind == "partition-bytes":
        # Few characters, but too many bytes once percent-encoded as a folder name.
        record["partition"] = "日" * (PARTITION_FOLDER_BYTES // 9 + 1)
        return Case((record, "partition"))
    field = "partition" if kind == "partition" else kind
    limit = {"partition": LIMITS.max_partition_chars, "type": LIMITS.max_type_chars,
             "event_id": LIMITS.max_event_id_chars}[field]
    record[field] = draw(st.text(min_size=1, max_size=3).filter(
        lambda t: t.isalnum() and t.isascii())) * (limit + extra)
    return Case((record, field))


@st.composite
def deep(draw: Any) -> Case:
    record = good(0)
    depth = draw(st.one_of(st.integers(LIMITS.max_payload_depth + 1,
                                       LIMITS.max_payload_depth + 30),
                           st.just(10_000)))
    form = draw(st.sampled_from(["dict", "array", "text"]))
    if form == "text":
        record["payload"] = _nested_text(depth)
    else:
        record["payload"] = _nested(depth, array=form == "array")
    return Case((record, "payload"))


@st.composite
def bad_unicode(draw: Any) -> Case:
    record = good(0)
    surrogate = chr(draw(st.integers(0xD800, 0xDFFF)))
    where = draw(st.sampled_from(["type", "partition", "event_id", "payload-key",
                                  "payload-value", "payload-text", "payload-escape",
                                  "bytes"]))
    if where in ("type", "partition", "event_id"):
        record[where] = f"a{surrogate}b"
        return Case((record, where))
    if where == "payload-key":
        record["payload"] = {f"k{surrogate}": 1}
    elif where == "payload-value":
        record["payload"] = {"k": [f"v{surrogate}"]}
    elif where == "payload-text":
        record["payload"] = '{"k": "' + surrogate + '"}'
    elif where == "payload-escape":
        record["payload"] = '{"k": "\\u' + f"{ord(surrogate):04x}" + '"}'
    else:
        record[draw(st.sampled_from(["payload", "partition", "type"]))] = draw(
            st.binary(min_size=1, max_size=6)) + b"\xff"
        field = next(k for k, v in record.items() if isinstance(v, bytes))
        return Case((record, field))
    return Case((record, "payload"))


@st.composite
def not_finite(draw: Any) -> Case:
    record = good(0)
    value = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    if draw(st.booleans()):
        record["payload"] = {"a": {"b": [1, value]}}
    else:
        token = draw(st.sampled_from(
            ["NaN", "Infinity", "-Infinity", "1e999", "-1e400", "nan", "inf"]))
        record["payload"] = '{"a": ' + token + "}"
    return Case((record, "payload"))


@st.composite
def bad_partition_chars(draw: Any) -> Case:
    record = good(0)
    head = draw(st.text(max_size=5).filter(lambda t: t.isalnum()))
    bad = draw(st.sampled_from(["/", "\\", "..", "\x00", "\n", "\x7f", "\x1b"]))
    record["partition"] = draw(st.sampled_from([head + bad, bad + head, head + bad + head,
                                                "", "../../etc/passwd", "a/../../b"]))
    return Case((record, "partition"))


@st.composite
def bad_shape(draw: Any) -> Case:
    kind = draw(st.sampled_from(["unknown-key", "missing", "not-a-mapping", "both-partitions",
                                 "payload-not-object", "payload-bad-json", "dup-key",
                                 "bad-ts", "control-in-type"]))
    record: Any = good(0)
    if kind == "unknown-key":
        key = draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in (
            "type", "payload", "partition", "partition_id", "event_id", "ts")))
        record[key] = 1
        return Case((record, key))
    if kind == "missing":
        name = draw(st.sampled_from(["type", "partition", "payload"]))
        del record[name]
        return Case((record, name))
    if kind == "not-a-mapping":
        return Case((draw(st.one_of(st.integers(), st.text(), st.lists(st.integers()),
                                    st.none())), None))
    if kind == "both-partitions":
        record["partition_id"] = "other"
        return Case((record, "partition"))
    if kind == "payload-not-object":
        record["payload"] = draw(st.sampled_from(['[1]', '1', '"x"', 'null', 'true']))
        return Case((record, "payload"))
    if kind == "payload-bad-json":
        record["payload"] = draw(st.sampled_from(['{', '{"a":}', "{'a': 1}", '{"a":1,}',
                                                  '', '{"a": 01}', '{"a": 1} x']))
        return Case((record, "payload"))
    if kind == "dup-key":
        record["payload"] = '{"a": 1, "b": {"c": 1, "c": 2}}'
        return Case((record, "payload"))
    if kind == "bad-ts":
        record["ts"] = draw(st.sampled_from(["yesterday", "2024-13-01", "9999-99-99T00:00",
                                             "", "1e9"]))
        return Case((record, "ts"))
    record["type"] = "a\x00b"
    return Case((record, "type"))


@st.composite
def bad_action(draw: Any) -> Case:
    """A state action whose payload no state could accept (the document view would fail)."""
    junk_value = draw(st.one_of(st.none(), st.integers(), st.just(""), st.just([1])))
    kind, payload, field = draw(st.sampled_from([
        ("set", {"value": 1}, "payload.target"),
        ("set", {"target": junk_value if junk_value != "" else 5, "value": 1},
         "payload.target"),
        ("set", {"target": "a"}, "payload.value"),
        ("set", {"target": "a", "value": 1, "options": junk_value}, "payload.options"),
        ("unset", {}, "payload.target"),
        ("init", {"value": junk_value}, "payload.value"),
        ("treePush", {"target": "t", "value": {"id": junk_value}}, "payload.value.id"),
        ("treeDelete", {"target": "t", "options": {"id": junk_value}}, "payload.options.id"),
        ("treeMove", {"target": "t", "options": junk_value}, "payload.options"),
        ("treeUpdate", {"target": "t", "value": junk_value, "options": {"id": "n"}},
         "payload.value"),
    ]))
    record = good(0) | {"type": kind, "payload": payload}
    if draw(st.booleans()):
        record["payload"] = json.dumps(payload)
    return Case((record, field))


bad_records = st.one_of(wrong_type(), oversized(), deep(), bad_unicode(), not_finite(),
                        bad_partition_chars(), bad_shape(), bad_action())

# Valid but hostile: SQL, path-like and odd Unicode partitions must land and read back intact.
hostile_partition = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30,
).filter(lambda p: "/" not in p and "\\" not in p and ".." not in p)
SQL_AND_PATHS = ["x'; drop table events; --", "a%2Fb=c", "partition_id=x", " ", "$HOME",
                 "`id`", "%00", "a\u2028b", "*?<>|\"", "{}[]^#&+,;@!()", "😀", "Robert');--",
                 "NULL", "null", ".hidden", "_underscore", "~", "a:b", "x" * 64]


def _field_matches(actual: str | None, expected: str) -> bool:
    """A case's field is where the problem is: `payload` stands for the payload or any path
    inside it (`payload.a.b`), which the error names exactly."""
    return actual == expected or (actual or "").startswith(f"{expected}.")


def _check_rejected(records: list[Any], index: int, field: str | None) -> InvalidEventError:
    with pytest.raises(InvalidEventError) as info:
        normalize_batch(records, limits=LIMITS)
    error = info.value
    assert error.index == index, (str(error), records[index] if index < len(records) else None)
    if field is not None:
        assert _field_matches(error.field, field), (str(error), field)
    text = str(error)
    assert f"record {index}" in text and len(text) < 2000
    return error


def _fuzz_validator(batches: int, per_batch: int) -> int:
    checked = 0

    @settings(max_examples=batches, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(bad_records, min_size=per_batch, max_size=per_batch),
           st.integers(0, 3))
    def run(cases: list[Case], good_before: int) -> None:
        nonlocal checked
        for record, field in cases:
            records = [good(i) for i in range(good_before)] + [record, good(99)]
            _check_rejected(records, good_before, field)
            checked += 1

    run()
    return checked


def test_validator_rejects_generated_bad_records_ci() -> None:
    assert _fuzz_validator(batches=80, per_batch=10) == 800


@pytest.mark.slow
def test_validator_rejects_10000_generated_bad_records() -> None:
    started = time.perf_counter()
    assert _fuzz_validator(batches=1000, per_batch=10) == 10_000
    print(f"\n10,000 bad records through the validator in {time.perf_counter() - started:.1f} s")


def test_columnar_input_meets_the_same_checks() -> None:
    """Arrow input is validated column-wise; the hostile cases the record path catches are
    caught there too, naming the row."""
    deep_text = _nested_text(10_000)
    cases = {
        "payload": [deep_text, '{"a": NaN}', '{"a": 1e999}', '{"a": "\\ud800"}',
                    _nested_text(LIMITS.max_payload_depth + 1)],
        "partition": ["日" * (PARTITION_FOLDER_BYTES // 9 + 1), "a/b", "..", "x" * 65],
    }
    for column, values in cases.items():
        for value in values:
            table = {"type": ["t"] * 3, "partition": ["p"] * 3,
                     "payload": ['{"a": 1}'] * 3}
            table[column][1] = value
            with pytest.raises(InvalidEventError) as info:
                normalize_batch(pa.table(table), limits=LIMITS)
            assert info.value.index == 1 and _field_matches(info.value.field, column), (
                value[:40], info.value)


def test_real_size_limits_with_default_limits() -> None:
    big = {"type": "t", "partition": "p", "payload": {"blob": "x" * (1024 * 1024)}}
    with pytest.raises(InvalidEventError, match="larger than 1048576") as info:
        normalize_batch([good(0), big])
    assert (info.value.index, info.value.field) == (1, "payload")
    for depth in (201, 10_000):
        for payload in (_nested(depth, array=False), _nested_text(depth)):
            with pytest.raises(InvalidEventError, match="200 levels") as info:
                normalize_batch([{"type": "t", "partition": "p", "payload": payload}])
    # Exactly at the limits is fine.
    normalize_batch([{"type": "t", "partition": "x" * 200, "payload": _nested(200, array=True)}])
    with pytest.raises(InvalidEventError, match="more than 200"):
        normalize_batch([{"type": "t", "partition": "x" * 201, "payload": {}}])


def test_error_for_unprintable_values_is_still_clear() -> None:
    """Regression: a payload too deep to repr(), or an int too long to print, made building
    the error message itself raise RecursionError/ValueError."""
    huge_int = {"type": "t", "partition": "p", "payload": {"a": 10 ** 5000}}
    with pytest.raises(InvalidEventError, match="too large for a float") as info:
        normalize_batch([huge_int])
    assert info.value.field == "payload.a"
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    with pytest.raises(InvalidEventError) as info:
        normalize_batch([{"type": "t", "partition": "p", "payload": cyclic}])
    assert info.value.field == "payload.self"


# -- through the API -------------------------------------------------------------------------


def _assert_lake_valid(lake: el.Lake) -> None:
    events = lake.events().collect()
    assert events.get_column("seq").to_list() == list(range(1, events.height + 1))
    assert lake.last_seq() == events.height
    lake.materialize()
    for view in lake.views.values():
        report = verify_view(lake, view)
        assert report.ok and report.watermark == lake.last_seq(), report


def _api_campaign(lake: el.Lake, records: int) -> dict[str, Any]:
    landed = rejected = 0
    batch_no = 0
    # Events landed per partition by the retries: a drawn hostile partition may be one of
    # SQL_AND_PATHS, which get one more event each at the end.
    per_partition: Counter[str] = Counter()

    # `retry` below 3 of 0..9: a third or more of the rejected batches (Hypothesis leans to
    # small numbers) are retried, corrected.
    @settings(max_examples=records, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(bad_records, hostile_partition, st.integers(0, 4), st.integers(0, 9))
    def run(case: Case, partition: str, good_before: int, retry: int) -> None:
        nonlocal landed, rejected, batch_no
        record, field = case
        before = lake.last_seq()
        batch = [good(i, partition) for i in range(good_before)] + [record, good(7)]
        batch_no += 1
        with pytest.raises(InvalidEventError) as info:
            lake.append(batch, producer="fuzz", batch_no=batch_no)
        assert info.value.index == good_before
        if field is not None:
            assert _field_matches(info.value.field, field)
        assert lake.last_seq() == before  # the whole batch was rejected, nothing written
        rejected += 1
        if retry < 3:
            # The key was not used up: the corrected batch lands under it.
            result = lake.append([*batch[:good_before], good(7)], producer="fuzz",
                                 batch_no=batch_no)
            assert not result.duplicate and result.count == good_before + 1
            landed += result.count
            per_partition[partition] += good_before
            per_partition[good(7)["partition"]] += 1

    run()
    # Duplicate event ids within a batch: rejected whole.
    with pytest.raises(InvalidEventError, match="duplicate event_id"):
        lake.append([{**good(1), "event_id": "same"}, {**good(2), "event_id": "same"}])
    for partition in SQL_AND_PATHS:
        lake.append([{"type": "set", "partition": partition,
                      "payload": {"target": "p", "value": partition}}])
        landed += 1
        per_partition[partition] += 1
    return {"rejected": rejected, "landed": landed, "per_partition": per_partition}


def test_bad_records_through_append_reject_whole_batch(tmp_path: Path) -> None:
    lake = el.Lake.open(tmp_path / "lake", limits=LIMITS)
    counts = _api_campaign(lake, records=80)
    assert counts["rejected"] == 80
    _assert_lake_valid(lake)
    for partition in SQL_AND_PATHS:
        assert lake.state(partition) == {"p": partition}
        expected = counts["per_partition"][partition]
        assert lake.events(partition).collect().height == expected
        rows = lake.sql("select count(*) from events where partition_id = $1",
                        params=[partition]).fetchall()
        assert rows == [(expected,)]


@pytest.mark.slow
def test_bad_records_through_append_many(tmp_path: Path) -> None:
    lake = el.Lake.open(tmp_path / "lake", limits=LIMITS)
    counts = _api_campaign(lake, records=600)
    assert counts["rejected"] == 600
    _assert_lake_valid(lake)


# -- through inbox files and the CLI ---------------------------------------------------------


def _jsonl_line(record: Any) -> bytes | None:
    """The record as one JSON Lines line, or None when JSON cannot express it."""
    if isinstance(record, dict):
        record = {k: (v.decode("latin-1") if isinstance(v, bytes) else v)
                  for k, v in record.items()}
        payload = record.get("payload")
        if isinstance(payload, str) and len(payload) > 1000 and payload.startswith('{"a":['):
            # Too deep for json.dumps: splice the text in as the payload object itself.
            rest = json.dumps({k: v for k, v in record.items() if k != "payload"})
            return (rest[:-1] + ', "payload": ' + payload + "}").encode()
    try:
        return json.dumps(record).encode()
    except (ValueError, TypeError, RecursionError):
        return None


def _accepted(line: bytes, limits: Limits) -> dict[str, Any] | None:
    """The record of a line if it is valid on its own (rendering as JSON can make a bad record
    good, e.g. bytes become a string), else None."""
    def reject(token: str) -> None:
        raise ValueError(token)

    try:
        record = json.loads(line.decode("utf-8"), parse_constant=reject)
        normalize_batch([record], limits=limits)
    except (ValueError, RecursionError, TypeError):
        return None
    assert isinstance(record, dict)
    return record


# Bad records drawn once per module; inbox files pick from them (drawing each line afresh
# costs more Hypothesis entropy than a 60-line file can have).
POOL = 300


@pytest.fixture(scope="module")
def bad_pool() -> list[Any]:
    @settings(max_examples=POOL, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(bad_records)
    def collect(case: Case) -> None:
        pool.append(case[0])

    pool: list[Any] = []
    collect()
    return pool


def inbox_plan(count: int) -> st.SearchStrategy[list[tuple[bool, int, int]]]:
    """How an inbox file of `count` records is made: per record, whether it is good, which
    pool record it is otherwise, and the partition (one of four) of a good one."""
    return st.lists(st.tuples(st.booleans(), st.integers(0, POOL - 1), st.integers(0, 3)),
                    min_size=count, max_size=count)


def _inbox_lines(plan: list[tuple[bool, int, int]], pool: list[Any]) -> list[bytes]:
    """The file's JSON Lines, then two lines that are not JSON objects."""
    lines: list[bytes] = []
    for i, (is_good, pick, partition) in enumerate(plan):
        if is_good:
            lines.append(json.dumps(good(i, f"g{partition}")).encode())
            continue
        line = _jsonl_line(pool[pick % len(pool)])
        lines.append(line if line is not None
                     else b'{"type": "t", "partition": "p", "payload": NaN}')
    return [*lines, b'{"type": "t", "partition"', b"[1, 2, 3]"]


def _expected_counts(lines: list[bytes], limits: Limits) -> tuple[int, int]:
    """(records that land, records quarantined) for a file of `lines`.

    A valid record whose `event_id` an earlier valid record of the file took is a duplicate:
    quarantined (a bad record rendered as JSON can turn valid, with a short `event_id` that
    another drawn record repeats)."""
    good_count = bad_count = 0
    claimed: set[str] = set()
    for line in lines:
        record = _accepted(line, limits)
        event_id = None if record is None else record.get("event_id")
        if record is None or (isinstance(event_id, str) and event_id in claimed):
            bad_count += 1
            continue
        if isinstance(event_id, str):
            claimed.add(event_id)
        good_count += 1
    return good_count, bad_count


def test_inbox_ingest_quarantines_bad_and_lands_good(tmp_path: Path, bad_pool: list[Any]
                                                     ) -> None:
    # The lake's own limits decide, in the file check as in the append (regression: the file
    # check used the default limits, so a record over a stricter lake limit failed the whole
    # file's append instead of being quarantined).
    lake = el.Lake.open(tmp_path / "lake", limits=LIMITS)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    totals = {"files": 0, "good": 0, "bad": 0}

    # The first example is Hypothesis' simplest (every line the first pool record); the
    # other four are files of 60 lines drawn at random.
    @settings(max_examples=5, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(inbox_plan(60))
    def run(plan: list[tuple[bool, int, int]]) -> None:
        lines = _inbox_lines(plan, bad_pool)
        path = inbox / f"batch-{totals['files']}.jsonl"
        totals["files"] += 1
        path.write_bytes(b"\n".join(lines) + b"\n")
        good_count, bad_count = _expected_counts(lines, LIMITS)
        result = ingest_file(lake, path)
        assert not result.unreadable
        assert result.events == good_count, result
        assert result.quarantined == bad_count
        assert result.records == good_count + bad_count
        totals["good"] += good_count
        totals["bad"] += bad_count
        again = ingest_file(lake, path)
        assert again.duplicate

    run()
    assert totals["files"] == 5
    # A file that is not UTF-8 at all is quarantined whole, and handled once.
    broken = inbox / "broken.jsonl"
    broken.write_bytes(json.dumps(good(1)).encode() + b"\n\xff\xfe{bad}\n")
    result = ingest_file(lake, broken)
    assert result.unreadable and result.quarantined == 1 and result.events == 0
    entries = read_quarantine(lake.storage.local_path("quarantine"))
    assert len(entries) == totals["bad"] + 1
    assert all(entry["reason"] for entry in entries)
    assert lake.events().collect().height == totals["good"]
    _assert_lake_valid(lake)


def _cli_campaign(tmp: Path, lines: list[bytes], capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp / "lake"
    path = tmp / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    good_count, bad_count = _expected_counts(lines, Limits())
    assert main(["ingest", str(path), "--lake", str(root)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "mixed.jsonl, line " in err
    assert len(err.strip().splitlines()) == 1
    lake = el.Lake.open(root)
    assert lake.last_seq() == 0  # strict mode: nothing of the file was written

    assert main(["ingest", str(path), "--quarantine", "--json", "--lake", str(root)]) == 0
    out = json.loads(capsys.readouterr().out)
    (only,) = out["files"]
    assert (only["events"], only["quarantined"]) == (good_count, bad_count)
    quarantined = read_quarantine(root / "quarantine")
    assert len(quarantined) == bad_count
    assert all(q["line"] and q["reason"] for q in quarantined)
    assert main(["ingest", str(path), "--quarantine", "--lake", str(root)]) == 0
    assert "duplicate" in capsys.readouterr().out
    _assert_lake_valid(el.Lake.open(root))


def test_cli_ingest_with_and_without_quarantine(bad_pool: list[Any],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    # The first example is Hypothesis' simplest (every line the first pool record); the
    # second is a file of 40 lines drawn at random. Both end in two lines that are not JSON
    # objects, so strict mode always has a line to refuse.
    @settings(max_examples=2, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(inbox_plan(40))
    def run(plan: list[tuple[bool, int, int]]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            _cli_campaign(Path(tmp), _inbox_lines(plan, bad_pool), capsys)
        files.append(len(plan))

    files: list[int] = []
    run()
    assert files == [40, 40]
