"""The pipeline flow, the main job: ingest the inbox, then refresh the views.

It leaves a table artifact (`eventlake-pipeline-summary`) with what the run did: files and new
batches, events landed, records quarantined, views refreshed, and each view's freshness after
the run (`lake.freshness()`: lag in events, 0 when the run finished cleanly, how long its
refresh took, whether it is failing), and logs the same per view. It returns the same numbers
as a `PipelineSummary`.

    from eventlake.flows import run_pipeline
    summary = run_pipeline("data/samples", lake="data/lake")          # threads
    summary = run_pipeline("data/samples", task_runner="dask", workers=2)
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run

from eventlake.ingest.files import DEFAULT_PRODUCER
from eventlake.ingest.inbox import IngestTotals, default_quarantine_dir

from .ingest import ingest_inbox
from .materialize import refresh_views
from .settings import (
    SecretOptions,
    TaskRunnerKind,
    flow_storage_options,
    make_task_runner,
    open_flow_lake,
    resolve_inbox,
    resolve_target,
)

__all__ = ["ARTIFACT_KEY", "PipelineSummary", "pipeline_flow", "run_pipeline"]

ARTIFACT_KEY = "eventlake-pipeline-summary"


@dataclass(frozen=True, kw_only=True)
class PipelineSummary(IngestTotals):
    """What one pipeline run did: the ingest's totals (files, batches, events, quarantined,
    ...: `IngestTotals`), then the refresh. `lag` is, per view, how many seqs the log is
    ahead of the view's watermark after the run."""

    lake: str
    inbox: str
    views: dict[str, int] = field(default_factory=dict)
    last_seq: int = 0
    lag: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    quarantine_dir: str | None = None
    # Per view, the partitions this run's refresh marked failed (`eventlake views` lists
    # every failed partition; `eventlake materialize --retry-failed` folds them again).
    failed: dict[str, int] = field(default_factory=dict)
    # Every view's freshness after the run (`ViewFreshness.to_json()`, see `eventlake status`).
    freshness: list[dict[str, Any]] = field(default_factory=list)
    # The Prefect flow run (its logs and the artifact are filed under it in the API).
    flow_run_id: str | None = None

    @property
    def max_lag(self) -> int:
        return max(self.lag.values(), default=0)

    def to_json(self) -> dict[str, Any]:
        # Where the run went first, as before the totals became the base class's fields.
        return {"lake": self.lake, "inbox": self.inbox, **asdict(self), "max_lag": self.max_lag}

    def table(self) -> list[dict[str, Any]]:
        """The summary as rows of (metric, value), as shown in the artifact."""
        rows: list[tuple[str, Any]] = [
            ("files in inbox", self.files),
            ("new batches", self.batches),
            ("already ingested", self.duplicates),
            ("records read", self.records),
            ("events ingested", self.events),
            ("records quarantined", self.quarantined),
            ("unreadable files quarantined", self.unreadable),
            ("views refreshed", ", ".join(f"{k} (+{v})" for k, v in self.views.items()) or "-"),
            ("last seq", self.last_seq),
            ("lag after (max over views)", self.max_lag),
            ("partitions failed this run", ", ".join(
                f"{k} ({v})" for k, v in self.failed.items() if v) or "-"),
            ("seconds", round(self.seconds, 2)),
            *((f"freshness: {view['view']}", _freshness_text(view)) for view in self.freshness),
        ]
        return [{"metric": name, "value": str(value)} for name, value in rows]


def _freshness_text(view: dict[str, Any]) -> str:
    lag = "current" if not view["lag_events"] else f"{view['lag_events']} events behind"
    took = view.get("last_refresh_seconds")
    text = f"{lag}, watermark {view['watermark']}"
    if took is not None:
        text += f", last refresh took {took:.2f} s"
    if view.get("failing"):
        text += f", last refresh FAILED: {view.get('last_error')}"
    return text


@flow(name="eventlake-pipeline", task_runner=make_task_runner("threads"))
def pipeline_flow(inbox: str | None = None, lake: str | None = None, views: str | None = None,
                  names: list[str] | None = None, producer: str = DEFAULT_PRODUCER,
                  chunk_events: int | None = None, quarantine_dir: str | None = None,
                  storage_options: dict[str, str] | SecretOptions | None = None,
                  prepare_tasks: bool = False) -> PipelineSummary:
    """Ingest every new file of `inbox`, then refresh the views; returns the summary.

    Bad records go to `quarantine_dir` (default `<lake>/quarantine`, or for a lake on object
    storage the local `data/quarantine/<bucket>/<prefix>`). `storage_options` reach a lake on
    object storage (see `eventlake.flows.settings`; pass `SecretOptions` to keep them out of
    Prefect). `prepare_tasks` reads and checks the inbox files as tasks on the flow's task
    runner, several at a time, and lands them here in name order (see `flows.ingest`)."""
    started = time.perf_counter()
    folder = str(resolve_inbox(inbox))
    root, module = resolve_target(lake, views)
    options = flow_storage_options(storage_options)
    opened = open_flow_lake(root, module, storage_options=options)
    quarantine = quarantine_dir or str(default_quarantine_dir(opened))
    totals = IngestTotals.of(ingest_inbox(root, folder, producer=producer,
                                          quarantine_dir=quarantine, storage_options=options,
                                          prepare_tasks=prepare_tasks))
    refreshed = refresh_views(root, module, names, chunk_events=chunk_events,
                              storage_options=options)
    fresh = opened.freshness()
    summary = PipelineSummary(
        **asdict(totals), lake=root, inbox=folder,
        views={name: result.events for name, result in refreshed.items()},
        last_seq=fresh.last_seq, lag={view.view: view.lag_events for view in fresh.views},
        seconds=time.perf_counter() - started, quarantine_dir=quarantine,
        failed={name: len(result.failed) for name, result in refreshed.items()},
        freshness=[view.to_json() for view in fresh.views],
        flow_run_id=flow_run.get_id())
    create_table_artifact(summary.table(), key=ARTIFACT_KEY,
                          description=f"eventlake pipeline: {folder} -> {root}")
    logger = get_run_logger()
    logger.info("pipeline: %s events from %s new file(s), %s quarantined, lag %s",
                summary.events, summary.batches, summary.quarantined, summary.max_lag)
    for view in fresh.views:
        logger.info("freshness %s: %s", view.view, _freshness_text(view.to_json()))
    for name, count in summary.failed.items():
        if count:
            logger.warning("view %s: %s partition(s) failed and stopped folding; see "
                           "`eventlake views`, then `eventlake materialize --retry-failed`",
                           name, count)
    return summary


def run_pipeline(inbox: str | None = None, *, lake: str | None = None,
                 views: str | None = None, names: list[str] | None = None,
                 task_runner: TaskRunnerKind = "threads", workers: int | None = None,
                 address: str | None = None, chunk_events: int | None = None,
                 storage_options: dict[str, str] | SecretOptions | None = None,
                 prepare_tasks: bool = False) -> PipelineSummary:
    """Run `pipeline_flow` once with the chosen task runner (threads or Dask)."""
    runner = make_task_runner(task_runner, workers=workers, address=address)
    chosen = pipeline_flow.with_options(task_runner=runner)
    # Wrapped before Prefect sees them: flow parameters are recorded in its API.
    options = storage_options if isinstance(storage_options, SecretOptions) else (
        SecretOptions(storage_options) if storage_options else None)
    return chosen(inbox=inbox, lake=lake, views=views, names=names, chunk_events=chunk_events,
                  storage_options=options, prepare_tasks=prepare_tasks)
