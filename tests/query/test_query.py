"""SQL surfaces: `lake.sql`, `query.connect` and the DuckDB init script agree with Polars."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from polars.testing import assert_frame_equal

import eventlake as el
from eventlake.errors import CorruptLakeError, UnknownViewError, ViewDefinitionError
from eventlake.model.views import Agg, AggregateView, ReducerView
from eventlake.query.sql import (
    connect,
    delta_extension_available,
    duckdb_init_sql,
    init_script,
    quote_identifier,
    quote_literal,
    snapshot_sources,
    tables_named,
)
from eventlake.store.storage import Snapshot
from tests.engine.test_materialize import BALANCES, totals_view
from tests.logfiles import files_holding, on_disk

# make_events numbers every event in its payload's `n`: first/last of it is never null.
TOTALS = totals_view("n")
VIEWS = [BALANCES, TOTALS]
KEYS = {"document": ["partition_id"], "balances": ["partition_id"],
        "totals": ["partition_id", "type", "currency"]}

AMOUNT_SQL = ("select partition_id, count(*) as n, sum(cast(payload->>'$.amount' as double)) "
              "as amount from events group by partition_id")


def _normal(frame: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Comparable frames: instants in UTC (DuckDB hands them out in its session zone)."""
    fixes = [pl.col(name).dt.convert_time_zone("UTC") for name, dtype in frame.schema.items()
             if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None]
    return frame.with_columns(fixes).sort(keys, nulls_last=True)


def _polars_amounts(lake: el.Lake) -> pl.DataFrame:
    return (lake.events()
            .group_by("partition_id")
            .agg(pl.len().cast(pl.Int64).alias("n"),
                 pl.col("payload").str.json_path_match("$.amount").cast(pl.Float64).sum()
                 .alias("amount"))
            .collect())


def assert_sql_matches_polars(lake: el.Lake, run=None) -> None:
    """Counts, group-bys and JSON aggregates agree between SQL and Polars, table by table."""
    run = run or (lambda q: lake.sql(q).pl())
    events = lake.events().collect()
    assert run("select count(*) as n from events").item() == events.height
    got = _normal(run("select * from events"), ["seq"])
    assert_frame_equal(got, _normal(events, ["seq"]), check_dtypes=False)
    assert_frame_equal(_normal(run(AMOUNT_SQL), ["partition_id"]),
                       _normal(_polars_amounts(lake), ["partition_id"]), check_dtypes=False)
    by_type = run("select type, count(*) as n from events group by type")
    want = events.group_by("type").agg(pl.len().alias("n"))
    assert_frame_equal(by_type.sort("type"), want.sort("type"), check_dtypes=False)
    for name in lake.views:
        keys = KEYS[name]
        stored = lake.scan(name).collect()
        assert run(f'select count(*) from "{name}"').item() == stored.height
        assert_frame_equal(_normal(run(f'select * from "{name}"'), keys),
                           _normal(stored, keys), check_dtypes=False)
        assert run(f'select * from "{name}"').columns == stored.columns
    # Group-bys and JSON aggregates on the views.
    totals = run("select currency, sum(total) as total, sum(n) as n from totals "
                 "group by currency").sort("currency")
    want = (lake.scan("totals").group_by("currency")
            .agg(pl.col("total").sum(), pl.col("n").sum()).sort("currency").collect())
    assert_frame_equal(totals, want, check_dtypes=False)
    balances = run("select sum(cast(state->>'$.balance' as bigint)) as b, "
                   "count(*) filter (where cast(state->>'$.n' as bigint) > 0) as active "
                   "from balances")
    frame = lake.scan("balances").collect()
    decoded = [json.loads(s) for s in frame["state"]]
    assert balances.row(0) == (sum(d["balance"] for d in decoded),
                               sum(1 for d in decoded if d["n"] > 0))
    keys = run("select partition_id, json_array_length(json_keys(state)) as k from document")
    want_keys = {p: len(json.loads(s)) for p, s in
                 lake.scan("document").select("partition_id", "state").collect().iter_rows()}
    assert dict(keys.iter_rows()) == want_keys


def _compact_and_vacuum(root: Path) -> None:
    tables = [root / "events", *sorted((root / "views").iterdir())]
    for path in tables:
        table = DeltaTable(str(path))
        table.optimize.compact()
        DeltaTable(str(path)).vacuum(retention_hours=0, enforce_retention_duration=False,
                                     dry_run=False)


def _files_on_disk(root: Path) -> set[Path]:
    return {p for p in root.rglob("*.parquet") if "_delta_log" not in p.parts}


@pytest.fixture
def views_lake(tmp_path, make_events):
    lake = el.Lake.open(tmp_path / "lake", views=VIEWS)
    for seed in range(3):
        events = make_events(150, partitions=8, seed=seed)
        events += [{"type": "set", "partition": f"acct-{seed}",
                    "payload": {"target": f"k{seed}", "value": seed}}]
        lake.append(events)
    lake.materialize()
    return lake


# -- a: SQL equals Polars -----------------------------------------------------------------------


def test_sql_equals_polars_after_append_and_materialize(views_lake):
    assert_sql_matches_polars(views_lake)
    views_lake.append([{"type": "deposit", "partition": "acct-new",
                        "payload": {"amount": 7, "currency": "EUR", "n": -1}}])
    views_lake.materialize()
    assert views_lake.sql("select count(*) from balances where partition_id = 'acct-new'"
                          ).fetchall()[0] == (1,)
    assert_sql_matches_polars(views_lake)


def test_sql_equals_polars_after_compaction_and_vacuum(views_lake, lake_path):
    before = _files_on_disk(lake_path)
    plan_before = len(views_lake.log.snapshot().plan())
    _compact_and_vacuum(lake_path)
    after = _files_on_disk(lake_path)
    assert len(views_lake.log.snapshot().plan()) < plan_before  # compaction merged files
    assert before - after  # vacuum deleted the replaced files
    assert_sql_matches_polars(views_lake)
    # More commits on top of the compacted tables still read right.
    views_lake.append([{"type": "withdrawal", "partition": "acct-1",
                        "payload": {"amount": 1, "currency": "USD", "n": -2}}])
    views_lake.materialize()
    assert_sql_matches_polars(views_lake)


def test_sql_reads_its_snapshot_only_and_needs_no_duckdb_extension(backend):
    lake = backend.open(views=VIEWS)
    assert lake.sql("select 1").fetchall() == [(1,)]
    lake.append([{"type": "deposit", "payload": {"amount": i, "currency": "EUR", "n": i},
                  "partition": f"acct-{i % 3}"} for i in range(30)])
    assert lake.sql("select count(*) from balances").fetchall() == [(0,)]  # not built yet
    lake.materialize()
    con = connect(lake)
    relation = lake.sql("select count(*), sum((payload->>'$.amount')::int) from events")
    # A stray file in a partition (or bucket) folder (half-written, or left by a crashed
    # writer) is not in the Delta log, so it is not part of any table.
    options = lake.storage.options
    stray = files_holding(lake.root, "acct-1", options=options)[0].rsplit("/", 1)[0] + (
        "/part-stray.parquet")
    backend.write_parquet(lake, stray,
                          pa.table({"seq": [10**9], "type": ["x"], "payload": ["{}"]}))
    assert stray in on_disk(lake.root, options=options)
    lake.append([{"type": "deposit", "payload": {"amount": 1000, "currency": "EUR", "n": 30},
                  "partition": "acct-1"}])
    # The relation and the connection read the snapshot they were opened on, not the later
    # commit; a new query reads the new one.
    assert relation.fetchall() == [(30, sum(range(30)))]
    assert con.sql("select count(*), max(seq) from events").fetchall()[0] == (30, 30)
    assert con.sql("select count(*) from balances").fetchall() == [(3,)]
    assert lake.sql("select count(*), max(seq) from events").fetchall()[0] == (31, 31)
    # DuckDB reads what Polars scanned (on S3 too): no httpfs, aws or delta extension, in a
    # connection that ran queries or in a fresh one.
    for used in (con, connect(lake)):
        loaded = used.sql("select extension_name from duckdb_extensions() where loaded and "
                          "extension_name in ('httpfs', 'aws', 'delta')").fetchall()
        assert loaded == []


def test_relation_outlives_its_connection(views_lake):
    import gc

    relation = views_lake.sql("select partition_id, count(*) as n from events group by 1")
    gc.collect()
    assert sum(n for _, n in relation.fetchall()) == views_lake.last_seq()
    assert views_lake.sql("select $1::int + 1 as x", params=[41]).fetchall()[0] == (42,)


def test_tables_named_finds_whole_names_in_any_case():
    names = ["events", "balances", "my view", "a.b"]
    assert tables_named("select * from events", names) == {"events"}
    assert tables_named('SELECT * FROM "Balances" b JOIN EVENTS e USING (partition_id)',
                        names) == {"events", "balances"}
    assert tables_named("select events_count, rebalances from t", names) == set()
    assert tables_named("select * from \"my view\" where x = 'a.b'", names) == {"my view",
                                                                                  "a.b"}
    assert tables_named("select 1", names) == set()


@pytest.fixture
def checked_tables(monkeypatch):
    """The tables whose files `Snapshot.check` looked at, in order."""
    seen: list[str] = []
    original = Snapshot.check

    def spy(self, plan):
        seen.append(self.name)
        return original(self, plan)

    monkeypatch.setattr(Snapshot, "check", spy)
    return seen


def test_sql_checks_the_files_of_the_tables_its_query_names(views_lake, checked_tables):
    """A query of one view does not pay for checking the event log's files, and the other
    way round; `connect` checks every table."""
    views_lake.sql("select count(*) from balances").fetchall()
    assert checked_tables == ["views/balances"]
    checked_tables.clear()
    views_lake.sql('select * from EVENTS e join "Totals" t using (partition_id)').fetchall()
    assert sorted(checked_tables) == ["events", "views/totals"]
    checked_tables.clear()
    views_lake.sql("select 1").fetchall()
    assert checked_tables == []
    connect(views_lake).close()
    assert sorted(checked_tables) == ["events", "views/balances", "views/document",
                                      "views/totals"]



def _defined(relation: duckdb.DuckDBPyRelation) -> set[str]:
    """The SQL views on the connection a `lake.sql` relation runs on."""
    return {name for (name,) in relation.query(
        "r", "select view_name from duckdb_views() where not internal").fetchall()
        if not name.startswith("__eventlake_")}  # the registered file lists


@pytest.fixture
def planned_tables(monkeypatch):
    """The tables whose files `Snapshot.plan` listed, in order."""
    seen: list[str] = []
    original = Snapshot.plan

    def spy(self, **kwargs):
        seen.append(self.name)
        return original(self, **kwargs)

    monkeypatch.setattr(Snapshot, "plan", spy)
    return seen


def test_sql_of_a_view_never_plans_checks_or_defines_the_event_log(views_lake, lake_path,
                                                                   planned_tables):
    from eventlake.store import deltalog

    # A damaged event file, in a process that never checked it: only reads of `events` fail.
    target = views_lake.log.snapshot().plan().files[0]
    Path(target).write_bytes(b"garbage")
    deltalog.forget_logs()
    lake = el.Lake.open(lake_path, views=VIEWS)
    planned_tables.clear()
    relation = lake.sql("select * from document")
    assert _defined(relation) == {"document"}
    assert_frame_equal(_normal(relation.pl(), ["partition_id"]),
                       _normal(lake.scan("document").collect(), ["partition_id"]))
    # A name spelled as a column alias, a string or in a comment is no table read.
    relation = lake.sql("select partition_id as events from document "
                        "where state <> 'events' -- of events")
    assert _defined(relation) == {"document"} and len(relation.fetchall()) == 8
    assert set(planned_tables) == {"views/document"}
    with pytest.raises(CorruptLakeError) as info:
        lake.sql("select count(*) from document join events using (partition_id)")
    assert info.value.path == target


def test_sql_defines_the_tables_a_query_reads(views_lake):
    lake = views_lake
    query = ("select d.partition_id, count(*) as n from document d "
             "join events e using (partition_id) group by 1")
    relation = lake.sql(query)
    assert _defined(relation) == {"document", "events"}
    want = lake.events().group_by("partition_id").agg(pl.len().cast(pl.Int64).alias("n"))
    assert_frame_equal(relation.pl().sort("partition_id"),
                       want.collect().sort("partition_id"), check_dtypes=False)
    # CTEs, subqueries, several statements and quoted, differently cased names.
    relation = lake.sql('select 1; with t as (select * from "Balances") '
                        "select count(*) from t where partition_id in "
                        "(select partition_id from TOTALS)")
    assert _defined(relation) == {"balances", "totals"}
    assert relation.fetchall() == [(lake.scan("balances").collect().height,)]
    # A table reached only through a string is defined when DuckDB asks for it.
    relation = lake.sql("select count(*) from query_table('events')")
    assert relation.fetchall() == [(lake.last_seq(),)]
    # Listing the catalog shows every table; a query of none of them still works.
    assert {n for (n,) in lake.sql("show tables").fetchall()} >= {
        "events", "document", "balances", "totals"}
    assert _defined(lake.sql("select 42")) == set()
    assert lake.sql("select 42 as x").fetchall() == [(42,)]


def test_sql_params_and_statements_on_named_tables(views_lake):
    lake = views_lake
    state = lake.state("acct-1")
    got = lake.sql("select state from document where partition_id = $1", params=["acct-1"])
    assert json.loads(got.fetchall()[0][0]) == state
    got = lake.sql("select count(*) from events where partition_id = $p and seq > $s",
                   params={"p": "acct-1", "s": 0})
    assert got.fetchall()[0][0] == lake.events("acct-1").collect().height
    # A statement that changes the database gets one of its own: nothing it creates is seen
    # by the next query.
    created = lake.sql("create table copied as select * from totals")
    assert created is None or created.fetchall() == [(lake.scan("totals").collect().height,)]
    with pytest.raises(duckdb.CatalogException):
        lake.sql("select * from copied")
    with pytest.raises(duckdb.ParserException):
        lake.sql("selec * from events")


def test_the_events_view_reads_no_footer_to_be_defined(views_lake):
    """`events` is read without union_by_name (every event file has the same columns), so
    DuckDB binds it from one footer instead of every file's."""
    from eventlake.query.sql import _events_source, _files_select

    source = _events_source(views_lake)
    assert len(source.files) > 1
    select = _files_select(source, ["VARCHAR"] * len(source.schema), mapping="m",
                           variable="v")
    assert "union_by_name" not in select and "getvariable('v')" in select
    view = snapshot_sources(views_lake, ["document"])[1]
    assert "union_by_name = true" in _files_select(view, ["VARCHAR"] * len(view.schema),
                                                   mapping=None)

def test_empty_lake_has_typed_tables(tmp_path):
    lake = el.Lake.open(tmp_path / "lake", views=VIEWS)
    for name, frame in [("events", lake.events().collect()),
                        *((v, lake.scan(v).collect()) for v in lake.views)]:
        relation = lake.sql(f'select * from "{name}"')
        assert relation.fetchall() == []
        assert relation.columns == frame.columns, name
        assert relation.pl().schema.names() == frame.schema.names()
    types = dict(zip(lake.sql("select * from events").columns,
                     map(str, lake.sql("select * from events").types), strict=True))
    assert types["seq"] == "BIGINT"
    assert types["ts"] == "TIMESTAMP WITH TIME ZONE"
    totals = dict(zip(lake.sql("select * from totals").columns,
                      map(str, lake.sql("select * from totals").types), strict=True))
    # Aggregates of integer fields are integers; avg is a float.
    assert totals["total"] == "BIGINT" and totals["n"] == "BIGINT"
    assert totals["mean"] == "DOUBLE" and totals["failure"] == "VARCHAR"
    assert lake.sql(AMOUNT_SQL).fetchall() == []
    # The init script of an empty lake runs too.
    con = duckdb.connect()
    con.execute(duckdb_init_sql(lake, use_delta_extension=False))
    assert con.sql("select count(*) from totals").fetchall()[0] == (0,)


def test_view_version_with_new_columns_reads_before_rebuild(tmp_path, make_events):
    v1 = AggregateView(name="totals", version=1, aggregates={"n": "count"})
    lake = el.Lake.open(tmp_path / "lake", views=[v1])
    lake.append(make_events(50))
    lake.materialize()
    v2 = AggregateView(name="totals", version=2,
                       aggregates={"n": "count", "total": Agg("sum", "amount")})
    lake2 = el.Lake.open(tmp_path / "lake", views=[v2])
    from eventlake.store.viewstore import ViewStore

    ViewStore(lake2.storage, v2).ensure()  # the new column exists, old files lack it
    got = lake2.sql("select * from totals").pl()
    want = lake2.scan("totals").collect()
    assert got.columns == want.columns == ["partition_id", "n", "total", "failure",
                                           "last_seq", "event_count", "updated_at"]
    assert got["total"].null_count() == got.height
    lake2.materialize()
    assert_frame_equal(_normal(lake2.sql("select * from totals").pl(), ["partition_id"]),
                       _normal(lake2.scan("totals").collect(), ["partition_id"]),
                       check_dtypes=False)


# -- b: time travel ---------------------------------------------------------------------------


def test_scan_as_of_version(views_lake):
    from eventlake.store.viewstore import ViewStore

    then = {}
    for name in ["document", "balances", "totals"]:
        store = ViewStore(views_lake.storage, views_lake.view(name))
        then[name] = (store.snapshot().version, views_lake.scan(name).collect())
    views_lake.append([{"type": "deposit", "partition": "acct-0",
                        "payload": {"amount": 1000, "currency": "EUR", "n": 0}},
                       {"type": "set", "partition": "acct-0",
                        "payload": {"target": "late", "value": True}}])
    views_lake.materialize()
    for name, (version, frame) in then.items():
        keys = KEYS[name]
        now = views_lake.scan(name).collect()
        assert not now.sort(keys).equals(frame.sort(keys)), name
        old = views_lake.scan(name, as_of_version=version).collect()
        assert_frame_equal(old.sort(keys), frame.sort(keys))


# -- c: the DuckDB init script ----------------------------------------------------------------


def _table_counts(run) -> dict[str, int]:
    return {name: run(f'select count(*) from "{name}"')[0][0]
            for name in ["events", "document", "balances", "totals"]}


def test_init_script_in_fresh_duckdb(views_lake):
    text = duckdb_init_sql(views_lake, use_delta_extension=False)
    version = views_lake.log.snapshot().version
    assert f"SNAPSHOT: events as of Delta table version {version}" in text
    assert "regenerate" in text.lower()
    con = duckdb.connect()
    con.execute(text)
    expected = _table_counts(lambda q: views_lake.sql(q).fetchall())
    assert _table_counts(lambda q: con.sql(q).fetchall()) == expected
    assert sorted(con.sql(AMOUNT_SQL).fetchall()) == sorted(views_lake.sql(AMOUNT_SQL)
                                                            .fetchall())
    assert_frame_equal(_normal(con.sql("select * from totals").pl(), KEYS["totals"]),
                       _normal(views_lake.sql("select * from totals").pl(), KEYS["totals"]))
    # Same text again: CREATE OR REPLACE, so re-running an init file is harmless.
    con.execute(text)



def test_init_script_in_duckdb_shell(views_lake, tmp_path):
    binary = shutil.which("duckdb")
    if binary is None:
        pytest.skip("no `duckdb` binary on PATH: only the duckdb CLI shell sub-check is skipped "
                    "(test_init_script_in_fresh_duckdb ran the script in Python DuckDB)")
    script = tmp_path / "init.sql"
    script.write_text(duckdb_init_sql(views_lake, use_delta_extension=False), encoding="utf-8")
    expected = _table_counts(lambda q: views_lake.sql(q).fetchall())
    out = subprocess.run(
        [binary, "-init", str(script), "-csv", "-noheader", "-c",
         "select count(*) from events; select count(*) from totals;"],
        capture_output=True, text=True, timeout=120, check=True)
    numbers = [line for line in out.stdout.split() if line.isdigit()]
    assert numbers == [str(expected["events"]), str(expected["totals"])]


def test_init_script_with_delta_extension(views_lake):
    script = init_script(views_lake, use_delta_extension=True)
    assert script.uses_delta_extension
    text = script.sql
    assert "LOAD delta;" in text
    assert f"delta_scan('{views_lake.root}/events')" in text
    assert 'WHERE "generation" = ' in text
    assert "read_parquet" not in text
    if not delta_extension_available():
        return  # cannot run it here; the fallback is covered above
    con = duckdb.connect()
    con.execute(text)
    assert _table_counts(lambda q: con.sql(q).fetchall()) == _table_counts(
        lambda q: views_lake.sql(q).fetchall())


def test_init_script_auto_detects_extension(views_lake):
    script = init_script(views_lake)
    assert script.uses_delta_extension == delta_extension_available()


# -- d: hostile names and values ----------------------------------------------------------------

HOSTILE = ["it's", '"; drop table x; --', "100%", "a=b", "ünïcødé 😀", "with space",
           "semi;colon", "back`tick", "a*b?[c]", "x%2Fy", "--comment", "$1"]


def test_hostile_partitions_round_trip(tmp_path, monkeypatch):
    outside = tmp_path / "outside"
    outside.mkdir()
    monkeypatch.chdir(outside)  # anything written to a relative path would land here
    # deltalake itself cannot use a root holding '%' or '[' (reported); quotes and spaces work
    root = tmp_path / "it's a lake; ü"
    lake = el.Lake.open(root, views=VIEWS)
    events = [{"type": "deposit", "partition": p,
               "payload": {"amount": i + 1, "currency": "EUR", "n": i}}
              for i, p in enumerate(HOSTILE)]
    events += [{"type": "set", "partition": p, "payload": {"target": "name", "value": p}}
               for p in HOSTILE]
    lake.append(events)
    lake.materialize()
    want = {p: (2, float(i + 1)) for i, p in enumerate(HOSTILE)}
    got = {p: (n, a) for p, n, a in lake.sql(AMOUNT_SQL).fetchall()}
    assert got == want
    for partition in HOSTILE:
        row = lake.sql("select state->>'$.name' from document where partition_id = $1",
                       params=[partition]).fetchall()
        assert row == [(partition,)]
        assert lake.sql("select count(*) from events where partition_id = $p",
                        params={"p": partition}).fetchall()[0] == (2,)
    assert_sql_matches_polars(lake)
    con = duckdb.connect()
    con.execute(duckdb_init_sql(lake, use_delta_extension=False))
    assert {p: (n, a) for p, n, a in con.sql(AMOUNT_SQL).fetchall()} == want
    assert sorted(r[0] for r in con.sql("select partition_id from balances").fetchall()) == \
        sorted(HOSTILE)
    # Nothing was written outside the lake root, and no table named x went anywhere.
    for path in tmp_path.rglob("*"):
        assert path in (root, outside) or root in path.parents, path
    assert not any(outside.iterdir())


@pytest.mark.parametrize("name", ['x"; drop', "../evil", "a b", "x'y", "", "1abc", "é"])
def test_hostile_view_names_are_rejected(tmp_path, name):
    with pytest.raises(ViewDefinitionError):
        AggregateView(name=name, version=1, aggregates={"n": "count"})
    with pytest.raises(ViewDefinitionError):
        ReducerView(name=name, version=1, initial_state=dict, reduce=lambda s, e: s)
    lake = el.Lake.open(tmp_path / "lake")
    with pytest.raises(UnknownViewError):
        lake.scan(name)
    with pytest.raises(UnknownViewError):
        lake.state("p", view=name)
    with pytest.raises(UnknownViewError):
        snapshot_sources(lake, [name])
    assert not (tmp_path / "evil").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lake"]


def test_unknown_table_in_sql_is_a_catalog_error(tmp_path):
    lake = el.Lake.open(tmp_path / "lake")
    with pytest.raises(duckdb.CatalogException):
        lake.sql('select * from "x""; drop"').fetchall()
    assert lake.sql("select count(*) from events").fetchall()[0] == (0,)


@pytest.mark.parametrize("text", [*HOSTILE, "'", "''", '"', "\\", "\n--\n", "é'\"é"])
def test_quoting_round_trips(text):
    con = duckdb.connect()
    assert con.sql(f"select {quote_literal(text)} as v").fetchall()[0] == (text,)
    con.execute(f"create table {quote_identifier(text)} (v int)")
    con.execute(f"insert into {quote_identifier(text)} values (1)")
    assert con.sql(f"select v from {quote_identifier(text)}").fetchall()[0] == (1,)
    with pytest.raises(ValueError):
        quote_literal("a\x00b")


def test_generated_sql_quotes_every_path(tmp_path):
    root = tmp_path / "o'brien"
    lake = el.Lake.open(root)
    lake.append([{"type": "t", "partition": "p'q", "payload": {}}])
    text = duckdb_init_sql(lake, use_delta_extension=False)
    assert "o''brien" in text
    if lake.layout.kind == "partition_id":
        # The partition is a literal beside its files (a bucketed log's files hold it).
        assert "'p''q'" in text
    con = duckdb.connect()
    con.execute(text)
    assert con.sql("select partition_id from events").fetchall() == [("p'q",)]
    assert "o'brien/" not in text.replace("o''brien", "")
    delta = duckdb_init_sql(lake, use_delta_extension=True)
    assert f"delta_scan('{os.fspath(root).replace(chr(39), chr(39) * 2)}/events')" in delta
    # Comment lines stay comments even for a root holding a line break (deltalake refuses
    # such roots today, but the script must not depend on that).
    from eventlake.query.sql import _comment

    assert _comment("line\nbreak; drop\r\x00x") == "line?break; drop??x"
