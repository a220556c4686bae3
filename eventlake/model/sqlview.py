"""SQL views: a view defined by one DuckDB SELECT over `events`, grouped by `partition_id`.

The definition is checked with DuckDB's own parser (`extract_statements` for the statement
count and kind, `json_serialize_sql` for the parse tree) and bound against an empty `events`
table, so a typo or an unknown function is refused when the view is made, not at the first
refresh. A query is then one of two strategies:

- `merge`: every output column is a group key or a decomposable aggregate that an
  `AggregateView` computes (count, sum, min, max, avg of a payload number; first/last value
  by seq). The SELECT compiles to that AggregateView and the engine merges partials of new
  events onto the stored rows, exactly as for a Python-declared aggregate view.
- `recompute-touched`: anything else (median, count(distinct ...), window functions over a
  partition, expressions of event columns, HAVING, a WHERE other than on `type`). A refresh
  runs the SELECT over the whole history of the partitions its batch touched, and only those.

Both are exact only because a view row depends on its own partition's events alone. That is
what the refusals protect: one statement, a SELECT, grouped by `partition_id` in every
grouping set, reading `events` and nothing else (no join, subquery, CTE or table function),
windows partitioned by `partition_id`, no LIMIT.

Pure: the in-memory DuckDB connections only parse and bind; nothing is read or written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from eventlake.errors import ViewDefinitionError

if TYPE_CHECKING:
    import pyarrow as pa

    from eventlake.model.views import Agg, AggregateView

__all__ = ["SQL_STRATEGIES", "SUM_COUNT", "SqlView", "parse_sql_file"]

Strategy = Literal["merge", "recompute-touched"]
SQL_STRATEGIES: tuple[str, ...] = ("merge", "recompute-touched")

# The `events` table a SQL view reads, in DuckDB's types (those `lake.sql` shows).
_EVENT_TYPES = {"seq": "BIGINT", "partition_id": "VARCHAR", "type": "VARCHAR",
                "payload": "VARCHAR", "event_id": "VARCHAR", "ts": "TIMESTAMP WITH TIME ZONE",
                "ingested_at": "TIMESTAMP WITH TIME ZONE", "batch_id": "VARCHAR"}
# Event columns an AggregateView group key names directly.
_KEY_COLUMNS = ("type", "event_id", "batch_id")
_JSON_PATH = re.compile(r"^\$\.([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)$")
# Casts of a payload value that an AggregateView dtype reads the same way.
_INTEGER_TYPES = {"BIGINT", "INT8", "INT64", "LONG"}
_FLOAT_TYPES = {"DOUBLE", "FLOAT8"}
_VERSION_HEADER = re.compile(r"^\s*--\s*version\s*:\s*(\S+)\s*$", re.IGNORECASE)
_LOCATIONS = ("query_location", "query_location_length")
_CLOCKS = {"current_timestamp", "current_date", "current_time", "localtime", "localtimestamp"}
# The suffix of the hidden count of values beside each merged sum (stored as `_<sum>__values`).
SUM_COUNT = "__values"


@dataclass(frozen=True)
class _Plan:
    """What the checks learned about a query (kept on the SqlView, not part of equality)."""

    columns: tuple[str, ...]
    keys: tuple[str, ...]
    reads: tuple[str, ...]
    tree: Any
    aggregate: AggregateView | None
    reason: str
    schema: pa.Schema


@dataclass(frozen=True)
class SqlView:
    """A view defined by one DuckDB SELECT over `events`, grouped by `partition_id`.

    Its rows are the SELECT's rows; `partition_id` plus the other group keys (each must be
    selected) are the unique key, as in a dbt incremental model. Bump `version` when the
    query changes meaning; a changed query under the same version is refused like any
    changed view definition (the fingerprint is of the parse tree, so formatting and
    comments do not count). `strategy` says how it is refreshed (module docstring).
    """

    name: str
    version: int
    sql: str
    description: str = ""

    def __post_init__(self) -> None:
        from eventlake.model.views import _check_identity

        _check_identity(self.name, self.version)
        if not isinstance(self.sql, str) or not self.sql.strip():
            raise ViewDefinitionError(f"view {self.name!r}: sql must be a non-empty SELECT")
        object.__setattr__(self, "_plan", _analyse(self.name, self.version, self.sql))

    @property
    def _info(self) -> _Plan:
        plan = self.__dict__["_plan"]
        assert isinstance(plan, _Plan)
        return plan

    @property
    def kind(self) -> str:
        return "sql"

    @property
    def strategy(self) -> Strategy:
        return "merge" if self._info.aggregate is not None else "recompute-touched"

    @property
    def strategy_reason(self) -> str:
        """Why the view is not merged ("" for a merge view): the first clause that stops it."""
        return self._info.reason

    @property
    def aggregate(self) -> AggregateView | None:
        """The AggregateView a merge view compiles to (None for recompute-touched)."""
        return self._info.aggregate

    @property
    def sum_counts(self) -> dict[str, str]:
        """Merged sum column -> its AggregateView count of values (`<sum>__values`)."""
        agg = self._info.aggregate
        if agg is None:
            return {}
        return {name: f"{name}{SUM_COUNT}" for name, a in agg.aggs.items() if a.fn == "sum"}

    @property
    def columns(self) -> tuple[str, ...]:
        """The SELECT's output columns, in order (`partition_id` among them)."""
        return self._info.columns

    @property
    def group_columns(self) -> tuple[str, ...]:
        """The output columns of the group keys other than `partition_id`."""
        return self._info.keys

    @property
    def reads(self) -> tuple[str, ...]:
        """The event columns the query uses (with `seq` and `partition_id`, always read)."""
        return self._info.reads

    def fingerprint_spec(self) -> Any:
        """What `definition_fingerprint` hashes: the parse tree without source positions."""
        return {"kind": "sql", "strategy": self.strategy, "tree": self._info.tree}

    def output_schema(self) -> pa.Schema:
        """The Arrow schema of the SELECT's rows (bound over an empty `events`)."""
        return self._info.schema


def parse_sql_file(name: str, text: str) -> SqlView:
    """The SqlView of a `views/<name>.sql` file: a `-- version: N` header line, then the
    SELECT (other leading comment lines are the description)."""
    version: int | None = None
    notes: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        found = _VERSION_HEADER.match(line)
        if found:
            try:
                version = int(found.group(1))
            except ValueError:
                raise ViewDefinitionError(
                    f"view {name!r}: bad version header {line.strip()!r}: expected "
                    "'-- version: 1'") from None
            continue
        if not line.lstrip().startswith("--"):
            break
        notes.append(line.lstrip()[2:].strip())
    if version is None:
        raise ViewDefinitionError(
            f"view {name!r}: the .sql file needs a '-- version: 1' header line before the "
            "SELECT (bump it when the query changes meaning)")
    return SqlView(name=name, version=version, sql=text, description=" ".join(notes))


# -- checks ----------------------------------------------------------------------------------


def _refuse(name: str, clause: str, problem: str) -> ViewDefinitionError:
    return ViewDefinitionError(f"view {name!r}: {clause}: {problem}")


def _connection() -> Any:
    import duckdb

    return duckdb.connect(config={"autoinstall_known_extensions": False,
                                  "autoload_known_extensions": True})


def _bind(name: str, sql: str) -> tuple[list[str], pa.Schema]:
    """Output names and the stored Arrow schema of `sql` run over an empty `events` table."""
    import duckdb
    import pyarrow as pa

    con = _connection()
    try:
        columns = ", ".join(f"NULL::{t} AS {c}" for c, t in _EVENT_TYPES.items())
        con.execute(f"CREATE TEMP TABLE events AS SELECT {columns} LIMIT 0")
        try:
            table = con.sql(sql).to_arrow_table()
        except duckdb.Error as exc:
            raise _refuse(name, "the query", f"DuckDB cannot run it over `events`: "
                          f"{str(exc).splitlines()[0]}") from None
        schema = pa.schema([pa.field(f.name, _stored_type(name, f.name, f.type))
                            for f in table.schema])
        return list(table.schema.names), schema
    finally:
        con.close()


def _stored_type(view: str, column: str, kind: pa.DataType) -> pa.DataType:
    """The type a Delta table holds `kind` as (the view table stores the SELECT's rows)."""
    import pyarrow as pa

    if pa.types.is_timestamp(kind):
        return pa.timestamp("us", tz="UTC" if kind.tz else None)
    if pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return pa.string()
    widened = {pa.uint8(): pa.int16(), pa.uint16(): pa.int32(), pa.uint32(): pa.int64(),
               pa.uint64(): pa.decimal128(20, 0)}
    if kind in widened:
        return widened[kind]
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return pa.list_(_stored_type(view, column, kind.value_type))
    if pa.types.is_struct(kind):
        return pa.struct([pa.field(f.name, _stored_type(view, column, f.type)) for f in kind])
    plain = (pa.types.is_boolean(kind) or pa.types.is_signed_integer(kind)
             or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
             or pa.types.is_string(kind) or pa.types.is_date32(kind)
             or pa.types.is_binary(kind))
    if not plain:
        raise _refuse(view, f"SELECT column {column!r}", f"its type {kind} cannot be stored "
                      "in a Delta table: cast it (to VARCHAR, BIGINT, DOUBLE, TIMESTAMPTZ ...)")
    return kind


def _statement_tree(name: str, sql: str) -> dict[str, Any]:
    import duckdb

    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise _refuse(name, "the query", f"it does not parse: {str(exc).splitlines()[0]}"
                      ) from None
    if len(statements) != 1:
        raise _refuse(name, "the query", f"it is {len(statements)} statements; a SQL view "
                      "is exactly one SELECT")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise _refuse(name, f"{kind.name} statement", "a SQL view is one SELECT over `events` "
                      "(no DDL, DML or settings)")
    con = _connection()
    try:
        text = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0]
        tree = json.loads(text)
        if tree.get("error"):
            raise _refuse(name, "the query", str(tree.get("error_message")))
        node = _without_locations(tree["statements"][0]["node"])
        called = sorted({str(e["function_name"]).lower() for e in _walk(node)
                         if e.get("class") == "FUNCTION"}
                        # current_timestamp and friends parse as column names
                        | {f"get_{c}" if c == "current_timestamp" else c
                           for c in map(_column, _walk(node)) if c in _CLOCKS})
        # A row must be a function of the events: random(), now() and the like would make a
        # refresh and a from-scratch run differ.
        unstable = con.execute(
            # Every overload unstable: `+` on TIMESTAMPTZ depends on the session, not on time.
            "SELECT function_name FROM duckdb_functions() WHERE list_contains(?, function_name)"
            " GROUP BY 1 HAVING bool_and(stability IN ('VOLATILE', 'CONSISTENT_WITHIN_QUERY'))"
            " ORDER BY 1", [called]).fetchall()
    finally:
        con.close()
    if unstable:
        raise _refuse(name, f"{unstable[0][0]}()", "a view row must be a function of its "
                      "partition's events; this function's value changes from run to run")
    assert isinstance(node, dict)
    return node


def _without_locations(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_locations(v) for k, v in value.items() if k not in _LOCATIONS}
    if isinstance(value, list):
        return [_without_locations(v) for v in value]
    return value


def _walk(value: Any) -> Any:
    """Every dict node under `value` (itself included)."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _plain(expr: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in expr.items() if k != "alias"}


def _column(expr: Any) -> str | None:
    """The column a COLUMN_REF names (its last part: `e.seq` is `seq`)."""
    if isinstance(expr, dict) and expr.get("class") == "COLUMN_REF":
        names = expr.get("column_names") or []
        return str(names[-1]).lower() if names else None
    return None


def _from_events(name: str, node: dict[str, Any]) -> None:
    source = node.get("from_table") or {}
    kind = source.get("type")
    if kind == "BASE_TABLE":
        table = str(source.get("table_name", ""))
        if table.lower() != "events" or source.get("catalog_name") or source.get(
                "schema_name") not in ("", "main", None):
            raise _refuse(name, f"FROM {table}", "a SQL view reads the `events` table only")
        return
    what = {"JOIN": "FROM ... JOIN", "SUBQUERY": "FROM (subquery)",
            "TABLE_FUNCTION": "FROM <table function>", "EMPTY": "no FROM clause"}.get(
        str(kind), f"FROM ({kind})")
    raise _refuse(name, what, "a SQL view reads the `events` table alone: no joins, "
                  "subqueries, table functions or other tables")


def _check_shape(name: str, node: dict[str, Any]) -> None:
    if node.get("type") != "SELECT_NODE":
        raise _refuse(name, str(node.get("type", "query")).replace("_NODE", "").replace(
            "_", " "), "a SQL view is one plain SELECT (no UNION/INTERSECT/EXCEPT)")
    if (node.get("cte_map") or {}).get("map"):
        raise _refuse(name, "WITH clause", "CTEs are not supported: a SQL view reads "
                      "`events` directly")
    _from_events(name, node)
    for expr in _walk([node.get("select_list"), node.get("where_clause"),
                       node.get("group_expressions"), node.get("having"),
                       node.get("qualify"), node.get("modifiers")]):
        if expr.get("class") == "SUBQUERY":
            raise _refuse(name, "subquery", "a view row must depend on its partition's events "
                          "alone; subqueries are not supported")
        if expr.get("class") == "WINDOW" and not any(
                _column(p) == "partition_id" for p in expr.get("partitions") or []):
            raise _refuse(name, f"window function {expr.get('function_name', '')}",
                          "a window must be PARTITION BY partition_id (a row may not depend "
                          "on other partitions)")
    for modifier in node.get("modifiers") or []:
        if modifier.get("type") == "LIMIT_MODIFIER" or modifier.get(
                "type") == "LIMIT_PERCENT_MODIFIER":
            raise _refuse(name, "LIMIT", "a SQL view keeps every group's row")


def _group_keys(name: str, node: dict[str, Any], select: list[dict[str, Any]]
                ) -> list[int]:
    """Select-list positions of the group keys; `partition_id` must be in every grouping set."""
    if node.get("aggregate_handling") == "FORCE_AGGREGATES":
        raise _refuse(name, "GROUP BY ALL", "list the group keys: GROUP BY partition_id, ...")
    groups = node.get("group_expressions") or []
    if not groups:
        raise _refuse(name, "GROUP BY", "the query is not grouped by partition_id: add "
                      "GROUP BY partition_id (plus any further keys)")
    positions: list[int] = []
    for expr in groups:
        position = _select_position(expr, select)
        if position is None:
            raise _refuse(name, "GROUP BY", f"group key {_describe(expr)} is not in the select "
                          "list; the view's unique key is partition_id plus the group keys, "
                          "so select each one")
        positions.append(position)
    sets = node.get("group_sets") or [list(range(len(groups)))]
    partition = [i for i, p in enumerate(positions)
                 if _column(select[p]) == "partition_id"]
    if not partition or any(not set(partition) & set(s) for s in sets):
        raise _refuse(name, "GROUP BY", "the query is not grouped by partition_id (in every "
                      "grouping set): add GROUP BY partition_id")
    return positions


def _select_position(expr: dict[str, Any], select: list[dict[str, Any]]) -> int | None:
    if expr.get("class") == "CONSTANT" and expr["literal"].get("kind") in (
            "INTEGER", "BIGINT"):
        index = int(expr["literal"]["text"]) - 1
        return index if 0 <= index < len(select) else None
    for i, item in enumerate(select):
        if _plain(item) == _plain(expr):
            return i
    column = _column(expr)
    if column is not None:  # GROUP BY an output alias
        for i, item in enumerate(select):
            if str(item.get("alias", "")).lower() == column:
                return i
    return None


def _describe(expr: dict[str, Any]) -> str:
    return _column(expr) or str(expr.get("function_name") or expr.get("class", "expression"))


def _analyse(name: str, version: int, sql: str) -> _Plan:
    from eventlake.model.views import RESERVED_COLUMNS

    reserved = RESERVED_COLUMNS | {"generation"}
    node = _statement_tree(name, sql)
    _check_shape(name, node)
    select = list(node.get("select_list") or [])
    if any(item.get("class") == "STAR" for item in select):
        raise _refuse(name, "SELECT *", "name the output columns (partition_id, group keys "
                      "and aggregates)")
    positions = _group_keys(name, node, select)
    outputs, schema = _bind(name, sql)
    seen: set[str] = set()
    for i, column in enumerate(outputs):
        if column == "partition_id" and _column(select[i]) != "partition_id":
            raise _refuse(name, "SELECT", "the output column partition_id must be the event "
                          "column partition_id")
        if (not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", column) or column.startswith("_")
                or (column in reserved and column != "partition_id")):
            raise _refuse(name, f"SELECT item {i + 1} ({column!r})", "give it an alias that "
                          "is an identifier, does not start with '_' and is not one of the "
                          f"view table's own columns ({', '.join(sorted(reserved))})")
        if "__" in column:
            raise _refuse(name, f"SELECT item {i + 1} ({column!r})", "'__' in a column name "
                          "is kept for the view table's hidden partial columns")
        if column in seen:
            raise _refuse(name, f"SELECT item {i + 1}", f"column {column!r} twice")
        seen.add(column)
    if "partition_id" not in outputs or outputs.index("partition_id") not in positions:
        raise _refuse(name, "SELECT", "select partition_id (the view's key)")
    keys = tuple(outputs[p] for p in positions if outputs[p] != "partition_id")
    named = {c for c in (_column(e) for e in _walk(node)) if c is not None}
    if named - set(_EVENT_TYPES) or any(e.get("class") == "STAR" for e in _walk(node)):
        # A name that is not an event column (the table as a struct, an alias) or a star:
        # the refresh hands the query every column, as the from-scratch run has.
        named |= set(_EVENT_TYPES)
    reads = tuple(c for c in _EVENT_TYPES if c in {"seq", "partition_id", *named})
    aggregate, reason = _compile(name, version, node, select, outputs, positions)
    return _Plan(tuple(outputs), keys, reads, node, aggregate, reason, schema)


# -- compiling to an AggregateView -----------------------------------------------------------


def _payload_path(expr: Any) -> str | None:
    """`p.q` for `payload->>'$.p.q'` (the JSON scalar text an AggregateView reads)."""
    if not isinstance(expr, dict) or expr.get("class") != "FUNCTION":
        return None
    if expr.get("function_name") != "->>" or len(expr.get("arguments") or []) != 2:
        return None
    target, path = (a["expression"] for a in expr["arguments"])
    if _column(target) != "payload" or path.get("class") != "CONSTANT":
        return None
    if path["literal"].get("kind") not in ("STRING", "VARCHAR"):
        return None
    found = _JSON_PATH.match(str(path["literal"]["text"]))
    return found.group(1) if found else None


def _cast_path(expr: Any) -> tuple[str, str] | None:
    """(path, dtype) for `(payload->>'$.p')::BIGINT` or `::DOUBLE`."""
    if not isinstance(expr, dict) or expr.get("class") != "CAST" or expr.get("try_cast"):
        return None
    type_name = str((expr.get("type_expr") or {}).get("type_name", "")).upper()
    if (expr.get("type_expr") or {}).get("children"):
        return None
    path = _payload_path(expr.get("child"))
    if path is None:
        return None
    if type_name in _INTEGER_TYPES:
        return path, "int64"
    if type_name in _FLOAT_TYPES:
        return path, "float64"
    return None


def _event_types(where: Any) -> list[str] | None:
    """The type names of `type = 'x'` or `type IN ('x', 'y')`, else None."""
    if not isinstance(where, dict):
        return None
    if where.get("type") == "COMPARE_IN":
        head, *values = where.get("children") or []
    elif where.get("type") == "COMPARE_EQUAL":
        head, values = where.get("left"), [where.get("right")]
        if _column(head) != "type":
            head, values = where.get("right"), [where.get("left")]
    else:
        return None
    if _column(head) != "type" or not values:
        return None
    kinds = []
    for value in values:
        if not isinstance(value, dict) or value.get("class") != "CONSTANT" or value[
                "literal"].get("kind") not in ("STRING", "VARCHAR"):
            return None
        kinds.append(str(value["literal"]["text"]))
    return kinds


def _aggregate_of(expr: dict[str, Any]) -> Agg | str:
    """The Agg computing `expr` the way DuckDB does, or why there is none."""
    from eventlake.model.views import Agg

    fn = str(expr.get("function_name", "")).lower()
    label = fn or str(expr.get("class", "expression")).lower()
    if expr.get("class") != "FUNCTION" or expr.get("is_operator"):
        return f"{label} is an expression, not an aggregate over a payload value"
    if expr.get("distinct"):
        return f"{fn}(DISTINCT ...) is not decomposable"
    if expr.get("filter") is not None or (expr.get("order_bys") or {}).get("orders"):
        return f"{fn} with FILTER or ORDER BY"
    args = [a["expression"] for a in expr.get("arguments") or []]
    if fn == "count_star" and not args:
        return Agg("count")
    if fn == "count" and len(args) == 1 and _payload_path(args[0]) is not None:
        return Agg("count", _payload_path(args[0]))
    if fn in ("sum", "min", "max", "avg") and len(args) == 1:
        cast = _cast_path(args[0])
        if cast is None:
            return (f"{fn} of something other than (payload->>'$.path')::BIGINT or "
                    "::DOUBLE")
        path, dtype = cast
        # DuckDB's sum of BIGINT is a HUGEINT: the exact Decimal(38, 0) sum follows it.
        if fn == "sum" and dtype == "int64":
            dtype = "decimal"
        return Agg(fn, path, dtype=dtype)  # type: ignore[arg-type]
    if fn in ("arg_min", "min_by", "arg_max", "max_by") and len(args) == 2:
        if _column(args[1]) != "seq":
            return f"{fn} by something other than seq"
        which: Any = "first" if fn in ("arg_min", "min_by") else "last"
        text = _payload_path(args[0])
        if text is not None:
            return Agg(which, text, dtype="string")
        cast = _cast_path(args[0])
        if cast is not None:
            return Agg(which, cast[0], dtype=cast[1])  # type: ignore[arg-type]
        return f"{fn} of something other than a payload value"
    return f"{fn or label} is not one of the merged aggregates"


def _compile(name: str, version: int, node: dict[str, Any], select: list[dict[str, Any]],
             outputs: list[str], positions: list[int]) -> tuple[AggregateView | None, str]:
    """The AggregateView that computes the query exactly, or (None, the reason why not)."""
    from eventlake.model.views import Agg, AggregateView

    where: list[str] | None = None
    if node.get("where_clause") is not None:
        where = _event_types(node["where_clause"])
        if where is None:
            return None, "WHERE other than on type (type = '...' or type IN (...))"
    for clause in ("having", "qualify"):
        if node.get(clause) is not None:
            return None, clause.upper()
    if len(node.get("group_sets") or [[]]) > 1:
        return None, "grouping sets"
    if any(m.get("type") == "DISTINCT_MODIFIER" for m in node.get("modifiers") or []):
        return None, "SELECT DISTINCT"
    group_by: list[str] = []
    aggregates: dict[str, Agg] = {}
    for i, item in enumerate(select):
        column = outputs[i]
        if i in positions:
            if column == "partition_id":
                continue
            key = _column(item)
            path = _payload_path(item)
            if key in _KEY_COLUMNS and column == key:
                group_by.append(key)
            elif path is not None and column == path.replace(".", "_"):
                group_by.append(f"payload.{path}")
            else:
                return None, (f"group key {column!r} (merged keys: type, event_id, "
                              "batch_id or payload->>'$.path' named after its path)")
            continue
        found = _aggregate_of(item)
        if isinstance(found, str):
            return None, f"{column}: {found}"
        aggregates[column] = found
        if found.fn == "sum":
            # SQL's sum of no values is NULL, an AggregateView's is 0: counting the values
            # tells them apart (`fold.sqlfold` nulls a sum that counted none).
            aggregates[f"{column}{SUM_COUNT}"] = Agg("count", found.path)
    if not aggregates:
        return None, "no aggregate to merge"
    try:
        view = AggregateView(name=name, version=version, group_by=group_by,
                             aggregates=aggregates, where=where)
    except ViewDefinitionError as exc:
        return None, str(exc)
    return view, ""
