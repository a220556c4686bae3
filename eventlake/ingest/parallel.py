"""Ingesting many inbox files in parallel: files are read and checked by workers, landed in
order by one coordinator.

Reading a file and validating its records is most of an ingest's time, and files are
independent; commits are not (each takes the next `seq`). So the work splits in two:

1. **prepare** (`prepare_file`, in any process: a thread, a `ProcessPoolExecutor` with the
   spawn context, a Dask worker). Given a `PrepareTask` (plain data: the lake URI, its
   storage options and input limits, the file's path, the producer and chunk size), it reads
   the file in the chunks `ingest_file` would, checks each chunk exactly as `ingest_file`
   does (the same `_checked`, event ids claimed across chunks), and stages each chunk's
   good events (of a resumed file, those of the chunks still to land), normalized, as a
   Parquet file under `<lake>/_staging/ingest/<run>/`
   through the lake's storage seam (`eventlake.store.staging`), so it works on an object
   store. It returns the chunks' places, staged files and problems (`PreparedFile`). It
   commits nothing.
2. **land** (the coordinator, `ingest_files_on`): in the order given, file by file and chunk
   by chunk, it decides again everything that depends on the log (already landed, a name
   that landed with other content, the chunk size of a resumed file), writes the quarantine
   file, and appends each staged chunk with the batch key and marks `ingest_file` uses
   (`eventlake.ingest.inbox.FileRun`). So the log gets the same batches in the same order
   as a serial ingest: gap-free `seq`, each record once across a re-run, a mix of parallel
   and serial runs, or a crash at any point.

Preparation runs ahead of landing by a bounded number of files (`lookahead`, twice the
workers by default) that together hold at most `lookahead_bytes` of input (one file ahead
at least), so staged data never holds more than the file landing and those. A landed chunk's
staged file is deleted at once, and the run's folder when it ends; files staged by a run that
crashed are orphans no reader sees, which `eventlake doctor --fix` deletes.

A prepare that fails with anything but an `EventlakeError` (its worker died, the pool broke,
an I/O hiccup) is submitted again, up to `Workers.retries` times; a file whose preparation
still fails, or does not fit what the log says when its turn comes (another run changed its
chunking, say), is landed by `ingest_file` itself in the coordinator, which then raises what
a serial ingest would.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

from eventlake.engine.buckettasks import Workers
from eventlake.errors import (
    ChangedFileError,
    EventlakeError,
    InvalidEventError,
    UnstagedChunkError,
)
from eventlake.ingest.files import DEFAULT_PRODUCER, file_batch_identity, read_chunks
from eventlake.ingest.inbox import (
    DEFAULT_CHUNK_EVENTS,
    ChunkPlace,
    FileIngestResult,
    FileRun,
    StagedChunk,
    _chained,
    _checked,
    admit,
    ingest_file,
    land_staged,
    land_unreadable,
    quarantine_target,
    refused_result,
    staged_if_landed,
    staging_run,
    strict_failure,
)
from eventlake.model.events import Limits, NormalizedBatch
from eventlake.store.staging import delete_staged, stage_table

if TYPE_CHECKING:
    from eventlake.model.progress import ProgressSink
    from eventlake.store.log import EventLog
    from eventlake.store.parts import LakeParts
    from eventlake.store.storage import Storage

__all__ = ["DEFAULT_LOOKAHEAD_BYTES", "IngestOptions", "PrepareTask", "PreparedFile",
           "StagedChunk", "ingest_files_on", "iter_ingest_on", "prepare_file"]

# What the files prepared ahead of the one landing may hold, in input bytes: their staged
# chunks are on disk (or the object store) until they land.
DEFAULT_LOOKAHEAD_BYTES = 4 << 30


@dataclass(frozen=True)
class PrepareTask:
    """One file to prepare: everything a worker needs, as plain data (picklable)."""

    root: str
    # Out of the repr: a task's arguments may be shown (in a flow's task runs, say).
    storage_options: dict[str, str] = field(repr=False)
    limits: Limits
    path: str
    producer: str
    chunk_events: int
    staging: str  # the folder under `<root>/_staging` for this file's chunks
    strict: bool = False  # quarantine off: a chunk with a problem never lands, so no staging
    as_new: bool = False


@dataclass(frozen=True)
class PreparedFile:
    """What preparing one file did. `skipped` says why it was not read: `landed` (its
    identity is in the log) or `named` (its name landed with other content); `unreadable`
    is the whole-file problem of a file that cannot be read at all. `worker` names the
    process and thread that did the work (`<pid>/<thread id>`)."""

    path: str
    producer: str
    batch_no: str
    size: int
    total_bytes: int
    chunks: tuple[StagedChunk, ...] = ()
    skipped: str | None = None
    unreadable: InvalidEventError | None = None
    worker: str = ""
    seconds: float = 0.0

    @property
    def pid(self) -> int:
        return int(self.worker.split("/", 1)[0])


@dataclass(frozen=True)
class _Parts:
    """What preparing needs of a lake (the `LakeParts` subset `_checked` uses): opened from
    the URI and storage options alone, no views module, no table created."""

    storage: Storage
    log: EventLog
    limits: Limits


def _opened(task: PrepareTask) -> LakeParts:
    from eventlake.store.log import EventLog
    from eventlake.store.storage import Storage

    # The options were resolved by the coordinator (environment and defaults): taken as is.
    storage = Storage(task.root, dict(task.storage_options))
    return cast("LakeParts", _Parts(storage, EventLog(storage), task.limits))


def prepare_file(task: PrepareTask) -> PreparedFile:
    """Read and check one file, stage its chunks' good events; commit nothing (any process)."""
    from eventlake.validate.events import normalize_batch

    started = time.perf_counter()
    worker = f"{os.getpid()}/{threading.get_ident()}"
    lake = _opened(task)
    source = Path(task.path)
    producer, batch_no = file_batch_identity(source, producer=task.producer)
    prepared = PreparedFile(task.path, producer, batch_no, task.chunk_events,
                            source.stat().st_size, worker=worker)
    # What the log says now, so that a file landed or refused is not read (the coordinator
    # decides again when the file's turn comes: the log may have moved on by then).
    try:
        admitted = admit(lake, FileIngestResult(task.path, producer, batch_no, None, 0, 0,
                                                False),
                         as_new=task.as_new, chunk_events=task.chunk_events)
    except ChangedFileError:
        return replace(prepared, skipped="named", seconds=time.perf_counter() - started)
    if isinstance(admitted, FileIngestResult):
        return replace(prepared, skipped="landed", seconds=time.perf_counter() - started)
    size = admitted.size
    try:
        chunks = read_chunks(source, chunk_records=size)
        first = next(chunks)
    except InvalidEventError as exc:
        return replace(prepared, size=size, unreadable=exc,
                       seconds=time.perf_counter() - started)
    staged: list[StagedChunk] = []
    claimed: dict[str, int] = {}
    try:
        for chunk in _chained(first, chunks):
            landed = staged_if_landed(lake, chunk, source, producer, batch_no, claimed)
            if landed is not None:  # a file resumed
                staged.append(landed)
                continue
            place = ChunkPlace.of(chunk)
            good, problems = _checked(lake, chunk, source, claimed)
            chunk.records.clear()
            name: str | None = None
            count = 0
            if good and not (task.strict and problems):
                batch = good if isinstance(good, NormalizedBatch) else normalize_batch(
                    good, limits=lake.limits)
                count = batch.count
                name = f"{task.staging}/{place.number:06d}.parquet"
                stage_table(lake.storage, name, batch.table)
            staged.append(StagedChunk.checked(place, name, count, problems,
                                              strict=task.strict))
    except BaseException:
        delete_staged(lake.storage, task.staging)  # a failed attempt leaves nothing
        raise
    return replace(prepared, size=size, chunks=tuple(staged),
                   seconds=time.perf_counter() - started)


@dataclass(frozen=True)
class IngestOptions:
    """The options of one ingest run, as `ingest_file` takes them (`quarantine_name` gives a
    file's quarantine file name, None: `<name>@<hash>.jsonl`). With `refuse_changed` a file
    whose name landed with other content is reported (`refused_result`) and the run goes on,
    as the inbox flow does; else its `ChangedFileError` ends the run."""

    producer: str = DEFAULT_PRODUCER
    quarantine_dir: str | os.PathLike[str] | None = None
    quarantine: bool = True
    quarantine_name: Callable[[Path], str | None] | None = None
    chunk_events: int = DEFAULT_CHUNK_EVENTS
    as_new: bool = False
    progress: ProgressSink | None = None
    stop: Callable[[], bool] | None = None
    refuse_changed: bool = False

    def name_of(self, path: Path) -> str | None:
        return None if self.quarantine_name is None else self.quarantine_name(path)

    def serial(self, lake: LakeParts, path: Path) -> FileIngestResult:
        """`ingest_file` of `path` in this process (the fallback, and the reference)."""
        return ingest_file(lake, path, producer=self.producer,
                           quarantine_dir=self.quarantine_dir, quarantine=self.quarantine,
                           quarantine_name=self.name_of(path),
                           chunk_events=self.chunk_events, as_new=self.as_new,
                           progress=self.progress, stop=self.stop)


def ingest_files_on(lake: LakeParts, paths: Sequence[str | os.PathLike[str]], *,
                    executor: Executor | Workers, producer: str = DEFAULT_PRODUCER,
                    quarantine_dir: str | os.PathLike[str] | None = None,
                    quarantine: bool = True, chunk_events: int = DEFAULT_CHUNK_EVENTS,
                    as_new: bool = False, refuse_changed: bool = False,
                    lookahead: int | None = None,
                    lookahead_bytes: int = DEFAULT_LOOKAHEAD_BYTES) -> list[FileIngestResult]:
    """Land `paths` in the order given, as `ingest_file` of each would, with each file read
    and checked on `executor` (a `concurrent.futures.Executor`: threads, a
    `ProcessPoolExecutor` with the spawn context, a Dask `Client.get_executor()`; or
    `Workers` to set retries and the worker count), at most `lookahead` files ahead of the
    one landing (default: twice the workers) holding at most `lookahead_bytes` of input
    together (one file ahead at least).

    The result is what serial `ingest_file` calls give: the same batches, `seq` order,
    quarantine files and errors (a bad record in strict mode, `ChangedFileError`, raised when
    that file's turn comes, after the files before it landed). See `IngestOptions` for the
    options; `iter_ingest_on` takes them all (progress, stop) and yields file by file."""
    options = IngestOptions(producer, quarantine_dir, quarantine, None, chunk_events, as_new,
                            refuse_changed=refuse_changed)
    return list(iter_ingest_on(lake, paths, executor=executor, options=options,
                               lookahead=lookahead, lookahead_bytes=lookahead_bytes))



def iter_ingest_on(lake: LakeParts, paths: Sequence[str | os.PathLike[str]], *,
                   executor: Executor | Workers, options: IngestOptions | None = None,
                   lookahead: int | None = None,
                   lookahead_bytes: int = DEFAULT_LOOKAHEAD_BYTES
                   ) -> Iterator[FileIngestResult]:
    """`ingest_files_on`, one result at a time as each file lands (the CLI reports each).
    `options.stop` is asked after each landed chunk: a True ends the run there, after a
    result with `complete=False`. Closing the iterator early stops preparing and deletes
    what was staged."""
    options = options or IngestOptions()
    workers = executor if isinstance(executor, Workers) else Workers(executor, _no_lake)
    files = [Path(p) for p in paths]
    ahead = max(1, lookahead if lookahead is not None else 2 * workers.count())
    run = staging_run()
    tasks = [PrepareTask(lake.storage.root, dict(lake.storage.options), lake.limits,
                         str(path), options.producer, options.chunk_events,
                         f"{run}/{index:06d}", strict=not options.quarantine,
                         as_new=options.as_new)
             for index, path in enumerate(files)]
    pending = _Pending(workers, tasks)
    sizes = [_size(path) for path in files]
    try:
        for index, path in enumerate(files):
            pending.fill(_ahead_to(sizes, index, ahead, lookahead_bytes))
            prepared = pending.take(index)
            try:
                result = _land(lake, path, prepared, options)
            except ChangedFileError:
                if not options.refuse_changed:
                    raise
                result = refused_result(path, options.producer)
            finally:
                delete_staged(lake.storage, tasks[index].staging)
            yield result
            if not result.complete:
                return
    except (KeyboardInterrupt, SystemExit):
        # Stopping at once: the prepares in flight are not waited for, and what they stage
        # after this is left for `doctor --fix`.
        pending.close(wait_running=False)
        raise
    finally:
        pending.close()
        delete_staged(lake.storage, run)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # gone or unreadable: its prepare meets the error and says it
        return 0


def _ahead_to(sizes: Sequence[int], index: int, ahead: int, budget: int) -> int:
    """How many files are to be submitted while file `index` lands: those up to it, then at
    most `ahead` more holding at most `budget` bytes together (one more at least)."""
    upto = index + 1
    held = 0
    while upto < len(sizes) and upto <= index + ahead:
        held += sizes[upto]
        if upto > index + 1 and held > budget:
            break
        upto += 1
    return upto


def _no_lake() -> LakeParts:
    raise AssertionError("a prepare task opens the lake from its URI")


class _Pending:
    """The prepare tasks in flight, submitted in file order, each retried on a failure that
    is not an `EventlakeError`."""

    def __init__(self, workers: Workers, tasks: Sequence[PrepareTask]) -> None:
        self.workers, self.tasks = workers, tasks
        self.futures: dict[int, Future[PreparedFile]] = {}
        self.submitted = 0

    def fill(self, upto: int) -> None:
        while self.submitted < upto:
            self._submit(self.submitted)
            self.submitted += 1

    def _submit(self, index: int) -> bool:
        try:
            self.futures[index] = self.workers.executor.submit(prepare_file, self.tasks[index])
        except Exception:  # a broken pool: the coordinator lands the file itself
            self.futures.pop(index, None)
            return False
        return True

    def take(self, index: int) -> PreparedFile | None:
        """The prepared file `index`, None when preparing it failed (then the coordinator
        lands it serially, which meets the same failure, or not)."""
        attempt = 0
        while True:
            future = self.futures.pop(index, None)
            if future is None:
                return None
            try:
                return future.result()
            except EventlakeError:
                return None
            except Exception:
                if attempt >= self.workers.retries or not self._submit(index):
                    return None
                attempt += 1

    def close(self, *, wait_running: bool = True) -> None:
        """Cancel what has not started and (`wait_running`) wait for what runs, so that
        nothing is staged after the run's folder is deleted."""
        for future in self.futures.values():
            future.cancel()
        running = [f for f in self.futures.values() if not f.cancelled()]
        if running and wait_running:
            wait(running)
        self.futures.clear()


def _land(lake: LakeParts, path: Path, prepared: PreparedFile | None, options: IngestOptions
          ) -> FileIngestResult:
    """Land one prepared file as `ingest_file` would have (or by `ingest_file` itself when
    the preparation does not fit what the log says now)."""
    if prepared is None:
        return options.serial(lake, path)
    base = FileIngestResult(str(path), prepared.producer, prepared.batch_no, records=None,
                            events=0, quarantined=0, duplicate=False,
                            prepared_by=prepared.worker)
    admitted = admit(lake, base, as_new=options.as_new, chunk_events=options.chunk_events)
    if isinstance(admitted, FileIngestResult):
        return admitted
    if prepared.skipped is not None or admitted.size != prepared.size:
        # Prepared on a log that has changed since (another run landed part of the file, or
        # its identity's batch key was revoked): the file is read again, here.
        return options.serial(lake, path)
    target = quarantine_target(lake, prepared.batch_no, quarantine=options.quarantine,
                               quarantine_dir=options.quarantine_dir,
                               quarantine_name=options.name_of(path))
    if prepared.unreadable is not None:
        if target is None:
            raise prepared.unreadable
        return land_unreadable(lake, base, prepared.unreadable, target, admitted)
    chunks = prepared.chunks
    if target is None and len(chunks) > 1:
        failure = strict_failure(lake, prepared.producer, prepared.batch_no, chunks)
        if failure is not None:
            raise failure
    run = FileRun(lake, path, prepared.producer, prepared.batch_no, admitted, target,
                  options.progress, total_bytes=prepared.total_bytes)
    try:
        return land_staged(lake, base, run, chunks, options.stop)
    except UnstagedChunkError:
        # A chunk prepared as landed is not in the log now: the file is read again, here,
        # resuming after the chunks that did land.
        return options.serial(lake, path)
