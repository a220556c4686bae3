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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventlake.errors import InvalidEventError
from eventlake.ingest.files import (
    DEFAULT_PRODUCER,
    FORMATS,
    SplitFile,
    file_batch_identity,
    inbox_files,
    read_file,
    split_valid,
)
from eventlake.model import jsoncodec
from eventlake.store.atomicfile import atomic_write

if TYPE_CHECKING:
    import pyarrow as pa

    from eventlake.store.parts import LakeParts

__all__ = [
    "QUARANTINE",
    "RAW_COPY_LIMIT",
    "FileIngestResult",
    "IngestTotals",
    "default_quarantine_dir",
    "inbox_files",
    "ingest_file",
    "ingest_files",
    "quarantine_file_name",
    "read_quarantine",
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

    @property
    def batch_id(self) -> str:
        return f"{self.producer}/{self.batch_no}"

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "producer": self.producer, "batch_no": self.batch_no,
                "batch_id": self.batch_id, "records": self.records, "events": self.events,
                "first_seq": self.first_seq, "last_seq": self.last_seq,
                "duplicate": self.duplicate, "unreadable": self.unreadable,
                "quarantined": self.quarantined, "quarantine_file": self.quarantine_file}


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

    @classmethod
    def of(cls, results: Iterable[FileIngestResult]) -> IngestTotals:
        items = list(results)
        return cls(
            files=len(items),
            batches=sum(1 for r in items if not r.duplicate),
            duplicates=sum(1 for r in items if r.duplicate),
            records=sum(r.records or 0 for r in items),
            events=sum(r.events for r in items),
            quarantined=sum(r.quarantined for r in items if not r.unreadable),
            unreadable=sum(1 for r in items if r.unreadable),
        )


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


def _whole_file_entry(path: Path, exc: InvalidEventError) -> dict[str, Any]:
    raw: str | None = None
    try:
        if path.stat().st_size <= RAW_COPY_LIMIT:
            raw = path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        raw = None
    return {"file": str(path), "line": None, "field": exc.field, "reason": str(exc), "raw": raw}


def ingest_file(lake: LakeParts, path: str | os.PathLike[str], *, producer: str = DEFAULT_PRODUCER,
                quarantine_dir: str | os.PathLike[str] | None = None,
                quarantine: bool = True, quarantine_name: str | None = None
                ) -> FileIngestResult:
    """Land one inbox file as one batch, exactly once; bad records go to quarantine.

    `quarantine_dir` defaults to `<root>/quarantine` of a local lake. With `quarantine=False`
    a bad record (or an unreadable file) raises `InvalidEventError` naming the first problem
    and nothing of the file is written. `quarantine_name` overrides the quarantine file's
    name (default `quarantine_file_name(batch_no)`).

    Errors other than bad input propagate: `OSError` when the file cannot be opened,
    `CommitConflictError` (transient) when the append keeps losing commit races.
    """
    source = Path(path)
    producer, batch_no = file_batch_identity(source, producer=producer)
    base = FileIngestResult(str(source), producer, batch_no, records=None, events=0,
                            quarantined=0, duplicate=False)
    # A file that already landed is not read again: it may even hold records that were
    # quarantined then, which must not fail a strict re-run.
    landed = lake.log.landed(producer, batch_no)
    if landed is not None:
        return replace(base, duplicate=True, last_seq=landed)
    folder: Path | None = None
    if quarantine:
        folder = Path(quarantine_dir) if quarantine_dir is not None else (
            default_quarantine_dir(lake))
    target = None if folder is None else folder / (quarantine_name
                                                   or quarantine_file_name(batch_no))
    # The common case, a file without a bad record, lands as one Arrow table: validated column
    # by column, which costs a fraction of checking record by record. A refusal writes
    # nothing, and the file is then read again record by record, which names every problem.
    records = _read_clean_jsonl(source)
    table = _as_table(records) if records else None
    if records and table is not None:
        try:
            appended = lake.append(table, producer=producer, batch_no=batch_no)
        except InvalidEventError:
            pass
        else:
            return replace(base, records=len(records), events=appended.count,
                           first_seq=appended.first_seq, last_seq=appended.last_seq,
                           duplicate=appended.duplicate)
    try:
        read = read_file(source)
    except InvalidEventError as exc:
        if target is None:
            raise
        written = _write_quarantine(target, [_whole_file_entry(source, exc)])
        appended = lake.append([], producer=producer, batch_no=batch_no)
        return replace(base, quarantined=1, unreadable=True, quarantine_file=str(written),
                        duplicate=appended.duplicate, last_seq=appended.last_seq)
    result = replace(base, records=read.read)
    good, bad = split_valid(read.records, file=read.path, limits=lake.limits)
    checked = SplitFile(read.path, read.format, read.read, good,
                        sorted([*read.errors, *bad], key=lambda p: p.line))
    if checked.problems:
        if target is None:
            count = len(checked.problems)
            note = (f"{count} bad record{'s' if count != 1 else ''} in this file, nothing of it "
                    "written; --quarantine lands the good ones")
            raise checked.problems[0].to_error(note=note)
        written = _write_quarantine(target, [p.to_json() for p in checked.problems])
        result = replace(result, quarantined=len(checked.problems),
                          quarantine_file=str(written))
    appended = lake.append(checked.events, producer=producer, batch_no=batch_no)
    return replace(result, events=appended.count, first_seq=appended.first_seq,
                    last_seq=appended.last_seq, duplicate=appended.duplicate)


def _read_clean_jsonl(path: Path) -> list[dict[str, Any]] | None:
    """The records of a JSON Lines file in which `files.read_file` finds no problem, or None
    for any other file (or format), which then goes through `read_file` itself.

    It accepts a file exactly when `read_file` reads every line into an object, and then
    yields the same objects: the same decoding, line split, stripping and strict JSON decoder
    (`jsoncodec.loads`), only without `read_file`'s per-line bookkeeping."""
    if FORMATS.get(path.suffix.lower()) != "jsonl":
        return None
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    if "\x00" in text:
        return None
    records: list[dict[str, Any]] = []
    for line in text.split("\n"):
        stripped = line.strip()
        if not stripped:
            continue
        try:
            value = jsoncodec.loads(stripped)
        except InvalidEventError:
            return None
        if type(value) is not dict:
            return None
        records.append(value)
    return records


def _as_table(records: Sequence[dict[str, Any]]) -> pa.Table | None:
    """The records as the columns `Lake.append` validates, or None when one of them holds
    something only the record path handles (an unknown key, a value of another kind)."""
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
    # The stored text of an inline payload, as the record path writes it (`jsoncodec.dumps`);
    # `loads` made these values, so the checks of `dumps` have nothing left to find.
    texts = [jsoncodec.dumps(payload, decoded=True) if type(payload) is dict else payload
             for payload in payloads]
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
                 quarantine_dir: str | os.PathLike[str] | None = None
                 ) -> list[FileIngestResult]:
    """`ingest_file` for each path in order (seq order follows the order given)."""
    return [ingest_file(lake, p, producer=producer, quarantine_dir=quarantine_dir)
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
