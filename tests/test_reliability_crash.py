"""Crash campaign: writers and materializers killed with SIGKILL at many points lose nothing.

Each kill point starts a child process (tests/faults.py) that appends batches with known
`(producer, batch_no)` or runs `materialize`, and dies before, during or after its data files
are written, around its commit, or at a random moment. After each crash `faults.check_lake`
asserts: every acknowledged batch is present exactly once, every batch is whole or absent,
`seq` is gap-free, `doctor` finds no damage but the orphans it then removes without touching
committed data, and the next `materialize()` leaves every view exact.

The unmarked test runs a CI-sized campaign covering every fault kind; the slow one runs 240
kill points (`pytest -m slow -n 0 -s tests/test_reliability_crash.py` prints the figures).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from eventlake.cli import main
from eventlake.ops.doctor import doctor
from tests import faults

pytestmark = pytest.mark.integration

APPEND_FAULTS = ["call:log:before", "call:log:after", "fs:events:data-create",
                 "fs:events:data-close", "fs:events:log-temp", "fs:events:log-commit",
                 "timer", "external"]
MATERIALIZE_FAULTS = ["call:view:before", "call:view:after", "fs:views:data-create",
                      "fs:views:data-close", "fs:views:log-temp", "fs:views:log-commit",
                      "timer", "external"]
JOIN_TIMEOUT = 90.0


class Campaign:
    """One lake, many kill points; keeps what was sent and what was acknowledged."""

    def __init__(self, root: Path, seed: int) -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.acked: set[tuple[str, int]] = set()
        self.attempted: set[tuple[str, int]] = set()
        self.next_batch: Counter[str] = Counter()
        self.pending: dict[str, list[int]] = {}
        self.stats: Counter[str] = Counter()
        self.counter = 0
        lake = faults.open_lake(root)
        # Every partition folder exists before the first fault, so file watches see its files.
        while len(os.listdir(root / "events")) < len(faults.PARTITIONS) + 1:
            self._append_in_parent("init")
        lake.materialize()

    def _append_in_parent(self, producer: str) -> None:
        lake = faults.open_lake(self.root)
        batch_no = self.next_batch[producer]
        self.next_batch[producer] += 1
        lake.append(faults.batch_events(producer, batch_no), producer=producer,
                    batch_no=batch_no)
        self.attempted.add((producer, batch_no))
        self.acked.add((producer, batch_no))

    def _fault(self, kind: str) -> tuple[str, float | None]:
        if kind == "external":
            return "none", self.rng.uniform(0.0, 0.5)
        if kind == "timer":
            return f"timer:{self.rng.uniform(0.0, 0.4):.3f}", None
        return f"{kind}:{self.rng.randint(1, 4)}", None

    def _ack_path(self) -> Path:
        self.counter += 1
        return self.root.parent / f"acks-{self.counter}.jsonl"

    def _finish(self, child: faults.Child, external: float | None, kind: str) -> list[dict]:
        if external is not None:
            time.sleep(external)
            child.kill()
        code = child.join(JOIN_TIMEOUT)
        if code is None:
            child.kill()
            pytest.fail(f"child with fault {child.fault} hung for {JOIN_TIMEOUT} s")
        killed = code == -9
        if not killed and code != 0:
            pytest.fail(f"child with fault {child.fault} failed with exit code {code}")
        self.stats["kill points"] += 1
        self.stats["killed" if killed else "finished before the fault fired"] += 1
        self.stats[f"{kind} {'killed' if killed else 'finished'}"] += 1
        return child.acks()

    def append_point(self, kind: str) -> None:
        producer = f"w{self.rng.randrange(3)}"
        # A producer re-sends what it did not see acknowledged, then goes on.
        batches = list(self.pending.get(producer, []))
        for _ in range(self.rng.randint(1, 4)):
            batches.append(self.next_batch[producer])
            self.next_batch[producer] += 1
        self.attempted.update((producer, b) for b in batches)
        fault, external = self._fault(kind)
        child = faults.start(faults.writer, str(self.root), str(ack := self._ack_path()),
                             producer, batches, fault, ack_path=ack, fault=fault)
        acks = self._finish(child, external, kind)
        done = {int(a["batch_no"]) for a in acks if "batch_no" in a}
        self.acked.update((producer, b) for b in done)
        self.pending[producer] = [b for b in batches if b not in done]
        self.stats["batches acknowledged by children"] += len(done)
        self.stats["duplicates reported"] += sum(1 for a in acks if a.get("duplicate"))

    def killed_writer(self, producer: str, fault: str) -> tuple[int, faults.Child]:
        """`producer`'s next batch, sent by a child that `fault` kills (asserted): the batch
        number and the child, to read its acknowledgements."""
        batch = self.next_batch[producer]
        self.next_batch[producer] += 1
        self.attempted.add((producer, batch))
        child = faults.start(faults.writer, str(self.root), str(ack := self._ack_path()),
                             producer, [batch], fault, ack_path=ack, fault=fault)
        assert child.join(JOIN_TIMEOUT) == -9
        return batch, child

    def materialize_point(self, kind: str) -> None:
        for _ in range(self.rng.randint(1, 3)):
            self._append_in_parent("parent")
        fault, external = self._fault(kind)
        ack = self._ack_path()
        child = faults.start(faults.materializer, str(self.root), str(ack), fault,
                             rounds=1, chunk_events=self.rng.choice([2, 3, 5, None]),
                             rebuild=self.rng.random() < 0.25, ack_path=ack, fault=fault)
        self._finish(child, external, kind)

    def check(self) -> faults.LakeCheck:
        result = faults.check_lake(self.root, self.acked, self.attempted)
        self.stats["orphaned files found and removed"] += result.orphans_removed
        if result.orphans_found:
            self.stats["kill points that left orphans"] += 1
        self.stats["views wrong"] += result.views_wrong
        return result


def run_campaign(tmp_path: Path, points: int, seed: int) -> tuple[Counter[str],
                                                                  faults.LakeCheck]:
    campaign = Campaign(tmp_path / "lake", seed)
    plan = [(mode, kind) for kind in APPEND_FAULTS for mode in ("append",)]
    plan += [("materialize", kind) for kind in MATERIALIZE_FAULTS]
    campaign.rng.shuffle(plan)
    result = None
    for index in range(points):
        mode, kind = plan[index % len(plan)] if index < len(plan) else (
            campaign.rng.choice(["append", "append", "materialize"]), None)
        if kind is None:
            kind = campaign.rng.choice(APPEND_FAULTS if mode == "append"
                                       else MATERIALIZE_FAULTS)
        if mode == "append":
            campaign.append_point(kind)
        else:
            campaign.materialize_point(kind)
        result = campaign.check()
    assert result is not None
    stats = campaign.stats
    stats["events in the lake"] = result.events
    stats["batches in the lake"] = result.batches
    stats["events lost"] = result.lost
    stats["batches doubled"] = result.doubled
    return stats, result


def _print(stats: Counter[str], seconds: float) -> None:
    print(f"\ncrash campaign ({seconds:.1f} s):")
    for key in sorted(stats):
        print(f"  {key}: {stats[key]}")


def _campaign_loses_nothing(tmp_path: Path, *, points: int, seed: int) -> Counter[str]:
    """Run and print a campaign, check that every kill point ran and that no event was
    lost, doubled or half-landed and no view went wrong; its statistics."""
    started = time.perf_counter()
    stats, result = run_campaign(tmp_path, points=points, seed=seed)
    _print(stats, time.perf_counter() - started)
    assert stats["kill points"] == points
    assert result.lost == result.doubled == result.partial == result.views_wrong == 0
    return stats


def test_crash_campaign_ci(tmp_path: Path) -> None:
    stats = _campaign_loses_nothing(tmp_path, points=18, seed=7)
    assert stats["killed"] >= 10, stats


@pytest.mark.slow
def test_crash_campaign_many_kill_points(tmp_path: Path) -> None:
    stats = _campaign_loses_nothing(tmp_path, points=240, seed=2024)
    assert stats["killed"] >= 150, stats
    assert stats["kill points that left orphans"] > 0, stats


def test_crash_between_data_files_and_commit_leaves_only_orphans(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Killed after its Parquet files are complete but before the commit: nothing of the
    batch is visible, `eventlake doctor` warns of the orphans (count and size, exit 0: they
    are harmless) and `doctor --fix` removes them (and only them); the producer's retry
    lands the batch once."""
    campaign = Campaign(tmp_path / "lake", seed=1)
    root = campaign.root
    before = faults.open_lake(root).events().collect()
    batch, child = campaign.killed_writer("w0", "fs:events:data-close:1")
    assert child.acks() == [{"started": "w0"}]
    lake = faults.open_lake(root)
    assert lake.events().collect().equals(before)

    report = doctor(lake)
    assert report.orphans and not report.damage
    assert report.ok and not report.clean
    assert all(p.kind == "orphan" and p.table == "events" for p in report.orphans)
    size = sum(os.path.getsize(p.path) for p in report.orphans)
    assert report.leftover_bytes == size > 0
    capsys.readouterr()
    assert main(["doctor", "--lake", str(root)]) == 0
    out, err = capsys.readouterr()
    count = len(report.orphans)
    assert f"warning: events: {count} orphaned file" in err
    assert f"0 damaged, {count} orphaned" in out
    assert main(["doctor", "--lake", str(root), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ok"] and not summary["clean"] and summary["damaged"] == 0
    assert summary["orphans"]["count"] == count and summary["orphans"]["bytes"] == size
    assert summary["orphans"]["by_table"] == {"events": {"count": count, "bytes": size}}
    # Too young to delete by default: a writer might be about to commit them.
    assert main(["doctor", "--lake", str(root), "--fix"]) == 0
    assert "younger than" in capsys.readouterr().err
    assert all(os.path.exists(p.path) for p in report.orphans)
    assert main(["doctor", "--lake", str(root), "--fix", "--min-age", "0"]) == 0
    assert not any(os.path.exists(p.path) for p in report.orphans)
    capsys.readouterr()
    assert main(["doctor", "--lake", str(root)]) == 0
    out, err = capsys.readouterr()
    assert "warning" not in err and "0 damaged, 0 orphaned" in out
    assert doctor(lake).clean
    assert lake.events().collect().equals(before)

    lake.append(faults.batch_events("w0", batch), producer="w0", batch_no=batch)
    campaign.acked.add(("w0", batch))
    faults.check_lake(root, campaign.acked, campaign.attempted)


def test_crash_after_commit_before_ack_is_not_doubled_by_the_retry(tmp_path: Path) -> None:
    campaign = Campaign(tmp_path / "lake", seed=2)
    root = campaign.root
    batch, _ = campaign.killed_writer("w1", "call:log:after:1")
    lake = faults.open_lake(root)
    again = lake.append(faults.batch_events("w1", batch), producer="w1", batch_no=batch)
    assert again.duplicate and again.count == 0
    campaign.acked.add(("w1", batch))
    faults.check_lake(root, campaign.acked, campaign.attempted)


def test_leftover_temporary_commit_file_is_reported_and_harmless(tmp_path: Path) -> None:
    """A crash inside a commit can leave `<version>.json#1` in `_delta_log`; later commits
    still land and `doctor --fix` removes it."""
    campaign = Campaign(tmp_path / "lake", seed=3)
    root = campaign.root
    lake = faults.open_lake(root)
    version = lake.log.snapshot().version
    stale = root / "events" / "_delta_log" / f"{version + 1:020d}.json#1"
    stale.write_text('{"commitInfo":{}}\n')
    campaign._append_in_parent("w2")
    report = doctor(lake)
    assert [p.kind for p in report.problems] == ["temp"]
    assert doctor(lake, fix=True, min_age_seconds=0).removed == (str(stale),)
    assert not stale.exists()
    faults.check_lake(root, campaign.acked, campaign.attempted)
