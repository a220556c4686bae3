"""Maintenance (eventlake/maintenance.py): compaction keeps every guarantee; vacuum, checkpoints."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from urllib.parse import unquote

import polars as pl
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

import eventlake as el
from eventlake import maintenance
from eventlake.cli import EXIT_OK, main
from eventlake.doctor import doctor
from eventlake.maintenance import (
    compact_events,
    compact_views,
    min_watermark,
    vacuum,
    view_watermarks,
)
from eventlake.views import Agg, AggregateView, ReducerView
from tests.test_materialize import assert_views_exact


def _balance(state, event):
    if event["type"] == "deposit":
        return {**state, "balance": state["balance"] + event["payload"]["amount"]}
    if event["type"] == "withdrawal":
        return {**state, "balance": state["balance"] - event["payload"]["amount"]}
    return state


BALANCES = ReducerView(name="balances", version=1, initial_state=lambda: {"balance": 0},
                       reduce=_balance)
TOTALS = AggregateView(name="totals", version=1, group_by=["type"],
                       aggregates={"n": "count", "total": Agg("sum", "amount"),
                                   "last": Agg("last", "amount")})
ODD = "acct odd=é%#"  # a partition value that needs escaping in paths


@pytest.fixture
def views_lake(lake_path):
    return el.Lake.open(lake_path, views=[BALANCES, TOTALS])


def append_batches(lake, make_events, batches: int, *, seed: int = 0, size: int = 20):
    for number in range(batches):
        events = make_events(size, partitions=4, seed=seed + number)
        events.append({"type": "deposit", "payload": {"amount": number + 1}, "partition": ODD})
        lake.append(events)


def files(lake) -> list[dict]:
    actions = lake.log.snapshot().add_actions()
    return actions.select(["path", "partition.partition_id", "min.seq", "max.seq",
                           "num_records"]).to_pylist()


def without_order(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort("seq")


def test_watermarks_follow_the_slowest_view(views_lake, make_events):
    append_batches(views_lake, make_events, 2)
    assert min_watermark(views_lake) == 0
    views_lake.materialize(["document", "balances"])
    marks = view_watermarks(views_lake)
    assert marks == {"document": 42, "balances": 42, "totals": 0}
    assert min_watermark(views_lake) == 0
    # Nothing is compacted while one view has folded nothing.
    result = compact_events(views_lake)
    assert (result.files_removed, result.version) == (0, None)
    views_lake.materialize()
    assert min_watermark(views_lake) == 42


def test_compaction_merges_only_folded_files_and_keeps_every_guarantee(views_lake, make_events):
    append_batches(views_lake, make_events, 6)
    views_lake.materialize()
    folded = views_lake.last_seq()
    append_batches(views_lake, make_events, 2, seed=100)  # not folded yet
    before = views_lake.events().collect()
    unfolded = [f for f in files(views_lake) if f["min.seq"] > folded]
    old = [f for f in files(views_lake) if f["max.seq"] <= folded]
    plan_before = views_lake.log.plan(since_seq=folded)

    dry = compact_events(views_lake, dry_run=True)
    version = views_lake.log.snapshot().version
    assert dry.dry_run and dry.files_removed == len(old) and dry.files_added == 5
    assert views_lake.log.snapshot().version == version

    result = compact_events(views_lake)
    assert (result.watermark, result.partitions) == (folded, 5)
    assert (result.files_removed, result.files_added, result.rows) == (len(old), 5, folded)
    assert result.version == version + 1
    after = views_lake.events().collect()
    assert after.equals(before)
    now = files(views_lake)
    assert len(now) == len(unfolded) + 5
    for f in now:
        # Statistics are kept, and rows are in seq order inside every file.
        assert f["min.seq"] is not None and f["max.seq"] is not None
        table = pq.read_table(Path(views_lake.root, "events", unquote(f["path"])))
        seqs = table.column("seq").to_pylist()
        assert seqs == sorted(seqs) and (seqs[0], seqs[-1]) == (f["min.seq"], f["max.seq"])
        assert len(seqs) == f["num_records"]
        if "compacted" in f["path"]:
            assert f["max.seq"] <= folded
    # Incremental reads still open only the unfolded files.
    assert sorted(views_lake.log.plan(since_seq=folded).files) == sorted(plan_before.files)
    # The commit carries no data change.
    table = DeltaTable(str(Path(views_lake.root, "events")))
    last = table.history(1)[0]
    assert last["operation"] == "WRITE" or "compact" in json.dumps(last)

    views_lake.materialize()
    assert_views_exact(views_lake)
    views_lake.materialize(rebuild=True)  # a rebuild plans from the new files' statistics
    assert_views_exact(views_lake)
    assert views_lake.state(ODD, view="balances") == {"balance": sum(range(1, 7)) + 3}


def test_compaction_is_idempotent_and_respects_limits(views_lake, make_events):
    append_batches(views_lake, make_events, 4)
    views_lake.materialize()
    assert compact_events(views_lake, small_file_bytes=1).files_removed == 0
    first = compact_events(views_lake, max_rows=10)
    assert first.files_added >= 5
    assert all(f["num_records"] <= 10 or "compacted" not in f["path"]
               for f in files(views_lake))
    assert compact_events(views_lake, max_rows=10).files_removed == 0
    assert_views_exact(views_lake)


def test_compaction_survives_a_lost_commit_race(views_lake, make_events, monkeypatch):
    append_batches(views_lake, make_events, 3)
    views_lake.materialize()
    original = maintenance.commit_on
    raced = []
    calls = []

    def racing(*args, **kwargs):
        calls.append(1)
        if not raced:
            raced.append(1)
            # Another writer commits between our read and our commit (from another thread:
            # open tables are cached per thread).
            other = threading.Thread(target=views_lake.append, args=(
                [{"type": "deposit", "payload": {"amount": 7}, "partition": ODD}],))
            other.start()
            other.join()
        return original(*args, **kwargs)

    monkeypatch.setattr(maintenance, "commit_on", racing)
    old = files(views_lake)
    before = views_lake.events().collect()
    result = compact_events(views_lake)
    assert raced and result.files_removed == len(old) and result.version is not None
    assert len(calls) == 2  # the first commit lost the race and was made again
    after = views_lake.events().collect()
    assert after.height == before.height + 1 and after.head(before.height).equals(before)
    assert views_lake.log.snapshot().version == result.version
    views_lake.materialize()
    assert_views_exact(views_lake)



def test_a_compaction_beaten_by_another_deletes_the_files_it_wrote(views_lake, make_events,
                                                                  monkeypatch):
    """Two compactions merge the same files; the one that commits second finds its bins
    taken and deletes the files it wrote for them: no orphan is left behind."""
    append_batches(views_lake, make_events, 3)
    views_lake.materialize()
    original = maintenance.commit_on
    other: list[maintenance.CompactionResult] = []

    def racing(*args, **kwargs):
        if not other:
            # The other compaction runs to its end between our writes and our commit (from
            # another thread: open tables are cached per thread).
            other.append(None)  # type: ignore[arg-type]
            thread = threading.Thread(target=lambda: other.__setitem__(
                0, compact_events(views_lake)))
            thread.start()
            thread.join()
        return original(*args, **kwargs)

    monkeypatch.setattr(maintenance, "commit_on", racing)
    before = views_lake.events().collect()
    old = files(views_lake)
    result = compact_events(views_lake)
    assert other[0] is not None and other[0].files_removed == len(old)
    assert (result.files_added, result.files_removed, result.version) == (0, 0, None)
    assert not [p for p in doctor(views_lake).problems if p.table == "events"]
    # On storage: only the originals (kept for time travel until a vacuum) and the
    # winner's files.
    on_disk = list((Path(views_lake.root) / "events").rglob("*.parquet"))
    assert len(on_disk) == len(old) + len(files(views_lake))
    assert views_lake.events().collect().equals(before)


def test_vacuum_is_a_dry_run_by_default(views_lake, make_events):
    append_batches(views_lake, make_events, 3)
    views_lake.materialize()
    append_batches(views_lake, make_events, 1, seed=9)
    views_lake.materialize()
    removed = compact_events(views_lake).files_removed
    listed = vacuum(views_lake, retention_hours=0)
    assert set(listed) == {"events", "views/document", "views/balances", "views/totals"}
    assert len(listed["events"].files) == removed and listed["events"].dry_run
    assert all(Path(views_lake.root, "events", f).exists() for f in listed["events"].files)
    done = vacuum(views_lake, retention_hours=0, dry_run=False)
    assert done["events"].files == listed["events"].files
    assert not any(Path(views_lake.root, "events", f).exists() for f in done["events"].files)
    assert views_lake.events().collect().height == views_lake.last_seq()
    assert_views_exact(views_lake)
    with pytest.raises(ValueError, match="retention_hours"):
        vacuum(views_lake, retention_hours=-1)


def test_checkpoints_and_view_compaction(views_lake, make_events):
    append_batches(views_lake, make_events, 2)
    views_lake.materialize()
    names = maintenance.checkpoint(views_lake)
    assert names == ("events", "views/document", "views/balances", "views/totals")
    for name in names:
        assert list(Path(views_lake.root, name, "_delta_log").glob("*.checkpoint.parquet"))
    metrics = compact_views(views_lake)
    assert set(metrics) == {"document", "balances", "totals"}
    assert_views_exact(views_lake)


def test_maintain_dry_run_changes_nothing(views_lake, make_events):
    append_batches(views_lake, make_events, 3)
    views_lake.materialize()
    version = views_lake.log.snapshot().version
    count = len(files(views_lake))
    result = maintenance.maintain(views_lake, retention_hours=0)
    assert result.events.dry_run and result.events.files_removed == count
    assert views_lake.log.snapshot().version == version
    real = maintenance.maintain(views_lake, retention_hours=0, dry_run=False)
    assert real.events.files_added == 5 and len(real.vacuumed["events"].files) == count
    assert real.checkpoints[0] == "events"
    assert_views_exact(views_lake)


def test_maintain_command(lake_path, make_events, capsys, monkeypatch):
    # Outside the repository: its pyproject registers sample views this lake never built.
    monkeypatch.chdir(lake_path.parent)
    lake = el.Lake.open(lake_path)
    for seed in range(3):
        lake.append(make_events(10, partitions=2, seed=seed))
    lake.materialize()
    assert main(["maintain", "--lake", str(lake_path), "--dry-run"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "dry run" in out and "would compact 6 file(s)" in out
    assert main(["maintain", "--lake", str(lake_path), "--vacuum-hours", "0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["events"]["files_removed"] == 6 and len(report["vacuumed"]["events"]) == 6
    assert el.Lake.open(lake_path).events().collect().height == 30
