"""The change feed of views (eventlake/query/changes.py): exact, minimal, resumable.

Replaying the feed from version 0 onto an empty table must give the view as time travel shows
it at every version of its table; a refresh must report only rows of the partitions its batch
touched; a consumer's cursor resumes where it committed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventlake as el
from eventlake.cli import EXIT_OK, main
from eventlake.model.views import Agg, AggregateView, ReducerView
from eventlake.ops.maintenance import vacuum
from eventlake.store.viewstore import ViewStore


def _count(state, event):
    if event["type"] == "noop":
        return state  # folds the event (last_seq moves) without changing the state
    return {"n": state["n"] + 1, "last": event["payload"].get("v")}


COUNTS = ReducerView(name="counts", version=1, initial_state=lambda: {"n": 0, "last": None},
                     reduce=_count)
TOTALS = AggregateView(name="totals", version=1, group_by=["type"],
                       aggregates={"n": "count", "sum": Agg("sum", "v")})
VIEWS = [COUNTS, TOTALS]
KEYS = {"counts": ["partition_id"], "totals": ["partition_id", "type"],
        "document": ["partition_id"]}


@pytest.fixture(autouse=True)
def _outside_the_repository(tmp_path, monkeypatch):
    # The CLI would take the repository's pyproject.toml views; these lakes have their own.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EVENTLAKE_VIEWS", raising=False)


def replay(changes: pl.DataFrame, keys: list[str], table: dict | None = None) -> dict:
    """Apply changes to `table` (key -> row), checking each against what it holds."""
    table = {} if table is None else dict(table)
    for row in changes.iter_rows(named=True):
        key = tuple(row[k] for k in keys)
        if row["change"] == "reset":
            table = {}
        elif row["change"] == "insert":
            assert key not in table, (key, row)
            table[key] = row["after"]
        elif row["change"] == "update":
            assert table[key] == row["before"], (key, row)
            assert row["before"] != row["after"]
            table[key] = row["after"]
        else:
            assert row["change"] == "delete"
            assert table.pop(key) == row["before"], (key, row)
    return table


def as_table(frame: pl.DataFrame, keys: list[str]) -> dict:
    values = [c for c in frame.columns if c not in keys]
    return {tuple(r[k] for k in keys): {c: r[c] for c in values}
            for r in frame.iter_rows(named=True)}


def table_version(lake: el.Lake, name: str) -> int:
    store = ViewStore(lake.storage, lake.view(name))
    return store.snapshot().version if store.exists() else -1


batches = st.lists(
    st.tuples(
        st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d", "e", "f"]),
                           st.sampled_from(["inc", "noop", "other"]), st.integers(-5, 5)),
                 min_size=1, max_size=8),
        st.sampled_from(["none", "refresh", "refresh", "rebuild"])),
    min_size=1, max_size=6)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(plan=batches)
def test_replaying_the_feed_gives_the_view_at_every_version(tmp_path_factory, plan):
    lake = el.Lake.open(tmp_path_factory.mktemp("lake") / "lake", views=VIEWS)
    touched: set[str] = set()
    # Per view: (first, last) table versions of each plain refresh, with the partitions its
    # batch touched.
    refreshes: dict[str, list[tuple[int, int, set[str]]]] = {v.name: [] for v in VIEWS}
    for number, (events, step) in enumerate(plan):
        lake.append([{"type": t, "partition": p, "payload": {"v": v}} for p, t, v in events],
                    producer="t", batch_no=number)
        touched |= {p for p, _, _ in events}
        if step == "none":
            continue
        before = {v.name: table_version(lake, v.name) for v in VIEWS}
        lake.materialize(rebuild=step == "rebuild")
        for view in VIEWS:
            if step == "refresh" and before[view.name] >= 0:
                refreshes[view.name].append((before[view.name], table_version(lake, view.name),
                                             set(touched)))
        touched = set()
    for view in VIEWS:
        name, keys = view.name, KEYS[view.name]
        latest = table_version(lake, name)
        if latest < 0:
            continue
        feed = lake.changes(name).collect()
        assert set(feed["change"].unique()) <= {"insert", "update", "delete", "reset"}
        assert feed["version"].is_sorted()
        for version in range(latest + 1):
            want = as_table(lake.scan(name, as_of_version=version).collect(), keys)
            got = replay(feed.filter(pl.col("version") <= version), keys)
            assert got == want, (name, version)
            # Any range continues from the replay of the versions before it.
            upto = replay(feed.filter(pl.col("version") <= version // 2), keys)
            assert replay(lake.changes(name, version // 2, version).collect(), keys,
                          upto) == want
        for first, last, partitions in refreshes[name]:
            changed = lake.changes(name, first, last).collect()
            assert "reset" not in changed["change"].to_list()
            assert set(changed["partition_id"].to_list()) <= partitions, (name, partitions)


def test_an_unchanged_row_of_a_rewritten_bucket_is_not_reported(tmp_path):
    # One bucket: every refresh rewrites the one file that holds every partition.
    lake = el.Lake.open(tmp_path / "lake", views=[COUNTS])
    lake.append([{"type": "inc", "partition": p, "payload": {"v": 1}} for p in "abcdef"])
    lake.materialize()
    before = table_version(lake, "counts")
    lake.append([{"type": "inc", "partition": "c", "payload": {"v": 2}}])
    lake.materialize()
    changed = lake.changes("counts", before).collect()
    assert changed["partition_id"].to_list() == ["c"]
    assert changed["change"].to_list() == ["update"]
    [row] = changed.iter_rows(named=True)
    assert json.loads(row["before"]["state"]) == {"n": 1, "last": 1}
    assert json.loads(row["after"]["state"]) == {"n": 2, "last": 2}
    assert row["watermark"] == lake.last_seq() and row["view_version"] == 1


def test_a_rebuild_is_a_reset_then_inserts(tmp_path):
    lake = el.Lake.open(tmp_path / "lake", views=[COUNTS])
    lake.append([{"type": "inc", "partition": p, "payload": {"v": 1}} for p in "ab"])
    lake.materialize()
    before = table_version(lake, "counts")
    lake.materialize(rebuild=True)
    changed = lake.changes("counts", before).collect()
    assert changed["change"].to_list() == ["reset", "insert", "insert"]
    assert changed["partition_id"].to_list() == [None, "a", "b"]


def test_a_cursor_resumes_where_its_consumer_committed(tmp_path, capsys):
    lake = el.Lake.open(tmp_path / "lake", views=[COUNTS])
    lake.append([{"type": "inc", "partition": "a", "payload": {"v": 1}}])
    lake.materialize()
    first = lake.changes("counts", cursor="sink").collect()
    assert first["partition_id"].drop_nulls().to_list() == ["a"]
    lake.commit_cursor("counts", "sink", first["version"].max())
    assert lake.changes("counts", cursor="sink").collect().height == 0
    lake.append([{"type": "inc", "partition": "b", "payload": {"v": 1}}])
    lake.materialize()
    second = lake.changes("counts", cursor="sink").collect()
    assert second["partition_id"].to_list() == ["b"]
    assert lake.changes("counts", cursor="other").collect().height == first.height + 1
    with pytest.raises(el.InvalidArgumentError, match="at least the version"):
        lake.commit_cursor("counts", "sink", 0)
    with pytest.raises(el.InvalidArgumentError, match="cursor must be"):
        lake.changes("counts", cursor="../x")
    # The CLI: --cursor --commit takes the changes once.
    root = str(tmp_path / "lake")
    views = tmp_path / "views.py"
    views.write_text("from tests.query.test_changes import COUNTS\n", encoding="utf-8")
    argv = ["--lake", root, "--views", str(views), "--json", "changes", "counts",
            "--cursor", "cli", "--commit"]
    assert main(argv) == EXIT_OK
    taken = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["partition_id"] for r in taken if r["change"] != "reset"] == ["a", "b"]
    assert main(argv) == EXIT_OK
    assert capsys.readouterr().out == ""


def test_bad_ranges_and_vacuumed_history_are_clear_errors(tmp_path):
    lake = el.Lake.open(tmp_path / "lake", views=[COUNTS])
    with pytest.raises(el.UnknownViewError):
        lake.changes("nope")
    assert lake.changes("counts").collect().height == 0  # no table yet
    for round_ in range(3):
        lake.append([{"type": "inc", "partition": "a", "payload": {"v": round_}}])
        lake.materialize()
    latest = table_version(lake, "counts")
    with pytest.raises(el.InvalidArgumentError, match="until_version must be"):
        lake.changes("counts", 0, latest + 1)
    with pytest.raises(el.InvalidArgumentError, match="since_version must be at most"):
        lake.changes("counts", latest, latest - 1)
    vacuum(lake, retention_hours=0, dry_run=False)
    with pytest.raises(el.ChangesUnavailableError, match="removed by vacuum"):
        lake.changes("counts").collect()
    with pytest.raises(el.ChangesUnavailableError, match="removed by vacuum"):
        lake.changes("counts", latest - 1).collect()  # the rows before it were vacuumed
    # What came after the vacuum reads as ever: its files are the live ones.
    lake.append([{"type": "inc", "partition": "a", "payload": {"v": 9}}])
    lake.materialize()
    [row] = lake.changes("counts", latest).collect().iter_rows(named=True)
    assert (row["partition_id"], row["change"]) == ("a", "update")
    assert json.loads(row["after"]["state"]) == {"n": 4, "last": 9}


def _rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return list(frame.iter_rows(named=True))


def test_the_cli_lists_changes_as_json_and_csv(tmp_path, capsys):
    root = str(tmp_path / "lake")
    lake = el.Lake.open(root)
    lake.append([{"type": "set", "partition": "p", "payload": {"target": "x", "value": 1}}])
    lake.materialize()
    assert main(["--lake", root, "changes", "document", "--format", "json"]) == EXIT_OK
    shown = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    want = _rows(lake.changes("document").collect())
    assert [r["change"] for r in shown] == [r["change"] for r in want] == ["reset", "insert"]
    assert json.loads(shown[1]["after"]["state"]) == {"x": 1}
    assert main(["--lake", root, "changes", "document", "--format", "csv"]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("partition_id,change,version")
    assert "after.state" in lines[0] and len(lines) == 3
    assert main(["--lake", root, "changes", "document"]) == EXIT_OK
    assert "insert p:" in capsys.readouterr().out
    assert Path(root).exists()


def test_the_feed_cursors_and_freshness_work_on_every_backend(backend):
    """The feed reads rewritten files and status records through the lake's own storage: a
    lake on S3 answers as a local one."""
    lake = backend.open(views=[COUNTS])
    lake.append([{"type": "inc", "partition": p, "payload": {"v": 1}} for p in "ab"])
    lake.materialize()
    lake.append([{"type": "inc", "partition": "b", "payload": {"v": 2}}])
    lake.materialize()
    feed = lake.changes("counts").collect()
    assert [(r["change"], r["partition_id"]) for r in feed.iter_rows(named=True)] == [
        ("reset", None), ("insert", "a"), ("insert", "b"), ("update", "b")]
    lake.commit_cursor("counts", "sink", feed["version"].max())
    again = backend.open(lake.root, views=[COUNTS])
    assert again.changes("counts", cursor="sink").collect().is_empty()
    fresh = again.freshness(["counts"]).views[0]
    assert fresh.current and fresh.last_refresh_at is not None
    assert fresh.last_refresh_events == 1
