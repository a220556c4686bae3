"""eventlake's own Delta log reader/writer (eventlake/deltalog.py) against delta-rs."""

from __future__ import annotations

import multiprocessing
import os
import time
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError
from hypothesis import given, settings
from hypothesis import strategies as st

from eventlake.store import deltalog
from eventlake.store.datafiles import PlannedFile, write_files
from eventlake.store.deltalog import Commit, FileRemoval, TableLog, interval_ms
from eventlake.store.storage import Storage

SCHEMA = pa.schema([("seq", pa.int64()), ("partition_id", pa.string()), ("bucket", pa.int32())])


def _create(root, *, interval: int = 10, retention: str | None = None):
    config = {"delta.checkpointInterval": str(interval)}
    if retention:
        config["delta.setTransactionRetentionDuration"] = retention
    DeltaTable.create(str(root / "t"), schema=SCHEMA, partition_by=["bucket"],
                      configuration=config)
    return TableLog(str(root / "t"), str(root / "t"))


def _file(root, bucket: int, seqs: list[int]):
    rows = pa.table({"seq": pa.array(seqs, pa.int64()),
                     "partition_id": [f"p{s % 7}" for s in seqs]})
    return write_files(Storage.at(root), "t", [PlannedFile({"bucket": str(bucket)}, rows)],
                       stats_columns=("seq", "partition_id"))[0]


def _delta_rs_manifest(root):
    table = pa.table(DeltaTable(str(root / "t")).get_add_actions(flatten=True))
    return sorted(zip(table.column("path").to_pylist(), table.column("num_records").to_pylist(),
                      table.column("partition.bucket").to_pylist(),
                      table.column("min.seq").to_pylist(), table.column("max.seq").to_pylist(),
                      strict=True))


def _own_manifest(log):
    table = log.pin().files()
    return sorted(zip(table.column("path").to_pylist(), table.column("num_records").to_pylist(),
                      table.column("partition.bucket").to_pylist(),
                      table.column("min.seq").to_pylist(), table.column("max.seq").to_pylist(),
                      strict=True))


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.booleans()), min_size=1,
                max_size=25))
@settings(max_examples=15, deadline=None)
def test_manifest_and_txns_match_delta_rs_after_any_commits(tmp_path_factory, steps):
    root = tmp_path_factory.mktemp("log")
    log = _create(root, interval=7)
    live: list = []
    keys: list[str] = []
    seq = 0
    for adds, removes, keyed in steps:
        files = []
        for i in range(adds):
            seq += 1
            files.append((_file(root, (seq + i) % 3, [seq]), seq))
        gone = live[:removes]
        live = live[removes:] + files
        txns = [("eventlake.seq", seq, False)]
        if keyed:
            txns.append((f"batch/{seq}", seq, True))
            keys.append(f"batch/{seq}")
        base = log.pin().version
        log.commit(Commit(adds=[f.action for f, _ in files],
                          removes=[FileRemoval(f.action.path, f.action.partition_values,
                                               f.action.size) for f, _ in gone],
                          txns=txns), base_version=base)
    assert _own_manifest(log) == _delta_rs_manifest(root)
    table = DeltaTable(str(root / "t"))
    assert table.version() == log.pin().version == len(steps)
    assert table.transaction_version("eventlake.seq") == seq
    # A fresh TableLog (based on checkpoints delta-rs wrote every 7 commits) agrees.
    fresh = TableLog(str(root / "t"), str(root / "t"))
    assert _own_manifest(fresh) == _delta_rs_manifest(root)
    assert fresh.pin().transaction_version("eventlake.seq") == seq
    # Every key, read from the checkpoint and the commits after it, as delta-rs reads it.
    for key in [*keys, "never-written"]:
        assert fresh.pin().transaction_version(key) == table.transaction_version(key)
        assert log.pin().transaction_version(key) == table.transaction_version(key)
    assert sorted(table.to_pyarrow_table().column("seq").to_pylist()) == sorted(
        s for _, s in live)


def test_checkpoints_are_written_and_the_log_reopens_from_them(tmp_path):
    log = _create(tmp_path, interval=5)
    for n in range(1, 13):
        f = _file(tmp_path, 0, [n])
        log.commit(Commit(adds=[f.action], txns=[("eventlake.seq", n, False)]),
                   base_version=log.pin().version)
    names = os.listdir(tmp_path / "t" / "_delta_log")
    assert "00000000000000000004.checkpoint.parquet" in names
    assert "00000000000000000009.checkpoint.parquet" in names
    assert not [n for n in names if n.endswith(".tmp")]
    assert DeltaTable(str(tmp_path / "t")).transaction_version("eventlake.seq") == 12


def test_time_travel_by_a_commits_own_timestamp_lands_on_that_commit(tmp_path, monkeypatch):
    # delta-rs finds a version by timestamp from the commit files' modification times;
    # `history()` shows the commitInfo timestamps. Both must name the same version, however
    # long a commit takes to build after its timestamp is taken (here: 20 ms).
    class Earlier:
        @staticmethod
        def time() -> float:
            return time.time() - 0.02

    log = _create(tmp_path)
    # Version 0 is delta-rs's, stamped with the real clock: keep it clear of the commits made
    # with the clock set back.
    time.sleep(0.05)
    monkeypatch.setattr(deltalog, "time", Earlier)
    for n in range(1, 6):
        f = _file(tmp_path, 0, [n])
        log.commit(Commit(adds=[f.action], txns=[("eventlake.seq", n, False)]),
                   base_version=log.pin().version)
    table = DeltaTable(str(tmp_path / "t"))
    for entry in table.history():
        if entry["version"] == 0:  # created by delta-rs
            continue
        old = DeltaTable(str(tmp_path / "t"))
        old.load_as_version(datetime.fromtimestamp(entry["timestamp"] / 1000, UTC))
        assert old.version() == entry["version"]


def test_commits_within_one_millisecond_get_distinct_timestamps(tmp_path, monkeypatch):
    # A fast writer commits several times per millisecond: a stopped clock stands for that.
    log = _create(tmp_path)
    stopped = time.time()

    class Stopped:
        @staticmethod
        def time() -> float:
            return stopped

    monkeypatch.setattr(deltalog, "time", Stopped)
    for n in range(1, 6):
        f = _file(tmp_path, 0, [n])
        log.commit(Commit(adds=[f.action], txns=[("eventlake.seq", n, False)]),
                   base_version=log.pin().version)
    history = sorted(DeltaTable(str(tmp_path / "t")).history(), key=lambda e: e["version"])
    stamps = [entry["timestamp"] for entry in history]
    assert stamps == sorted(set(stamps)), stamps
    for entry in history[1:]:
        old = DeltaTable(str(tmp_path / "t"))
        old.load_as_version(datetime.fromtimestamp(entry["timestamp"] / 1000, UTC))
        assert old.version() == entry["version"]


def test_a_stale_writer_loses_and_sees_the_winner(tmp_path):
    one = _create(tmp_path)
    two = TableLog(str(tmp_path / "t"), str(tmp_path / "t"))
    base = one.pin().version
    assert two.pin().version == base
    f = _file(tmp_path, 1, [1])
    one.commit(Commit(adds=[f.action], txns=[("eventlake.seq", 1, False)]), base_version=base)
    g = _file(tmp_path, 1, [1])
    with pytest.raises(CommitFailedError):
        two.commit(Commit(adds=[g.action], txns=[("eventlake.seq", 1, False)]),
                   base_version=base)
    pinned = two.pin()
    assert pinned.version == base + 1
    assert pinned.transaction_version("eventlake.seq") == 1
    assert [r for r in pinned.files().column("path").to_pylist()] == [f.action.path]


def _race(path: str, writer: int, commits: int, queue) -> None:
    log = TableLog(path, path)
    won = 0
    while won < commits:
        pinned = log.pin()
        seq = pinned.transaction_version("eventlake.seq") or 0
        try:
            log.commit(Commit(txns=[("eventlake.seq", seq + 1, False),
                                    (f"w{writer}/{won}", seq + 1, True)]),
                       base_version=pinned.version)
        except CommitFailedError:
            continue
        won += 1
    queue.put(writer)


def test_racing_processes_never_share_a_version(tmp_path):
    _create(tmp_path, interval=20)
    path = str(tmp_path / "t")
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_race, args=(path, w, 15, queue)) for w in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    table = DeltaTable(path)
    # 45 commits won in all, each carrying the next seq: no seq was handed out twice.
    assert table.version() == 45
    assert table.transaction_version("eventlake.seq") == 45
    assert all(table.transaction_version(f"w{w}/{n}") is not None
               for w in range(3) for n in range(15))


def test_expiring_txns_read_as_gone_after_the_retention(tmp_path):
    log = _create(tmp_path, retention="interval 1 seconds")
    log.commit(Commit(txns=[("eventlake.seq", 1, False), ("batch/1", 1, True)]),
               base_version=log.pin().version)
    assert log.pin().transaction_version("batch/1") == 1
    import time

    time.sleep(1.2)
    pinned = log.pin()
    assert pinned.transaction_version("batch/1") is None
    assert pinned.transaction_version("eventlake.seq") == 1  # never expires
    assert DeltaTable(str(tmp_path / "t")).transaction_version("batch/1") is None


def test_interval_parsing():
    assert interval_ms("interval 7 days") == 7 * 86_400_000
    assert interval_ms("interval 1 hour") == 3_600_000
    assert interval_ms(None) is None and interval_ms("soon") is None
