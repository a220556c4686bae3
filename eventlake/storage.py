"""The storage seam: where tables live, and how a snapshot's files are listed and scanned.

Every read of a Delta table in eventlake goes through `Snapshot`: it pins one committed table
version, lists exactly that version's active files (with their partition values and `seq`
statistics from the Delta log), prunes them, and scans only what is left with Polars. Readers
therefore never see a half-written or vacuumed file, and tests can assert which files a read
touched (`ScanPlan.files`) instead of timing it.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from eventlake.errors import CommitConflictError, CorruptLakeError

__all__ = [
    "ScanPlan",
    "Snapshot",
    "Storage",
    "retry_commit",
]

T = TypeVar("T")

FILE_COLUMN = "__eventlake_file"


@dataclass(frozen=True)
class Storage:
    """A lake root (local folder or object-store URI) plus the options to reach it."""

    root: str
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def at(cls, root: str | os.PathLike[str], options: dict[str, str] | None = None) -> Storage:
        text = os.fspath(root)
        if "://" not in text:
            text = os.path.abspath(text)
        return cls(text.rstrip("/") or "/", dict(options or {}))

    @property
    def is_local(self) -> bool:
        return "://" not in self.root or self.root.startswith("file://")

    def uri(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def exists(self, *parts: str) -> bool:
        return DeltaTable.is_deltatable(self.uri(*parts), storage_options=self.options or None)

    def table(self, *parts: str, version: int | None = None) -> DeltaTable:
        try:
            return DeltaTable(self.uri(*parts), version=version,
                              storage_options=self.options or None)
        except TableNotFoundError as exc:
            raise CorruptLakeError(f"no Delta table at {self.uri(*parts)}: {exc}",
                                   path=self.uri(*parts)) from None

    def local_path(self, *parts: str) -> str:
        root = self.root.removeprefix("file://")
        return os.path.join(root, *parts)


@dataclass(frozen=True)
class ScanPlan:
    """The files one read will open, with the partition each belongs to."""

    files: tuple[str, ...]
    partitions: tuple[str | None, ...]
    rows: int

    def __len__(self) -> int:
        return len(self.files)


class Snapshot:
    """One committed version of a Delta table, with its file list and statistics."""

    def __init__(self, storage: Storage, name: str, table: DeltaTable) -> None:
        self.storage = storage
        self.name = name
        self.table = table
        self.version = table.version()
        self._actions: pa.Table | None = None

    @classmethod
    def load(cls, storage: Storage, name: str, *, version: int | None = None) -> Snapshot:
        return cls(storage, name, storage.table(name, version=version))

    def transaction_version(self, app_id: str) -> int | None:
        return self.table.transaction_version(app_id)

    @property
    def partition_columns(self) -> list[str]:
        return list(self.table.metadata().partition_columns)

    def add_actions(self) -> pa.Table:
        if self._actions is None:
            self._actions = pa.table(self.table.get_add_actions(flatten=True))
        return self._actions

    def plan(
        self,
        *,
        partitions: Sequence[str] | None = None,
        min_seq: int | None = None,
        max_seq: int | None = None,
        equals: dict[str, Sequence[Any]] | None = None,
    ) -> ScanPlan:
        """Prune this snapshot's files by partition value and by `seq` statistics.

        `min_seq`/`max_seq` are inclusive bounds on `seq` (files whose range misses them are
        dropped); `equals` prunes on other partition columns.
        """
        actions = self.add_actions()
        mask = pa.array([True] * actions.num_rows, pa.bool_())
        if partitions is not None:
            mask = pc.and_(mask, pc.is_in(actions.column("partition.partition_id"),
                                          value_set=pa.array(list(partitions), pa.string())))
        for column, values in (equals or {}).items():
            stats = actions.column(f"partition.{column}")
            wanted = pa.array([str(v) for v in values], pa.string())
            mask = pc.and_(mask, pc.is_in(pc.cast(stats, pa.string()), value_set=wanted))
        if min_seq is not None and "max.seq" in actions.column_names:
            mask = pc.and_(mask, pc.fill_null(pc.greater_equal(actions.column("max.seq"),
                                                                min_seq), True))
        if max_seq is not None and "min.seq" in actions.column_names:
            mask = pc.and_(mask, pc.fill_null(pc.less_equal(actions.column("min.seq"),
                                                             max_seq), True))
        chosen = actions.filter(mask)
        paths = [self._file_uri(p) for p in chosen.column("path").to_pylist()]
        if "partition.partition_id" in chosen.column_names:
            owners: list[str | None] = chosen.column("partition.partition_id").to_pylist()
        else:
            owners = [None] * len(paths)
        rows = int(pc.sum(chosen.column("num_records")).as_py() or 0) if len(paths) else 0
        return ScanPlan(tuple(paths), tuple(owners), rows)

    def _file_uri(self, path: str) -> str:
        # The add-action path is percent-encoded once more than the object name on storage.
        if "://" in path:
            return path
        return self.storage.uri(self.name, unquote(path))

    def scan(self, plan: ScanPlan, *, schema: dict[str, pl.DataType] | None = None
             ) -> pl.LazyFrame:
        """A lazy frame over exactly the planned files, with partition columns attached."""
        partition_columns = self.partition_columns
        if not plan.files:
            return pl.LazyFrame(schema=schema or self._polars_schema())
        frame = pl.scan_parquet(
            list(plan.files),
            include_file_paths=FILE_COLUMN if partition_columns else None,
            storage_options=self.storage.options or None,
            hive_partitioning=False,
            missing_columns="insert",
            extra_columns="ignore",
            schema=self._file_schema(),
        )
        if partition_columns:
            actions = self.add_actions()
            lookup = {
                "files": [self._file_uri(p) for p in actions.column("path").to_pylist()],
            }
            for column in partition_columns:
                lookup[column] = actions.column(f"partition.{column}").to_pylist()
            mapping = pl.LazyFrame(lookup).filter(pl.col("files").is_in(list(plan.files)))
            types = self._polars_schema()
            mapping = mapping.with_columns(
                [pl.col(c).cast(types[c]) for c in partition_columns]
            ).rename({"files": FILE_COLUMN})
            frame = frame.join(mapping, on=FILE_COLUMN, how="left").drop(FILE_COLUMN)
        order = list(self._polars_schema())
        return frame.select(order)

    def _polars_schema(self) -> dict[str, pl.DataType]:
        arrow = pa.schema(self.table.schema())
        frame = pl.from_arrow(arrow.empty_table())
        assert isinstance(frame, pl.DataFrame)
        return dict(frame.schema)

    def _file_schema(self) -> dict[str, pl.DataType]:
        partition_columns = set(self.partition_columns)
        return {k: v for k, v in self._polars_schema().items() if k not in partition_columns}


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
        except CommitFailedError as exc:
            last = exc
            if time.monotonic() - started > timeout:
                break
            time.sleep(random.uniform(0, delay))
            delay = min(max_delay, delay * 2)
            if number == attempts:
                break
    raise CommitConflictError(
        f"{what}: lost the commit race {attempts} times in a row or waited longer than "
        f"{timeout:.0f} s ({last}); other writers keep committing, try again"
    )
