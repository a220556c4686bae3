"""Writing Delta data files ourselves (eventlake/datafiles.py) and committing them."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pytest
from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import CommitFailedError

from eventlake.store.datafiles import PlannedFile, delete_files, write_files
from eventlake.store.storage import Storage


def _table(root, partition_by):
    schema = pa.schema([("seq", pa.int64()), ("partition_id", pa.string()),
                        ("payload", pa.string())])
    DeltaTable.create(str(root / "t"), schema=schema, partition_by=partition_by)
    return DeltaTable(str(root / "t"))


def _file(partition, seqs):
    return PlannedFile({"partition_id": partition}, _rows(seqs, partition).drop_columns(
        ["partition_id"]))


def _rows(seqs, partition):
    return pa.table({"seq": pa.array(seqs, pa.int64()), "payload": [f'{{"n":{s}}}' for s in seqs]}
                    ).append_column("partition_id", pa.array([partition] * len(seqs)))


def test_files_commit_and_read_back_with_statistics(tmp_path):
    dt = _table(tmp_path, ["partition_id"])
    storage = Storage.at(tmp_path)
    partitions = ["a b", "x%y", "é", "plain"]
    planned = [PlannedFile({"partition_id": p}, _rows([i * 10 + 1, i * 10 + 2], p)
                           .drop_columns(["partition_id"]))
               for i, p in enumerate(partitions)]
    files = write_files(storage, "t", planned, stats_columns=("seq",))
    assert [f.rows for f in files] == [2, 2, 2, 2]
    # The Hive folder names are the ones delta-rs itself writes.
    assert sorted(os.listdir(tmp_path / "t")) == sorted(
        ["_delta_log", "partition_id=a%20b", "partition_id=x%25y", "partition_id=%C3%A9",
         "partition_id=plain"])
    dt.create_write_transaction([f.action for f in files], mode="append", schema=dt.schema(),
                                partition_by=["partition_id"])
    dt = DeltaTable(str(tmp_path / "t"))
    got = dt.to_pyarrow_table().sort_by("seq").to_pydict()
    assert got["seq"] == [1, 2, 11, 12, 21, 22, 31, 32]
    assert got["partition_id"] == ["a b", "a b", "x%y", "x%y", "é", "é", "plain", "plain"]
    actions = pa.table(dt.get_add_actions(flatten=True)).sort_by("min.seq").to_pydict()
    assert actions["min.seq"] == [1, 11, 21, 31] and actions["max.seq"] == [2, 12, 22, 32]
    assert actions["num_records"] == [2, 2, 2, 2]
    for f in files:
        assert json.loads(f.action.stats)["nullCount"] == {"seq": 0}


def test_a_failed_write_leaves_no_file_behind(tmp_path):
    _table(tmp_path, ["partition_id"])
    storage = Storage.at(tmp_path)
    good = [PlannedFile({"partition_id": f"p{i}"}, _rows([i], "x").drop_columns(["partition_id"]))
            for i in range(6)]
    # A folder name longer than a file system allows: that one write fails.
    bad = PlannedFile({"partition_id": "z" * 300}, _rows([99], "x").drop_columns(["partition_id"]))
    with pytest.raises(OSError):
        write_files(storage, "t", [*good, bad])
    leftovers = [name for folder, _, names in os.walk(tmp_path / "t")
                 if "_delta_log" not in folder for name in names]
    assert leftovers == []


def test_files_of_a_lost_commit_are_deleted(tmp_path):
    dt = _table(tmp_path, ["partition_id"])
    storage = Storage.at(tmp_path)
    stale = DeltaTable(str(tmp_path / "t"))
    first = write_files(storage, "t", [_file("a", [1])])
    dt.create_write_transaction([f.action for f in first], mode="append", schema=dt.schema(),
                                partition_by=["partition_id"])
    second = write_files(storage, "t", [_file("a", [2])])
    with pytest.raises(CommitFailedError):
        stale.create_write_transaction([f.action for f in second], mode="append",
                                       schema=stale.schema(), partition_by=["partition_id"],
                                       commit_properties=CommitProperties(max_commit_retries=0))
    delete_files(storage, "t", second)
    assert not os.path.exists(tmp_path / "t" / second[0].action.path)
    assert os.path.exists(tmp_path / "t" / first[0].action.path)
    assert DeltaTable(str(tmp_path / "t")).to_pyarrow_table().column("seq").to_pylist() == [1]
