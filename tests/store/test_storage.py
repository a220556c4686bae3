"""The storage seam's handling of failures of the storage itself (eventlake/storage.py and
eventlake/storage_failures.py): how an error is recognized, and a real object-store outage.

A full disk is tested for real in tests/store/test_disk_full.py, forked processes in
tests/store/test_fork.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake.exceptions import CommitFailedError, DeltaError

import eventlake as el
from eventlake.cli._app import _one_line, _reported
from eventlake.errors import (
    CorruptLakeError,
    EventlakeError,
    ForkedProcessError,
    StorageFullError,
    StoragePanicError,
    StorageUnavailableError,
)
from eventlake.ops.doctor import doctor
from eventlake.ops.verify import verify_view
from eventlake.store.storage import Storage, retry_commit
from eventlake.store.storage_failures import one_line, storage_failure
from tests.s3server import free_ports, s3_server

REPO = Path(__file__).resolve().parents[2]
# What delta-rs's errors look like: nested causes on arrow lines, in ANSI red.
NESTED = ("Generic LocalFileSystem error\n          \x1b[31m\u21b3\x1b[0m Unable to copy data to "
          "file\n           \x1b[31m\u21b3\x1b[0m No space left on device (os error 28)\n")


def test_one_line_drops_colour_codes_and_cause_arrows():
    assert one_line(NESTED) == ("Generic LocalFileSystem error; Unable to copy data to file; "
                                "No space left on device (os error 28)")
    # Only the arrows go: a message may start with an option's dashes.
    assert one_line("--workers must be at least 1\n  -> see --help") == (
        "--workers must be at least 1; -> see --help")


def test_a_full_disk_is_recognized_from_the_error_or_the_errno(tmp_path):
    storage = Storage.at(tmp_path / "lake")
    path = storage.uri("events")
    for exc in (OSError(NESTED), DeltaError("Failed to parse parquet: External: " + NESTED),
                OSError(28, "No space left on device")):
        error = storage_failure(storage, exc, path=path, action="writing",
                                note="nothing was committed")
        assert isinstance(error, StorageFullError), exc
        assert str(error) == f"no space left on device writing {path}; nothing was committed"
        assert error.committed is False and error.errno == 28
    # Other errors are left alone: the disk here has room, the cause is something else.
    for exc in (OSError(13, "Permission denied"), DeltaError("Schema mismatch"),
                ValueError("bad input"), CommitFailedError("lost the race")):
        assert storage_failure(storage, exc, path=path, action="writing") is None, exc


def test_an_object_store_that_does_not_answer_is_recognized(tmp_path):
    (port,) = free_ports(1)  # nothing listens there
    storage = Storage.at("s3://bucket/lake", {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                                              "AWS_SECRET_ACCESS_KEY": "s3cr3t-value"})
    refused = OSError("Kernel error -> Generic S3 error\n  \u21b3 HTTP error\n  \u21b3 error "
                      "sending request\n  \u21b3 tcp connect error\n  \u21b3 Connection refused "
                      "(os error 111)")
    error = storage_failure(storage, refused, path="s3://bucket/lake/events", action="writing",
                            note="nothing was committed")
    assert isinstance(error, StorageUnavailableError) and error.transient
    assert str(error) == (f"the object store at http://127.0.0.1:{port} did not answer "
                          "(Connection refused (os error 111); writing "
                          "s3://bucket/lake/events); nothing was committed")
    # A vague error: the store is asked whether it answers at all (it does not).
    vague = storage_failure(storage, DeltaError("Generic S3 error"), path="s3://bucket/lake",
                            action="reading")
    assert isinstance(vague, StorageUnavailableError) and "(no connection; reading" in str(vague)
    assert vague.committed is None
    # An answer that is an error is not an outage.
    assert storage_failure(storage, ValueError("bad request"), path="s3://bucket/lake",
                           action="reading") is None


def test_a_read_failing_inside_a_commit_attempt_says_nothing_was_committed(tmp_path):
    storage = Storage.at(tmp_path / "lake")
    read_failure = storage_failure(storage, OSError(28, "No space left on device"),
                                   path="x", action="reading")
    assert isinstance(read_failure, StorageFullError) and read_failure.committed is None

    def attempt():
        raise read_failure

    with pytest.raises(StorageFullError) as info:
        retry_commit(attempt, what="append")
    assert str(info.value) == "no space left on device reading x; nothing was committed"
    assert info.value.committed is False


# pyo3 raises a Rust panic as `pyo3_runtime.PanicException`, a BaseException. A panic other
# than the fork check cannot be provoked on purpose, so this one has pyo3's shape.
PanicException = type("PanicException", (BaseException,), {"__module__": "pyo3_runtime"})


def test_panics_become_one_line_eventlake_errors(tmp_path):
    storage = Storage.at(tmp_path / "lake")
    panic = PanicException("index out of bounds: the len is 0\nbut the index is 3")
    error = storage_failure(storage, panic, path="events", action="reading")
    assert isinstance(error, StoragePanicError) and isinstance(error, EventlakeError)
    assert str(error) == ("a Rust library (deltalake) panicked reading events: index out of "
                          "bounds: the len is 0; but the index is 3")
    forked = storage_failure(storage, PanicException(
        "Forked process detected - current PID is 12 but the tokio runtime was created by 7. "
        "The tokio runtime does not support forked processes"), path="events", action="reading")
    assert isinstance(forked, ForkedProcessError) and forked.parent == 7
    # KeyboardInterrupt is never a storage failure.
    assert storage_failure(storage, KeyboardInterrupt(), path="events", action="reading") is None


def test_the_cli_shows_raw_deltalake_errors_and_panics_on_one_line():
    raw = DeltaError("Failed to parse parquet: External: " + NESTED)
    assert _reported(raw) and _reported(PanicException("boom"))
    assert not _reported(ValueError("a bug"))
    assert _one_line(raw) == ("Failed to parse parquet: External: Generic LocalFileSystem "
                              "error; Unable to copy data to file; No space left on device "
                              "(os error 28)")
    assert _one_line(PanicException("boom\nmore")) == (
        "a Rust library (deltalake) panicked: boom; more")


# -- a real object store that stops answering ------------------------------------------------


def _weed_pid(port: str) -> int:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                arguments = handle.read().split(b"\0")
        except OSError:
            continue
        if f"-s3.port={port}".encode() in arguments:
            return int(entry)
    raise AssertionError(f"no weed server on port {port}")


def _when_readable(uri: str, options: dict[str, str], timeout: float = 90.0) -> el.Lake:
    """The lake once the restarted server serves its objects: its S3 gateway answers before
    its volumes are back (500 Internal Server Error for a few seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            lake = el.Lake.open(uri, storage_options=options)
            lake.events().collect()
            return lake
        except Exception:  # the seam's StorageUnavailableError, or Polars's read error
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


EVENTS = [{"type": "set", "partition": f"p{i % 3}", "event_id": f"e{i}",
           "payload": {"target": "n", "value": i}} for i in range(30)]


@pytest.mark.integration
def test_an_object_store_outage_is_one_line_and_the_lake_is_intact_after_restart(tmp_path):
    """SeaweedFS on loopback is killed mid-run: the Python API and the CLI each say, on one
    line and without a credential, that the store did not answer and nothing was committed;
    after a restart on the same data the lake holds exactly what was committed before."""
    work = tmp_path / "s3"
    with s3_server(work, secret_key="outage-secret-key") as server:
        uri = server.lake_uri("outage")
        lake = el.Lake.open(uri, storage_options=server.options())
        lake.append(EVENTS[:20], producer="t", batch_no=1)
        lake.materialize()
        before = lake.events().collect()
        state = lake.state("p1")
        os.kill(_weed_pid(server.url.rsplit(":", 1)[1]), signal.SIGKILL)
        time.sleep(0.2)

        with pytest.raises(StorageUnavailableError) as info:
            lake.append(EVENTS[20:], producer="t", batch_no=2)
        message = str(info.value)
        assert message.startswith(f"the object store at {server.url} did not answer (")
        assert message.endswith("; nothing was committed") and "\n" not in message
        assert "outage-secret-key" not in message and info.value.transient

        inbox = tmp_path / "more.jsonl"
        inbox.write_text("".join(json.dumps(e) + "\n" for e in EVENTS[20:]), encoding="utf-8")
        done = subprocess.run([sys.executable, "-m", "eventlake.cli", "ingest", str(inbox),
                               "--lake", uri], capture_output=True, text=True, timeout=300,
                              cwd=REPO, env={**os.environ, **server.env()})
        assert done.returncode == 1
        assert len(done.stderr.splitlines()) == 1, done.stderr
        assert done.stderr.startswith(f"error: the object store at {server.url} did not "
                                      "answer (")
        assert "outage-secret-key" not in done.stderr and "\x1b" not in done.stderr

    with s3_server(work, secret_key="outage-secret-key") as again:  # the same data
        lake = _when_readable(uri, again.options())
        assert lake.events().collect().equals(before)
        assert lake.state("p1") == state
        assert doctor(lake).ok
        result = lake.append(EVENTS[20:], producer="t", batch_no=2)
        assert (result.first_seq, result.duplicate) == (21, False)
        lake.materialize()
        assert verify_view(lake, lake.view("document")).ok


# -- reads that cost what they read: the check and file-list caches -----------------------------


def _set_events(batch: int, partitions: int = 3) -> list[dict]:
    return [{"type": "set", "partition": f"p{j}", "payload": {"target": "v", "value": batch}}
            for j in range(partitions)]


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The data files `Snapshot.check` opens, in order (the real check runs)."""
    from eventlake.store import storage

    seen: list[str] = []
    check = storage._file_damage

    def counting(path: str, size: int | None) -> str | None:
        seen.append(path)
        return check(path, size)

    monkeypatch.setattr(storage, "_file_damage", counting)
    return seen


def test_a_file_checked_once_is_not_opened_again_and_a_new_damaged_one_is_named(
        tmp_path: Path, opened: list[str]) -> None:
    from eventlake.store import deltalog

    lake = el.Lake.open(tmp_path / "lake")
    lake.append(_set_events(0))
    lake.append(_set_events(1))
    files = set(lake.log.snapshot().plan().files)
    lake.events().collect()
    assert sorted(opened) == sorted(files)
    opened.clear()
    # Every later read of those files, on any path, opens none of them again.
    lake.events().collect()
    lake.events("p1", since_seq=0).collect()
    lake.sql("select count(*) from events").fetchall()
    assert lake.state("p2") == {"v": 1}
    assert [p for p in opened if p in files] == []
    # A new commit's files are checked, once; a damaged one is named by the read.
    lake.append(_set_events(2))
    added = set(lake.log.snapshot().plan().files) - files
    new = sorted(added)[0]
    Path(new).write_bytes(Path(new).read_bytes()[:20])
    for read in (lambda: lake.events().collect(),
                 lambda: lake.sql("select * from events").fetchall()):
        with pytest.raises(CorruptLakeError) as info:
            read()
        assert info.value.path == new and "bytes where the Delta log says" in str(info.value)
    # The new files were opened, the damaged one by each read, the whole ones once.
    assert set(opened) == added and opened.count(new) == 2 and len(opened) == len(added) + 1
    # A process that reads the log afresh checks every file afresh.
    opened.clear()
    deltalog.forget_logs()
    with pytest.raises(CorruptLakeError):
        el.Lake.open(tmp_path / "lake").events().collect()
    assert set(opened) == files | added


def test_an_old_version_lists_its_files_once(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Snapshots of an older version (delta-rs tables, not the pinned log) share one file
    list per version: delta-rs rebuilds it on every call."""
    from deltalake import DeltaTable

    lake = el.Lake.open(tmp_path / "lake")
    for batch in range(3):
        lake.append(_set_events(batch))
    old = lake.log.snapshot().version - 1
    calls: list[int] = []
    listing = DeltaTable.get_add_actions

    def counting(self: DeltaTable, *args: object, **kwargs: object) -> object:
        calls.append(self.version())
        return listing(self, *args, **kwargs)

    monkeypatch.setattr(DeltaTable, "get_add_actions", counting)
    first = lake.log.snapshot(version=old).add_actions()
    again = lake.log.snapshot(version=old).add_actions()
    assert calls == [old] and again.equals(first)
    assert sorted(first.column("path").to_pylist()) == sorted(
        pa.table(listing(DeltaTable(lake.storage.uri("events"), version=old),
                         flatten=True)).column("path").to_pylist())
    assert lake.events(snapshot=lake.log.snapshot(version=old)).collect().height == 6
    lake.log.snapshot(version=old - 1).add_actions()
    assert calls == [old, old - 1]


# -- decisions that depend on where the lake is ----------------------------------------------


def test_local_and_object_store_roots_answer_what_callers_need(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    monkeypatch.chdir(tmp_path)
    for root in (tmp_path / "lake", f"file://{tmp_path / 'lake'}"):
        local = Storage.at(root)
        assert local.duckdb_reads_files
        assert local.local_home("duckdb") == str(tmp_path / "lake")
        assert local.local_folder("quarantine") == str(tmp_path / "lake" / "quarantine")
    assert not (tmp_path / "lake").exists()
    Storage.at(tmp_path / "lake").ensure_root()
    assert (tmp_path / "lake").is_dir()

    remote = Storage.at("s3://bucket/some/../prefix")
    assert not remote.duckdb_reads_files
    # Local files about a remote lake go under the working directory, by bucket and prefix
    # (never climbing out of it), one kind of file per folder.
    assert remote.local_home("duckdb") == str(tmp_path / "data" / "duckdb" / "bucket" / "some"
                                              / "prefix")
    assert remote.local_folder("quarantine") == str(
        tmp_path / "data" / "quarantine" / "bucket" / "some" / "prefix")
    remote.ensure_root()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lake"]


def test_only_a_latest_local_snapshot_stands_on_the_table_log(tmp_path: Path) -> None:
    lake = el.Lake.open(tmp_path / "lake")
    lake.append(_set_events(0))
    lake.append(_set_events(1))
    latest = lake.log.snapshot()
    assert latest.on_table_log and latest.pinned is not None
    older = lake.log.snapshot(version=latest.version - 1)
    assert not older.on_table_log


@pytest.mark.integration
def test_an_object_store_lake_reaches_duckdb_and_commits_through_delta_rs(tmp_path: Path
                                                                         ) -> None:
    with s3_server(tmp_path / "s3", secret_key="seam-secret-key") as server:
        lake = el.Lake.open(server.lake_uri("seam"), storage_options=server.options())
        lake.append(_set_events(0))
        assert not lake.storage.duckdb_reads_files
        assert not lake.log.snapshot().on_table_log
        # What the answers steer: SQL reads the lake through Polars scans, exactly.
        assert lake.sql("select count(*) from events").fetchall() == [(3,)]
