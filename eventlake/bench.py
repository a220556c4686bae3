"""`eventlake bench`: what eventlake costs next to the raw libraries, measured side by side.

Absolute times on a shared machine are noise; every case therefore times eventlake and its
raw-library baseline in the same run, on the same generated data, several times, and reports
the ratio of medians. Data is generated on the fly in a temporary folder and deleted after.

Every key has its goal in `GOALS` (comparison and target, and the scale whose sizes the goal
is set for); the report says of each whether it was met. The cases about the log at scale
(layouts, small batches, age, reads at many partitions) are in `eventlake._bench_scaling`.
"""

from __future__ import annotations

import gc
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from eventlake.errors import InvalidArgumentError

__all__ = ["GOALS", "SCALES", "BenchReport", "Case", "Goal", "Scale", "run_bench"]

ScaleName = Literal["small", "medium", "large"]
LayoutKind = Literal["partition_id", "buckets"]


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
    rss_events: tuple[int, int]
    repeats: int
    action_items: int = 10_000
    repository_events: int = 100_000
    layout_partitions: int = 100_000
    # scale_ingest_growth: `scale_batches` batches of `scale_batch` events over each count of
    # partitions (few, many), on the bucketed layout.
    scale_batch: int = 250_000
    scale_batches: int = 4
    scale_partitions: tuple[int, int] = (1_000, 100_000)
    # small_batch_vs_eventsourcing: that many batches of 1,000 events over 1,000 partitions.
    small_batches: int = 100
    # append/refresh_age_growth: the two ages (earlier commits) measured, and the window of
    # appends timed at each.
    ages: tuple[int, int] = (50, 5_000)
    age_window: int = 30
    # sql_view_scan_ratio, state_read_ratio and cold_open_s: the partitions of that lake.
    many_partitions: int = 100_000


SCALES: dict[str, Scale] = {
    # Small only checks the harness (CI runs it): ages 200 vs 20, not 5,000 vs 50.
    "small": Scale("small", ingest_events=20_000, ingest_partitions=100, history_events=20_000,
                   history_partitions=100, refresh_batch=500, growth_steps=(1, 2, 5),
                   rss_events=(10_000, 40_000), repeats=2, action_items=1_000,
                   repository_events=5_000, layout_partitions=5_000, scale_batch=20_000,
                   scale_partitions=(1_000, 10_000), small_batches=20, ages=(20, 200),
                   age_window=10, many_partitions=5_000),
    "medium": Scale("medium", ingest_events=1_000_000, ingest_partitions=1_000,
                    history_events=1_000_000, history_partitions=1_000, refresh_batch=10_000,
                    growth_steps=(1, 2, 5), rss_events=(250_000, 1_000_000), repeats=3),
    "large": Scale("large", ingest_events=1_000_000, ingest_partitions=1_000,
                   history_events=5_000_000, history_partitions=1_000, refresh_batch=50_000,
                   growth_steps=(1, 2, 5), rss_events=(1_000_000, 4_000_000), repeats=3,
                   scale_partitions=(1_000, 1_000_000), many_partitions=1_000_000),
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


Status = Literal["met", "missed", "report", "skipped"]


@dataclass(frozen=True)
class Goal:
    """What one key should be: `value <comparison> target` (no comparison: reported only).

    `scale` is the scale whose sizes the goal is set for (None: any); at another scale the
    verdict is still given, for what it is worth, and says so.
    """

    comparison: Literal["<=", ">="] | None
    target: float | None
    meaning: str
    scale: ScaleName | None = None

    def text(self) -> str:
        if self.comparison is None or self.target is None:
            return ""
        return f"{self.comparison} {self.target:g}"

    def status(self, value: float | None) -> Status:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "skipped"
        if self.comparison is None or self.target is None:
            return "report"
        met = value <= self.target if self.comparison == "<=" else value >= self.target
        return "met" if met else "missed"


# Each meaning says what is divided by what, and the comparison which way is better. Keys
# without a layout suffix measure the buckets layout, except those older than it
# (ingest_ratio, refresh_speedup_*, refresh_growth, fold_overhead, rebuild_rss_growth), which
# keep measuring the partition_id layout so that their history stays comparable.
GOALS: dict[str, Goal] = {
    "sql_view_refresh_speedup_merge": Goal(
        ">=", 20, "DuckDB running a merge SqlView's SELECT over the whole log / its refresh "
        "after a 1% batch, partition_id layout", "medium"),
    "sql_view_refresh_speedup_recompute": Goal(
        ">=", 10, "DuckDB running a recompute-touched SqlView's SELECT (median, count "
        "distinct) over the whole log / its refresh after a batch touching 1% of the "
        "partitions, partition_id layout", "medium"),
    "sql_view_refresh_speedup_merge_buckets": Goal(
        None, None, "the same as sql_view_refresh_speedup_merge, buckets layout"),
    "sql_view_refresh_speedup_recompute_buckets": Goal(
        None, None, "the same as sql_view_refresh_speedup_recompute, buckets layout"),
    "ingest_ratio": Goal(">=", 0.7, "bare write_deltalake(partition_by=partition_id) time / "
                         "lake.append time (Arrow), partition_id layout"),
    "ingest_ratio_buckets": Goal(">=", 0.7, "bare write_deltalake(partition_by=bucket) time / "
                                 "lake.append time (Arrow), buckets layout"),
    "ingest_jsonl_ratio": Goal(None, None, "polars.read_ndjson + bare write time / JSON Lines "
                               "ingest time"),
    "scale_ingest_growth": Goal("<=", 2.0, "µs/event of 4 batches of 250k at many partitions "
                                "(1M at large) / at 1,000, buckets layout", "large"),
    "small_batch_vs_eventsourcing": Goal("<=", 0.5, "100 batches of 1,000 events: lake.append "
                                         "time (buckets) / eventsourcing SQLite recorder time"),
    "append_age_growth": Goal("<=", 1.5, "single-event keyed append at 5,000 earlier commits "
                              "/ at 50 (median of a window), buckets layout"),
    "append_age_growth_partition_id": Goal("<=", 1.5, "the same on the partition_id layout"),
    "refresh_age_growth": Goal("<=", 1.5, "document refresh after a one-event append at 5,000 "
                               "earlier refreshes / at 50, buckets layout"),
    "refresh_age_growth_partition_id": Goal("<=", 1.5, "the same on the partition_id layout"),
    "refresh_speedup_aggregate": Goal(">=", 20, "full rebuild time / refresh after a 1% batch, "
                                      "aggregate view, partition_id layout"),
    "refresh_speedup_document": Goal(None, None, "the same for the document view, "
                                     "partition_id layout"),
    "refresh_speedup_aggregate_buckets": Goal(">=", 50, "full rebuild time / refresh after a "
                                              "1% batch, aggregate view, buckets layout",
                                              "large"),
    "refresh_speedup_document_buckets": Goal(">=", 50, "the same for the document view, "
                                             "buckets layout", "large"),
    "refresh_batch_read_ratio": Goal("<=", 2.0, "document refresh after a 1% batch / polars "
                                     "read of exactly the batch's rows from the same files, "
                                     "buckets layout", "large"),
    "refresh_batch_read_ratio_aggregate": Goal("<=", 2.0, "the same for the aggregate view",
                                               "large"),
    "refresh_batch_read_ratio_partition_id": Goal(None, None, "document refresh / batch read, "
                                                  "partition_id layout"),
    "refresh_growth": Goal("<=", 1.5, "refresh time (fixed batch) at 5x history / at 1x"),
    "fold_overhead": Goal("<=", 2.0, "document view rebuild / bare apply_action loop in "
                          "memory"),
    "fold_overhead_reducer": Goal("<=", 2.0, "rebuild of the sample `balances` reducer "
                                  "(untyped: one JSON state) / a bare Python loop applying "
                                  "the same reduce to decoded event dicts, partition_id "
                                  "layout"),
    "fold_overhead_reducer_typed": Goal("<=", 2.0, "the same for the typed `balances` "
                                        "(columns balance, transactions: int64)"),
    "sql_view_scan_ratio": Goal("<=", 3.0, "lake.sql('select * from document').arrow() / "
                                "polars.read_parquet of the view's active files, many "
                                "partitions (100k at medium), buckets layout"),
    "state_read_ratio": Goal("<=", 5.0, "lake.state(p) with a lagging view / polars reads of "
                             "p's view file and its newer log files, many partitions (1M at "
                             "large), buckets layout", "large"),
    "state_read_ratio_current": Goal("<=", 5.0, "the same with the view up to date"),
    "cold_open_s": Goal(None, None, "seconds for a fresh process to open the many-partition "
                        "lake and answer lake.state(p) (imports not counted)"),
    "rebuild_rss_growth": Goal("<=", 1.3, "peak RSS of a rebuild at 4x history / at 1x"),
    "rebuild_speedup_2_workers": Goal(">=", 1.6, "document view rebuild in one process / as "
                                      "bucket tasks on a 2-process Dask LocalCluster, "
                                      "buckets layout", "medium"),
    "bucket_task_overhead_ms": Goal(None, None, "ms of one bucket task with nothing to fold on "
                                    "a Dask worker (open the lake, read the view table, answer)"),
    "ingest_parallel_speedup_2_workers": Goal(
        None, None, "ingest of 40 JSON Lines inbox files (the ingest size in all) one file "
        "after another / with the files read and checked on 2 spawned processes while one "
        "coordinator lands them in order (`eventlake ingest --workers 2`), buckets layout"),
}


@dataclass
class BenchReport:
    scale: str
    cases: list[Case] = field(default_factory=list)
    ratios: dict[str, float] = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)
    # Key -> why it was not measured (a missing optional package, say).
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def value(self, key: str) -> float | None:
        return self.ratios.get(key, self.figures.get(key))

    def goals(self) -> dict[str, dict[str, Any]]:
        """Every key with a goal or a ratio: value, goal, and whether it was met."""
        keys = [*GOALS, *(k for k in self.ratios if k not in GOALS)]
        out: dict[str, dict[str, Any]] = {}
        for key in keys:
            goal = GOALS.get(key, Goal(None, None, ""))
            value = self.value(key)
            status = goal.status(value)
            note = self.skipped.get(key, "" if value is not None else "not measured")
            if goal.scale is not None and goal.scale != self.scale and status in ("met",
                                                                                   "missed"):
                note = f"goal set for --scale {goal.scale}"
            out[key] = {"value": value, "goal": goal.text() or None,
                        "comparison": goal.comparison, "target": goal.target,
                        "status": status, "goal_scale": goal.scale, "meaning": goal.meaning,
                        "note": note}
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "goals": self.goals(),
            "cases": {c.name: {"median_s": c.median, "min_s": min(c.times),
                               "max_s": max(c.times), "runs": len(c.times),
                               "detail": c.detail} for c in self.cases},
            "ratios": self.ratios,
            "figures": self.figures,
            "skipped": self.skipped,
            "notes": self.notes,
        }


Progress = Callable[[str], None]

# -- data ------------------------------------------------------------------------------------


def event_table(count: int, partitions: int, *, seed: int, start: int = 0,
                kinds: Literal["domain", "actions", "mixed"] = "mixed",
                cover: bool = False) -> pa.Table:
    """`count` events over `partitions`: deposits/withdrawals and/or `set` state actions.

    Partition ids are drawn at random, or with `cover` dealt in turn from `start` (shuffled),
    so that `partitions` consecutive events together hold every partition.
    """
    rng = np.random.default_rng(seed)
    index = pa.array(np.arange(start, start + count, dtype=np.int64))
    ids = (rng.permutation(np.arange(start, start + count, dtype=np.int64) % partitions)
           if cover else rng.integers(0, partitions, count))
    part = pc.binary_join_element_wise("p", pc.cast(pa.array(ids), pa.string()), "")
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


def _median(times: list[float]) -> float:
    return statistics.median(times)


def _ratio(report: BenchReport, key: str, numerator: Case, denominator: Case) -> None:
    """Report both cases, and `key` as the ratio of their medians."""
    report.cases += [numerator, denominator]
    report.ratios[key] = numerator.median / denominator.median


def open_lake(root: Path, layout: LayoutKind, **kwargs: Any) -> Any:
    """A new lake with exactly `layout` (the bench never takes $EVENTLAKE_LAYOUT's)."""
    import eventlake as el
    from eventlake.model.layout import DEFAULT_LOG_BUCKETS

    if layout == "buckets":
        return el.Lake.open(root, layout="buckets", buckets=DEFAULT_LOG_BUCKETS, **kwargs)
    return el.Lake.open(root, layout="partition_id", **kwargs)


def _views() -> list[Any]:
    from eventlake.model.views import Agg, AggregateView

    return [AggregateView(name="totals", version=1, group_by=["type", "currency"],
                          where=["deposit", "withdrawal"],
                          aggregates={"n": "count", "total": Agg("sum", "amount"),
                                      "mean": Agg("avg", "amount"),
                                      "last_n": Agg("last", "n")})]


# -- cases -----------------------------------------------------------------------------------


def _bench_ingest(scale: Scale, work: Path, report: BenchReport) -> None:
    """One big Arrow batch into a fresh lake of each layout, against a bare `write_deltalake`
    of the same rows partitioned the same way (`bucket` computed beforehand for the bare one).
    """
    from deltalake import write_deltalake

    from eventlake.model.layout import DEFAULT_LOG_BUCKETS, bucket_ids

    table = event_table(scale.ingest_events, scale.ingest_partitions, seed=1)
    bare_table = table.rename_columns(["type", "payload", "partition_id"])
    bucketed = bare_table.append_column("bucket", pa.array(bucket_ids(
        bare_table.column("partition_id"), DEFAULT_LOG_BUCKETS), pa.int32()))
    n = scale.ingest_events
    for layout, suffix, column, rows in (("partition_id", "", "partition_id", bare_table),
                                         ("buckets", "_buckets", "bucket", bucketed)):
        bare, lake_times = [], []
        for run in range(scale.repeats):
            target = str(work / f"bare{suffix}{run}")
            bare.append(_timed(partial(write_deltalake, target, rows, partition_by=[column])))
            lake = open_lake(work / f"lake{suffix}{run}", layout)  # type: ignore[arg-type]
            lake_times.append(_timed(partial(lake.append, table)))
        _ratio(report, f"ingest_ratio{suffix}",
               Case(f"ingest_bare_write_deltalake{suffix}", tuple(bare),
                    f"{n} events, partition_by={column}"),
               Case(f"ingest_lake_append_arrow{suffix}", tuple(lake_times),
                    f"{n} events, {layout} layout"))
        report.figures[f"ingest_events_per_s{suffix}"] = n / _median(lake_times)
        report.figures[f"bare_events_per_s{suffix}"] = n / _median(bare)


def _bench_ingest_jsonl(scale: Scale, work: Path, report: BenchReport) -> None:
    from deltalake import write_deltalake

    from eventlake.ingest.inbox import ingest_file

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
        lake = open_lake(work / f"jlake{run}", "partition_id")
        lake_times.append(_timed(partial(ingest_file, lake, path)))
    n = scale.ingest_events
    report.cases += [Case("ingest_jsonl_polars_bare", tuple(bare), f"{n} events"),
                     Case("ingest_jsonl_lake", tuple(lake_times), f"{n} events")]
    report.ratios["ingest_jsonl_ratio"] = _median(bare) / _median(lake_times)
    report.figures["ingest_jsonl_events_per_s"] = n / _median(lake_times)


_INBOX_FILES = 40


def _bench_ingest_parallel(scale: Scale, work: Path, report: BenchReport) -> None:
    """`ingest_files` of an inbox one file after another, against `ingest_files_on` a
    2-process spawn pool (started, and its workers' imports done, before the clock)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from eventlake.ingest.inbox import ingest_files
    from eventlake.ingest.parallel import ingest_files_on

    table = event_table(scale.ingest_events, scale.ingest_partitions, seed=3)
    lines = pc.binary_join_element_wise(
        '{"type":"', table.column("type"), '","partition":"', table.column("partition"),
        '","payload":', table.column("payload"), "}", "").to_pylist()
    inbox = work / "inbox"
    inbox.mkdir()
    per_file = math.ceil(len(lines) / _INBOX_FILES)
    paths = []
    for index in range(_INBOX_FILES):
        path = inbox / f"{index:03d}.jsonl"
        path.write_text("\n".join(lines[index * per_file:(index + 1) * per_file]) + "\n")
        paths.append(path)
    del lines, table
    serial, spread = [], []
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        ingest_files_on(open_lake(work / "warm", "buckets"), paths[:2], executor=pool)
        for run in range(scale.repeats):
            lake = open_lake(work / f"serial{run}", "buckets")
            serial.append(_timed(partial(ingest_files, lake, paths,
                                         quarantine_dir=work / "q")))
            lake = open_lake(work / f"parallel{run}", "buckets")
            spread.append(_timed(partial(ingest_files_on, lake, paths, executor=pool,
                                         quarantine_dir=work / "q")))
    detail = f"{scale.ingest_events} events in {_INBOX_FILES} JSON Lines files"
    _ratio(report, "ingest_parallel_speedup_2_workers",
           Case("ingest_inbox_serial", tuple(serial), detail),
           Case("ingest_inbox_2_workers", tuple(spread), detail))
    report.figures["ingest_inbox_serial_events_per_s"] = scale.ingest_events / _median(serial)
    report.figures["ingest_inbox_2_workers_events_per_s"] = (scale.ingest_events
                                                             / _median(spread))


def _grow(lake: Any, events: int, partitions: int, *, seed: int, start: int,
          batch: int = 500_000, kinds: Literal["domain", "actions", "mixed"] = "mixed",
          cover: bool = False) -> None:
    for offset in range(0, events, batch):
        size = min(batch, events - offset)
        lake.append(event_table(size, partitions, seed=seed + offset, start=start + offset,
                                kinds=kinds, cover=cover))


def _batch_read(lake: Any, since: int) -> Callable[[], Any]:
    """A bare polars read of exactly the rows above `since`, from the files holding them."""
    files = list(lake.log.plan(since_seq=since).files)
    return lambda: pl.scan_parquet(files).filter(pl.col("seq") > since).collect()


def _bench_refresh(scale: Scale, work: Path, report: BenchReport, progress: Progress | None,
                   layout: LayoutKind) -> None:
    """Refresh after a 1% batch against a full rebuild, and against reading the batch alone."""
    lake = open_lake(work / f"refresh-{layout}", layout, views=_views())
    _grow(lake, scale.history_events, scale.history_partitions, seed=10, start=0)
    if progress:
        progress(f"refresh ({layout}): full build")
    lake.materialize()
    suffix = "" if layout == "partition_id" else "_buckets"
    batch = max(1, scale.history_events // 100)
    for name in ("totals", "document"):
        refresh, rebuild, reads = [], [], []
        for run in range(scale.repeats):
            since = lake.last_seq()
            lake.append(event_table(batch, scale.history_partitions, seed=100 + run,
                                    start=10**9 + run * batch))
            reads.append(_timed(_batch_read(lake, since)))
            refresh.append(_timed(partial(lake.materialize, [name])))
            lake.materialize()
            rebuild.append(_timed(partial(lake.materialize, [name], rebuild=True)))
        key = "aggregate" if name == "totals" else "document"
        report.cases += [
            Case(f"refresh_1pct_{key}{suffix}", tuple(refresh),
                 f"{batch} new events on {lake.last_seq()} history, {layout} layout"),
            Case(f"rebuild_{key}{suffix}", tuple(rebuild),
                 f"{lake.last_seq()} events, {layout} layout"),
            Case(f"read_1pct_batch_{key}{suffix}", tuple(reads),
                 f"polars read of the {batch} new events' rows, {layout} layout"),
        ]
        report.ratios[f"refresh_speedup_{key}{suffix}"] = _median(rebuild) / _median(refresh)
        read_key = ("refresh_batch_read_ratio" + ("_aggregate" if key == "aggregate" else "")
                    if layout == "buckets" else
                    "refresh_batch_read_ratio_partition_id" if key == "document" else None)
        if read_key is not None:
            report.ratios[read_key] = _median(refresh) / _median(reads)


def _bench_sql_views(scale: Scale, work: Path, report: BenchReport,
                     progress: Progress | None, layout: LayoutKind) -> None:
    """SQL views: a refresh against DuckDB running the same SELECT over the whole log (the
    full recompute a plain SQL model would do), for each strategy."""
    from eventlake.model.sqlview import SqlView

    merged = SqlView(name="totals_sql", version=1, sql=(
        "select partition_id, type, count(*) as n, sum((payload->>'$.amount')::bigint) as total,"
        " avg((payload->>'$.amount')::bigint) as mean from events"
        " where type in ('deposit', 'withdrawal') group by partition_id, type"))
    recomputed = SqlView(name="spread_sql", version=1, sql=(
        "select partition_id, median((payload->>'$.amount')::bigint) as median_amount,"
        " count(distinct payload->>'$.currency') as currencies from events"
        " where type in ('deposit', 'withdrawal') group by partition_id"))
    lake = open_lake(work / f"sql-views-{layout}", layout, views=[merged, recomputed])
    _grow(lake, scale.history_events, scale.history_partitions, seed=20, start=0,
          kinds="domain")
    if progress:
        progress(f"sql views ({layout}): full build")
    lake.materialize([merged.name, recomputed.name])
    batch = max(1, scale.history_events // 100)
    touched = max(1, scale.history_partitions // 100)
    for view, partitions in ((merged, scale.history_partitions), (recomputed, touched)):
        refresh, full, reads = [], [], []
        for run in range(scale.repeats):
            since = lake.last_seq()
            lake.append(event_table(batch, partitions, seed=200 + run, kinds="domain",
                                    start=2 * 10**9 + run * batch))
            reads.append(_timed(_batch_read(lake, since)))
            refresh.append(_timed(partial(lake.materialize, [view.name])))
            full.append(_timed(partial(_full_select, lake, view.sql)))
            lake.materialize()  # the other view too: each timed refresh is of one batch
        key = view.strategy.split("-")[0] + ("" if layout == "partition_id" else "_buckets")
        _ratio(report, f"sql_view_refresh_speedup_{key}",
               Case(f"sql_view_full_select_{key}", tuple(full),
                    f"DuckDB over all {lake.last_seq()} events, {layout} layout"),
               Case(f"sql_view_refresh_{key}", tuple(refresh),
                    f"{batch} new events over {partitions} partitions, {lake.last_seq()} "
                    "history"))
        # What the speedup would be if a refresh cost no more than reading its batch: the
        # most any refresh that reads the batch from the log can reach.
        report.cases.append(Case(f"sql_view_batch_read_{key}", tuple(reads),
                                 f"polars read of the {batch} new events' rows"))
        report.figures[f"sql_view_refresh_ceiling_{key}"] = _median(full) / _median(reads)


def _full_select(lake: Any, sql: str) -> None:
    lake.sql(sql).fetch_arrow_table()


def _bench_growth(scale: Scale, work: Path, report: BenchReport,
                  progress: Progress | None) -> None:
    base = scale.history_events // max(scale.growth_steps)
    lake = open_lake(work / "growth", "partition_id", views=_views())
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
        medians[step] = _median(times)
        report.cases.append(Case(f"refresh_{scale.refresh_batch}_at_{step}x", tuple(times),
                                 f"history {size} events"))
    first, last = min(scale.growth_steps), max(scale.growth_steps)
    report.ratios["refresh_growth"] = medians[last] / medians[first]


def _bench_fold(scale: Scale, work: Path, report: BenchReport) -> None:
    from eventlake.model.actions import apply_action, is_state_action

    count = min(scale.history_events, 1_000_000)
    lake = open_lake(work / "fold", "partition_id")
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
    report.ratios["fold_overhead"] = _median(folded) / _median(bare)


# The README's `balances` view: the samples of a checkout, where `eventlake bench` runs (an
# installed package has no data/samples, and then the reducer keys are skipped).
_SAMPLE_VIEWS = Path(__file__).resolve().parents[1] / "data" / "samples" / "views.py"


def _sample_balances() -> Any | None:
    import importlib.util

    if not _SAMPLE_VIEWS.is_file():
        return None
    spec = importlib.util.spec_from_file_location("_eventlake_bench_samples", _SAMPLE_VIEWS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.balances


def _bench_fold_reducer(scale: Scale, work: Path, report: BenchReport) -> None:
    """A reducer view's rebuild against a bare loop of its `reduce` over decoded events."""
    keys = ("fold_overhead_reducer", "fold_overhead_reducer_typed")
    typed = _sample_balances()
    if typed is None:
        report.skipped.update(dict.fromkeys(keys, f"needs {_SAMPLE_VIEWS} (a checkout)"))
        return
    import dataclasses

    untyped = dataclasses.replace(typed, name="balances_untyped", columns=None)
    count = min(scale.history_events, 1_000_000)
    lake = open_lake(work / "fold-reducer", "partition_id", views=[untyped, typed])
    _grow(lake, count, scale.history_partitions, seed=78, start=0, kinds="domain")
    frame = lake.events().collect()
    # What `reduce` gets, built before the clock starts: the bare loop pays only for reduce.
    events = [{"seq": seq, "partition": partition, "type": kind, "payload": json.loads(text)}
              for seq, partition, kind, text in zip(
                  frame.get_column("seq").to_list(), frame.get_column("partition_id").to_list(),
                  frame.get_column("type").to_list(), frame.get_column("payload").to_list(),
                  strict=True)]
    reduce, initial = typed.reduce, typed.initial_state

    def bare_loop() -> None:
        states: dict[str, Any] = {}
        for event in events:
            partition = event["partition"]
            state = states.get(partition)
            states[partition] = reduce(initial() if state is None else state, event)

    def rebuild(name: str) -> None:
        lake.materialize([name], rebuild=True)

    files = list(lake.log.plan().files)

    def read_and_decode() -> None:
        # What any engine folding the log with this Python reducer does besides the loop:
        # read the events and decode their payloads (orjson, with no checks).
        texts = pl.scan_parquet(files).collect().get_column("payload").to_list()
        list(map(orjson.loads, texts))

    # Each run times all four back to back, so that a load on the machine that comes and
    # goes falls on the loop and the rebuilds alike; each starts from a full collection, so
    # that none inherits the collector's backlog of the one before (the bare loop ran ~15%
    # slower after a rebuild that had left it one).
    bare: list[float] = []
    floor: list[float] = []
    folded: dict[str, list[float]] = {view.name: [] for view in (untyped, typed)}
    for _ in range(scale.repeats):
        gc.collect()
        bare.append(_timed(bare_loop))
        gc.collect()
        floor.append(_timed(read_and_decode))
        for name, times in folded.items():
            gc.collect()
            times.append(_timed(partial(rebuild, name)))
    report.cases += [Case("fold_bare_reduce_loop", tuple(bare), f"{count} events"),
                     Case("fold_bare_read_and_decode", tuple(floor),
                          f"polars read of {count} events and orjson.loads of each payload")]
    # The ratio a rebuild that did nothing but read, decode and run the bare loop would have.
    report.figures["fold_overhead_reducer_floor"] = (_median(floor) + _median(bare)
                                                     ) / _median(bare)
    for key, view in zip(keys, (untyped, typed), strict=True):
        times = folded[view.name]
        report.cases.append(Case(f"fold_{view.name}_rebuild", tuple(times), f"{count} events"))
        report.ratios[key] = _median(times) / _median(bare)


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
    peaks = []
    for size in scale.rss_events:
        root = work / f"rss{size}"
        lake = open_lake(root, "partition_id")
        _grow(lake, size, scale.history_partitions, seed=size, start=0)
        done = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(root)], check=True,
                              capture_output=True, text=True, timeout=3600)
        peaks.append(int(done.stdout.strip().splitlines()[-1]) / 1024)
        report.figures[f"rebuild_peak_rss_mb_{size}"] = peaks[-1]
    report.ratios["rebuild_rss_growth"] = peaks[-1] / peaks[0]


def _bench_actions(scale: Scale, work: Path, report: BenchReport) -> None:
    """apply_action throughput per action type on a document of `action_items` tree items."""
    from eventlake.model.actions import apply_action

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
        report.figures[f"apply_{kind}_per_s"] = calls / _median(times)


def _bench_repository(scale: Scale, work: Path, report: BenchReport) -> None:
    """Repository.get_state(i): checkpoints every 50 events vs replay from the start."""
    import random

    import eventlake as el

    lake = open_lake(work / "repo", "partition_id")
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
        results[label] = _median(times)
        report.cases.append(Case(f"get_state_{label}", tuple(times),
                                 f"one get_state(i) on {scale.repository_events} events"))
    report.figures["get_state_speedup_checkpoints"] = results["replay"] / results["checkpoints"]


def _bench_layout(scale: Scale, work: Path, report: BenchReport) -> None:
    """The view layout at many partitions: refresh after a small batch, full scan."""
    partitions = scale.layout_partitions
    lake = open_lake(work / "layout", "partition_id", views=_views())
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


# -- rebuild over Dask workers (bucket tasks) -------------------------------------------------
# rebuild_speedup_2_workers divides the document view's ordinary rebuild (one process, the
# default) by the same rebuild as bucket tasks on a local Dask cluster of two worker processes,
# on the refresh cases' history (1M events at medium), buckets layout. bucket_task_overhead_ms
# is one bucket task with nothing to fold: submitted, the worker opens the lake from its URI,
# reads the view table's snapshot and answers (median of sequential round trips). The same
# rebuild on a one-worker cluster tells the tasks' own cost from the parallelism.

_OVERHEAD_ROUNDS = 20


def _bench_rebuild_workers(scale: Scale, work: Path, report: BenchReport,
                          progress: Progress | None) -> None:
    try:
        import distributed
    except ImportError:
        for key in ("rebuild_speedup_2_workers", "bucket_task_overhead_ms"):
            report.skipped[key] = "needs dask[distributed] (pip install 'eventlake[flows]')"
        return
    from eventlake.engine.buckettasks import RebuildTask, rebuild_buckets
    from eventlake.engine.chunks import Chunk
    from eventlake.lake import Lake

    lake = open_lake(work / "rebuild-workers", "buckets")
    _grow(lake, scale.history_events, scale.history_partitions, seed=30, start=0)
    lake.materialize(["document"])
    detail = f"{lake.last_seq()} events, document view, buckets layout"
    if progress:
        progress("rebuild on workers: one process")
    alone = [_timed(partial(lake.materialize, ["document"], rebuild=True))
             for _ in range(scale.repeats)]
    spread: dict[int, list[float]] = {}
    overhead: list[float] = []
    for count in (1, 2):
        if progress:
            progress(f"rebuild on workers: {count}-process Dask cluster")
        with distributed.LocalCluster(n_workers=count, threads_per_worker=1, processes=True,
                                      dashboard_address=":0") as cluster, \
                distributed.Client(cluster) as client:
            executor = client.get_executor()
            # The workers' imports and first lake open are start-up, not rebuild time.
            lake.materialize(["document"], rebuild=True, executor=executor)
            spread[count] = [_timed(partial(lake.materialize, ["document"], rebuild=True,
                                            executor=executor))
                             for _ in range(scale.repeats)]
            if count == 2:
                empty = RebuildTask(partial(Lake.open, lake.root, create=False), "document",
                                    generation=2**40, target=lake.last_seq(), buckets=(0,),
                                    sizes={}, weights={}, chunk=Chunk())
                for _ in range(_OVERHEAD_ROUNDS):
                    started = time.perf_counter()
                    executor.submit(rebuild_buckets, empty).result()
                    overhead.append(time.perf_counter() - started)
    report.cases += [
        Case("rebuild_document_one_process", tuple(alone), detail),
        Case("rebuild_document_dask_1_worker", tuple(spread[1]), detail),
        Case("rebuild_document_dask_2_workers", tuple(spread[2]), detail),
    ]
    report.ratios["rebuild_speedup_2_workers"] = _median(alone) / _median(spread[2])
    report.figures["rebuild_speedup_dask_1_to_2_workers"] = (_median(spread[1])
                                                             / _median(spread[2]))
    report.figures["bucket_task_overhead_ms"] = statistics.median(overhead) * 1000


def run_bench(scale: ScaleName | str = "small", *, progress: Progress | None = None,
              only: Sequence[str] | None = None) -> BenchReport:
    """Run every case at `scale` (or only the steps named in `only`: the keys of `steps`
    below, which `eventlake bench --only` lists) and return timings, ratios and goals."""
    from eventlake import _bench_scaling as scaling

    if scale not in SCALES:
        raise InvalidArgumentError("the bench scale", scale, f"one of {', '.join(SCALES)}")
    sizes = SCALES[scale]
    report = BenchReport(scale=sizes.name)
    steps: dict[str, tuple[str, Callable[[Path], None]]] = {
        "ingest": ("ingest (arrow)", lambda w: _bench_ingest(sizes, w, report)),
        "ingest-jsonl": ("ingest (json lines)",
                         lambda w: _bench_ingest_jsonl(sizes, w, report)),
        "ingest-parallel": ("ingest of an inbox on 2 workers",
                            lambda w: _bench_ingest_parallel(sizes, w, report)),
        "scale-ingest": ("ingest at many partitions", lambda w: scaling.bench_scale_ingest(
            sizes, w, report, progress)),
        "small-batches": ("small batches vs eventsourcing",
                          lambda w: scaling.bench_small_batches(sizes, w, report)),
        "refresh": ("refresh vs rebuild (partition_id)", lambda w: _bench_refresh(
            sizes, w, report, progress, "partition_id")),
        "refresh-buckets": ("refresh vs rebuild (buckets)", lambda w: _bench_refresh(
            sizes, w, report, progress, "buckets")),
        "growth": ("history growth", lambda w: _bench_growth(sizes, w, report, progress)),
        "sql-views": ("SQL view refresh vs full SELECT", lambda w: _bench_sql_views(
            sizes, w, report, progress, "partition_id")),
        "sql-views-buckets": ("SQL view refresh vs full SELECT (buckets)",
                              lambda w: _bench_sql_views(sizes, w, report, progress,
                                                         "buckets")),
        "age": ("append and refresh with age", lambda w: scaling.bench_age(
            sizes, w, report, progress)),
        "fold": ("fold overhead", lambda w: _bench_fold(sizes, w, report)),
        "fold-reducer": ("reducer fold overhead", lambda w: _bench_fold_reducer(sizes, w,
                                                                                 report)),
        "many-partitions": ("reads at many partitions", lambda w: scaling.bench_many_partitions(
            sizes, w, report, progress)),
        "rss": ("rebuild peak rss", lambda w: _bench_rss(sizes, w, report)),
        "rebuild-workers": ("rebuild on Dask workers", lambda w: _bench_rebuild_workers(
            sizes, w, report, progress)),
        "actions": ("apply_action throughput", lambda w: _bench_actions(sizes, w, report)),
        "repository": ("repository get_state", lambda w: _bench_repository(sizes, w, report)),
        "layout": ("layout at many partitions", lambda w: _bench_layout(sizes, w, report)),
    }
    unknown = sorted(set(only or ()) - set(steps))
    if unknown:
        raise InvalidArgumentError("a bench step", unknown[0], f"one of {', '.join(steps)}")
    os.environ.setdefault("POLARS_VERBOSE", "0")
    for key, (label, step) in steps.items():
        if only is not None and key not in only:
            continue
        if progress:
            progress(label)
        with _workdir() as work:
            step(work)
    if only is not None:
        report.notes.append(f"only the steps {', '.join(only)} ran")
    return report
