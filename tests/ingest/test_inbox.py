"""Landing inbox files with quarantine (eventlake/inbox.py): exactly once, nothing dropped."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

import eventlake as el
from eventlake.errors import (
    ChangedFileError,
    CommitConflictError,
    EventlakeError,
    InvalidEventError,
)
from eventlake.ingest import inbox
from eventlake.ingest.files import check_file, file_batch_identity
from eventlake.ingest.inbox import (
    FileIngestResult,
    IngestTotals,
    inbox_files,
    ingest_file,
    ingest_files,
    read_quarantine,
)
from eventlake.store.log import EventLog
from tests.racing import at_once
from tests.samples import SAMPLE_FILES, SAMPLES


def good(partition: str, amount: int = 1) -> str:
    return json.dumps({"type": "deposit", "payload": {"amount": amount}, "partition": partition})


def write_mixed(folder: Path, name: str = "orders.jsonl") -> Path:
    """Five lines: three good, a payload that is not an object, and broken JSON."""
    path = folder / name
    lines = [good("acct-001"), good("acct-002"),
             json.dumps({"type": "deposit", "payload": "[1, 2]", "partition": "acct-003"}),
             "{oops", good("acct-005")]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_sample_inbox_lands_every_record_once(lake, tmp_path):
    results = ingest_files(lake, inbox_files(SAMPLES), quarantine_dir=tmp_path / "q")
    assert [Path(r.file).name for r in results] == [p.name for p in SAMPLE_FILES]
    for result, path in zip(results, SAMPLE_FILES, strict=True):
        assert result.records == check_file(path).read == result.events
        assert (result.quarantined, result.duplicate, result.unreadable) == (0, False, False)
        assert (result.producer, result.batch_no) == file_batch_identity(path)
    totals = IngestTotals.of(results)
    assert (totals.files, totals.batches, totals.events, totals.quarantined) == (4, 4, 1778, 0)
    assert lake.last_seq() == 1778
    assert not (tmp_path / "q").exists()
    again = ingest_files(lake, inbox_files(SAMPLES), quarantine_dir=tmp_path / "q")
    assert all(r.duplicate and r.events == 0 and r.records is None for r in again)
    assert IngestTotals.of(again).duplicates == 4
    assert lake.last_seq() == 1778


def test_bad_records_are_quarantined_and_counts_add_up(lake, tmp_path):
    path = write_mixed(tmp_path)
    result = ingest_file(lake, path)
    assert (result.records, result.events, result.quarantined) == (5, 3, 2)
    assert result.events + result.quarantined == result.records
    target = Path(lake.root) / "quarantine" / f"{file_batch_identity(path)[1]}.jsonl"
    assert result.quarantine_file == str(target)
    entries = [json.loads(line) for line in target.read_text().splitlines()]
    assert [(e["file"], e["line"]) for e in entries] == [(str(path), 3), (str(path), 4)]
    assert entries[0]["field"] == "payload" and "object" in entries[0]["reason"]
    assert "not valid JSON" in entries[1]["reason"] and entries[1]["raw"] == "{oops"
    assert lake.events().collect()["partition_id"].to_list() == ["acct-001", "acct-002",
                                                                 "acct-005"]
    # Re-running the file is a no-op, and its quarantine file holds each entry once.
    again = ingest_file(lake, path)
    assert again.duplicate and again.quarantined == 0
    assert read_quarantine(target.parent) == entries
    assert lake.last_seq() == 3


def test_unreadable_file_is_quarantined_whole_and_the_run_goes_on(lake, tmp_path):
    garbage = tmp_path / "01-blob.parquet"
    garbage.write_bytes(b"not parquet at all")
    binary = tmp_path / "02-binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    fine = shutil.copy(SAMPLES / "02-accounts.csv", tmp_path / "03-accounts.csv")
    results = ingest_files(lake, inbox_files(tmp_path))
    assert [r.unreadable for r in results] == [True, True, False]
    assert [r.quarantined for r in results] == [1, 1, 0]
    assert results[2].events == 500 and lake.last_seq() == 500
    entries = read_quarantine(Path(lake.root) / "quarantine")
    assert [e["line"] for e in entries] == [None, None]
    assert str(garbage) in entries[0]["reason"] and entries[0]["raw"] == "not parquet at all"
    assert "not UTF-8" in entries[1]["reason"] and entries[1]["raw"].endswith("garbage")
    # Handled once: a re-run skips all three files.
    assert all(r.duplicate for r in ingest_files(lake, [garbage, binary, fine]))
    assert len(read_quarantine(Path(lake.root) / "quarantine")) == 2


def test_big_unreadable_file_is_named_not_copied(lake, tmp_path, monkeypatch):
    monkeypatch.setattr(inbox, "RAW_COPY_LIMIT", 10)
    garbage = tmp_path / "blob.csv"
    garbage.write_text("no,header,here\n1,2,3\n")
    result = ingest_file(lake, garbage)
    (entry,) = read_quarantine(Path(lake.root) / "quarantine")
    assert result.unreadable and entry["raw"] is None and str(garbage) in entry["reason"]


def test_file_with_only_bad_records_is_handled_once(lake, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("[1]\n{}\n", encoding="utf-8")
    first = ingest_file(lake, path)
    assert (first.records, first.events, first.quarantined, first.duplicate) == (2, 0, 2, False)
    assert ingest_file(lake, path).duplicate
    assert lake.last_seq() == 0


def test_two_versions_of_a_file_keep_separate_quarantine_files(lake, tmp_path):
    path = write_mixed(tmp_path)
    ingest_file(lake, path)
    path.write_text(path.read_text() + "{broken again\n", encoding="utf-8")
    # Same name, other content: refused, as it would land the good records twice ...
    with pytest.raises(ChangedFileError, match="quarantine replay") as info:
        ingest_file(lake, path)
    assert (info.value.file, info.value.producer) == (str(path), "inbox")
    assert lake.last_seq() == 3
    # ... unless it is meant as a new file.
    second = ingest_file(lake, path, as_new=True)
    assert (second.records, second.events, second.quarantined) == (6, 3, 3)
    files = sorted((Path(lake.root) / "quarantine").glob("*.jsonl"))
    assert len(files) == 2 and all(f.name.startswith("orders.jsonl@") for f in files)
    assert len(read_quarantine(files[0].parent)) == 5


def amounts_of(lake) -> list[int]:
    frame = lake.events().select("payload").collect()
    return sorted(json.loads(text)["amount"] for text in frame["payload"].to_list())


def numbered(path: Path, amounts: range) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(good("acct-001", n) + "\n" for n in amounts), encoding="utf-8")
    return path


@pytest.mark.parametrize("chunk_events", [100, 4])
def test_a_file_of_that_name_landing_meanwhile_refuses_the_other_content(
        lake, tmp_path, monkeypatch, chunk_events):
    # Another ingest lands `orders.jsonl` with other content after this one admitted its
    # file and before its first chunk commits: this one must be refused, as it would be
    # one after the other, not land a second version of the name.
    mine = numbered(tmp_path / "a" / "orders.jsonl", range(10))
    theirs = numbered(tmp_path / "b" / "orders.jsonl", range(100, 110))
    original = EventLog.append
    raced = []

    def other_writer_first(self, batch, **kwargs):
        if not raced:
            raced.append(1)
            ingest_file(el.Lake.open(lake.root, create=False), theirs)
        return original(self, batch, **kwargs)

    monkeypatch.setattr(EventLog, "append", other_writer_first)
    with pytest.raises(ChangedFileError, match="other content") as info:
        ingest_file(lake, mine, chunk_events=chunk_events)
    assert info.value.file == str(mine)
    assert amounts_of(lake) == list(range(100, 110))
    monkeypatch.setattr(EventLog, "append", original)
    assert ingest_file(lake, theirs).duplicate
    # Meant as a new file, it lands whole after all.
    assert ingest_file(lake, mine, as_new=True, chunk_events=chunk_events).events == 10
    assert amounts_of(lake) == [*range(10), *range(100, 110)]


def test_ingests_racing_with_other_contents_under_one_name_land_one(lake, tmp_path):
    versions = [numbered(tmp_path / str(n) / "orders.jsonl", range(100 * n, 100 * n + 5))
                for n in range(4)]
    outcomes = at_once(lambda path: ingest_file(lake, path), versions)
    landed = [n for n, outcome in enumerate(outcomes) if isinstance(outcome, FileIngestResult)]
    refused = [o for o in outcomes if isinstance(o, ChangedFileError)]
    assert len(landed) == 1 and len(refused) == 3, outcomes
    (n,) = landed
    assert amounts_of(lake) == list(range(100 * n, 100 * n + 5))


def test_crash_after_quarantine_before_append_is_repaired_by_a_rerun(lake, tmp_path,
                                                                     monkeypatch):
    path = write_mixed(tmp_path)
    original = EventLog.append
    calls = []

    def failing(self, events, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise CommitConflictError("lost the race")
        return original(self, events, **kwargs)

    monkeypatch.setattr(EventLog, "append", failing)
    with pytest.raises(CommitConflictError):
        ingest_file(lake, path)
    assert lake.last_seq() == 0
    result = ingest_file(lake, path)
    assert (result.events, result.quarantined) == (3, 2)
    assert len(read_quarantine(Path(lake.root) / "quarantine")) == 2


def test_crash_after_append_lands_nothing_twice(lake, tmp_path, monkeypatch):
    path = write_mixed(tmp_path)
    original = EventLog.append

    def commit_then_fail(self, events, **kwargs):
        original(self, events, **kwargs)
        raise CommitConflictError("connection lost after commit")

    monkeypatch.setattr(EventLog, "append", commit_then_fail)
    with pytest.raises(CommitConflictError):
        ingest_file(lake, path)
    monkeypatch.setattr(EventLog, "append", original)
    assert ingest_file(lake, path).duplicate
    assert lake.last_seq() == 3


def test_strict_mode_raises_and_writes_nothing(lake, tmp_path):
    path = write_mixed(tmp_path)
    with pytest.raises(InvalidEventError, match="line 3") as info:
        ingest_file(lake, path, quarantine=False)
    assert "2 bad records" in str(info.value)
    garbage = tmp_path / "blob.parquet"
    garbage.write_bytes(b"nope")
    with pytest.raises(InvalidEventError, match="Parquet"):
        ingest_file(lake, garbage, quarantine=False)
    assert lake.last_seq() == 0 and not (Path(lake.root) / "quarantine").exists()


@pytest.mark.parametrize("seed", range(6))
def test_nothing_is_dropped_on_random_inputs(lake, tmp_path, seed):
    rng = random.Random(seed)
    lines = []
    for i in range(rng.randint(1, 40)):
        roll = rng.random()
        if roll < 0.6:
            lines.append(good(f"p{rng.randrange(3)}", i))
        elif roll < 0.7:
            lines.append("")  # blank lines are not records
        elif roll < 0.8:
            lines.append(json.dumps({"type": "", "payload": {}, "partition": "p"}))
        elif roll < 0.9:
            lines.append(json.dumps({"type": "x", "payload": {}, "partition": "p",
                                     "event_id": "dup"}))
        else:
            lines.append(rng.choice(["{", "[]", "null", '"text"', "{'a': 1}"]))
    path = tmp_path / f"random-{seed}.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = ingest_file(lake, path)
    non_blank = sum(1 for line in lines if line.strip())
    assert result.records == non_blank
    assert result.events + result.quarantined == result.records
    assert lake.last_seq() == result.events
    assert len(read_quarantine(Path(lake.root) / "quarantine")) == result.quarantined


def test_inbox_files_skips_hidden_partial_and_unknown_files(tmp_path):
    for name in ["b.csv", "a.jsonl", ".c.jsonl", "_d.parquet", "e.txt", "f.ndjson"]:
        (tmp_path / name).write_text("")
    (tmp_path / "sub.jsonl").mkdir()
    assert [p.name for p in inbox_files(tmp_path)] == ["a.jsonl", "b.csv", "f.ndjson"]
    with pytest.raises(EventlakeError, match="not a folder"):
        inbox_files(tmp_path / "missing")


def test_cli_ingest_of_a_folder_lists_what_the_inbox_lists(lake, tmp_path, capsys):
    # `.b.jsonl` and `_b.jsonl` are a producer's files still being written (write, then
    # rename): `eventlake ingest DIR` must leave them as the inbox flow does.
    from eventlake.cli import main

    folder = tmp_path / "inbox"
    folder.mkdir()
    for name in ["a.jsonl", ".b.jsonl", "_b.jsonl", "c.csv", "d.txt", "e.ndjson"]:
        if name.endswith("csv"):
            (folder / name).write_text('type,payload,partition\nx,"{}",p\n')
        else:
            (folder / name).write_text(good("p") + "\n")
    capsys.readouterr()
    assert main(["ingest", str(folder), "--lake", lake.root, "--json"]) == 0
    landed = [Path(r["file"]).name for r in json.loads(capsys.readouterr().out)["files"]]
    assert landed == [p.name for p in inbox_files(folder)] == ["a.jsonl", "c.csv", "e.ndjson"]


def test_result_json_matches_the_cli_shape(lake, tmp_path):
    result = ingest_file(lake, write_mixed(tmp_path)).to_json()
    assert {"file", "producer", "batch_no", "batch_id", "records", "events", "first_seq",
            "last_seq", "duplicate", "quarantined", "quarantine_file"} <= set(result)
    assert result["batch_id"] == f"inbox/{result['batch_no']}"
    assert (result["first_seq"], result["last_seq"]) == (1, 3)


def test_state_action_that_can_never_apply_is_quarantined_with_its_field(lake, tmp_path):
    path = tmp_path / "actions.jsonl"
    lines = [json.dumps({"type": "set", "payload": {"target": "a", "value": 1},
                         "partition": "doc"}),
             json.dumps({"type": "set", "payload": {"value": 2}, "partition": "doc"}),
             json.dumps({"type": "treeMove", "payload": {"target": "t", "options": {}},
                         "partition": "doc"}),
             json.dumps({"type": "set", "payload": {"target": "b", "value": 3},
                         "partition": "doc"})]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = ingest_file(lake, path)
    assert (result.records, result.events, result.quarantined) == (4, 2, 2)
    entries = read_quarantine(Path(lake.root) / "quarantine")
    assert [(e["line"], e["field"]) for e in entries] == [(2, "payload.target"),
                                                          (3, "payload.options.id")]
    lake.materialize()
    assert lake.state("doc") == {"a": 1, "b": 3}


# -- the columnar path for clean JSON Lines files -------------------------------------------

def landed(lake) -> list[tuple]:
    frame = lake.events().collect()
    return list(zip(*(frame.get_column(c).to_list()
                      for c in ("seq", "partition_id", "type", "payload", "event_id")),
                    strict=True))


def test_clean_file_lands_as_a_table_with_the_record_paths_result(tmp_path, monkeypatch):
    path = tmp_path / "clean.jsonl"
    rows = [{"type": "deposit", "payload": {"amount": i, "note": "é \"q\" \u2028", "f": 0.1,
                                            "big": 2**70, "nested": {"k": [1, {"x": None}]}},
             "partition": f"p{i % 4}"} for i in range(300)]
    rows[5]["event_id"] = "mine-5"
    rows[6]["ts"] = "2024-05-01T12:00:00+02:00"
    rows[7] = {"type": "set", "payload": {"target": "a.b", "value": [1]} | {
        "options": {"replace": True}}, "partition_id": "doc"}
    rows[8]["payload"] = json.dumps({"text": "as JSON text"})
    path.write_text("\r\n".join(json.dumps(r, ensure_ascii=i % 2 == 0)
                                for i, r in enumerate(rows)) + "\n\n", encoding="utf-8")
    fast = el.Lake.open(tmp_path / "fast")
    slow = el.Lake.open(tmp_path / "slow")
    tables = []
    original = inbox._as_table

    def spy(records, *, decoded):
        assert decoded  # a JSON Lines file's payloads come from the strict loads
        table = original(records, decoded=decoded)
        tables.append(type(table).__name__)
        return table

    monkeypatch.setattr(inbox, "_as_table", spy)
    first = ingest_file(fast, path)
    assert tables == ["Table"] and (first.records, first.events) == (300, 300)
    monkeypatch.setattr(inbox, "_as_table", lambda records, *, decoded: None)
    second = ingest_file(slow, path)
    assert second.events == 300
    assert landed(fast) == landed(slow)
    stamps = fast.events().collect().get_column("ts").to_list()
    assert stamps[6].isoformat() == "2024-05-01T10:00:00+00:00"


@pytest.mark.parametrize("line", [
    {"type": 5, "payload": {}, "partition": "p"},
    {"type": "t", "payload": {}, "partition": "p", "event_id": 7},
    {"type": "t", "payload": {}, "partition": "p", "ts": 1700000000},
    {"type": "t", "payload": [1], "partition": "p"},
    {"type": "t", "payload": None, "partition": "p"},
    {"type": "t", "payload": {"s": "\ud800"}, "partition": "p"},
    {"type": "t", "payload": {"f": 1e999}, "partition": "p"},
    {"type": "t", "payload": {}, "partition": "p", "partition_id": "p"},
    {"type": "t", "payload": {}, "partition": "p", "extra": 1},
    {"type": "t", "payload": {}},
    {"type": "t", "payload": '{"a": 1, "a": 2}', "partition": "p"},
    {"type": "set", "payload": {"value": 1}, "partition": "p"},
])
def test_a_bad_line_in_a_large_file_is_quarantined_by_its_line(lake, tmp_path, line):
    # Large enough for the columnar screen; the bad line sends the file down the record path.
    lines = [good(f"p{i % 3}", i) for i in range(400)]
    text = json.dumps(line)
    if "1e999" in str(line):
        text = text.replace("Infinity", "1e999")
    lines[123] = text
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = ingest_file(lake, path)
    assert (result.records, result.events, result.quarantined) == (400, 399, 1)
    [entry] = read_quarantine(Path(lake.root) / "quarantine")
    assert entry["line"] == 124 and entry["reason"]


def test_a_line_nested_past_the_recursion_limit_is_quarantined_with_its_record(lake, tmp_path):
    # The strict codec reads any depth; the record check refuses the payload (200 levels),
    # and the quarantine entry still holds the record.
    deep = '{"type": "t", "partition": "p", "payload": {"a": ' + "[" * 5000 + "]" * 5000 + "}}"
    path = tmp_path / "deep.jsonl"
    path.write_text(good("p") + "\n" + deep + "\n", encoding="utf-8")
    result = ingest_file(lake, path)
    assert (result.records, result.events, result.quarantined) == (2, 1, 1)
    [entry] = read_quarantine(Path(lake.root) / "quarantine")
    assert entry["line"] == 2 and entry["field"] == "payload" and "200 levels" in entry["reason"]
    assert entry["raw"].startswith('{"type":"t"') and entry["raw"].count("[") == 5000
