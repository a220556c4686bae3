"""The materialize flow: bring views up to date, one Prefect task per view, or one view at a
time spread over bucket tasks.

Views are independent tables, so their refreshes run side by side on the flow's task runner
(threads by default, at most `EVENTLAKE_FLOW_WORKERS` at a time; Dask processes with
`make_task_runner("dask")`). Within a view the library does the work in seq-range chunks of at
most `chunk_bytes` decoded bytes or `chunk_events` events, each committed with its watermark,
which bounds memory. Tasks that each committed a part of one view would race for its
commits; bucket tasks do not commit.

With `bucket_tasks=True` the views are refreshed one after the other, each split into bucket
tasks (`eventlake.engine.buckettasks`) mapped over the flow's task runner: threads, or Dask
worker processes (`make_task_runner("dask")`, or an existing scheduler's `address`), which
need only the lake URI, the views module and the storage options. The flow itself is the
coordinator: it commits each rebuild, or each refresh step, once, with every task's files. A
bucket task that fails transiently (its worker died, say) is retried; files of a failed
attempt are never committed, and `eventlake doctor --fix` deletes them.

A task retries only transient failures (a lost commit race); a refresh is idempotent because
rows and watermark commit together. A reducer that fails on a partition fails only that
partition (it is recorded in the view and reported in the result's `failed`; the refresh still
commits); a view whose refresh fails as a whole (its definition changed without a version
bump, say) does not stop the others: the flow raises `MaterializeError` naming it after the
rest have committed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from prefect import flow, task

from eventlake.engine.buckettasks import BucketOutput, Workers
from eventlake.engine.materialize import (
    MaterializeError,
    MaterializeResult,
    materialize_views,
    refresh_view,
)
from eventlake.errors import EventlakeError

from .executor import FlowTasks
from .settings import (
    SecretOptions,
    default_workers,
    flow_storage_options,
    make_task_runner,
    open_flow_lake,
    resolve_target,
    task_retries,
)

__all__ = ["bucket_task", "materialize_flow", "refresh_view_task", "refresh_views",
           "refresh_views_by_bucket"]


@task(name="refresh-view", task_run_name="refresh {view}", **task_retries())
def refresh_view_task(root: str, views_module: str | None, view: str, rebuild: bool = False,
                      chunk_events: int | None = None,
                      storage_options: SecretOptions | None = None,
                      chunk_bytes: int | None = None) -> MaterializeResult:
    """Refresh one view of the lake at `root` (see `eventlake.engine.materialize.refresh_view`)."""
    lake = open_flow_lake(root, views_module, create=False, storage_options=storage_options)
    return refresh_view(lake, lake.view(view), rebuild=rebuild, chunk_events=chunk_events,
                        chunk_bytes=chunk_bytes)


@task(name="bucket-task", task_run_name="{label}", **task_retries())
def bucket_task(function: Callable[[Any], BucketOutput], spec: Any, label: str
                ) -> BucketOutput:
    """One bucket task of a view's rebuild or refresh step (it writes files, commits none)."""
    return function(spec)


def _bucket_label(spec: Any, number: int) -> str:
    return (f"{getattr(spec.view, 'name', spec.view)} buckets "
            f"{spec.buckets[0]}-{spec.buckets[-1]} #{number}")


def refresh_views_by_bucket(root: str, views_module: str | None,
                            names: Sequence[str] | None = None, *, rebuild: bool = False,
                            chunk_events: int | None = None, chunk_bytes: int | None = None,
                            storage_options: SecretOptions | None = None
                            ) -> dict[str, MaterializeResult]:
    """Refresh `names` one after the other (inside a flow), each spread over `bucket_task`s
    on the flow's task runner and committed by this coordinator."""
    lake = open_flow_lake(root, views_module, storage_options=storage_options)
    chosen = [lake.view(name) for name in (names or list(lake.views))]
    opener = partial(open_flow_lake, root, views_module, create=False,
                     storage_options=storage_options)
    workers = Workers(FlowTasks(bucket_task, _bucket_label), opener, by_name=True,
                      workers=default_workers())
    return materialize_views(lake, chosen, rebuild=rebuild, chunk_events=chunk_events,
                             chunk_bytes=chunk_bytes, workers=workers)


def refresh_views(root: str, views_module: str | None, names: Sequence[str] | None = None, *,
                  rebuild: bool = False, chunk_events: int | None = None,
                  storage_options: SecretOptions | None = None,
                  chunk_bytes: int | None = None) -> dict[str, MaterializeResult]:
    """Submit one `refresh_view_task` per view (inside a flow) and wait for all of them."""
    lake = open_flow_lake(root, views_module, storage_options=storage_options)
    chosen = [lake.view(name).name for name in (names or list(lake.views))]
    futures = {name: refresh_view_task.submit(root, views_module, name, rebuild=rebuild,
                                              chunk_events=chunk_events,
                                              storage_options=storage_options,
                                              chunk_bytes=chunk_bytes)
               for name in chosen}
    results: dict[str, MaterializeResult] = {}
    failures: dict[str, EventlakeError] = {}
    other: BaseException | None = None
    for name, future in futures.items():
        try:
            results[name] = future.result()
        except EventlakeError as exc:
            failures[name] = exc
        except Exception as exc:
            other = other or exc
    if other is not None:
        raise other
    if failures:
        raise MaterializeError(failures, results)
    return results


@flow(name="eventlake-materialize", task_runner=make_task_runner("threads"))
def materialize_flow(lake: str | None = None, views: str | None = None,
                     names: list[str] | None = None, rebuild: bool = False,
                     chunk_events: int | None = None,
                     storage_options: dict[str, str] | SecretOptions | None = None,
                     chunk_bytes: int | None = None, bucket_tasks: bool = False
                     ) -> dict[str, dict[str, Any]]:
    """Refresh `names` (default: every registered view); returns each view's result.
    `bucket_tasks` spreads each view over bucket tasks instead of one task per view."""
    root, module = resolve_target(lake, views)
    refresh = refresh_views_by_bucket if bucket_tasks else refresh_views
    results = refresh(root, module, names, rebuild=rebuild, chunk_events=chunk_events,
                      storage_options=flow_storage_options(storage_options),
                      chunk_bytes=chunk_bytes)
    return {name: _as_dict(result) for name, result in results.items()}


def _as_dict(result: MaterializeResult) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(result)
