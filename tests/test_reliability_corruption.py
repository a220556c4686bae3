"""Corruption: damaged data files and Delta logs give clear errors naming the file, never
silently wrong answers; `doctor` finds each kind of damage; views are rebuilt from the log."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import eventlake as el
from eventlake.cli import main
from eventlake.doctor import doctor
from eventlake.errors import CorruptLakeError
from eventlake.verify import verify_view
from eventlake.viewstore import ViewStore, bucket_of


@pytest.fixture
def built(tmp_path: Path) -> el.Lake:
    lake = el.Lake.open(tmp_path / "lake")
    for batch in range(4):
        lake.append([{"type": "set", "partition": f"p{j}",
                      "payload": {"target": "v", "value": batch}} for j in range(3)],
                    producer="t", batch_no=batch)
    lake.materialize()
    return lake


def _event_file(lake: el.Lake, partition: str = "p0") -> str:
    """The file holding the partition's first event."""
    (path,) = lake.log.plan(partitions=[partition], until_seq=1).files
    return path


def _fresh(lake: el.Lake) -> el.Lake:
    """The same lake through new table objects (as another process would see it)."""
    from eventlake import storage

    storage._open_tables.__dict__.clear()
    return el.Lake.open(lake.root)


def truncate(path: str) -> None:
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])


def garble(path: str) -> None:
    size = os.path.getsize(path)
    Path(path).write_bytes(bytes((i * 7 + 3) % 256 for i in range(size)))


DAMAGE = {"truncated": (truncate, "size"), "garbage": (garble, "unreadable"),
          "deleted": (os.remove, "missing")}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_event_file_is_named_by_reads_and_doctor(built: el.Lake, damage: str,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    target = _event_file(built)
    action, kind = DAMAGE[damage]
    action(target)
    lake = _fresh(built)
    # Reads that need the file fail naming it ...
    with pytest.raises(CorruptLakeError) as info:
        lake.materialize(rebuild=True)
    assert info.value.path == target and target in str(info.value)
    with pytest.raises(CorruptLakeError) as info:
        lake.state("p0", as_of_seq=2)
    assert info.value.path == target
    # ... reads that do not need it still answer, exactly.
    assert lake.state("p1") == {"v": 3}
    report = doctor(lake)
    assert (report.damage[0].kind, report.damage[0].path) == (kind, target)
    assert not report.ok and not report.orphans
    # --quick checks presence and sizes only; a same-size garbage file needs the footer read.
    quick = ["--quick"] if kind != "unreadable" else []
    assert main(["doctor", "--lake", str(lake.root), *quick]) == 3
    out = capsys.readouterr().out
    assert target in out
    # --fix never deletes or "repairs" committed data.
    assert main(["doctor", "--lake", str(lake.root), "--fix", "--min-age", "0"]) == 3


def _log_file(lake: el.Lake, version: int) -> Path:
    return Path(lake.storage.local_path("events", "_delta_log", f"{version:020d}.json"))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "deleted"])
def test_damaged_log_entry_is_named(built: el.Lake, damage: str) -> None:
    entry = _log_file(built, 2)
    if damage == "truncated":
        truncate(str(entry))
    elif damage == "garbage":
        entry.write_text("garbage{\n")
    else:
        entry.unlink()
    lake = _fresh(built)
    for call in (lambda: lake.state("p0", as_of_seq=1), lambda: lake.materialize(),
                 lambda: lake.append([{"type": "t", "partition": "p", "payload": {}}]),
                 lambda: lake.last_seq()):
        with pytest.raises(CorruptLakeError) as info:
            call()
        assert info.value.path == str(entry), info.value
        assert str(entry) in str(info.value)
    report = doctor(lake)
    assert [(p.kind, p.path) for p in report.problems] == [("log", str(entry))]


def test_damaged_view_bucket_is_named_and_a_rebuild_repairs_it(built: el.Lake) -> None:
    store = ViewStore(built.storage, built.view("document"))
    snap = store.snapshot()
    bucket = bucket_of("p0", store.buckets(snap))
    (target,) = snap.plan(equals={"bucket": [bucket]}).files
    truncate(target)
    lake = _fresh(built)
    # The state is still exact: a damaged checkpoint falls back to the log.
    assert lake.state("p0") == {"v": 3}
    report = doctor(lake)
    assert [(p.table, p.kind, p.path) for p in report.damage] == [
        ("views/document", "size", target)]
    lake.append([{"type": "set", "partition": "p0", "payload": {"target": "v", "value": 9}}])
    with pytest.raises(CorruptLakeError) as info:
        lake.materialize()
    assert info.value.path == target
    # A rebuild reads only the log and writes a new generation: the view is whole again.
    lake.materialize(rebuild=True)
    assert verify_view(lake, lake.view("document")).ok
    assert lake.state("p0") == {"v": 9}
    assert not doctor(lake).damage


def test_restore_a_view_table_then_rebuild(built: el.Lake) -> None:
    """The README's recipe for a damaged view table: restore it, then rebuild the view.

    Delta's restore brings back files, not app transactions: the restored view still claims
    its newest watermark, so a plain refresh is not enough (verify says so); a rebuild is.
    """
    from deltalake import DeltaTable

    store = ViewStore(built.storage, built.view("document"))
    good_version = store.snapshot().version
    built.append([{"type": "set", "partition": "p0", "payload": {"target": "v", "value": 7}}],
                 producer="t", batch_no=99)
    built.materialize()
    DeltaTable(built.storage.uri(store.name)).restore(good_version)
    lake = _fresh(built)
    assert not verify_view(lake, lake.view("document")).ok
    lake.materialize(rebuild=True)
    assert lake.state("p0") == {"v": 7}
    assert verify_view(lake, lake.view("document")).ok
    assert doctor(lake).ok


def test_restoring_the_event_log_is_flagged_not_silent(built: el.Lake) -> None:
    """A plain Delta restore of the event log keeps the seq app transaction at its newest
    value: the rows then miss seqs the log claims. doctor reports it (README: do not restore
    the event log this way)."""
    from deltalake import DeltaTable

    good_version = built.log.snapshot().version
    built.append([{"type": "set", "partition": "p0", "payload": {"target": "v", "value": 7}}],
                 producer="t", batch_no=99)
    DeltaTable(built.storage.uri("events")).restore(good_version)
    lake = _fresh(built)
    report = doctor(lake)
    assert [p.kind for p in report.damage] == ["seq"]
    assert "missing" in report.damage[0].detail


def test_healthy_lake_is_ok(built: el.Lake, capsys: pytest.CaptureFixture[str]) -> None:
    report = doctor(built)
    assert report.ok and report.files_checked > 0 and report.tables == ("events",
                                                                        "views/document")
    assert main(["doctor", "--lake", str(built.root), "--json"]) == 0
    assert '"ok": true' in capsys.readouterr().out
