"""A full disk, for real: a small tmpfs mounted for the test, filled by the lake itself.

On a full disk every write says, on one line, `no space left on device writing <path>;
nothing was committed` (`StorageFullError`: an `EventlakeError` and an `OSError` with errno
ENOSPC); the CLI prints just that (no Rust panic report, no traceback, no colour codes) and
exits 1; and the lake keeps exactly what was committed before: reads give it back, `doctor`
finds no damage (at most orphaned files of the failed write), and once there is room again
writes go on with the next `seq`.

Mounting needs root (CI runs as root, like this sandbox); where `mount` is refused the tests
skip, saying so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

import eventlake as el
from eventlake.errors import EventlakeError, StorageFullError
from eventlake.ops import maintenance
from eventlake.ops.doctor import doctor
from eventlake.ops.maintenance import compact_events
from eventlake.ops.verify import verify_view
from eventlake.store.storage import Storage, StorageWarning

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EVENTLAKE = [sys.executable, "-m", "eventlake.cli"]


class SmallDisk:
    """A tmpfs of a few MiB at `path`; `resize` changes its size in place (remount)."""

    def __init__(self, path: Path, size_kib: int) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs",
                               str(path)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small file system for a real full disk here "
                        f"(`mount -t tmpfs` failed: {done.stderr.strip() or done.returncode}; "
                        "it needs root)")

    def resize(self, size_kib: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size_kib}k", str(self.path)],
                       check=True, capture_output=True)

    def free(self) -> int:
        stats = os.statvfs(self.path)
        return stats.f_bfree * stats.f_frsize

    def fill(self, *, leave: int = 0) -> Path:
        """Take all free space but `leave` bytes with a filler file; returns it."""
        filler = self.path / f"filler-{uuid.uuid4().hex}"
        with filler.open("wb") as handle:
            handle.write(b"\0" * max(0, self.free() - leave))
        return filler

    def unmount(self) -> None:
        # Lazy: a lake object of the test may still hold a file open.
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    small = SmallDisk(tmp_path / "disk", 2048)
    yield small
    small.unmount()


def batch(number: int, *, size: int = 200, partitions: int = 7) -> list[dict]:
    # Random hex payloads do not compress: the disk fills after a few batches.
    return [{"type": "set", "partition": f"p{i % partitions}", "event_id": f"b{number}-{i}",
             "payload": {"target": f"k{i % 3}", "value": os.urandom(600).hex()}}
            for i in range(size)]


def fill_with_batches(lake: el.Lake, *, limit: int = 400) -> tuple[list[str], StorageFullError]:
    """Append batches until the disk is full; the event ids of every batch that landed and
    the error of the one that did not."""
    landed: list[str] = []
    for number in range(limit):
        events = batch(number)
        try:
            lake.append(events)
        except StorageFullError as exc:
            return landed, exc
        landed += [e["event_id"] for e in events]
    raise AssertionError(f"{limit} batches fit on a 2 MiB disk")


def assert_intact(lake: el.Lake, event_ids: list[str]) -> None:
    """The lake holds exactly `event_ids`, seq 1..n in order, and doctor finds no damage."""
    events = lake.events().collect()
    assert events.get_column("event_id").to_list() == event_ids
    assert events.get_column("seq").to_list() == list(range(1, len(event_ids) + 1))
    assert lake.last_seq() == len(event_ids)
    report = doctor(lake)
    assert report.ok, [str(p) for p in report.damage]
    assert all(p.kind in ("orphan", "temp") for p in report.problems)


def test_append_on_a_full_disk_is_one_clear_error_and_the_lake_stays_whole(disk):
    root = disk.path / "lake"
    lake = el.Lake.open(root)
    landed, error = fill_with_batches(lake)
    assert landed, "the first batch already did not fit"
    assert isinstance(error, EventlakeError) and isinstance(error, OSError)
    assert error.errno == 28 and not error.transient and error.committed is False
    assert str(error) == f"no space left on device writing {root}/events; nothing was committed"
    assert error.path == f"{root}/events"
    assert_intact(el.Lake.open(root), landed)

    # Again on the full disk: the same error, nothing changes.
    with pytest.raises(StorageFullError, match="nothing was committed"):
        lake.append(batch(999))
    assert_intact(el.Lake.open(root), landed)

    # With room again, the log goes on from the next seq, and views are exact.
    disk.resize(16384)
    more = batch(1000)
    result = lake.append(more)
    assert result.first_seq == len(landed) + 1
    assert_intact(lake, landed + [e["event_id"] for e in more])
    lake.materialize()
    assert verify_view(lake, lake.view("document")).ok


def test_materialize_on_a_full_disk_keeps_the_view_as_it_was(disk):
    root = disk.path / "lake"
    lake = el.Lake.open(root)
    lake.append(batch(0, size=50))
    lake.materialize()
    before = lake.scan("document").collect()
    lake.append(batch(1, size=50))
    filler = disk.fill()
    with pytest.raises(StorageFullError) as info:
        lake.materialize()
    assert str(info.value) == (f"no space left on device writing {root}/views/document; "
                               "nothing was committed")
    fresh = el.Lake.open(root)
    assert fresh.scan("document").collect().equals(before)
    assert doctor(fresh).ok
    filler.unlink()
    fresh.materialize()
    assert verify_view(fresh, fresh.view("document")).ok


def test_a_commit_that_landed_before_its_checkpoint_failed_counts_as_landed(disk):
    """delta-rs writes a checkpoint after the commit that reaches the table's checkpoint
    interval, and raises when that fails, after the commit landed. A write guarded by
    `Storage.writing` reads the log instead: its commit is there, so the write counts as done
    (a `StorageWarning` says what failed) and its caller never re-sends what landed."""
    storage = Storage.at(disk.path / "lake")
    rows = pa.table({"a": [1, 2, 3]})
    write_deltalake(storage.uri("t"), rows, configuration={"delta.checkpointInterval": "4"})
    table = storage.table("t")
    while table.version() < 2:
        write_deltalake(table, rows, mode="append")
    disk.fill(leave=2 * os.statvfs(disk.path).f_frsize)  # a data file and a commit, no more
    with pytest.warns(StorageWarning, match="version 3 of .* was committed, but a step after "
                                            "the commit failed: no space left on device"):
        with storage.writing("t", base=2, txn=("test", 1)) as written:
            write_deltalake(table, rows, mode="append", commit_properties=CommitProperties(
                app_transactions=[Transaction(app_id="test", version=1)]))
    assert written.landed_at == 3
    fresh = DeltaTable(storage.uri("t"))
    assert fresh.version() == 3 and fresh.transaction_version("test") == 1
    assert fresh.to_pyarrow_table().num_rows == 4 * rows.num_rows
    # The next write does not land: one error, nothing committed.
    with pytest.raises(StorageFullError, match="nothing was committed") as info:
        with storage.writing("t", base=3, txn=("test", 2)):
            write_deltalake(storage.table("t"), rows, mode="append",
                            commit_properties=CommitProperties(
                                app_transactions=[Transaction(app_id="test", version=2)]))
    assert info.value.committed is False
    assert DeltaTable(storage.uri("t")).version() == 3


def test_an_append_at_the_checkpoint_interval_on_a_full_disk_lands_once_or_not_at_all(disk):
    """Whatever step of an append the full disk stops (data, commit, checkpoint), the call
    raises only if the batch did not land, and returns only if it landed, once."""
    root = disk.path / "lake"
    lake = el.Lake.open(root)
    interval = int(lake.storage.table("events").metadata().configuration[
        "delta.checkpointInterval"])
    event = {"type": "set", "partition": "p", "payload": {"target": "n", "value": 0}}
    while lake.log.snapshot().version < interval - 2:
        lake.append([event])
    before = lake.last_seq()
    disk.fill(leave=2 * os.statvfs(disk.path).f_frsize)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = lake.append([event])
        except StorageFullError:
            landed = 0
        else:
            assert (result.first_seq, result.last_seq) == (before + 1, before + 1)
            landed = 1
    # A warning only says that a step after a commit that landed failed.
    assert all(w.category is StorageWarning for w in caught) and (landed or not caught)
    fresh = el.Lake.open(root)
    assert fresh.last_seq() == before + landed
    assert fresh.events().collect().get_column("seq").to_list() == list(
        range(1, before + landed + 1))
    assert doctor(fresh).ok


def test_compaction_on_a_full_disk_leaves_none_of_its_files_behind(disk):
    root = disk.path / "lake"
    lake = el.Lake.open(root)
    for number in range(6):
        lake.append(batch(number, size=40, partitions=3))
    lake.materialize()
    if lake.layout.kind == "buckets":
        # Sort the tail first, as compact_events would (the tail on a full disk is tested
        # below): then each of the 3 partitions' buckets holds two files, a run to merge.
        assert lake.log.compact_tail().files_removed == 2
    ids = lake.events().collect().get_column("event_id").to_list()
    files = sorted(p.relative_to(root) for p in (root / "events").rglob("*.parquet"))
    # Each run of small files merges into one new file of about their size: leave room for
    # the first new file, not for the second.
    bins = maintenance._bins(lake.log.snapshot(), maintenance.min_watermark(lake),
                             column=lake.layout.partition_column, small_file_bytes=1 << 30,
                             max_rows=maintenance.DEFAULT_MAX_FILE_ROWS)
    sizes = [sum(b.sizes) for b in bins]
    assert len(sizes) == 3 and max(sizes) < 1.5 * min(sizes)
    disk.fill(leave=int(1.3 * max(sizes)))
    with pytest.raises(StorageFullError, match=f"writing {root}/events; nothing was committed"):
        compact_events(lake, small_file_bytes=1 << 30)
    # The file written before the failure and the half-written one are gone again.
    assert sorted(p.relative_to(root) for p in (root / "events").rglob("*.parquet")) == files
    assert_intact(el.Lake.open(root), ids)


def test_sorting_the_tail_on_a_full_disk_leaves_the_tail_as_it_was(disk, lake_layout):
    if not lake_layout.startswith("buckets"):
        pytest.skip("only a bucketed log has a tail: partition_id files always have a partition")
    root = disk.path / "lake"
    lake = el.Lake.open(root)
    for number in range(3):  # three tail files, one short of sorting them
        lake.append(batch(number, size=40, partitions=3))
    lake.materialize()
    ids = lake.events().collect().get_column("event_id").to_list()
    files = sorted(p.relative_to(root) for p in (root / "events").rglob("*.parquet"))
    assert lake.log.tail_files() == len(files) == 3
    # Room for about one of the three bucket files the tail's rows go to, not for all.
    tail_bytes = sum(p.stat().st_size for p in (root / "events").rglob("*.parquet"))
    disk.fill(leave=int(1.3 * tail_bytes / 3))
    with pytest.raises(StorageFullError, match=f"writing {root}/events; the tail stays as it was"):
        compact_events(lake, small_file_bytes=1 << 30)
    assert sorted(p.relative_to(root) for p in (root / "events").rglob("*.parquet")) == files
    assert lake.log.tail_files() == 3
    assert_intact(el.Lake.open(root), ids)


def test_restore_on_a_full_disk_changes_nothing_of_the_log(disk):
    root = disk.path / "lake"
    lake = el.Lake.open(root)
    lake.append(batch(0, size=20))
    first = lake.events().collect().get_column("event_id").to_list()
    lake.append(batch(1, size=20))
    ids = lake.events().collect().get_column("event_id").to_list()
    disk.fill()
    with pytest.raises(StorageFullError, match="the log was not restored"):
        lake.restore(version=1)
    assert_intact(el.Lake.open(root), ids)
    assert len(first) < len(ids)


# -- the command line --------------------------------------------------------------------------


def cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EVENTLAKE, *argv], capture_output=True, text=True, timeout=300,
                          cwd=REPO, env={**os.environ, **(env or {})})


def write_inbox(folder: Path, files: int, *, rows: int = 3000) -> list[Path]:
    folder.mkdir()
    paths = []
    for number in range(files):
        path = folder / f"{number:02d}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for i in range(rows):
                handle.write(json.dumps({"type": "set", "partition": f"p{i % 40}",
                                         "event_id": f"f{number}-{i}",
                                         "payload": {"target": "v",
                                                     "value": os.urandom(200).hex()}}) + "\n")
        paths.append(path)
    return paths


# The CLI's one line is the same on either layout (the in-process tests here run on both): ten
# subprocesses per case are worth running once.
@pytest.mark.one_layout
@pytest.mark.parametrize("backtrace", ["1", "0"])
def test_cli_ingest_on_a_full_disk_prints_one_line_and_exits_1(disk, tmp_path, backtrace):
    """The write that fills the disk makes delta-rs's upload threads panic ("Already shut
    down"): Rust prints those reports itself, on the process's stderr. The CLI keeps them off
    and prints only its one line, whatever RUST_BACKTRACE says."""
    root = disk.path / "lake"
    inbox = write_inbox(tmp_path / "inbox", 8)
    env = {"RUST_BACKTRACE": backtrace}
    landed: list[str] = []
    failures = []
    for path in inbox:
        done = cli("ingest", str(path), "--lake", str(root), env=env)
        if done.returncode == 0:
            landed += [json.loads(line)["event_id"] for line in path.read_text().splitlines()]
            continue
        failures.append(done)
    assert landed and failures, "the disk never filled, or filled at once"
    for done in failures:
        assert done.returncode == 1, done.stderr
        lines = done.stderr.splitlines()
        assert len(lines) == 1, done.stderr[-3000:]
        assert lines[0] == (f"error: no space left on device writing {root}/events; nothing "
                            "was committed")
        assert "\x1b" not in done.stderr
    assert_intact(el.Lake.open(root), landed)

    checked = cli("doctor", "--lake", str(root))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "0 damaged" in checked.stdout

    # --debug keeps everything: the traceback (and Rust's reports).
    debug = cli("ingest", str(inbox[-1]), "--lake", str(root), "--debug", env=env)
    assert debug.returncode != 0 and "Traceback" in debug.stderr
    assert "StorageFullError" in debug.stderr


def test_cli_materialize_on_a_full_disk_prints_one_line(disk, tmp_path):
    root = disk.path / "lake"
    lake = el.Lake.open(root)
    lake.append(batch(0, size=30))
    assert cli("materialize", "--lake", str(root)).returncode == 0
    lake.append(batch(1, size=30))
    filler = disk.fill()
    done = cli("materialize", "--lake", str(root))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error: no space left on device writing {root}/views/document; nothing was "
        "committed"], done.stderr
    filler.unlink()
    assert cli("materialize", "--lake", str(root)).returncode == 0
    assert verify_view(el.Lake.open(root), lake.view("document")).ok
