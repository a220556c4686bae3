"""Inbox files: reading JSON Lines, CSV and Parquet into event records, record by record.

An inbox file is the unit of ingestion: it becomes one batch with a stable identity
(`file_batch_identity`), so dropping the same file twice lands it once. Reading never drops a
record silently: every non-blank line (or row) of a readable file ends up either as a record or
as a `RecordProblem` naming its line, and `split_valid` keeps that count whole while it moves
records that fail validation to the problems. A file that cannot be read at all (not UTF-8, not
Parquet, an unknown suffix, a header without the event columns) raises `InvalidEventError` with
`source=<path>`: the caller quarantines it whole.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import itertools
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from eventlake.errors import InboxNotFoundError, InvalidEventError
from eventlake.model import jsoncodec

if TYPE_CHECKING:
    from eventlake.model.events import Limits

__all__ = [
    "FORMATS",
    "Chunk",
    "FileRead",
    "RecordProblem",
    "SplitFile",
    "check_file",
    "file_batch_identity",
    "file_format",
    "inbox_files",
    "read_chunks",
    "read_file",
    "split_valid",
]

Format = Literal["jsonl", "csv", "parquet"]
Record = tuple[int, dict[str, Any]]

FORMATS: dict[str, Format] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
}
DEFAULT_PRODUCER = "inbox"
_OPTIONAL = ("event_id", "ts")
# Validate in chunks so a file with a few bad records among millions costs one pass plus a
# chunk per bad record, instead of one `normalize_batch` call per record.
_CHUNK = 2048


@dataclass(frozen=True)
class RecordProblem:
    """One record that cannot become an event: where it is, why, and its raw text.

    `line` is the 1-based line of a JSON Lines or CSV file, or the 1-based row of a Parquet
    file. `raw` is the line as written (or the row as JSON), so a quarantine file can be fixed
    and dropped back into the inbox.
    """

    file: str
    line: int
    reason: str
    raw: str
    field: str | None = None

    def __str__(self) -> str:
        unit = "row" if self.file.endswith(".parquet") else "line"
        return f"{self.file}, {unit} {self.line}: {self.reason}"

    def to_error(self, *, note: str | None = None) -> InvalidEventError:
        """The problem as an `InvalidEventError` whose message names file, line and field."""
        unit = "row" if self.file.endswith(".parquet") else "line"
        reason = self.reason if note is None else f"{self.reason} [{note}]"
        # The reason already says the field; set it as an attribute only, not twice in text.
        error = InvalidEventError(reason, source=f"{self.file}, {unit} {self.line}")
        error.field = self.field
        return error

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "field": self.field,
                "reason": self.reason, "raw": self.raw}


@dataclass(frozen=True)
class FileRead:
    """What reading one file produced: records in file order plus the unreadable ones."""

    path: str
    format: Format
    records: list[Record] = field(default_factory=list)
    errors: list[RecordProblem] = field(default_factory=list)

    @property
    def read(self) -> int:
        """Number of non-blank lines (or rows) seen: records plus problems."""
        return len(self.records) + len(self.errors)


@dataclass(frozen=True)
class SplitFile:
    """A file after reading and validation: `good` records are ready for `Lake.append`.

    `len(good) + len(problems) == read` always holds; `problems` is in line order.
    """

    path: str
    format: Format
    read: int
    good: list[Record]
    problems: list[RecordProblem]

    @property
    def events(self) -> list[dict[str, Any]]:
        return [record for _, record in self.good]


def file_format(path: str | os.PathLike[str]) -> Format:
    """The format a file is read as, from its suffix; unknown suffixes raise."""
    suffix = Path(path).suffix.lower()
    try:
        return FORMATS[suffix]
    except KeyError:
        raise InvalidEventError(
            f"unknown file type {suffix or '(no suffix)'!r}", source=os.fspath(path),
            expected=f"one of {', '.join(FORMATS)}") from None


def inbox_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The files of `folder` that are ingested, in name order: the one listing of the inbox
    flow and of `eventlake ingest DIR`.

    Only known suffixes count (`FORMATS`); names starting with `.` or `_` are skipped, so a
    producer can write `.name.jsonl` (or `_name.jsonl`) and rename it when complete.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InboxNotFoundError(f"inbox {root} is not a folder")
    return sorted(p for p in root.iterdir()
                  if p.is_file() and p.suffix.lower() in FORMATS
                  and not p.name.startswith((".", "_")))


def read_file(path: str | os.PathLike[str]) -> FileRead:
    """Read an inbox file into `(line, record)` pairs and per-record problems.

    Raises `InvalidEventError` (with `source` set to the path) when the file as a whole cannot
    be read; `OSError` when it cannot be opened. The whole file in memory: `read_chunks`
    reads it piece by piece, with the same records and problems.
    """
    name = os.fspath(path)
    result = FileRead(name, file_format(name))
    for chunk in read_chunks(name, chunk_records=None):
        result.records.extend(chunk.records)
        result.errors.extend(chunk.errors)
    return result


@dataclass(frozen=True)
class Chunk:
    """`chunk_records` consecutive non-blank lines (or rows) of a file, as `read_file` reads
    them: the unit a file is landed in.

    `number` counts from 0; `last_line` is the last line (or row) the chunk read; `position`
    is how many bytes of the file were read by then (an estimate for Parquet); `last` says no
    record follows. The boundaries depend only on the file and `chunk_records`, so a resumed
    ingest meets the same chunks.
    """

    number: int
    records: list[Record]
    errors: list[RecordProblem]
    last_line: int
    position: int
    last: bool

    @property
    def read(self) -> int:
        return len(self.records) + len(self.errors)


Item = tuple["Record | RecordProblem", int]  # a record or a problem, and the bytes read


def read_chunks(path: str | os.PathLike[str], *, chunk_records: int | None) -> Iterator[Chunk]:
    """The file in chunks of `chunk_records` records-or-problems (None: one chunk), read in
    bounded memory; a file without a record is one empty chunk.

    The checks of the whole file (UTF-8 text without NUL, a CSV header of event columns, a
    Parquet schema) run here, before the first chunk, and raise `InvalidEventError` as
    `read_file` does. A CSV quote broken past the first chunk, or Parquet data unreadable
    there, cannot be the file's problem any more (chunks before it may have landed): the rest
    of the file from that line (row) becomes one `RecordProblem`.
    """
    name = os.fspath(path)
    kind = file_format(name)
    if chunk_records is not None and chunk_records < 1:
        raise ValueError(f"chunk_records must be >= 1, got {chunk_records}")
    if kind == "parquet":
        items = _parquet_items(name, chunk_records)
    else:
        _check_text(name, kind)
        items = _csv_items(name, chunk_records) if kind == "csv" else _jsonl_items(name)
    first = next(items, None)  # the header checks of a CSV file run now
    return _grouped(first, items, chunk_records, os.path.getsize(name))


def _grouped(first: Item | None, items: Iterator[Item], size: int | None, end: int
             ) -> Iterator[Chunk]:
    # The last chunk ends at the end of the file, whatever blank lines follow its records.
    records: list[Record] = []
    errors: list[RecordProblem] = []
    number = line = position = 0
    full: Chunk | None = None  # a full chunk waits until a next item says it is not the last
    pending = itertools.chain([first], items) if first is not None else iter(())
    for item, position in pending:
        if full is not None:
            yield full
            full = None
        if isinstance(item, RecordProblem):
            errors.append(item)
            line = item.line
        else:
            records.append(item)
            line = item[0]
        if size is not None and len(records) + len(errors) >= size:
            full = Chunk(number, records, errors, line, position, last=False)
            number, records, errors = number + 1, [], []
    if full is not None:
        yield replace(full, last=True, position=end)
        return
    yield Chunk(number, records, errors, line, end, last=True)


def _check_text(name: str, kind: Format) -> None:
    """Refuse a file that is not UTF-8 text or holds NUL bytes, reading it block by block."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = lines = 0
    with open(name, "rb") as handle:
        for block in itertools.chain(iter(lambda: handle.read(1 << 20), b""), [None]):
            buffered = decoder.getstate()[0]
            try:
                if block is None:
                    decoder.decode(b"", final=True)
                    return
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                data = buffered + (block or b"")
                at = offset - len(buffered) + exc.start
                line = lines - buffered.count(b"\n") + data[: exc.start].count(b"\n") + 1
                raise InvalidEventError(
                    f"not UTF-8 text (bad byte at offset {at}, line {line})", source=name,
                    expected="a UTF-8 encoded text file") from None
            if b"\x00" in block:
                raise InvalidEventError("holds NUL bytes, so it is not a text file",
                                        source=name, expected=f"{kind} text")
            offset += len(block)
            lines += block.count(b"\n")


_JSONL_BLOCK = 2048  # lines decoded together (see `_jsonl_items`)


def _jsonl_items(name: str) -> Iterator[Item]:
    # Lines are decoded a block at a time: `jsoncodec.loads_objects` proves a whole block
    # exact at about one orjson parse per line, where `loads` line by line pays for an
    # encoding per line. A block it cannot prove (a bad line, a long integer) is decoded line
    # by line, which names each problem.
    block: list[tuple[int, str, str, int]] = []  # line number, line, stripped, position
    for entry in _jsonl_lines(name):
        block.append(entry)
        if len(block) == _JSONL_BLOCK:
            yield from _jsonl_block(name, block)
            block = []
    yield from _jsonl_block(name, block)


def _jsonl_lines(name: str) -> Iterator[tuple[int, str, str, int]]:
    position = 0
    with open(name, "rb") as handle:
        # Lines split on "\n" only: str.splitlines() would also split on U+2028 and friends,
        # which JSON allows raw inside strings. The text was checked as UTF-8 already.
        for number, data in enumerate(handle, start=1):
            position += len(data)
            line = data.decode("utf-8")
            if number == 1:
                line = line.removeprefix("\ufeff")
            stripped = line.strip()
            if stripped:
                yield number, line, stripped, position


def _jsonl_block(name: str, block: list[tuple[int, str, str, int]]) -> Iterator[Item]:
    values = jsoncodec.loads_objects([stripped for _, _, stripped, _ in block])
    if values is not None:
        for (number, _, _, position), value in zip(block, values, strict=True):
            yield (number, value), position
        return
    for number, line, stripped, position in block:
        # The strict codec: a key twice in the record or anywhere in an inline payload, a
        # number too large for a float, NaN, a lone surrogate escape: each is refused
        # here, named by its path (`type`, `payload.a.b`), as the record check names it.
        try:
            value = jsoncodec.loads(stripped)
        except InvalidEventError as exc:
            raw = line.removesuffix("\n").rstrip("\r")
            yield RecordProblem(name, number, _describe(exc), raw, field=exc.field), position
            continue
        if type(value) is not dict:
            raw = line.removesuffix("\n").rstrip("\r")
            yield RecordProblem(name, number, f"a JSON {_json_kind(value)}, not an object",
                                raw), position
            continue
        yield (number, value), position


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def _csv_items(name: str, chunk_records: int | None) -> Iterator[Item]:
    from eventlake.validate.events import check_columns

    with open(name, "rb") as binary:
        text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
        seen: list[str] = []  # the physical lines the reader took for the current row

        def lines() -> Iterator[str]:
            for line in text:
                seen.append(line)
                yield line

        reader = csv.reader(lines(), strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise InvalidEventError("empty CSV file (no header row)", source=name,
                                    expected="a header row") from None
        except csv.Error as exc:
            raise InvalidEventError(f"unreadable CSV header: {exc}", source=name) from None
        header = [column.strip() for column in header]
        check_columns(header, source=name)
        start = reader.line_num + 1
        given = 0
        while True:
            seen.clear()
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                if chunk_records is None or given < chunk_records:
                    # The csv module cannot resynchronise after a broken quote; what follows
                    # is unreadable, which is a whole-file problem rather than one bad row.
                    raise InvalidEventError(f"malformed CSV at line {start}: {exc}",
                                            source=name) from None
                yield RecordProblem(
                    name, start, f"malformed CSV ({exc}): the rest of the file, from this "
                    "line on, cannot be read", "".join(seen)), binary.tell()
                return
            end = reader.line_num
            raw = "".join(seen)
            raw = (raw[:-1] if raw.endswith("\n") else raw).rstrip("\r")
            number, start = start, end + 1
            if not row or all(not cell.strip() for cell in row):
                continue
            given += 1
            if len(row) != len(header):
                yield RecordProblem(name, number, f"has {len(row)} fields, the header has "
                                    f"{len(header)}", raw), binary.tell()
                continue
            record: dict[str, Any] = {}
            for column, cell in zip(header, row, strict=True):
                if column in _OPTIONAL and cell == "":
                    continue  # an empty optional cell means "not given"
                record[column] = cell
            # The payload cell is JSON text: the record check (`split_valid`) decides it, as
            # it decides a payload string given to `Lake.append`.
            yield (number, record), binary.tell()


def _parquet_items(name: str, chunk_records: int | None) -> Iterator[Item]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from eventlake.validate.events import check_columns, check_payload_type, payload_from_arrow

    try:
        handle = pq.ParquetFile(name)
        # The columns first: a file with a column twice is refused naming it (the dataset
        # reader of `pq.read_table` fails on it with "Multiple matches for FieldRef").
        check_columns(handle.schema_arrow.names, source=name)
    except (pa.ArrowException, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise InvalidEventError(f"not a readable Parquet file: {exc}", source=name) from None
    payload_type = handle.schema_arrow.field("payload").type
    nested = pa.types.is_struct(payload_type) or pa.types.is_map(payload_type)
    if not (nested or pa.types.is_string(payload_type) or pa.types.is_large_string(payload_type)
            or pa.types.is_string_view(payload_type)):
        handle.close()
        raise InvalidEventError(f"column 'payload' has type {payload_type}", source=name,
                                field="payload",
                                expected="JSON text (string), a struct or a map column")
    if nested:
        check_payload_type(payload_type, source=name)
    size = os.path.getsize(name)
    total = max(handle.metadata.num_rows, 1)
    number = 0
    with handle:
        try:
            batches = handle.iter_batches(batch_size=min(chunk_records or 65_536, 65_536))
            for batch in batches:
                for row in batch.to_pylist():
                    number += 1
                    position = size * number // total
                    record = {key: value for key, value in row.items()
                              if not (key in _OPTIONAL and value is None)}
                    payload = record.get("payload")
                    if nested and payload is not None:
                        # As `Lake.append` reads a struct or map column: a map's repeated or
                        # non-string key is refused with the same message, not reduced to one.
                        try:
                            record["payload"] = payload_from_arrow(payload, payload_type)
                        except InvalidEventError as exc:
                            yield RecordProblem(name, number, _describe(exc), _raw_json(row),
                                                field=exc.field), position
                            continue
                    yield (number, record), position
        except (pa.ArrowException, OSError) as exc:
            if not number:
                raise InvalidEventError(f"not a readable Parquet file: {exc}",
                                        source=name) from None
            if chunk_records is None or number < chunk_records:
                raise InvalidEventError(f"unreadable Parquet data after row {number}: {exc}",
                                        source=name) from None
            # Past the first chunk, chunks before may have landed: as a CSV quote broken
            # there, the unreadable rest is one problem of its own, not the file's.
            why = " ".join(str(exc).split())
            yield RecordProblem(name, number + 1, f"unreadable Parquet data ({why}): the rest "
                                "of the file, from this row on, cannot be read", ""), size


def _raw_json(record: object) -> str:
    def default(value: object) -> str:
        return value.isoformat() if isinstance(value, datetime) else repr(value)

    try:
        return json.dumps(record, ensure_ascii=False, default=default, separators=(",", ":"))
    except RecursionError:
        # A JSON Lines record nested past the recursion limit (the strict codec reads any
        # depth, then the record check refuses it): what was decoded, encoded back the same way.
        return jsoncodec.dumps(record, decoded=True)


def _describe(exc: InvalidEventError) -> str:
    # Drop the index: it counts records of an internal sub-batch, not lines of the file.
    return str(InvalidEventError(exc.reason, field=exc.field, value=exc.value,
                                 expected=exc.expected))


def split_valid(records: Sequence[Record], *, file: str = "<records>",
                limits: Limits | None = None, claimed: dict[str, int] | None = None
                ) -> tuple[list[Record], list[RecordProblem]]:
    """Split `(line, record)` pairs into those `Lake.append` accepts and `RecordProblem`s.

    Every record ends up on exactly one side; `good` keeps the input order, problems are in
    line order. A repeated `event_id` keeps its first *valid* record; later ones are problems
    naming that record's line. `limits` are the lake's (default: `DEFAULT_LIMITS`).
    `claimed` (event id -> line) holds the ids of earlier chunks of the same file, and gets
    those of this one's good records: a file in chunks is split as it would be whole.
    """
    from eventlake.validate.events import DEFAULT_LIMITS, normalize_batch

    limits = limits or DEFAULT_LIMITS
    everything = list(enumerate(records))
    if claimed is None:
        claimed = {}  # event_id -> line of the valid record holding it
    if not claimed or not any(isinstance(r, dict) and r.get("event_id") in claimed
                              for _, r in records):
        try:
            normalize_batch([record for _, (_, record) in everything], limits=limits)
        except InvalidEventError:
            pass
        else:
            _claim(claimed, records)
            return list(records), []
    good: list[tuple[int, Record]] = []
    bad: list[RecordProblem] = []
    pending = everything
    # Each round validates at most one candidate per event_id, so a first occurrence that is
    # itself invalid does not make a later valid one a "duplicate". Rounds are rare beyond one.
    while pending:
        batch: list[tuple[int, Record]] = []
        deferred: list[tuple[int, Record]] = []
        in_round: set[str] = set()
        for item in pending:
            number, record = item[1]
            event_id = record.get("event_id") if isinstance(record, dict) else None
            if isinstance(event_id, str):
                if event_id in claimed:
                    bad.append(RecordProblem(
                        file, number, f"field 'event_id': duplicate event_id {event_id!r}, "
                        f"also line {claimed[event_id]}", _raw_json(record), field="event_id"))
                    continue
                if event_id in in_round:
                    deferred.append(item)
                    continue
                in_round.add(event_id)
            batch.append(item)
        for item in _validate(batch, file, bad, limits):
            good.append(item)
            event_id = item[1][1].get("event_id")
            if isinstance(event_id, str):
                claimed[event_id] = item[1][0]
        pending = deferred
    good.sort(key=lambda item: item[0])
    return [pair for _, pair in good], sorted(bad, key=lambda p: p.line)


def _claim(claimed: dict[str, int], records: Sequence[Record]) -> None:
    for number, record in records:
        event_id = record.get("event_id")
        if isinstance(event_id, str):
            claimed.setdefault(event_id, number)


def _validate(batch: list[tuple[int, Record]], file: str, bad: list[RecordProblem],
              limits: Limits) -> list[tuple[int, Record]]:
    """The records of `batch` that pass `normalize_batch`; the others are added to `bad`."""
    from eventlake.validate.events import normalize_batch

    good: list[tuple[int, Record]] = []
    for begin in range(0, len(batch), _CHUNK):
        chunk = batch[begin:begin + _CHUNK]
        rest = 0
        while rest < len(chunk):
            try:
                normalize_batch([record for _, (_, record) in chunk[rest:]], limits=limits)
            except InvalidEventError as exc:
                if exc.index is None or not 0 <= exc.index < len(chunk) - rest:
                    # Not pinned to one record: decide each remaining record on its own.
                    for item in chunk[rest:]:
                        if _check_one(item[1], file, bad, limits):
                            good.append(item)
                    break
                good.extend(chunk[rest:rest + exc.index])
                number, record = chunk[rest + exc.index][1]
                bad.append(RecordProblem(file, number, _describe(exc), _raw_json(record),
                                         field=exc.field))
                rest += exc.index + 1
            else:
                good.extend(chunk[rest:])
                break
    return good


def _check_one(pair: Record, file: str, bad: list[RecordProblem], limits: Limits) -> bool:
    from eventlake.validate.events import normalize_batch

    number, record = pair
    try:
        normalize_batch([record], limits=limits)
    except InvalidEventError as exc:
        bad.append(RecordProblem(file, number, _describe(exc), _raw_json(record),
                                 field=exc.field))
        return False
    return True


def check_file(path: str | os.PathLike[str], *, limits: Limits | None = None) -> SplitFile:
    """Read and validate a file: its good records plus every problem, in line order.

    `limits` should be the lake's, so that what passes here also passes its `append`."""
    read = read_file(path)
    good, bad = split_valid(read.records, file=read.path, limits=limits)
    problems = sorted([*read.errors, *bad], key=lambda p: p.line)
    return SplitFile(read.path, read.format, read.read, good, problems)


def file_batch_identity(path: str | os.PathLike[str], *, producer: str = DEFAULT_PRODUCER
                        ) -> tuple[str, str]:
    """`(producer, batch_no)` for a file: same name and same bytes give the same pair.

    The content hash makes a corrected file (same name, new bytes) a new batch, while a file
    delivered twice, or a retried ingest, is recognised as already landed.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return producer, f"{Path(path).name}@{digest.hexdigest()[:16]}"
