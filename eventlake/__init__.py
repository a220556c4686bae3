"""eventlake: an event-sourced lakehouse on Delta Lake.

The package namespace is lazy: `import eventlake` is cheap, and heavy libraries (deltalake,
polars, duckdb, pyarrow) load only when a name that needs them is first touched. That keeps
`eventlake --help` fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from eventlake._version import __version__
from eventlake.errors import (
    ChangesUnavailableError,
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
    UnknownPartitionError,
    UnknownViewError,
    ViewChangedError,
    ViewDefinitionError,
)

if TYPE_CHECKING:
    from eventlake.engine.materialize import MaterializeResult, PartitionFailure
    from eventlake.engine.relayout import RelayoutResult
    from eventlake.lake import AppendResult, Lake, LakeInfo
    from eventlake.model.actions import apply_action
    from eventlake.model.layout import Layout
    from eventlake.model.views import (
        Agg,
        AggregateView,
        ReducerView,
        document_view,
        reducer_view,
    )
    from eventlake.ops.erase import EraseResult, TableErasure
    from eventlake.ops.freshness import Freshness, LaggingPartition, ViewFreshness
    from eventlake.ops.restore import RestoreResult
    from eventlake.repository import Repository
    from eventlake.store.log import EventLog
    from eventlake.store.storage import Snapshot, Storage
    from eventlake.validate.events import Limits


# These and the errors above hold every class that a public signature names (the walk in
# tests/test_public_api.py checks it), so whatever a user annotates with imports from here.
_LAZY = {
    "apply_action": "eventlake.model.actions",
    "Limits": "eventlake.validate.events",
    "Lake": "eventlake.lake",
    "AppendResult": "eventlake.lake",
    "LakeInfo": "eventlake.lake",
    "Layout": "eventlake.model.layout",
    "EventLog": "eventlake.store.log",
    "MaterializeResult": "eventlake.engine.materialize",
    "PartitionFailure": "eventlake.engine.materialize",
    "Repository": "eventlake.repository",
    "RelayoutResult": "eventlake.engine.relayout",
    "RestoreResult": "eventlake.ops.restore",
    "EraseResult": "eventlake.ops.erase",
    "TableErasure": "eventlake.ops.erase",
    "Freshness": "eventlake.ops.freshness",
    "LaggingPartition": "eventlake.ops.freshness",
    "ViewFreshness": "eventlake.ops.freshness",
    "Snapshot": "eventlake.store.storage",
    "Storage": "eventlake.store.storage",
    "Agg": "eventlake.model.views",
    "AggregateView": "eventlake.model.views",
    "ReducerView": "eventlake.model.views",
    "document_view": "eventlake.model.views",
    "reducer_view": "eventlake.model.views",
}

__all__ = [
    "Agg",
    "AggregateView",
    "AppendResult",
    "ChangesUnavailableError",
    "CommandError",
    "CommitConflictError",
    "ConfigError",
    "CorruptLakeError",
    "EraseResult",
    "EventLog",
    "EventlakeError",
    "ForkedProcessError",
    "Freshness",
    "InboxNotFoundError",
    "InvalidArgumentError",
    "InvalidEventError",
    "LaggingPartition",
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
    "TableErasure",
    "UnknownActionError",
    "UnknownPartitionError",
    "UnknownViewError",
    "ViewChangedError",
    "ViewDefinitionError",
    "ViewFreshness",
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
