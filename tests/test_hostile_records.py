"""Acceptance (issue 19, item 2): a hostile record gets one verdict on every path.

Each entry of `RECORDS` is a record with its expected verdict: accepted (and then stored
exactly: the payload read back equals the expected value, type for type) or refused naming a
field, with one reason. Each entry of `PATHS` is a way into a lake: `Lake.append` with dicts
(payload as a Python value or as JSON text), an Arrow table (payload as text, or as a struct
or map column), a Polars frame; the real CLI `eventlake ingest --quarantine` of a JSON Lines
file (payload inline or as a JSON string), a CSV file and a Parquet file (payload as text, or
as a struct or map column); and the inbox flow's `inbox.ingest_file` of those files.

Every cell runs the record among 299 good ones (enough for the columnar screen of
`_payloadscan`, and for the inbox's columnar JSON Lines path, to take part) and asserts the
verdict, the record's position, the field and the reason. A refusal lands the 299 good
records (files, with quarantine) or nothing (`Lake.append`).

Not every record can be written in every form: a Python dict cannot hold a key twice, JSON
text cannot hold a key that is not a string, Arrow cannot hold a lone surrogate or an integer
beyond 64 bits. `NOT_EXPRESSIBLE` says why for each missing cell, and a test checks that
every (record, path) pair is either run or explained there.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import eventlake as el
from eventlake.cli import main
from eventlake.errors import InvalidEventError
from eventlake.ingest.inbox import ingest_file, read_quarantine
from eventlake.model.jsoncodec import INT_LIMIT
from eventlake.model.layout import Layout
from tests.validate.test_jsoncodec import exact  # type-strict: 2**64 is not the float it rounds to

GOOD = 299
AT = 150  # position of the hostile record among the good ones
MISSING: Any = object()


@dataclass(frozen=True)
class Record:
    """A record and its verdict. `field` None means accepted, storing `expected`."""

    id: str
    field: str | None
    reason: str | None = None
    text: str | None = None  # the payload as JSON text
    value: Any = MISSING  # the payload as a Python value
    # The payload as an Arrow struct/map value: (type, hostile value, a good value).
    nested: tuple[pa.DataType, Any, Any] | None = None
    line: str | None = None  # the whole JSON Lines record (a record-level problem)
    columns: list[str] | None = None  # columns of a table with that problem
    expected: Any = MISSING
    why_not: dict[str, str] = field(default_factory=dict)


def struct(**fields: pa.DataType) -> pa.DataType:
    return pa.struct(list(fields.items()))


MAP_SI = pa.map_(pa.string(), pa.int64())
NO_DUP_DICT = "a Python dict cannot hold a key twice"
NO_TEXT_KEY = "JSON text has only string keys (a repeat is the dup-key records)"
NO_ARROW_BIG = "Arrow integers are 64-bit"
NO_ARROW_SURROGATE = "Arrow strings are UTF-8: they cannot hold a lone surrogate"


def _deep_list(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


RECORDS: list[Record] = [
    # -- controls: accepted, stored exactly --------------------------------------------
    Record("int-2**64", None, text='{"n":18446744073709551616}', value={"n": 2**64},
           expected={"n": 2**64}),
    Record("int-minus-2**63-1", None, text='{"n":-9223372036854775809}',
           value={"n": -(2**63) - 1}, expected={"n": -(2**63) - 1}),
    Record("int-10**300", None, text='{"n":1' + "0" * 300 + "}", value={"n": 10**300},
           expected={"n": 10**300}),
    Record("int-largest-accepted", None, text=f'{{"n":{INT_LIMIT - 1}}}',
           value={"n": INT_LIMIT - 1}, expected={"n": INT_LIMIT - 1}),
    Record("int64-bounds", None, text='{"a":9223372036854775807,"b":-9223372036854775808}',
           value={"a": 2**63 - 1, "b": -(2**63)},
           nested=(struct(a=pa.int64(), b=pa.int64()), {"a": 2**63 - 1, "b": -(2**63)},
                   {"a": 0, "b": 0}),
           expected={"a": 2**63 - 1, "b": -(2**63)}),
    Record("uint64-max", None, text='{"n":18446744073709551615}', value={"n": 2**64 - 1},
           nested=(struct(n=pa.uint64()), {"n": 2**64 - 1}, {"n": 1}),
           expected={"n": 2**64 - 1}),
    Record("colons-and-escapes", None,
           text='{"url":"http://x:1/","c":"\\u003a","e":"\\ud83d\\ude00","k:v":[1,{"b":null}]}',
           value={"url": "http://x:1/", "c": ":", "e": "\U0001f600", "k:v": [1, {"b": None}]},
           expected={"url": "http://x:1/", "c": ":", "e": "\U0001f600", "k:v": [1, {"b": None}]}),
    # -- a key twice, at any depth -----------------------------------------------------
    Record("dup-key", "payload.a", "key 'a' appears twice in one object",
           text='{"a":1,"a":2}', nested=(MAP_SI, [("a", 1), ("a", 2)], [("a", 1)])),
    Record("dup-key-nested", "payload.a.b", "key 'b' appears twice in one object",
           text='{"a":{"b":1,"b":2}}',
           nested=(struct(a=MAP_SI), {"a": [("b", 1), ("b", 2)]}, {"a": []})),
    Record("dup-key-in-array", "payload.a.1.d", "key 'd' appears twice in one object",
           text='{"a":[{"c":1},{"d":1,"d":2}]}',
           nested=(struct(a=pa.list_(MAP_SI)), {"a": [[("c", 1)], [("d", 1), ("d", 2)]]},
                   {"a": []})),
    Record("dup-key-escaped", "payload.a", "key 'a' appears twice in one object",
           text='{"a":1,"\\u0061":2}',
           why_not={"nested": "an escape is a JSON text matter: dup-key is its map form"}),
    Record("dup-key-record-level", "type", line='{"type":"note","type":"note","partition":"p",'
                                                 '"payload":{}}',
           columns=["type", "type", "payload", "partition"],
           why_not={"append-dicts": NO_DUP_DICT, "append-dicts-text": NO_DUP_DICT,
                    "append-polars": "a Polars frame cannot hold a column twice"}),
    # -- keys that are not strings (collide once encoded) --------------------------------
    Record("int-key", "payload.1", "key 1 (int) is not a string", value={1: "x", "1": "y"},
           nested=(pa.map_(pa.int64(), pa.string()), [(1, "x")], [])),
    Record("bool-key", "payload.True", "key True (bool) is not a string",
           value={True: 1, "true": 2}, nested=(pa.map_(pa.bool_(), pa.int64()), [(True, 1)], [])),
    Record("null-key", "payload.None", "key None (NoneType) is not a string",
           value={None: 1, "null": 2},
           why_not={"nested": "Arrow map keys are never null"}),
    # -- numbers a float cannot hold, NaN, infinities ------------------------------------
    Record("int-10**400", "payload.n", "number is too large for a float",
           text='{"n":1' + "0" * 400 + "}", value={"n": 10**400}),
    Record("int-limit", "payload.n", "number is too large for a float",
           text=f'{{"n":{INT_LIMIT}}}', value={"n": INT_LIMIT}),
    Record("int-minus-limit", "payload.x.n", "number is too large for a float",
           text=f'{{"x":{{"n":-{INT_LIMIT}}}}}', value={"x": {"n": -INT_LIMIT}}),
    Record("float-1e400", "payload.n", "number is too large for a float", text='{"n":1e400}',
           why_not={"value": "a Python float cannot be 1e400 (it would be inf: the infinity "
                             "records)"}),
    Record("nan", "payload.n", "NaN is not valid JSON", text='{"n":NaN}',
           value={"n": math.nan}, nested=(struct(n=pa.float64()), {"n": math.nan}, {"n": 1.5})),
    Record("infinity", "payload.n.0", "Infinity is not valid JSON", text='{"n":[Infinity]}',
           value={"n": [math.inf]},
           nested=(struct(n=pa.list_(pa.float64())), {"n": [math.inf]}, {"n": [1.0]})),
    Record("minus-infinity", "payload.n", "-Infinity is not valid JSON",
           text='{"n":-Infinity}', value={"n": -math.inf},
           nested=(struct(n=pa.float64()), {"n": -math.inf}, {"n": 0.0})),
    # -- lone surrogates, raw and escaped ------------------------------------------------
    Record("lone-surrogate", "payload.s", "string holds a lone surrogate U+D800 (not valid "
                                          "UTF-8)",
           text='{"s":"\\ud800"}', value={"s": "\ud800"}),
    Record("lone-surrogate-key", "payload.\\udc00", "string holds a lone surrogate U+DC00 "
                                                    "(not valid UTF-8)",
           text='{"\\udc00":1}', value={"\udc00": 1}),
    Record("lone-surrogate-pair-reversed", "payload.s", "string holds a lone surrogate U+DE00 "
                                                        "(not valid UTF-8)",
           text='{"s":"\\ude00\\ud83d"}', value={"s": "\ude00\ud83d"}),
    # -- payloads that are not objects ---------------------------------------------------
    Record("array-payload", "payload", "payload is a JSON array, not an object",
           text="[1,2]", value=[1, 2]),
    Record("number-payload", "payload", "payload is a JSON number, not an object",
           text="1", value=1),
    Record("null-payload", "payload", "payload is JSON null, not an object",
           text="null", value=None),
    Record("string-payload", "payload", "payload is a JSON string, not an object",
           text='"text"',
           why_not={"append-dicts": "a Python str payload is JSON text: that is the "
                                    "append-dicts-text form",
                    "inline": "a JSON Lines string payload is JSON text: that is the "
                              "jsonl-text form"}),
    Record("too-deep", "payload", "nests objects/arrays more than 200 levels deep",
           text='{"a":' + "[" * 200 + "]" * 200 + "}", value={"a": _deep_list(200)}),
]

PATHS = ["append-dicts", "append-dicts-text", "append-arrow", "append-arrow-nested",
         "append-polars",
         *[f"{how}-{kind}" for how in ("cli", "inbox")
           for kind in ("jsonl", "jsonl-text", "csv", "parquet", "parquet-nested")]]


def needs(path: str) -> str:
    """What form of a record a path writes: value, text, nested, line, or columns."""
    if path == "append-dicts":
        return "value"
    if path.endswith("nested"):
        return "nested"
    if path.endswith("-jsonl"):
        return "inline"  # the payload as an object in the line: from text (or a line)
    return "text"


def explicit(record: Record, path: str) -> str | None:
    """A reason the record itself gives for having no form on `path`."""
    kind = needs(path)
    for key in (path, kind, "text" if kind in ("text", "inline") else kind):
        if key in record.why_not:
            return record.why_not[key]
    return None


def form(record: Record, path: str) -> bool:
    """Whether `record` can be written for `path` at all."""
    if explicit(record, path) is not None:
        return False
    kind = needs(path)
    if kind == "value":
        return record.value is not MISSING
    if kind == "nested":
        return record.nested is not None
    if kind == "inline":
        return record.text is not None or record.line is not None
    return record.text is not None or (record.columns is not None
                                       and path not in ("append-dicts-text", "append-polars")
                                       and not path.endswith("jsonl-text"))


def why_not(record: Record, path: str) -> str | None:
    kind = needs(path)
    if explicit(record, path) is not None:
        return explicit(record, path)
    if kind == "value":
        return NO_DUP_DICT if record.id.startswith("dup") else None
    if kind == "nested":
        if record.text is not None and any(c in record.text for c in ("\\ud", "\\udc")):
            return NO_ARROW_SURROGATE
        if record.value is not MISSING and any(
                isinstance(v, int) and not -(2**63) <= v < 2**64
                for v in _leaves(record.value)):
            return NO_ARROW_BIG
        if record.id.endswith("payload"):
            return "a struct or map column holds objects only"
        if record.id == "dup-key-record-level":
            return "a record-level problem: the Arrow/Parquet text forms have it as columns"
        if record.id in ("colons-and-escapes", "float-1e400", "too-deep"):
            return "a JSON text matter (escapes, a token, nesting): covered by the text forms"
    if kind in ("text", "inline") and record.value is not MISSING and record.text is None:
        return NO_TEXT_KEY
    if record.id == "dup-key-record-level" and path.endswith("jsonl-text"):
        return "the record-level problem is in the line, not in the payload text"
    return None


def _leaves(value: Any) -> list[Any]:
    out, stack = [], [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        else:
            out.append(item)
    return out


CELLS = [(r, p) for r in RECORDS for p in PATHS if form(r, p)]
NOT_EXPRESSIBLE = {(r.id, p): why_not(r, p) for r in RECORDS for p in PATHS if not form(r, p)}


def test_every_cell_is_run_or_explained() -> None:
    unexplained = [cell for cell, why in NOT_EXPRESSIBLE.items() if not why]
    assert not unexplained
    assert len(CELLS) + len(NOT_EXPRESSIBLE) == len(RECORDS) * len(PATHS)
    # Every record is run on an append path, and on a CLI and an inbox path unless it exists
    # as a Python value only (a None key: no file format holds one).
    for record in RECORDS:
        ran = {p.split("-")[0] for r, p in CELLS if r is record}
        files = record.text or record.line or record.nested
        assert ran == ({"append", "cli", "inbox"} if files else {"append"}), record.id


# -- building the inputs ---------------------------------------------------------------------


def good_payload(i: int) -> dict[str, int]:
    return {"i": i}


def records_for(record: Record, path: str) -> list[dict[str, Any]]:
    """The 300 records of an `append-dicts*` cell."""
    payload = record.value if path == "append-dicts" else record.text
    rows = [{"type": "note", "partition": "p", "payload": good_payload(i)} for i in range(GOOD)]
    rows.insert(AT, {"type": "note", "partition": "p", "payload": payload})
    return rows


def table_for(record: Record, path: str) -> pa.Table:
    """The Arrow table of an Arrow/Polars/Parquet cell."""
    n = GOOD + 1
    if path.endswith("nested"):
        assert record.nested is not None
        kind, bad, good = record.nested
        values = [good] * n
        values[AT] = bad
        return pa.table({"type": ["note"] * n, "partition": ["p"] * n,
                         "payload": pa.array(values, kind)})
    if record.text is None:  # a table-level problem: its columns
        assert record.columns is not None
        cells = {"type": "note", "payload": "{}", "partition": "p"}
        return pa.table([pa.array([cells[c]] * n) for c in record.columns],
                        names=record.columns)
    texts = [json.dumps(good_payload(i)) for i in range(GOOD)]
    texts.insert(AT, record.text)
    return pa.table({"type": ["note"] * n, "partition": ["p"] * n, "payload": texts})


def write_file(record: Record, path: str, folder: Path) -> tuple[Path, int]:
    """The file of a CLI/inbox cell, and how many lines come before the first record."""
    kind = path.split("-", 1)[1]
    name = folder / f"{record.id}-{path}"  # the name is part of the batch identity
    if kind == "jsonl" or kind == "jsonl-text":
        lines = [json.dumps({"type": "note", "partition": "p", "payload": good_payload(i)})
                 for i in range(GOOD)]
        if record.line is not None and record.text is None:
            bad = record.line
        elif kind == "jsonl":
            bad = '{"type":"note","partition":"p","payload":' + str(record.text) + "}"
        else:
            bad = json.dumps({"type": "note", "partition": "p", "payload": record.text})
        lines.insert(AT, bad)
        target = name.with_suffix(".jsonl")
        target.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return target, 0
    if kind == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        if record.text is None:
            assert record.columns is not None
            cells = {"type": "note", "payload": "{}", "partition": "p"}
            writer.writerow(record.columns)
            writer.writerows([[cells[c] for c in record.columns]] * (GOOD + 1))
        else:
            writer.writerow(["type", "payload", "partition"])
            rows = [["note", json.dumps(good_payload(i)), "p"] for i in range(GOOD)]
            rows.insert(AT, ["note", record.text, "p"])
            writer.writerows(rows)
        target = name.with_suffix(".csv")
        target.write_text(out.getvalue(), encoding="utf-8")
        return target, 1
    target = name.with_suffix(".parquet")
    pq.write_table(table_for(record, path), target)
    return target, 0


# -- running a cell ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What a path did with the hostile record: accepted (its stored payload text), or
    refused with the record's position (None: the whole batch or file), field and reason."""

    accepted: bool
    stored: str | None = None
    position: int | None = None
    field: str | None = None
    reason: str | None = None


def stored_payload(lake: el.Lake, seq: int) -> str:
    frame = lake.events(since_seq=seq - 1).filter(pl.col("seq") == seq).collect()
    assert frame.height == 1
    return str(frame.get_column("payload")[0])


def run_append(lake: el.Lake, record: Record, path: str) -> Outcome:
    events: Any
    if path.startswith("append-dicts"):
        events = records_for(record, path)
    else:
        events = table_for(record, path)
        if path == "append-polars":
            events = pl.from_arrow(events)
    before = lake.last_seq()
    try:
        result = lake.append(events)
    except InvalidEventError as exc:
        assert lake.last_seq() == before  # nothing of the batch was written
        return Outcome(False, position=exc.index, field=exc.field, reason=exc.reason)
    assert result.count == GOOD + 1
    return Outcome(True, stored=stored_payload(lake, result.first_seq + AT))


def run_file(lake: el.Lake, record: Record, path: str, folder: Path,
             capsys: pytest.CaptureFixture[str]) -> Outcome:
    target, header = write_file(record, path, folder)
    quarantine = folder / "quarantine"
    if path.startswith("cli"):
        capsys.readouterr()
        code = main(["ingest", str(target), "--lake", lake.root, "--quarantine-dir",
                     str(quarantine), "--json"])
        assert code == 0, capsys.readouterr()
        [result] = json.loads(capsys.readouterr().out)["files"]
    else:
        result = ingest_file(lake, target, quarantine_dir=quarantine).to_json()
    if not result["quarantined"]:
        assert (result["records"], result["events"]) == (GOOD + 1, GOOD + 1)
        return Outcome(True, stored=stored_payload(lake, result["first_seq"] + AT))
    [entry] = [e for e in read_quarantine(quarantine) if e["file"] == str(target)]
    if result["unreadable"]:  # refused whole: nothing of the file landed
        assert result["events"] == 0 and entry["line"] is None
        return Outcome(False, field=entry["field"], reason=entry["reason"])
    assert (result["records"], result["events"], result["quarantined"]) == (GOOD + 1, GOOD, 1)
    return Outcome(False, position=entry["line"] - header - 1, field=entry["field"],
                   reason=entry["reason"])


@pytest.fixture(scope="module")
def lakes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, el.Lake]:
    return {}


@pytest.fixture
def lake(lakes: dict[str, el.Lake], lake_layout: str,
         tmp_path_factory: pytest.TempPathFactory) -> el.Lake:
    # One lake per layout, shared by that layout's cells. Not one lake for all: a file ingested
    # twice with the same bytes is a batch that has landed, and the second cell would see 0 events.
    if lake_layout not in lakes:
        lakes[lake_layout] = el.Lake.open(tmp_path_factory.mktemp("hostile") / "lake")
        assert lakes[lake_layout].layout == Layout.parse(lake_layout)
    return lakes[lake_layout]


@pytest.mark.parametrize(("record", "path"), CELLS, ids=[f"{r.id}|{p}" for r, p in CELLS])
def test_hostile_record_gets_the_same_verdict_on_every_path(
        lake: el.Lake, record: Record, path: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    if path.startswith("append"):
        outcome = run_append(lake, record, path)
    else:
        outcome = run_file(lake, record, path, tmp_path, capsys)
    if record.field is None:
        assert outcome.accepted, outcome
        assert outcome.stored is not None
        # Read back by Python's json (an independent reader): exact, type for type.
        assert exact(json.loads(outcome.stored), record.expected)
        return
    assert not outcome.accepted, f"{record.id} was accepted on {path}"
    assert outcome.field == record.field, outcome
    table_level = record.columns is not None and (
        needs(path) == "text" and record.text is None)
    if table_level:
        # A column twice refuses the whole table or file, naming the column.
        assert outcome.position is None
        assert outcome.reason is not None and "column 'type' appears twice" in outcome.reason
        return
    assert outcome.position == AT, outcome
    assert outcome.reason is not None
    if record.reason is not None:
        # `Lake.append` gives the reason itself; files quarantine it with field and hint.
        if path.startswith("append"):
            assert outcome.reason == record.reason
        else:
            assert f"field {record.field!r}: {record.reason}" in outcome.reason
    else:
        assert "appears twice" in outcome.reason
