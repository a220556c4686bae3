"""SQL over a lake with DuckDB: `connect(lake)` for Python and `duckdb_init_sql(lake)` for shells.

Both present `events` and every registered view as SQL views over one **committed snapshot**:
the exact data files that snapshot's Delta log lists (`Snapshot.plan()`), so a query never sees
a half-written file, a file a compaction replaced, or one a vacuum deleted. No DuckDB extension
is needed: the files are read with `read_parquet([...])`, and partition values, which Delta keeps
in its log rather than in the data files (their folder names are percent-encoded, so hive
parsing would be wrong), come from a small file -> partition table joined on the file name.
A view table shows only its active generation's files, projected to the logical columns.
A lake on object storage (`s3://...`) is read the same way, but through Polars: `connect`
registers each table's snapshot scan (`Snapshot.scan`, with the lake's storage options) with
DuckDB instead of handing DuckDB remote paths, so still no network extension or DuckDB secret
is needed.

Every identifier is double-quoted and every literal single-quoted, with inner quotes doubled;
nothing from a view name, partition value or path is ever spliced into SQL unquoted.

`connect` (a general connection) defines every table. `lake.sql` (`run_sql`) defines only the
tables its query reads, as DuckDB's own parser lists them (`tables_read`), so a query of one
view never plans, checks or defines the event log's thousands of files; a table it reaches in a
way the parse tree does not show (`query_table('events')`) is defined when DuckDB asks for it.
The file lists are handed to DuckDB as variables (`getvariable`), not spliced into the SQL
text, and the event log is read without `union_by_name` (every event file has the same
columns), so defining `events` over many files reads no file's footer.

Before DuckDB reads a local lake, the files of the tables a query may read are checked
(`Snapshot.check`: present, of the logged size, ending in a Parquet footer), so a damaged file
is a `CorruptLakeError` naming it and its table rather than a DuckDB error at bind or fetch.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from eventlake.errors import InvalidArgumentError
from eventlake.model.events import EVENT_SCHEMA
from eventlake.query.deltaext import find_delta_extension
from eventlake.store.log import EVENTS
from eventlake.store.viewstore import TYPE_KEY, ViewStore, logical_columns, row_schema

if TYPE_CHECKING:
    from eventlake.model.views import View
    from eventlake.store.parts import LakeParts
    from eventlake.store.storage import Snapshot

__all__ = [
    "InitScript",
    "TableSource",
    "connect",
    "delta_extension_available",
    "duckdb_init_sql",
    "init_script",
    "quote_identifier",
    "quote_literal",
    "run_sql",
    "snapshot_sources",
    "tables_named",
    "tables_read",
]

_FILE = "__eventlake_file"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def quote_identifier(name: str) -> str:
    """`name` as a DuckDB identifier: double quotes, inner double quotes doubled."""
    if "\x00" in name:
        raise InvalidArgumentError("an identifier", name, "text without a NUL character")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """`text` as a DuckDB string literal: single quotes, inner single quotes doubled."""
    if "\x00" in text:
        raise InvalidArgumentError("a literal", text, "text without a NUL character")
    return "'" + text.replace("'", "''") + "'"


def _comment(text: str) -> str:
    """Text safe inside a `--` comment line (no line breaks or control characters)."""
    return _CONTROL.sub("?", text)


@dataclass(frozen=True)
class TableSource:
    """One SQL table of a lake, pinned to one committed snapshot of its Delta table.

    `files` are exactly the snapshot's active data files that hold the table's rows;
    `partition_values` holds, per partition column the SQL table shows, one value per file.
    """

    name: str
    kind: str  # "events" or the view kind
    uri: str  # the Delta table
    version: int | None  # Delta version of the snapshot; None when the table does not exist
    schema: pa.Schema  # the SQL table's columns, in order
    files: tuple[str, ...]
    partition_values: dict[str, tuple[str | None, ...]]
    generation: int | None = None  # views: the active generation (None: nothing built yet)


def _local(path: str) -> str:
    return path.removeprefix("file://") if path.startswith("file:///") else path


def _events_source(lake: LakeParts, *, check: bool = False) -> TableSource:
    snap = lake.log.snapshot()
    plan = snap.plan()
    if check:
        snap.check(plan)
    # The event columns on either layout (a bucketed log's `bucket` is physical only).
    schema = EVENT_SCHEMA
    values: dict[str, tuple[str | None, ...]] = {}
    if "partition_id" in snap.partition_columns:
        values["partition_id"] = plan.partitions
    return TableSource(EVENTS, "events", lake.storage.uri(EVENTS), snap.version, schema,
                       tuple(_local(f) for f in plan.files), values)


def _view_source(lake: LakeParts, view: View, *, check: bool = False,
                 accept_changed_definition: bool | None = None) -> TableSource:
    """The view's table as of its latest commit. With `accept_changed_definition` (True or
    False) its definition is checked first, on the same snapshot (`ViewStore.check_definition`).
    """
    columns = logical_columns(view)
    full = row_schema(view)
    schema = pa.schema([full.field(c) for c in columns])
    store = ViewStore(lake.storage, view)
    uri = lake.storage.uri(store.name)
    if not store.exists():
        return TableSource(view.name, view.kind, uri, None, schema, (), {})
    snap: Snapshot = store.snapshot()
    if accept_changed_definition is not None:
        snap = store.check_definition(snap, accept=accept_changed_definition)
    active = store.marks(snap).active
    if active is None:
        return TableSource(view.name, view.kind, uri, snap.version, schema, (), {})
    plan = snap.plan(equals={"generation": [active]})
    if check:
        snap.check(plan)
    return TableSource(view.name, view.kind, uri, snap.version, schema,
                       tuple(_local(f) for f in plan.files), {}, active)


def snapshot_sources(lake: LakeParts, views: Sequence[str] | None = None, *,
                     check: Collection[str] = ()) -> list[TableSource]:
    """`events` and each registered view (or the named ones), as of their latest commits.

    The data files of the tables named in `check` are checked (`Snapshot.check`); a damaged
    one raises `CorruptLakeError` naming it.
    """
    chosen = [lake.view(name) for name in (views if views is not None else lake.views)]
    return [_events_source(lake, check=EVENTS in check),
            *(_view_source(lake, view, check=view.name in check) for view in chosen)]


def tables_named(query: str, names: Iterable[str]) -> set[str]:
    """The `names` that occur in `query` as whole words, ignoring case (as DuckDB matches
    identifiers), quoted or not.

    A superset of the tables the query reads: a name inside a string literal or a comment
    counts too, which costs a needless check, never a missed one.
    """
    return {name for name in names
            if re.search(rf"(?<!\w){re.escape(name)}(?!\w)", query, re.IGNORECASE)}


# Parse-tree nodes that list the catalog rather than read one table: SHOW TABLES (a SHOW_REF
# of these names), `information_schema.*`, `pg_catalog.*` and DuckDB's `duckdb_*()` functions.
_SHOW_CATALOG = {'"tables"', "tables", "__show_tables_expanded", '"databases"', "databases"}
_CATALOG_SCHEMAS = {"information_schema", "pg_catalog"}
_OWN_SCHEMAS = {"", "main"}
_OWN_CATALOGS = {"", "memory", "temp"}


def tables_read(query: str, names: Iterable[str],
                con: duckdb.DuckDBPyConnection | None = None) -> set[str] | None:
    """The `names` that `query` reads as tables (matched as DuckDB matches identifiers,
    ignoring case), or None when it lists the catalog (`SHOW TABLES`, `information_schema`,
    `duckdb_tables()`) and so may show any table.

    SELECT statements (SHOW, DESCRIBE and SUMMARIZE are SELECTs here) are read from DuckDB's
    parse tree (`json_serialize_sql`: parsed, not bound, so no file is opened), which tells a
    table apart from a column, an alias, a CTE reference, a string or a comment that happens to
    spell a table's name. Other statements (DDL, PIVOT, EXPLAIN, SET) count the whole-word
    superset of `tables_named`. A query that does not parse reads nothing: DuckDB reports the
    syntax error. A table named only inside a string (`query_table('events')`) is not listed:
    `run_sql` defines it when DuckDB asks for it.
    """
    scratch = con or duckdb.connect()
    try:
        return _read_tables(scratch, query, names)[0]
    finally:
        if con is None:
            scratch.close()


def _read_tables(con: duckdb.DuckDBPyConnection, query: str, names: Iterable[str]
                 ) -> tuple[set[str] | None, bool]:
    """`tables_read`, and whether `query` is SELECT statements only."""
    by_key = {name.lower(): name for name in names}
    tree = _parse_tree(con, query)
    if tree is None:
        trees = [(s.query, _parse_tree(con, s.query)) for s in _statements(query)]
    else:
        trees = [(query, tree)]
    found: set[str] = set()
    for text, parsed in trees:
        if parsed is None:
            found |= tables_named(text, by_key.values())
            continue
        named = _tree_tables(parsed)
        if named is None:
            return None, tree is not None
        found |= {by_key[key] for key in named if key in by_key}
    return found, tree is not None


def _statements(query: str) -> list[Any]:
    try:
        return list(duckdb.extract_statements(query))
    except duckdb.Error:
        return []  # a syntax error: DuckDB says so when the query runs


def _parse_tree(con: duckdb.DuckDBPyConnection, query: str) -> dict[str, Any] | None:
    """DuckDB's parse tree of `query` (SELECT statements only), or None for other statements;
    a query that does not parse has no statements."""
    rows = con.execute("SELECT json_serialize_sql(?)", [query]).fetchall()
    tree: dict[str, Any] = json.loads(rows[0][0]) if rows else {"error": True}
    if not tree.get("error"):
        return tree
    if tree.get("error_type") == "parser":
        return {"statements": []}
    return None


def _tree_tables(tree: dict[str, Any]) -> set[str] | None:
    """The lower-cased names of the tables of our catalog that `tree` reads, or None when it
    lists the catalog. Walked with a stack: a deeply nested expression must not hit Python's
    recursion limit."""
    found: set[str] = set()
    stack: list[Any] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        kind = node.get("type")
        if kind == "BASE_TABLE":
            schema = str(node.get("schema_name") or "").lower()
            if schema in _CATALOG_SCHEMAS:
                return None
            if (schema in _OWN_SCHEMAS
                    and str(node.get("catalog_name") or "").lower() in _OWN_CATALOGS):
                found.add(str(node.get("table_name", "")).lower())
        elif kind == "SHOW_REF":
            table = str(node.get("table_name") or "")
            if table.lower() in _SHOW_CATALOG:
                return None
            found.add(table.lower())
        elif kind == "TABLE_FUNCTION":
            function = node.get("function") or {}
            if str(function.get("function_name", "")).lower().startswith("duckdb_"):
                return None
        stack.extend(v for v in node.values() if isinstance(v, dict | list))
    return found


# -- SQL text --------------------------------------------------------------------------------


_TYPES = {
    pa.string(): "VARCHAR", pa.large_string(): "VARCHAR", pa.string_view(): "VARCHAR",
    pa.int64(): "BIGINT", pa.int32(): "INTEGER", pa.int16(): "SMALLINT", pa.int8(): "TINYINT",
    pa.float64(): "DOUBLE", pa.float32(): "FLOAT", pa.bool_(): "BOOLEAN",
    pa.timestamp("us", tz="UTC"): "TIMESTAMP WITH TIME ZONE", pa.timestamp("us"): "TIMESTAMP",
}


def _duckdb_types(schema: pa.Schema) -> list[str]:
    """DuckDB type names of `schema`'s columns (DuckDB itself names the uncommon ones)."""
    if all(f.type in _TYPES for f in schema):
        return _declared_json([_TYPES[f.type] for f in schema], schema)
    scratch = _session()
    try:
        relation = scratch.from_arrow(schema.empty_table())
        return _declared_json([str(t) for t in relation.types], schema)
    finally:
        scratch.close()


def _declared_json(types: list[str], schema: pa.Schema) -> list[str]:
    """A typed view's `json` columns (and lists of them) are JSON to DuckDB, not the text
    they are stored as (`viewstore.row_schema` notes the declared type on the field)."""
    declared = [(f.metadata or {}).get(TYPE_KEY.encode(), b"").decode() for f in schema]
    return [t.replace("VARCHAR", "JSON") if "json" in kind else t
            for t, kind in zip(types, declared, strict=True)]


_SHARED: tuple[int, duckdb.DuckDBPyConnection] | None = None
_SHARED_LOCK = threading.Lock()


def _session() -> duckdb.DuckDBPyConnection:
    """A new connection (a cursor) to this process's shared in-memory DuckDB database.

    `duckdb.connect()` builds a whole database, tens of milliseconds, more than a small query
    costs; a cursor costs microseconds. Its variables, registered objects and TEMP views are
    its own, and go when it is closed, so sessions of SELECT statements see only what they
    defined themselves. Statements that may change the database (DDL, SET) get a database of
    their own instead (`run_sql`). A forked child makes its own database: DuckDB's threads do
    not survive a fork.
    """
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None or _SHARED[0] != os.getpid():
            _SHARED = (os.getpid(), duckdb.connect())
        return _SHARED[1].cursor()


def _typed_empty(schema: pa.Schema, types: list[str]) -> str:
    columns = ", ".join(f"CAST(NULL AS {t}) AS {quote_identifier(n)}"
                        for n, t in zip(schema.names, types, strict=True))
    return f"SELECT {columns} WHERE false"


def _projection(schema: pa.Schema, types: list[str], prefix: dict[str, str]) -> str:
    return ",\n  ".join(
        f"CAST({prefix.get(n, '')}{quote_identifier(n)} AS {t}) AS {quote_identifier(n)}"
        for n, t in zip(schema.names, types, strict=True))


def _file_list(files: Sequence[str]) -> str:
    return "[\n    " + ",\n    ".join(quote_literal(f) for f in files) + "\n  ]"


def _mapping_values(source: TableSource) -> str:
    columns = [_FILE, *source.partition_values]
    rows = []
    for index, path in enumerate(source.files):
        cells = [quote_literal(path)]
        for column in source.partition_values:
            value = source.partition_values[column][index]
            cells.append("NULL" if value is None else quote_literal(value))
        rows.append("(" + ", ".join(cells) + ")")
    names = ", ".join(quote_identifier(c) for c in columns)
    return "(VALUES\n    " + ",\n    ".join(rows) + f"\n  ) AS m({names})"


def _files_select(source: TableSource, types: list[str], *, mapping: str | None,
                  variable: str | None = None) -> str:
    """SELECT over exactly `source.files`; `mapping` names a registered file table, or None to
    inline it as VALUES; `variable` names a DuckDB variable holding the file list, or None to
    spell it out (a script for another DuckDB)."""
    if not source.files:
        return _typed_empty(source.schema, types)
    files = (f"getvariable({quote_literal(variable)})" if variable is not None
             else _file_list(source.files))
    if source.partition_values:
        joined = (f"{quote_identifier(mapping)} AS m" if mapping is not None
                  else _mapping_values(source))
        prefix = {n: ("m." if n in source.partition_values else "t.")
                  for n in source.schema.names}
        return (f"SELECT\n  {_projection(source.schema, types, prefix)}\n"
                f"FROM read_parquet({files}, filename = {quote_literal(_FILE)}, "
                "hive_partitioning = false) AS t\n"
                f"JOIN {joined}\n  ON t.{quote_identifier(_FILE)} = m.{quote_identifier(_FILE)}")
    if source.kind == "events":
        # Every event file has the same columns: DuckDB binds the view from one file's footer
        # (union_by_name would read every file's, thousands on a big log, before any query).
        return (f"SELECT\n  {_projection(source.schema, types, {})}\n"
                f"FROM read_parquet({files}, hive_partitioning = false)")
    # Files of older view versions may lack columns added later: union_by_name fills them with
    # NULL, and the typed empty row set guarantees every column exists even if no file has it.
    empty = _typed_empty(source.schema, types)
    return (f"SELECT\n  {_projection(source.schema, types, {})}\n"
            f"FROM (\n  SELECT * FROM read_parquet({files}, union_by_name = true, "
            f"hive_partitioning = false)\n  UNION ALL BY NAME\n  {empty}\n)")


def _delta_select(source: TableSource, types: list[str]) -> str:
    if source.version is None or (source.kind != "events" and source.generation is None):
        return _typed_empty(source.schema, types)
    select = (f"SELECT\n  {_projection(source.schema, types, {})}\n"
              f"FROM delta_scan({quote_literal(_local(source.uri))})")
    if source.generation is not None:
        select += f"\nWHERE {quote_identifier('generation')} = {int(source.generation)}"
    return select


def _create_view(name: str, select: str, *, temporary: bool = False) -> str:
    kind = "TEMP VIEW" if temporary else "VIEW"
    return f"CREATE OR REPLACE {kind} {quote_identifier(name)} AS\n{select};\n"


def _mapping_table(source: TableSource) -> pa.Table:
    data: dict[str, list[str | None]] = {_FILE: list(source.files)}
    for column, values in source.partition_values.items():
        data[column] = list(values)
    return pa.table({k: pa.array(v, pa.string()) for k, v in data.items()})


def connect(lake: LakeParts, *, views: Sequence[str] | None = None,
            check: Collection[str] | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection where `events` and every view are SQL views.

    They read the latest committed snapshot of each table as of this call; open a new
    connection to see later commits. Payload fields work with DuckDB's JSON operators:
    `payload->>'$.amount'`.

    The data files of the tables named in `check` (default: every table) are checked first;
    a missing, truncated or garbage file raises `CorruptLakeError` naming it. `lake.sql`
    defines and checks only the tables its query reads (`run_sql`).
    """
    con = duckdb.connect()
    chosen = list(views) if views is not None else list(lake.views)
    try:
        if not lake.storage.duckdb_reads_files:
            for index, name in enumerate([EVENTS, *chosen]):
                _define_remote(con, lake, name, index)
            return con
        checked = {EVENTS, *chosen} if check is None else check
        for index, source in enumerate(snapshot_sources(lake, views, check=checked)):
            try:
                _define(con, source, index)
            except duckdb.Error:
                if source.name not in checked:
                    # Defining a view makes DuckDB read footers (every file's, for a view
                    # table), so a damaged file of a table the query does not name fails
                    # here too: say which file rather than DuckDB's bare error.
                    _check_source(lake, source.name)
                raise
    except BaseException:
        con.close()
        raise
    return con


def run_sql(lake: LakeParts, query: str, *, params: Sequence[Any] | dict[str, Any] | None = None,
            accept_changed_definition: bool = False) -> duckdb.DuckDBPyRelation:
    """`query` on a connection where only the lake's tables it reads are defined (see
    `tables_read`), each as of its latest commit when this is called, files checked, and each
    view's definition checked (`ViewStore.check_definition`). The relation keeps its
    connection alive (a statement without a result gives what DuckDB gives for it: None, or
    a row count).

    A query of SELECT statements runs on a session of the process's shared database
    (`_session`) with TEMP views; any other statement, or one naming the `memory` catalog,
    on a database of its own, as `connect` gives, so nothing it creates or sets outlives it.

    A table the parse tree did not show (named inside a string: `query_table('events')`,
    `pragma_table_info('document')`) makes DuckDB raise a catalog error; for a query of
    SELECT statements only (nothing ran yet, so nothing runs twice) the tables its text
    names are then defined too and the query is bound again.
    """
    names = [EVENTS, *lake.views]
    con = _session()
    try:
        wanted, selects_only = _read_tables(con, query, names)
        temporary = selects_only and wanted is not None and not tables_named(query, ["memory"])
        if not temporary:
            con.close()
            con = duckdb.connect()
    except BaseException:
        con.close()
        raise
    defined: list[str] = []

    def define(tables: Collection[str]) -> None:
        for name in names:
            if name not in tables or name in defined:
                continue
            if not lake.storage.duckdb_reads_files:
                _define_remote(con, lake, name, len(defined), temporary=temporary,
                               accept_changed_definition=accept_changed_definition)
            elif name == EVENTS:
                _define(con, _events_source(lake, check=True), len(defined),
                        temporary=temporary)
            else:
                _define(con, _view_source(
                    lake, lake.view(name), check=True,
                    accept_changed_definition=accept_changed_definition), len(defined),
                    temporary=temporary)
            defined.append(name)

    try:
        define(names if wanted is None else wanted)
        try:
            return con.sql(query, params=params)
        except duckdb.CatalogException:
            missing = tables_named(query, names) - set(defined)
            if not selects_only or not missing:
                raise
        define(missing)
        return con.sql(query, params=params)
    except BaseException:
        con.close()
        raise


def _define(con: duckdb.DuckDBPyConnection, source: TableSource, index: int, *,
            temporary: bool = False) -> None:
    """Create the SQL view of `source` on `con` (a TEMP one if `temporary`). Its file list
    goes in as a DuckDB variable filled from a registered Arrow table: spelling out thousands
    of paths in the SQL text would cost DuckDB seconds to parse, and again at every bind."""
    types = _duckdb_types(source.schema)
    mapping = variable = None
    if source.files:
        mapping = f"__eventlake_files_{index}"
        variable = f"__eventlake_list_{index}"
        con.register(mapping, _mapping_table(source))
        con.execute(f"SET VARIABLE {quote_identifier(variable)} = "
                    f"(SELECT list({quote_identifier(_FILE)}) FROM {quote_identifier(mapping)})")
        if not source.partition_values:
            con.unregister(mapping)
            mapping = None
    con.execute(_create_view(source.name, _files_select(source, types, mapping=mapping,
                                                        variable=variable),
                             temporary=temporary))


def _check_source(lake: LakeParts, name: str) -> None:
    """Raise `CorruptLakeError` if a data file of table `name` is damaged."""
    if name == EVENTS:
        _events_source(lake, check=True)
    else:
        _view_source(lake, lake.view(name), check=True)


def _define_remote(con: duckdb.DuckDBPyConnection, lake: LakeParts, name: str, index: int, *,
                   temporary: bool = False, accept_changed_definition: bool | None = None
                   ) -> None:
    """A table of a lake on object storage: DuckDB gets no network extension (none is
    needed, and none is downloaded); the table is a Polars scan of its snapshot's exact files
    (read with the lake's storage options), registered with DuckDB, which pushes projections
    and filters into it. The same typed projection as the local path keeps the column types
    equal. With `accept_changed_definition` (True or False) a view's definition is checked."""
    if name == EVENTS:
        snap = lake.log.snapshot()
        schema, frame = EVENT_SCHEMA, snap.scan(snap.plan())
    else:
        view = lake.view(name)
        store = ViewStore(lake.storage, view)
        if accept_changed_definition is not None and store.exists():
            store.check_definition(store.snapshot(), accept=accept_changed_definition)
        full = row_schema(view)
        schema = pa.schema([full.field(c) for c in logical_columns(view)])
        frame = store.scan_logical()
    types = _duckdb_types(schema)
    registered = f"__eventlake_table_{index}"
    con.register(registered, frame)
    select = (f"SELECT\n  {_projection(schema, types, {})}\n"
              f"FROM {quote_identifier(registered)}")
    con.execute(_create_view(name, select, temporary=temporary))


# -- the DuckDB shell ------------------------------------------------------------------------


def delta_extension_available() -> bool:
    """Whether DuckDB's `delta` extension loads here without a download (see `deltaext`)."""
    return find_delta_extension().available


@dataclass(frozen=True)
class InitScript:
    """A DuckDB init script and how it reads the lake."""

    sql: str
    uses_delta_extension: bool
    events_version: int | None
    tables: tuple[str, ...]


def init_script(lake: LakeParts, *, use_delta_extension: bool | None = None) -> InitScript:
    """Build the init script (see `duckdb_init_sql`) with a note of how it reads the lake."""
    use_delta = delta_extension_available() if use_delta_extension is None else \
        use_delta_extension
    sources = snapshot_sources(lake)
    events = sources[0]
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    header = [
        f"-- eventlake: DuckDB init script for the lake at {_comment(lake.root)}",
        f"-- generated {stamp}; use it with: duckdb -init <this file>",
        "-- tables: " + _comment(", ".join(s.name for s in sources)),
    ]
    if use_delta:
        header += [
            "-- events are read with the delta extension (delta_scan), so new commits to the",
            "-- event log show up without regenerating this file. Views show their active",
            "-- generation as of now: regenerate (`eventlake duckdb`) after a view rebuild.",
        ]
    else:
        header += [
            f"-- SNAPSHOT: events as of Delta table version {events.version}; every table lists",
            "-- the data files of its snapshot when this file was generated. Regenerate it",
            "-- (`eventlake duckdb`) after new commits (ingest, materialize, compaction,",
            "-- vacuum): later data is missing, and vacuumed files would fail to read.",
        ]
        for source in sources[1:]:
            version = "not built" if source.version is None else f"version {source.version}"
            header.append(f"-- view {_comment(source.name)}: Delta table {version}")
    if not lake.storage.duckdb_reads_files:
        header += _remote_header(lake.storage.options)
    parts = ["\n".join(header) + "\n"]
    if use_delta:
        found = find_delta_extension()
        parts.append(f"{found.load or 'LOAD delta'};\n")
    for source in sources:
        types = _duckdb_types(source.schema)
        select = _delta_select(source, types) if use_delta else _files_select(
            source, types, mapping=None)
        parts.append(_create_view(source.name, select))
    return InitScript("\n".join(parts), use_delta, events.version,
                      tuple(s.name for s in sources))


def _remote_header(options: dict[str, str]) -> list[str]:
    """How to give the DuckDB shell access to a remote lake; never writes a credential."""
    lines = ["-- remote lake: the DuckDB shell reads it with the httpfs extension and an S3",
             "-- secret that must exist before this script runs, for example a persistent one",
             "-- created once (fill in your key; this file never holds credentials):"]
    parts = ["TYPE s3", "KEY_ID '<access key id>'", "SECRET '<secret access key>'"]
    region = options.get("aws_region")
    if region:
        parts.append(f"REGION {quote_literal(_comment(region))}")
    endpoint = options.get("aws_endpoint_url")
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        parts += [f"ENDPOINT {quote_literal(_comment(host or scheme).rstrip('/'))}",
                  "URL_STYLE 'path'"]
        if scheme.lower() == "http":
            parts.append("USE_SSL false")
    lines.append(f"--   CREATE PERSISTENT SECRET eventlake ({', '.join(parts)});")
    return lines


def duckdb_init_sql(lake: LakeParts, *, use_delta_extension: bool | None = None) -> str:
    """SQL that, run in a fresh DuckDB, defines `events` and every view of `lake`.

    With the `delta` extension (when it loads without a download, or when
    `use_delta_extension=True`) `events` is `delta_scan` of the event log; otherwise every
    table lists the files of the current snapshot and the text says it must be regenerated
    after new commits.
    """
    return init_script(lake, use_delta_extension=use_delta_extension).sql
