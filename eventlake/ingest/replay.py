"""Replaying quarantined records: a corrected record lands once, keyed by its file and line.

A quarantine file (`inbox.ingest_file` writes one per file with bad records) holds one JSON
line per bad record: the source `file`, its `line`, the `reason`, the `raw` text, and the
`producer` and `batch_no` (the file's identity) it belongs to. To fix a record, edit its
`raw` in the quarantine file, then replay the file: every record that now passes the checks
lands in one batch whose commit also marks each replayed line
(`eventlake.replayed/<producer>/<batch_no>/<line>`), so a record is replayed at most once,
however often the replay runs or however the other entries change. Records still bad stay
where they are, with their new reason.

Why not drop the corrected file into the inbox again: its good records landed already, and
a new content hash would land them twice; `ingest_file` refuses a changed file under a name
that landed (`ChangedFileError`) and points here.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from eventlake.errors import InvalidEventError, MarkedError
from eventlake.ingest.files import RecordProblem, split_valid
from eventlake.model import jsoncodec

if TYPE_CHECKING:
    from eventlake.store.parts import LakeParts
    from eventlake.store.storage import Snapshot

__all__ = [
    "QuarantineEntry",
    "ReplayResult",
    "entry_status",
    "quarantine_entries",
    "quarantine_files",
    "replay_mark",
    "replay_quarantine",
]

EntryStatus = Literal["pending", "replayed", "whole-file"]
_REPLAYED = "eventlake.replayed/"


@dataclass(frozen=True)
class QuarantineEntry:
    """One line of a quarantine file. `line` is None for a file quarantined whole (it
    cannot be replayed record by record: fix the file and ingest it with --as-new)."""

    file: str
    line: int | None
    reason: str
    raw: str | None
    producer: str | None
    batch_no: str | None
    field: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "field": self.field,
                "reason": self.reason, "raw": self.raw, "producer": self.producer,
                "batch_no": self.batch_no}


@dataclass(frozen=True)
class ReplayResult:
    """What one replay did: `replayed` records landed now (seq `first_seq..last_seq`),
    `already` had been replayed before, `still_bad` fail the checks again, `whole_file`
    entries stand for unreadable files."""

    quarantine_file: str
    replayed: int
    already: int
    still_bad: tuple[RecordProblem, ...]
    whole_file: int
    first_seq: int | None = None
    last_seq: int | None = None
    batch_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"quarantine_file": self.quarantine_file, "replayed": self.replayed,
                "already_replayed": self.already, "whole_file": self.whole_file,
                "still_bad": [p.to_json() for p in self.still_bad],
                "first_seq": self.first_seq, "last_seq": self.last_seq,
                "batch_id": self.batch_id}


def quarantine_files(folder: str | os.PathLike[str]) -> list[Path]:
    root = Path(folder)
    return sorted(root.glob("*.jsonl")) if root.is_dir() else []


def quarantine_entries(path: str | os.PathLike[str]) -> list[QuarantineEntry]:
    """The entries of a quarantine file, in its order. An entry written before entries named
    their batch takes it from the file name `<name>@<hash>.jsonl` when it has that shape."""
    source = Path(path)
    fallback = source.name.removesuffix(".jsonl") if "@" in source.name else None
    entries: list[QuarantineEntry] = []
    with source.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                item = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InvalidEventError(f"not a quarantine entry: {exc.msg}",
                                        source=f"{source}, line {number}") from None
            if not isinstance(item, dict) or "line" not in item or "file" not in item:
                raise InvalidEventError("not a quarantine entry (no file and line)",
                                        source=f"{source}, line {number}")
            entries.append(QuarantineEntry(
                str(item["file"]), item["line"], str(item.get("reason", "")),
                item.get("raw"), item.get("producer") or ("inbox" if fallback else None),
                item.get("batch_no") or fallback, item.get("field")))
    return entries


def replay_mark(producer: str, batch_no: str, line: int) -> str:
    """The app id recording that line `line` of file `batch_no` was replayed."""
    return f"{_REPLAYED}{producer}/{batch_no}/{line}"


def entry_status(lake: LakeParts, entry: QuarantineEntry, *,
                 snapshot: Snapshot | None = None) -> EntryStatus:
    """Whether `entry` was replayed (as of `snapshot`, default the latest version)."""
    if entry.line is None or entry.producer is None or entry.batch_no is None:
        return "whole-file"
    found = lake.log.mark(replay_mark(entry.producer, entry.batch_no, entry.line),
                          snapshot=snapshot)
    return "pending" if found is None else "replayed"


def replay_quarantine(lake: LakeParts, path: str | os.PathLike[str]) -> ReplayResult:
    """Land the records of quarantine file `path` that pass the checks now, each at most
    once (see the module doc); a second replay of the same file is a no-op.

    Replays racing on one file (two operators, a retried task) land each line once: the
    commit claims the lines' marks, and a replay that finds some of them taken by another
    one meanwhile starts over from the entries and the marks as they are then."""
    for _ in range(_REPLAY_ATTEMPTS - 1):
        try:
            return _replay(lake, path)
        except MarkedError:
            continue
    return _replay(lake, path)


_REPLAY_ATTEMPTS = 5  # each retry follows a replay that landed: a race, not a loop


def _replay(lake: LakeParts, path: str | os.PathLike[str]) -> ReplayResult:
    entries = quarantine_entries(path)
    snap = lake.log.snapshot()
    status = [entry_status(lake, e, snapshot=snap) for e in entries]
    whole = [e for e, state in zip(entries, status, strict=True) if state == "whole-file"]
    pending = [e for e, state in zip(entries, status, strict=True) if state == "pending"]
    already = len(entries) - len(whole) - len(pending)
    if not pending:
        return ReplayResult(str(path), 0, already, (), len(whole))
    batches = {(e.producer, e.batch_no) for e in pending}
    if len(batches) > 1:
        raise InvalidEventError("the entries belong to more than one file", source=str(path),
                                expected="the quarantine file of one ingested file")
    ((producer, batch_no),) = batches
    assert producer is not None and batch_no is not None
    records: list[tuple[int, dict[str, Any]]] = []
    bad: list[RecordProblem] = []
    for entry in pending:
        assert entry.line is not None
        try:
            records.append((entry.line, _record(entry)))
        except InvalidEventError as exc:
            bad.append(RecordProblem(entry.file, entry.line, exc.reason, entry.raw or "",
                                     field=exc.field))
    good, refused = split_valid(records, file=pending[0].file, limits=lake.limits)
    still_bad = tuple(sorted([*bad, *refused], key=lambda p: p.line))
    if not good:
        return ReplayResult(str(path), 0, already, still_bad, len(whole))
    from eventlake.validate.events import normalize_batch

    # The key names exactly the lines and texts replayed now: a retry of the same replay is
    # a duplicate, and lines replayed before were left out above by their marks.
    digest = hashlib.sha256(json.dumps([(line, jsoncodec.dumps(record, decoded=True))
                                        for line, record in good]).encode()).hexdigest()[:16]
    marks = {replay_mark(producer, batch_no, line): 0 for line, _ in good}
    appended = lake.log.append(normalize_batch([r for _, r in good], limits=lake.limits),
                               producer=producer, batch_no=f"{batch_no}!replay@{digest}",
                               marks=marks, expect_marks=dict.fromkeys(marks))
    return ReplayResult(str(path), appended.count, already, still_bad, len(whole),
                        appended.first_seq, appended.last_seq, appended.batch_id)


def _record(entry: QuarantineEntry) -> dict[str, Any]:
    """The record an entry's `raw` holds now: a JSON object, or for a CSV file a row under
    the header of that file (when it is still there)."""
    raw = (entry.raw or "").strip()
    if not raw:
        raise InvalidEventError("raw is empty", field="raw", expected="the corrected record")
    if raw.startswith("{"):
        value = jsoncodec.loads(raw)
        if not isinstance(value, dict):
            raise InvalidEventError("not a JSON object", field="raw")
        return value
    if entry.file.lower().endswith(".csv") and Path(entry.file).is_file():
        with open(entry.file, encoding="utf-8-sig", newline="") as handle:
            header = [column.strip() for column in next(csv.reader(handle))]
        row = next(csv.reader([raw]), [])
        if len(row) != len(header):
            raise InvalidEventError(f"has {len(row)} fields, the header has {len(header)}")
        return {column: cell for column, cell in zip(header, row, strict=True)
                if not (column in ("event_id", "ts") and cell == "")}
    raise InvalidEventError("raw is not a JSON object", field="raw",
                            expected="the corrected record as JSON (or a CSV row of a CSV "
                                     "file)")
