"""`eventlake bench` cases about bucket tasks: a view's rebuild over Dask worker processes.

`rebuild_speedup_2_workers` divides the document view's ordinary rebuild (one process, the
default) by the same rebuild as bucket tasks on a local Dask cluster of two worker processes
(`LocalCluster(processes=True)`), on the history of the refresh cases (1M events at medium),
`buckets` layout. `bucket_task_overhead_ms` is what one bucket task costs with nothing to
fold: submitted to a worker, it opens the lake from its URI, reads the view table's snapshot
and answers (the median of sequential round trips). Figures also carry the same rebuild on a
one-worker cluster, which tells the tasks' own cost from the parallelism.
"""

from __future__ import annotations

import statistics
import time
from functools import partial
from pathlib import Path

from eventlake.bench import BenchReport, Case, Progress, Scale, _grow, _median, _timed, open_lake

__all__ = ["bench_rebuild_workers"]

_OVERHEAD_ROUNDS = 20


def bench_rebuild_workers(scale: Scale, work: Path, report: BenchReport,
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
