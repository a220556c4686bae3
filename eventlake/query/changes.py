"""The change feed of a view: which rows each commit of its table inserted, updated or deleted.

Built from eventlake's own bookkeeping, not Delta's change data feed: a refresh rewrites whole
bucket files, so a file-level feed would report every row of a touched bucket as deleted and
inserted again. Here each commit's removed files (the rows before) are compared with its added
files (the rows after), key by key (`partition_id` plus an aggregate view's group columns),
and only rows that differ are reported:

    insert   a key the commit added            (`before` null)
    update   a key whose columns changed        (`before` and `after`)
    delete   a key the commit removed           (`after` null)
    reset    the view was rebuilt: the readers' generation changed; every row of the new one
             follows as an insert (replaying the feed: empty the table at a reset)

`updated_at` is carried in `before`/`after` but not compared (a rewritten bucket restamps only
the rows it refolded, which also changes their `last_seq`). Commits readers never see (the
buckets of a rebuild in progress, compaction, bookkeeping) report nothing.

Each change carries the table `version` of the commit, `view_version` (the definition version
of the generation readers see), the event-log `watermark` the commit brought the view to, and
`committed_at`. Replaying the changes of versions (0, v] onto an empty table gives the view as
`lake.scan(view, as_of_version=v)` shows it.

Reading a range costs the commits in it and the files they rewrote, never the whole view
(except at a reset, which lists the new generation). Commit files deleted by Delta's log
retention, or data files deleted by `vacuum`, end the history that can be replayed: asking
for changes across them is a `ChangesUnavailableError` naming the version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import polars as pl
import pyarrow.parquet as pq

from eventlake.errors import ChangesUnavailableError, CorruptLakeError, InvalidArgumentError
from eventlake.model.views import ReducerView
from eventlake.store.statusfiles import read_status, write_status
from eventlake.store.storage import Snapshot
from eventlake.store.tablefiles import join_path, read_commit
from eventlake.store.viewstore import ViewStore, logical_columns, row_schema

if TYPE_CHECKING:
    from eventlake.model.views import View
    from eventlake.store.parts import LakeParts

__all__ = ["CHANGE_KINDS", "commit_cursor", "cursor_position", "view_changes"]

CHANGE_KINDS = ("insert", "update", "delete", "reset")
_NOT_COMPARED = ("updated_at",)


def _keys(view: View) -> list[str]:
    # A reducer view has one row per partition; aggregate and SQL views one per group.
    return ["partition_id", *(() if isinstance(view, ReducerView) else view.group_columns)]


@dataclass
class _State:
    """The bookkeeping of the table as the walk through its commits stands: the app
    transactions the walked commits set, over those of the snapshot the walk started at."""

    start: Snapshot
    app: str
    txns: dict[str, int] = field(default_factory=dict)

    def get(self, suffix: str) -> int | None:
        key = f"{self.app}/{suffix}"
        if key not in self.txns:
            found = self.start.transaction_version(key)
            if found is None:
                return None
            self.txns[key] = found
        return self.txns[key]


def view_changes(lake: LakeParts, view: View, *, since_version: int | None = None,
                 until_version: int | None = None) -> pl.LazyFrame:
    """The row changes of `view`'s table in versions (`since_version`, `until_version`]
    (defaults: from the table's creation to its latest version); see the module docstring."""
    store = ViewStore(lake.storage, view)
    keys = _keys(view)
    values = [c for c in logical_columns(view) if c not in keys]
    schema = _schema(view, keys, values)
    if not store.exists():
        if since_version not in (None, 0) or until_version not in (None, 0):
            raise InvalidArgumentError("since_version", since_version,
                                       f"a version of view {view.name!r}, which has no table yet")
        return pl.DataFrame(schema=schema).lazy()
    latest = store.snapshot()
    until = latest.version if until_version is None else until_version
    since = 0 if since_version is None else since_version
    for name, value in (("since_version", since), ("until_version", until)):
        if (isinstance(value, bool) or not isinstance(value, int)
                or not 0 <= value <= latest.version):
            raise InvalidArgumentError(name, value,
                                       f"a version of view {view.name!r}'s table, 0 to "
                                       f"{latest.version}")
    if since > until:
        raise InvalidArgumentError("since_version", since,
                                   f"at most until_version ({until})")
    state = _State(store.snapshot(version=since), store.app)
    fs, base = lake.storage.file_system(store.name)
    frames: list[pl.DataFrame] = []
    for version in range(since + 1, until + 1):
        actions = read_commit(lake.storage, store.name, version)
        if actions is None:
            raise ChangesUnavailableError(
                f"changes of view {view.name!r} at table version {version} are no longer "
                "readable: its commit file was removed by the Delta log's retention; ask for "
                "changes since a later version")
        before_active = state.get("active")
        before_version = state.get("active-version")
        info: dict[str, Any] = {}
        adds: list[dict[str, Any]] = []
        removes: list[dict[str, Any]] = []
        for action in actions:
            if "txn" in action:
                state.txns[action["txn"]["appId"]] = int(action["txn"]["version"])
            elif "add" in action:
                adds.append(action["add"])
            elif "remove" in action:
                removes.append(action["remove"])
            elif "commitInfo" in action:
                info = action["commitInfo"]
        active = state.get("active")
        view_version = state.get("active-version")
        watermark = (state.get(f"v{view_version}") or 0) if view_version else 0
        stamp = _committed_at(info)
        meta = {"version": version, "view_version": view_version, "watermark": watermark,
                "committed_at": stamp}
        if active is not None and (active, view_version) != (before_active, before_version):
            rows = _generation_rows(store, version, active, keys + values)
            frames.append(_reset(schema, meta))
            frames.append(_diff(None, rows, keys, values, schema, meta))
            continue
        if active is None:
            continue
        visible = [a for a in adds if _generation(a) == active and a.get("dataChange", True)]
        gone = [r for r in removes if _generation(r) == active and r.get("dataChange", True)]
        if not visible and not gone:
            continue
        before = _read(fs, base, gone, keys + values, view, version)
        after = _read(fs, base, visible, keys + values, view, version)
        frames.append(_diff(before, after, keys, values, schema, meta))
    if not frames:
        return pl.DataFrame(schema=schema).lazy()
    return pl.concat(frames, how="vertical").lazy()


def _schema(view: View, keys: list[str], values: list[str]) -> dict[str, pl.DataType]:
    table = pl.from_arrow(row_schema(view).empty_table())
    assert isinstance(table, pl.DataFrame)
    types = table.schema
    row = pl.Struct({c: types[c] for c in values})
    return {**{k: types[k] for k in keys}, "change": pl.String(), "before": row,
            "after": row, "version": pl.Int64(), "view_version": pl.Int64(),
            "watermark": pl.Int64(), "committed_at": pl.Datetime("us", "UTC")}


def _generation(action: dict[str, Any]) -> int | None:
    values = action.get("partitionValues") or {}
    if "generation" in values and values["generation"] is not None:
        return int(values["generation"])
    for part in unquote(action.get("path", "")).split("/"):
        if part.startswith("generation="):
            return int(part.split("=", 1)[1])
    return None


def _committed_at(info: dict[str, Any]) -> datetime | None:
    stamp = info.get("timestamp")
    return None if stamp is None else datetime.fromtimestamp(int(stamp) / 1000, UTC)


def _read(fs: Any, base: str, actions: list[dict[str, Any]], columns: list[str], view: View,
          version: int) -> pl.DataFrame:
    frames = []
    for action in actions:
        path = join_path(base, unquote(action["path"]))
        try:
            table = pq.read_table(path, filesystem=fs)
        except FileNotFoundError:
            raise ChangesUnavailableError(
                f"changes of view {view.name!r} at table version {version} are no longer "
                f"readable: file {action['path']} was removed by vacuum; ask for changes "
                "since a later version") from None
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        frames.append(_project(frame, columns, view))
    if not frames:
        empty = pl.from_arrow(row_schema(view).empty_table())
        assert isinstance(empty, pl.DataFrame)
        return empty.select(columns)
    return pl.concat(frames, how="vertical_relaxed")


def _project(frame: pl.DataFrame, columns: list[str], view: View) -> pl.DataFrame:
    """`frame` as the view's logical columns (a column an older file lacks reads as null)."""
    empty = pl.from_arrow(row_schema(view).empty_table())
    assert isinstance(empty, pl.DataFrame)
    types = empty.schema
    return frame.select([pl.col(c).cast(types[c]) if c in frame.columns
                         else pl.lit(None, dtype=types[c]).alias(c) for c in columns])


def _generation_rows(store: ViewStore, version: int, generation: int, columns: list[str]
                     ) -> pl.DataFrame:
    snap = store.snapshot(version=version)
    plan = snap.plan(equals={"generation": [generation]})
    try:
        frame = snap.scan(plan).filter(pl.col("generation") == generation).collect()
    except CorruptLakeError as exc:
        # The files of an old version are gone: vacuum deleted them (the check that raised
        # names the file).
        raise ChangesUnavailableError(
            f"changes of view {store.view.name!r} at table version {version} are no longer "
            f"readable: its files were removed by vacuum ({exc}); ask for changes since a "
            "later version") from None
    return _project(frame, columns, store.view)


def _reset(schema: dict[str, pl.DataType], meta: dict[str, Any]) -> pl.DataFrame:
    row: dict[str, Any] = {name: None for name in schema}
    row.update(change="reset", **meta)
    return pl.DataFrame([row], schema=schema)


def _diff(before: pl.DataFrame | None, after: pl.DataFrame, keys: list[str], values: list[str],
          schema: dict[str, pl.DataType], meta: dict[str, Any]) -> pl.DataFrame:
    compared = [c for c in values if c not in _NOT_COMPARED]
    new = after.select(*keys, pl.struct(values).alias("after"),
                       pl.struct(compared).alias("_after_cmp"))
    if before is None or not before.height:
        joined = new.with_columns(pl.lit(None, dtype=schema["before"]).alias("before"),
                                  pl.lit(None, dtype=new.schema["_after_cmp"]).alias("_before_cmp"))
    else:
        old = before.select(*keys, pl.struct(values).alias("before"),
                            pl.struct(compared).alias("_before_cmp"))
        joined = old.join(new, on=keys, how="full", coalesce=True, nulls_equal=True)
    change = (pl.when(pl.col("before").is_null()).then(pl.lit("insert"))
              .when(pl.col("after").is_null()).then(pl.lit("delete"))
              .when(pl.col("_before_cmp").ne_missing(pl.col("_after_cmp"))).then(pl.lit("update"))
              .otherwise(pl.lit(None)))
    out = (joined.with_columns(change.alias("change"))
           .filter(pl.col("change").is_not_null())
           .with_columns(pl.lit(meta["version"], dtype=pl.Int64()).alias("version"),
                         pl.lit(meta["view_version"], dtype=pl.Int64()).alias("view_version"),
                         pl.lit(meta["watermark"], dtype=pl.Int64()).alias("watermark"),
                         pl.lit(meta["committed_at"], dtype=pl.Datetime("us", "UTC"))
                         .alias("committed_at"))
           .sort(keys, nulls_last=True))
    return out.select([pl.col(name).cast(kind) for name, kind in schema.items()])


# -- cursors -------------------------------------------------------------------------------

_CURSORS = "cursors"


def _check_cursor(name: object) -> str:
    if not isinstance(name, str) or not name or not name.replace("-", "").replace(
            "_", "").replace(".", "").isalnum() or name.startswith("."):
        raise InvalidArgumentError("cursor", name,
                                   "a name of letters, digits, '-', '_' and '.'")
    return name


def cursor_position(lake: LakeParts, view: View, cursor: str) -> int:
    """The table version consumer `cursor` of `view` has committed (0: none yet)."""
    data = read_status(lake.storage, (_CURSORS, view.name), _check_cursor(cursor))
    return int(data["version"]) if data and "version" in data else 0


def commit_cursor(lake: LakeParts, view: View, cursor: str, version: int) -> None:
    """Record that consumer `cursor` has taken every change of `view` up to table `version`:
    its next `changes(view, cursor=...)` starts after it. A version below the committed one
    is refused (a consumer never goes back by accident)."""
    name = _check_cursor(cursor)
    store = ViewStore(lake.storage, view)
    latest = store.snapshot().version if store.exists() else 0
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= latest:
        raise InvalidArgumentError("version", version,
                                   f"a version of view {view.name!r}'s table, 0 to {latest}")
    current = cursor_position(lake, view, name)
    if version < current:
        raise InvalidArgumentError("version", version,
                                   f"at least the version cursor {name!r} has committed "
                                   f"({current})")
    write_status(lake.storage, (_CURSORS, view.name), name,
                 {"version": version, "committed_at": datetime.now(UTC).isoformat()})
