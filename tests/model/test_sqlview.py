"""SQL view definitions: DuckDB's parser decides what is refused and how a view refreshes."""

from __future__ import annotations

import pytest

import eventlake as el
from eventlake.model.sqlview import parse_sql_file
from eventlake.model.views import Agg, AggregateView, definition_fingerprint

pytestmark = pytest.mark.one_layout  # definitions only: no lake is opened

TOTALS = ("select partition_id, type, count(*) as n, sum((payload->>'$.amount')::bigint) as total,"
          " avg((payload->>'$.amount')::bigint) as mean, arg_max(payload->>'$.note', seq) as note"
          " from events where type in ('deposit','withdrawal') group by partition_id, type")


def make(sql: str) -> el.SqlView:
    return el.SqlView(name="v", version=1, sql=sql)


@pytest.mark.parametrize(("sql", "clause"), [
    # (4) of issue 17: each refusal names its clause.
    ("select partition_id, count(*) as n from events", "GROUP BY: the query is not grouped by "
     "partition_id"),
    ("select type, count(*) as n from events group by type", "GROUP BY: the query is not "
     "grouped by partition_id"),
    ("select partition_id, count(*) as n from events e join accounts a on e.partition_id = "
     "a.id group by partition_id", "FROM ... JOIN"),
    ("select partition_id, count(*) as n from events, accounts group by partition_id",
     "FROM ... JOIN"),
    ("select partition_id, count(*) as n from events group by partition_id; "
     "select partition_id, count(*) as n from events group by partition_id",
     "it is 2 statements"),
    ("create table totals as select partition_id, count(*) as n from events group by 1",
     "CREATE statement"),
    ("drop table events", "DROP statement"),
    ("insert into events select * from events", "INSERT statement"),
    ("select partition_id, count(*) as n from accounts group by partition_id", "FROM accounts"),
    ("select partition_id, count(*) as n from read_parquet('x.parquet') group by partition_id",
     "FROM <table function>"),
    ("select partition_id, count(*) as n from (select * from accounts) group by partition_id",
     "FROM (subquery)"),
    ("select partition_id, count(*) as n from events where seq > (select max(seq) from "
     "accounts) group by partition_id", "subquery"),
    ("with x as (select * from events) select partition_id, count(*) as n from x group by 1",
     "WITH clause"),
    ("select partition_id, count(*) as n from events group by partition_id union all "
     "select partition_id, count(*) as n from events group by partition_id", "SET OPERATION"),
    ("select partition_id, count(*) as n, rank() over (order by count(*)) as r from events "
     "group by partition_id", "window function rank"),
    ("select partition_id, count(*) as n from events group by rollup (partition_id)",
     "in every grouping set"),
    ("select partition_id, count(*) as n from events group by partition_id limit 5", "LIMIT"),
    ("select partition_id, count(*) as n from events group by partition_id, type",
     "group key type is not in the select list"),
    ("select partition_id, count(*) from events group by partition_id", "give it an alias"),
    ("select partition_id, count(*) as last_seq from events group by partition_id",
     "'last_seq'"),
    ("select partition_id, nope(seq) as n from events group by partition_id",
     "DuckDB cannot run it"),
    ("select partition_id, count(*) as n from events group by all", "GROUP BY ALL"),
    ("select partition_id, count(* as n from events group by partition_id", "does not parse"),
    ("select partition_id, sum(random()) as r from events group by partition_id", "random()"),
    ("select partition_id, max(ts) < now() as old from events group by partition_id", "now()"),
    ("select partition_id, max(ts)::date = current_date as today from events "
     "group by partition_id", "current_date()"),
])
def test_refused_sql_names_the_clause(sql, clause):
    with pytest.raises(el.ViewDefinitionError) as caught:
        make(sql)
    assert clause in str(caught.value)
    assert str(caught.value).startswith("view 'v': ")


def test_merge_view_compiles_to_the_aggregate_view_it_means():
    view = make(TOTALS)
    assert view.strategy == "merge" and view.strategy_reason == ""
    assert view.aggregate == AggregateView(
        name="v", version=1, group_by=["type"], where=["deposit", "withdrawal"],
        aggregates={"n": Agg("count"), "total": Agg("sum", "amount", dtype="decimal"),
                    "mean": Agg("avg", "amount", dtype="int64"),
                    "note": Agg("last", "note", dtype="string"),
                    # Counted so that a sum of no values reads NULL, as SQL's does.
                    "total__values": Agg("count", "amount")})
    assert view.sum_counts == {"total": "total__values"}
    assert view.columns == ("partition_id", "type", "n", "total", "mean", "note")
    assert view.group_columns == ("type",)
    assert view.kind == "sql"


@pytest.mark.parametrize(("sql", "reason"), [
    ("select partition_id, median((payload->>'$.amount')::bigint) as m from events "
     "group by partition_id", "median"),
    ("select partition_id, count(distinct payload->>'$.c') as d from events "
     "group by partition_id", "DISTINCT"),
    ("select partition_id, max(ts) as last_at from events group by partition_id", "last_at"),
    ("select partition_id, count(*) as n from events where seq > 3 group by partition_id",
     "WHERE"),
    ("select partition_id, count(*) as n from events group by partition_id having count(*) > 1",
     "HAVING"),
    ("select partition_id, count(*) + 1 as n from events group by partition_id", "expression"),
    ("select partition_id, sum(try_cast(payload->>'$.a' as bigint)) as s from events "
     "group by partition_id", "sum of something other"),
    ("select partition_id, upper(type) as t, count(*) as n from events "
     "group by partition_id, upper(type)", "group key 't'"),
])
def test_other_queries_are_recomputed_per_touched_partition(sql, reason):
    view = make(sql)
    assert view.strategy == "recompute-touched" and view.aggregate is None
    assert reason in view.strategy_reason


def test_windows_over_partitions_and_group_by_position_are_accepted():
    view = make("select partition_id, type, count(*) as n, rank() over (partition by "
                "partition_id order by count(*) desc) as r from events group by 1, 2")
    assert view.strategy == "recompute-touched"
    assert view.group_columns == ("type",)
    assert view.output_schema().field("r").type is not None


def test_payload_group_key_merges_when_named_after_its_path():
    view = make("select partition_id, payload->>'$.currency' as currency, "
                "min((payload->>'$.amount')::double) as low from events group by 1, 2")
    assert view.strategy == "merge"
    assert view.aggregate is not None and view.aggregate.group_by == ("payload.currency",)


def test_fingerprint_ignores_formatting_not_meaning():
    base = definition_fingerprint(make(TOTALS))
    spaced = TOTALS.replace(" from events", "\n  -- the log\n  FROM events")
    assert definition_fingerprint(make(spaced)) == base
    assert definition_fingerprint(make(TOTALS.replace("'withdrawal'", "'refund'"))) != base


def test_sql_file_header_gives_version_and_description():
    view = parse_sql_file("totals", f"-- Totals per account and type.\n-- version: 3\n{TOTALS}\n")
    assert (view.name, view.version, view.description) == (
        "totals", 3, "Totals per account and type.")
    with pytest.raises(el.ViewDefinitionError, match="version: 1"):
        parse_sql_file("totals", TOTALS)
    with pytest.raises(el.ViewDefinitionError, match="bad version header"):
        parse_sql_file("totals", f"-- version: two\n{TOTALS}")


def test_exported_under_both_names():
    import eventlake.views

    assert eventlake.views.SqlView is el.SqlView


def test_a_refresh_reads_the_event_columns_the_query_uses():
    assert make("select partition_id, max(ts) as t from events group by partition_id"
                ).reads == ("seq", "partition_id", "ts")
    # The table itself as a value (or any name that is not an event column): all of them.
    whole = make("select partition_id, count(distinct to_json(events)) as d from events "
                 "group by partition_id")
    assert whole.reads == ("seq", "partition_id", "type", "payload", "event_id", "ts",
                           "ingested_at", "batch_id")
