"""Landing a file in chunks (eventlake/ingest/inbox.py, `read_chunks` of files.py): the same
events as one batch, exactly once across crashes and stops, memory by the chunk."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventlake as el
from eventlake.errors import CommitConflictError, InvalidEventError
from eventlake.ingest.files import file_batch_identity, read_chunks, read_file
from eventlake.ingest.inbox import ingest_file, read_quarantine
from eventlake.model import jsoncodec
from eventlake.model.progress import Progress
from eventlake.store.log import EventLog


def good(partition: str, amount: int = 1) -> str:
    return json.dumps({"type": "deposit", "payload": {"amount": amount}, "partition": partition})


def landed(lake) -> list[tuple]:
    frame = lake.events().collect()
    return list(zip(*(frame.get_column(c).to_list()
                      for c in ("seq", "partition_id", "type", "payload")), strict=True))


def write_lines(path: Path, count: int, *, bad: tuple[int, ...] = ()) -> Path:
    lines = ["{oops" if i in bad else good(f"p{i % 7}", i) for i in range(count)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- read_chunks -----------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "", "\n\n", "\ufeff" + good("p") + "\n", good("p") + "\n\ufeff" + good("q") + "\n",
    good("p") + " x\n", good("p") + "\n[]\n", '{"a": NaN}\n', '{"a": 1} {"b": 2}\n',
    "\u00a0" + good("p") + "\u2003\n", good("p") + "\r\n" * 3 + good("q"),
    '{"type": "t", "payload": {}, "partition": "p", "type": "u"}\n',
    "\n".join(good(f"p{i}") if i % 3 else "[1]" for i in range(11)),
])
@pytest.mark.parametrize("size", [1, 2, 5, None])
def test_chunks_hold_what_read_file_reads(tmp_path, text, size):
    path = tmp_path / "some.jsonl"
    path.write_text(text, encoding="utf-8")
    whole = read_file(path)
    chunks = list(read_chunks(path, chunk_records=size))
    assert [c.number for c in chunks] == list(range(len(chunks)))
    assert [c.last for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert all(c.read == size for c in chunks[:-1]) and chunks[-1].read <= (size or 10**9)
    assert jsoncodec.equal([r for c in chunks for r in c.records], whole.records)
    assert [p for c in chunks for p in c.errors] == whole.errors
    assert chunks[-1].position == path.stat().st_size


def test_csv_and_parquet_chunks_hold_what_read_file_reads(tmp_path):
    csv_path = tmp_path / "a.csv"
    rows = ['type,payload,partition'] + [f'deposit,"{{""amount"": {i}}}",p{i % 3}'
                                         for i in range(9)]
    rows[4] = 'deposit,"{""a"":\n1}",p1'  # a record over two lines
    rows[6] = "only,two"
    csv_path.write_text("\r\n".join(rows) + "\r\n", encoding="utf-8")
    parquet = tmp_path / "a.parquet"
    pq.write_table(pa.table({"type": ["t"] * 9, "partition": [f"p{i}" for i in range(9)],
                             "payload": [json.dumps({"i": i}) for i in range(9)]}), parquet,
                   row_group_size=4)
    for path in (csv_path, parquet):
        whole = read_file(path)
        for size in (1, 2, 4, 100):
            chunks = list(read_chunks(path, chunk_records=size))
            assert [r for c in chunks for r in c.records] == whole.records
            assert [p for c in chunks for p in c.errors] == whole.errors


def test_a_broken_csv_quote_past_the_first_chunk_quarantines_the_rest(tmp_path):
    path = tmp_path / "a.csv"
    rows = ["type,payload,partition"] + [f'deposit,"{{}}",p{i}' for i in range(5)]
    rows.append('deposit,"{unclosed,p9')
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(InvalidEventError, match="malformed CSV at line 7"):
        read_file(path)
    chunks = list(read_chunks(path, chunk_records=2))
    assert sum(len(c.records) for c in chunks) == 5
    [problem] = [p for c in chunks for p in c.errors]
    assert problem.line == 7 and "rest of the file" in problem.reason


def corrupt_row_group(path: Path, group: int) -> None:
    """Overwrite the compressed pages of row group `group`, keeping the footer readable."""
    column = pq.ParquetFile(path).metadata.row_group(group).column(2)  # payload
    data = bytearray(path.read_bytes())
    start = column.data_page_offset
    data[start + 8:start + 8 + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))


def test_parquet_data_unreadable_past_the_first_chunk_quarantines_the_rest(tmp_path):
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"type": ["t"] * 12, "partition": [f"p{i}" for i in range(12)],
                             "payload": [json.dumps({"i": i, "pad": "x" * 40})
                                         for i in range(12)]}),
                   path, row_group_size=4, compression="snappy")
    corrupt_row_group(path, 2)
    with pytest.raises(InvalidEventError, match="not a readable Parquet file"):
        read_file(path)  # one chunk: the file's problem
    chunks = list(read_chunks(path, chunk_records=4))
    assert sum(len(c.records) for c in chunks) == 8
    [problem] = [p for c in chunks for p in c.errors]
    assert problem.line == 9 and "rest of the file" in problem.reason
    assert "\n" not in problem.reason
    # Landed with quarantine: the readable rows land, the rest is one quarantined entry, and
    # a re-run lands nothing twice.
    lake = el.Lake.open(tmp_path / "lake")
    result = ingest_file(lake, path, chunk_events=4, quarantine_dir=tmp_path / "q")
    assert (result.events, result.quarantined, result.complete) == (8, 1, True)
    assert ingest_file(lake, path, chunk_events=4, quarantine_dir=tmp_path / "q").duplicate
    assert lake.last_seq() == 8


# -- exactly the events of one batch ----------------------------------------------------------

LINES = st.one_of(
    st.builds(lambda p, a: good(f"p{p}", a), st.integers(0, 4), st.integers(-5, 5)),
    st.just(""), st.just("{oops"), st.just("[]"),
    st.just(json.dumps({"type": "", "payload": {}, "partition": "p"})),
    st.builds(lambda i: json.dumps({"type": "x", "payload": {}, "partition": "p",
                                    "event_id": f"id-{i}"}), st.integers(0, 3)),
)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(LINES, max_size=40), size=st.integers(1, 12))
def test_chunked_ingest_lands_what_one_batch_lands(tmp_path_factory, lines, size):
    folder = tmp_path_factory.mktemp("case")
    path = folder / "random.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    one = el.Lake.open(folder / "one")
    chunked = el.Lake.open(folder / "chunked")
    whole = ingest_file(one, path, chunk_events=10**6, quarantine_dir=folder / "q1")
    parts = ingest_file(chunked, path, chunk_events=size, quarantine_dir=folder / "q2")
    assert landed(one) == landed(chunked)
    # A repeated event_id is quarantined in whatever chunk its repeat falls.
    assert read_quarantine(folder / "q1") == read_quarantine(folder / "q2")
    assert (parts.records, parts.events, parts.quarantined) == (
        whole.records, whole.events, whole.quarantined)
    assert parts.events + parts.quarantined == parts.records
    assert parts.complete and parts.chunks == max(1, -(-whole.records // size))


# -- exactly once across crashes and stops -----------------------------------------------------

def test_a_crash_midway_resumes_at_the_next_chunk(lake, tmp_path, monkeypatch):
    path = write_lines(tmp_path / "big.jsonl", 50, bad=(12, 31))
    original = EventLog.append
    calls = []

    def crash_on_third(self, batch, **kwargs):
        calls.append(kwargs["batch_no"])
        if len(calls) == 3:
            raise CommitConflictError("the process died here")
        return original(self, batch, **kwargs)

    monkeypatch.setattr(EventLog, "append", crash_on_third)
    with pytest.raises(CommitConflictError):
        ingest_file(lake, path, chunk_events=10)
    identity = file_batch_identity(path)[1]
    assert calls == [f"{identity}#0", f"{identity}#1", f"{identity}#2"]
    assert lake.last_seq() == 19  # two chunks of 10, one bad record among them
    monkeypatch.setattr(EventLog, "append", original)
    # Resumed with another chunk size: the file keeps the one it started with.
    result = ingest_file(lake, path, chunk_events=7)
    assert (result.chunk_events, result.chunks, result.resumed_chunks) == (10, 5, 2)
    assert result.events == 29 and result.complete and lake.last_seq() == 48
    amounts = [json.loads(row[3])["amount"] for row in landed(lake)]
    assert amounts == [i for i in range(50) if i not in (12, 31)]
    # Both bad lines are in the quarantine file, the one of a chunk landed before too.
    assert [e["line"] for e in read_quarantine(Path(lake.root) / "quarantine")] == [13, 32]
    assert result.quarantined == 2
    assert ingest_file(lake, path).duplicate


def test_stop_ends_after_a_landed_chunk_and_a_rerun_finishes(lake, tmp_path):
    path = write_lines(tmp_path / "big.jsonl", 25)
    asked = []
    result = ingest_file(lake, path, chunk_events=10, stop=lambda: not asked.append(1))
    assert not result.complete and (result.chunks, result.events) == (1, 10)
    assert lake.last_seq() == 10 and not lake.log.landed("inbox", result.batch_no)
    rest = ingest_file(lake, path, chunk_events=10)
    assert rest.complete and rest.events == 15 and rest.resumed_chunks == 1
    assert [json.loads(r[3])["amount"] for r in landed(lake)] == list(range(25))


def test_strict_mode_checks_a_long_file_whole_before_landing(lake, tmp_path):
    path = write_lines(tmp_path / "big.jsonl", 30, bad=(27,))
    with pytest.raises(InvalidEventError, match="line 28"):
        ingest_file(lake, path, chunk_events=10, quarantine=False)
    assert lake.last_seq() == 0


def reads_of(monkeypatch) -> list[Path]:
    """The files `ingest_file` opens with `read_chunks`, as it opens them."""
    from eventlake.ingest import inbox

    opened: list[Path] = []

    def counted(path, **kwargs):
        opened.append(Path(path))
        return read_chunks(path, **kwargs)

    monkeypatch.setattr(inbox, "read_chunks", counted)
    return opened


def test_strict_mode_reads_a_long_file_once_and_leaves_nothing_staged(lake, tmp_path,
                                                                      monkeypatch):
    from eventlake.store.staging import staged_files

    path = write_lines(tmp_path / "big.jsonl", 30)
    opened = reads_of(monkeypatch)
    result = ingest_file(lake, path, chunk_events=10, quarantine=False)
    assert opened == [path]
    assert (result.events, result.chunks, result.complete) == (30, 3, True)
    assert [json.loads(r[3])["amount"] for r in landed(lake)] == list(range(30))
    identity = file_batch_identity(path)[1]
    assert sorted(set(lake.events().collect()["batch_id"])) == sorted(
        f"inbox/{identity}{suffix}" for suffix in ("#0", "#1", ""))
    assert staged_files(lake.storage) == []
    # A bad record, or a stop during the check: nothing lands, and nothing stays staged.
    bad = write_lines(tmp_path / "bad.jsonl", 30, bad=(22,))
    with pytest.raises(InvalidEventError, match="line 23"):
        ingest_file(lake, bad, chunk_events=10, quarantine=False)
    asked: list[int] = []
    stopped = ingest_file(lake, write_lines(tmp_path / "stop.jsonl", 30), chunk_events=10,
                          quarantine=False, stop=lambda: bool(asked.append(1)) or len(asked) > 2)
    assert not stopped.complete and stopped.events == 0
    assert lake.last_seq() == 30 and staged_files(lake.storage) == []


def test_a_strict_ingest_cut_short_resumes_and_lands_each_record_once(lake, tmp_path,
                                                                     monkeypatch):
    path = write_lines(tmp_path / "big.jsonl", 35)
    original = EventLog.append
    calls = []

    def crash_on_second(self, batch, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise CommitConflictError("the process died here")
        return original(self, batch, **kwargs)

    monkeypatch.setattr(EventLog, "append", crash_on_second)
    with pytest.raises(CommitConflictError):
        ingest_file(lake, path, chunk_events=10, quarantine=False)
    assert lake.last_seq() == 10
    monkeypatch.setattr(EventLog, "append", original)
    rest = ingest_file(lake, path, chunk_events=10, quarantine=False)
    assert (rest.events, rest.resumed_chunks, rest.chunks) == (25, 1, 4)
    assert [json.loads(r[3])["amount"] for r in landed(lake)] == list(range(35))


def staged_names(monkeypatch) -> list[str]:
    """The chunk files an ingest stages, by name, as it stages them."""
    import eventlake.ingest.inbox as inbox

    names: list[str] = []
    real = inbox.stage_table

    def counted(storage, name, table):
        names.append(Path(name).name)
        return real(storage, name, table)

    monkeypatch.setattr(inbox, "stage_table", counted)
    return names


def test_a_resumed_strict_ingest_stages_only_the_chunks_still_to_land(lake, tmp_path,
                                                                      monkeypatch):
    """The chunks an earlier run landed are counted, not checked or staged again; their
    event ids still count, so a repeat of one later is the file's problem as before."""
    path = write_lines(tmp_path / "big.jsonl", 45)
    asked: list[int] = []
    first = ingest_file(lake, path, chunk_events=10, stop=lambda: len(asked) >= 1 or bool(
        asked.append(1)))
    assert (first.complete, first.events) == (False, 20)
    names = staged_names(monkeypatch)
    rest = ingest_file(lake, path, chunk_events=10, quarantine=False)
    assert names == ["000002.parquet", "000003.parquet", "000004.parquet"]
    assert (rest.events, rest.resumed_chunks, rest.chunks) == (25, 2, 5)
    assert [json.loads(r[3])["amount"] for r in landed(lake)] == list(range(45))
    lines = [json.dumps({"type": "t", "payload": {}, "partition": "p", "event_id": f"e{i}"})
             for i in range(25)]
    lines[22] = lines[3]
    ids = tmp_path / "ids.jsonl"
    ids.write_text("\n".join(lines) + "\n", encoding="utf-8")
    asked.clear()
    assert ingest_file(lake, ids, chunk_events=10, stop=lambda: True).events == 10
    with pytest.raises(InvalidEventError, match="line 23"):
        ingest_file(lake, ids, chunk_events=10, quarantine=False)
    assert lake.last_seq() == 55


def test_progress_counts_bytes_and_rows_to_the_end(lake, tmp_path):
    path = write_lines(tmp_path / "big.jsonl", 25)
    seen: list[Progress] = []
    ingest_file(lake, path, chunk_events=10, progress=seen.append)
    assert [p.rows for p in seen] == [10, 20, 25]
    assert all(p.unit == "bytes" and p.total == path.stat().st_size for p in seen)
    assert seen[-1].done == path.stat().st_size
    assert [p.done for p in seen] == sorted(p.done for p in seen)


def test_a_file_of_one_chunk_is_one_batch_under_its_identity(lake, tmp_path):
    path = write_lines(tmp_path / "small.jsonl", 5)
    result = ingest_file(lake, path, chunk_events=5)
    assert result.batch_id == "inbox/" + file_batch_identity(path)[1] and result.chunks == 1
    assert set(lake.events().collect()["batch_id"]) == {result.batch_id}


def test_stop_during_the_strict_check_lands_nothing(lake, tmp_path):
    path = write_lines(tmp_path / "big.jsonl", 30)
    result = ingest_file(lake, path, chunk_events=10, quarantine=False, stop=lambda: True)
    assert not result.complete and result.chunks == 0 and lake.last_seq() == 0
    assert ingest_file(lake, path, chunk_events=10, quarantine=False).events == 30


def test_a_resumed_file_keeps_only_its_own_quarantine_entries(lake, tmp_path, monkeypatch):
    # The CLI names quarantine files by file name: a file landed --as-new after another
    # version of it must not inherit that version's entries.
    path = write_lines(tmp_path / "big.jsonl", 30, bad=(3,))
    target = tmp_path / "q" / "big.jsonl.jsonl"
    ingest_file(lake, path, chunk_events=10, quarantine_dir=tmp_path / "q",
                quarantine_name=target.name)
    path = write_lines(tmp_path / "big.jsonl", 30, bad=(25,))
    original = EventLog.append

    def crash_on_second(self, batch, **kwargs):
        if kwargs["batch_no"].endswith("#1"):
            raise CommitConflictError("the process died here")
        return original(self, batch, **kwargs)

    monkeypatch.setattr(EventLog, "append", crash_on_second)
    with pytest.raises(CommitConflictError):
        ingest_file(lake, path, chunk_events=10, quarantine_dir=tmp_path / "q",
                    quarantine_name=target.name, as_new=True)
    monkeypatch.setattr(EventLog, "append", original)
    result = ingest_file(lake, path, chunk_events=10, quarantine_dir=tmp_path / "q",
                         quarantine_name=target.name, as_new=True)
    assert result.resumed_chunks == 1 and result.quarantined == 1
    assert [e["line"] for e in read_quarantine(tmp_path / "q")] == [26]
