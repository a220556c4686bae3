"""Staged tables: Parquet files under `<root>/_staging/` that a worker wrote for a
coordinator to commit later (a parallel ingest's checked chunks, `eventlake.ingest.parallel`,
and a strict ingest's chunks while the rest of its file is checked).

They live in the lake's own storage, through the same seam as its tables, so a worker on
another machine reaches them with the lake URI and storage options alone, on a local folder
or an object store. No table references them and no reader looks there (Delta skips names
starting with `_`); the coordinator deletes each once it landed, and a crash leaves harmless
leftovers that `eventlake doctor --fix` deletes (`staged_files` lists them).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

from eventlake.store.tablefiles import join_path, list_files, relative_path

if TYPE_CHECKING:
    import pyarrow as pa

    from eventlake.store.storage import Storage

__all__ = ["STAGING", "StagedFile", "delete_staged", "read_staged", "stage_table",
           "staged_files"]

STAGING = "_staging"


@dataclass(frozen=True)
class StagedFile:
    """One file under `<root>/_staging`: where it is (as `Storage.shown` spells it), its size
    and its age in seconds."""

    path: str
    size: int | None
    mtime: float | None


def stage_table(storage: Storage, relative: str, table: pa.Table) -> None:
    """Write `table` as `<root>/_staging/<relative>` (a Parquet file)."""
    import pyarrow.parquet as pq

    if storage.is_local:
        target = storage.local_path(STAGING, relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        pq.write_table(table, target, compression="snappy")
        return
    fs, base = storage.file_system(STAGING)
    # Through a stream, not `filesystem=`: pyarrow would make the folders first, which on an
    # object store are empty objects left behind.
    with fs.open_output_stream(join_path(base, relative)) as stream:
        pq.write_table(table, stream, compression="snappy")


def read_staged(storage: Storage, relative: str) -> pa.Table:
    """The table `stage_table` wrote at `relative`, with its schema."""
    import pyarrow.parquet as pq

    if storage.is_local:
        return pq.read_table(storage.local_path(STAGING, relative))
    fs, base = storage.file_system(STAGING)
    return pq.read_table(join_path(base, relative), filesystem=fs)


def delete_staged(storage: Storage, relative: str) -> None:
    """Delete the staged file or folder `relative` (best effort: a file already gone, or one
    left behind, is for `doctor --fix`)."""
    if storage.is_local:
        target = storage.local_path(STAGING, relative)
        if os.path.isdir(target):
            shutil.rmtree(target, ignore_errors=True)
        else:
            try:
                os.remove(target)
            except OSError:
                pass
        # Folders it leaves empty go too (`_staging` itself once nothing is staged).
        top = os.path.dirname(storage.local_path(STAGING))
        folder = os.path.dirname(target)
        while len(folder) > len(top):
            try:
                os.rmdir(folder)
            except OSError:
                break
            folder = os.path.dirname(folder)
        return
    fs, base = storage.file_system(STAGING)
    folder = join_path(base, relative)
    found = [info.path for info in list_files(fs, folder)] or [folder]
    for path in found:
        try:
            fs.delete_file(path)
        except OSError:
            pass


def staged_files(storage: Storage) -> list[StagedFile]:
    """Every staged file under `<root>/_staging`, in path order. An empty object is not
    one (a staged file is Parquet, never empty): some object stores list a folder whose
    last file was deleted as an empty object, which holds nothing and costs nothing."""
    fs, base = storage.file_system(STAGING)
    files = [StagedFile(storage.shown(STAGING, relative_path(base, info.path)), info.size,
                        info.mtime.timestamp() if info.mtime else None)
             for info in list_files(fs, base) if info.size]
    return sorted(files, key=lambda f: f.path)
