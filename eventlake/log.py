"""The event log: an append-only Delta table with a gap-free global `seq`.

How `seq` stays gap-free with many writers and no lock service: the last assigned seq is kept
as the version of one Delta app transaction (`SEQ_APP_ID`). Every append reads it from a pinned
snapshot, numbers its rows from there, and commits *on that snapshot* carrying the same app id.
Delta refuses a commit whose app transaction was changed by a commit it did not see, so a writer
that lost the race re-reads and renumbers; it never writes a duplicate or leaves a hole.

Exactly-once batches use the same mechanism: `(producer, batch_no)` becomes its own app id whose
version is the batch's last seq, checked before writing and made conflict-safe by the commit.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import (
    ColumnProperties,
    CommitProperties,
    DeltaTable,
    Transaction,
    WriterProperties,
    write_deltalake,
)

from eventlake.errors import CommitConflictError, InvalidEventError, LakeNotFoundError
from eventlake.events import EVENT_SCHEMA, TS_TYPE, NormalizedBatch
from eventlake.storage import ScanPlan, Snapshot, Storage, retry_commit

__all__ = [
    "EVENTS",
    "SEQ_APP_ID",
    "AppendResult",
    "EventLog",
    "StaleLogError",
    "batch_app_id",
    "check_batch_key",
]

EVENTS = "events"
SEQ_APP_ID = "eventlake.seq"
_TABLE_CONFIGURATION: dict[str, str | None] = {
    # Checkpoints keep opening the log cheap as commits pile up.
    "delta.checkpointInterval": "50",
}
_MAX_KEY_CHARS = 512
_BAD_PRODUCER = re.compile(r"[/\x00-\x1f\x7f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# Payloads and event ids are nearly unique per row: dictionary pages and min/max statistics on
# them cost more write time than the whole rest of the batch and never prune a read. `seq`
# keeps its statistics (incremental reads prune on them) but skips the dictionary.
# Explicit compression: WriterProperties without it writes uncompressed pages (4x the bytes
# for JSON payloads), unlike write_deltalake's default.
_WRITER_PROPERTIES = WriterProperties(
    compression="SNAPPY",
    column_properties={
        "payload": ColumnProperties(dictionary_enabled=False, statistics_enabled="NONE"),
        "event_id": ColumnProperties(dictionary_enabled=False, statistics_enabled="NONE"),
        "seq": ColumnProperties(dictionary_enabled=False),
    }
)


def batch_app_id(producer: str, batch_no: int | str) -> str:
    """The Delta app id that records that `(producer, batch_no)` has landed.

    Unambiguous because a producer never contains '/' (`check_batch_key` enforces it).
    """
    return f"eventlake.batch/{producer}/{batch_no}"


def check_batch_key(producer: object, batch_no: object) -> tuple[str, int | str] | None:
    """Validate an exactly-once key; None when neither part is given."""
    if producer is None and batch_no is None:
        return None
    if producer is None or batch_no is None:
        missing = "producer" if producer is None else "batch_no"
        raise InvalidEventError(f"{missing} is missing: producer and batch_no go together",
                                field=missing, expected="both or neither")
    if (not isinstance(producer, str) or not producer or len(producer) > _MAX_KEY_CHARS
            or _BAD_PRODUCER.search(producer)):
        raise InvalidEventError("bad producer", field="producer", value=producer,
                                expected=f"a non-empty string of at most {_MAX_KEY_CHARS} "
                                         "characters without '/' or control characters")
    if isinstance(batch_no, bool) or not isinstance(batch_no, int | str) or (
            isinstance(batch_no, str) and (not batch_no or len(batch_no) > _MAX_KEY_CHARS
                                           or _CONTROL.search(batch_no))):
        raise InvalidEventError("bad batch_no", field="batch_no", value=batch_no,
                                expected=f"an int, or a non-empty string of at most "
                                         f"{_MAX_KEY_CHARS} characters without control "
                                         "characters")
    return producer, batch_no


class StaleLogError(CommitConflictError):
    """`append(..., expected_last_seq=n)` found the log at another seq; nothing was written.

    Carries `expected` and `actual` (the log's last seq). Transient: re-read and try again.
    """

    def __init__(self, *, expected: int, actual: int) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"the event log is at seq {actual}, not at the expected seq {expected}: "
                         "another writer appended first; re-read the log and try again")


@dataclass(frozen=True)
class AppendResult:
    """What one `append` did.

    `partitions` are the distinct partitions of the batch, sorted; `version` is the Delta
    version of the commit. For a duplicate `(producer, batch_no)` nothing was written: `count`
    is 0, `first_seq` and `version` are None, `partitions` is empty and `last_seq` is the last
    seq of the batch that landed first.
    """

    first_seq: int | None
    last_seq: int | None
    count: int
    partitions: tuple[str, ...]
    duplicate: bool
    batch_id: str
    version: int | None


class EventLog:
    """Read and write side of `<root>/events`."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    @classmethod
    def open(cls, storage: Storage, *, create: bool = True) -> EventLog:
        log = cls(storage)
        if not storage.exists(EVENTS):
            if not create:
                raise LakeNotFoundError(f"no event log at {storage.uri(EVENTS)}")
            try:
                DeltaTable.create(
                    storage.uri(EVENTS),
                    schema=EVENT_SCHEMA,
                    partition_by=["partition_id"],
                    name="events",
                    description="eventlake event log",
                    configuration=_TABLE_CONFIGURATION,
                    storage_options=storage.options or None,
                )
            except Exception as exc:
                # Another process created it first; that is as good as creating it.
                if not storage.exists(EVENTS):
                    raise exc
        return log

    def snapshot(self, *, version: int | None = None) -> Snapshot:
        return Snapshot.load(self.storage, EVENTS, version=version)

    def last_seq(self, snapshot: Snapshot | None = None) -> int:
        snap = snapshot or self.snapshot()
        return snap.transaction_version(SEQ_APP_ID) or 0

    def append(
        self, batch: NormalizedBatch, *, producer: str | None = None,
        batch_no: int | str | None = None, expected_last_seq: int | None = None,
    ) -> AppendResult:
        """Commit `batch` in one Delta commit, numbering it after the log's last seq.

        With `producer` and `batch_no` the batch lands at most once (a repeat returns
        `duplicate=True`). With `expected_last_seq` it lands only if the log's last seq is
        exactly that when it commits, else `StaleLogError` is raised and nothing is written.
        """
        key = check_batch_key(producer, batch_no)
        batch_key = None if key is None else batch_app_id(*key)
        batch_id = (f"{key[0]}/{key[1]}" if key is not None
                    else f"anonymous/{uuid.uuid4().hex}")
        table = batch.table
        count = table.num_rows
        ingested_at = datetime.now(UTC)
        # Fixed before the retry loop, so a renumbered retry carries the same event ids.
        event_ids = _fill_event_ids(table.column("event_id"), batch_id)
        partitions = tuple(sorted(pc.unique(table.column("partition_id")).to_pylist()))

        def attempt() -> AppendResult:
            dt = self.storage.table(EVENTS)
            if batch_key is not None:
                landed = dt.transaction_version(batch_key)
                # A Delta app transaction cannot be deleted: `eventlake.restore` revokes the
                # key of a batch it took out of the log by setting it to a negative version.
                if landed is not None and landed >= 0:
                    return AppendResult(None, landed, 0, (), True, batch_id, None)
            last = dt.transaction_version(SEQ_APP_ID) or 0
            if expected_last_seq is not None and last != expected_last_seq:
                raise StaleLogError(expected=expected_last_seq, actual=last)
            if count == 0 and batch_key is None:
                return AppendResult(None, last, 0, (), False, batch_id, None)
            rows = _with_log_columns(table, first_seq=last + 1, event_ids=event_ids,
                                     ingested_at=ingested_at, batch_id=batch_id)
            txns = [Transaction(app_id=SEQ_APP_ID, version=last + count)]
            if batch_key is not None:
                txns.append(Transaction(app_id=batch_key, version=last + count))
            # No retries inside delta-rs: any concurrent commit fails this one, and the retry
            # loop re-reads the log and renumbers, so a seq is never handed out twice.
            # A full disk or a store that does not answer becomes one StorageError; a commit
            # that landed before a later step failed counts as landed (see Storage.writing).
            with self.storage.writing(EVENTS, base=dt.version(),
                                      txn=(SEQ_APP_ID, last + count)) as written:
                write_deltalake(
                    dt, rows, mode="append", partition_by=["partition_id"],
                    writer_properties=_WRITER_PROPERTIES,
                    commit_properties=CommitProperties(
                        app_transactions=txns, max_commit_retries=0,
                        custom_metadata={"eventlake.batch_id": batch_id,
                                         "eventlake.first_seq": str(last + 1),
                                         "eventlake.count": str(count)},
                    ),
                )
            return AppendResult(
                last + 1 if count else None, last + count, count, partitions, False, batch_id,
                dt.version() if written.landed_at is None else written.landed_at,
            )

        return retry_commit(attempt, what=f"append of batch {batch_id}")

    def plan(self, *, partitions: list[str] | None = None, since_seq: int | None = None,
             until_seq: int | None = None, snapshot: Snapshot | None = None) -> ScanPlan:
        snap = snapshot or self.snapshot()
        return snap.plan(
            partitions=partitions,
            min_seq=None if since_seq is None else since_seq + 1,
            max_seq=until_seq,
        )


def _fill_event_ids(ids: pa.ChunkedArray, batch_id: str) -> pa.Array:
    n = len(ids)
    generated = pc.binary_join_element_wise(
        pa.scalar(f"{batch_id}/"), pc.cast(pa.array(np.arange(n, dtype=np.int64)), pa.string()),
        ""
    )
    if ids.null_count == 0:
        return ids.combine_chunks()
    if ids.null_count == n:
        return generated
    filled = pc.coalesce(ids.combine_chunks(), generated)
    if pc.count_distinct(filled).as_py() != n:
        # A caller-supplied id equals an id generated for another record of the batch.
        seen: dict[str, int] = {}
        for index, value in enumerate(filled.to_pylist()):
            if value in seen:
                raise InvalidEventError(
                    f"event_id is also the id of record {seen[value]} (one of the two was "
                    "generated)", index=index, field="event_id", value=value,
                    expected="event ids unique within a batch")
            seen[value] = index
    return filled


def _with_log_columns(table: pa.Table, *, first_seq: int, event_ids: pa.Array,
                      ingested_at: datetime, batch_id: str) -> pa.Table:
    n = table.num_rows
    stamp = pa.scalar(ingested_at, TS_TYPE)
    ingested = pa.repeat(stamp, n)
    ts = table.column("ts")
    if ts.null_count:
        ts = pc.coalesce(ts, stamp)
    return pa.table(
        {
            "seq": pa.array(np.arange(first_seq, first_seq + n, dtype=np.int64)),
            "partition_id": table.column("partition_id"),
            "type": table.column("type"),
            "payload": table.column("payload"),
            "event_id": event_ids,
            "ts": ts,
            "ingested_at": ingested,
            "batch_id": pa.repeat(pa.scalar(batch_id, pa.string()), n),
        },
        schema=EVENT_SCHEMA,
    )
