"""The storage seam: where tables live, and how a snapshot's files are listed and scanned.

Every read of a Delta table in eventlake goes through `Snapshot`: it pins one committed table
version, lists exactly that version's active files (with their partition values and `seq`
statistics from the Delta log), prunes them, and scans only what is left with Polars. Readers
therefore never see a half-written or vacuumed file, and tests can assert which files a read
touched (`ScanPlan.files`) instead of timing it.

Before a scan is built, `Snapshot.check` looks at each planned file of a local lake: present,
of the size its add action logged, ending in a Parquet footer. A damaged file then fails the
read with a `CorruptLakeError` naming the file and the table, at the call that builds the scan,
instead of a Polars or DuckDB error at `collect()` that does not say which file (Polars cuts
the path short, or leaves it out).

The seam also stands between eventlake and failures of the storage itself (see "Failures of the
storage" below): every table open and every write goes through it, so a process forked after
its parent opened a lake, a full disk and an object store that does not answer each become one
`EventlakeError` with a one-line message instead of a Rust panic or a raw delta-rs error.
"""

from __future__ import annotations

import functools
import os
import random
import threading
import time
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from eventlake.errors import (
    CommitConflictError,
    CorruptLakeError,
    EventlakeError,
    StorageError,
    StorageWarning,
)
from eventlake.store.deltalog import Commit, LogVersion, TableLog, table_log
from eventlake.store.storage_failures import (
    Written,
    check_free_space,
    check_process,
    landed,
    one_line,
    storage_failure,
)
from eventlake.store.storage_options import redact, redacted, remember_secrets, resolve_options

if TYPE_CHECKING:
    import pyarrow.fs as pafs

__all__ = [
    "ScanPlan",
    "Snapshot",
    "Storage",
    "Written",
    "backoff",
    "commit_on",
    "retry_commit",
]

T = TypeVar("T")

# Retry jitter from a generator of our own: the global `random` of a caller (a seeded test, a
# Hypothesis strategy in another thread) is left alone.
_JITTER = random.Random()


def backoff(delay: float) -> None:
    """Sleep a random time up to `delay` seconds before a retry (full jitter)."""
    time.sleep(_JITTER.uniform(0, delay))

FILE_COLUMN = "__eventlake_file"

# Opening a Delta table replays its log (hundreds of ms for thousands of files); bringing an
# open one up to date reads only the new commits (about a millisecond). Open tables are kept
# per thread, because a commit must be based on exactly the version its caller read: sharing
# one mutable table object across threads would let one thread advance another's snapshot.
_open_tables = threading.local()
_TXN_MEMO: dict[tuple[str, int, str], int | None] = {}

# The file list of a table version never changes, and delta-rs rebuilds it on every
# `get_add_actions` call (half a second at a million files): snapshots that are not pinned
# from a `TableLog` (older versions, object storage) share it per (table, version). Bounded by
# the files held, newest use last.
_ACTIONS: OrderedDict[tuple[str, int], pa.Table] = OrderedDict()
_ACTIONS_LOCK = threading.Lock()
_ACTIONS_MAX_FILES = 2_000_000
_ACTIONS_MAX_VERSIONS = 64

# Data files are immutable, so a file `Snapshot.check` found whole stays whole: the hashes of
# the (path, logged size) pairs found whole are kept per `TableLog` (a local table's log as
# this process knows it), and only files not among them are opened. `deltalog.forget_logs()`,
# which makes a process read every log afresh, forgets them too. At most this many per log.
_CHECKED: weakref.WeakKeyDictionary[TableLog, set[int]] = weakref.WeakKeyDictionary()
_CHECKED_LOCK = threading.Lock()
_CHECKED_MAX = 1_000_000


@dataclass(frozen=True)
class Storage:
    """A lake root (local folder or object-store URI) plus the options to reach it.

    `Storage.at` resolves the options (for `s3://` roots: AWS environment variables under
    explicit options, `aws_conditional_put=etag` by default; see `eventlake.store.storage_options`).
    The repr masks secret values.
    """

    root: str
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def at(cls, root: str | os.PathLike[str], options: Mapping[str, object] | None = None
           ) -> Storage:
        text = os.fspath(root)
        if "://" not in text:
            text = os.path.abspath(text)
        text = text.rstrip("/") or "/"
        return cls(text, resolve_options(text, options))

    def __post_init__(self) -> None:
        remember_secrets(self.options)

    def __repr__(self) -> str:
        return f"Storage(root={self.root!r}, options={redacted(self.options)!r})"

    @property
    def is_local(self) -> bool:
        return "://" not in self.root or self.root.startswith("file://")

    @property
    def endpoint(self) -> str:
        """Where the object store of this lake answers, for messages (no credential): the
        configured endpoint URL, else the scheme and bucket of the root."""
        configured = self.options.get("aws_endpoint_url")
        if configured:
            return configured
        parts = urlsplit(self.root)
        return f"{parts.scheme}://{parts.netloc}" if parts.netloc else self.root

    def uri(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def exists(self, *parts: str) -> bool:
        """Whether a Delta table is at `<root>/<parts>`. Locally, a table is a `_delta_log`
        folder holding its first commit or a checkpoint record (cleanup of expired logs
        drops early commits only after a checkpoint): two stats, where delta-rs lists the
        whole log."""
        uri = self.uri(*parts)
        if self.is_local:
            log = os.path.join(self.local_path(*parts), "_delta_log")
            return (os.path.isfile(os.path.join(log, "00000000000000000000.json"))
                    or os.path.isfile(os.path.join(log, "_last_checkpoint")))
        with self._reading(uri):
            return DeltaTable.is_deltatable(uri, storage_options=self.options or None)

    def table(self, *parts: str, version: int | None = None) -> DeltaTable:
        """The table at its latest version (or at `version`)."""
        uri = self.uri(*parts)
        if version is not None:
            return self._open(uri, version)
        cache: dict[tuple[str, tuple[tuple[str, str], ...]], DeltaTable] = getattr(
            _open_tables, "tables", None) or {}
        _open_tables.tables = cache
        key = (uri, tuple(sorted(self.options.items())))
        table = cache.get(key)
        if table is None:
            table = cache[key] = self._open(uri, None)
        else:
            with self._reading(uri):
                try:
                    table.update_incremental()
                except Exception:
                    # The log was rewritten under us (restore, vacuum of logs): open afresh.
                    table = None
            if table is None:
                table = cache[key] = self._open(uri, None)
        return table

    def _open(self, uri: str, version: int | None) -> DeltaTable:
        with self._reading(uri):
            return self._open_table(uri, version)

    def log(self, *parts: str) -> TableLog | None:
        """eventlake's own log reader/writer of a local table (`eventlake.store.deltalog`), shared
        by the threads of this process; None for a table on object storage."""
        if not self.is_local:
            return None
        uri = self.uri(*parts)
        with self._reading(uri):
            try:
                return table_log(uri, self.local_path(*parts))
            except TableNotFoundError as exc:
                raise CorruptLakeError(redact(f"no Delta table at {uri}: {exc}"),
                                       path=uri) from None
            except DeltaError as exc:
                raise self._log_damage(uri, exc) from exc

    def _open_table(self, uri: str, version: int | None) -> DeltaTable:
        try:
            return DeltaTable(uri, version=version, storage_options=self.options or None)
        except TableNotFoundError as exc:
            raise CorruptLakeError(redact(f"no Delta table at {uri}: {exc}"), path=uri) from None
        except DeltaError as exc:
            raise self._log_damage(uri, exc) from exc

    def _log_damage(self, uri: str, exc: DeltaError) -> Exception:
        """A damaged `_delta_log` (bad JSON, a missing commit) as `CorruptLakeError` naming
        the file, if one is to blame; else `exc` itself."""
        from eventlake.store.tablefiles import find_log_damage

        name = uri[len(self.root) + 1:] if uri.startswith(self.root + "/") else ""
        damage = find_log_damage(self, name) if name else None
        if damage is None:
            return exc
        return CorruptLakeError(f"damaged Delta log: {damage.path}: {damage.detail}",
                                path=damage.path)

    @contextmanager
    def _reading(self, uri: str) -> Iterator[None]:
        """Around a read of the table at `uri`: fork check, storage failures and panics."""
        check_process()
        try:
            yield
        except (EventlakeError, TableNotFoundError):
            raise
        except BaseException as exc:
            error = storage_failure(self, exc, path=uri, action="reading")
            if error is None:
                raise
            raise error from exc

    @contextmanager
    def writing(self, *parts: str, base: int | None = None,
                txn: tuple[str, int] | None = None, metadata: tuple[str, str] | None = None,
                note: str = "nothing was committed") -> Iterator[Written]:
        """Around one write to the table `<root>/<parts>`: storage failures as one error.

        A full disk raises `StorageFullError`, an object store that does not answer
        `StorageUnavailableError`, a panic of deltalake `StoragePanicError`, each on one line
        ending in `note`. A lost commit race (`CommitFailedError`) and every other error pass
        through unchanged.

        When the write is a commit made on version `base` and carries the app transaction
        `txn` (or the commit-info entry `metadata`), a failure is checked against the log
        first: if version `base + 1` is that commit, the commit landed and only a step after
        it failed (delta-rs writes a checkpoint after every 50th or 100th commit). Then the
        write counts as done: a `StorageWarning` says what failed, `Written.landed_at` holds
        the version, and no error is raised, so a caller never re-sends a batch that landed.
        """
        uri = self.uri(*parts)
        check_process()
        written = Written()
        if self.is_local:
            check_free_space(self.local_path(*parts), note=note)
        try:
            yield written
        except (EventlakeError, CommitFailedError):
            raise
        except BaseException as exc:
            error = storage_failure(self, exc, path=uri, action="writing", note=note)
            if error is None:
                raise
            if base is not None and (txn is not None or metadata is not None):
                if landed(self, "/".join(parts), base + 1, txn=txn, metadata=metadata):
                    written.landed_at = base + 1
                    warnings.warn(StorageWarning(
                        f"version {base + 1} of {uri} was committed, but a step after the "
                        f"commit failed: {one_line(str(error))}"), stacklevel=3)
                    return
            raise error from exc

    def local_path(self, *parts: str) -> str:
        root = self.root.removeprefix("file://")
        return os.path.join(root, *parts)

    def shown(self, *parts: str) -> str:
        """`<root>/<parts>` as reports and errors show it: a local path, else the URI."""
        return self.local_path(*parts) if self.is_local else self.uri(*parts)

    def file_system(self, *parts: str) -> tuple[pafs.FileSystem, str]:
        """A pyarrow file system holding the folder `<root>/<parts>`, and the folder's path on
        it: the local file system, or one rooted at the folder on the object store (path "")
        through deltalake's handler, so it takes the same storage options as the tables."""
        import pyarrow.fs as pafs

        if self.is_local:
            return pafs.LocalFileSystem(), self.local_path(*parts)
        from deltalake.fs import DeltaStorageHandler

        handler = DeltaStorageHandler(self.uri(*parts), self.options or None)
        return pafs.PyFileSystem(handler), ""

    def file_system_of(self, shown: str) -> tuple[pafs.FileSystem, str]:
        """The file system holding a path as `shown` spells it, and the path on it."""
        if self.is_local:
            import pyarrow.fs as pafs

            return pafs.LocalFileSystem(), shown
        root = self.uri("")
        fs, _ = self.file_system("")
        return fs, shown[len(root):] if shown.startswith(root) else shown

    def local_folder(self, kind: str) -> str:
        """A local folder for files of this lake that are not tables (quarantine files, the
        DuckDB init script): `<root>/<kind>` of a local lake; for a lake on object storage,
        `data/<kind>/<bucket>/<prefix>` under the working directory, absolute."""
        if self.is_local:
            return self.local_path(kind)
        return self._away_folder(kind)

    def local_home(self, kind: str) -> str:
        """The local folder where one file about the whole lake goes (the DuckDB init script):
        the root folder of a local lake, next to its tables; for a lake on object storage the
        folder `local_folder(kind)` gives."""
        return self.local_path() if self.is_local else self._away_folder(kind)

    def _away_folder(self, kind: str) -> str:
        location = self.root.split("://", 1)[1]
        parts = [p for p in location.split("/") if p not in ("", ".", "..")]
        return os.path.abspath(os.path.join("data", kind, *parts))

    def ensure_root(self) -> None:
        """Create the root folder of a local lake if it is missing. An object store has no
        folders to make: a prefix exists once a table writes under it."""
        if self.is_local:
            os.makedirs(self.local_path(), exist_ok=True)

    @property
    def duckdb_reads_files(self) -> bool:
        """Whether DuckDB can read this lake's data files by their paths with nothing to
        install or configure: true for a local lake. On object storage it would need the
        httpfs extension and an S3 secret, so in process the tables reach DuckDB as Polars
        scans (which use the lake's storage options), and a shell init script says how to
        create the secret."""
        return self.is_local


@dataclass(frozen=True)
class ScanPlan:
    """The files one read will open, with the partition each belongs to."""

    files: tuple[str, ...]
    partitions: tuple[str | None, ...]
    rows: int
    # Partition column -> the value of each file, in `files` order (Delta keeps partition
    # values in the log, not in the data files).
    values: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    # The size in bytes the add action logged for each file (None when it logged none).
    sizes: tuple[int | None, ...] = ()

    def __len__(self) -> int:
        return len(self.files)


class Snapshot:
    """One committed version of a Delta table, with its file list and statistics.

    On a local lake the latest version comes from the table's `TableLog` (no delta-rs open,
    no listing of `_delta_log`); older versions, and every version on object storage, come
    from a delta-rs `DeltaTable`.
    """

    def __init__(self, storage: Storage, name: str, table: DeltaTable | None = None, *,
                 pinned: LogVersion | None = None) -> None:
        if table is None and pinned is None:
            raise ValueError("a snapshot needs a table or a pinned log version")
        self.storage = storage
        self.name = name
        self._table = table
        self._pinned = pinned
        self.version = pinned.version if pinned is not None else table.version()  # type: ignore[union-attr]
        self._actions: pa.Table | None = None
        self._schema: dict[str, pl.DataType] | None = None
        self._id: str | None = None

    @property
    def table(self) -> DeltaTable:
        """The Delta table at exactly this snapshot's version (commits are based on it)."""
        if self._table is None or self._table.version() != self.version:
            # Pinned from the log only, or the thread's shared table object moved on since
            # this snapshot was taken.
            self._table = self.storage.table(self.name, version=self.version)
        return self._table

    @property
    def pinned(self) -> LogVersion | None:
        """The `TableLog` version this snapshot stands on (local lakes, latest versions)."""
        return self._pinned

    @property
    def on_table_log(self) -> bool:
        """Whether this snapshot stands on eventlake's own log of the table (a local table at
        its latest version), so a commit on it, a change of the table's metadata included,
        can go through that `TableLog`; otherwise through delta-rs."""
        # Only a local table has a `TableLog` to pin from (`Storage.log`).
        return self._pinned is not None

    @classmethod
    def load(cls, storage: Storage, name: str, *, version: int | None = None) -> Snapshot:
        if version is None:
            log = storage.log(name)
            if log is not None:
                with storage._reading(storage.uri(name)):
                    return cls(storage, name, pinned=log.pin())
        return cls(storage, name, storage.table(name, version=version))

    def transaction_version(self, app_id: str) -> int | None:
        if self._pinned is not None:
            return self._pinned.transaction_version(app_id)
        # A version of a table never changes, so answers are remembered per version: the
        # lookup replays the log and costs tens of milliseconds on a table of many files.
        key = (self._identity(), self.version, app_id)
        if key not in _TXN_MEMO:
            if len(_TXN_MEMO) > 4096:
                _TXN_MEMO.clear()
            _TXN_MEMO[key] = self.table.transaction_version(app_id)
        return _TXN_MEMO[key]

    def _identity(self) -> str:
        # The table id tells apart a table re-created at the same place.
        if self._id is None:
            table_id = (self._pinned.table_id if self._pinned is not None
                        else self.table.metadata().id)
            self._id = f"{self.storage.uri(self.name)}#{table_id}"
        return self._id

    @property
    def configuration(self) -> dict[str, str | None]:
        if self._pinned is not None:
            return dict(self._pinned.configuration)
        return dict(self.table.metadata().configuration)

    @property
    def arrow_schema(self) -> pa.Schema:
        if self._pinned is not None:
            return self._pinned.schema
        return pa.schema(self.table.schema())

    @property
    def partition_columns(self) -> list[str]:
        if self._pinned is not None:
            return list(self._pinned.partition_columns)
        return list(self.table.metadata().partition_columns)

    def add_actions(self) -> pa.Table:
        """The live files: `path` (as the log spells it), `size_bytes`, `num_records`,
        `partition.<column>` and, where logged, `min.seq`/`max.seq` (and more from delta-rs)."""
        if self._actions is None:
            if self._pinned is not None:
                self._actions = self._pinned.files()
            else:
                self._actions = self._shared_actions()
        return self._actions

    def _shared_actions(self) -> pa.Table:
        key = (self._identity(), self.version)
        with _ACTIONS_LOCK:
            actions = _ACTIONS.get(key)
            if actions is not None:
                _ACTIONS.move_to_end(key)
                return actions
        actions = pa.table(self.table.get_add_actions(flatten=True))
        with _ACTIONS_LOCK:
            _ACTIONS[key] = actions
            held = sum(t.num_rows for t in _ACTIONS.values())
            while len(_ACTIONS) > 1 and (held > _ACTIONS_MAX_FILES
                                         or len(_ACTIONS) > _ACTIONS_MAX_VERSIONS):
                _, dropped = _ACTIONS.popitem(last=False)
                held -= dropped.num_rows
        return actions

    def plan(
        self,
        *,
        partitions: Sequence[str] | None = None,
        min_seq: int | None = None,
        max_seq: int | None = None,
        equals: dict[str, Sequence[Any]] | None = None,
        key_range: tuple[str, str] | None = None,
        paths: Sequence[str] | None = None,
    ) -> ScanPlan:
        """Prune this snapshot's files by partition value and by statistics.

        `partitions` keeps the files of a `partition_id`-partitioned table holding them;
        `equals` prunes on other partition columns (a `None` among the accepted values keeps
        files whose value is null); `min_seq`/`max_seq` are inclusive bounds on `seq` and
        `key_range` on `partition_id` (files whose logged range misses them are dropped;
        files without statistics are kept). `paths` keeps exactly those files (as the log
        spells them).
        """
        # The seq bounds first: integer comparisons that leave a read of recent events a few
        # files, so the string predicates after them (hashing every path or partition id,
        # tens of milliseconds on a million files) run on those few only.
        chosen = self.add_actions()
        names = chosen.column_names
        if min_seq is not None and "max.seq" in names:
            chosen = chosen.filter(pc.fill_null(
                pc.greater_equal(chosen.column("max.seq"), min_seq), True))
        if max_seq is not None and "min.seq" in names:
            chosen = chosen.filter(pc.fill_null(
                pc.less_equal(chosen.column("min.seq"), max_seq), True))
        if paths is not None:
            chosen = chosen.filter(_member(chosen.column("path"), list(paths)))
        if partitions is not None:
            chosen = chosen.filter(_member(chosen.column("partition.partition_id"),
                                           list(partitions)))
        for column, accepted in (equals or {}).items():
            stats = chosen.column(f"partition.{column}")
            wanted = [str(v) for v in accepted if v is not None]
            keep = pc.fill_null(_member(pc.cast(stats, pa.string()), wanted), False)
            if any(v is None for v in accepted):
                keep = pc.or_(keep, pc.is_null(stats))
            chosen = chosen.filter(keep)
        if key_range is not None and "min.partition_id" in names:
            low, high = key_range
            chosen = chosen.filter(pc.fill_null(pc.and_(
                pc.less_equal(chosen.column("min.partition_id"), high),
                pc.greater_equal(chosen.column("max.partition_id"), low)), True))
        paths = [self._file_uri(p) for p in chosen.column("path").to_pylist()]
        if "partition.partition_id" in chosen.column_names:
            owners: list[str | None] = chosen.column("partition.partition_id").to_pylist()
        else:
            owners = [None] * len(paths)
        rows = int(pc.sum(chosen.column("num_records")).as_py() or 0) if len(paths) else 0
        values = {c: tuple(chosen.column(f"partition.{c}").to_pylist())
                  for c in self.partition_columns}
        sizes = tuple(chosen.column("size_bytes").to_pylist())
        return ScanPlan(tuple(paths), tuple(owners), rows, values, sizes)

    def check(self, plan: ScanPlan) -> None:
        """Raise `CorruptLakeError` naming the first planned file that is missing, has
        another size than its add action logged, or does not end in a Parquet footer.

        Costs one open and an 8-byte read per file not checked before; the footer itself is
        left to the reader, which parses it anyway. A snapshot pinned from the table's log
        (the latest version of a local table) skips the files this process already found
        whole: data files are never rewritten in place, so once is enough (see `_CHECKED`).
        Damage inside a file that keeps its size and footer magic, or done to a file after it
        was checked, still fails the read, with the reader's own error; `eventlake doctor`
        names the file. Lakes on object storage are not checked: it would cost a request per
        file.
        """
        if not self.storage.is_local:
            return
        sizes = plan.sizes or (None,) * len(plan.files)
        known = self._checked_files()
        whole: list[int] = []
        damaged: list[tuple[str, str]] = []
        for path, size in zip(plan.files, sizes, strict=True):
            key = hash((path, size))
            if known is not None and key in known:
                continue
            local = _local_file(path)
            if local is None:
                continue
            problem = _file_damage(local, size)
            if problem is not None:
                damaged.append((local, problem))
            else:
                whole.append(key)
        if known is not None and whole:
            with _CHECKED_LOCK:
                if len(known) + len(whole) > _CHECKED_MAX:
                    known.clear()
                known.update(whole)
        if not damaged:
            return
        path, problem = damaged[0]
        more = (f" (and {len(damaged) - 1} more damaged files of the read)"
                if len(damaged) > 1 else "")
        raise CorruptLakeError(
            f"damaged lake: {path}: {problem}{more}; table {self.name!r}, version "
            f"{self.version}. Run `eventlake doctor` and see the README's Recovery section",
            path=path)

    def _checked_files(self) -> set[int] | None:
        """The files found whole through this snapshot's table log, or None when it was not
        pinned from one."""
        if self._pinned is None:
            return None
        log = self.storage.log(self.name)
        if log is None:
            return None
        with _CHECKED_LOCK:
            known = _CHECKED.get(log)
            if known is None:
                known = _CHECKED[log] = set()
            return known

    def _file_uri(self, path: str) -> str:
        # The add-action path is percent-encoded once more than the object name on storage.
        if "://" in path:
            return path
        return self.storage.uri(self.name, unquote(path))

    def scan(self, plan: ScanPlan, *, schema: dict[str, pl.DataType] | None = None
             ) -> pl.LazyFrame:
        """A lazy frame over exactly the planned files, with partition columns attached.

        The files are checked first (`check`): a damaged one raises `CorruptLakeError` here.
        """
        partition_columns = self.partition_columns
        if not plan.files:
            return pl.LazyFrame(schema=schema or self._polars_schema())
        self.check(plan)
        # A read of one partition or bucket has one value per partition column: a literal
        # column then, instead of a join on file paths that costs a point read its price
        # twice over.
        constant = all(len(set(plan.values[c])) == 1 for c in partition_columns)
        frame = pl.scan_parquet(
            list(plan.files),
            include_file_paths=FILE_COLUMN if partition_columns and not constant else None,
            storage_options=self.storage.options or None,
            hive_partitioning=False,
            missing_columns="insert",
            extra_columns="ignore",
            schema=self._file_schema(),
        )
        if partition_columns and constant:
            types = self._polars_schema()
            frame = frame.with_columns(pl.lit(plan.values[c][0], dtype=types[c]).alias(c)
                                       for c in partition_columns)
        elif partition_columns:
            types = self._polars_schema()
            lookup: dict[str, Any] = {FILE_COLUMN: list(plan.files)}
            for column in partition_columns:
                lookup[column] = pl.Series(column, list(plan.values[column])).cast(
                    types[column])
            # Keep the files' row order: a plain join may reorder rows, which made two scans
            # of the same snapshot disagree on order.
            frame = frame.join(pl.LazyFrame(lookup), on=FILE_COLUMN, how="left",
                               maintain_order="left").drop(FILE_COLUMN)
        order = list(self._polars_schema())
        return frame.select(order)

    def _polars_schema(self) -> dict[str, pl.DataType]:
        if self._schema is None:
            self._schema = dict(_polars_types(self.arrow_schema))
        return self._schema

    def _file_schema(self) -> dict[str, pl.DataType]:
        partition_columns = set(self.partition_columns)
        return {k: v for k, v in self._polars_schema().items() if k not in partition_columns}


@functools.lru_cache(maxsize=256)
def _polars_types(schema: pa.Schema) -> tuple[tuple[str, pl.DataType], ...]:
    """The Polars types of an Arrow schema. Every snapshot asks (a point read builds two), and
    the answer, an empty frame's schema, costs a few hundred microseconds."""
    frame = pl.from_arrow(schema.empty_table())
    assert isinstance(frame, pl.DataFrame)
    return tuple(frame.schema.items())


def among(column: str, values: Sequence[Any]) -> pl.Expr:
    """`column` is one of `values`: a plain comparison for one value, which Polars prunes row
    groups with and evaluates a good deal cheaper than `is_in` (a point read's filter)."""
    if len(values) == 1:
        return pl.col(column) == values[0]
    return pl.col(column).is_in(list(values))


def _member(column: pa.ChunkedArray | pa.Array, values: Sequence[str]) -> Any:
    """Which entries of a string column are among `values` (null entries: null). One value is
    a plain comparison, several times cheaper than the hash set `is_in` builds and probes."""
    if len(values) == 1:
        return pc.equal(column, values[0])
    return pc.is_in(column, value_set=pa.array(list(values), pa.string()))


# A Parquet file ends with its footer's length (4 bytes, little-endian) and the magic "PAR1"
# ("PARE" when the footer is encrypted); it also starts with the magic, hence 12 bytes at least.
_PARQUET_MAGIC = (b"PAR1", b"PARE")
_PARQUET_TAIL = 8
_PARQUET_MIN_SIZE = 12


def _local_file(path: str) -> str | None:
    """The local path of a planned file, or None when it lives elsewhere (an absolute URI)."""
    if path.startswith("file://"):
        return path.removeprefix("file://")
    return None if "://" in path else path


def _file_damage(path: str, logged_size: int | None) -> str | None:
    """What is wrong with the local data file `path`, or None when it looks whole."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        return ("missing: the Delta log references it but it is not on storage (deleted; "
                "or, when reading an old version, vacuumed)")
    try:
        size = os.fstat(fd).st_size
        if logged_size is not None and size != logged_size:
            return (f"{size} bytes where the Delta log says {logged_size} (truncated or "
                    "overwritten)")
        if size < _PARQUET_MIN_SIZE:
            return f"{size} bytes, too small to be a Parquet file"
        os.lseek(fd, size - _PARQUET_TAIL, os.SEEK_SET)
        tail = os.read(fd, _PARQUET_TAIL)
    finally:
        os.close(fd)
    footer = int.from_bytes(tail[:4], "little")
    if tail[4:] not in _PARQUET_MAGIC or footer > size - _PARQUET_MIN_SIZE:
        return "not a readable Parquet file: it does not end in a Parquet footer"
    return None


def commit_on(storage: Storage, table: str, snap: Snapshot, commit: Commit, *,
              partition_by: Sequence[str]) -> int:
    """Commit `commit` as the version after `snap`, or raise `CommitFailedError`.

    A local table commits through its `TableLog` (put-if-absent of the next log file); a table
    on object storage, or one whose protocol or file system eventlake does not write itself,
    through delta-rs with no retries. Returns the new version.
    """
    log = storage.log(table)
    if log is not None and snap.pinned is not None:
        version = log.commit(commit, base_version=snap.version)
        if version is not None:
            return version
    from deltalake.transaction import AddAction, RemoveAction

    now = int(time.time() * 1000)
    actions: list[AddAction | RemoveAction] = list(commit.adds)
    actions += [RemoveAction(path=unquote(r.path), data_change=commit.data_change,
                             deletion_timestamp=now, size=r.size,
                             partition_values=dict(r.partition_values))
                for r in commit.removes]
    dt = snap.table
    dt.create_write_transaction(
        actions, mode="append", schema=dt.schema(), partition_by=list(partition_by),
        commit_properties=CommitProperties(
            max_commit_retries=0, custom_metadata=dict(commit.info),
            app_transactions=[
                Transaction(app_id=app_id, version=version,
                            last_updated=now if expires else None)
                for app_id, version, expires in commit.txns]))
    return snap.version + 1


def retry_commit(
    attempt: Callable[[], T], *, what: str, attempts: int = 60, base_delay: float = 0.01,
    max_delay: float = 0.5, timeout: float = 120.0,
) -> T:
    """Run `attempt` until it commits; a lost race re-reads state inside `attempt` itself.

    Only Delta's `CommitFailedError` (a concurrent commit won) is retried, with jittered
    backoff; after `attempts` tries or `timeout` seconds it raises `CommitConflictError`,
    which is transient: the caller may try again later.
    """
    started = time.monotonic()
    delay = base_delay
    for number in range(1, attempts + 1):
        try:
            return attempt()
        except StorageError as exc:
            if exc.committed is None:
                # A read of the attempt failed: this attempt did not commit, and the ones
                # before it lost their races.
                raise exc.nothing_committed() from exc.__cause__
            raise
        except CommitFailedError as exc:
            last = exc
            if time.monotonic() - started > timeout:
                break
            backoff(delay)
            delay = min(max_delay, delay * 2)
            if number == attempts:
                break
    raise CommitConflictError(
        f"{what}: lost the commit race {attempts} times in a row or waited longer than "
        f"{timeout:.0f} s ({last}); other writers keep committing, try again"
    )

