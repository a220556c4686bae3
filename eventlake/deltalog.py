"""eventlake's own reader and writer of a Delta table's log, for the commits on its hot path.

Why: every commit through delta-rs lists the whole `_delta_log` folder (about three times, with
a stat per entry) and rebuilds its in-memory list of live files, so a commit's cost grows with
the table's age and file count: a single-event append went from 26 ms to 162 ms over 1,000
commits. A `TableLog` instead

- knows its table's version, app transactions and live files, and learns of newer commits by
  probing `_delta_log/<version + 1>.json` and reading just those files (no listing);
- commits by writing the next version's JSON file with put-if-absent (`os.link` of a finished
  temporary file: it refuses an existing name), so of two writers racing for a version exactly
  one wins and the other gets `CommitFailedError`, as a delta-rs commit with no retries does;
- writes a checkpoint every `delta.checkpointInterval` commits, and cleans up expired log
  files then, through delta-rs (`create_checkpoint`, `cleanup_metadata`), so readers never
  replay long JSON runs and `_delta_log` stays within the log retention.

What it writes is plain Delta (protocol reader 1 / writer 2: `commitInfo`, `add`, `remove`,
`txn` actions), read back by delta-rs, Polars, DuckDB and Spark alike. It is only used on local
lakes: object stores commit through delta-rs, whose conditional PUT provides put-if-absent there.
A table whose protocol needs more than writer version 2 is never written here.

The live-file list ("manifest") of a version is an Arrow table with the columns planning reads
(`path`, `size_bytes`, `num_records`, `partition.<column>`, `min.<column>`, `max.<column>`),
built once from delta-rs and then updated from each new commit's adds and removes.
"""

from __future__ import annotations

import errno
import json
import os
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError

from eventlake import __version__

__all__ = [
    "Commit",
    "FileRemoval",
    "LogVersion",
    "OwnCommitsUnsupported",
    "TableLog",
    "log_path",
    "supports_own_commits",
]

# Statistics columns the manifest carries besides the partition values.
STAT_COLUMNS = ("seq", "partition_id")
_MAX_WRITER_VERSION = 2
_CLIENT = f"eventlake-{__version__}"


def log_path(version: int) -> str:
    return f"{version:020d}.json"


def encode_path(path: str) -> str:
    """A storage path as the Delta log spells it (delta-rs percent-encodes it once more)."""
    return quote(path, safe="/=")


@dataclass(frozen=True)
class FileRemoval:
    """A live file a commit removes (its path as stored, partition values and size)."""

    path: str
    partition_values: Mapping[str, str | None]
    size: int | None = None


@dataclass(frozen=True)
class Commit:
    """The actions of one commit: adds (delta-rs `AddAction`s), removes, app transactions
    `(app_id, version, expires)` (a key that `expires` carries `lastUpdated`, so the table's
    `delta.setTransactionRetentionDuration` applies to it), and commit-info entries."""

    adds: Sequence[Any] = ()
    removes: Sequence[FileRemoval] = ()
    txns: Sequence[tuple[str, int, bool]] = ()
    info: Mapping[str, str] = field(default_factory=dict)
    operation: str = "WRITE"
    mode: str = "Append"
    data_change: bool = True


def supports_own_commits(table: DeltaTable) -> bool:
    protocol = table.protocol()
    return (protocol.min_writer_version <= _MAX_WRITER_VERSION
            and not (protocol.writer_features or []))


class _Manifest:
    """The live files of one version: a base Arrow table plus later adds and removes,
    materialized on demand (most commits never need the file list)."""

    def __init__(self, base: pa.Table, added: list[dict[str, Any]] | None = None,
                 removed: frozenset[str] = frozenset()) -> None:
        self.base = base
        self.added = added or []
        self.removed = removed
        self._table: pa.Table | None = base if not added and not removed else None

    def advance(self, adds: list[dict[str, Any]], removes: set[str]) -> _Manifest:
        if not adds and not removes:
            return self
        kept = [row for row in self.added if row["path"] not in removes]
        # A path added and removed within the runs after the base leaves no trace.
        base_removes = removes - {row["path"] for row in self.added}
        return _Manifest(self.base, kept + adds, self.removed | base_removes)

    def table(self) -> pa.Table:
        if self._table is None:
            base = self.base
            if self.removed and base.num_rows:
                keep = pc.invert(pc.is_in(base.column("path"),
                                          value_set=pa.array(list(self.removed), pa.string())))
                base = base.filter(keep)
            if self.added:
                extra = pa.Table.from_pylist(self.added, schema=base.schema)
                base = pa.concat_tables([base, extra])
            self._table = base
        return self._table


def _base_manifest(table: DeltaTable) -> pa.Table:
    """The live files of `table` as the manifest columns (from delta-rs, once per base)."""
    actions = pa.table(table.get_add_actions(flatten=True))
    schema = _manifest_schema(table)
    columns = {}
    for f in schema:
        if f.name in actions.column_names:
            columns[f.name] = actions.column(f.name).cast(f.type)
        else:
            columns[f.name] = pa.nulls(actions.num_rows, f.type)
    return pa.table(columns, schema=schema)


def _manifest_schema(table: DeltaTable) -> pa.Schema:
    arrow = pa.schema(table.schema())
    partitions = list(table.metadata().partition_columns)
    fields = [pa.field("path", pa.string()), pa.field("size_bytes", pa.int64()),
              pa.field("num_records", pa.int64())]
    fields += [pa.field(f"partition.{c}", arrow.field(c).type) for c in partitions]
    for name in STAT_COLUMNS:
        if name in arrow.names and name not in partitions:
            kind = arrow.field(name).type
            fields += [pa.field(f"min.{name}", kind), pa.field(f"max.{name}", kind)]
    return pa.schema(fields)


def _partition_value(text: str | None, kind: pa.DataType) -> Any:
    if text is None or text == "":
        return None
    if pa.types.is_integer(kind):
        return int(text)
    return text


_UNITS_MS = {"millisecond": 1, "second": 1000, "minute": 60_000, "hour": 3_600_000,
             "day": 86_400_000, "week": 604_800_000}


def interval_ms(text: str | None) -> int | None:
    """A Delta interval property (`interval 7 days`) in milliseconds; None when unset."""
    if not text:
        return None
    words = text.strip().lower().split()
    if words and words[0] == "interval":
        words = words[1:]
    if len(words) != 2:
        return None
    unit = words[1].rstrip("s")
    if unit not in _UNITS_MS:
        return None
    return int(float(words[0]) * _UNITS_MS[unit])


class OwnCommitsUnsupported(Exception):
    """This table (protocol) or file system (no hard links) is committed through delta-rs."""


@dataclass(frozen=True)
class LogVersion:
    """One version of a table as a `TableLog` saw it: app transactions and live files."""

    version: int
    partition_columns: tuple[str, ...]
    _manifest: _Manifest
    _txns: Mapping[str, tuple[int, int | None]]
    _log: TableLog

    def transaction_version(self, app_id: str) -> int | None:
        found = self._txns.get(app_id)
        if found is None:
            return self._log.base_transaction_version(app_id)
        version, updated = found
        retention = self._log.txn_retention_ms
        if updated is not None and retention is not None and (
                time.time() * 1000 - updated > retention):
            return None  # expired, as delta-rs reads it
        return version

    def files(self) -> pa.Table:
        return self._manifest.table()


class TableLog:
    """The log of one local Delta table, as of the newest commit this process has seen.

    Thread-safe. `snapshot()` pins a version (its txns and manifest); `commit()` writes the
    next version on top of a pinned one.
    """

    def __init__(self, uri: str, local_path: str) -> None:
        self.uri = uri
        self.local = local_path
        self.log_dir = os.path.join(local_path, "_delta_log")
        self._lock = threading.RLock()
        self._base: DeltaTable | None = None
        self.own_commits = True
        self._load()

    # -- loading ---------------------------------------------------------------------------

    def _load(self) -> None:
        """(Re)base on the newest version delta-rs sees: one open, read from the checkpoint."""
        base = DeltaTable(self.uri)
        self._base = base
        self.version = base.version()
        self._base_version = self.version
        self._txn_memo: dict[str, int | None] = {}
        # App transactions of the commits after the base: version and lastUpdated.
        self._txns: dict[str, tuple[int, int | None]] = {}
        self._schema = _manifest_schema(base)
        self._types = {f.name: f.type for f in self._schema}
        self._partitions = list(base.metadata().partition_columns)
        config = base.metadata().configuration
        self.checkpoint_interval = int(config.get("delta.checkpointInterval", "100"))
        self.txn_retention_ms = interval_ms(config.get("delta.setTransactionRetentionDuration"))
        self.own_commits = self.own_commits and supports_own_commits(base)
        self._manifest: _Manifest | None = None

    @property
    def partition_columns(self) -> list[str]:
        return list(self._partitions)

    @property
    def base(self) -> DeltaTable:
        assert self._base is not None
        return self._base

    def refresh(self) -> int:
        """Read the commits made since the newest version seen; returns the version."""
        with self._lock:
            while True:
                path = os.path.join(self.log_dir, log_path(self.version + 1))
                try:
                    with open(path, encoding="utf-8") as handle:
                        text = handle.read()
                except FileNotFoundError:
                    return self.version
                if not self._apply(self.version + 1, text):
                    self._load()
                    return self.version

    def _apply(self, version: int, text: str) -> bool:
        """Apply one commit's actions; False when it changes what a replay cannot follow
        (table metadata or protocol), which calls for a fresh base."""
        adds: list[dict[str, Any]] = []
        removes: set[str] = set()
        txns: dict[str, tuple[int, int | None]] = {}
        for line in text.splitlines():
            if not line.strip():
                continue
            action = json.loads(line)
            if "metaData" in action or "protocol" in action:
                return False
            if "add" in action:
                adds.append(self._manifest_row(action["add"]))
            elif "remove" in action:
                removes.add(unquote(action["remove"]["path"]))
            elif "txn" in action:
                txn = action["txn"]
                updated = txn.get("lastUpdated")
                txns[txn["appId"]] = (int(txn["version"]),
                                      None if updated is None else int(updated))
        if self._manifest is not None or adds or removes:
            self._manifest = self._current_manifest().advance(adds, removes)
        self._txns.update(txns)
        self.version = version
        return True

    def _manifest_row(self, add: Mapping[str, Any]) -> dict[str, Any]:
        stats = json.loads(add["stats"]) if add.get("stats") else {}
        row: dict[str, Any] = {"path": unquote(add["path"]), "size_bytes": add.get("size"),
                               "num_records": stats.get("numRecords")}
        values = add.get("partitionValues") or {}
        for column in self._partitions:
            row[f"partition.{column}"] = _partition_value(values.get(column),
                                                          self._types[f"partition.{column}"])
        low, high = stats.get("minValues") or {}, stats.get("maxValues") or {}
        for name in STAT_COLUMNS:
            if f"min.{name}" in self._types:
                row[f"min.{name}"] = low.get(name)
                row[f"max.{name}"] = high.get(name)
        return row

    def _current_manifest(self) -> _Manifest:
        if self._manifest is None:
            self._manifest = _Manifest(_base_manifest(self.base))
        return self._manifest

    # -- reading a version -----------------------------------------------------------------

    def pin(self) -> LogVersion:
        """The newest version (after reading any newer commits), pinned."""
        with self._lock:
            self.refresh()
            return LogVersion(self.version, tuple(self._partitions),
                              self._current_manifest(), dict(self._txns), self)

    def base_transaction_version(self, app_id: str) -> int | None:
        with self._lock:
            if app_id not in self._txn_memo:
                self._txn_memo[app_id] = self.base.transaction_version(app_id)
            return self._txn_memo[app_id]

    # -- writing ---------------------------------------------------------------------------

    def commit(self, commit: Commit, *, base_version: int) -> int:
        """Write `commit` as version `base_version + 1`; `CommitFailedError` when another
        writer committed that version first. Returns the new version."""
        if not self.own_commits:
            raise OwnCommitsUnsupported(self.uri)
        version = base_version + 1
        now = int(time.time() * 1000)
        lines: list[dict[str, Any]] = [{"commitInfo": {
            "timestamp": now, "operation": commit.operation,
            "operationParameters": {"mode": commit.mode},
            "clientVersion": _CLIENT, **dict(commit.info)}}]
        for app_id, txn_version, expires in commit.txns:
            txn: dict[str, Any] = {"appId": app_id, "version": int(txn_version)}
            if expires:
                txn["lastUpdated"] = now
            lines.append({"txn": txn})
        for removal in commit.removes:
            entry: dict[str, Any] = {
                "path": encode_path(removal.path), "deletionTimestamp": now,
                "dataChange": commit.data_change, "extendedFileMetadata": True,
                "partitionValues": dict(removal.partition_values)}
            if removal.size is not None:
                entry["size"] = int(removal.size)
            lines.append({"remove": entry})
        for add in commit.adds:
            lines.append({"add": {
                "path": encode_path(add.path), "partitionValues": dict(add.partition_values),
                "size": int(add.size), "modificationTime": int(add.modification_time),
                "dataChange": bool(add.data_change), "stats": add.stats}})
        text = "\n".join(json.dumps(line, ensure_ascii=False, separators=(",", ":"))
                         for line in lines) + "\n"
        temporary = os.path.join(self.log_dir, f".eventlake-{uuid.uuid4().hex}.json.tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
        try:
            os.link(temporary, os.path.join(self.log_dir, log_path(version)))
        except FileExistsError:
            raise CommitFailedError(
                f"version {version} of {self.uri} was committed by another writer") from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            # A file system without hard links: put-if-absent is delta-rs's business here.
            self.own_commits = False
            raise OwnCommitsUnsupported(self.uri) from exc
        finally:
            os.remove(temporary)
        with self._lock:
            if self.version == base_version:
                self._apply(version, text)
            else:
                self.refresh()
        if (version + 1) % self.checkpoint_interval == 0:
            self._checkpoint(version)
        return version

    def _checkpoint(self, version: int) -> None:
        """Checkpoint `version` and drop expired log files; rebase on the checkpoint.

        A failure here leaves a committed version without its checkpoint, which only makes
        the next open replay more JSON: it is not an error of the commit.
        """
        try:
            table = DeltaTable(self.uri, version=version)
            table.create_checkpoint()
            table.cleanup_metadata()
        except Exception:
            return
        with self._lock:
            if self.version == version:
                self._load()

