"""Restoring the event log (eventlake/restore.py): seq, batch keys and views follow the files.

Real Delta tables in tmp_path. Batches A, B and C are appended under keys `w/1`, `w/2`, `w/3`;
partitions `p3` and `p4` are touched only by B and C, so after restoring to A no view may
show them.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

import eventlake as el
from eventlake.cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE, main
from eventlake.errors import CommitConflictError, RestoreError
from eventlake.ingest.inbox import ingest_file
from eventlake.model.views import Agg, AggregateView
from eventlake.ops import restore as restore_module
from eventlake.ops.doctor import doctor
from eventlake.ops.maintenance import compact_events, vacuum
from eventlake.ops.restore import REVOKED, plan_restore, restore_log
from eventlake.ops.verify import verify_view
from eventlake.store.storage import Storage
from eventlake.store.viewstore import ViewStore

TESTS = Path(__file__).resolve().parents[1]

TOTALS = AggregateView(name="totals", version=1, group_by=["type"],
                       aggregates={"n": "count", "amount": Agg("sum", "amount"),
                                   "last_note": Agg("last", "note")})
VIEWS = [TOTALS]


def batch(tag: str, partitions: list[str]) -> list[dict]:
    """Document actions and deposits on each partition, distinct per batch."""
    events = []
    for i, partition in enumerate(partitions):
        events.append({"type": "set", "partition": partition,
                       "payload": {"target": f"by.{tag}", "value": i}})
        events.append({"type": "deposit", "partition": partition,
                       "payload": {"amount": 10 * (i + 1), "note": f"{tag}{i}"}})
    return events


A = batch("A", ["p1", "p2"])
B = batch("B", ["p2", "p3"])
C = batch("C", ["p1", "p4"])


def append(lake: el.Lake, events: list[dict], batch_no: int) -> el.AppendResult:
    return lake.append(events, producer="w", batch_no=batch_no)


@pytest.fixture
def abc(tmp_path):
    """A lake holding A, B, C with views materialized after each: (lake, a, b, c)."""
    lake = el.Lake.open(tmp_path / "lake", views=VIEWS)
    results = []
    for number, events in enumerate([A, B, C], start=1):
        results.append(append(lake, events, number))
        lake.materialize()
    return (lake, *results)


def assert_consistent(lake: el.Lake) -> None:
    """seq is 1..last without gap, doctor finds nothing, and after materialize every view
    equals a from-scratch fold and shows only partitions the log holds."""
    events = lake.events().collect()
    assert events.get_column("seq").to_list() == list(range(1, lake.last_seq() + 1))
    report = doctor(lake)
    assert report.ok, [str(p) for p in report.problems]
    lake.materialize()
    partitions = set(events.get_column("partition_id").to_list())
    for view in lake.views.values():
        checked = verify_view(lake, view)
        assert checked.ok, [str(d) for d in checked.differences]
        assert checked.watermark == lake.last_seq(), view.name
        shown = set(lake.scan(view.name).collect().get_column("partition_id").to_list())
        assert shown == partitions, view.name


def view_partitions(lake: el.Lake, name: str) -> set[str]:
    return set(lake.scan(name).collect().get_column("partition_id").to_list())


# -- the restore -----------------------------------------------------------------------------


def test_restore_rewinds_seq_revokes_later_batches_and_resets_views(abc):
    lake, a, b, c = abc
    assert view_partitions(lake, "totals") == {"p1", "p2", "p3", "p4"}
    totals = ViewStore(lake.storage, lake.view("totals"))
    assert totals.watermark() == c.last_seq
    assert [lake.log.landed("w", n) for n in (1, 2, 3, 4)] == [
        a.last_seq, b.last_seq, c.last_seq, None]

    result = lake.restore(version=a.version)

    assert result == el.RestoreResult(
        from_version=c.version, to_version=a.version, new_version=c.version + 1,
        last_seq_before=c.last_seq, last_seq_after=a.last_seq,
        events_removed=b.count + c.count, batches_revoked=("w/2", "w/3"),
        views_reset=("document", "totals"))
    assert lake.last_seq() == a.last_seq
    events = lake.events().collect()
    assert events.get_column("seq").to_list() == list(range(1, a.last_seq + 1))
    assert set(events.get_column("batch_id").to_list()) == {"w/1"}
    # The revoked batches have not landed any more (they may be appended again), and the
    # reset views have folded nothing of this version.
    assert [lake.log.landed("w", n) for n in (1, 2, 3)] == [a.last_seq, None, None]
    assert totals.watermark() == 0
    # Until the next materialize the views show nothing rather than removed events, and
    # state reads fold the restored log.
    assert lake.scan("document").collect().height == 0
    assert lake.scan("totals").collect().height == 0
    assert lake.sql("select count(*) from totals").fetchall() == [(0,)]
    assert lake.state("p3") == {}
    assert lake.state("p1") == {"by": {"A": 0}}

    results = lake.materialize()
    assert all(r.rebuilt and r.new_watermark == a.last_seq for r in results.values())
    for name in ("document", "totals"):
        assert view_partitions(lake, name) == {"p1", "p2"}
    assert lake.state("p1") == {"by": {"A": 0}}
    assert_consistent(lake)

    # B and C land again under their own keys, numbered on from A without a gap.
    b2 = append(lake, B, 2)
    assert not b2.duplicate
    assert (b2.first_seq, b2.last_seq) == (a.last_seq + 1, a.last_seq + len(B))
    c2 = append(lake, C, 3)
    assert not c2.duplicate
    assert (c2.first_seq, c2.last_seq) == (b2.last_seq + 1, b2.last_seq + len(C))
    again = append(lake, A, 1)
    assert again.duplicate and again.last_seq == a.last_seq and again.count == 0
    assert append(lake, B, 2).duplicate
    assert_consistent(lake)
    assert lake.state("p1") == {"by": {"A": 0, "C": 0}}
    assert view_partitions(lake, "totals") == {"p1", "p2", "p3", "p4"}


def test_plan_writes_nothing_and_names_what_goes(abc):
    lake, _, b, c = abc
    table_versions = {n: lake.storage.table("views", n).version() for n in ("document", "totals")}
    plan = plan_restore(lake, version=b.version)
    assert (plan.from_version, plan.to_version) == (c.version, b.version)
    assert (plan.last_seq_before, plan.last_seq_after) == (c.last_seq, b.last_seq)
    assert [(x.batch_id, x.version, x.first_seq, x.count) for x in plan.batches] == [
        ("w/3", c.version, c.first_seq, c.count)]
    assert plan.events_removed == c.count
    assert plan.batch_keys_revoked == ("w/3",)
    assert plan.views == ("document", "totals")
    assert dict(plan.transactions) == {"eventlake.seq": b.last_seq,
                                       "eventlake.batch/w/3": REVOKED}
    assert lake.storage.table("events").version() == c.version
    assert lake.last_seq() == c.last_seq
    assert {n: lake.storage.table("views", n).version()
            for n in ("document", "totals")} == table_versions


def test_the_restore_commit_carries_seq_and_revoked_keys(abc):
    lake, a, _, _ = abc
    lake.restore(version=a.version)
    snap = lake.log.snapshot()
    assert snap.transaction_version("eventlake.seq") == a.last_seq
    assert snap.transaction_version("eventlake.batch/w/1") == a.last_seq
    assert snap.transaction_version("eventlake.batch/w/2") == REVOKED
    assert snap.transaction_version("eventlake.batch/w/3") == REVOKED
    info = lake.storage.table("events").history(1)[0]
    assert info["operation"] == "RESTORE"
    assert info["eventlake.restored_version"] == str(a.version)


def test_a_restore_can_be_undone(abc):
    lake, a, _, c = abc
    lake.restore(version=a.version)
    lake.materialize()
    # Back to the version before the restore: B and C return with their seqs and keys.
    undo = lake.restore(version=c.version)
    assert undo.last_seq_after == c.last_seq
    assert undo.events_removed == 0 and undo.batches_revoked == ()
    assert lake.last_seq() == c.last_seq
    assert append(lake, B, 2).duplicate
    assert append(lake, C, 3).duplicate
    assert_consistent(lake)
    assert view_partitions(lake, "totals") == {"p1", "p2", "p3", "p4"}


def test_restore_after_re_appending_counts_only_live_batches(abc):
    lake, a, b, _ = abc
    lake.restore(version=a.version)
    b2 = append(lake, B, 2)
    # From here back to B's version: the restore commit undid C, then B landed again.
    plan = plan_restore(lake, version=b.version)
    assert [x.batch_id for x in plan.batches] == ["w/2"]
    assert plan.events_removed == b2.count
    assert plan.batch_keys_revoked == ()  # w/2 had landed at b's version too
    lake.restore(version=b.version)
    assert lake.last_seq() == b.last_seq
    assert append(lake, B, 2).duplicate
    c2 = append(lake, C, 3)
    assert not c2.duplicate and c2.first_seq == b.last_seq + 1
    assert_consistent(lake)


def test_restore_to_the_empty_log(abc):
    lake, *_ = abc
    result = lake.restore(version=0)
    assert result.last_seq_after == 0 and lake.last_seq() == 0
    assert result.batches_revoked == ("w/1", "w/2", "w/3")
    assert lake.events().collect().height == 0
    lake.materialize()
    assert lake.scan("document").collect().height == 0
    first = append(lake, B, 2)
    assert (first.first_seq, first.duplicate) == (1, False)
    assert_consistent(lake)


def test_restore_by_timestamp(tmp_path):
    lake = el.Lake.open(tmp_path / "lake", views=VIEWS)
    a = append(lake, A, 1)
    time.sleep(0.05)
    between = datetime.now(UTC)
    time.sleep(0.05)
    append(lake, B, 2)
    plan = plan_restore(lake, timestamp=between)
    assert plan.to_version == a.version
    # ISO text works too, and a time without a zone is UTC.
    naive = between.replace(tzinfo=None).isoformat()
    assert plan_restore(lake, timestamp=naive).to_version == a.version
    result = lake.restore(timestamp=between.isoformat())
    assert result.to_version == a.version and lake.last_seq() == a.last_seq
    with pytest.raises(RestoreError, match="did not exist yet"):
        lake.restore(timestamp=between - timedelta(days=1))
    with pytest.raises(RestoreError, match="nothing to restore"):
        lake.restore(timestamp=datetime.now(UTC) + timedelta(days=1))
    with pytest.raises(RestoreError, match="ISO 8601"):
        lake.restore(timestamp="yesterday")


# -- refusals --------------------------------------------------------------------------------


def assert_unchanged(lake: el.Lake, version: int, last_seq: int) -> None:
    assert lake.storage.table("events").version() == version
    assert lake.last_seq() == last_seq


def test_refuses_a_version_that_is_not_older(abc):
    lake, _, _, c = abc
    for version in (c.version, c.version + 5):
        with pytest.raises(RestoreError, match=f"version {version} is not older") as info:
            lake.restore(version=version)
        assert (info.value.version, info.value.current) == (version, c.version)
    with pytest.raises(RestoreError, match="int >= 0"):
        lake.restore(version=-1)
    with pytest.raises(RestoreError, match="not both and not neither"):
        lake.restore()
    with pytest.raises(RestoreError, match="not both"):
        lake.restore(version=1, timestamp=datetime.now(UTC))
    assert isinstance(info.value, el.EventlakeError) and isinstance(info.value, ValueError)
    assert_unchanged(lake, c.version, c.last_seq)
    assert view_partitions(lake, "totals") == {"p1", "p2", "p3", "p4"}


def test_refuses_a_version_whose_log_is_gone(abc):
    lake, a, _, c = abc
    table = lake.storage.table("events")
    table.create_checkpoint()
    # What Delta's log retention does to old commits once a checkpoint covers them.
    for version in range(c.version):
        os.remove(lake.storage.local_path("events", "_delta_log", f"{version:020d}.json"))
    with pytest.raises(RestoreError, match=f"version {a.version} of the event log cannot be "
                                           "loaded"):
        lake.restore(version=a.version)
    assert_unchanged(lake, c.version, c.last_seq)


def vacuumed_lake(tmp_path):
    """Two small files in p1, compacted into one, the originals vacuumed."""
    lake = el.Lake.open(tmp_path / "lake", views=VIEWS)
    a = append(lake, batch("A", ["p1"]), 1)
    b = append(lake, batch("B", ["p1"]), 2)
    lake.materialize()
    compacted = compact_events(lake)
    assert compacted.files_removed == 2
    vacuum(lake, retention_hours=0, dry_run=False)
    return lake, a, b


def test_refuses_a_version_whose_files_were_vacuumed(tmp_path):
    lake, a, b = vacuumed_lake(tmp_path)
    head = lake.storage.table("events").version()
    views = {n: lake.storage.table("views", n).version() for n in ("document", "totals")}
    with pytest.raises(RestoreError, match=f"version {a.version} of the event log cannot be "
                                           "restored: 1 of its data files are gone"):
        lake.restore(version=a.version)
    # Refused before anything was written: the views were not reset either.
    assert_unchanged(lake, head, b.last_seq)
    assert {n: lake.storage.table("views", n).version() for n in views} == views
    assert_consistent(lake)


def test_deltas_own_missing_file_check_is_wrapped(tmp_path, monkeypatch):
    lake, a, b = vacuumed_lake(tmp_path)
    head = lake.storage.table("events").version()
    # Without eventlake's pre-check, Delta's check at commit time refuses and is named.
    monkeypatch.setattr(restore_module, "_check_files", lambda *args: None)
    with pytest.raises(RestoreError, match=f"cannot be restored to version {a.version}") as info:
        lake.restore(version=a.version)
    assert "the log was not restored" in str(info.value)
    assert_unchanged(lake, head, b.last_seq)
    assert_consistent(lake)


def test_refuses_when_the_log_moved_since_the_plan(abc):
    lake, a, _, _ = abc
    plan = plan_restore(lake, version=a.version)
    d = append(lake, batch("D", ["p5"]), 4)
    # On a bucketed log D is the tail's fourth file: its append also sorted the tail.
    head = lake.storage.table("events").version()
    assert head == d.version + (lake.layout.kind == "buckets")
    with pytest.raises(CommitConflictError, match="since the restore was planned"):
        restore_log(lake, version=a.version, expected_version=plan.from_version)
    assert_unchanged(lake, head, d.last_seq)
    assert_consistent(lake)


def test_an_append_racing_the_restore_commit_makes_it_fail_cleanly(abc, monkeypatch):
    lake, a, _, c = abc
    original = restore_module._restore_events
    racer = el.Lake.open(lake.root, views=VIEWS)

    def append_first(storage, plan):
        racer.append(batch("D", ["p5"]), producer="racer", batch_no=1)
        return original(storage, plan)

    monkeypatch.setattr(restore_module, "_restore_events", append_first)
    with pytest.raises(CommitConflictError, match="another writer committed"):
        lake.restore(version=a.version)
    # Nothing was removed; the views were reset and are rebuilt from the unrestored log.
    assert lake.last_seq() == c.last_seq + 2
    assert lake.scan("totals").collect().height == 0
    assert_consistent(lake)


def test_a_refresh_racing_the_restore_is_reset_again(abc, monkeypatch):
    lake, a, _, _ = abc
    original = restore_module._restore_events

    def materialize_first(storage, plan):
        # Another materializer rebuilds the views from the log that is about to change.
        el.Lake.open(lake.root, views=VIEWS).materialize()
        assert view_partitions(lake, "totals") == {"p1", "p2", "p3", "p4"}
        return original(storage, plan)

    monkeypatch.setattr(restore_module, "_restore_events", materialize_first)
    lake.restore(version=a.version)
    assert lake.scan("totals").collect().height == 0
    assert lake.scan("document").collect().height == 0
    assert_consistent(lake)
    assert view_partitions(lake, "totals") == {"p1", "p2"}


# -- views the lake does not register, bare storage, inbox files -----------------------------


def test_unregistered_view_tables_are_reset_too(abc):
    lake, a, _, _ = abc
    # Opened without the views module: the totals table is still found and reset.
    bare = el.Lake.open(lake.root)
    result = bare.restore(version=a.version)
    assert result.views_reset == ("document", "totals")
    assert ViewStore(lake.storage, TOTALS).app == "eventlake.view/totals"
    assert lake.scan("totals").collect().height == 0
    assert_consistent(lake)
    assert view_partitions(lake, "totals") == {"p1", "p2"}


def test_restore_through_a_bare_storage(abc):
    lake, a, _, _ = abc
    result = restore_log(Storage.at(lake.root), version=a.version)
    assert result.last_seq_after == a.last_seq
    assert_consistent(lake)


def test_an_inbox_file_removed_by_a_restore_can_be_ingested_again(tmp_path):
    lake = el.Lake.open(tmp_path / "lake")
    base = append(lake, A, 1)
    path = tmp_path / "orders.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in B), encoding="utf-8")
    first = ingest_file(lake, path, quarantine=False)
    assert ingest_file(lake, path, quarantine=False).duplicate
    lake.restore(version=base.version)
    again = ingest_file(lake, path, quarantine=False)
    assert not again.duplicate
    assert (again.first_seq, again.events) == (first.first_seq, first.events)
    assert ingest_file(lake, path, quarantine=False).duplicate
    assert_consistent(lake)


# -- command line ----------------------------------------------------------------------------


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def cli_lake(abc, monkeypatch, tmp_path):
    monkeypatch.delenv("EVENTLAKE_LAKE", raising=False)
    monkeypatch.delenv("EVENTLAKE_VIEWS", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    return abc


def test_cli_restore_with_yes(cli_lake, capsys):
    lake, a, _, c = cli_lake
    code, out, err = run(capsys, "restore", "--version", str(a.version), "--yes",
                         "--lake", lake.root)
    assert code == EXIT_OK, err
    assert f"restore version {a.version} (now at version {c.version})" in out
    assert f"events removed: {len(B) + len(C)} (last seq {c.last_seq} -> {a.last_seq})" in out
    assert "batches removed: 2" in out
    assert f"w/2: {len(B)} events, seq {a.last_seq + 1}..{a.last_seq + len(B)}" in out
    assert "views reset (rebuilt by the next `eventlake materialize`): document, totals" in out
    assert "restored the event log" in out and "eventlake materialize" in out
    assert lake.last_seq() == a.last_seq
    code, out, err = run(capsys, "materialize", "--lake", lake.root)
    assert code == EXIT_OK, err
    assert_consistent(lake)


def test_cli_refuses_without_confirmation_when_not_interactive(cli_lake, capsys):
    lake, a, _, c = cli_lake
    code, out, err = run(capsys, "restore", "--version", str(a.version), "--lake", lake.root)
    assert code == EXIT_ERROR
    assert "pass --yes" in err and len(err.strip().splitlines()) == 1
    assert "events removed" in out  # what would have gone was shown
    assert_unchanged(lake, c.version, c.last_seq)
    code, _, err = run(capsys, "restore", "--version", str(a.version), "--lake", lake.root,
                       "--json")
    assert code == EXIT_ERROR and "pass --yes" in err
    assert_unchanged(lake, c.version, c.last_seq)


def test_cli_asks_on_a_terminal(cli_lake, capsys, monkeypatch):
    lake, a, _, c = cli_lake
    monkeypatch.setattr(sys, "stdin", Terminal("n\n"))
    code, out, err = run(capsys, "restore", "--version", str(a.version), "--lake", lake.root)
    assert code == EXIT_ERROR and "cancelled" in err
    assert f"restore the event log to version {a.version}, removing 8 events? [y/N]" in out
    assert_unchanged(lake, c.version, c.last_seq)
    monkeypatch.setattr(sys, "stdin", Terminal("y\n"))
    code, out, err = run(capsys, "restore", "--version", str(a.version), "--lake", lake.root)
    assert code == EXIT_OK, err
    assert lake.last_seq() == a.last_seq


def test_cli_dry_run_and_json(cli_lake, capsys):
    lake, a, _, c = cli_lake
    code, out, err = run(capsys, "restore", "--version", str(a.version), "--dry-run",
                         "--json", "--lake", lake.root)
    assert code == EXIT_OK, err
    plan = json.loads(out)
    assert plan["dry_run"] and plan["events_removed"] == len(B) + len(C)
    assert [b["batch_id"] for b in plan["batches"]] == ["w/2", "w/3"]
    assert plan["views"] == ["document", "totals"]
    assert_unchanged(lake, c.version, c.last_seq)
    code, out, err = run(capsys, "restore", "--version", str(a.version), "--yes", "--json",
                         "--lake", lake.root)
    assert code == EXIT_OK, err
    done = json.loads(out)
    assert done["batches_revoked"] == ["w/2", "w/3"]
    assert done["new_version"] == c.version + 1 and done["last_seq_after"] == a.last_seq
    code, out, err = run(capsys, "views", "--json", "--lake", lake.root)
    assert code == EXIT_OK, err
    statuses = {v["name"]: v["status"] for v in json.loads(out)["views"]}
    assert statuses["document"] == "not built (reset by a restore)"


def test_cli_refusals(cli_lake, capsys):
    lake, _, _, c = cli_lake
    code, _, err = run(capsys, "restore", "--version", str(c.version), "--yes",
                       "--lake", lake.root)
    assert code == EXIT_ERROR
    assert err.startswith("error: ") and f"version {c.version} is not older" in err
    assert run(capsys, "restore", "--yes", "--lake", lake.root)[0] == EXIT_USAGE
    assert run(capsys, "restore", "--version", "1", "--timestamp", "2025-01-01T00:00:00Z",
               "--lake", lake.root)[0] == EXIT_USAGE
    assert run(capsys, "restore", "--timestamp", "soon", "--lake", lake.root)[0] == EXIT_USAGE
    assert run(capsys, "restore", "--version", "-2", "--lake", lake.root)[0] == EXIT_USAGE
    assert_unchanged(lake, c.version, c.last_seq)


def test_cli_restore_by_timestamp(cli_lake, capsys):
    lake, _, b, _ = cli_lake
    stamp = lake.storage.table("events").history()
    b_time = next(h["timestamp"] for h in stamp if h["version"] == b.version)
    when = datetime.fromtimestamp(b_time / 1000, UTC).isoformat()
    code, _, err = run(capsys, "restore", "--timestamp", when, "--yes", "--lake", lake.root)
    assert code == EXIT_OK, err
    assert lake.last_seq() == b.last_seq


# -- crashes ---------------------------------------------------------------------------------


CHILD = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import eventlake as el
from eventlake.ops import restore
from eventlake.views import Agg, AggregateView
import faults

TOTALS = AggregateView(name="totals", version=1, group_by=["type"],
                       aggregates={{"n": "count", "amount": Agg("sum", "amount"),
                                   "last_note": Agg("last", "note")}})
lake = el.Lake.open({root!r}, views=[TOTALS])
fault = {fault!r}
if fault == "between":
    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)
    restore._restore_events = die
else:
    from pathlib import Path
    faults.install_fault(fault, Path({root!r}))
lake.restore(version={version})
"""


@pytest.mark.integration
@pytest.mark.parametrize("fault", ["between", "fs:views:log-commit:1", "fs:events:log-temp:1",
                                   "fs:events:log-commit:1"])
def test_killed_restore_leaves_a_consistent_lake(abc, fault):
    """SIGKILL between the view resets and the log commit (and around both) loses nothing:
    the log is either untouched or fully restored, and the views come out exact."""
    lake, a, _, c = abc
    script = CHILD.format(tests=str(TESTS), root=lake.root, fault=fault, version=a.version)
    child = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], timeout=120,
                           capture_output=True, text=True)
    # A file watch may fire a moment late, after the restore finished.
    assert child.returncode == -signal.SIGKILL or (
        fault.startswith("fs:") and child.returncode == 0), child.stderr
    report = doctor(lake, fix=True, min_age_seconds=0)
    assert not report.damage, [str(p) for p in report.damage]
    restored = lake.last_seq() == a.last_seq
    if fault == "between":
        assert not restored
    if fault == "fs:events:log-commit:1":
        assert restored
    if not restored:
        # The log is untouched (B and C are still duplicates); the views that were reset are
        # rebuilt from it, and running the restore again finishes the job.
        assert lake.last_seq() == c.last_seq
        assert append(lake, C, 3).duplicate
        assert_consistent(lake)
        lake.restore(version=a.version)
    assert lake.last_seq() == a.last_seq
    assert not append(lake, B, 2).duplicate
    assert_consistent(lake)
    assert view_partitions(lake, "totals") == {"p1", "p2", "p3"}


# -- object storage --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    from tests.s3server import s3_server

    with s3_server(tmp_path_factory.mktemp("s3server")) as endpoint:
        yield endpoint


@pytest.mark.integration
def test_restore_on_s3(s3, monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "EVENTLAKE_STORAGE_OPTIONS"):
        monkeypatch.delenv(name, raising=False)
    lake = el.Lake.open(s3.lake_uri(), views=VIEWS, storage_options=s3.options())
    a = append(lake, A, 1)
    lake.materialize()
    append(lake, B, 2)
    append(lake, C, 3)
    lake.materialize()
    plan = plan_restore(lake, version=a.version)
    assert plan.views == ("document", "totals")
    assert plan.batch_keys_revoked == ("w/2", "w/3")
    result = lake.restore(version=a.version)
    assert result.last_seq_after == a.last_seq
    assert lake.scan("totals").collect().height == 0
    b2 = append(lake, B, 2)
    assert not b2.duplicate and b2.first_seq == a.last_seq + 1
    assert_consistent(lake)
    assert pl.DataFrame(lake.scan("totals").collect()).height > 0
