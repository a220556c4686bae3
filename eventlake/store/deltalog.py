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
(`path`, `size_bytes`, `num_records`, `partition.<column>`, `min.<column>`, `max.<column>`,
named and spelled as delta-rs's `get_add_actions(flatten=True)` gives them, paths in the log's
percent-encoding), built once from delta-rs and then updated from each new commit's adds and
removes.
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
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError

from eventlake._version import __version__
from eventlake.errors import CorruptLakeError

__all__ = [
    "Commit",
    "FileRemoval",
    "LogVersion",
    "TableLog",
    "forget_logs",
    "log_path",
    "supports_own_commits",
    "table_log",
]

# Statistics columns the manifest carries besides the partition values.
STAT_COLUMNS = ("seq", "partition_id")
_MAX_WRITER_VERSION = 2
# Commits with file changes kept unapplied before the file list is built anyway.
_MAX_PENDING = 200
_CLIENT = f"eventlake-{__version__}"


def log_path(version: int) -> str:
    return f"{version:020d}.json"


def encode_path(path: str) -> str:
    """A storage path as the Delta log spells it (delta-rs percent-encodes it once more)."""
    return quote(path, safe="/=")


@dataclass(frozen=True)
class FileRemoval:
    """A live file a commit removes: its path as the log spells it (a manifest's `path`, which
    is also how delta-rs's `get_add_actions` spells it), partition values and size."""

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
    # A new `metaData` action (schema, partition columns, configuration), for a commit that
    # replaces the table's layout; the table id should stay the old one.
    metadata: Mapping[str, Any] | None = None


def supports_own_commits(table: DeltaTable) -> bool:
    protocol = table.protocol()
    return (protocol.min_writer_version <= _MAX_WRITER_VERSION
            and not (protocol.writer_features or []))


class _Manifest:
    """The live files of one version, as an Arrow table. Immutable: a commit makes a new one
    from the old (appending its adds is zero-copy; only removes filter the whole list)."""

    def __init__(self, table: pa.Table) -> None:
        self._table = table

    def advance(self, adds: list[dict[str, Any]], removes: set[str]) -> _Manifest:
        table = self._table
        if removes:
            gone = pa.array(sorted(removes), pa.string())
            table = table.filter(pc.invert(pc.is_in(table.column("path"), value_set=gone)))
        if adds:
            table = pa.concat_tables([table, pa.Table.from_pylist(adds, schema=table.schema)])
        return _Manifest(table)

    def table(self) -> pa.Table:
        # Commits append chunks; planning's compute kernels pay per chunk, so the list a
        # reader asks for is one chunk (made once per version).
        if self._table.column("path").num_chunks > 1:
            self._table = self._table.combine_chunks()
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


@dataclass(frozen=True)
class LogVersion:
    """One version of a table as a `TableLog` saw it: app transactions and live files."""

    version: int
    partition_columns: tuple[str, ...]
    schema: pa.Schema
    configuration: Mapping[str, str | None]
    table_id: str
    _manifest: _Manifest | None
    _txns: Mapping[str, tuple[int, int | None]]
    # Every app transaction as of the log's base version (None: only delta-rs knows them).
    _base_txns: Mapping[str, tuple[int, int | None]] | None
    _log: TableLog

    def transaction_version(self, app_id: str) -> int | None:
        found = self._txns.get(app_id)
        if found is None:
            if self._base_txns is None:
                return self._log.base_transaction_version(app_id)
            found = self._base_txns.get(app_id)
            if found is None:
                return None
        version, updated = found
        retention = self._log.txn_retention_ms
        if updated is not None and retention is not None and (
                time.time() * 1000 - updated > retention):
            return None  # expired, as delta-rs reads it
        return version

    def files(self) -> pa.Table:
        if self._manifest is None:
            return self._log.files_at(self.version)
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
        # All of them at the base, read from the checkpoint and the commits after it (a
        # delta-rs lookup costs milliseconds on a table of many keys); never mutated, so a
        # pinned version can keep it.
        self._base_txns = _read_txns(self.log_dir, self.version)
        self._schema = _manifest_schema(base)
        self._types = {f.name: f.type for f in self._schema}
        self._partitions = list(base.metadata().partition_columns)
        metadata = base.metadata()
        config = dict(metadata.configuration)
        self._configuration = config
        self._arrow_schema = pa.schema(base.schema())
        self._table_id = str(metadata.id)
        self.checkpoint_interval = int(config.get("delta.checkpointInterval", "100"))
        self.txn_retention_ms = interval_ms(config.get("delta.setTransactionRetentionDuration"))
        self.own_commits = self.own_commits and supports_own_commits(base)
        self._manifest: _Manifest | None = None
        self._pending: list[tuple[list[dict[str, Any]], set[str]]] = []
        self._seen = self._stamp()

    @property
    def partition_columns(self) -> list[str]:
        return list(self._partitions)

    @property
    def base(self) -> DeltaTable:
        assert self._base is not None
        return self._base

    def _stamp(self) -> tuple[int, int] | None:
        try:
            status = os.stat(os.path.join(self.log_dir, log_path(self.version)))
        except FileNotFoundError:
            return None
        return status.st_ino, status.st_mtime_ns

    def refresh(self) -> int:
        """Read the commits made since the newest version seen; returns the version.

        When the file of the newest version seen is gone or another file (the table was
        re-created, or its log cleaned up past this point while the process idled), the log
        is read afresh from delta-rs.
        """
        with self._lock:
            if self._stamp() != self._seen:
                self._load()
                return self.version
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
                self._seen = self._stamp()

    def _apply(self, version: int, text: str) -> bool:
        """Apply one commit's actions; False when it changes what a replay cannot follow
        (table metadata or protocol), which calls for a fresh base."""
        adds: list[dict[str, Any]] = []
        removes: set[str] = set()
        txns: dict[str, tuple[int, int | None]] = {}
        # Not splitlines(): a partition value may hold U+2028 and friends, raw.
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                action = json.loads(line)
            except ValueError as exc:
                path = os.path.join(self.log_dir, log_path(version))
                raise CorruptLakeError(
                    f"damaged Delta log: {path}: commit {version} is not valid JSON lines "
                    f"(line {number}: {exc})", path=path) from None
            if "metaData" in action or "protocol" in action:
                return False
            if "add" in action:
                adds.append(self._manifest_row(action["add"]))
            elif "remove" in action:
                removes.add(action["remove"]["path"])
            elif "txn" in action:
                txn = action["txn"]
                updated = txn.get("lastUpdated")
                txns[txn["appId"]] = (int(txn["version"]),
                                      None if updated is None else int(updated))
        if adds or removes:
            if self._manifest is not None:
                self._manifest = self._manifest.advance(adds, removes)
            else:
                # The file list is built from delta-rs only when first asked for; until then
                # the changes since the base wait here (a writer may never need the list).
                self._pending.append((adds, removes))
                if len(self._pending) > _MAX_PENDING:
                    self._current_manifest()
        self._txns.update(txns)
        self.version = version
        return True

    def _manifest_row(self, add: Mapping[str, Any]) -> dict[str, Any]:
        stats = json.loads(add["stats"]) if add.get("stats") else {}
        row: dict[str, Any] = {"path": add["path"], "size_bytes": add.get("size"),
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
            manifest = _Manifest(_base_manifest(self.base))
            for adds, removes in self._pending:
                manifest = manifest.advance(adds, removes)
            self._manifest = manifest
            self._pending = []
        return self._manifest

    # -- reading a version -----------------------------------------------------------------

    def pin(self) -> LogVersion:
        """The newest version (after reading any newer commits), pinned."""
        with self._lock:
            self.refresh()
            return LogVersion(self.version, tuple(self._partitions), self._arrow_schema,
                              self._configuration, self._table_id, self._manifest,
                              dict(self._txns), self._base_txns, self)

    def files_at(self, version: int) -> pa.Table:
        """The file list of `version`, which must still be the newest version seen, or one
        whose list was built (a version pinned before the list existed is read anew)."""
        with self._lock:
            if version == self.version:
                return self._current_manifest().table()
        return _base_manifest(DeltaTable(self.uri, version=version))

    def base_transaction_version(self, app_id: str) -> int | None:
        with self._lock:
            if app_id not in self._txn_memo:
                self._txn_memo[app_id] = self.base.transaction_version(app_id)
            return self._txn_memo[app_id]

    # -- writing ---------------------------------------------------------------------------

    def commit(self, commit: Commit, *, base_version: int) -> int | None:
        """Write `commit` as version `base_version + 1`; `CommitFailedError` when another
        writer committed that version first. Returns the new version, or None when eventlake
        does not commit this table itself (its protocol, or a file system without hard links:
        `own_commits` is off) and nothing was written: delta-rs commits it then."""
        if not self.own_commits:
            return None
        version = base_version + 1
        now = int(time.time() * 1000)
        # Time travel by timestamp picks the last version stamped at or before it: two commits
        # in one millisecond would send a look-up of the first to the second. Stamp each
        # commit after the one before (one stat), whichever process wrote that.
        try:
            before = os.stat(os.path.join(self.log_dir, log_path(base_version))).st_mtime_ns
        except OSError:
            before = 0
        now = max(now, before // 1_000_000 + 1)
        lines: list[dict[str, Any]] = [{"commitInfo": {
            "timestamp": now, "operation": commit.operation,
            "operationParameters": {"mode": commit.mode},
            "clientVersion": _CLIENT, **dict(commit.info)}}]
        if commit.metadata is not None:
            lines.append({"metaData": dict(commit.metadata)})
        for app_id, txn_version, expires in commit.txns:
            txn: dict[str, Any] = {"appId": app_id, "version": int(txn_version)}
            if expires:
                txn["lastUpdated"] = now
            lines.append({"txn": txn})
        for removal in commit.removes:
            entry: dict[str, Any] = {
                "path": removal.path, "deletionTimestamp": now,
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
        if os.path.exists(os.path.join(self.log_dir, log_path(version + 1))):
            # The next version exists while `version` does not: another writer is ahead
            # (re-read and retry), or `version`'s file was deleted (damage; refresh names it).
            self.refresh()
            raise CommitFailedError(f"version {version} of {self.uri} is behind the log")
        temporary = os.path.join(self.log_dir, f".eventlake-{uuid.uuid4().hex}.json.tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
        # Time travel by timestamp (delta-rs `load_as_version`) goes by the commit file's
        # modification time: make it the commitInfo timestamp that `history()` shows, or a
        # restore to a version's own time would land one version earlier.
        os.utime(temporary, ns=(now * 1_000_000, now * 1_000_000))
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
            return None
        finally:
            os.remove(temporary)
        with self._lock:
            if self.version == base_version and self._apply(version, text):
                self._seen = self._stamp()
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
                # The checkpointed table is the new base for app transactions; the file list
                # carries on as it is (rebuilding it would cost as much as the whole table).
                if self._manifest is None:
                    self._pending = []
                self._base = table
                self._base_version = version
                if self._base_txns is not None:
                    self._base_txns = {**self._base_txns, **self._txns}
                else:
                    self._base_txns = _read_txns(self.log_dir, version)
                self._txns = {}
                self._txn_memo = {}



def _read_txns(log_dir: str, version: int) -> dict[str, tuple[int, int | None]] | None:
    """Every app transaction of the table at `version` (with its lastUpdated): the last
    checkpoint's `txn` rows plus the commits after it. None when that cannot be read here
    (no usable checkpoint record, a commit file gone): delta-rs is asked key by key then."""
    import pyarrow.parquet as pq

    txns: dict[str, tuple[int, int | None]] = {}
    start = 0
    try:
        with open(os.path.join(log_dir, "_last_checkpoint"), encoding="utf-8") as handle:
            last = json.load(handle)
        checkpoint = int(last["version"])
    except FileNotFoundError:
        checkpoint = -1
    except (ValueError, KeyError, TypeError):
        return None
    if checkpoint > version:
        return None
    if checkpoint >= 0:
        parts = int(last.get("parts") or 0)
        names = ([f"{checkpoint:020d}.checkpoint.parquet"] if not parts else
                 [f"{checkpoint:020d}.checkpoint.{i:010d}.{parts:010d}.parquet"
                  for i in range(1, parts + 1)])
        try:
            for name in names:
                rows = pq.read_table(os.path.join(log_dir, name), columns=["txn"])
                for txn in rows.column("txn").drop_null().to_pylist():
                    txns[txn["appId"]] = (int(txn["version"]), txn.get("lastUpdated"))
        except (OSError, KeyError, pa.ArrowException):
            return None
        start = checkpoint + 1
    for number in range(start, version + 1):
        try:
            with open(os.path.join(log_dir, log_path(number)), encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            return None
        for line in text.split("\n"):
            if '"txn"' not in line:
                continue
            try:
                txn = json.loads(line).get("txn")
            except ValueError:
                return None
            if txn is not None:
                updated = txn.get("lastUpdated")
                txns[txn["appId"]] = (int(txn["version"]),
                                      None if updated is None else int(updated))
    return txns


_LOGS: dict[str, TableLog] = {}
_LOGS_LOCK = threading.Lock()


def forget_logs() -> None:
    """Drop every `TableLog` of this process: the next use reads each log afresh, as a new
    process would (tests, and a process that wants to see damage done to old log entries)."""
    with _LOGS_LOCK:
        _LOGS.clear()


def table_log(uri: str, local_path: str) -> TableLog:
    """The process's `TableLog` of the local table at `uri` (made on first use)."""
    with _LOGS_LOCK:
        log = _LOGS.get(uri)
        if log is None:
            log = _LOGS[uri] = TableLog(uri, local_path)
        return log
