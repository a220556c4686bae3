"""The ingest flow: every file in an inbox folder becomes one batch, exactly once.

One task per file, run in file-name order, so events get their `seq` in the same order on
every run and the result equals `eventlake ingest --quarantine` of the same folder. The work
of a file is `eventlake.ingest.inbox.ingest_file`: its batch identity is its name plus a content
hash, so a re-run, a retried task or a run after a crash never lands a file twice and never
skips one. Bad records go to `<lake>/quarantine/<file>@<hash>.jsonl` with their reason; a
file that cannot be read at all is quarantined whole; neither stops the run.

A file lands in chunks of `chunk_events` records (memory follows the chunk); a task that
died midway (a crash, a cancelled run) resumes at the next chunk when the file is ingested
again, and the file counts as landed only once its last chunk has. A file whose name already
landed with other content is refused, not landed twice: the task logs it and the run goes on
(`IngestTotals.refused`); replay corrected records with `eventlake quarantine replay`.

Tasks retry only transient failures (a lost commit race, an I/O hiccup), never bad input.

With `prepare_tasks=True` the files are read and checked by `prepare-file` tasks mapped over
the flow's task runner (threads, or Dask worker processes, which need only the lake URI and
storage options), several files ahead of the one landing, and the flow itself lands them in
name order, chunk by chunk (`eventlake.ingest.parallel`): the same batches, `seq` order and
quarantine files as one `ingest-file` task per file. A prepare task that fails is retried,
then its file is landed by the flow itself; a landing that fails transiently is retried as a
task would be (from that file, which resumes at its next chunk), any other failure ends the
run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from prefect import flow, get_run_logger, task

from eventlake.errors import ChangedFileError
from eventlake.ingest.files import DEFAULT_PRODUCER
from eventlake.ingest.inbox import (
    DEFAULT_CHUNK_EVENTS,
    FileIngestResult,
    IngestTotals,
    inbox_files,
    refused_result,
)
from eventlake.ingest.parallel import PreparedFile, PrepareTask

from .executor import FlowTasks
from .settings import (
    RETRY_DELAYS,
    SecretOptions,
    default_workers,
    flow_storage_options,
    is_transient,
    open_flow_lake,
    resolve_inbox,
    resolve_target,
    task_retries,
)

__all__ = ["ingest_file_task", "ingest_flow", "ingest_inbox", "prepare_file_task"]


@task(name="ingest-file", task_run_name="ingest {path}", **task_retries())
def ingest_file_task(root: str, path: str, producer: str = DEFAULT_PRODUCER,
                     quarantine_dir: str | None = None,
                     storage_options: SecretOptions | None = None,
                     chunk_events: int = DEFAULT_CHUNK_EVENTS) -> FileIngestResult:
    """Land one inbox file (see `eventlake.ingest.inbox.ingest_file`)."""
    from eventlake.ingest import inbox

    lake = open_flow_lake(root, storage_options=storage_options)
    try:
        result = inbox.ingest_file(lake, path, producer=producer,
                                   quarantine_dir=quarantine_dir, chunk_events=chunk_events)
    except ChangedFileError as exc:
        get_run_logger().warning("%s: refused, not ingested: %s", Path(path).name, exc)
        return refused_result(path, producer)
    _log_quarantined(result)
    return result


def _log_quarantined(result: FileIngestResult) -> None:
    if result.quarantined:
        get_run_logger().warning(
            "%s: %s quarantined to %s", Path(result.file).name,
            "unreadable file" if result.unreadable else f"{result.quarantined} bad record(s)",
            result.quarantine_file)


@task(name="prepare-file", task_run_name="{label}", **task_retries())
def prepare_file_task(function: Callable[[PrepareTask], PreparedFile], spec: PrepareTask,
                      label: str) -> PreparedFile:
    """Read, check and stage one inbox file (`eventlake.ingest.parallel.prepare_file`); it
    commits nothing."""
    return function(spec)


def _prepare_label(spec: PrepareTask, number: int) -> str:
    return f"prepare {Path(spec.path).name}"


def ingest_inbox(root: str, inbox: str, *, producer: str = DEFAULT_PRODUCER,
                 quarantine_dir: str | None = None,
                 storage_options: SecretOptions | None = None,
                 chunk_events: int = DEFAULT_CHUNK_EVENTS, prepare_tasks: bool = False
                 ) -> list[FileIngestResult]:
    """Run one `ingest_file_task` per inbox file, in name order (inside a flow); with
    `prepare_tasks`, `prepare_file_task`s on the flow's task runner and the landing here."""
    files = inbox_files(inbox)
    if prepare_tasks:
        return _ingest_prepared(root, files, producer=producer, quarantine_dir=quarantine_dir,
                                storage_options=storage_options, chunk_events=chunk_events)
    # In order and one at a time: seq order across files must not depend on scheduling.
    return [ingest_file_task(root, str(path), producer=producer, quarantine_dir=quarantine_dir,
                             storage_options=storage_options, chunk_events=chunk_events)
            for path in files]


def _ingest_prepared(root: str, files: list[Path], *, producer: str,
                     quarantine_dir: str | None, storage_options: SecretOptions | None,
                     chunk_events: int) -> list[FileIngestResult]:
    from eventlake.engine.buckettasks import Workers
    from eventlake.ingest.parallel import IngestOptions, iter_ingest_on

    lake = open_flow_lake(root, storage_options=storage_options)
    workers = Workers(FlowTasks(prepare_file_task, _prepare_label), lambda: lake,
                      workers=default_workers())
    options = IngestOptions(producer, quarantine_dir, chunk_events=chunk_events,
                            refuse_changed=True)
    results: list[FileIngestResult] = []
    # The landing runs here, not in a task: a transient failure of it (a commit race lost
    # again and again) is retried as a task would be, from the file it failed on, which
    # resumes at its next chunk (every landing is idempotent).
    for attempt in range(len(RETRY_DELAYS) + 1):
        try:
            for result in iter_ingest_on(lake, files[len(results):], executor=workers,
                                         options=options):
                if result.refused:
                    get_run_logger().warning(
                        "%s: refused, not ingested: its name landed before with other "
                        "content (replay corrected records with `eventlake quarantine "
                        "replay`)", Path(result.file).name)
                _log_quarantined(result)
                results.append(result)
            break
        except Exception as exc:
            if attempt == len(RETRY_DELAYS) or not is_transient(exc):
                raise
            get_run_logger().warning("landing %s failed (%s), retried in %s s",
                                     files[len(results)].name, exc, RETRY_DELAYS[attempt])
            time.sleep(RETRY_DELAYS[attempt])
    return results


@flow(name="eventlake-ingest", log_prints=False)
def ingest_flow(inbox: str | None = None, lake: str | None = None, views: str | None = None,
                producer: str = DEFAULT_PRODUCER, quarantine_dir: str | None = None,
                storage_options: dict[str, str] | SecretOptions | None = None,
                chunk_events: int = DEFAULT_CHUNK_EVENTS, prepare_tasks: bool = False
                ) -> IngestTotals:
    """Land every file of `inbox` in `lake` as one batch each; returns the run's totals.

    `storage_options` reach a lake on object storage (see `eventlake.flows.settings`);
    `prepare_tasks` reads and checks the files on the task runner, several at a time."""
    folder = str(resolve_inbox(inbox))
    root, _ = resolve_target(lake, views)
    totals = IngestTotals.of(ingest_inbox(root, folder, producer=producer,
                                          quarantine_dir=quarantine_dir,
                                          storage_options=flow_storage_options(
                                              storage_options),
                                          chunk_events=chunk_events,
                                          prepare_tasks=prepare_tasks))
    get_run_logger().info("ingested %s events from %s new file(s); %s quarantined; %s "
                          "refused", totals.events, totals.batches, totals.quarantined,
                          totals.refused)
    return totals
