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
"""

from __future__ import annotations

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

from .settings import (
    SecretOptions,
    flow_storage_options,
    open_flow_lake,
    resolve_inbox,
    resolve_target,
    task_retries,
)

__all__ = ["ingest_file_task", "ingest_flow", "ingest_inbox"]


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
    if result.quarantined:
        get_run_logger().warning(
            "%s: %s quarantined to %s", Path(path).name,
            "unreadable file" if result.unreadable else f"{result.quarantined} bad record(s)",
            result.quarantine_file)
    return result


def ingest_inbox(root: str, inbox: str, *, producer: str = DEFAULT_PRODUCER,
                 quarantine_dir: str | None = None,
                 storage_options: SecretOptions | None = None,
                 chunk_events: int = DEFAULT_CHUNK_EVENTS) -> list[FileIngestResult]:
    """Run one `ingest_file_task` per inbox file, in name order (inside a flow)."""
    files = inbox_files(inbox)
    # In order and one at a time: seq order across files must not depend on scheduling.
    return [ingest_file_task(root, str(path), producer=producer, quarantine_dir=quarantine_dir,
                             storage_options=storage_options, chunk_events=chunk_events)
            for path in files]


@flow(name="eventlake-ingest", log_prints=False)
def ingest_flow(inbox: str | None = None, lake: str | None = None, views: str | None = None,
                producer: str = DEFAULT_PRODUCER, quarantine_dir: str | None = None,
                storage_options: dict[str, str] | SecretOptions | None = None,
                chunk_events: int = DEFAULT_CHUNK_EVENTS) -> IngestTotals:
    """Land every file of `inbox` in `lake` as one batch each; returns the run's totals.

    `storage_options` reach a lake on object storage (see `eventlake.flows.settings`)."""
    folder = str(resolve_inbox(inbox))
    root, _ = resolve_target(lake, views)
    totals = IngestTotals.of(ingest_inbox(root, folder, producer=producer,
                                          quarantine_dir=quarantine_dir,
                                          storage_options=flow_storage_options(
                                              storage_options),
                                          chunk_events=chunk_events))
    get_run_logger().info("ingested %s events from %s new file(s); %s quarantined; %s "
                          "refused", totals.events, totals.batches, totals.quarantined,
                          totals.refused)
    return totals
