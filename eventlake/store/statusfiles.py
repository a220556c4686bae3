"""Small status records of a lake, beside its tables: `<root>/status/<kind>/.../<name>`.

Refresh records (`refreshrecords`) and change-feed cursors live here: a few hundred bytes
each, read and written whole by one process at a time, on the lake's own storage (a local
folder or the object store, with the tables' storage options). Each is a one-row Parquet file
holding a JSON object: Parquet because it is what this code already writes through every file
system a lake can be on. Written under a temporary name and moved into place, so a reader
sees the old record or the new one, never half of one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from eventlake.store.storage import Storage

__all__ = ["STATUS", "read_status", "write_status"]

STATUS = "status"


def _path(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def read_status(storage: Storage, folder: Sequence[str], name: str) -> dict[str, Any] | None:
    """The record `name` under `status/<folder...>`, or None when there is none or it cannot
    be read (a status record is never worth an error: its writer writes it again)."""
    fs, base = storage.file_system(STATUS, *folder)
    try:
        table = pq.read_table(_path(base, f"{name}.parquet"), filesystem=fs)
        value = json.loads(table.column("record")[0].as_py())
    except (OSError, ValueError, TypeError, KeyError, IndexError, pa.ArrowException):
        return None
    return value if isinstance(value, dict) else None


def write_status(storage: Storage, folder: Sequence[str], name: str,
                 record: dict[str, Any]) -> None:
    """Store `record` (JSON-able) as `name` under `status/<folder...>`, whole or not at all."""
    fs, base = storage.file_system(STATUS, *folder)
    if base:
        fs.create_dir(base, recursive=True)
    partial = _path(base, f".{uuid.uuid4().hex}.partial")
    rows = pa.table({"record": [json.dumps(record, sort_keys=True)]})
    try:
        pq.write_table(rows, partial, filesystem=fs)
        fs.move(partial, _path(base, f"{name}.parquet"))
    except BaseException:
        try:
            fs.delete_file(partial)
        except OSError:
            pass
        raise
