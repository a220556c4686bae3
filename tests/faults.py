"""Fault injection for the reliability tests: processes that die with SIGKILL mid-write.

A child process (from a fork server that has already imported eventlake, so starting one costs
milliseconds) appends batches with known `(producer, batch_no)` or runs `materialize`, and
writes one acknowledgement line to an ack file after each call returns (`os.write`, so a line
is in the kernel before the next call starts and survives the kill). It dies at a point given by
a fault spec:

- `call:<log|view|relayout|erase>:<before|after>:<n>`: the n-th commit (`commit_on`) of the
  event log (append), of a view table (materialize), of a relayout or of an erase (view
  tables in name order, then the log) kills the process just before
  it runs (its data files are written) or just after it returns (after the commit, before the
  caller sees it);
- `chunk:<n>` (relayout only): a relayout dies once it has written its n-th chunk of files;
- `fs:<events|views>:<data-create|data-close|log-temp|log-commit>:<n>`: an inotify watch kills
  the process at the n-th data file created / completely written, or the n-th temporary commit
  file / commit file appearing in `_delta_log` (inside delta-rs, where Python cannot hook);
- `timer:<seconds>`: a thread kills the process after that long, wherever it is;
- `none`: no fault (the parent may still kill it from outside after a random delay).

`check_lake` then asserts the invariants the reliability tests share.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import os
import random
import signal
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import eventlake as el
from eventlake.model.views import Agg, AggregateView

PARTITIONS = [f"p{i}" for i in range(5)]
TOTALS = AggregateView(name="totals", version=1,
                       aggregates={"n": "count", "amount": Agg("sum", "amount"),
                                   "last_batch": Agg("last", "batch")})
VIEWS = [TOTALS]


def open_lake(root: str | os.PathLike[str]) -> el.Lake:
    return el.Lake.open(root, views=VIEWS)


def batch_size(producer: str, batch_no: int) -> int:
    return random.Random(f"{producer}/{batch_no}").randint(1, 6)


def batch_events(producer: str, batch_no: int) -> list[dict[str, Any]]:
    """The deterministic content of batch `(producer, batch_no)`: 1 to 6 events."""
    rng = random.Random(f"{producer}/{batch_no}")
    n = rng.randint(1, 6)
    events = []
    for i in range(n):
        partition = rng.choice(PARTITIONS)
        if i % 2 == 0:
            events.append({"type": "set", "partition": partition,
                           "event_id": f"{producer}-{batch_no}-{i}",
                           "payload": {"target": f"last.{producer}", "value": batch_no}})
        else:
            events.append({"type": "deposit", "partition": partition,
                           "event_id": f"{producer}-{batch_no}-{i}",
                           "payload": {"amount": rng.randint(1, 100), "batch": batch_no}})
    return events


# -- fault installation (in the child) -------------------------------------------------------


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)  # never reached


def _patch_calls(module: Any, when: str, nth: int) -> None:
    original = module.commit_on
    calls = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == nth and when == "before":
            _die()
        result = original(*args, **kwargs)
        if calls[0] == nth and when == "after":
            _die()
        return result

    module.commit_on = wrapper


_IN_CLOSE_WRITE = 0x8
_IN_MOVED_TO = 0x80
_IN_CREATE = 0x100
_IN_ISDIR = 0x40000000


def _watch_files(root: Path, event: str, nth: int) -> None:
    """Kill this process at the n-th matching file event under `root` (inotify)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = libc.inotify_init1(0)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1 failed")
    mask = _IN_CREATE | _IN_CLOSE_WRITE | _IN_MOVED_TO
    paths: dict[int, Path] = {}

    def add(folder: Path) -> None:
        wd = libc.inotify_add_watch(fd, str(folder).encode(), mask)
        if wd >= 0:
            paths[wd] = folder
        for child in folder.iterdir() if folder.is_dir() else ():
            if child.is_dir():
                add(child)

    add(root)
    seen = [0]
    counted: set[Path] = set()

    def hit(path: Path) -> None:
        if path in counted:  # found by a scan, then its own event came too
            return
        counted.add(path)
        seen[0] += 1
        if seen[0] >= nth:
            _die()

    def matches(folder: Path, name: str, flags: int) -> bool:
        in_log = folder.name == "_delta_log"
        # The local object store writes `<file>.parquet#<n>` and renames it into place.
        if event == "data-create":
            return not in_log and ".parquet" in name and bool(flags & _IN_CREATE)
        if event == "data-close":
            return not in_log and name.endswith(".parquet") and bool(
                flags & (_IN_CLOSE_WRITE | _IN_MOVED_TO))
        is_commit = name.endswith(".json") and name.split(".")[0].isdigit()
        if event == "log-temp":
            # delta-rs writes `<version>.json#<n>`, eventlake `.eventlake-<id>.json.tmp`;
            # either is then linked to `<version>.json`.
            return in_log and ("#" in name or name.endswith(".json.tmp")) and bool(
                flags & _IN_CREATE)
        if event == "log-commit":
            return in_log and is_commit and bool(flags & (_IN_CREATE | _IN_MOVED_TO))
        raise ValueError(f"unknown file event {event!r}")

    def loop() -> None:
        while True:
            data = os.read(fd, 65536)
            offset = 0
            while offset < len(data):
                wd, flags, _cookie, length = struct.unpack_from("iIII", data, offset)
                name = data[offset + 16: offset + 16 + length].split(b"\0", 1)[0].decode()
                offset += 16 + length
                folder = paths.get(wd)
                if folder is None:
                    continue
                if folder == root and name in markers:
                    markers[name].set()
                    continue
                if flags & _IN_ISDIR and flags & _IN_CREATE:
                    add(folder / name)
                    # Files made in a new folder before its watch was added have no event
                    # of their own: count them from the folder (as created and written).
                    for found in sorted((folder / name).rglob("*")):
                        if found.is_file() and matches(found.parent, found.name,
                                                       _IN_CREATE | _IN_CLOSE_WRITE):
                            hit(found)
                    continue
                if matches(folder, name, flags):
                    hit(folder / name)

    # The watch reads its events on a thread of its own: an append or a refresh could commit,
    # and the process exit, before it read the event of a data file. So each commit first
    # drops a marker file and waits until the watch has read up to it (one inotify queue
    # keeps the order): a kill point at a data file always hits before the commit after it.
    markers: dict[str, threading.Event] = {}

    def caught_up() -> None:
        name = f".fault-marker-{os.getpid()}-{len(markers)}-{time.monotonic_ns()}"
        markers[name] = reached = threading.Event()
        (root / name).touch()
        try:
            reached.wait(30)
        finally:
            (root / name).unlink(missing_ok=True)

    # A kill point inside a commit (its log temp file) is an event the commit itself makes,
    # and the commit could finish, and the process exit, before the watch read it: so the
    # watch is also caught up right after each commit, and such a kill is never missed (it
    # lands mid-commit, or just after it).
    from eventlake.engine import relayout
    from eventlake.store import log, viewstore

    for module in (log, viewstore, relayout):
        def waiting(*args: Any, _commit: Any = module.commit_on, **kwargs: Any) -> Any:
            caught_up()
            try:
                return _commit(*args, **kwargs)
            finally:
                caught_up()

        module.commit_on = waiting
    threading.Thread(target=loop, daemon=True).start()


def install_fault(spec: str, root: Path) -> None:
    """Arm the fault `spec` (see the module doc) in this process."""
    parts = spec.split(":")
    if parts[0] == "none":
        return
    if parts[0] == "timer":
        delay = float(parts[1])
        threading.Timer(delay, _die).start()
        return
    if parts[0] == "call":
        from eventlake.engine import relayout
        from eventlake.ops import erase
        from eventlake.store import log, viewstore

        module = {"log": log, "view": viewstore, "relayout": relayout,
                  "erase": erase}[parts[1]]
        _patch_calls(module, parts[2], int(parts[3]))
        return
    if parts[0] == "fs":
        table = root / ("events" if parts[1] == "events" else "views")
        table.mkdir(parents=True, exist_ok=True)
        _watch_files(table, parts[2], int(parts[3]))
        return
    raise ValueError(f"unknown fault {spec!r}")


# -- child processes -------------------------------------------------------------------------


def _ack(fd: int, record: dict[str, Any]) -> None:
    os.write(fd, (json.dumps(record) + "\n").encode())


def writer(root: str, ack_path: str, producer: str, batch_nos: list[int], fault: str,
           stop_file: str | None = None, repeat: float = 0.0, seed: int = 0) -> None:
    """Append the given batches in order, acking each; optionally re-send some (duplicates).

    A `CommitConflictError` (lost too many commit races) is retried with the same key, which
    exactly-once makes safe; each one is acked as a `conflict` line.
    """
    rng = random.Random(seed)
    fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    install_fault(fault, Path(root))
    lake = open_lake(root)
    _ack(fd, {"started": producer})
    for batch_no in batch_nos:
        if stop_file is not None and os.path.exists(stop_file):
            break
        sends = 2 if rng.random() < repeat else 1
        for _ in range(sends):
            while True:
                try:
                    result = lake.append(batch_events(producer, batch_no), producer=producer,
                                         batch_no=batch_no)
                    break
                except el.CommitConflictError as exc:
                    _ack(fd, {"conflict": str(exc)[:200]})
            _ack(fd, {"producer": producer, "batch_no": batch_no, "count": result.count,
                      "first_seq": result.first_seq, "last_seq": result.last_seq,
                      "duplicate": result.duplicate})
    os.close(fd)


def materializer(root: str, ack_path: str, fault: str, rounds: int = 1,
                 chunk_events: int | None = None, rebuild: bool = False,
                 stop_file: str | None = None) -> None:
    """Run `materialize` `rounds` times (or until `stop_file` exists), acking each.

    Losing a race to another materializer (a commit conflict, a rebuild taken over) is
    acked as `conflict` and the loop goes on: the next round picks up where it stopped.
    """
    fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    install_fault(fault, Path(root))
    lake = open_lake(root)
    _ack(fd, {"started": "materializer"})
    done = 0
    while done < rounds or stop_file is not None:
        if stop_file is not None and os.path.exists(stop_file):
            break
        try:
            results = lake.materialize(chunk_events=chunk_events, rebuild=rebuild and done == 0)
            _ack(fd, {"materialized": {k: r.new_watermark for k, r in results.items()}})
        except el.EventlakeError as exc:
            if not (isinstance(exc, el.CommitConflictError) or "taken over" in str(exc)):
                raise
            _ack(fd, {"conflict": str(exc)[:200]})
        done += 1
    os.close(fd)


def relayouter(root: str, ack_path: str, fault: str, layout: str, buckets: int | None = None,
               chunk_events: int | None = None) -> None:
    """Move the lake's event log to `layout` (`lake.relayout`), acking each chunk written
    and the result; a `chunk:<n>` fault kills it once chunk n is written."""
    from eventlake.engine.relayout import DEFAULT_RELAYOUT_CHUNK, relayout
    from eventlake.model.layout import Layout
    from eventlake.model.progress import Progress

    fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    kill_at = int(fault.split(":")[1]) if fault.startswith("chunk:") else None
    install_fault("none" if kill_at is not None else fault, Path(root))
    lake = open_lake(root)
    _ack(fd, {"started": "relayout"})

    def progress(step: Progress) -> None:
        _ack(fd, {"chunk": step.done, "of": step.total})
        if step.done == kill_at:
            _die()

    result = relayout(lake.log, Layout.named(layout, buckets=buckets),
                      chunk_events=chunk_events or DEFAULT_RELAYOUT_CHUNK, progress=progress)
    _ack(fd, {"relayout": result.after, "version": result.version, "events": result.events})
    os.close(fd)


def eraser(root: str, ack_path: str, fault: str, partition: str, vacuum: bool) -> None:
    """Erase `partition` (`lake.erase`), acking the result."""
    fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    install_fault(fault, Path(root))
    lake = open_lake(root)
    _ack(fd, {"started": "erase"})
    result = lake.erase(partition, reason="fault test", vacuum=vacuum)
    _ack(fd, {"erased": result.events, "ranges": [list(r) for r in result.seq_ranges]})
    os.close(fd)


_CONTEXT: Any = None


def context() -> Any:
    """A fork-server context whose server has imported eventlake (children start fast)."""
    global _CONTEXT
    if _CONTEXT is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["faults", "eventlake.lake", "eventlake.engine.materialize",
                                    "eventlake.store.log", "eventlake.store.viewstore",
                                    "eventlake.engine.relayout", "eventlake.ops.erase",
                                    "polars", "deltalake", "pyarrow.parquet"])
        _CONTEXT = ctx
    return _CONTEXT


@dataclass
class Child:
    process: Any
    ack_path: Path
    fault: str

    def join(self, timeout: float) -> int | None:
        self.process.join(timeout)
        return self.process.exitcode

    def kill(self) -> None:
        if self.process.is_alive():
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.join(10)

    def acks(self) -> list[dict[str, Any]]:
        if not self.ack_path.exists():
            return []
        return [json.loads(line) for line in self.ack_path.read_text().splitlines() if line]


def start(target: Callable[..., None], *args: Any, ack_path: Path, fault: str = "none",
          **kwargs: Any) -> Child:
    ctx = context()
    process = ctx.Process(target=target, args=args, kwargs=kwargs, daemon=True)
    process.start()
    return Child(process, ack_path, fault)


# -- invariants ------------------------------------------------------------------------------


@dataclass
class LakeCheck:
    """What `check_lake` measured."""

    events: int = 0
    batches: int = 0
    acked: int = 0
    lost: int = 0
    doubled: int = 0
    partial: int = 0
    orphans_found: int = 0
    orphans_removed: int = 0
    views_wrong: int = 0
    problems: list[str] = field(default_factory=list)


def check_lake(root: str | os.PathLike[str], acked: Iterable[tuple[str, int]],
               attempted: Iterable[tuple[str, int]], *, fix: bool = True,
               materialize: bool = True) -> LakeCheck:
    """Assert the store's promises after crashes; returns the figures.

    Every acknowledged batch is present exactly once; a batch is present whole or not at all;
    no batch was invented; `seq` is 1..N without gap or repeat; the only damage a crash leaves
    is orphaned files, which `doctor(fix=True)` removes without touching committed data;
    after `materialize()` every view equals a from-scratch fold (`verify`).
    """
    import polars as pl

    from eventlake.ops.doctor import doctor
    from eventlake.ops.verify import verify_view

    lake = open_lake(root)
    check = LakeCheck()
    events = lake.events().collect()
    check.events = events.height
    seqs = events.get_column("seq").to_list()
    last = lake.last_seq()
    assert seqs == list(range(1, len(seqs) + 1)), "seq has gaps or repeats"
    assert last == len(seqs), f"log says last seq {last}, rows hold {len(seqs)}"
    ids = events.get_column("event_id")
    assert ids.n_unique() == events.height, "an event id appears twice"
    per_batch = Counter(events.get_column("batch_id").to_list())
    wanted = set(attempted)
    acked_set = set(acked)
    check.acked = len(acked_set)
    check.batches = len(per_batch)
    for producer, batch_no in wanted:
        count = per_batch.get(f"{producer}/{batch_no}", 0)
        size = batch_size(producer, batch_no)
        if count == 0:
            if (producer, batch_no) in acked_set:
                check.lost += 1
        elif count == 2 * size:
            check.doubled += 1
        elif count != size:
            check.partial += 1
    known = {f"{p}/{b}" for p, b in wanted}
    invented = [b for b in per_batch if b not in known]
    assert not invented, f"batches nobody sent: {invented[:5]}"
    # Each batch's rows are exactly its content, in order, with consecutive seqs.
    for (batch_id,), rows in events.group_by(["batch_id"]):
        producer, batch_no = str(batch_id).rsplit("/", 1)
        want = batch_events(producer, int(batch_no))
        got_ids = rows.sort("seq").get_column("event_id").to_list()
        if got_ids != [e["event_id"] for e in want]:
            check.partial += 1
        span = rows.get_column("seq")
        if int(span.max()) - int(span.min()) + 1 != rows.height:  # type: ignore[operator]
            check.partial += 1
    assert check.lost == 0, f"{check.lost} acknowledged batches are missing"
    assert check.doubled == 0, f"{check.doubled} batches landed twice"
    assert check.partial == 0, f"{check.partial} batches are partly present"
    if fix:
        report = doctor(lake, fix=True, min_age_seconds=0)
        damage = [str(p) for p in report.damage]
        assert not damage, damage
        check.orphans_found = len(report.orphans)
        check.orphans_removed = len(report.removed)
        assert check.orphans_removed == check.orphans_found, report
        again = doctor(lake)
        assert again.ok, [str(p) for p in again.problems]
        after = lake.events().collect()
        assert after.height == events.height and after.equals(events), (
            "doctor --fix changed committed data")
    if materialize:
        lake.materialize()
        for view in lake.views.values():
            report_v = verify_view(lake, view)
            if not report_v.ok or report_v.watermark != last:
                check.views_wrong += 1
                check.problems += [str(d) for d in report_v.differences[:3]]
        # Logical views: one row per partition for reducer views.
        doc = lake.scan("document").collect()
        assert doc.get_column("partition_id").n_unique() == doc.height
        assert doc.height == events.select(pl.col("partition_id").n_unique()).item()
        assert check.views_wrong == 0, check.problems
    return check
