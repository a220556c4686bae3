"""SQL views refreshed by the engine: after every refresh each one equals DuckDB running the
same SELECT over the whole `events` table (issue 17, acceptance 1), on both log layouts."""

from __future__ import annotations

import math
import tempfile
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventlake as el
import eventlake.engine.materialize as materialize
import eventlake.engine.sqlrefresh as sqlrefresh
from eventlake.config import load_views, open_lake
from eventlake.ops.verify import verify_view

MERGED = el.SqlView(name="totals_sql", version=1, sql="""
    select partition_id, type, count(*) as n, sum((payload->>'$.amount')::bigint) as total,
           min((payload->>'$.amount')::bigint) as low, max((payload->>'$.amount')::bigint) as high,
           avg((payload->>'$.amount')::bigint) as mean, count(payload->>'$.amount') as priced,
           arg_min(payload->>'$.memo', seq) as first_memo,
           arg_max((payload->>'$.amount')::bigint, seq) as last_amount
    from events where type in ('deposit', 'withdrawal') group by partition_id, type""")
BY_CURRENCY = el.SqlView(name="by_currency", version=1, sql="""
    select partition_id, payload->>'$.currency' as currency, count(*) as n,
           sum((payload->>'$.amount')::double) as total
    from events group by partition_id, payload->>'$.currency'""")
RECOMPUTED = el.SqlView(name="spread_sql", version=1, sql="""
    select partition_id, type, count(*) as n,
           median((payload->>'$.amount')::bigint) as med,
           count(distinct payload->>'$.currency') as currencies,
           max(seq) - min(seq) as span, max(ts) as last_at,
           string_agg(payload->>'$.memo', ',' order by seq) as memos,
           rank() over (partition by partition_id order by count(*) desc, type) as rank
    from events group by partition_id, type having count(*) >= 1""")
VIEWS = [MERGED, BY_CURRENCY, RECOMPUTED]
PARTITIONS = ["a", "b", "c", "d-1", "e e"]


def test_strategies():
    assert [v.strategy for v in VIEWS] == ["merge", "merge", "recompute-touched"]


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-12,
                                                                abs_tol=1e-12)
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        return a is not None and b is not None and Decimal(a) == Decimal(b)
    return bool(a == b)


def keyed(view: el.SqlView, frame: pl.DataFrame) -> dict[tuple, dict]:
    keys = ["partition_id", *view.group_columns]
    rows = {tuple(r[k] for k in keys): r for r in frame.select(view.columns).iter_rows(
        named=True)}
    assert len(rows) == frame.height, "one row per partition and group"
    return rows


def assert_equal_rows(view: el.SqlView, got: pl.DataFrame, want: pl.DataFrame) -> None:
    stored, expected = keyed(view, got), keyed(view, want)
    assert stored.keys() == expected.keys()
    for key, row in expected.items():
        for column, value in row.items():
            assert _same(stored[key][column], value), (view.name, key, column,
                                                       stored[key][column], value)


def assert_views_equal_duckdb(lake: el.Lake) -> None:
    for view in VIEWS:
        # The reference: DuckDB running the view's own SELECT over the whole `events` table.
        want = lake.sql(view.sql).pl()
        assert_equal_rows(view, lake.scan(view.name).collect(), want)
        assert_equal_rows(view, lake.sql(f"select * from {view.name}").pl(), want)
        report = verify_view(lake, view)
        assert report.ok, report.differences


@st.composite
def streams(draw):
    batches = []
    for _ in range(draw(st.integers(1, 5))):
        batch = []
        for _ in range(draw(st.integers(1, 12))):
            payload: dict = {}
            if draw(st.integers(0, 5)):
                payload["amount"] = draw(st.one_of(st.integers(-10**6, 10**6),
                                                   st.integers(-2**62, 2**62), st.none()))
            if draw(st.booleans()):
                payload["currency"] = draw(st.sampled_from(["EUR", "USD", "CHF"]))
            if draw(st.booleans()):
                payload["memo"] = draw(st.text("xyz,", max_size=3))
            batch.append({"type": draw(st.sampled_from(["deposit", "withdrawal", "note"])),
                          "payload": payload, "partition": draw(st.sampled_from(PARTITIONS))})
        batches.append((batch, draw(st.booleans())))
    return batches


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(batches=streams(), chunk=st.sampled_from([None, 3, 20]))
def test_sql_views_equal_the_select_over_all_events(batches, chunk):
    lake = el.Lake.open(Path(tempfile.mkdtemp()) / "lake", views=VIEWS)
    for batch, refresh in batches:
        lake.append(batch)
        head = lake.last_seq()
        # lake.state is exact whether or not materialize ran since the append.
        for view in (MERGED, RECOMPUTED):
            want = lake.sql(view.sql).pl()
            for partition in PARTITIONS[:2]:
                state = lake.state(partition, view=view.name)
                expected = want.filter(pl.col("partition_id") == partition)
                assert_equal_rows(view, pl.DataFrame(
                    [{"partition_id": partition, **r} for r in state],
                    schema=expected.schema) if state else expected.clear(), expected)
        if refresh:
            lake.materialize(chunk_events=chunk)
            assert_views_exact_at(lake, head)
    lake.materialize(chunk_events=chunk)
    assert_views_equal_duckdb(lake)
    # A rebuild (version bump) from the whole log gives the same rows.
    bumped = el.SqlView(name=RECOMPUTED.name, version=2, sql=RECOMPUTED.sql)
    again = el.Lake.open(lake.root, views=[MERGED, BY_CURRENCY, bumped])
    again.materialize(chunk_events=chunk)
    assert_equal_rows(bumped, again.scan(bumped.name).collect(), again.sql(bumped.sql).pl())


def assert_views_exact_at(lake: el.Lake, head: int) -> None:
    for view in VIEWS:
        assert lake.materialize([view.name])[view.name].new_watermark == head
    assert_views_equal_duckdb(lake)


def test_recompute_reads_only_the_touched_partitions_history(lake_path, monkeypatch):
    lake = el.Lake.open(lake_path, views=[RECOMPUTED])
    lake.append([{"type": "deposit", "payload": {"amount": i}, "partition": f"p{i % 10}"}
                 for i in range(100)])
    lake.materialize()
    reads: list[tuple] = []
    real = materialize.read_events

    def recording(lake_, partitions=None, **kwargs):
        reads.append((None if partitions is None else sorted(partitions),
                      kwargs.get("since_seq")))
        return real(lake_, partitions, **kwargs)

    monkeypatch.setattr(materialize, "read_events", recording)
    monkeypatch.setattr(sqlrefresh, "read_events", recording)
    lake.append([{"type": "withdrawal", "payload": {"amount": 5}, "partition": "p3"},
                 {"type": "deposit", "payload": {"amount": 6}, "partition": "p7"}])
    result = lake.materialize()[RECOMPUTED.name]
    # The new events (seq above the watermark), then the touched partitions' whole history.
    assert reads == [(None, 100), (["p3", "p7"], None)]
    assert (result.events, result.partitions) == (2, 2)
    assert_equal_rows(RECOMPUTED, lake.scan(RECOMPUTED.name).collect(),
                      lake.sql(RECOMPUTED.sql).pl())


def test_a_select_that_fails_on_the_data_commits_nothing(lake_path):
    strict = el.SqlView(name="strict", version=1, sql="""
        select partition_id, median((payload->>'$.amount')::bigint) as med
        from events group by partition_id""")
    lake = el.Lake.open(lake_path, views=[strict])
    lake.append([{"type": "deposit", "payload": {"amount": 5}, "partition": "a"}])
    lake.materialize()
    lake.append([{"type": "deposit", "payload": {"amount": "lots"}, "partition": "a"}])
    with pytest.raises(el.MaterializeError) as caught:
        lake.materialize()
    error = caught.value.failures["strict"]
    assert isinstance(error, el.SqlViewError) and "lots" in str(error)
    assert lake.scan("strict").collect().select("partition_id", "med").rows() == [("a", 5.0)]
    assert lake.materialize(["document"])  # the other views still refresh


def test_sql_files_in_a_folder_are_views(tmp_path, lake_path):
    folder = tmp_path / "views"
    folder.mkdir()
    (folder / "spread_sql.sql").write_text(f"-- Spread per type.\n-- version: 1\n"
                                           f"{RECOMPUTED.sql}\n")
    (folder / "totals_sql.sql").write_text(f"-- version: 1\n{MERGED.sql}\n")
    loaded = load_views(str(folder))
    assert [(v.name, v.strategy) for v in loaded] == [  # type: ignore[union-attr]
        ("spread_sql", "recompute-touched"), ("totals_sql", "merge")]
    lake = open_lake(lake_path, views=str(folder))
    lake.append([{"type": "deposit", "payload": {"amount": 3, "memo": "m"}, "partition": "a"}])
    lake.materialize()
    assert lake.state("a", view="totals_sql") == [
        {"type": "deposit", "n": 1, "total": 3, "low": 3, "high": 3, "mean": 3.0, "priced": 1,
         "first_memo": "m", "last_amount": 3}]
    assert lake.state("a", view="spread_sql", as_of_seq=0) == []


def test_views_command_shows_the_strategy(tmp_path, lake_path, capsys, monkeypatch):
    import json

    from eventlake.cli import main

    folder = tmp_path / "views"
    folder.mkdir()
    (folder / "totals_sql.sql").write_text(f"-- version: 1\n{MERGED.sql}\n")
    (folder / "spread_sql.sql").write_text(f"-- version: 1\n{RECOMPUTED.sql}\n")
    args = ["--lake", str(lake_path), "--views", str(folder)]
    el.Lake.open(lake_path).append([{"type": "deposit", "payload": {}, "partition": "a"}])
    assert main(["views", *args, "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["views"]}
    assert (rows["totals_sql"]["strategy"], rows["spread_sql"]["strategy"]) == (
        "merge", "recompute-touched")
    assert "strategy" not in rows["document"]
    monkeypatch.setenv("COLUMNS", "200")  # the table at full width
    assert main(["views", *args]) == 0
    assert "sql (recompute-touched)" in capsys.readouterr().out


def test_duckdb_init_file_defines_sql_views(lake_path):
    import duckdb

    from eventlake.query.sql import duckdb_init_sql

    lake = el.Lake.open(lake_path, views=[MERGED, RECOMPUTED])
    lake.append([{"type": "deposit", "payload": {"amount": 4}, "partition": "a"}])
    lake.materialize()
    con = duckdb.connect()
    con.execute(duckdb_init_sql(lake))
    assert con.sql("select partition_id, n, total from totals_sql").fetchall() == [("a", 1, 4)]
    assert con.sql("select partition_id, med from spread_sql").fetchall() == [("a", 4.0)]


def test_sample_sql_views_over_the_sample_inbox(tmp_path):
    from eventlake.cli import main
    from tests.samples import SAMPLES

    lake_dir = tmp_path / "lake"
    folder = SAMPLES / "sql_views"
    assert main(["ingest", str(SAMPLES), "--lake", str(lake_dir)]) == 0
    lake = open_lake(lake_dir, views=str(folder))
    views = [v for v in lake.views.values() if isinstance(v, el.SqlView)]
    assert sorted((v.name, v.strategy) for v in views) == [
        ("account_activity", "recompute-touched"), ("account_totals", "merge")]
    lake.materialize()
    for view in views:
        assert lake.scan(view.name).collect().height > 0
        assert_equal_rows(view, lake.scan(view.name).collect(), lake.sql(view.sql).pl())


def test_verify_reports_where_a_merge_view_and_duckdb_part(lake_path):
    # 2.5 under ::BIGINT: DuckDB rounds it to 3, an AggregateView fails the partition (README
    # "Views in SQL"); verify compares with the SELECT itself, so it names that partition.
    lake = el.Lake.open(lake_path, views=[MERGED])
    lake.append([{"type": "deposit", "payload": {"amount": 2}, "partition": "fine"},
                 {"type": "deposit", "payload": {"amount": 2.5}, "partition": "odd"}])
    lake.materialize()
    assert [f.partition for f in lake.failed_partitions(MERGED.name)] == ["odd"]
    report = verify_view(lake, MERGED)
    assert {d.partition for d in report.differences} == {"odd"}
    assert lake.sql(f"select total from ({MERGED.sql}) where partition_id = 'odd'"
                    ).fetchall() == [(3,)]


def test_recompute_reads_history_in_groups_of_a_chunk(lake_path, monkeypatch):
    lake = el.Lake.open(lake_path, views=[RECOMPUTED])
    lake.append([{"type": "deposit", "payload": {"amount": i}, "partition": f"p{i % 6}"}
                 for i in range(60)])
    lake.materialize()
    groups: list[list[str]] = []
    real = sqlrefresh.read_events

    def recording(lake_, partitions=None, **kwargs):
        groups.append(sorted(partitions))
        return real(lake_, partitions, **kwargs)

    monkeypatch.setattr(sqlrefresh, "read_events", recording)
    lake.append([{"type": "withdrawal", "payload": {"amount": 1}, "partition": f"p{i}"}
                 for i in range(6)])
    lake.materialize(chunk_events=25)  # 11 events of history each: two partitions a group
    assert sorted(p for g in groups for p in g) == [f"p{i}" for i in range(6)]
    assert max(len(g) for g in groups) == 2
    assert_equal_rows(RECOMPUTED, lake.scan(RECOMPUTED.name).collect(),
                      lake.sql(RECOMPUTED.sql).pl())


def test_a_changed_query_needs_a_version_bump(lake_path):
    lake = el.Lake.open(lake_path, views=[MERGED])
    lake.append([{"type": "deposit", "payload": {"amount": 1}, "partition": "a"}])
    lake.materialize()
    changed = el.SqlView(name=MERGED.name, version=1,
                         sql=MERGED.sql.replace("'withdrawal'", "'refund'"))
    with pytest.raises(el.MaterializeError) as caught:
        el.Lake.open(lake_path, views=[changed]).materialize()
    assert isinstance(caught.value.failures[MERGED.name], el.ViewChangedError)
    # Reformatted, it is the same view: nothing to refuse.
    same = el.SqlView(name=MERGED.name, version=1, sql="-- reformatted\n" + " ".join(
        MERGED.sql.split()))
    assert el.Lake.open(lake_path, views=[same]).materialize()[MERGED.name].events == 0
    bumped = el.SqlView(name=MERGED.name, version=2, sql=changed.sql)
    assert el.Lake.open(lake_path, views=[bumped]).materialize()[MERGED.name].rebuilt
