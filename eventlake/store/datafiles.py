"""Writing a Delta table's Parquet data files ourselves, and taking them back.

`write_deltalake` names and writes a commit's files inside delta-rs, so when the commit then
loses a race the caller cannot tell which files were its own, and they stay behind as orphans
until a vacuum. Writing the files here instead gives eventlake three things: the files of one
batch are written in parallel threads (pyarrow releases the GIL), their rows keep the order and
row groups the caller chose, and an attempt whose commit lost deletes exactly its own files.
The commit itself stays delta-rs's (`DeltaTable.create_write_transaction`), fed the add actions
returned here with the statistics readers prune on.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake.transaction import AddAction

from eventlake.store.storage import Storage

__all__ = ["DataFile", "PlannedFile", "delete_files", "delete_unreferenced", "write_files"]

# Row groups small enough that a read of one partition in a big sorted bucket file skips the
# rest by statistics; large enough that a whole-file scan is not dominated by their headers.
ROW_GROUP_ROWS = 65_536
_THREADS = max(2, min(8, os.cpu_count() or 2))


@dataclass(frozen=True)
class PlannedFile:
    """One file to write: its Hive partition values and its rows (in file order)."""

    partition: Mapping[str, str | None]
    rows: pa.Table


@dataclass(frozen=True)
class DataFile:
    """A file written for a commit: its add action and what it holds."""

    action: AddAction
    rows: int


# Hive's name for a null partition value, which delta-rs and Spark use too.
NULL_FOLDER = "__HIVE_DEFAULT_PARTITION__"


def _folder(partition: Mapping[str, str | None]) -> str:
    # The Hive folder name delta-rs itself uses: every byte but ASCII letters, digits and
    # `-_.~` percent-encoded (so `partition_id=a b` lives in `partition_id=a%20b/`).
    return "/".join(f"{key}={NULL_FOLDER if value is None else quote(value, safe='')}"
                    for key, value in partition.items())


def _stats(rows: pa.Table, columns: Sequence[str]) -> str:
    minimum: dict[str, Any] = {}
    maximum: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    for name in columns:
        if name not in rows.column_names:
            continue
        column = rows.column(name)
        bounds = pc.min_max(column)
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        if low is not None:
            minimum[name] = low
            maximum[name] = high
        nulls[name] = column.null_count
    return json.dumps({"numRecords": rows.num_rows, "minValues": minimum,
                       "maxValues": maximum, "nullCount": nulls},
                      ensure_ascii=False, separators=(",", ":"))


class _Target:
    """Where files of one table go: a local folder, or the table's object store."""

    def __init__(self, storage: Storage, table: str) -> None:
        self.storage = storage
        self.table = table
        self._fs: Any = None
        self._made: set[str] = set()

    def _filesystem(self) -> Any:
        if self._fs is None:
            self._fs, _ = self.storage.file_system(self.table)
        return self._fs

    def write(self, relative: str, rows: pa.Table, properties: Mapping[str, Any]) -> int:
        if self.storage.is_local:
            target = self.storage.local_path(self.table, relative)
            folder = os.path.dirname(target)
            if folder not in self._made:
                os.makedirs(folder, exist_ok=True)
                self._made.add(folder)
            pq.write_table(rows, target, **properties)
            return os.path.getsize(target)
        fs = self._filesystem()
        pq.write_table(rows, relative, filesystem=fs, **properties)
        return int(fs.get_file_info(relative).size or 0)

    def delete(self, relative: str) -> None:
        if self.storage.is_local:
            try:
                os.remove(self.storage.local_path(self.table, relative))
            except FileNotFoundError:
                pass
            return
        try:
            self._filesystem().delete_file(relative)
        except (OSError, FileNotFoundError):
            pass


def write_files(storage: Storage, table: str, files: Sequence[PlannedFile], *,
                stats_columns: Sequence[str] = ("seq",),
                dictionary_columns: Sequence[str] = (),
                statistics_columns: Sequence[str] | None = None,
                data_change: bool = True, tag: str = "") -> list[DataFile]:
    """Write each planned file under its Hive folder of `<root>/<table>`, in parallel.

    Returns their add actions (storage paths, sizes, partition values, `numRecords` and
    min/max/null statistics of `stats_columns`) in input order. On any failure the files
    already written are deleted before the error propagates, so nothing is left behind.
    """
    if not files:
        return []
    target = _Target(storage, table)
    properties: dict[str, Any] = {
        "compression": "snappy",
        "use_dictionary": list(dictionary_columns) or False,
        "write_statistics": (list(statistics_columns) if statistics_columns is not None
                             else True),
        "row_group_size": ROW_GROUP_ROWS,
    }
    stamp = int(time.time() * 1000)
    suffix = f".{tag}" if tag else ""

    def write(item: PlannedFile) -> DataFile:
        folder = _folder(item.partition)
        name = f"part-{uuid.uuid4().hex}{suffix}.snappy.parquet"
        relative = f"{folder}/{name}" if folder else name
        size = target.write(relative, item.rows, properties)
        action = AddAction(path=relative, size=size,
                           partition_values={k: v for k, v in item.partition.items()},
                           modification_time=stamp, data_change=data_change,
                           stats=_stats(item.rows, stats_columns))
        return DataFile(action, item.rows.num_rows)

    written: list[DataFile | None] = [None] * len(files)
    failure: BaseException | None = None
    if len(files) == 1:
        try:
            written[0] = write(files[0])
        except BaseException as exc:
            failure = exc
    else:
        with ThreadPoolExecutor(min(_THREADS, len(files))) as pool:
            futures = [pool.submit(write, item) for item in files]
            for index, future in enumerate(futures):
                try:
                    written[index] = future.result()
                except BaseException as exc:
                    failure = failure or exc
    if failure is not None:
        delete_files(storage, table, [f for f in written if f is not None])
        raise failure
    return [f for f in written if f is not None]


def delete_files(storage: Storage, table: str, files: Sequence[DataFile]) -> None:
    """Delete files this process wrote for a commit that did not land (best effort).

    Only ever call it with files no commit references: a commit that lost its race, or files
    written before a failure that stopped the commit.
    """
    target = _Target(storage, table)
    for item in files:
        target.delete(item.action.path)


def delete_unreferenced(storage: Storage, table: str, paths: Sequence[str]) -> list[str]:
    """Delete the files `paths` (relative to `<root>/<table>`) that no version a reader may
    still open references (the caller's check: a vacuum of exactly these files), and a local
    folder they leave empty (a `partition_id` folder whose partition is gone keeps no name
    behind). Returns the deleted files as `Storage.shown` spells them; a file already gone is
    skipped."""
    fs, base = storage.file_system(table)
    deleted = []
    for relative in paths:
        try:
            fs.delete_file(f"{base}/{relative}" if base else relative)
        except FileNotFoundError:
            continue
        deleted.append(storage.shown(table, relative))
        if storage.is_local:
            try:
                os.rmdir(os.path.dirname(storage.local_path(table, relative)))
            except OSError:
                pass  # not empty: other files of the folder stay
    return deleted
