"""`eventlake bench` cases about the event log at scale: layouts, small batches, age, and reads
at many partitions.

Each case builds a real lake in the bench's temporary folder, with data generated on the fly,
and times eventlake next to its baseline in the same run: the same rows at another partition
count, Python `eventsourcing` on SQLite, the same lake when young, or a bare Polars read of the
files eventlake itself would read. The keys and their goals are in `eventlake.bench.GOALS`.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from eventlake.bench import (
    BenchReport,
    Case,
    LayoutKind,
    Progress,
    Scale,
    _grow,
    _median,
    _timed,
    event_table,
    open_lake,
)

__all__ = ["bench_age", "bench_many_partitions", "bench_scale_ingest", "bench_small_batches"]

_EVENTSOURCING_MISSING = "skipped: eventsourcing not installed (pip install 'eventlake[bench]')"
# Batches of the many-partition lake: big enough for bucket files, not the tail.
_BUILD_BATCH = 250_000
# The partitions the single events of the age case go to.
_AGE_PARTITIONS = 1_000


def bench_scale_ingest(scale: Scale, work: Path, report: BenchReport,
                       progress: Progress | None) -> None:
    """`scale_ingest_growth`: the same batches over few and over many partitions, bucketed.

    Each run appends `scale_batches` fresh batches (generated before each append, partition
    ids drawn at random from the range) to a new lake per partition count; few and many
    alternate, so load on the machine falls on both.
    """
    few, many = scale.scale_partitions
    events = scale.scale_batches * scale.scale_batch
    totals: dict[int, list[float]] = {few: [], many: []}
    for run in range(scale.repeats):
        for partitions in (few, many):
            if progress:
                progress(f"ingest at {partitions:,} partitions (run {run + 1})")
            root = work / f"scale-{partitions}-{run}"
            lake = open_lake(root, "buckets")
            spent = 0.0
            for number in range(scale.scale_batches):
                batch = event_table(scale.scale_batch, partitions, seed=400 + number,
                                    start=number * scale.scale_batch)
                spent += _timed(partial(lake.append, batch))
            if lake.last_seq() != events:
                raise RuntimeError(f"scale ingest: the lake holds {lake.last_seq()} events, "
                                   f"not {events}")
            totals[partitions].append(spent)
            shutil.rmtree(root, ignore_errors=True)
    for partitions in (few, many):
        report.cases.append(Case(
            f"scale_ingest_{partitions}_partitions", tuple(totals[partitions]),
            f"{scale.scale_batches} batches of {scale.scale_batch} events, buckets layout"))
        report.figures[f"scale_ingest_us_per_event_{partitions}"] = (
            _median(totals[partitions]) / events * 1e6)
    report.ratios["scale_ingest_growth"] = _median(totals[many]) / _median(totals[few])


def bench_small_batches(scale: Scale, work: Path, report: BenchReport) -> None:
    """`small_batch_vs_eventsourcing`: batches of 1,000 events over 1,000 partitions.

    eventlake: `lake.append` of each Arrow batch on a bucketed lake (tail compaction included,
    as an append pays it). eventsourcing: its SQLite application recorder in a file database,
    one `insert_events` per batch, one originator per partition with increasing versions; the
    `StoredEvent`s are built from the same Arrow batch inside the timing, as the append
    converts its input too.
    """
    try:
        import eventsourcing.sqlite  # noqa: F401
    except ImportError:
        report.skipped["small_batch_vs_eventsourcing"] = _EVENTSOURCING_MISSING
        return
    size, partitions = 1_000, 1_000
    batches = [event_table(size, partitions, seed=300 + number, start=number * size,
                           kinds="domain") for number in range(scale.small_batches)]
    originators = {f"p{k}": uuid.UUID(int=k + 1) for k in range(partitions)}
    total = size * len(batches)
    lake_times, store_times = [], []
    for run in range(scale.repeats):
        lake = open_lake(work / f"small-{run}", "buckets")
        lake_times.append(_timed(partial(_append_all, lake, batches)))
        if lake.last_seq() != total:
            raise RuntimeError(f"small batches: the lake holds {lake.last_seq()} events")
        database = work / f"eventsourcing-{run}.db"
        datastore, recorder = _recorder(database)
        try:
            store_times.append(_timed(partial(_insert_batches, recorder, batches,
                                              originators)))
        finally:
            datastore.close()
        with sqlite3.connect(database) as check:
            stored = check.execute("select count(*) from stored_events").fetchone()[0]
        if stored != total:
            raise RuntimeError(f"small batches: eventsourcing stored {stored} events")
    detail = f"{len(batches)} batches of {size} events over {partitions} partitions"
    report.cases += [
        Case("small_batches_lake_append", tuple(lake_times), f"{detail}, buckets layout"),
        Case("small_batches_eventsourcing_sqlite", tuple(store_times),
             f"{detail}, SQLiteApplicationRecorder.insert_events"),
    ]
    report.ratios["small_batch_vs_eventsourcing"] = _median(lake_times) / _median(store_times)


def _append_all(lake: Any, batches: Sequence[pa.Table]) -> None:
    for batch in batches:
        lake.append(batch)


def _recorder(path: Path) -> tuple[Any, Any]:
    from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

    datastore = SQLiteDatastore(str(path))
    recorder = SQLiteApplicationRecorder(datastore)
    recorder.create_table()
    return datastore, recorder


def _insert_batches(recorder: Any, batches: Sequence[pa.Table],
                    originators: dict[str, uuid.UUID]) -> None:
    from eventsourcing.persistence import StoredEvent

    versions = dict.fromkeys(originators, 0)
    for batch in batches:
        stored = []
        for partition, kind, payload in zip(batch.column("partition").to_pylist(),
                                            batch.column("type").to_pylist(),
                                            batch.column("payload").to_pylist(), strict=True):
            versions[partition] += 1
            stored.append(StoredEvent(originator_id=originators[partition],
                                      originator_version=versions[partition], topic=kind,
                                      state=payload.encode()))
        recorder.insert_events(stored)


def bench_age(scale: Scale, work: Path, report: BenchReport,
              progress: Progress | None) -> None:
    """`append_age_growth` / `refresh_age_growth` on both layouts: one lake aged by real
    single-event keyed appends, each followed by a refresh of the document view; the median
    of a window of `age_window` appends (and refreshes) when young against when old."""
    young, old = scale.ages
    if (young, old) != (50, 5_000):
        report.notes.append(f"age growth at --scale {scale.name}: {old:,} vs {young:,} earlier "
                            "commits (5,000 vs 50 at medium and large)")
    layouts: tuple[LayoutKind, ...] = ("buckets", "partition_id")
    for layout in layouts:
        _age(scale, work / f"age-{layout}", report, progress, layout)


def _age(scale: Scale, root: Path, report: BenchReport, progress: Progress | None,
         layout: LayoutKind) -> None:
    young, old = scale.ages
    window = scale.age_window
    lake = open_lake(root, layout)
    # One first commit holds every partition, so the young and the old lake differ in age
    # only, not in how many rows the view has.
    lake.append(event_table(_AGE_PARTITIONS, _AGE_PARTITIONS, seed=70, kinds="actions",
                            cover=True), producer="bench", batch_no="seed")
    rng = np.random.default_rng(17)
    appends: dict[int, list[float]] = {young: [], old: []}
    refreshes: dict[int, list[float]] = {young: [], old: []}
    versions: dict[int, int] = {}
    for step in range(1, old + window):
        age = young if young <= step < young + window else old if step >= old else None
        if age is not None and age not in versions:
            versions[age] = lake.log.snapshot().version
        event = [{"type": "set", "partition": f"p{int(rng.integers(_AGE_PARTITIONS))}",
                  "payload": {"target": "k", "value": step}}]
        took = _timed(partial(lake.append, event, producer="bench", batch_no=step))
        folded = _timed(partial(lake.materialize, ["document"]))
        if age is not None:
            appends[age].append(took)
            refreshes[age].append(folded)
        if progress and step % 250 == 0:
            progress(f"age ({layout}): {step:,} of {old + window:,} commits")
    suffix = "" if layout == "buckets" else "_partition_id"
    for age in (young, old):
        at = f"log version {versions[age]}, {layout} layout"
        report.cases += [
            Case(f"append_1_event_at_{age}{suffix}", tuple(appends[age]),
                 f"keyed single-event append after {age} earlier commits, {at}"),
            Case(f"refresh_1_event_at_{age}{suffix}", tuple(refreshes[age]),
                 f"document refresh after one append, {age} earlier refreshes, {at}"),
        ]
    report.ratios[f"append_age_growth{suffix}"] = _median(appends[old]) / _median(appends[young])
    report.ratios[f"refresh_age_growth{suffix}"] = (_median(refreshes[old])
                                                   / _median(refreshes[young]))


# The cold open: a fresh interpreter opens the lake and answers one state; prints the seconds
# of each part. The modules of that path are imported first, timed apart: `import eventlake`
# is lazy, and the libraries' import time does not depend on the lake.
_COLD_OPEN = textwrap.dedent(
    """
    import json, sys, time
    started = time.perf_counter()
    import eventlake as el
    import eventlake.engine.materialize, eventlake.lake, eventlake.store.viewstore
    imported = time.perf_counter()
    lake = el.Lake.open(sys.argv[1], create=False)
    lake.state(sys.argv[2])
    done = time.perf_counter()
    print(json.dumps({"import_s": imported - started, "open_state_s": done - imported}))
    """
)


def bench_many_partitions(scale: Scale, work: Path, report: BenchReport,
                          progress: Progress | None) -> None:
    """`sql_view_scan_ratio`, `state_read_ratio(_current)` and `cold_open_s` on a bucketed
    lake of `many_partitions` partitions (two `set` events each), document view built."""
    from eventlake.store.viewstore import ViewStore

    partitions = scale.many_partitions
    root = work / "many"
    lake = open_lake(root, "buckets")
    if progress:
        progress(f"reads: building a lake of {partitions:,} partitions")
    _grow(lake, 2 * partitions, partitions, seed=60, start=0, batch=_BUILD_BATCH,
          kinds="actions", cover=True)
    lake.materialize(["document"])
    store = ViewStore(lake.storage, lake.view("document"))
    snap = store.snapshot()
    marks = store.marks(snap)
    files = list(snap.plan(equals={"generation": [marks.active]}).files)

    def sql_scan() -> int:
        result = lake.sql("select * from document").arrow()
        table = result.read_all() if isinstance(result, pa.RecordBatchReader) else result
        return int(table.num_rows)

    def raw_scan() -> int:
        return pl.read_parquet(files).height

    # One call of each first: the first lake.sql imports DuckDB and opens the snapshots.
    seen = (sql_scan(), raw_scan())
    if seen[0] != partitions:
        raise RuntimeError(f"sql scan: {seen[0]} rows where the view has {partitions}")
    sql_times, raw_times = [], []
    for _ in range(scale.repeats):
        sql_times.append(_timed(sql_scan))
        raw_times.append(_timed(raw_scan))
    detail = f"{partitions} partitions, {len(files)} view files, buckets layout"
    report.cases += [Case("sql_select_star_document", tuple(sql_times), detail),
                     Case("polars_read_view_files", tuple(raw_times), detail)]
    report.ratios["sql_view_scan_ratio"] = _median(sql_times) / _median(raw_times)

    probes = [f"p{i}" for i in range(0, partitions, max(1, partitions // 20))]
    _state_reads(lake, store, probes, scale, report, suffix="_current",
                 what=f"{partitions} partitions, view up to date")
    # A lagging view: a batch lands after the build; the probes are partitions it touched.
    lag = event_table(1_000, partitions, seed=61, start=10**9, kinds="actions")
    lake.append(lag)
    touched = sorted(set(lag.column("partition").to_pylist()))
    lagging = [touched[i] for i in range(0, len(touched), max(1, len(touched) // 20))]
    _state_reads(lake, store, lagging, scale, report, suffix="",
                 what=f"{partitions} partitions, view 1,000 events behind")

    opens, imports = [], []
    for _ in range(scale.repeats):
        done = subprocess.run([sys.executable, "-c", _COLD_OPEN, str(root), lagging[0]],
                              check=True, capture_output=True, text=True, timeout=3600)
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        opens.append(figures["open_state_s"])
        imports.append(figures["import_s"])
    report.cases.append(Case("cold_open_state", tuple(opens),
                             f"fresh process: Lake.open + lake.state(p), {partitions} "
                             "partitions, view lagging (imports timed apart)"))
    report.figures["cold_open_s"] = _median(opens)
    report.figures["cold_open_import_s"] = _median(imports)


def _state_reads(lake: Any, store: Any, probes: list[str], scale: Scale, report: BenchReport,
                 *, suffix: str, what: str) -> None:
    """`lake.state(p)` per probe against bare Polars reads of what it needs: the probe's row
    from its view file, and its events above the view's watermark from the log files that
    can hold them (file lists found beforehand, as a caller that knew them would)."""
    from eventlake.store.viewstore import bucket_of

    snap = store.snapshot()
    marks = store.marks(snap)
    buckets = store.buckets(snap)
    watermark = marks.watermark
    reads: list[Callable[[], Any]] = []
    for p in probes:
        view_files = list(snap.plan(equals={"generation": [marks.active],
                                            "bucket": [bucket_of(p, buckets)]}).files)
        log_files = list(lake.log.plan(partitions=[p], since_seq=watermark).files)
        reads.append(partial(_raw_state, p, view_files, log_files, watermark))

    def lake_reads() -> None:
        for p in probes:
            lake.state(p)

    def raw_reads() -> None:
        for read in reads:
            read()

    lake_reads()
    raw_reads()
    lake_times, raw_times = [], []
    for _ in range(scale.repeats):
        lake_times.append(_timed(lake_reads) / len(probes))
        raw_times.append(_timed(raw_reads) / len(probes))
    report.cases += [
        Case(f"state_read_lake{suffix}", tuple(lake_times), f"one lake.state(p), {what}"),
        Case(f"state_read_polars_files{suffix}", tuple(raw_times),
             f"polars reads of p's view file and newer log files, {what}"),
    ]
    report.ratios[f"state_read_ratio{suffix}"] = _median(lake_times) / _median(raw_times)


def _raw_state(partition: str, view_files: list[str], log_files: list[str],
               watermark: int) -> None:
    pl.scan_parquet(view_files).filter(pl.col("partition_id") == partition).collect()
    if log_files:
        (pl.scan_parquet(log_files)
         .filter((pl.col("partition_id") == partition) & (pl.col("seq") > watermark))
         .collect())
