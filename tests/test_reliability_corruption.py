"""Corruption: damaged data files and Delta logs give clear errors naming the file, never
silently wrong answers; `doctor` finds each kind of damage; views are rebuilt from the log."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

import eventlake as el
from eventlake.cli import main
from eventlake.errors import CorruptLakeError
from eventlake.ops.doctor import doctor
from eventlake.ops.verify import verify_view
from eventlake.store.viewstore import ViewStore, bucket_of


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
    from eventlake.store import deltalog, storage

    storage._open_tables.__dict__.clear()
    deltalog.forget_logs()
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


def _view_file(lake: el.Lake, partition: str = "p0") -> str:
    """The document view's file holding the partition's row."""
    store = ViewStore(lake.storage, lake.view("document"))
    snap = store.snapshot()
    bucket = bucket_of(partition, store.buckets(snap))
    (path,) = snap.plan(equals={"bucket": [bucket]}).files
    return path


# Every ad hoc read path, by the table it reads: (table, read) -> a call reading all of it.
# The lazy paths also say how to build the frame without collecting it.
LAZY = {
    ("events", "events"): lambda lake: lake.events(),
    ("events", "events-partition"): lambda lake: lake.events("p0", since_seq=0),
    ("view", "scan"): lambda lake: lake.scan("document"),
}
READS = {
    **{key: (lambda lake, build=build: build(lake).collect()) for key, build in LAZY.items()},
    ("events", "sql"): lambda lake: lake.sql("select * from events").fetchall(),
    ("view", "sql"): lambda lake: lake.sql("SELECT count(*) FROM Document").fetchall(),
}
TABLE = {"events": "'events'", "view": "'views/document'"}


def _damage(lake: el.Lake, table: str, damage: str) -> str:
    target = _event_file(lake) if table == "events" else _view_file(lake)
    DAMAGE[damage][0](target)
    return target


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("read", sorted(READS), ids="-".join)
def test_every_read_path_names_the_damaged_file(built: el.Lake, read: tuple[str, str],
                                                damage: str) -> None:
    """`lake.events`, `lake.scan` and `lake.sql` raise `CorruptLakeError` naming the file
    and its table, one line, instead of a Polars or DuckDB error without the file."""
    table, _ = read
    target = _damage(built, table, damage)
    lake = _fresh(built)
    with pytest.raises(CorruptLakeError) as info:
        READS[read](lake)
    text = str(info.value)
    assert info.value.path == target, text
    assert target in text and TABLE[table] in text and "eventlake doctor" in text
    assert "\n" not in text
    if read in LAZY:
        # Building the frame already fails: no LazyFrame over a damaged file is handed out.
        with pytest.raises(CorruptLakeError):
            LAZY[read](lake)


CLI_READS = {
    ("events", "events"): ["events", "--limit", "0"],
    ("events", "sql"): ["sql", "select count(*) from events"],
    ("view", "sql"): ["sql", "select * from document", "--format", "json"],
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("read", sorted(CLI_READS), ids="-".join)
def test_cli_reads_name_the_damaged_file(built: el.Lake, read: tuple[str, str], damage: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    table, _ = read
    target = _damage(built, table, damage)
    lake = _fresh(built)
    assert main([*CLI_READS[read], "--lake", str(lake.root)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: damaged lake: "), captured.err
    assert target in lines[0] and TABLE[table] in lines[0]


def _answers(lake: el.Lake) -> dict[str, object]:
    """What every read path answers; a `CorruptLakeError` is an answer too (with its file)."""
    calls = {
        "events": lambda: lake.events().collect().rows(),
        "events p0": lambda: lake.events("p0").collect().rows(),
        "events p1": lambda: lake.events("p1").collect().rows(),
        "events since 0": lambda: lake.events(since_seq=0).collect().rows(),
        "events until 1": lambda: lake.events(until_seq=1).collect().rows(),
        "events after 1": lambda: lake.events(since_seq=1).collect().rows(),
        "events count": lambda: lake.events().select(pl.len()).collect().item(),
        "scan": lambda: sorted(lake.scan("document").collect().rows()),
        "scan count": lambda: lake.scan("document").select(pl.len()).collect().item(),
        "scan p1": lambda: lake.scan("document").filter(
            pl.col("partition_id") == "p1").collect().rows(),
        "sql events": lambda: lake.sql("select count(*), sum(seq) from events").fetchall(),
        "sql events p1": lambda: lake.sql(
            "select seq from events where partition_id = 'p1' order by seq").fetchall(),
        "sql view": lambda: lake.sql(
            "select partition_id, state from document order by 1").fetchall(),
        "sql view p1": lambda: lake.sql(
            "select state from document where partition_id = 'p1'").fetchall(),
        "state p0": lambda: lake.state("p0"),
        "state p0 at 1": lambda: lake.state("p0", as_of_seq=1),
        "state p1": lambda: lake.state("p1"),
    }
    answers: dict[str, object] = {}
    for name, call in calls.items():
        try:
            answers[name] = call()
        except CorruptLakeError as exc:
            answers[name] = ("CorruptLakeError", exc.path)
    return answers


@pytest.mark.parametrize("table", ["events", "view"])
def test_a_deleted_file_never_gives_fewer_rows(built: el.Lake, table: str) -> None:
    """After a data file is deleted, each read either answers exactly as before or fails
    naming that file: never a silently shorter answer."""
    healthy = _answers(built)
    assert not any(isinstance(a, tuple) for a in healthy.values())
    target = _damage(built, table, "deleted")
    damaged = _answers(_fresh(built))
    failed = {name for name, answer in damaged.items() if answer != healthy[name]}
    for name in failed:
        assert damaged[name] == ("CorruptLakeError", target), (name, damaged[name])
    # The reads that need the file are among those that failed; the rest answered exactly.
    if table == "events":
        needed = {"events", "events p0", "events since 0", "events until 1", "events count",
                  "sql events", "sql events p1"}
    else:
        needed = {"scan", "scan count", "scan p1", "sql view", "sql view p1"}
    assert needed <= failed
    assert "state p1" not in failed and "events p1" not in failed


def _log_file(lake: el.Lake, version: int) -> Path:
    return Path(lake.storage.local_path("events", "_delta_log", f"{version:020d}.json"))


def damage_log_entry(entry: Path, damage: str) -> None:
    if damage == "truncated":
        truncate(str(entry))
    elif damage == "garbage":
        entry.write_text("garbage{\n")
    else:
        entry.unlink()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "deleted"])
def test_damaged_log_entry_is_named(built: el.Lake, damage: str) -> None:
    entry = _log_file(built, 2)
    damage_log_entry(entry, damage)
    lake = _fresh(built)
    for call in (lambda: lake.state("p0", as_of_seq=1), lambda: lake.materialize(),
                 lambda: lake.append([{"type": "t", "partition": "p", "payload": {}}]),
                 lambda: lake.last_seq(), lambda: lake.events().collect(),
                 lambda: lake.sql("select * from events").fetchall()):
        with pytest.raises(CorruptLakeError) as info:
            call()
        assert info.value.path == str(entry), info.value
        assert str(entry) in str(info.value)
    report = doctor(lake)
    assert [(p.kind, p.path) for p in report.problems] == [("log", str(entry))]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "deleted"])
def test_damaged_view_log_entry_is_named_by_scan_and_sql(built: el.Lake, damage: str) -> None:
    entry = Path(built.storage.local_path("views", "document", "_delta_log",
                                          f"{2:020d}.json"))
    assert entry.with_name(f"{3:020d}.json").exists()  # a commit in the middle of the log
    damage_log_entry(entry, damage)
    lake = _fresh(built)
    for call in (lambda: lake.scan("document").collect(),
                 lambda: lake.sql("select * from document").fetchall()):
        with pytest.raises(CorruptLakeError) as info:
            call()
        assert info.value.path == str(entry) and str(entry) in str(info.value)
    # The state falls back to the event log, exactly, and says so naming the damaged entry.
    with pytest.warns(el.StorageWarning, match="folded from the event log alone") as warned:
        assert lake.state("p0") == {"v": 3}
    assert str(entry) in str(warned[0].message)


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
