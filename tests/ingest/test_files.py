"""Reading inbox files (eventlake/files.py): formats, per-line problems, batch identity."""

from __future__ import annotations

import json
import re
import tempfile
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventlake.errors import InvalidEventError
from eventlake.ingest import files
from eventlake.ingest.files import (
    RecordProblem,
    check_file,
    file_batch_identity,
    read_chunks,
    read_file,
    split_valid,
)
from eventlake.model import jsoncodec

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"
SAMPLE_FILES = sorted(p for p in SAMPLES.iterdir() if p.suffix in {".jsonl", ".csv", ".parquet"})


def good(i: int = 0, **extra) -> dict:
    return {"type": "deposit", "payload": {"amount": i}, "partition": f"p{i % 3}", **extra}


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- JSON Lines ------------------------------------------------------------------------------


def test_jsonl_reads_records_with_line_numbers(tmp_path):
    path = write_lines(tmp_path / "a.jsonl", [json.dumps(good(1)), "", "   ",
                                              json.dumps(good(2, event_id="e2"))])
    read = read_file(path)
    assert read.format == "jsonl"
    assert [line for line, _ in read.records] == [1, 4]
    assert read.records[1][1]["event_id"] == "e2"
    assert read.errors == []
    assert read.read == 2


@pytest.mark.parametrize("suffix", [".ndjson", ".json", ".JSONL"])
def test_jsonl_suffixes(tmp_path, suffix):
    path = write_lines(tmp_path / f"a{suffix}", [json.dumps(good(1))])
    assert len(read_file(path).records) == 1


def test_jsonl_bad_lines_are_problems_naming_the_line(tmp_path):
    path = write_lines(tmp_path / "a.jsonl", [
        json.dumps(good(1)),
        "{not json",
        "[1, 2]",
        '{"type": "x", "payload": {"v": NaN}, "partition": "p"}',
        json.dumps(good(5)),
    ])
    read = read_file(path)
    assert [line for line, _ in read.records] == [1, 5]
    assert [(p.line, p.raw) for p in read.errors] == [
        (2, "{not json"), (3, "[1, 2]"),
        (4, '{"type": "x", "payload": {"v": NaN}, "partition": "p"}')]
    assert "not valid JSON" in read.errors[0].reason
    assert "array, not an object" in read.errors[1].reason
    assert str(read.errors[0]).startswith(f"{path}, line 2: ")


def test_jsonl_keeps_unicode_line_separators_inside_strings(tmp_path):
    record = good(1)
    record["payload"] = {"text": "a\u2028b\u0085c"}
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    read = read_file(path)
    assert read.errors == []
    assert read.records[0][1]["payload"]["text"] == "a\u2028b\u0085c"


def test_jsonl_with_bom_and_crlf(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (json.dumps(good(1)) + "\r\n").encode() * 2)
    read = read_file(path)
    assert [line for line, _ in read.records] == [1, 2]


# -- CSV -------------------------------------------------------------------------------------


def test_csv_reads_rows_and_skips_empty_optional_cells(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(
        'type,payload,partition_id,event_id,ts\n'
        'deposit,"{""amount"": 5}",acct-1,e1,2024-01-01T00:00:00Z\n'
        'deposit,"{""amount"": 6}",acct-2,,\n', encoding="utf-8")
    read = read_file(path)
    assert read.format == "csv"
    assert read.records == [
        (2, {"type": "deposit", "payload": '{"amount": 5}', "partition_id": "acct-1",
             "event_id": "e1", "ts": "2024-01-01T00:00:00Z"}),
        (3, {"type": "deposit", "payload": '{"amount": 6}', "partition_id": "acct-2"}),
    ]
    good_records, bad = split_valid(read.records, file=str(path))
    assert len(good_records) == 2 and bad == []


def test_csv_bad_rows_name_their_line(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(
        'type,payload,partition\n'
        'deposit,"{""amount"": 5}",p\n'
        'deposit,"{""note"":\n""two lines""}",p\n'  # a quoted newline: lines 3-4
        'deposit,not json,p\n'
        'deposit,"[1]",p\n'
        'deposit,,p\n'
        'deposit,"{}"\n'
        '\n'
        'deposit,"{}",p\n', encoding="utf-8")
    read = read_file(path)
    # Reading splits rows; the payload text is the record check's to decide (as for a payload
    # string given to `Lake.append`), so `check_file` names those rows.
    assert [line for line, _ in read.records] == [2, 3, 5, 6, 7, 10]
    assert read.records[1][1]["payload"] == '{"note":\n"two lines"}'
    assert [p.line for p in read.errors] == [8]
    assert "has 2 fields" in read.errors[0].reason
    checked = check_file(path)
    assert [line for line, _ in checked.good] == [2, 3, 10]
    assert [p.line for p in checked.problems] == [5, 6, 7, 8]
    assert all(p.field == "payload" for p in checked.problems[:3])
    assert "not valid JSON" in checked.problems[0].reason
    assert checked.problems[0].raw.startswith("{") and "not json" in checked.problems[0].raw


@pytest.mark.parametrize("header, message", [
    ("type,payload", "missing column 'partition'"),
    ("type,partition", "missing column 'payload'"),
    ("type,payload,partition,extra", "unknown column 'extra'"),
    ("type,payload,type,partition", "column 'type' appears twice"),
    ("type,payload,partition,partition_id", "both 'partition' and 'partition_id'"),
])
def test_csv_bad_header_fails_the_whole_file(tmp_path, header, message):
    path = tmp_path / "a.csv"
    path.write_text(header + "\nx,{},p\n", encoding="utf-8")
    with pytest.raises(InvalidEventError, match=re.escape(message)) as info:
        read_file(path)
    assert info.value.source == str(path)


# -- Parquet ---------------------------------------------------------------------------------


def test_parquet_with_json_text_payload(tmp_path):
    path = tmp_path / "a.parquet"
    stamp = datetime(2024, 1, 1, tzinfo=UTC)
    pq.write_table(pa.table({
        "type": ["deposit", "deposit", "deposit"],
        "payload": ['{"amount": 1}', "nope", '{"amount": 3}'],
        "partition_id": ["a", "b", "c"],
        "event_id": ["e1", None, "e3"],
        "ts": pa.array([stamp, None, stamp], pa.timestamp("us", tz="UTC")),
    }), path)
    read = read_file(path)
    assert read.format == "parquet"
    assert read.records[0][1] == {"type": "deposit", "payload": '{"amount": 1}',
                                  "partition_id": "a", "event_id": "e1", "ts": stamp}
    checked = check_file(path)
    assert [line for line, _ in checked.good] == [1, 3]
    assert [(p.line, p.field) for p in checked.problems] == [(2, "payload")]
    assert str(checked.problems[0]).startswith(f"{path}, row 2: ")


def test_parquet_with_struct_payload(tmp_path):
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({
        "type": ["deposit"], "partition": ["a"],
        "payload": pa.array([{"amount": 5, "currency": "EUR"}]),
    }), path)
    read = read_file(path)
    assert read.records == [(1, {"type": "deposit", "partition": "a",
                                 "payload": {"amount": 5, "currency": "EUR"}})]


# -- unreadable files ------------------------------------------------------------------------


@pytest.mark.parametrize("name, content", [
    ("garbage.jsonl", b"\xff\xfe\x00\x81garbage\x00\x00"),
    ("latin1.jsonl", '{"type": "caf\xe9"}\n'.encode("latin-1")),
    ("nul.jsonl", b'{"type": "a"}\n\x00\x00\n'),
    ("garbage.parquet", b"PAR1 but not really"),
    ("text.parquet", b'{"type": "a", "payload": {}, "partition": "p"}\n'),
    ("garbage.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
    ("empty.csv", b""),
    ("events.txt", b'{"type": "a", "payload": {}, "partition": "p"}\n'),
    ("noext", b"{}"),
])
def test_unreadable_files_raise_with_the_path(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InvalidEventError) as info:
        read_file(path)
    assert info.value.source == str(path)
    assert str(path) in str(info.value)


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_file(tmp_path / "missing.jsonl")
    with pytest.raises(FileNotFoundError):
        read_file(tmp_path / "missing.parquet")


# -- validation ------------------------------------------------------------------------------


def test_split_valid_names_field_and_keeps_counts():
    records = [(1, good(1)), (2, {"type": "", "payload": {}, "partition": "p"}),
               (3, good(3)), (4, {"type": "x", "payload": [], "partition": "p"}),
               (5, {"type": "x", "payload": {}, "partition": "a/../b"}),
               (6, {"type": "x", "payload": {}}),
               (7, good(7, ts="yesterday")), (8, good(8))]
    ok, bad = split_valid(records, file="in.jsonl")
    assert [line for line, _ in ok] == [1, 3, 8]
    assert [(p.line, p.field) for p in bad] == [
        (2, "type"), (4, "payload"), (5, "partition"), (6, "partition"), (7, "ts")]
    assert all(p.file == "in.jsonl" for p in bad)
    # The reason names the field but not the index of an internal sub-batch.
    assert bad[0].reason.startswith("field 'type': ")
    assert "record" not in bad[0].reason
    assert len(ok) + len(bad) == len(records)


def test_split_valid_all_good_is_returned_as_is():
    records = [(i + 1, good(i)) for i in range(10)]
    assert split_valid(records) == (records, [])


def test_duplicate_event_ids_keep_the_first():
    records = [(1, good(1, event_id="a")), (2, good(2, event_id="b")),
               (3, good(3, event_id="a")), (4, good(4, event_id="a"))]
    ok, bad = split_valid(records)
    assert [line for line, _ in ok] == [1, 2]
    assert [(p.line, p.field) for p in bad] == [(3, "event_id"), (4, "event_id")]
    assert "duplicate event_id 'a'" in bad[0].reason and "also line 1" in bad[0].reason


def test_duplicate_of_an_invalid_record_is_not_a_duplicate():
    invalid = {"type": "", "payload": {}, "partition": "p", "event_id": "a"}
    records = [(1, invalid), (2, good(2, event_id="a")), (3, good(3, event_id="a"))]
    ok, bad = split_valid(records)
    assert [line for line, _ in ok] == [2]
    assert [(p.line, p.field) for p in bad] == [(1, "type"), (3, "event_id")]
    assert "also line 2" in bad[1].reason


def test_many_records_with_few_bad_ones():
    records = [(i + 1, good(i)) for i in range(5000)]
    for line in (7, 2500, 4999):
        records[line - 1] = (line, {"type": "x", "payload": "[]", "partition": "p"})
    ok, bad = split_valid(records)
    assert [p.line for p in bad] == [7, 2500, 4999]
    assert len(ok) == 4997


def test_problem_as_error_names_file_line_and_field():
    problem = RecordProblem("in/x.jsonl", 12, "field 'payload': payload is null", "{}",
                            field="payload")
    error = problem.to_error(note="nothing written")
    assert isinstance(error, InvalidEventError)
    assert str(error) == "in/x.jsonl, line 12: field 'payload': payload is null [nothing written]"
    assert error.field == "payload"
    assert problem.to_json() == {"file": "in/x.jsonl", "line": 12, "field": "payload",
                                 "reason": "field 'payload': payload is null", "raw": "{}"}


# -- property: nothing is dropped ------------------------------------------------------------

_labels = st.text(alphabet="abcxyz-_0123456789", min_size=1, max_size=8)
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                     st.text(max_size=10))
_good_line = st.fixed_dictionaries(
    {"type": _labels, "partition": _labels,
     "payload": st.dictionaries(_labels, _scalars, max_size=3)},
    optional={"event_id": st.sampled_from(["e1", "e2", "e3"])},
).map(lambda record: ("good", json.dumps(record, ensure_ascii=False)))
_bad_line = st.one_of(
    st.sampled_from(["{", "nope", "[1]", '"text"', "42", "null", '{"a": NaN}',
                     '{"type": "x", "payload": {}}',
                     '{"type": "", "payload": {}, "partition": "p"}',
                     '{"type": "x", "payload": [1], "partition": "p"}',
                     '{"type": "x", "payload": {}, "partition": "../up"}',
                     '{"type": "x", "payload": "{\\"a\\": 1}", "partition": "p", "ts": 5}']),
    st.text(alphabet="{}[]\":,ab ", min_size=1, max_size=12).filter(
        lambda t: t.strip() != "" and not _is_object(t)),
).map(lambda text: ("bad", text))
_blank = st.sampled_from(["", "  ", "\t"]).map(lambda text: ("blank", text))


def _is_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_good_line, _bad_line, _blank), max_size=40))
def test_property_every_line_is_good_or_a_problem(lines):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mixed.jsonl"
        write_lines(path, [text for _, text in lines])
        read = read_file(path)
        ok, bad = split_valid(read.records, file=str(path))
        checked = check_file(path)
    non_blank = [n for n, (kind, _) in enumerate(lines, start=1) if kind != "blank"]
    assert read.read == len(non_blank)
    assert len(ok) + len(bad) == len(read.records)
    assert checked.read == len(checked.good) + len(checked.problems) == len(non_blank)
    # Every non-blank line is accounted for exactly once.
    seen = sorted([line for line, _ in checked.good] + [p.line for p in checked.problems])
    assert seen == non_blank
    # Expected good lines: well-formed records whose event_id was not used by an earlier one.
    expected_good, used = [], set()
    for number, (kind, text) in enumerate(lines, start=1):
        if kind != "good":
            continue
        event_id = json.loads(text).get("event_id")
        if event_id in used:
            continue
        if event_id is not None:
            used.add(event_id)
        expected_good.append(number)
    assert [line for line, _ in checked.good] == expected_good
    assert all(p.file == str(path) and p.reason for p in checked.problems)


# -- batch identity --------------------------------------------------------------------------


def test_identity_is_stable_and_content_addressed(tmp_path):
    a = write_lines(tmp_path / "a.jsonl", [json.dumps(good(1))])
    first = file_batch_identity(a)
    assert first == file_batch_identity(a)
    assert first[0] == "inbox"
    assert first[1].startswith("a.jsonl@") and len(first[1]) == len("a.jsonl@") + 16
    copy = tmp_path / "sub"
    copy.mkdir()
    (copy / "a.jsonl").write_bytes(a.read_bytes())
    assert file_batch_identity(copy / "a.jsonl") == first  # same name and bytes, any folder
    b = tmp_path / "b.jsonl"
    b.write_bytes(a.read_bytes())
    assert file_batch_identity(b) != first
    write_lines(a, [json.dumps(good(2))])
    assert file_batch_identity(a) != first
    assert file_batch_identity(a, producer="crm")[0] == "crm"


# -- the shipped samples ---------------------------------------------------------------------


def test_samples_are_all_valid():
    assert [p.name for p in SAMPLE_FILES] == [
        "01-workspaces.jsonl", "02-accounts.csv", "03-accounts.parquet", "04-mixed.jsonl"]
    total = 0
    for path in SAMPLE_FILES:
        checked = check_file(path)
        assert checked.problems == [], path
        total += checked.read
    assert 300 <= total <= 2000
    assert (SAMPLES / "03-accounts.parquet").stat().st_size < 100_000


def test_sample_state_actions_apply_cleanly_in_order():
    from eventlake.model.actions import apply_action, is_state_action

    states: dict[str, dict] = defaultdict(dict)
    kinds: set[str] = set()
    for path in SAMPLE_FILES:
        for _, record in check_file(path).good:
            payload = record["payload"]
            if isinstance(payload, str):
                payload = json.loads(payload)
            partition = record.get("partition") or record["partition_id"]
            kinds.add(record["type"])
            if is_state_action(record["type"]):
                states[partition] = apply_action(states[partition], record["type"], payload)
    assert {"set", "unset", "treePush", "treeUpdate", "treeMove", "treeDelete",
            "deposit", "withdrawal"} <= kinds
    for number in range(1, 7):
        files = states[f"workspace-{number}"]["files"]
        ids: list[str] = []
        stack = list(files["tree"])
        while stack:
            node = stack.pop()
            ids.append(node["id"])
            stack.extend(node["children"])
        # Tree and items agree: no node fell out of the tree, no item lost its node.
        assert sorted(ids) == sorted(files["items"])
    assert states["acct-001"]["profile"]["owner"] == "Owner 001"


def test_generator_is_deterministic(tmp_path):
    import runpy

    module = runpy.run_path(str(SAMPLES / "generate.py"))
    counts = module["generate"](tmp_path)
    for name, count in counts.items():
        assert (tmp_path / name).read_bytes() == (SAMPLES / name).read_bytes(), name
        assert check_file(tmp_path / name).read == count


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_good_line, _good_line, _bad_line, _blank), max_size=30),
       st.sampled_from([1, 2, 3, 7]), st.integers(1, 9))
def test_jsonl_reads_the_same_in_blocks_of_any_size(lines, block, chunk):
    # Lines are decoded a block at a time (a block with a bad line line by line): block
    # boundaries must change nothing of what a chunk holds, down to positions.
    def chunks(size: int) -> list[files.Chunk]:
        saved, files._JSONL_BLOCK = files._JSONL_BLOCK, size
        try:
            return list(read_chunks(path, chunk_records=chunk))
        finally:
            files._JSONL_BLOCK = saved

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mixed.jsonl"
        write_lines(path, [text for _, text in lines])
        whole, blocked = chunks(10**6), chunks(block)
    assert blocked == whole
    objects = [n for n, (kind, text) in enumerate(lines, start=1)
               if kind != "blank" and _strict_object(text)]
    assert [line for chunk in blocked for line, _ in chunk.records] == objects


def _strict_object(text: str) -> bool:
    """A line the reader takes as a record: one JSON object by the strict codec, decoded on
    its own (the reference the block decoding must agree with)."""
    try:
        return type(jsoncodec.loads(text.strip())) is dict
    except InvalidEventError:
        return False
