"""`eventlake bench`: what eventlake costs next to the raw libraries, measured side by side.

Absolute times on a shared machine are noise; every case therefore times eventlake and its
raw-library baseline in the same run, on the same generated data, several times, and reports
the ratio of medians. Data is generated on the fly in a temporary folder and deleted after.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["SCALES", "BenchReport", "Case", "Scale", "run_bench"]

ScaleName = Literal["small", "medium", "large"]


@dataclass(frozen=True)
class Scale:
    """Sizes of one benchmark scale."""

    name: str
    ingest_events: int
    ingest_partitions: int
    history_events: int
    history_partitions: int
    refresh_batch: int
    growth_steps: tuple[int, ...]
    point_partitions: int
    rss_events: tuple[int, int]
    repeats: int
    action_items: int = 10_000
    repository_events: int = 100_000
    layout_partitions: int = 100_000


SCALES: dict[str, Scale] = {
    "small": Scale("small", 20_000, 100, 20_000, 100, 500, (1, 2, 5), 500, (10_000, 40_000),
                   2, action_items=1_000, repository_events=5_000, layout_partitions=5_000),
    "medium": Scale("medium", 1_000_000, 1_000, 1_000_000, 1_000, 10_000, (1, 2, 5), 10_000,
                    (250_000, 1_000_000), 3),
    "large": Scale("large", 1_000_000, 1_000, 5_000_000, 1_000, 50_000, (1, 2, 5), 100_000,
                   (1_000_000, 4_000_000), 3),
}


@dataclass(frozen=True)
class Case:
    """Timings (seconds) of one measured thing."""

    name: str
    times: tuple[float, ...]
    detail: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.times)


@dataclass
class BenchReport:
    scale: str
    cases: list[Case] = field(default_factory=list)
    ratios: dict[str, float] = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "cases": {c.name: {"median_s": c.median, "min_s": min(c.times),
                               "max_s": max(c.times), "runs": len(c.times),
                               "detail": c.detail} for c in self.cases},
            "ratios": self.ratios,
            "figures": self.figures,
        }


Progress = Callable[[str], None]

# -- data ------------------------------------------------------------------------------------


def event_table(count: int, partitions: int, *, seed: int, start: int = 0,
                kinds: Literal["domain", "actions", "mixed"] = "mixed") -> pa.Table:
    """`count` events over `partitions`: deposits/withdrawals and/or `set` state actions."""
    rng = np.random.default_rng(seed)
    index = pa.array(np.arange(start, start + count, dtype=np.int64))
    part = pc.binary_join_element_wise(
        "p", pc.cast(pa.array(rng.integers(0, partitions, count)), pa.string()), "")
    amount = pc.cast(pa.array(rng.integers(1, 1000, count)), pa.string())
    deposit = pc.binary_join_element_wise('{"amount":', amount, ',"currency":"',
                                          pa.array(rng.choice(["EUR", "USD"], count)),
                                          '","n":', pc.cast(index, pa.string()), "}", "")
    action = pc.binary_join_element_wise(
        '{"target":"k', pc.cast(pa.array(rng.integers(0, 20, count)), pa.string()),
        '","value":', amount, "}", "")
    if kinds == "domain":
        kind = pa.array(np.where(rng.random(count) < 0.7, "deposit", "withdrawal"))
        payload = deposit
    elif kinds == "actions":
        kind = pa.repeat(pa.scalar("set"), count)
        payload = action
    else:
        choice = rng.random(count)
        kind = pa.array(np.where(choice < 0.5, "set", np.where(choice < 0.85, "deposit",
                                                                "withdrawal")))
        payload = pc.if_else(pc.equal(kind, "set"), action, deposit)
    return pa.table({"type": kind, "payload": payload, "partition": part})


@contextmanager
def _workdir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="eventlake-bench-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _views() -> list[Any]:
    from eventlake.views import Agg, AggregateView

    return [AggregateView(name="totals", version=1, group_by=["type", "currency"],
                          where=["deposit", "withdrawal"],
                          aggregates={"n": "count", "total": Agg("sum", "amount"),
                                      "mean": Agg("avg", "amount"),
                                      "last_n": Agg("last", "n")})]


# -- cases -----------------------------------------------------------------------------------


def _bench_ingest(scale: Scale, work: Path, report: BenchReport) -> None:
    from deltalake import write_deltalake

    import eventlake as el

    table = event_table(scale.ingest_events, scale.ingest_partitions, seed=1)
    bare_table = table.rename_columns(["type", "payload", "partition_id"])
    bare, lake_times = [], []
    for run in range(scale.repeats):
        target = str(work / f"bare{run}")
        bare.append(_timed(partial(write_deltalake, target, bare_table,
                                   partition_by=["partition_id"])))
        lake = el.Lake.open(work / f"lake{run}")
        lake_times.append(_timed(partial(lake.append, table)))
    n = scale.ingest_events
    report.cases += [Case("ingest_bare_write_deltalake", tuple(bare), f"{n} events"),
                     Case("ingest_lake_append_arrow", tuple(lake_times), f"{n} events")]
    report.ratios["ingest_ratio"] = statistics.median(bare) / statistics.median(lake_times)
    report.figures["ingest_events_per_s"] = n / statistics.median(lake_times)
    report.figures["bare_events_per_s"] = n / statistics.median(bare)


def _bench_ingest_jsonl(scale: Scale, work: Path, report: BenchReport) -> None:
    from deltalake import write_deltalake

    import eventlake as el
    from eventlake.inbox import ingest_file

    table = event_table(scale.ingest_events, scale.ingest_partitions, seed=2)
    path = work / "events.jsonl"
    lines = pc.binary_join_element_wise(
        '{"type":"', table.column("type"), '","partition":"', table.column("partition"),
        '","payload":', table.column("payload"), "}", "")
    path.write_text("\n".join(lines.to_pylist()) + "\n")
    bare, lake_times = [], []
    for run in range(scale.repeats):
        def raw(r: int = run) -> None:
            data = pl.read_ndjson(path).with_columns(pl.col("payload").struct.json_encode())
            write_deltalake(str(work / f"jbare{r}"), data.rename({"partition": "partition_id"})
                            .to_arrow(), partition_by=["partition_id"])

        bare.append(_timed(raw))
        lake = el.Lake.open(work / f"jlake{run}")
        lake_times.append(_timed(partial(ingest_file, lake, path)))
    n = scale.ingest_events
    report.cases += [Case("ingest_jsonl_polars_bare", tuple(bare), f"{n} events"),
                     Case("ingest_jsonl_lake", tuple(lake_times), f"{n} events")]
    report.ratios["ingest_jsonl_ratio"] = statistics.median(bare) / statistics.median(lake_times)
    report.figures["ingest_jsonl_events_per_s"] = n / statistics.median(lake_times)


def _grow(lake: Any, events: int, partitions: int, *, seed: int, start: int,
          batch: int = 500_000) -> None:
    for offset in range(0, events, batch):
        size = min(batch, events - offset)
        lake.append(event_table(size, partitions, seed=seed + offset, start=start + offset))


def _bench_refresh(scale: Scale, work: Path, report: BenchReport,
                   progress: Progress | None) -> None:
    import eventlake as el

    lake = el.Lake.open(work / "refresh", views=_views())
    _grow(lake, scale.history_events, scale.history_partitions, seed=10, start=0)
    if progress:
        progress("refresh: full build")
    lake.materialize()
    batch = max(1, scale.history_events // 100)
    for name in ("totals", "document"):
        refresh, rebuild = [], []
        for run in range(scale.repeats):
            lake.append(event_table(batch, scale.history_partitions, seed=100 + run,
                                    start=10**9 + run * batch))
            refresh.append(_timed(partial(lake.materialize, [name])))
            lake.materialize()
            rebuild.append(_timed(partial(lake.materialize, [name], rebuild=True)))
        key = "aggregate" if name == "totals" else "document"
        report.cases += [
            Case(f"refresh_1pct_{key}", tuple(refresh),
                 f"{batch} new events on {lake.last_seq()} history"),
            Case(f"rebuild_{key}", tuple(rebuild), f"{lake.last_seq()} events"),
        ]
        report.ratios[f"refresh_speedup_{key}"] = (statistics.median(rebuild)
                                                  / statistics.median(refresh))


def _bench_growth(scale: Scale, work: Path, report: BenchReport,
                  progress: Progress | None) -> None:
    import eventlake as el

    base = scale.history_events // max(scale.growth_steps)
    lake = el.Lake.open(work / "growth", views=_views())
    medians: dict[int, float] = {}
    size = 0
    for step in scale.growth_steps:
        _grow(lake, base * step - size, scale.history_partitions, seed=1000 + step, start=size)
        size = base * step
        lake.materialize()
        if progress:
            progress(f"growth: history {size}")
        times = []
        for run in range(scale.repeats):
            lake.append(event_table(scale.refresh_batch, scale.history_partitions,
                                    seed=5000 + run + step, start=10**9 + step * 10**6 + run))
            times.append(_timed(lambda: lake.materialize()))
        medians[step] = statistics.median(times)
        report.cases.append(Case(f"refresh_{scale.refresh_batch}_at_{step}x", tuple(times),
                                 f"history {size} events"))
    first, last = min(scale.growth_steps), max(scale.growth_steps)
    report.ratios["refresh_growth"] = medians[last] / medians[first]


def _bench_fold(scale: Scale, work: Path, report: BenchReport) -> None:
    import eventlake as el
    from eventlake.actions import apply_action, is_state_action

    count = min(scale.history_events, 1_000_000)
    lake = el.Lake.open(work / "fold")
    _grow(lake, count, scale.history_partitions, seed=77, start=0)
    events = lake.events().collect()
    records = list(zip(events.get_column("partition_id").to_list(),
                       events.get_column("type").to_list(),
                       [json.loads(p) for p in events.get_column("payload").to_list()],
                       strict=True))

    def bare_loop() -> None:
        states: dict[str, Any] = {}
        for partition, kind, payload in records:
            if is_state_action(kind):
                states[partition] = apply_action(states.get(partition, {}), kind, payload)

    bare = [_timed(bare_loop) for _ in range(scale.repeats)]
    folded = [_timed(lambda: lake.materialize(["document"], rebuild=True))
              for _ in range(scale.repeats)]
    report.cases += [Case("fold_bare_apply_action_loop", tuple(bare), f"{count} events"),
                     Case("fold_document_rebuild", tuple(folded), f"{count} events")]
    report.ratios["fold_overhead"] = statistics.median(folded) / statistics.median(bare)


def _bench_point_read(scale: Scale, work: Path, report: BenchReport) -> None:
    import eventlake as el
    from eventlake.viewstore import ViewStore, bucket_of

    lake = el.Lake.open(work / "point")
    count = scale.point_partitions * 5
    lake.append(event_table(count, scale.point_partitions, seed=9, kinds="actions"))
    lake.materialize()
    store = ViewStore(lake.storage, lake.view("document"))
    snap = store.snapshot()
    active = store.marks(snap).active
    probes = [f"p{i}" for i in range(0, scale.point_partitions, max(1, scale.point_partitions
                                                                     // 20))]
    files = {}
    for p in probes:
        plan = snap.plan(equals={"generation": [active],
                                 "bucket": [bucket_of(p, store.buckets(snap))]})
        files[p] = list(plan.files)

    def lake_reads() -> None:
        for p in probes:
            lake.state(p)

    def raw_reads() -> None:
        for p in probes:
            pl.scan_parquet(files[p]).filter(pl.col("partition_id") == p).collect()

    lake_times = [_timed(lake_reads) / len(probes) for _ in range(scale.repeats)]
    raw = [_timed(raw_reads) / len(probes) for _ in range(scale.repeats)]
    report.cases += [
        Case("state_read_lake", tuple(lake_times), f"{scale.point_partitions} partitions"),
        Case("state_read_polars_file", tuple(raw), "the partition's view file alone"),
    ]
    report.ratios["state_read_ratio"] = statistics.median(lake_times) / statistics.median(raw)


# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child started by a big
# parent would report the parent's peak.
_RSS_PROBE = textwrap.dedent(
    """
    import sys
    import eventlake as el
    lake = el.Lake.open(sys.argv[1], create=False)
    lake.materialize(["document"], rebuild=True)
    status = open("/proc/self/status").read()
    print(int(status.split("VmHWM:")[1].split()[0]))
    """
)


def _bench_rss(scale: Scale, work: Path, report: BenchReport) -> None:
    import eventlake as el

    peaks = []
    for size in scale.rss_events:
        root = work / f"rss{size}"
        lake = el.Lake.open(root)
        _grow(lake, size, scale.history_partitions, seed=size, start=0)
        done = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(root)], check=True,
                              capture_output=True, text=True, timeout=3600)
        peaks.append(int(done.stdout.strip().splitlines()[-1]) / 1024)
        report.figures[f"rebuild_peak_rss_mb_{size}"] = peaks[-1]
    report.ratios["rebuild_rss_growth"] = peaks[-1] / peaks[0]


def _bench_actions(scale: Scale, work: Path, report: BenchReport) -> None:
    """apply_action throughput per action type on a document of `action_items` tree items."""
    from eventlake.actions import apply_action

    items = scale.action_items
    middle = f"n{items // 2}"
    state = {"files": {"items": {f"n{i}": {"name": f"f{i}"} for i in range(items)},
                       "tree": [{"id": f"n{i}", "children": []} for i in range(items)]},
             "meta": {"a": 1}}
    operations: dict[str, dict[str, Any]] = {
        "set": {"target": "meta.b", "value": {"deep": [1, 2]}},
        "unset": {"target": "meta.a"},
        "treePush": {"target": "files", "value": {"id": "new", "name": "x"},
                     "options": {"position": "last"}},
        "treeUpdate": {"target": "files", "value": {"name": "y"}, "options": {"id": middle}},
        "treeMove": {"target": "files", "options": {"id": middle, "position": "first"}},
        "treeDelete": {"target": "files", "options": {"id": middle}},
        "init": {"value": {"fresh": True}},
    }
    for kind, payload in operations.items():
        calls = 200

        def loop(kind: str = kind, payload: dict[str, Any] = payload, calls: int = calls
                 ) -> None:
            for _ in range(calls):
                apply_action(state, kind, payload)

        times = [_timed(loop) for _ in range(scale.repeats)]
        report.cases.append(Case(f"apply_{kind}_x{calls}", tuple(times),
                                 f"document of {items} tree items"))
        report.figures[f"apply_{kind}_per_s"] = calls / statistics.median(times)


def _bench_repository(scale: Scale, work: Path, report: BenchReport) -> None:
    """Repository.get_state(i): checkpoints every 50 events vs replay from the start."""
    import random

    import eventlake as el

    lake = el.Lake.open(work / "repo")
    lake.append(event_table(scale.repository_events, 20, seed=3, kinds="actions"))
    picks = random.Random(5).sample(range(scale.repository_events), 20)
    results = {}
    for label, interval in (("checkpoints", 50), ("replay", 10**12)):
        repo = el.Repository(lake, checkpoint_interval=interval)
        repo.init()

        def reads(repo: el.Repository = repo) -> None:
            for index in picks:
                repo.get_state(index)

        times = [_timed(reads) / len(picks) for _ in range(scale.repeats)]
        results[label] = statistics.median(times)
        report.cases.append(Case(f"get_state_{label}", tuple(times),
                                 f"one get_state(i) on {scale.repository_events} events"))
    report.figures["get_state_speedup_checkpoints"] = results["replay"] / results["checkpoints"]


def _bench_layout(scale: Scale, work: Path, report: BenchReport) -> None:
    """The view layout at many partitions: refresh after a small batch, full scan."""
    import eventlake as el

    partitions = scale.layout_partitions
    lake = el.Lake.open(work / "layout", views=_views())
    lake.append(event_table(partitions * 2, partitions, seed=11))
    lake.materialize()
    refresh, scans = [], []
    for run in range(scale.repeats):
        lake.append(event_table(1_000, partitions, seed=20 + run, start=10**9 + run * 1_000))
        refresh.append(_timed(lake.materialize))
        scans.append(_timed(lambda: lake.scan("document").collect()))
    files = len(lake.storage.table("views/document").file_uris())
    report.cases += [
        Case("layout_refresh_1000_events", tuple(refresh), f"{partitions} partitions, 3 views"),
        Case("layout_full_scan_document", tuple(scans), f"{partitions} rows in {files} files"),
    ]
    report.figures["layout_view_files"] = files


def run_bench(scale: ScaleName | str = "small", *, progress: Progress | None = None
              ) -> BenchReport:
    """Run every case at `scale` and return timings and ratios."""
    sizes = SCALES[scale]
    report = BenchReport(scale=sizes.name)
    steps: list[tuple[str, Callable[[Path], None]]] = [
        ("ingest (arrow)", lambda w: _bench_ingest(sizes, w, report)),
        ("ingest (json lines)", lambda w: _bench_ingest_jsonl(sizes, w, report)),
        ("refresh vs rebuild", lambda w: _bench_refresh(sizes, w, report, progress)),
        ("history growth", lambda w: _bench_growth(sizes, w, report, progress)),
        ("fold overhead", lambda w: _bench_fold(sizes, w, report)),
        ("point read", lambda w: _bench_point_read(sizes, w, report)),
        ("rebuild peak rss", lambda w: _bench_rss(sizes, w, report)),
        ("apply_action throughput", lambda w: _bench_actions(sizes, w, report)),
        ("repository get_state", lambda w: _bench_repository(sizes, w, report)),
        ("layout at many partitions", lambda w: _bench_layout(sizes, w, report)),
    ]
    os.environ.setdefault("POLARS_VERBOSE", "0")
    for label, step in steps:
        if progress:
            progress(label)
        with _workdir() as work:
            step(work)
    return report


def as_dict(report: BenchReport) -> dict[str, Any]:
    return asdict(report)
