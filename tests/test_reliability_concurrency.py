"""Concurrency: 8 writer processes and 2 materializer processes on one lake, for a bounded time.

Writers append batches with known `(producer, batch_no)` (and re-send some: duplicates must be
no-ops); materializers refresh the views in small chunks meanwhile. Every wait has a timeout, so
a hang fails the test instead of blocking it. Afterwards: views are exact up to their
watermarks, `doctor` finds no damage (orphaned files of lost commit races are only a warning:
exit 0), and `faults.check_lake` holds (each acked batch once, `seq` gap-free, `doctor --fix`
removes the orphans and only them, views exact after one more `materialize()`).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from deltalake.exceptions import CommitFailedError

from eventlake.cli import EXIT_OK, main
from eventlake.errors import CommitConflictError
from eventlake.ops.doctor import doctor
from eventlake.ops.verify import verify_view
from eventlake.store.storage import retry_commit
from tests import faults

pytestmark = pytest.mark.integration

WRITERS = 8
MATERIALIZERS = 2


def run_concurrently(tmp_path: Path, seconds: float) -> Counter[str]:
    root = tmp_path / "lake"
    faults.open_lake(root).materialize()
    stop = tmp_path / "stop"
    children: list[tuple[str, faults.Child]] = []
    for index in range(WRITERS):
        producer = f"w{index}"
        ack = tmp_path / f"{producer}.jsonl"
        children.append((producer, faults.start(
            faults.writer, str(root), str(ack), producer, list(range(100_000)), "none",
            stop_file=str(stop), repeat=0.1, seed=index, ack_path=ack)))
    for index in range(MATERIALIZERS):
        ack = tmp_path / f"m{index}.jsonl"
        children.append(("materializer", faults.start(
            faults.materializer, str(root), str(ack), "none", chunk_events=7 + index * 13,
            stop_file=str(stop), ack_path=ack)))
    time.sleep(seconds)
    stop.touch()
    stats: Counter[str] = Counter()
    acked: set[tuple[str, int]] = set()
    attempted: set[tuple[str, int]] = set()
    hung = []
    deadline = time.monotonic() + 180
    for producer, child in children:
        code = child.join(max(1.0, deadline - time.monotonic()))
        if code is None:
            child.kill()
            hung.append(producer)
            continue
        assert code == 0, f"{producer} exited with {code}"
        acks = child.acks()
        stats["conflicts retried"] += sum(1 for a in acks if "conflict" in a)
        if producer == "materializer":
            stats["materialize runs"] += sum(1 for a in acks if "materialized" in a)
            continue
        done = {int(a["batch_no"]) for a in acks if "batch_no" in a}
        stats["appends acknowledged"] += sum(1 for a in acks if "batch_no" in a)
        stats["duplicates (no-op) acknowledged"] += sum(1 for a in acks if a.get("duplicate"))
        acked.update((producer, b) for b in done)
        top = max(done, default=-1)
        attempted.update((producer, b) for b in range(top + 2))
    assert not hung, f"processes hung: {hung}"
    lake = faults.open_lake(root)
    for view in lake.views.values():
        report = verify_view(lake, view)
        assert report.ok, [str(d) for d in report.differences[:5]]
    # Lost commit races leave orphaned files: a warning of `doctor` (count and size), never a
    # failure, since no reader sees them.
    found = doctor(lake)
    assert found.ok, [str(p) for p in found.damage[:5]]
    assert all(p.kind == "orphan" for p in found.problems)
    assert main(["doctor", "--lake", str(root), "--quick"]) == EXIT_OK
    stats["orphaned files before doctor --fix"] = len(found.leftovers)
    stats["orphaned KiB before doctor --fix"] = found.leftover_bytes // 1024
    check = faults.check_lake(root, acked, attempted)
    stats["writers"] = WRITERS
    stats["materializers"] = MATERIALIZERS
    stats["batches in the lake"] = check.batches
    stats["events in the lake"] = check.events
    stats["events lost"] = check.lost
    stats["batches doubled"] = check.doubled
    stats["views wrong"] = check.views_wrong
    # Files written by commit attempts that lost a race are never referenced: doctor found
    # them and removed them (check_lake asserts it) without touching committed data.
    stats["orphaned files (lost commit races), removed by doctor --fix"] = check.orphans_found
    assert check.batches == len(acked)
    return stats


def _print(stats: Counter[str], seconds: float) -> None:
    print(f"\nconcurrency run ({seconds:.1f} s):")
    for key in sorted(stats):
        print(f"  {key}: {stats[key]}")


def test_writers_and_materializers_concurrently_ci(tmp_path: Path) -> None:
    started = time.perf_counter()
    stats = run_concurrently(tmp_path, seconds=8)
    _print(stats, time.perf_counter() - started)
    assert stats["appends acknowledged"] >= WRITERS
    assert stats["materialize runs"] >= 1


@pytest.mark.slow
def test_writers_and_materializers_concurrently_long(tmp_path: Path) -> None:
    started = time.perf_counter()
    stats = run_concurrently(tmp_path, seconds=20)
    _print(stats, time.perf_counter() - started)
    assert stats["appends acknowledged"] >= 4 * WRITERS


def test_commit_retry_loop_times_out_with_a_clear_error() -> None:
    """A writer that keeps losing the race gives up: transient, says what and why."""
    calls = 0

    def attempt() -> None:
        nonlocal calls
        calls += 1
        raise CommitFailedError("a concurrent transaction won")

    started = time.monotonic()
    with pytest.raises(CommitConflictError) as info:
        retry_commit(attempt, what="append of batch w/1", attempts=10_000, timeout=0.3,
                     max_delay=0.02)
    assert time.monotonic() - started < 5
    assert calls > 1
    message = str(info.value)
    assert "append of batch w/1" in message and "a concurrent transaction won" in message
    assert "try again" in message
    assert info.value.transient

    calls = 0
    with pytest.raises(CommitConflictError, match="3 times"):
        retry_commit(attempt, what="refresh", attempts=3, base_delay=0.0)
    assert calls == 3


def test_retry_commit_does_not_retry_other_errors() -> None:
    calls = 0

    def attempt() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        retry_commit(attempt, what="x")
    assert calls == 1


@pytest.mark.one_layout
def test_retrying_leaves_the_callers_random_state_alone() -> None:
    """The backoff's jitter is eventlake's own: a caller's seeded `random` (a Hypothesis
    strategy in another thread, say) draws the same numbers after a retried commit."""
    import random

    calls = 0

    def attempt() -> int:
        nonlocal calls
        calls += 1
        if calls < 4:
            raise CommitFailedError("a concurrent transaction won")
        return calls

    random.seed(7)
    before = random.getstate()
    assert retry_commit(attempt, what="append", base_delay=0.001, max_delay=0.002) == 4
    assert random.getstate() == before
