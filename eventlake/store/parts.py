"""`LakeParts`: what the engine, operations, queries and ingestion use of a lake.

Why a Protocol and not `Lake`: `Lake` (eventlake/lake.py) is the facade that calls down into
the engine and the operations; if they took `Lake` back, every layer below would depend on
the top one and the modules would import each other in a circle. They take this instead: the
storage, the event log, the registered views, the input limits and the two reads every layer
shares. `Lake` satisfies it structurally, and so can any test double (dlt's engine depends on
`SupportsPipeline` the same way).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import polars as pl

    from eventlake.model.events import Limits
    from eventlake.model.views import View
    from eventlake.store.log import AppendResult, EventLog
    from eventlake.store.storage import Snapshot, Storage

__all__ = ["LakeParts"]


class LakeParts(Protocol):
    """One lake root: its storage, event log and views (see `eventlake.Lake`)."""

    @property
    def storage(self) -> Storage: ...

    @property
    def log(self) -> EventLog: ...

    @property
    def limits(self) -> Limits: ...

    @property
    def root(self) -> str: ...

    @property
    def views(self) -> dict[str, View]:
        """The registered views by name, the document view first."""
        ...

    def view(self, name: str) -> View:
        """The registered view `name`, else `UnknownViewError`."""
        ...

    def events(self, partition: str | Sequence[str] | None = None,
               since_seq: int | None = None, until_seq: int | None = None, *,
               snapshot: Snapshot | None = None) -> pl.LazyFrame:
        """Events in `seq` order, `since_seq` exclusive and `until_seq` inclusive."""
        ...

    def append(self, events: Iterable[dict[str, Any]] | Any, *, producer: str | None = None,
               batch_no: int | str | None = None) -> AppendResult:
        """Validate every event, then commit the batch atomically (once per batch key)."""
        ...
