"""eventlake: an event-sourced lakehouse on Delta Lake.

The package namespace is lazy: `import eventlake` is cheap, and heavy libraries (deltalake,
polars, duckdb, pyarrow) load only when a name that needs them is first touched. That keeps
`eventlake --help` fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from eventlake.errors import (
    CommandError,
    CommitConflictError,
    ConfigError,
    CorruptLakeError,
    EventlakeError,
    ForkedProcessError,
    InboxNotFoundError,
    InvalidArgumentError,
    InvalidEventError,
    LakeNotFoundError,
    MaterializeError,
    PartitionFailedError,
    RebuildSupersededError,
    ReducerError,
    RelayoutError,
    RestoreError,
    StaleLogError,
    StorageError,
    StorageFullError,
    StorageOptionError,
    StoragePanicError,
    StorageUnavailableError,
    StorageWarning,
    UnknownActionError,
    UnknownViewError,
    ViewChangedError,
    ViewDefinitionError,
)

if TYPE_CHECKING:
    from eventlake.actions import apply_action
    from eventlake.events import Limits
    from eventlake.lake import AppendResult, Lake, LakeInfo
    from eventlake.layout import Layout
    from eventlake.log import EventLog
    from eventlake.materialize import MaterializeResult, PartitionFailure
    from eventlake.relayout import RelayoutResult
    from eventlake.repository import Repository
    from eventlake.restore import RestoreResult
    from eventlake.storage import Snapshot, Storage
    from eventlake.views import (
        Agg,
        AggregateView,
        ReducerView,
        document_view,
        reducer_view,
    )

__version__ = "0.1.0"

# These and the errors above hold every class that a public signature names (the walk in
# tests/test_public_api.py checks it), so whatever a user annotates with imports from here.
_LAZY = {
    "apply_action": "eventlake.actions",
    "Limits": "eventlake.events",
    "Lake": "eventlake.lake",
    "AppendResult": "eventlake.lake",
    "LakeInfo": "eventlake.lake",
    "Layout": "eventlake.layout",
    "EventLog": "eventlake.log",
    "MaterializeResult": "eventlake.materialize",
    "PartitionFailure": "eventlake.materialize",
    "Repository": "eventlake.repository",
    "RelayoutResult": "eventlake.relayout",
    "RestoreResult": "eventlake.restore",
    "Snapshot": "eventlake.storage",
    "Storage": "eventlake.storage",
    "Agg": "eventlake.views",
    "AggregateView": "eventlake.views",
    "ReducerView": "eventlake.views",
    "document_view": "eventlake.views",
    "reducer_view": "eventlake.views",
}

__all__ = [
    "Agg",
    "AggregateView",
    "AppendResult",
    "CommandError",
    "CommitConflictError",
    "ConfigError",
    "CorruptLakeError",
    "EventLog",
    "EventlakeError",
    "ForkedProcessError",
    "InboxNotFoundError",
    "InvalidArgumentError",
    "InvalidEventError",
    "Lake",
    "LakeInfo",
    "LakeNotFoundError",
    "Layout",
    "Limits",
    "MaterializeError",
    "MaterializeResult",
    "PartitionFailedError",
    "PartitionFailure",
    "RebuildSupersededError",
    "ReducerError",
    "ReducerView",
    "RelayoutError",
    "RelayoutResult",
    "Repository",
    "RestoreError",
    "RestoreResult",
    "Snapshot",
    "StaleLogError",
    "Storage",
    "StorageError",
    "StorageFullError",
    "StorageOptionError",
    "StoragePanicError",
    "StorageUnavailableError",
    "StorageWarning",
    "UnknownActionError",
    "UnknownViewError",
    "ViewChangedError",
    "ViewDefinitionError",
    "__version__",
    "apply_action",
    "document_view",
    "reducer_view",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'eventlake' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
