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

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

from eventlake.events import EVENT_SCHEMA, TS_TYPE, NormalizedBatch
from eventlake.storage import ScanPlan, Snapshot, Storage, retry_commit

__all__ = ["EVENTS", "SEQ_APP_ID", "AppendResult", "EventLog", "batch_app_id"]

EVENTS = "events"
SEQ_APP_ID = "eventlake.seq"
_TABLE_CONFIGURATION: dict[str, str | None] = {
    # Checkpoints keep opening the log cheap as commits pile up.
    "delta.checkpointInterval": "50",
}


def batch_app_id(producer: str, batch_no: int | str) -> str:
    return f"eventlake.batch/{producer}/{batch_no}"


@dataclass(frozen=True)
class AppendResult:
    """What one `append` did.

    For a duplicate `(producer, batch_no)` nothing was written: `count` is 0, `first_seq` is
    None and `last_seq` is the last seq of the batch that landed first.
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
                from eventlake.errors import LakeNotFoundError

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
        batch_no: int | str | None = None,
    ) -> AppendResult:
        if (producer is None) != (batch_no is None):
            from eventlake.errors import InvalidEventError

            raise InvalidEventError("producer and batch_no go together",
                                    field="batch_no" if batch_no is None else "producer",
                                    expected="both or neither")
        batch_key = None if producer is None else batch_app_id(producer, batch_no)  # type: ignore[arg-type]
        batch_id = (f"{producer}/{batch_no}" if batch_key is not None
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
                if landed is not None:
                    return AppendResult(None, landed, 0, (), True, batch_id, None)
            last = dt.transaction_version(SEQ_APP_ID) or 0
            if count == 0 and batch_key is None:
                return AppendResult(None, last, 0, (), False, batch_id, None)
            rows = _with_log_columns(table, first_seq=last + 1, event_ids=event_ids,
                                     ingested_at=ingested_at, batch_id=batch_id)
            txns = [Transaction(app_id=SEQ_APP_ID, version=last + count)]
            if batch_key is not None:
                txns.append(Transaction(app_id=batch_key, version=last + count))
            write_deltalake(
                dt, rows, mode="append", partition_by=["partition_id"],
                commit_properties=CommitProperties(
                    app_transactions=txns, max_commit_retries=0,
                    custom_metadata={"eventlake.batch_id": batch_id,
                                     "eventlake.first_seq": str(last + 1),
                                     "eventlake.count": str(count)},
                ),
            )
            return AppendResult(
                last + 1 if count else None, last + count, count, partitions, False, batch_id,
                None,
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
    return pc.coalesce(ids.combine_chunks(), generated)


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
            "batch_id": pa.array(np.full(n, batch_id, dtype=object), pa.string()),
        },
        schema=EVENT_SCHEMA,
    )
