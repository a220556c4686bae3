"""Landing inbox files: one batch per file, exactly once, bad records to quarantine.

`ingest_file` is the unit the `eventlake ingest --quarantine` command and the Prefect ingest
flow share. For one file it

1. computes the file's batch identity (`files.file_batch_identity`: name plus content hash);
   when the log already holds that batch, the file is not read again (`duplicate=True`);
2. reads it and validates it: a file without a bad record as one Arrow table (the columnar
   checks of `Lake.append`), any other record by record (`files.split_valid`), which names
   each bad record and its line;
3. writes every bad record to the quarantine folder, one JSON Lines file per file identity,
   written whole and renamed into place, so a retry rewrites the same content and two runs
   (or two versions of a file with the same name) never overwrite each other's entries;
4. appends the good records as one batch under that identity; a file with no good record,
   or one that cannot be read at all (quarantined whole), still commits an empty batch under
   its identity, so it is handled once and a re-run reports it as a duplicate.

A crash between any two steps is safe: quarantine entries are rewritten identically, and the
batch identity makes the append land at most once. Nothing is dropped silently: for a file
that was read, `events + quarantined == records`.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventlake.errors import (
    ChangedFileError,
    InvalidEventError,
    MarkedError,
    UnstagedChunkError,
)
from eventlake.ingest.files import (
    DEFAULT_PRODUCER,
    Chunk,
    RecordProblem,
    file_batch_identity,
    file_format,
    inbox_files,
    read_chunks,
    split_valid,
)
from eventlake.model import jsoncodec
from eventlake.model.events import NormalizedBatch
from eventlake.model.progress import Progress
from eventlake.store.atomicfile import atomic_write
from eventlake.store.staging import delete_staged, read_staged, stage_table

if TYPE_CHECKING:
    from concurrent.futures import Executor

    import pyarrow as pa

    from eventlake.model.progress import ProgressSink
    from eventlake.store.log import AppendResult
    from eventlake.store.parts import LakeParts

__all__ = [
    "DEFAULT_CHUNK_EVENTS",
    "QUARANTINE",
    "RAW_COPY_LIMIT",
    "Admission",
    "ChunkPlace",
    "FileIngestResult",
    "FileRun",
    "IngestTotals",
    "StagedChunk",
    "admit",
    "default_quarantine_dir",
    "inbox_files",
    "ingest_file",
    "ingest_files",
    "land_staged",
    "land_unreadable",
    "name_mark",
    "quarantine_file_name",
    "quarantine_target",
    "read_quarantine",
    "refused_result",
    "staging_run",
    "strict_failure",
]

QUARANTINE = "quarantine"
# An unreadable file up to this size is copied (as text, undecodable bytes replaced) into its
# quarantine entry, so it can be inspected without the inbox.
RAW_COPY_LIMIT = 64 * 1024


@dataclass(frozen=True)
class FileIngestResult:
    """What landing one file did.

    `records` is the number of non-blank lines (or rows) read, None when the file was not read
    (a duplicate) or could not be read (`unreadable`, quarantined whole, `quarantined == 1`).
    For a file that was read, `events + quarantined == records`.
    """

    file: str
    producer: str
    batch_no: str
    records: int | None
    events: int
    quarantined: int
    duplicate: bool
    unreadable: bool = False
    first_seq: int | None = None
    last_seq: int | None = None
    quarantine_file: str | None = None
    # False when the ingest stopped between chunks (`stop`): a re-run lands the rest.
    complete: bool = True
    chunks: int = 0  # chunks of the file handled so far (landed now or before)
    resumed_chunks: int = 0  # of them, chunks that had landed in an earlier run
    chunk_events: int | None = None
    # Not ingested: its name landed before with other content (`ChangedFileError`).
    refused: bool = False
    # The worker (`<pid>/<thread id>`) that read and checked it, in a parallel ingest
    # (`eventlake.ingest.parallel`); None when this process did.
    prepared_by: str | None = None

    @property
    def batch_id(self) -> str:
        return f"{self.producer}/{self.batch_no}"

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "producer": self.producer, "batch_no": self.batch_no,
                "batch_id": self.batch_id, "records": self.records, "events": self.events,
                "first_seq": self.first_seq, "last_seq": self.last_seq,
                "duplicate": self.duplicate, "unreadable": self.unreadable,
                "quarantined": self.quarantined, "quarantine_file": self.quarantine_file,
                "complete": self.complete, "chunks": self.chunks,
                "resumed_chunks": self.resumed_chunks, "chunk_events": self.chunk_events,
                "refused": self.refused,
                **({"prepared_by": self.prepared_by} if self.prepared_by else {})}


@dataclass(frozen=True)
class IngestTotals:
    """Sums over the files of one inbox run."""

    files: int
    batches: int
    duplicates: int
    records: int
    events: int
    quarantined: int
    unreadable: int
    refused: int = 0  # files whose name landed before with other content

    @classmethod
    def of(cls, results: Iterable[FileIngestResult]) -> IngestTotals:
        items = list(results)
        return cls(
            files=len(items),
            batches=sum(1 for r in items if not r.duplicate and not r.refused),
            duplicates=sum(1 for r in items if r.duplicate),
            records=sum(r.records or 0 for r in items),
            events=sum(r.events for r in items),
            quarantined=sum(r.quarantined for r in items if not r.unreadable),
            unreadable=sum(1 for r in items if r.unreadable),
            refused=sum(1 for r in items if r.refused),
        )


def refused_result(path: str | os.PathLike[str], producer: str = DEFAULT_PRODUCER
                   ) -> FileIngestResult:
    """The result of a file `ingest_file` refused with `ChangedFileError` (nothing written)."""
    _, batch_no = file_batch_identity(path, producer=producer)
    return FileIngestResult(os.fspath(path), producer, batch_no, records=None, events=0,
                            quarantined=0, duplicate=False, refused=True)


def default_quarantine_dir(lake: LakeParts) -> Path:
    """`<root>/quarantine` of a local lake; for a lake on object storage a local folder,
    `data/quarantine/<bucket>/<prefix>` under the working directory (quarantine files are
    for people to read and fix, next to the inbox, not part of the lake's tables)."""
    return Path(lake.storage.local_folder(QUARANTINE))


def quarantine_file_name(batch_no: str) -> str:
    """The quarantine file of a file identity: `<name>@<hash>.jsonl`."""
    return f"{batch_no}.jsonl"


def _write_quarantine(target: Path, entries: Sequence[dict[str, Any]]) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written whole, then renamed (and on disk before the batch lands): a crash never leaves
    # half a quarantine file behind, and a retry rewrites the same content instead of adding
    # entries.
    with atomic_write(target) as handle:
        for entry in entries:
            line = json.dumps(entry, ensure_ascii=False)
            try:
                line.encode("utf-8")
            except UnicodeEncodeError:
                # A lone surrogate from the bad record: keep it as a JSON escape.
                line = json.dumps(entry)
            handle.write(line + "\n")
    return target


def _whole_file_entry(path: Path, exc: InvalidEventError, producer: str, batch_no: str
                      ) -> dict[str, Any]:
    raw: str | None = None
    try:
        if path.stat().st_size <= RAW_COPY_LIMIT:
            raw = path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        raw = None
    return {"file": str(path), "line": None, "field": exc.field, "reason": str(exc), "raw": raw,
            "producer": producer, "batch_no": batch_no}


DEFAULT_CHUNK_EVENTS = 50_000
# App ids of the marks a file ingest commits with its batches (`EventLog.append(marks=...)`).
_CHUNKING = "eventlake.chunking/"  # <producer>/<file identity> -> the chunk size it uses
_NAMED = "eventlake.file/"  # <producer>/<file name> -> its content hash, as an int


def name_mark(producer: str, name: str) -> str:
    """The app id recording which content the file name `name` of `producer` landed with."""
    return f"{_NAMED}{producer}/{name}"


def content_code(batch_no: str) -> int:
    """A file identity's content hash as a mark version (the first 60 bits)."""
    return int(batch_no.rpartition("@")[2][:15], 16)


def chunk_batch_no(batch_no: str, number: int, *, last: bool) -> str:
    """The batch number of chunk `number` of a file: the file's own identity for its last
    chunk (so a file that fits one chunk is one batch, as it always was, and the file counts
    as landed exactly when its last chunk did), `<identity>#<number>` for the others."""
    return batch_no if last else f"{batch_no}#{number}"


def ingest_file(lake: LakeParts, path: str | os.PathLike[str], *, producer: str = DEFAULT_PRODUCER,
                quarantine_dir: str | os.PathLike[str] | None = None,
                quarantine: bool = True, quarantine_name: str | None = None,
                chunk_events: int = DEFAULT_CHUNK_EVENTS, as_new: bool = False,
                progress: ProgressSink | None = None,
                stop: Callable[[], bool] | None = None) -> FileIngestResult:
    """Land one inbox file exactly once, in chunks of `chunk_events` records; bad records go
    to quarantine.

    Memory follows the chunk, not the file. Each chunk is a batch keyed by the file's
    identity and its chunk number; the file counts as landed once its last chunk has, and an
    ingest that stopped midway (a crash, `stop`) resumes at the first chunk that did not land,
    with the chunk size it started with.

    `quarantine_dir` defaults to `<root>/quarantine` of a local lake. With `quarantine=False`
    a bad record (or an unreadable file) raises `InvalidEventError` naming the first problem
    and nothing of the file is written (a file of several chunks is checked whole first,
    its checked chunks staged under `<root>/_staging` so that it is read once).
    `quarantine_name` overrides the quarantine file's name (default
    `quarantine_file_name(batch_no)`).

    A file name that already landed with other content raises `ChangedFileError` (replay
    corrected records with `eventlake.ingest.replay`), unless `as_new`: then it lands as a
    file of its own. `progress` receives a `Progress` in bytes after each chunk; `stop` is
    asked after each landed chunk, and a True ends the ingest there (`complete=False`).

    Errors other than bad input propagate: `OSError` when the file cannot be opened,
    `CommitConflictError` (transient) when the append keeps losing commit races.
    """
    source = Path(path)
    producer, batch_no = file_batch_identity(source, producer=producer)
    base = FileIngestResult(str(source), producer, batch_no, records=None, events=0,
                            quarantined=0, duplicate=False)
    # A file that already landed is not read again: it may even hold records that were
    # quarantined then, which must not fail a strict re-run.
    admitted = admit(lake, base, as_new=as_new, chunk_events=chunk_events)
    if isinstance(admitted, FileIngestResult):
        return admitted
    size = admitted.size
    target = quarantine_target(lake, batch_no, quarantine=quarantine,
                               quarantine_dir=quarantine_dir, quarantine_name=quarantine_name)
    try:
        chunks = read_chunks(source, chunk_records=size)
        first = next(chunks)
    except InvalidEventError as exc:
        if target is None:
            raise
        return land_unreadable(lake, base, exc, target, admitted)
    run = FileRun(lake, source, producer, batch_no, admitted, target, progress)
    if target is None and not first.last:
        # Strict, several chunks: nothing lands unless every chunk passes, and the file is
        # read once (its checked chunks are staged, then landed from there).
        folder = f"{staging_run()}/000000"
        try:
            staged = _stage_checked(lake, run, _chained(first, chunks), folder, stop)
            del first
            if staged is None:
                return run.result(base, complete=False)
            return land_staged(lake, base, run, staged, stop)
        finally:
            delete_staged(lake.storage, folder)
    pending: Chunk | None = first
    del first  # each chunk is let go once it landed: memory follows one chunk
    while pending is not None:
        last = pending.last
        run.land(pending)
        pending = None
        if last:
            return run.result(base, complete=True)
        if stop is not None and stop():
            return run.result(base, complete=False)
        pending = next(chunks)
    raise AssertionError("read_chunks ends with a last chunk")


@dataclass(frozen=True)
class Admission:
    """A file `admit` let land: the chunk size it lands with, and what its name's mark held
    then (None: the name never landed), which its first chunk's commit expects still."""

    size: int
    named: int | None
    as_new: bool


def admit(lake: LakeParts, base: FileIngestResult, *, as_new: bool, chunk_events: int
          ) -> FileIngestResult | Admission:
    """Whether the file of `base` is to land: its duplicate result when its identity landed
    already, else its `Admission` (with the chunk size a resumed file started with).
    Raises `ChangedFileError` when its name landed with other content (unless `as_new`)."""
    producer, batch_no = base.producer, base.batch_no
    log = lake.log
    landed = log.landed(producer, batch_no)
    if landed is not None:
        return replace(base, duplicate=True, last_seq=landed, complete=True)
    named = log.mark(name_mark(producer, Path(base.file).name))
    _refuse_changed(base.file, producer, batch_no, named, as_new=as_new)
    # A resumed file keeps the chunk size it started with: other boundaries would land
    # records of its landed chunks again.
    size = log.mark(f"{_CHUNKING}{producer}/{batch_no}") or chunk_events
    return Admission(size, named, as_new)


def _refuse_changed(file: str, producer: str, batch_no: str, named: int | None, *,
                    as_new: bool) -> None:
    """Raise `ChangedFileError` when the name's mark `named` records other content."""
    if named is None or named == content_code(batch_no) or as_new:
        return
    raise ChangedFileError(
        f"{Path(file).name} already landed (producer {producer}) with other content: a "
        "corrected file would land its good records twice. Replay corrected quarantined "
        "records with `eventlake quarantine replay QUARANTINE_FILE`, or pass --as-new "
        "(as_new=True) to land this file as a new one", file=file, producer=producer)


def quarantine_target(lake: LakeParts, batch_no: str, *, quarantine: bool,
                      quarantine_dir: str | os.PathLike[str] | None,
                      quarantine_name: str | None) -> Path | None:
    """The quarantine file of a file identity, None in strict mode (`quarantine=False`)."""
    if not quarantine:
        return None
    folder = Path(quarantine_dir) if quarantine_dir is not None else (
        default_quarantine_dir(lake))
    return folder / (quarantine_name or quarantine_file_name(batch_no))


def land_unreadable(lake: LakeParts, base: FileIngestResult, exc: InvalidEventError,
                    target: Path, admission: Admission) -> FileIngestResult:
    """Quarantine a file that cannot be read at all, whole, and commit its empty batch."""
    source = Path(base.file)
    producer, batch_no = base.producer, base.batch_no
    written = _write_quarantine(target, [_whole_file_entry(source, exc, producer, batch_no)])
    appended = _append_first(lake, [], producer, batch_no, source, admission, last=True)
    return replace(base, quarantined=1, unreadable=True, quarantine_file=str(written),
                   duplicate=appended.duplicate, last_seq=appended.last_seq, complete=True)


@dataclass(frozen=True)
class ChunkPlace:
    """Where a chunk sits in its file (`Chunk` without its records): enough to land it once
    its records were checked, in this process or another."""

    number: int
    last: bool
    read: int
    last_line: int
    position: int

    @classmethod
    def of(cls, chunk: Chunk) -> ChunkPlace:
        return cls(chunk.number, chunk.last, chunk.read, chunk.last_line, chunk.position)


class FileRun:
    """The chunks of one file landing, and what they did."""

    def __init__(self, lake: LakeParts, source: Path, producer: str, batch_no: str,
                 admission: Admission, target: Path | None, progress: ProgressSink | None,
                 total_bytes: int | None = None) -> None:
        self.lake, self.source, self.producer, self.batch_no = lake, source, producer, batch_no
        self.admission, self.size = admission, admission.size
        self.target, self.progress = target, progress
        self.total_bytes = source.stat().st_size if total_bytes is None else total_bytes
        self.records = self.events = self.chunks = self.resumed = 0
        self.first_seq: int | None = None
        self.last_seq: int | None = None
        self.duplicate = False
        # Quarantine entries of the file so far, rewritten whole with each chunk that adds
        # some; a resumed run starts from those of the chunks that landed before it.
        self.entries: list[dict[str, Any]] | None = None
        self.kept_line = 0  # the last line of the chunks that landed before this run
        # The caller-supplied event ids of the file so far (about 100 bytes each): a repeat
        # in a later chunk is quarantined, as it would be in the file as one batch.
        self.claimed: dict[str, int] = {}

    def prior(self) -> list[dict[str, Any]]:
        if self.entries is None:
            self.entries = [] if self.target is None or not self.resumed else [
                entry for entry in _entries(self.target)
                if isinstance(entry.get("line"), int) and entry["line"] <= self.kept_line
                and entry.get("batch_no") == self.batch_no]
        return self.entries

    def land(self, chunk: Chunk) -> None:
        place = ChunkPlace.of(chunk)
        if self.skip_landed(place):
            claim_ids(self.lake, chunk, self.source, self.claimed)
            return
        good, problems = _checked(self.lake, chunk, self.source, self.claimed)
        # The records are in `good` now (as a table on the common path): free the dicts
        # before the commit, which needs memory of its own.
        chunk.records.clear()
        self.commit(place, good, problems)

    def skip_landed(self, place: ChunkPlace) -> bool:
        """Count a chunk that landed in an earlier run (True), or say it is to land."""
        if not landed_before(self.lake, self.producer, self.batch_no, place):
            return False
        self.records += place.read
        self.resumed += 1
        self.kept_line = place.last_line
        self._report(place)
        return True

    def commit(self, place: ChunkPlace, good: NormalizedBatch | list[dict[str, Any]],
               problems: Sequence[RecordProblem], *, unlisted: int = 0) -> None:
        """Land a checked chunk: its problems to quarantine first, then its good events.
        `unlisted` counts problems of a strict check that were counted, not kept."""
        key = chunk_batch_no(self.batch_no, place.number, last=place.last)
        self.records += place.read
        if problems:
            if self.target is None:
                # Only a file of one chunk gets here: a longer one was checked whole first.
                raise _strict_error(problems[0], len(problems) + unlisted)
            entries = self.prior()
            entries.extend({**p.to_json(), "producer": self.producer,
                            "batch_no": self.batch_no} for p in problems)
            # On disk before the chunk lands: a crash between the two rewrites it the same.
            _write_quarantine(self.target, entries)
        appended = _append_first(
            self.lake, good, self.producer, self.batch_no, self.source, self.admission,
            last=place.last) if place.number == 0 else _append(
                self.lake, good, self.producer, key, {})
        self.chunks += 1
        self.events += appended.count
        self.duplicate = appended.duplicate and place.last and not self.events
        if appended.first_seq is not None and self.first_seq is None:
            self.first_seq = appended.first_seq
        if appended.count:
            self.last_seq = appended.last_seq
        elif self.last_seq is None:
            self.last_seq = appended.last_seq
        self._report(place)

    def _report(self, place: ChunkPlace) -> None:
        if self.progress is not None:
            self.progress(Progress(self.source.name, place.position, self.total_bytes, "bytes",
                                   rows=self.records))

    def result(self, base: FileIngestResult, *, complete: bool) -> FileIngestResult:
        quarantined = len(self.prior())
        return replace(base, records=self.records, events=self.events,
                       quarantined=quarantined, first_seq=self.first_seq,
                       last_seq=self.last_seq, duplicate=self.duplicate, complete=complete,
                       chunks=self.chunks + self.resumed, resumed_chunks=self.resumed,
                       chunk_events=self.size,
                       quarantine_file=str(self.target) if quarantined else None)


def _entries(target: Path) -> list[dict[str, Any]]:
    if not target.exists():
        return []
    with target.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _append_first(lake: LakeParts, events: NormalizedBatch | list[dict[str, Any]],
                  producer: str, batch_no: str, source: Path, admission: Admission, *,
                  last: bool) -> AppendResult:
    """Append the first chunk of a file (batch key `key`) with its marks: its name's content,
    and, for a file of several chunks, the chunk size a resumed ingest must keep.

    The commit claims the name: it lands only while the name's mark still holds what
    `admit` read, so of two ingests racing with other contents under one name exactly one
    lands and the other gets `ChangedFileError`, as it would have one after the other."""
    key = chunk_batch_no(batch_no, 0, last=last)
    name = name_mark(producer, source.name)
    marks = {name: content_code(batch_no)}
    if not last:
        marks[f"{_CHUNKING}{producer}/{batch_no}"] = admission.size
    seen = admission.named
    for attempt in range(_CLAIM_ATTEMPTS):
        try:
            return _append(lake, events, producer, key, marks, expect={name: seen})
        except MarkedError:
            if attempt == _CLAIM_ATTEMPTS - 1:
                raise  # transient: a retry admits the file again
            # Another writer landed a file of this name meanwhile: decide again on its mark.
            seen = lake.log.mark(name)
            _refuse_changed(str(source), producer, batch_no, seen, as_new=admission.as_new)
    raise AssertionError("the last attempt returns or raises")


_CLAIM_ATTEMPTS = 5  # each retry follows another writer's landed file: a race, not a loop


def landed_before(lake: LakeParts, producer: str, batch_no: str, place: ChunkPlace) -> bool:
    """Whether the chunk at `place` of a file landed in an earlier run (a last chunk's key is
    the file's own, which `admit` reads first: it is never taken as landed here)."""
    return not place.last and lake.log.landed(
        producer, chunk_batch_no(batch_no, place.number, last=False)) is not None


def staged_if_landed(lake: LakeParts, chunk: Chunk, source: Path, producer: str,
                     batch_no: str, claimed: dict[str, int]) -> StagedChunk | None:
    """A chunk's entry when it landed in an earlier run (its ids claimed, nothing checked or
    staged), None when it is still to land."""
    place = ChunkPlace.of(chunk)
    if not landed_before(lake, producer, batch_no, place):
        return None
    claim_ids(lake, chunk, source, claimed)
    return StagedChunk(place, None, 0, landed=True)


def claim_ids(lake: LakeParts, chunk: Chunk, source: Path, claimed: dict[str, int]) -> None:
    """Claim the event ids of a chunk that landed before, unchecked otherwise: a repeat of
    one in a later chunk is still a problem, as it was in the run that landed it."""
    if any("event_id" in record for _, record in chunk.records):
        _checked(lake, chunk, source, claimed)
    chunk.records.clear()


def _checked(lake: LakeParts, chunk: Chunk, source: Path, claimed: dict[str, int]
             ) -> tuple[NormalizedBatch | list[dict[str, Any]], list[RecordProblem]]:
    """A chunk's events ready to append, and its problems in line order.

    The common case, a chunk without a bad record, is validated as one Arrow table (the
    columnar checks of `Lake.append`), which costs a fraction of checking record by record;
    a refusal there sends the chunk through `split_valid`, which names every problem.
    `claimed` holds the event ids of the file's earlier chunks (see `split_valid`)."""
    from eventlake.validate.events import normalize_batch

    if not chunk.errors and chunk.records:
        table = _as_table([record for _, record in chunk.records],
                          decoded=file_format(source) == "jsonl")
        ids = table.column("event_id") if table is not None and (
            "event_id" in table.column_names) else None
        if table is not None and (ids is None or not claimed or not any(
                value in claimed for value in ids.to_pylist())):
            try:
                batch = normalize_batch(table, limits=lake.limits)
            except InvalidEventError:
                pass
            else:
                if ids is not None:
                    for (number, _), value in zip(chunk.records, ids.to_pylist(), strict=True):
                        if value is not None:
                            claimed.setdefault(value, number)
                return batch, []
    good, bad = split_valid(chunk.records, file=str(source), limits=lake.limits,
                            claimed=claimed)
    problems = sorted([*chunk.errors, *bad], key=lambda p: p.line)
    return [record for _, record in good], problems


def _chained(first: Chunk, rest: Iterator[Chunk]) -> Iterator[Chunk]:
    yield first
    yield from rest


@dataclass(frozen=True)
class StagedChunk:
    """One checked chunk: its place, its good events staged at `staged` (None: it has
    none, or in strict mode it cannot land), their count, and its problems in line order.

    A strict check, whose problems only ever make its error, keeps the first one and counts
    the rest in `unlisted`: a file of bad lines then costs one problem per chunk. A chunk
    that had `landed` in an earlier run when it was read is neither checked nor staged."""

    place: ChunkPlace
    staged: str | None
    events: int
    problems: tuple[RecordProblem, ...] = ()
    unlisted: int = 0
    landed: bool = False

    @classmethod
    def checked(cls, place: ChunkPlace, staged: str | None, events: int,
                problems: Sequence[RecordProblem], *, strict: bool) -> StagedChunk:
        if strict and len(problems) > 1:
            return cls(place, staged, events, tuple(problems[:1]), len(problems) - 1)
        return cls(place, staged, events, tuple(problems))


_STAGED = "ingest"  # `<root>/_staging/ingest/<run>/<file index>/<chunk>.parquet`


def staging_run() -> str:
    """A fresh folder under `<root>/_staging` for one ingest run's staged chunks."""
    return f"{_STAGED}/{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}"


def _stage_checked(lake: LakeParts, run: FileRun, chunks: Iterable[Chunk], folder: str,
                   stop: Callable[[], bool] | None) -> list[StagedChunk] | None:
    """Strict mode for a file of several chunks: read it through once, checking each chunk
    and staging its good events under `folder` (`eventlake.store.staging`), and raise the
    file's first problem before any chunk lands (chunks that landed in an earlier run do not
    count). The staged chunks, for `land_staged`; None when `stop` asked to stop meanwhile.

    Only the first problem and a count are kept, so memory follows one chunk here too."""
    from eventlake.validate.events import normalize_batch

    claimed: dict[str, int] = {}
    strict = _StrictCount(lake, run.producer, run.batch_no)
    staged: list[StagedChunk] = []
    for chunk in chunks:
        if stop is not None and stop():
            return None
        landed = staged_if_landed(lake, chunk, run.source, run.producer, run.batch_no, claimed)
        if landed is not None:
            staged.append(landed)
            continue
        place = ChunkPlace.of(chunk)
        good, problems = _checked(lake, chunk, run.source, claimed)
        chunk.records.clear()
        strict.add(place, problems)
        name: str | None = None
        events = 0
        if good and strict.first is None:
            batch = good if isinstance(good, NormalizedBatch) else normalize_batch(
                good, limits=lake.limits)
            name = f"{folder}/{place.number:06d}.parquet"
            stage_table(lake.storage, name, batch.table)
            events = batch.count
        staged.append(StagedChunk(place, name, events))
    failure = strict.error()
    if failure is not None:
        raise failure
    return staged


def land_staged(lake: LakeParts, base: FileIngestResult, run: FileRun,
                chunks: Sequence[StagedChunk], stop: Callable[[], bool] | None
                ) -> FileIngestResult:
    """Land a file's checked, staged chunks in order (those that landed before are counted,
    not landed again), deleting each staged file once its chunk landed; `stop` is asked after
    each landed chunk, as in `ingest_file`."""
    for chunk in chunks:
        if run.skip_landed(chunk.place):
            continue
        if chunk.landed:
            raise UnstagedChunkError(run.source.name, chunk.place.number)
        good: NormalizedBatch | list[dict[str, Any]] = []
        if chunk.staged is not None:
            good = NormalizedBatch(read_staged(lake.storage, chunk.staged))
        run.commit(chunk.place, good, chunk.problems, unlisted=chunk.unlisted)
        if chunk.staged is not None:
            delete_staged(lake.storage, chunk.staged)
        if chunk.place.last:
            return run.result(base, complete=True)
        if stop is not None and stop():
            return run.result(base, complete=False)
    raise AssertionError("a file's chunks end with its last chunk")


class _StrictCount:
    """The problems a strict ingest counts: those of the chunks still to land (a chunk that
    landed in an earlier run is not checked again); the first of them is the error."""

    def __init__(self, lake: LakeParts, producer: str, batch_no: str) -> None:
        self.lake, self.producer, self.batch_no = lake, producer, batch_no
        self.count = 0
        self.first: RecordProblem | None = None

    def add(self, place: ChunkPlace, problems: Sequence[RecordProblem], *, unlisted: int = 0
            ) -> None:
        if not problems:
            return
        if landed_before(self.lake, self.producer, self.batch_no, place):
            return
        self.count += len(problems) + unlisted
        if self.first is None:
            self.first = problems[0]

    def error(self) -> InvalidEventError | None:
        return None if self.first is None else _strict_error(self.first, self.count)


def strict_failure(lake: LakeParts, producer: str, batch_no: str,
                   checked: Iterable[StagedChunk]) -> InvalidEventError | None:
    """The error a strict ingest raises for a file whose chunks had these problems, None
    when it lands: its first problem, counting those of the chunks still to land (a chunk
    that landed in an earlier run is not checked again)."""
    strict = _StrictCount(lake, producer, batch_no)
    for chunk in checked:
        strict.add(chunk.place, chunk.problems, unlisted=chunk.unlisted)
    return strict.error()


def _strict_error(first: RecordProblem, count: int) -> InvalidEventError:
    note = (f"{count} bad record{'s' if count != 1 else ''} in this file, nothing of it "
            "written; --quarantine lands the good ones")
    return first.to_error(note=note)


def _append(lake: LakeParts, events: NormalizedBatch | list[dict[str, Any]], producer: str,
            batch_no: str, marks: dict[str, int], *,
            expect: dict[str, int | None] | None = None) -> AppendResult:
    from eventlake.validate.events import normalize_batch

    batch = events if isinstance(events, NormalizedBatch) else normalize_batch(
        events, limits=lake.limits)
    return lake.log.append(batch, producer=producer, batch_no=batch_no, marks=marks,
                           expect_marks=expect)


def _as_table(records: Sequence[dict[str, Any]], *, decoded: bool) -> pa.Table | None:
    """The records as the columns `Lake.append` validates, or None when one of them holds
    something only the record path handles (an unknown key, a value of another kind, a
    payload `dumps` refuses). `decoded`: the records came from the strict codec's `loads`
    (JSON Lines), so their payloads hold nothing to refuse; a Parquet or CSV record's nested
    payload can (a NaN, a key that is no string) and is checked."""
    import pyarrow as pa

    from eventlake.model.events import INPUT_COLUMNS

    keys: set[str] = set().union(*records)
    if not keys <= set(INPUT_COLUMNS):
        return None
    # Values of the wrong kind are left to `pa.array`, which refuses anything but a string
    # (or None: a null the checks of `Lake.append` then refuse by name).
    kinds = [record.get("type") for record in records]
    payloads = [record.get("payload") for record in records]
    if {"partition", "partition_id"} <= keys:
        if any("partition" in record and "partition_id" in record for record in records):
            return None
        partitions = [record.get("partition", record.get("partition_id")) for record in records]
    else:
        key = "partition" if "partition" in keys else "partition_id"
        partitions = [record.get(key) for record in records]
    # The stored text of an inline payload, as the record path writes it (`jsoncodec.dumps`).
    inline = [index for index, payload in enumerate(payloads) if type(payload) is dict]
    texts = list(payloads)
    try:
        encoded = (jsoncodec.dumps_decoded([payloads[i] for i in inline]) if decoded
                   else [jsoncodec.dumps(payloads[i]) for i in inline])
    except InvalidEventError:
        return None  # the record path names the record and the field
    for index, text in zip(inline, encoded, strict=True):
        texts[index] = text
    columns = {"type": kinds, "partition": partitions, "payload": texts}
    for optional in ("event_id", "ts"):
        if optional in keys:
            columns[optional] = [record.get(optional) for record in records]
    try:
        # Only strings (or null for the optional columns) convert to a string column: any
        # other value raises, and so does a lone surrogate, which is not UTF-8.
        return pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()})
    except (pa.ArrowException, UnicodeError):
        return None


def ingest_files(lake: LakeParts, paths: Iterable[str | os.PathLike[str]], *,
                 producer: str = DEFAULT_PRODUCER,
                 quarantine_dir: str | os.PathLike[str] | None = None,
                 chunk_events: int = DEFAULT_CHUNK_EVENTS,
                 executor: Executor | None = None) -> list[FileIngestResult]:
    """`ingest_file` for each path in order (seq order follows the order given). With
    `executor` the files are read and checked on it, several at a time, and landed here in
    the same order with the same result (`eventlake.ingest.parallel.ingest_files_on`)."""
    if executor is not None:
        from eventlake.ingest.parallel import ingest_files_on

        return ingest_files_on(lake, list(paths), executor=executor, producer=producer,
                               quarantine_dir=quarantine_dir, chunk_events=chunk_events)
    return [ingest_file(lake, p, producer=producer, quarantine_dir=quarantine_dir,
                        chunk_events=chunk_events)
            for p in paths]


def read_quarantine(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every quarantine entry under `folder`, file by file in name order."""
    root = Path(folder)
    if not root.is_dir():
        return []
    entries: list[dict[str, Any]] = []
    for path in sorted(root.glob("*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            entries.extend(json.loads(line) for line in handle if line.strip())
    return entries
