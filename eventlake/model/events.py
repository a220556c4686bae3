"""The event log's columns, the size limits every event obeys, the validated batch type, and
the reading of a stored payload.

These are the shapes `eventlake.validate.events` checks input against and `eventlake.store`
writes; both import them from here, so the storage layer needs nothing of validation, and a
fold decodes payload text without it. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from eventlake.errors import InvalidEventError
from eventlake.model import jsoncodec

__all__ = [
    "DEFAULT_LIMITS",
    "EVENT_SCHEMA",
    "INPUT_COLUMNS",
    "PARTITION_FOLDER_BYTES",
    "PAYLOAD_EXPECTED",
    "TS_TYPE",
    "Limits",
    "NormalizedBatch",
    "decode_payload",
]

TS_TYPE = pa.timestamp("us", tz="UTC")

# Column order of the event table. `seq`, `ingested_at` and `batch_id` are assigned at commit.
EVENT_SCHEMA = pa.schema(
    [
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("partition_id", pa.string(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("payload", pa.string(), nullable=False),
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("ts", TS_TYPE, nullable=False),
        pa.field("ingested_at", TS_TYPE, nullable=False),
        pa.field("batch_id", pa.string(), nullable=False),
    ]
)

INPUT_COLUMNS = ("type", "payload", "partition", "partition_id", "event_id", "ts")

# What an event's payload must be, as errors say it.
PAYLOAD_EXPECTED = "a JSON object (dict) or the JSON text of one"

# The event log's folder for a partition is `partition_id=` + the value percent-encoded (every
# byte but ASCII letters, digits and `-_.~` becomes `%XX`); one folder name holds 255 bytes.
PARTITION_FOLDER_BYTES = 255 - len("partition_id=")


@dataclass(frozen=True)
class Limits:
    """Size limits enforced on every event; each breach is an `InvalidEventError`."""

    max_payload_bytes: int = 1_048_576
    # Nesting of objects and arrays in a payload: every reader (DuckDB, Polars, orjson's 255
    # levels, Python's json near 1,000) must be able to parse it. States have no such limit.
    max_payload_depth: int = 200
    # A partition names a folder `partition_id=<percent-encoded value>`; besides this limit
    # that folder name must fit a file system's 255 bytes (see `PARTITION_FOLDER_BYTES`).
    max_partition_chars: int = 200
    max_type_chars: int = 256
    max_event_id_chars: int = 256
    max_batch_events: int = 50_000_000


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class NormalizedBatch:
    """A validated batch without its log-assigned columns.

    `table` has `partition_id`, `type`, `payload` (JSON object text), `event_id` (null where the
    caller gave none) and `ts` (null where the caller gave none).
    """

    table: pa.Table

    @property
    def count(self) -> int:
        return self.table.num_rows


def decode_payload(text: str) -> dict[str, Any]:
    """The object a payload text holds, decoded by `jsoncodec.loads` (strict and exact);
    `InvalidEventError` (a `ValueError`) naming the path when it is not a valid JSON object."""
    value = jsoncodec.loads(text)
    if type(value) is not dict:
        raise InvalidEventError(f"payload is {jsoncodec.kind_of(value)}, not an object",
                                expected=PAYLOAD_EXPECTED)
    return value
