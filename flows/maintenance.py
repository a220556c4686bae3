"""The maintenance flow: compaction, checkpoints and vacuum (see `eventlake.ops.maintenance`).

Steps, each a task, in this order:

1. compact the event log: runs of small files that every view has folded (max seq at or
   below the lowest view watermark) become one seq-sorted file per run, in one commit;
2. compact each view table (`optimize.compact`), one task per view;
3. write a Delta checkpoint of every table;
4. vacuum every table, deleting files no version of the last `retention_hours` references.

Unlike the library API (a dry run unless told otherwise), the flow really deletes, with a
retention of `eventlake.ops.maintenance.DEFAULT_VACUUM_HOURS` (24 h) unless given. It is served
daily at 03:00 by `eventlake.flows.serve`.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact

from eventlake.ops import maintenance

from .settings import (
    SecretOptions,
    flow_storage_options,
    make_task_runner,
    open_flow_lake,
    resolve_target,
    task_retries,
)

__all__ = ["maintenance_flow"]

_RETRY = task_retries()


@task(name="compact-events", **_RETRY)
def compact_events_task(root: str, views_module: str | None, dry_run: bool,
                        storage_options: SecretOptions | None = None
                        ) -> maintenance.CompactionResult:
    lake = open_flow_lake(root, views_module, create=False, storage_options=storage_options)
    return maintenance.compact_events(lake, dry_run=dry_run)


@task(name="compact-view", task_run_name="compact {view}", **_RETRY)
def compact_view_task(root: str, views_module: str | None, view: str,
                      storage_options: SecretOptions | None = None) -> dict[str, Any]:
    lake = open_flow_lake(root, views_module, create=False, storage_options=storage_options)
    return maintenance.compact_views(lake, [view]).get(view, {})


@task(name="checkpoint", **_RETRY)
def checkpoint_task(root: str, views_module: str | None,
                    storage_options: SecretOptions | None = None) -> tuple[str, ...]:
    lake = open_flow_lake(root, views_module, create=False, storage_options=storage_options)
    return maintenance.checkpoint(lake)


@task(name="vacuum", **_RETRY)
def vacuum_task(root: str, views_module: str | None, retention_hours: float, dry_run: bool,
                storage_options: SecretOptions | None = None
                ) -> dict[str, maintenance.VacuumResult]:
    lake = open_flow_lake(root, views_module, create=False, storage_options=storage_options)
    return maintenance.vacuum(lake, retention_hours=retention_hours, dry_run=dry_run)


@flow(name="eventlake-maintenance", task_runner=make_task_runner("threads"))
def maintenance_flow(lake: str | None = None, views: str | None = None,
                     retention_hours: float = maintenance.DEFAULT_VACUUM_HOURS,
                     dry_run: bool = False,
                     storage_options: dict[str, str] | SecretOptions | None = None
                     ) -> dict[str, Any]:
    """Compact, checkpoint and vacuum the lake; returns what each step did."""
    root, module = resolve_target(lake, views)
    options = flow_storage_options(storage_options)
    lake_obj = open_flow_lake(root, module, create=False, storage_options=options)
    events = compact_events_task(root, module, dry_run, storage_options=options)
    views_done: dict[str, Any] = {}
    checkpoints: tuple[str, ...] = ()
    if not dry_run:
        futures = {name: compact_view_task.submit(root, module, name, storage_options=options)
                   for name in lake_obj.views}
        views_done = {name: future.result() for name, future in futures.items()}
        checkpoints = checkpoint_task(root, module, storage_options=options)
    vacuumed = vacuum_task(root, module, retention_hours, dry_run, storage_options=options)
    create_table_artifact(
        [{"step": "compact events",
          "result": f"{events.files_removed} files -> {events.files_added} "
                    f"(watermark {events.watermark})"},
         {"step": "compact views",
          "result": ", ".join(f"{k}: {v.get('numFilesRemoved', 0)} files"
                              for k, v in views_done.items()) or "-"},
         {"step": "checkpoints", "result": ", ".join(checkpoints) or "-"},
         *({"step": f"vacuum {name}",
            "result": f"{len(result.files)} files{' (dry run)' if result.dry_run else ''}"}
           for name, result in vacuumed.items())],
        key="eventlake-maintenance-summary", description=f"eventlake maintenance of {root}")
    return {"events": asdict(events), "views": views_done, "checkpoints": list(checkpoints),
            "vacuumed": {name: list(r.files) for name, r in vacuumed.items()},
            "dry_run": dry_run, "retention_hours": retention_hours}
