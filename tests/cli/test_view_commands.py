"""CLI end to end: materialize, state, views, verify, sql, duckdb on a lake of the samples."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest

import eventlake as el
from eventlake.cli import main
from eventlake.store.viewstore import ViewStore, bucket_of

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data" / "samples"

VIEWS_MODULE = '''
from eventlake.views import Agg, AggregateView, ReducerView


def _balance(state, event):
    amount = event["payload"].get("amount", 0)
    if event["type"] == "deposit":
        return {"balance": state["balance"] + amount}
    if event["type"] == "withdrawal":
        return {"balance": state["balance"] - amount}
    return state


balances = ReducerView(name="balances", version=1, initial_state=lambda: {"balance": 0},
                       reduce=_balance)
money = AggregateView(name="money", version=1, group_by=["type", "currency"],
                      where=["deposit", "withdrawal"],
                      aggregates={"n": "count", "total": Agg("sum", "amount")})
'''

FAILING_VIEWS = '''
from eventlake.views import ReducerView


def _boom(state, event):
    if event["partition"] == "acct-007":
        raise RuntimeError("no account 7 here")
    return state


fragile = ReducerView(name="fragile", version=1, initial_state=dict, reduce=_boom)
'''


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def sample_lake(tmp_path, capsys):
    views = tmp_path / "myviews.py"
    views.write_text(VIEWS_MODULE, encoding="utf-8")
    lake = tmp_path / "lake"
    code, _, err = run(capsys, "--lake", lake, "--views", views, "ingest", SAMPLES)
    assert code == 0, err
    return lake, views


def _open(lake: Path, views: Path) -> el.Lake:
    from eventlake.config import open_lake

    return open_lake(str(lake), str(views), create=False)


def test_materialize_views_state_verify(sample_lake, capsys):
    lake, views = sample_lake
    common = ["--lake", lake, "--views", views]
    code, out, _ = run(capsys, *common, "views", "--json")
    assert code == 0
    listed = json.loads(out)
    assert [v["name"] for v in listed["views"]] == ["document", "balances", "money"]
    assert all(v["lag"] == 1778 and v["status"] == "not built" for v in listed["views"])

    code, out, err = run(capsys, *common, "materialize")
    assert code == 0, err
    for header in ["partitions", "events folded", "watermark", "seconds", "rebuilt"]:
        assert header in out
    assert "0 → 1,778" in out and "balances" in out and "money" in out

    code, out, _ = run(capsys, *common, "--json", "materialize")
    report = json.loads(out)
    assert report["failures"] == {}
    assert {v["view"]: (v["old_watermark"], v["new_watermark"], v["events"], v["rebuilt"])
            for v in report["views"]} == {name: (1778, 1778, 0, False)
                                          for name in ["document", "balances", "money"]}

    code, out, _ = run(capsys, *common, "views", "--json")
    listed = {v["name"]: v for v in json.loads(out)["views"]}
    assert listed["document"] | {"table_version": None} == {
        "name": "document", "kind": "reducer", "version": 3, "status": "ok",
        "table_version": None, "watermark": 1778, "lag": 0, "rows": 46, "partitions": 46,
        "failed": 0, "failed_partitions": [], "error": None}
    assert listed["money"]["kind"] == "aggregate"
    assert listed["money"]["partitions"] == 40
    assert listed["money"]["rows"] > 40
    code, out, _ = run(capsys, *common, "views")
    assert code == 0 and "watermark" in out and "money" in out and "aggregate" in out

    opened = _open(lake, views)
    code, out, _ = run(capsys, *common, "state", "workspace-1")
    assert code == 0
    assert json.loads(out) == opened.state("workspace-1")
    assert "\n  " not in out.strip()  # one line when piped
    code, out, _ = run(capsys, *common, "state", "acct-003", "--view", "balances",
                       "--as-of", 600)
    assert json.loads(out) == opened.state("acct-003", view="balances", as_of_seq=600)
    code, out, _ = run(capsys, *common, "--json", "state", "acct-003", "--view", "balances")
    assert json.loads(out)["state"] == opened.state("acct-003", view="balances")
    code, _, err = run(capsys, *common, "state", "acct-003", "--view", "../evil")
    assert code == 1 and "no view named '../evil'" in err
    # An aggregate view's state is the partition's rows, one per group, exact integers.
    code, out, _ = run(capsys, *common, "state", "acct-003", "--view", "money")
    assert code == 0
    rows = json.loads(out)
    assert rows == opened.state("acct-003", view="money")
    want = opened.sql("select type, currency, n, total from money where partition_id = "
                      "'acct-003' order by type, currency").fetchall()
    assert [(r["type"], r["currency"], r["n"], r["total"]) for r in rows] == want
    assert all(isinstance(r["total"], int) for r in rows)

    code, out, _ = run(capsys, *common, "verify")
    assert code == 0
    assert "document: ok" in out and "money: ok" in out
    code, out, _ = run(capsys, *common, "verify", "--json", "--sample", 5, "--seed", 1)
    assert code == 0
    assert all(v["ok"] and v["partitions_checked"] == 5 for v in json.loads(out)["views"])


def _corrupt(lake: el.Lake, view_name: str, victim: str) -> None:
    store = ViewStore(lake.storage, lake.view(view_name))
    snap = store.snapshot()
    marks = store.marks(snap)
    bucket = bucket_of(victim, store.buckets(snap))
    rows = store.read_buckets(snap, [bucket], generation=marks.active)
    state = json.loads(rows.filter(pl.col("partition_id") == victim)["state"][0])
    state["balance"] += 1
    rows = rows.with_columns(
        pl.when(pl.col("partition_id") == victim).then(pl.lit(json.dumps(state)))
        .otherwise(pl.col("state")).alias("state"))
    store.commit_buckets(snap, rows, buckets=[bucket], generation=marks.active, marks={})


def test_verify_exit_code_3_on_corruption(sample_lake, capsys):
    lake, views = sample_lake
    common = ["--lake", lake, "--views", views]
    assert run(capsys, *common, "materialize")[0] == 0
    assert run(capsys, *common, "verify")[0] == 0
    _corrupt(_open(lake, views), "balances", "acct-011")
    code, out, err = run(capsys, *common, "verify")
    assert code == 3
    assert "balances: 1 difference" in out
    assert "'acct-011'" in out and "state.balance" in out
    assert "document: ok" in out
    assert "verify failed" in err
    code, out, _ = run(capsys, *common, "--json", "verify", "--view", "balances")
    assert code == 3
    report = json.loads(out)
    assert not report["ok"]
    [difference] = report["views"][0]["differences"]
    assert difference["partition"] == "acct-011" and difference["field"] == "state.balance"
    assert difference["stored"]["balance"] == difference["expected"]["balance"] + 1
    # A rebuild repairs it.
    assert run(capsys, *common, "materialize", "--view", "balances", "--rebuild")[0] == 0
    assert run(capsys, *common, "verify", "--view", "balances")[0] == 0


def test_materialize_with_a_failed_partition_commits_the_rest_and_exits_4(
        tmp_path, sample_lake, capsys):
    lake, _ = sample_lake
    fragile = tmp_path / "fragile.py"
    fragile.write_text(FAILING_VIEWS, encoding="utf-8")
    common = ["--lake", lake, "--views", fragile]
    code, out, err = run(capsys, *common, "--json", "materialize")
    assert code == 4, err
    report = json.loads(out)
    assert [v["view"] for v in report["views"]] == ["document", "fragile"]
    assert report["failures"] == {}
    [failure] = report["failed_partitions"]["fragile"]
    assert failure["partition"] == "acct-007" and failure["error"] == (
        "RuntimeError: no account 7 here")
    assert report["views"][1]["newly_failed"] == ["acct-007"]
    assert report["views"][1]["new_watermark"] == 1778
    # Every other partition is current.
    opened = _open(lake, fragile)
    rows = opened.scan("fragile").collect()
    assert rows.filter(pl.col("failure").is_null()).height == rows.height - 1 == 45
    code, out, err = run(capsys, *common, "materialize", "--chunk-events", 100)
    assert code == 4
    assert "document" in out and "fragile" in out
    [line] = err.splitlines()
    assert line.startswith("warning: view 'fragile': 1 failed partition: 'acct-007' at seq ")
    assert "no account 7 here" in line and "--retry-failed" in line
    code, out, err = run(capsys, *common, "--json", "views")
    listed = {v["name"]: v for v in json.loads(out)["views"]}
    assert code == 0
    assert (listed["fragile"]["failed"], listed["fragile"]["failed_partitions"]) == (
        1, ["acct-007"])
    assert listed["fragile"]["status"] == "ok, 1 partition failed"
    code, out, err = run(capsys, *common, "views")
    assert code == 0 and "fragile: failed partitions 'acct-007'" in out
    code, _, err = run(capsys, *common, "state", "acct-007", "--view", "fragile")
    assert code == 1
    assert "'acct-007'" in err and f"seq {failure['seq']}" in err and "--retry-failed" in err
    # A retry while the error persists fails it again at the same event.
    code, out, err = run(capsys, *common, "--json", "materialize", "--retry-failed")
    assert code == 4
    assert json.loads(out)["failed_partitions"]["fragile"][0]["seq"] == failure["seq"]
    code, _, err = run(capsys, "--lake", lake, "materialize", "--view", "nope")
    assert code == 1 and "no view named 'nope'" in err


FIXED_VIEWS = FAILING_VIEWS.replace('raise RuntimeError("no account 7 here")',
                                    'return {"seven": True}')


def test_a_changed_view_is_refused_by_every_command_until_accepted(tmp_path, sample_lake,
                                                                   capsys):
    lake, _ = sample_lake
    fragile = tmp_path / "fragile.py"
    fragile.write_text(FAILING_VIEWS, encoding="utf-8")
    common = ["--lake", lake, "--views", fragile]
    assert run(capsys, *common, "materialize")[0] == 4
    before = _open(lake, fragile).scan("fragile").collect().drop("updated_at")
    # The reducer is fixed but the version stays 1: every command that reads it refuses.
    fragile.write_text(FIXED_VIEWS, encoding="utf-8")
    message = ("view 'fragile' changed since it was built at version 1: bump its version to "
               "rebuild, or pass --accept-changed-definition")
    for argv in (["materialize"], ["materialize", "--retry-failed"],
                 ["state", "acct-001", "--view", "fragile"],
                 ["sql", "select count(*) from fragile"], ["views"], ["verify"]):
        code, _, err = run(capsys, *common, *argv)
        assert code == 1, argv
        assert message in err, (argv, err)
    assert run(capsys, *common, "sql", "select count(*) from events")[0] == 0
    opened = el.Lake.open(lake, views=[])  # the table as stored, read without the check
    from eventlake.store.viewstore import ViewStore

    store = ViewStore(opened.storage, _open(lake, fragile).view("fragile"))
    assert store.scan_logical().collect().drop("updated_at").equals(before)
    # Accept the new definition and retry the failed partition: everything is current.
    code, out, err = run(capsys, *common, "--json", "materialize", "--retry-failed",
                         "--accept-changed-definition")
    assert code == 0, err
    report = json.loads(out)
    assert report["failed_partitions"] == {}
    assert report["views"][1]["recovered"] == ["acct-007"]
    code, out, _ = run(capsys, *common, "state", "acct-007", "--view", "fragile")
    assert code == 0 and json.loads(out) == {"seven": True}
    assert run(capsys, *common, "views")[0] == 0
    assert run(capsys, *common, "verify")[0] == 0


def test_sql_formats(sample_lake, capsys, tmp_path, monkeypatch):
    lake, views = sample_lake
    common = ["--lake", lake, "--views", views]
    assert run(capsys, *common, "materialize")[0] == 0
    query = ("select partition_id, count(*) as n, sum(cast(payload->>'$.amount' as bigint)) "
             "as amount from events where partition_id like 'acct-%' group by 1 order by 1")
    expected = _open(lake, views).sql(query).fetchall()

    code, out, _ = run(capsys, *common, "sql", query)  # piped: CSV
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["partition_id", "n", "amount"]
    assert [(p, int(n), int(a)) for p, n, a in rows[1:]] == expected

    code, out, _ = run(capsys, *common, "sql", query, "--format", "json")
    assert [tuple(json.loads(line).values()) for line in out.splitlines()] == expected
    code, out, _ = run(capsys, *common, "--json", "sql", query)
    assert [tuple(json.loads(line).values()) for line in out.splitlines()] == expected

    target = tmp_path / "out.parquet"
    code, out, err = run(capsys, *common, "sql", query, "--output", target)
    assert code == 0 and "wrote 40 rows" in err
    assert [tuple(r.values()) for r in pq.read_table(target).to_pylist()] == expected
    code, out, _ = run(capsys, *common, "--json", "sql", query, "-o", tmp_path / "o.jsonl")
    assert json.loads(out) == {"output": str(tmp_path / "o.jsonl"), "format": "json",
                               "rows": 40}
    code, _, err = run(capsys, *common, "sql", query, "--format", "parquet")
    assert code == 1 and "--output" in err
    code, _, err = run(capsys, *common, "sql", "select * from nowhere")
    assert code == 1 and err.startswith("error: SQL failed") and "nowhere" in err
    assert len(err.strip().splitlines()) == 1

    # On a terminal the default is a table.
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, out, _ = run(capsys, *common, "sql",
                       "select partition_id, state->>'$.balance' as b from balances "
                       "where partition_id = 'acct-001'")
    assert code == 0 and "partition_id" in out and "acct-001" in out and "1 row" in out


def test_duckdb_init_command(sample_lake, capsys, tmp_path):
    lake, views = sample_lake
    common = ["--lake", lake, "--views", views]
    assert run(capsys, *common, "materialize")[0] == 0
    code, out, _ = run(capsys, *common, "duckdb")
    assert code == 0
    script = lake / "duckdb-init.sql"
    assert script.is_file()
    assert f"duckdb -init {script}" in out
    assert "delta extension" in out
    con = duckdb.connect()
    con.execute(script.read_text(encoding="utf-8"))
    opened = _open(lake, views)
    for table in ["events", "document", "balances", "money"]:
        query = f"select count(*) from {table}"
        assert con.sql(query).fetchall() == opened.sql(query).fetchall()

    code, out, _ = run(capsys, *common, "duckdb", "--output", "-", "--no-delta-extension")
    assert code == 0 and out.startswith("-- eventlake") and "SNAPSHOT" in out
    code, out, _ = run(capsys, *common, "--json", "duckdb", "-o", tmp_path / "x.sql")
    info = json.loads(out)
    assert info["output"] == str(tmp_path / "x.sql")
    assert info["tables"] == ["events", "document", "balances", "money"]
    assert (tmp_path / "x.sql").read_text(encoding="utf-8").startswith("-- eventlake")


@pytest.mark.integration
def test_cli_subprocess(sample_lake):
    lake, views = sample_lake
    command = [sys.executable, "-m", "eventlake.cli", "--lake", str(lake), "--views",
               str(views)]
    done = subprocess.run([*command, "materialize", "--json"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert {v["view"] for v in json.loads(done.stdout)["views"]} == {"document", "balances",
                                                                     "money"}
    done = subprocess.run([*command, "sql", "select count(*) as n from money"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "n" and int(done.stdout.splitlines()[1]) > 40
    done = subprocess.run([*command, "verify"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_materialize_chunk_bytes_bounds_each_step(sample_lake, capsys):
    lake, views = sample_lake
    common = ["--lake", lake, "--views", views, "--json"]
    code, out, err = run(capsys, *common, "materialize", "--view", "balances")
    assert code == 0, err
    whole = json.loads(out)["views"][0]
    # A rebuild in steps of about 20 KB of events: more commits, the same rows.
    code, out, err = run(capsys, *common, "materialize", "--view", "balances", "--rebuild",
                         "--chunk-bytes", "20KB")
    assert code == 0, err
    stepped = json.loads(out)["views"][0]
    assert stepped["commits"] > whole["commits"]
    assert (stepped["events"], stepped["new_watermark"]) == (whole["events"], 1778)
    code, out, err = run(capsys, "--lake", lake, "--views", views, "verify", "--view",
                         "balances")
    assert code == 0, out + err
    for bad in ["0", "-5MB", "lots", "3XB"]:
        code, _, err = run(capsys, *common, "materialize", "--chunk-bytes", bad)
        assert code != 0 and "--chunk-bytes" in err, (bad, err)


@pytest.mark.parametrize(("text", "size"), [("256MB", 256 * 2**20), ("64m", 64 * 2**20),
                                            ("1G", 2**30), ("1.5KiB", 1536), ("4096", 4096)])
def test_chunk_bytes_sizes(text, size):
    from eventlake.cli.view_commands import _byte_size

    assert _byte_size(text) == size


@pytest.mark.integration
def test_materialize_workers_rebuilds_on_spawned_processes(sample_lake, capsys):
    """--workers: the views file is loaded by each worker process, the rebuild commits once
    and equals the one-process build."""
    lake, views = sample_lake
    common = ["--lake", lake, "--views", views, "--json"]
    code, out, err = run(capsys, *common, "materialize")
    assert code == 0, err
    opened = _open(lake, views)
    want = {name: opened.scan(name).collect().drop("updated_at").sort(pl.all())
            for name in opened.views}
    code, out, err = run(capsys, *common, "materialize", "--rebuild", "--workers", 2)
    assert code == 0, err
    report = {v["view"]: v for v in json.loads(out)["views"]}
    assert all(v["rebuilt"] and v["commits"] == 1 for v in report.values()), report
    opened = _open(lake, views)
    for name, rows in want.items():
        assert opened.scan(name).collect().drop("updated_at").sort(pl.all()).equals(rows)
