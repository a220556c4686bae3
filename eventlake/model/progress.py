"""Progress of a long operation, as counts the engine hands to whoever asked for them.

The engine never writes to a terminal: `materialize_views(progress=...)` and
`relayout(progress=...)` call a `ProgressSink` with a `Progress` after each step they commit,
and the caller decides what to show (the CLI draws bars on a terminal, `eventlake.cli.progress`;
a test or a flow can record them). Pure data, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["Progress", "ProgressSink", "ProgressUnit"]

# What `done` and `total` count: a refresh's watermark against the log's last seq, the buckets
# of a rebuild, the chunks of a relayout, the files of an ingest, the bytes of a file being
# ingested; "step" for an operation that only names what it is doing (its `total` is None).
ProgressUnit = Literal["seq", "buckets", "chunks", "files", "bytes", "step"]


@dataclass(frozen=True)
class Progress:
    """`task` (a view's name, "relayout", ...) has done `done` of `total` `unit`s; a None
    `total` is a task without a known end, named only. `rows` counts the records behind
    `done` when the unit is not records (the bytes of a file)."""

    task: str
    done: int = 0
    total: int | None = None
    unit: ProgressUnit = "step"
    rows: int | None = None


class ProgressSink(Protocol):
    """What receives `Progress`: any callable taking one."""

    def __call__(self, progress: Progress, /) -> None: ...
