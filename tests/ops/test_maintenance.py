"""Maintenance (eventlake/maintenance.py): compaction keeps every guarantee; vacuum, checkpoints."""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path
from urllib.parse import unquote

import polars as pl
import pytest
from deltalake import DeltaTable

import eventlake as el
import eventlake.store.log
from eventlake.cli import EXIT_OK, main
from eventlake.model.layout import bucket_of
from eventlake.model.views import Agg, AggregateView, ReducerView
from eventlake.ops import maintenance
from eventlake.ops.doctor import doctor
from eventlake.ops.maintenance import (
    compact_events,
    compact_views,
    min_watermark,
    vacuum,
    view_watermarks,
)
from tests.engine.test_materialize import assert_views_exact
from tests.logfiles import TAIL_FOLDER, ever_added, file_rows, live_files, on_disk


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


PARTITIONS = [f"acct-{k}" for k in range(4)] + [ODD]


def append_batches(lake, make_events, batches: int, *, seed: int = 0, size: int = 20,
                   sort_tail: bool = True):
    """Batches over `PARTITIONS`. On the buckets layout `sort_tail` sorts each batch's tail
    file into its buckets at once, so a batch leaves one file per bucket as it leaves one per
    partition on the partition_id layout, and compaction finds bins the same way; the tests
    of the tail itself keep it (`sort_tail=False`)."""
    for number in range(batches):
        events = make_events(size, partitions=4, seed=seed + number)
        events.append({"type": "deposit", "payload": {"amount": number + 1}, "partition": ODD})
        lake.append(events)
        if sort_tail and lake.layout.kind == "buckets":
            assert lake.log.compact_tail().files_removed == 1


def groups(lake) -> int:
    """How many groups compaction merges into: partitions, or the buckets they hash to."""
    layout = lake.layout
    if layout.kind == "partition_id":
        return len(PARTITIONS)
    return len({bucket_of(p, layout.bucket_count) for p in PARTITIONS})


def files(lake) -> list[dict]:
    actions = lake.log.snapshot().add_actions()
    column = f"partition.{lake.layout.partition_column}"
    return actions.select(["path", column, "min.seq", "max.seq", "num_records"]
                          ).rename_columns(["path", "group", "min.seq", "max.seq",
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

    count = groups(views_lake)

    dry = compact_events(views_lake, dry_run=True)
    version = views_lake.log.snapshot().version
    assert dry.dry_run and dry.files_removed == len(old) and dry.files_added == count
    assert views_lake.log.snapshot().version == version

    result = compact_events(views_lake)
    assert (result.watermark, result.partitions) == (folded, count)
    assert (result.files_removed, result.files_added, result.rows) == (len(old), count, folded)
    assert result.version == version + 1
    after = views_lake.events().collect()
    assert after.equals(before)
    now = files(views_lake)
    assert len(now) == len(unfolded) + count
    # Every file is where its layout puts it, its rows in seq order (partition_id) or in
    # (partition_id, seq) order (a bucket file): file_rows asserts both.
    held = file_rows(views_lake.root)
    for f in now:
        # Statistics are kept.
        assert f["min.seq"] is not None and f["max.seq"] is not None
        seqs = [seq for seq, _ in held[str(Path(views_lake.root, "events", unquote(f["path"])))]]
        if views_lake.layout.kind == "partition_id":
            assert seqs == sorted(seqs)
        assert (min(seqs), max(seqs)) == (f["min.seq"], f["max.seq"])
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


def test_compaction_sorts_the_tail_first_and_counts_it(views_lake, make_events, monkeypatch):
    if views_lake.layout.kind != "buckets":
        pytest.skip("only a bucketed log has a tail: partition_id files always have a partition")
    monkeypatch.setattr(eventlake.store.log, "TAIL_FILES", 100)
    append_batches(views_lake, make_events, 2)  # sorted: two files per bucket
    append_batches(views_lake, make_events, 2, seed=50, sort_tail=False)
    views_lake.materialize()
    folded = views_lake.last_seq()
    append_batches(views_lake, make_events, 1, seed=80, sort_tail=False)  # not folded yet
    count = groups(views_lake)
    tail = [f for f in live_files(views_lake.root) if TAIL_FOLDER in f]
    assert len(tail) == 3
    before = views_lake.events().collect()

    dry = compact_events(views_lake, dry_run=True)
    # The tail's 3 files become one file per bucket; each bucket's 2 folded files one more.
    assert (dry.files_removed, dry.files_added, dry.partitions) == (3 + 2 * count, 2 * count,
                                                                    count)
    assert dry.rows == 4 * 21 + 21 and dry.version is None
    version = views_lake.log.snapshot().version
    result = compact_events(views_lake)
    # The sorted tail holds a row no view has folded: it is not merged in the same run.
    assert (result.files_removed, result.files_added, result.rows) == (
        dry.files_removed, dry.files_added, dry.rows)
    assert result.version == version + 2 == views_lake.log.snapshot().version
    assert not any(TAIL_FOLDER in f for f in live_files(views_lake.root))
    assert len(live_files(views_lake.root)) == 2 * count
    assert views_lake.events().collect().equals(before)
    # The unfolded event is read from the files the tail was sorted into, and only those.
    unfolded = views_lake.log.plan(since_seq=folded)
    assert len(unfolded.files) == count and all("compacted" not in f for f in unfolded.files)
    listed = vacuum(views_lake, retention_hours=0)["events"].files
    assert len(listed) == result.files_removed + 2  # and the two tail files sorted above
    assert sorted(str(Path(views_lake.root, "events", f)) for f in listed) == sorted(
        set(ever_added(views_lake.root)) - set(live_files(views_lake.root)))
    assert on_disk(views_lake.root) == ever_added(views_lake.root)
    views_lake.materialize()
    assert_views_exact(views_lake)


def test_compaction_is_idempotent_and_respects_limits(views_lake, make_events):
    append_batches(views_lake, make_events, 4)
    views_lake.materialize()
    assert compact_events(views_lake, small_file_bytes=1).files_removed == 0
    # Each group (partition, or bucket) with two adjacent files of at most 10 rows together
    # makes a bin at least: 5 partitions, or fewer buckets holding more rows each.
    rows: dict[str, list[int]] = {}
    for f in sorted(files(views_lake), key=lambda f: f["min.seq"]):
        rows.setdefault(f["group"], []).append(f["num_records"])
    mergeable = sum(any(a + b <= 10 for a, b in itertools.pairwise(r)) for r in rows.values())
    assert mergeable >= (5 if views_lake.layout.kind == "partition_id" else 1)
    first = compact_events(views_lake, max_rows=10)
    assert first.files_added >= mergeable
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
    # winner's files (and, on a bucketed log, the tail files sorted away): no orphan.
    assert on_disk(views_lake.root) == ever_added(views_lake.root)
    assert len(ever_added(views_lake.root)) == len(old) + len(files(views_lake)) + (
        3 if views_lake.layout.kind == "buckets" else 0)
    assert views_lake.events().collect().equals(before)


def test_vacuum_is_a_dry_run_by_default(views_lake, make_events, monkeypatch):
    # Batches stay in the tail of a bucketed log until the compaction sorts it.
    monkeypatch.setattr(eventlake.store.log, "TAIL_FILES", 100)
    append_batches(views_lake, make_events, 3, sort_tail=False)
    views_lake.materialize()
    append_batches(views_lake, make_events, 1, seed=9, sort_tail=False)
    views_lake.materialize()
    removed = compact_events(views_lake).files_removed
    if views_lake.layout.kind == "buckets":
        assert removed == 4  # the four tail files, each batch's one
    listed = vacuum(views_lake, retention_hours=0)
    assert set(listed) == {"events", "views/document", "views/balances", "views/totals"}
    assert len(listed["events"].files) == removed and listed["events"].dry_run
    assert sorted(str(Path(views_lake.root, "events", f)) for f in listed["events"].files) == (
        sorted(set(ever_added(views_lake.root)) - set(live_files(views_lake.root))))
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


def test_maintain_dry_run_changes_nothing_then_compacts_and_vacuums(backend):
    lake = backend.open(views=[BALANCES, TOTALS])
    layout = lake.layout
    for number in range(4):
        # Every batch touches every partition: one file per group (partition, or bucket once
        # the tail is sorted) per batch.
        lake.append([{"type": "deposit", "payload": {"amount": number * 10 + i},
                      "partition": PARTITIONS[i % len(PARTITIONS)]} for i in range(12)])
        if layout.kind == "buckets":
            assert lake.log.compact_tail().files_removed == 1
    lake.materialize()
    folded = lake.last_seq()
    old = files(lake)
    assert len(old) == 4 * groups(lake)
    # Not folded yet: stays as it is (on a bucketed log its tail file is sorted into its
    # bucket, which changes no row).
    lake.append([{"type": "withdrawal", "payload": {"amount": 1}, "partition": "acct-0"}])
    tail = 1 if layout.kind == "buckets" else 0
    before = lake.events().collect()
    version = lake.log.snapshot().version

    dry = maintenance.maintain(lake, retention_hours=0)
    assert dry.events.dry_run
    assert (dry.events.files_removed, dry.events.files_added) == (
        len(old) + tail, groups(lake) + tail)
    assert lake.log.snapshot().version == version
    assert len(files(lake)) == len(old) + 1

    result = maintenance.maintain(lake, retention_hours=0, dry_run=False)
    assert result.events.watermark == folded
    # Each group's 4 files merge into one.
    assert (result.events.files_removed, result.events.files_added) == (
        len(old) + tail, groups(lake) + tail)
    # The vacuum deletes them, and on a bucketed log the four tail files `append_batches`
    # sorted into buckets too.
    sorted_before = 4 if layout.kind == "buckets" else 0
    assert len(result.vacuumed["events"].files) == len(old) + tail + sorted_before
    assert result.checkpoints[0] == "events"
    assert lake.events().collect().equals(before)
    plan = lake.log.plan(partitions=["acct-1"])
    assert len(plan.files) == 1 and ".compacted." in plan.files[0]
    lake.materialize()
    assert_views_exact(lake)


def test_maintain_command(lake_path, make_events, capsys, monkeypatch):
    # Outside the repository: its pyproject registers sample views this lake never built.
    monkeypatch.chdir(lake_path.parent)
    lake = el.Lake.open(lake_path)
    for seed in range(3):
        lake.append(make_events(10, partitions=2, seed=seed))
    lake.materialize()
    # One file per partition per batch, or (buckets) each batch's tail file.
    count = 6 if lake.layout.kind == "partition_id" else 3
    assert len(live_files(lake_path)) == count
    assert main(["maintain", "--lake", str(lake_path), "--dry-run"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "dry run" in out and f"would compact {count} file(s)" in out
    assert main(["maintain", "--lake", str(lake_path), "--vacuum-hours", "0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["events"]["files_removed"] == count
    assert len(report["vacuumed"]["events"]) == count
    assert el.Lake.open(lake_path).events().collect().height == 30


def test_vacuum_deletes_what_a_killed_parallel_ingest_staged(lake, tmp_path):
    """Chunks staged under `<lake>/_staging` by an ingest that never landed them: listed by a
    dry run, deleted by the vacuum once older than its retention (0 here)."""
    from eventlake.ingest.parallel import PrepareTask, prepare_file
    from eventlake.store.staging import staged_files

    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps({"type": "t", "payload": {"i": i}, "partition": "p"})
                            + "\n" for i in range(10)), encoding="utf-8")
    prepare_file(PrepareTask(lake.root, {}, lake.limits, str(path), "inbox", 4,
                             "ingest/killed/000000"))
    staged = [f.path for f in staged_files(lake.storage)]
    assert len(staged) == 3
    assert vacuum(lake, retention_hours=1, dry_run=False).get("_staging") is None
    listed = vacuum(lake, retention_hours=0)["_staging"]
    assert listed.files == tuple(staged) and staged_files(lake.storage)
    vacuum(lake, retention_hours=0, dry_run=False)
    assert staged_files(lake.storage) == []
