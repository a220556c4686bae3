"""Parallel ingest (eventlake/ingest/parallel.py): files read and checked on workers, landed
in order by one coordinator, with the very result of the serial `ingest_file` of each."""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventlake as el
from eventlake.engine.buckettasks import Workers
from eventlake.errors import ChangedFileError, InvalidEventError
from eventlake.ingest.inbox import ingest_file
from eventlake.ingest.parallel import (
    IngestOptions,
    PrepareTask,
    ingest_files_on,
    iter_ingest_on,
    prepare_file,
)
from eventlake.ops.doctor import doctor
from eventlake.store.log import EventLog
from eventlake.store.staging import staged_files

COLUMNS = ["seq", "partition_id", "type", "payload", "event_id", "batch_id"]


@pytest.fixture(scope="module")
def spawned():
    """Two spawned worker processes, shared by the module's tests (start-up is seconds)."""
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


def record(i: int, *, partition: str = "p", event_id: str | None = None) -> str:
    item: dict[str, object] = {"type": "deposit", "payload": {"amount": i},
                               "partition": f"{partition}{i % 3}"}
    if event_id is not None:
        item["event_id"] = event_id
    return json.dumps(item)


# A line of a file: good, or one of the kinds of bad record (each named by the record path).
LINES = st.one_of(
    st.integers(0, 50).map(record),
    st.integers(0, 50).map(lambda i: record(i, event_id=f"e{i % 4}")),  # repeats across chunks
    st.sampled_from(["{oops", "[1]", '{"type": "t", "partition": "p"}',
                     '{"type": "", "payload": {}, "partition": "p"}',
                     '{"type": "t", "payload": {"a": 1, "a": 2}, "partition": "p"}']),
)
FILES = st.lists(st.lists(LINES, max_size=12), min_size=1, max_size=5)


def write_inbox(folder: Path, files: list[list[str]], *, unreadable: int | None = None,
                csv_files: frozenset[int] = frozenset()) -> list[Path]:
    """The files as JSON Lines, those of `csv_files` as CSV (the same records as rows, a
    line that is no record as a row of the wrong width), `unreadable` as one that is not
    UTF-8."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, lines in enumerate(files):
        path = folder / f"f{index:02d}.{'csv' if index in csv_files else 'jsonl'}"
        if index == unreadable:
            path.write_bytes(b'{"type": "t"\xff}\n')
        elif index in csv_files:
            _write_csv(path, lines)
        else:
            path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        paths.append(path)
    return paths


def _write_csv(path: Path, lines: list[str]) -> None:
    import csv

    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["type", "partition", "payload", "event_id"])
        for line in lines:
            try:
                item = json.loads(line)
            except ValueError:
                item = None
            if not isinstance(item, dict):
                writer.writerow(["only", "two"])
                continue
            payload = item.get("payload")
            writer.writerow([item.get("type", ""), item.get("partition", ""),
                             json.dumps(payload) if isinstance(payload, dict) else "",
                             item.get("event_id", "")])


def log_rows(lake: el.Lake) -> list[tuple]:
    frame = lake.events().select(COLUMNS).collect()
    return list(frame.iter_rows())


def marks(lake: el.Lake, results) -> list:
    """The batch keys and marks of each file, as the log holds them."""
    log = lake.log
    found = []
    for result in results:
        for n in range(result.chunks or 1):
            found.append(log.landed(result.producer, f"{result.batch_no}#{n}"))
        found.append(log.landed(result.producer, result.batch_no))
    return found


def quarantine(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        return {}
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.iterdir())}


def serial_run(lake: el.Lake, paths: list[Path], *, quarantine_dir: Path | None,
               chunk_events: int):
    """The reference: `ingest_file` of each path in order, stopping at the first error."""
    results = []
    for path in paths:
        try:
            results.append(ingest_file(lake, path, quarantine_dir=quarantine_dir,
                                       quarantine=quarantine_dir is not None,
                                       chunk_events=chunk_events))
        except InvalidEventError as exc:
            return results, str(exc)
    return results, None


def parallel_run(lake: el.Lake, paths: list[Path], executor, *, quarantine_dir: Path | None,
                 chunk_events: int):
    results = []
    options = IngestOptions(quarantine_dir=quarantine_dir, quarantine=quarantine_dir is not None,
                            chunk_events=chunk_events)
    try:
        for result in iter_ingest_on(lake, paths, executor=executor, options=options):
            results.append(result)
    except InvalidEventError as exc:
        return results, str(exc)
    return results, None


def comparable(results) -> list[dict]:
    """Results as JSON, the quarantine file by its name (the runs quarantine to two folders)."""
    return [{**{k: v for k, v in r.to_json().items() if k != "prepared_by"},
             "quarantine_file": r.quarantine_file and Path(r.quarantine_file).name}
            for r in results]


@settings(max_examples=60, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(files=FILES, strict=st.booleans(), chunk=st.integers(1, 5),
       unreadable=st.one_of(st.none(), st.integers(0, 4)),
       csv_files=st.frozensets(st.integers(0, 4), max_size=2),
       runner=st.sampled_from(["one-thread", "threads", "spawn"]))
def test_parallel_equals_serial(tmp_path_factory, spawned, files, strict, chunk, unreadable,
                                csv_files, runner):
    """Any inbox (JSON Lines and CSV), strict or quarantining, in any chunk size: the
    parallel ingest (one thread, three, two spawned processes) leaves the event log, the
    batch keys, the results, the error and the quarantine files the serial ingest leaves,
    and nothing staged."""
    work = tmp_path_factory.mktemp("parallel")
    paths = write_inbox(work / "inbox", files, unreadable=unreadable, csv_files=csv_files)
    outcomes = []
    for name in ("serial", "parallel"):
        lake = el.Lake.open(work / name)
        folder = None if strict else work / f"q-{name}"
        if name == "serial":
            results, error = serial_run(lake, paths, quarantine_dir=folder, chunk_events=chunk)
        else:
            workers = {"one-thread": 1, "threads": 3}.get(runner)
            with ThreadPoolExecutor(workers) if workers else _borrowed(spawned) as pool:
                results, error = parallel_run(lake, paths, pool, quarantine_dir=folder,
                                              chunk_events=chunk)
            assert staged_files(lake.storage) == []
        outcomes.append((log_rows(lake), marks(lake, results), comparable(results), error,
                         quarantine(folder) if folder else {}))
    assert outcomes[0] == outcomes[1]


class _borrowed:
    """The shared pool as a context manager that does not shut it down."""

    def __init__(self, pool) -> None:
        self.pool = pool

    def __enter__(self):
        return self.pool

    def __exit__(self, *exc) -> None:
        return None


def test_every_worker_prepares_files(tmp_path, spawned):
    """With 20 files on two spawned processes, both prepared some, and the files landed in
    name order all the same."""
    # Both workers are up before the run (spawning one takes seconds): a task each that
    # waits for the other.
    manager = multiprocessing.get_context("spawn").Manager()
    with manager:
        barrier = manager.Barrier(2)
        list(spawned.map(_meet, [barrier, barrier]))
    paths = write_inbox(tmp_path / "inbox", [[record(i) for i in range(400)]] * 20)
    lake = el.Lake.open(tmp_path / "lake")
    results = ingest_files_on(lake, paths, executor=spawned, chunk_events=150)
    workers = {r.prepared_by.split("/")[0] for r in results}
    assert len(workers) == 2 and str(__import__("os").getpid()) not in workers
    assert [r.first_seq for r in results] == [1 + 400 * i for i in range(20)]
    assert lake.last_seq() == 8000


def _meet(barrier) -> None:
    barrier.wait(timeout=60)


def test_stopped_then_rerun_lands_each_record_once(tmp_path):
    """A run stopped midway (or killed: the log only ever holds whole chunks) and run again,
    serially or in parallel, lands what one serial run does; a mix of the two as well."""
    files = [[record(i) if i % 7 else "{bad" for i in range(30)] for _ in range(4)]
    paths = write_inbox(tmp_path / "inbox", files)
    reference = el.Lake.open(tmp_path / "reference")
    serial_run(reference, paths, quarantine_dir=tmp_path / "q-reference", chunk_events=4)
    for second in ("serial", "parallel"):
        lake = el.Lake.open(tmp_path / f"lake-{second}")
        folder = tmp_path / f"q-{second}"
        landed = 0

        def stop() -> bool:
            nonlocal landed
            landed += 1
            return landed == 11  # in the middle of the second file

        options = IngestOptions(quarantine_dir=folder, chunk_events=4, stop=stop)
        with ThreadPoolExecutor(2) as pool:
            first = list(iter_ingest_on(lake, paths, executor=pool, options=options))
        assert [r.complete for r in first] == [True, False]
        assert staged_files(lake.storage) == []
        if second == "serial":
            again, _ = serial_run(lake, paths, quarantine_dir=folder, chunk_events=4)
        else:
            with ThreadPoolExecutor(2) as pool:
                again = ingest_files_on(lake, paths, executor=pool, quarantine_dir=folder,
                                        chunk_events=4)
        assert [r.duplicate for r in again] == [True, False, False, False]
        assert again[1].resumed_chunks == 4  # stop is asked after every chunk but a last
        assert log_rows(lake) == log_rows(reference)
        assert quarantine(folder) == quarantine(tmp_path / "q-reference")


def test_a_crash_between_chunks_loses_and_repeats_nothing(tmp_path, monkeypatch):
    """The coordinator dies at its 6th append (after 5 landed): the staged files it leaves
    are harmless, `doctor --fix` deletes them, and a re-run lands each record once."""
    files = [[record(i) for i in range(12)] for _ in range(3)]
    paths = write_inbox(tmp_path / "inbox", files)
    reference = el.Lake.open(tmp_path / "reference")
    serial_run(reference, paths, quarantine_dir=tmp_path / "q0", chunk_events=4)
    lake = el.Lake.open(tmp_path / "lake")
    appends = 0
    real = EventLog.append

    def dying(self, *args, **kwargs):
        nonlocal appends
        appends += 1
        if appends == 6:
            raise SystemExit("killed")  # not an Exception: nothing catches it on the way
        return real(self, *args, **kwargs)

    monkeypatch.setattr(EventLog, "append", dying)
    with ThreadPoolExecutor(2) as pool, pytest.raises(SystemExit):
        for _ in iter_ingest_on(lake, paths, executor=pool,
                                options=IngestOptions(quarantine_dir=tmp_path / "q",
                                                      chunk_events=4), lookahead=2):
            pass
    monkeypatch.setattr(EventLog, "append", real)
    assert lake.last_seq() == 20
    # A killed coordinator deletes nothing: stage a file as its workers would have.
    prepare_file(PrepareTask(lake.root, {}, lake.limits, str(paths[2]), "inbox", 4,
                             "ingest/crashed/000002"))
    left = staged_files(lake.storage)
    assert left and all("_staging" in f.path for f in left)
    report = doctor(lake)
    assert report.ok and {p.path for p in report.leftovers} >= {f.path for f in left}
    doctor(lake, fix=True, min_age_seconds=0)
    assert staged_files(lake.storage) == []
    with ThreadPoolExecutor(2) as pool:
        ingest_files_on(lake, paths, executor=pool, quarantine_dir=tmp_path / "q",
                        chunk_events=4)
    assert log_rows(lake) == log_rows(reference)


def test_changed_file_is_refused_in_its_turn(tmp_path):
    """A file whose name landed with other content: the files before it land, then
    `ChangedFileError` (or, with `refuse_changed`, a refused result and the run goes on)."""
    first = write_inbox(tmp_path / "a", [[record(1)], [record(2)]])
    second = write_inbox(tmp_path / "b", [[record(3)], [record(4)]])
    lake = el.Lake.open(tmp_path / "lake")
    ingest_file(lake, first[1])
    with ThreadPoolExecutor(2) as pool:
        with pytest.raises(ChangedFileError):
            ingest_files_on(lake, [second[0], second[1], first[0]], executor=pool)
        assert lake.last_seq() == 2  # f01 before, b/f00 in this run
        fresh = tmp_path / "g.jsonl"
        fresh.write_text(record(5) + "\n", encoding="utf-8")
        results = ingest_files_on(lake, [second[1], fresh], executor=pool,
                                  refuse_changed=True)
    assert [r.refused for r in results] == [True, False] and lake.last_seq() == 3


def test_files_a_broken_pool_cannot_prepare_land_serially(tmp_path):
    """A broken pool (every submit fails): each file is landed by the coordinator itself,
    with the same result."""
    paths = write_inbox(tmp_path / "inbox", [[record(i) for i in range(5)]] * 3)
    lake = el.Lake.open(tmp_path / "lake")
    pool = ThreadPoolExecutor(1)
    pool.shutdown()
    results = ingest_files_on(lake, paths, executor=Workers(pool, lambda: lake, retries=1))
    assert [r.prepared_by for r in results] == [None] * 3 and lake.last_seq() == 15


class _FailingFirst(ThreadPoolExecutor):
    """Threads whose first attempt at each file fails as a dead worker would."""

    def __init__(self) -> None:
        super().__init__(2)
        self.attempts: dict[str, int] = {}

    def submit(self, fn, /, *args, **kwargs):
        path = args[0].path
        self.attempts[path] = self.attempts.get(path, 0) + 1
        if self.attempts[path] == 1:
            return super().submit(_dies)
        return super().submit(fn, *args, **kwargs)


def _dies():
    raise OSError("the worker died")


def test_a_prepare_that_fails_is_submitted_again(tmp_path):
    """A prepare failing with what is not an eventlake error is retried on the executor (the
    file is still prepared there, not landed serially), and the log is the serial one."""
    paths = write_inbox(tmp_path / "inbox", [[record(i) for i in range(9)]] * 3)
    reference = el.Lake.open(tmp_path / "reference")
    serial_run(reference, paths, quarantine_dir=tmp_path / "q0", chunk_events=4)
    lake = el.Lake.open(tmp_path / "lake")
    with _FailingFirst() as pool:
        results = ingest_files_on(lake, paths, executor=pool, chunk_events=4)
    assert set(pool.attempts.values()) == {2} and all(r.prepared_by for r in results)
    assert log_rows(lake) == log_rows(reference)


@pytest.mark.integration
def test_parallel_ingest_on_s3(backend, tmp_path, monkeypatch, spawned):
    """On a lake on S3, spawned workers given only its URI and options stage there, and the
    log equals a serial ingest's."""
    monkeypatch.chdir(tmp_path)  # quarantine files of an S3 lake go to ./data/quarantine
    files = [[record(i) if i % 5 else "{bad" for i in range(20)] for _ in range(4)]
    paths = write_inbox(tmp_path / "inbox", files)
    lake = backend.open()
    results = ingest_files_on(lake, paths, executor=spawned, chunk_events=6)
    reference = el.Lake.open(tmp_path / "reference")
    expected, _ = serial_run(reference, paths, quarantine_dir=tmp_path / "q", chunk_events=6)
    assert log_rows(lake) == log_rows(reference)
    assert comparable(results) == comparable(expected)
    assert all(r.prepared_by for r in results)
    assert staged_files(lake.storage) == []


@pytest.mark.one_layout
def test_a_strict_prepare_keeps_one_problem_per_chunk(tmp_path):
    """Strict mode: a chunk's problems only make the error, so preparing a file of bad lines
    returns the first of each chunk and a count (not every line's text), and the error the
    coordinator raises names the first and counts them all, as the serial ingest does."""
    lines = [record(i) if i % 10 == 0 else "{oops" for i in range(40)]
    [path] = write_inbox(tmp_path / "inbox", [lines])
    lake = el.Lake.open(tmp_path / "lake")
    prepared = prepare_file(PrepareTask(lake.root, {}, lake.limits, str(path), "inbox", 8,
                                        "ingest/strict/000000", strict=True))
    assert [len(c.problems) for c in prepared.chunks] == [1] * 5
    assert sum(len(c.problems) + c.unlisted for c in prepared.chunks) == 36
    assert [c.problems[0].line for c in prepared.chunks] == [2, 9, 17, 25, 33]
    with pytest.raises(InvalidEventError) as serial:
        ingest_file(lake, path, quarantine=False, chunk_events=8)
    for size in (8, 100):  # several chunks, and one
        with ThreadPoolExecutor(2) as pool, pytest.raises(InvalidEventError) as parallel:
            ingest_files_on(lake, [path], executor=pool, quarantine=False, chunk_events=size)
        assert str(parallel.value) == str(serial.value) and "36 bad records" in str(serial.value)
    assert lake.last_seq() == 0


@pytest.mark.one_layout
def test_a_resumed_file_is_prepared_without_its_landed_chunks(tmp_path):
    """Preparing a file an earlier run landed part of stages only the chunks still to land;
    if a restore revokes a landed chunk before the file's turn, the coordinator reads the
    file again itself, and every record lands once."""
    from eventlake.ingest.parallel import _land

    [path] = write_inbox(tmp_path / "inbox", [[record(i) for i in range(25)]])
    reference = el.Lake.open(tmp_path / "reference")
    serial_run(reference, [path], quarantine_dir=None, chunk_events=10)
    lake = el.Lake.open(tmp_path / "lake")
    before = lake.log.snapshot().version
    asked: list[int] = []
    ingest_file(lake, path, chunk_events=10, stop=lambda: len(asked) >= 1 or bool(
        asked.append(1)))
    assert lake.last_seq() == 20
    prepared = prepare_file(PrepareTask(lake.root, {}, lake.limits, str(path), "inbox", 10,
                                        "ingest/resumed/000000"))
    assert [(c.landed, c.staged is None) for c in prepared.chunks] == [
        (True, True), (True, True), (False, False)]
    lake.restore(version=before)
    assert lake.last_seq() == 0
    result = _land(lake, path, prepared, IngestOptions(chunk_events=10))
    assert (result.events, result.resumed_chunks, result.prepared_by) == (25, 0, None)
    assert log_rows(lake) == log_rows(reference)


@given(sizes=st.lists(st.integers(0, 100), min_size=1, max_size=12), data=st.data(),
       ahead=st.integers(1, 6), budget=st.integers(0, 300))
def test_files_prepared_ahead_hold_at_most_the_byte_budget(sizes, data, ahead, budget):
    from eventlake.ingest.parallel import _ahead_to

    index = data.draw(st.integers(0, len(sizes) - 1))
    upto = _ahead_to(sizes, index, ahead, budget)
    assert index + 1 <= upto <= min(len(sizes), index + 1 + ahead)
    if index + 1 < len(sizes):
        assert upto >= index + 2  # one file ahead, whatever its size
    assert upto == index + 2 or sum(sizes[index + 1:upto]) <= budget
    # As many as fit: the next one would break the count or the budget.
    if upto < min(len(sizes), index + 1 + ahead):
        assert sum(sizes[index + 1:upto + 1]) > budget


@pytest.mark.one_layout
def test_an_ingest_prepares_ahead_within_its_byte_budget(tmp_path):
    """With a budget below one file's size, one file is prepared ahead of the one landing;
    without it, the file count alone bounds what runs ahead."""
    paths = write_inbox(tmp_path / "inbox", [[record(i) for i in range(5)]] * 8)
    for budget, most in ((1, 2), (10**9, 1 + 4)):
        lake = el.Lake.open(tmp_path / f"lake{budget}")
        with ThreadPoolExecutor(2) as pool:
            submitted = _Counting(pool)
            ahead = []
            for landed, _ in enumerate(iter_ingest_on(lake, paths, executor=submitted,
                                                      lookahead=4, lookahead_bytes=budget)):
                ahead.append(submitted.count - landed)
        assert max(ahead) == most and lake.last_seq() == 40


class _Counting:
    """An executor that counts the prepares submitted to it."""

    def __init__(self, pool) -> None:
        self.pool, self.count = pool, 0

    def submit(self, fn, *args, **kwargs):
        self.count += 1
        return self.pool.submit(fn, *args, **kwargs)
