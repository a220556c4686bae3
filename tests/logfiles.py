"""What the tests check about the physical files of an event log, on either layout.

The live files come from delta-rs (`DeltaTable.file_uris`), not from eventlake's own log reader,
so a test of eventlake's file handling does not grade it with its own answer. Files on disk
that no version references any more (tail files a compaction replaced, before a vacuum) are
not live and are not listed.

A lake on object storage is read the same way: give its URI as `root` and its storage options
as `options` (`lake.storage.options`); files are then URIs, read through delta-rs's object
store (tests/backends.py runs tests on both).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import unquote

import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake.fs import DeltaStorageHandler

from eventlake.model.layout import Layout, bucket_of

TAIL_FOLDER = "bucket=__HIVE_DEFAULT_PARTITION__"

Options = Mapping[str, str] | None


def _is_local(root: str | os.PathLike[str]) -> bool:
    text = os.fspath(root)
    return "://" not in text or text.startswith("file://")


def file_system(root: str | os.PathLike[str], *, options: Options = None
                ) -> tuple[pafs.FileSystem, Callable[[str], str]]:
    """The file system holding the lake at `root`, and how a path under the root (a local
    path, or a URI as `live_files` gives it) is spelled on it."""
    if _is_local(root):
        return pafs.LocalFileSystem(), lambda path: path
    prefix = os.fspath(root).rstrip("/") + "/"
    fs = pafs.PyFileSystem(DeltaStorageHandler(prefix.rstrip("/"), dict(options or {})))

    def spelled(path: str) -> str:
        assert path.startswith(prefix), (path, prefix)
        return path.removeprefix(prefix)

    return fs, spelled


def live_files(root: str | os.PathLike[str], *, options: Options = None) -> list[str]:
    """The local paths (or URIs) of the event log's live data files, sorted."""
    table = DeltaTable(f"{os.fspath(root).rstrip('/')}/events",
                       storage_options=dict(options) if options else None)
    return sorted(uri.removeprefix("file://") for uri in table.file_uris())


def layout_of(root: str | os.PathLike[str], *, options: Options = None) -> Layout:
    from eventlake.store.log import EventLog
    from eventlake.store.storage import Storage

    return EventLog.open(Storage.at(root, options), create=False).layout()


def seq_range(path: str) -> tuple[int, int]:
    seqs = pq.read_table(path, columns=["seq"]).column("seq").to_pylist()
    return min(seqs), max(seqs)


def file_rows(root: str | os.PathLike[str], *, layout: Layout | None = None,
              options: Options = None) -> dict[str, list[tuple[int, str]]]:
    """`(seq, partition_id)` of every row of every live file, after asserting that each file
    sits where the log's layout puts it:

    - `partition_id`: the file is in `events/partition_id=<p>/`, its rows are p's (the column
      lives in the folder name only, so the rows' partition *is* p);
    - `buckets`: the file is in `events/bucket=<b>/` and every row's partition hashes to b, or
      it is a tail file (`bucket=__HIVE_DEFAULT_PARTITION__`); either way its rows are sorted
      by `(partition_id, seq)` and it has no `bucket` column of its own.
    """
    chosen = layout or layout_of(root, options=options)
    # Path arithmetic on a URI folds its '//', the same way on both sides of a comparison.
    events = Path(root) / "events"
    fs, spelled = file_system(root, options=options)
    out: dict[str, list[tuple[int, str]]] = {}
    for file in live_files(root, options=options):
        folder = Path(file).parent
        assert folder.parent == events, file
        data = pq.read_table(spelled(file), filesystem=fs)
        seqs = data.column("seq").to_pylist()
        if chosen.kind == "partition_id":
            assert folder.name.startswith("partition_id="), file
            assert "partition_id" not in data.column_names, file
            # Hive folder names are percent-encoded.
            part = unquote(folder.name.removeprefix("partition_id="))
            out[file] = [(seq, part) for seq in seqs]
            continue
        assert "bucket" not in data.column_names, file
        parts = data.column("partition_id").to_pylist()
        rows = list(zip(seqs, parts, strict=True))
        assert sorted(rows, key=lambda r: (r[1], r[0])) == rows, f"{file}: not sorted"
        if folder.name != TAIL_FOLDER:
            assert folder.name.startswith("bucket="), file
            bucket = int(folder.name.removeprefix("bucket="))
            assert {bucket_of(p, chosen.bucket_count) for p in parts} == {bucket}, file
        out[file] = rows
    return out


def files_holding(root: str | os.PathLike[str], partition: str, *, options: Options = None
                  ) -> list[str]:
    """The live files with at least one event of `partition`, sorted."""
    return sorted(f for f, rows in file_rows(root, options=options).items()
                  if any(p == partition for _, p in rows))


def may_hold(file: str, rows: list[tuple[int, str]], partition: str, layout: Layout) -> bool:
    """Whether a plan for `partition` has to keep `file` (whose rows are `rows`): its folder
    is the partition's, or (buckets) its bucket's or the tail's and the file's range of
    partition ids takes in `partition` (what the logged statistics can tell)."""
    folder = Path(file).parent.name
    if layout.kind == "partition_id":
        return unquote(folder.removeprefix("partition_id=")) == partition
    if folder not in (TAIL_FOLDER, f"bucket={bucket_of(partition, layout.bucket_count)}"):
        return False
    parts = [p for _, p in rows]
    return min(parts) <= partition <= max(parts)


def ever_added(root: str | os.PathLike[str]) -> list[str]:
    """The local paths of every data file any commit of the event log added, sorted: a file
    on disk that is not among them is an orphan. Reads the JSON commits, all of which must
    still be there (the tests stay below the first log cleanup)."""
    log = Path(root) / "events" / "_delta_log"
    commits = sorted(log.glob("*.json"))
    assert commits and commits[0].name == f"{0:020d}.json", "the log's first commit is gone"
    added = set()
    for commit in commits:
        for line in commit.read_text().splitlines():
            action = json.loads(line) if line.strip() else {}
            if "add" in action:
                added.add(str(Path(root) / "events" / unquote(action["add"]["path"])))
    return sorted(added)


def on_disk(root: str | os.PathLike[str], *, options: Options = None) -> list[str]:
    """Every Parquet file under the event log's folder (local paths, or URIs), sorted."""
    if _is_local(root):
        return sorted(str(p) for p in (Path(root) / "events").rglob("*.parquet"))
    fs, _ = file_system(root, options=options)
    found = fs.get_file_info(pafs.FileSelector("events", recursive=True))
    prefix = os.fspath(root).rstrip("/")
    return sorted(f"{prefix}/{info.path}" for info in found
                  if info.type == pafs.FileType.File and info.path.endswith(".parquet"))
