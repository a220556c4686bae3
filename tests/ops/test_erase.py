"""Erasing a partition end to end (eventlake/ops/erase.py), on real Delta tables.

The partition erased, `p`, carries a marker no other partition has, in its payloads and so in
its document state and the `last_note` aggregate; partitions whose names only look like it
(`p ` with a trailing space, `P`, `p1`, `p x%?é`, which needs escaping in folder names) sit
beside it, interleaved in the same batches so the erased seqs are scattered.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventlake as el
from eventlake.cli import EXIT_OK, main
from eventlake.model.views import Agg, AggregateView
from eventlake.ops import erase as erase_module
from eventlake.ops.doctor import doctor
from eventlake.ops.verify import verify_view
from eventlake.store.erasures import read_records, seq_ranges

TOTALS = AggregateView(name="totals", version=1, group_by=["type"],
                       aggregates={"n": "count", "amount": Agg("sum", "amount"),
                                   "last_note": Agg("last", "note")})
VIEWS = [TOTALS]
ERASED = "p"
LOOKALIKES = ["p ", "P", "p1", "p x%?é"]
MARKER = f"ERASEME-{uuid.uuid4().hex}"


def _batches(with_erased: bool = True) -> list[list[dict]]:
    """Eight batches over p and its lookalikes; p's payloads hold MARKER."""
    batches = []
    for number in range(8):
        events = []
        for i, partition in enumerate([ERASED, *LOOKALIKES]):
            if partition == ERASED and not with_erased:
                continue
            note = f"{MARKER}-{number}" if partition == ERASED else f"note-{number}-{i}"
            events.append({"type": "set", "partition": partition,
                           "payload": {"target": f"by.b{number}", "value": note}})
            events.append({"type": "deposit", "partition": partition,
                           "payload": {"amount": 10 * number + i, "note": note}})
        batches.append(events)
    return batches


def _lake(root: Path, *, with_erased: bool = True) -> el.Lake:
    lake = el.Lake.open(root, views=VIEWS)
    for number, events in enumerate(_batches(with_erased)):
        lake.append(events, producer="t", batch_no=number)
        if number in (2, 5):
            lake.materialize()  # old view files that hold p, replaced by later refreshes
    lake.materialize()
    return lake


def _views(lake: el.Lake, *, drop: tuple[str, ...] = (), without: str | None = None
           ) -> dict[str, list[dict]]:
    """Every view's rows (without `updated_at`, the `drop` columns and partition `without`),
    sorted, as plain dicts (so they compare with ==)."""
    shown = {}
    for name in lake.views:
        rows = lake.scan(name).drop(["updated_at", *drop], strict=False).collect()
        if without is not None:
            rows = rows.filter(pl.col("partition_id") != without)
        shown[name] = sorted(rows.to_dicts(), key=lambda row: json.dumps(row, default=str))
    return shown


def _files_holding(root: Path, marker: str) -> list[str]:
    """Every file under `root` whose bytes, or whose decoded Parquet values, hold `marker`."""
    found = []
    needle = marker.encode()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if needle in path.read_bytes():
            found.append(str(path))
            continue
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            if marker in json.dumps(table.to_pylist(), default=str):
                found.append(str(path))
    return found


def test_erase_with_vacuum_removes_every_byte_and_keeps_the_rest(tmp_path: Path) -> None:
    lake = _lake(tmp_path / "lake")
    before = lake.events().collect()
    views_before = _views(lake, without=ERASED)
    assert _files_holding(tmp_path / "lake", MARKER)  # the scan can find it
    erased_seqs = before.filter(pl.col("partition_id") == ERASED)["seq"].to_list()

    result = lake.erase(ERASED, reason="user asked", vacuum=True)

    assert result.events == len(erased_seqs) == 16
    assert result.seq_ranges == seq_ranges(erased_seqs)
    assert set(result.views) == {"document", "totals"}
    assert result.files_rewritten["events"] >= 1 and not result.retained
    assert _files_holding(tmp_path / "lake", MARKER) == []
    # Every other event is unchanged, with its seq; every other view row too.
    after = lake.events().collect()
    assert after.equals(before.filter(pl.col("partition_id") != ERASED))
    assert _views(lake) == views_before
    # A lake that never had p folds the same rows (its seqs differ, so last_seq is left out).
    never = _lake(tmp_path / "never", with_erased=False)
    assert _views(lake, drop=("last_seq",)) == _views(never, drop=("last_seq",))
    for view in lake.views.values():
        assert verify_view(lake, view).ok
    report = doctor(lake)
    assert report.ok, [str(p) for p in report.problems]
    assert report.erased == result.seq_ranges


_NAMES = st.sampled_from(["a", "a ", "A", "ab", "b"])
_EVENT = st.tuples(_NAMES, st.sampled_from(["set", "deposit"]), st.integers(0, 9))
_BATCHES = st.lists(st.tuples(st.lists(_EVENT, min_size=1, max_size=8), st.booleans()),
                    min_size=1, max_size=5)


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=_BATCHES, pick=st.integers(0, 10), vacuum=st.booleans())
def test_erase_is_exactly_the_partition_out_of_any_history(tmp_path_factory, batches, pick,
                                                            vacuum) -> None:
    """Random batches, refreshes after some of them (views may lag at the erase): the erase
    takes out exactly the partition's events, every other seq stays, the views then equal a
    fresh fold of what is left, and doctor accepts exactly the erased ranges."""
    lake = el.Lake.open(tmp_path_factory.mktemp("prop") / "lake", views=VIEWS)
    for number, (events, refresh) in enumerate(batches):
        lake.append([{"type": kind, "partition": partition,
                      "payload": ({"target": f"k{value}", "value": value} if kind == "set"
                                  else {"amount": value, "note": f"n{value}"})}
                     for partition, kind, value in events], producer="h", batch_no=number)
        if refresh:
            lake.materialize()
    before = lake.events().collect()
    present = sorted(set(before["partition_id"].to_list()))
    target = present[pick % len(present)]
    seqs = before.filter(pl.col("partition_id") == target)["seq"].to_list()
    result = lake.erase(target, reason="property", vacuum=vacuum)
    assert result.events == len(seqs) and result.seq_ranges == seq_ranges(seqs)
    assert lake.events().collect().equals(before.filter(pl.col("partition_id") != target))
    lake.materialize()
    for view in lake.views.values():
        assert verify_view(lake, view).ok
        assert target not in lake.scan(view.name).collect()["partition_id"].to_list()
    report = doctor(lake)
    assert report.ok, [str(p) for p in report.problems]
    assert report.erased == result.seq_ranges


def test_erase_without_vacuum_leaves_time_travel_until_vacuum(tmp_path: Path) -> None:
    lake = _lake(tmp_path / "lake")
    old = lake.log.snapshot().version
    result = lake.erase(ERASED, reason="test")
    assert result.retained and not result.vacuumed
    assert _files_holding(tmp_path / "lake", MARKER)
    # Time travel to the version before the erase still reads p.
    travelled = lake.events(snapshot=lake.log.snapshot(version=old)).collect()
    assert travelled.filter(pl.col("partition_id") == ERASED).height == 16
    assert lake.events(partition=ERASED).collect().is_empty()
    # Naming the partition again with vacuum deletes what is left of it.
    again = lake.erase(ERASED, reason="vacuum now", vacuum=True)
    assert again.events == 0 and again.vacuumed
    assert _files_holding(tmp_path / "lake", MARKER) == []
    assert doctor(lake).ok


def test_the_change_feed_shows_the_erase_as_deletes(tmp_path: Path) -> None:
    lake = _lake(tmp_path / "lake")
    feed_before = lake.changes("totals").collect()
    lake.erase(ERASED, reason="test")
    feed = lake.changes("totals").collect()
    new = feed.slice(feed_before.height)
    assert set(new["change"].to_list()) == {"delete"}
    assert set(new["partition_id"].to_list()) == {ERASED}
    assert new["version"].n_unique() == 1  # one commit
    # A vacuum deletes the files the feed's history (and a restore) would read.
    log_version = lake.log.snapshot().version - 1
    lake.erase(ERASED, reason="vacuum", vacuum=True)
    with pytest.raises(el.ChangesUnavailableError, match="removed by vacuum"):
        lake.changes("totals").collect()
    with pytest.raises(el.RestoreError, match="deleted by a vacuum"):
        lake.restore(version=log_version)


def test_reappend_starts_from_an_empty_state(tmp_path: Path) -> None:
    lake = _lake(tmp_path / "lake")
    lake.erase(ERASED, reason="test")
    lake.append([{"type": "set", "partition": ERASED,
                  "payload": {"target": "fresh", "value": 1}}])
    lake.materialize()
    assert lake.state(ERASED) == {"fresh": 1}
    rows = lake.scan("totals").filter(pl.col("partition_id") == ERASED).collect()
    assert rows["n"].to_list() == [1]
    assert all(verify_view(lake, view).ok for view in lake.views.values())
    assert doctor(lake).ok


def test_an_append_and_refresh_during_the_erase_are_erased_too(tmp_path: Path,
                                                                monkeypatch) -> None:
    lake = _lake(tmp_path / "lake")
    others = lake.events().collect().filter(pl.col("partition_id") != ERASED)
    views_before = _views(lake, without=ERASED)
    real = erase_module.commit_on
    raced = []

    def racing(storage, table, snap, commit, **kwargs):
        if table == "events" and not raced:
            # Another writer lands events of the partition and a refresh folds them, after
            # the erase read the log and before its commit.
            raced.append(lake.append([{"type": "set", "partition": ERASED,
                                       "payload": {"target": "late", "value": MARKER}}]))
            lake.materialize()
        return real(storage, table, snap, commit, **kwargs)

    monkeypatch.setattr(erase_module, "commit_on", racing)
    result = lake.erase(ERASED, reason="race", vacuum=True)
    late = raced[0].first_seq
    assert result.events == 17 and result.seq_ranges[-1] == (late, late)
    assert lake.events().collect().equals(others)
    assert _views(lake) == views_before
    assert all(verify_view(lake, view).ok for view in lake.views.values())
    assert doctor(lake).ok
    assert _files_holding(tmp_path / "lake", MARKER) == []


def test_lookalike_names_are_never_touched(tmp_path: Path) -> None:
    lake = _lake(tmp_path / "lake")
    before = lake.events().collect()
    for name in ["p  ", "p1 ", "p x%", "Q", " p"]:
        with pytest.raises(el.UnknownPartitionError) as caught:
            lake.erase(name, reason="test")
        assert repr(name) in str(caught.value) and caught.value.partition == name
    assert lake.events().collect().equals(before)
    lake.erase("p x%?é", reason="test", vacuum=True)
    after = lake.events().collect()
    assert after.equals(before.filter(pl.col("partition_id") != "p x%?é"))
    assert not (tmp_path / "lake" / "events" / "partition_id=p%20x%25%3F%C3%A9").exists()
    with pytest.raises(el.UnknownPartitionError, match="an earlier erase removed it"):
        lake.erase("p x%?é", reason="again")
    with pytest.raises(el.InvalidArgumentError, match="reason"):
        lake.erase(ERASED, reason=" ")


def test_doctor_accepts_only_the_recorded_gaps(tmp_path: Path) -> None:
    lake = _lake(tmp_path / "lake")
    lake.erase(ERASED, reason="test")
    assert doctor(lake).ok
    # Take another partition's events out without a record: that gap is damage.
    erase_module._erase_log(lake, "P", "unrecorded", lambda seqs: None)
    report = doctor(lake)
    assert [p.kind for p in report.damage] == ["seq"]
    assert "outside the erased ranges" in report.damage[0].detail


def test_an_unfinished_erase_is_reported_and_finished_by_doctor_fix(tmp_path: Path) -> None:
    lake = _lake(tmp_path / "lake")
    views_before = _views(lake, without=ERASED)
    # The first view table's commit lands, then the erase stops (as a crash would).
    tables = erase_module.view_tables(lake.storage)
    erase_module.write_record(lake.storage, erase_id="x1", state="started", partition=ERASED,
                              reason="half", ranges=seq_ranges(
                                  lake.events(partition=ERASED).collect()["seq"]),
                              vacuum=True)
    erase_module._erase_view_table(lake.storage, tables[0], ERASED, "x1")
    report = doctor(lake)
    assert [p.kind for p in report.damage] == ["erase"]
    assert "did not finish" in report.damage[0].detail
    fixed = doctor(lake, fix=True)
    assert fixed.ok and fixed.erasures_finished == (ERASED,)
    assert lake.events(partition=ERASED).collect().is_empty()
    assert _views(lake) == views_before
    assert _files_holding(tmp_path / "lake", MARKER) == []  # its record asked for vacuum
    assert [r.state for r in read_records(lake.storage)] == ["started", "done"]


def test_cli_erase(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "lake"
    _lake(root)
    assert main(["--lake", str(root), "erase", ERASED, "--reason", "cli"]) == 1
    assert "refusing to erase without confirmation" in capsys.readouterr().err
    code = main(["--lake", str(root), "--json", "erase", ERASED, "--reason", "cli", "--yes"])
    assert code == EXIT_OK
    shown = json.loads(capsys.readouterr().out)
    assert shown["events"] == 16 and shown["retained"] and not shown["vacuumed"]
    assert main(["--lake", str(root), "erase", ERASED, "--reason", "cli", "--yes"]) == 1
    assert "an earlier erase removed it" in capsys.readouterr().err
    # Named again with --vacuum, an erased partition's old files go.
    code = main(["--lake", str(root), "erase", ERASED, "--reason", "cli", "--yes", "--vacuum"])
    assert code == EXIT_OK and "old files deleted" in capsys.readouterr().out
    assert _files_holding(root, MARKER) == []
    assert main(["--lake", str(root), "doctor"]) == EXIT_OK
    assert "seq is gap-free except 8 erased ranges" in capsys.readouterr().err
    assert main(["--lake", str(root), "erase", "nope", "--reason", "x", "--yes"]) == 1
    assert "no partition 'nope'" in capsys.readouterr().err


# -- SIGKILL during an erase -----------------------------------------------------------------

# The erase's commits (`call:erase`) are: 1 views/document, 2 views/totals, 3 the event log;
# the inotify faults fire at a view table's temporary and final commit files and the log's
# commit file, and a timer anywhere (records, rewrites, vacuum).
KILL_POINTS = ["call:erase:before:1", "call:erase:after:1", "fs:views:log-temp:1",
               "fs:views:log-commit:2", "call:erase:before:3", "fs:events:log-commit:1",
               "call:erase:after:3", "timer:0.3"]
CRASH_ERASED = "p0"


def _faults_lake(root: Path) -> el.Lake:
    from tests import faults

    lake = faults.open_lake(root)
    for number in range(40):
        lake.append(faults.batch_events("seed", number), producer="seed", batch_no=number)
        if number % 10 == 9:
            lake.materialize()
    return lake


def _state(lake: el.Lake) -> tuple[pl.DataFrame, dict[str, list[dict]]]:
    return lake.events().collect(), _views(lake)


@pytest.mark.parametrize("fault", KILL_POINTS)
def test_sigkill_during_erase_leaves_old_new_or_a_reported_unfinished_erase(
        tmp_path: Path, fault: str) -> None:
    from tests import faults

    root = tmp_path / "lake"
    lake = _faults_lake(root)
    events, views = _state(lake)
    new_events = events.filter(pl.col("partition_id") != CRASH_ERASED)
    new_views = _views(lake, without=CRASH_ERASED)
    ack = tmp_path / "acks.jsonl"
    child = faults.start(faults.eraser, str(root), str(ack), fault, CRASH_ERASED, True,
                         ack_path=ack, fault=fault)
    code = child.join(120)
    if code is None:
        child.kill()
        pytest.fail(f"erase with fault {fault} hung")
    assert code in (0, -9), f"erase child with fault {fault} exited {code}"
    if not fault.startswith("timer"):
        assert code == -9, f"the fault {fault} never fired"
    lake = faults.open_lake(root)
    after_events, after_views = _state(lake)
    # Each table on its own is old or new, never half rewritten.
    assert after_events.equals(events) or after_events.equals(new_events), fault
    for name in views:
        assert after_views[name] in (views[name], new_views[name]), (fault, name)
    old = after_events.equals(events) and after_views == views
    new = after_events.equals(new_events) and after_views == new_views
    report = doctor(lake)
    unfinished = [p for p in report.damage if p.kind == "erase"]
    assert [p for p in report.damage if p.kind != "erase"] == [], fault
    if not (old or new):
        assert unfinished, f"{fault}: a mixed state that doctor does not report"
    if code == 0:
        assert new and not unfinished, fault
    # Running it again (or doctor --fix) finishes the job.
    if unfinished and fault.startswith("call"):
        assert doctor(lake, fix=True, min_age_seconds=0).erasures_finished == (CRASH_ERASED,)
    else:
        lake.erase(CRASH_ERASED, reason="again", vacuum=True)
    final_events, final_views = _state(lake)
    assert final_events.equals(new_events) and final_views == new_views, fault
    finished = doctor(lake, fix=True, min_age_seconds=0)
    assert finished.clean, [str(p) for p in finished.problems]
    assert all(verify_view(lake, view).ok for view in lake.views.values())
    for table in ["events", *erase_module.view_tables(lake.storage)]:
        assert erase_module._dead_files_holding(lake.storage, table, CRASH_ERASED) == []


# -- on every backend -------------------------------------------------------------------------


def test_erase_on_every_backend_removes_the_partition_and_its_files(backend) -> None:
    """The backend suite (tests/backends.py): a lake on S3 erases as a local one does."""
    lake = backend.open(views=VIEWS)
    for number, events in enumerate(_batches()):
        lake.append(events, producer="t", batch_no=number)
        if number in (2, 5):
            lake.materialize()
    lake.materialize()
    before = lake.events().collect()
    views_before = _views(lake, without=ERASED)
    result = lake.erase(ERASED, reason="s3", vacuum=True)
    assert result.events == 16 and result.vacuumed
    assert lake.events().collect().equals(before.filter(pl.col("partition_id") != ERASED))
    assert _views(lake) == views_before
    for table in ["events", *erase_module.view_tables(lake.storage)]:
        assert erase_module._dead_files_holding(lake.storage, table, ERASED) == []
    assert all(verify_view(lake, view).ok for view in lake.views.values())
    assert doctor(lake).ok
